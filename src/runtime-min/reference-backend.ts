/**
 * The reference backend: plain TypeScript that defines what every other backend must compute.
 * Dot products accumulate in float64 (JS numbers) and round once to float32; element-wise ops
 * round to float32 after each step in the order transformers' float32 forward does, so the
 * int8 activation rounding of BitNet sees the same values torch does as often as possible.
 *
 * Ternary weights are repacked once into 2-bit codes with every row starting on a byte, so a
 * row decodes with one table lookup per byte; each row is decoded once per call and reused for
 * all n tokens. The model is never expanded to float weights.
 */
import { toFloat32 } from '../formats/dtype.js';
import { unpackTernary } from '../formats/ternary.js';
import type {
  AttentionShape, Backend, FloatWeightSource, Int8WeightSource, KvCache, PreparedWeight, QuantizedActivations, TernaryWeightSource, WeightSource,
} from './backend.js';

const fround = Math.fround;
const EPS_ACT = fround(1e-5);

interface RefFloatWeight extends PreparedWeight { kind: 'float'; data: Float32Array }
interface RefTernaryWeight extends PreparedWeight {
  kind: 'ternary';
  rowBytes: number;
  codes: Uint8Array;        // [rows × rowBytes], code t+1 at bits 2·(c mod 4) of byte c/4
  scales: Float32Array;
  groupSize: number;        // columns sharing one scale (cols for tensor/channel)
  scaleIndex: (row: number, group: number) => number;
}
interface RefInt8Weight extends PreparedWeight { kind: 'int8'; q: Int8Array; scales: Float32Array }
type RefWeight = RefFloatWeight | RefTernaryWeight | RefInt8Weight;

/** Byte → its four codes t ∈ {−1,0,1} (code 3 never occurs; decoded as 2 like any reader would reject upstream). */
const DECODE = (() => {
  const table = new Int8Array(256 * 4);
  for (let b = 0; b < 256; b++) for (let k = 0; k < 4; k++) table[b * 4 + k] = ((b >> (2 * k)) & 3) - 1;
  return table;
})();

function roundHalfEven(v: number): number {
  const f = Math.floor(v);
  const d = v - f;
  if (d < 0.5) return f;
  if (d > 0.5) return f + 1;
  return f % 2 === 0 ? f : f + 1;
}

export class ReferenceBackend implements Backend {
  readonly name = 'reference';

  prepare(weight: WeightSource): PreparedWeight {
    if (weight.kind === 'int8') return prepareInt8(weight);
    return weight.kind === 'float' ? prepareFloat(weight) : prepareTernary(weight);
  }

  matmul(w: PreparedWeight, x: Float32Array, n: number, bias?: Float32Array): Float32Array {
    const weight = w as RefWeight;
    if (weight.kind === 'int8') throw new Error(`matmul takes float activations; the int8 weight ${weight.name} needs matmulQ8`);
    const { rows, cols } = weight;
    const out = new Float32Array(n * rows);
    if (weight.kind === 'float') {
      for (let r = 0; r < rows; r++) dotRowWithTokens(weight.data, r * cols, x, n, cols, out, rows, r, bias ? bias[r]! : 0);
      return out;
    }
    // One decoded row at a time; t·scale is exact in float32 (t ∈ {−1, 0, 1}).
    const row = new Float32Array(cols);
    const codes = new Int8Array(cols);
    for (let r = 0; r < rows; r++) {
      decodeScaledRow(weight, r, codes, row, 0);
      dotRowWithTokens(row, 0, x, n, cols, out, rows, r, bias ? bias[r]! : 0);
    }
    return out;
  }

  quantizeActivations(x: Float32Array, n: number, cols: number): QuantizedActivations {
    const q = new Int8Array(n * cols);
    const scales = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      const o = i * cols;
      let max = 0;
      for (let c = 0; c < cols; c++) max = Math.max(max, Math.abs(x[o + c]!));
      const s = fround(127 / Math.max(max, EPS_ACT));
      scales[i] = s;
      for (let c = 0; c < cols; c++) {
        const v = roundHalfEven(fround(x[o + c]! * s));
        q[o + c] = v < -128 ? -128 : v > 127 ? 127 : v;
      }
    }
    return { n, cols, q, scales };
  }

  matmulQ8(w: PreparedWeight, x: QuantizedActivations, bias?: Float32Array): Float32Array {
    const weight = w as RefWeight;
    if (weight.kind === 'int8') return matmulInt8(weight, x, bias);
    if (weight.kind !== 'ternary') throw new Error(`matmulQ8 needs a ternary or int8 weight; ${weight.name} is float`);
    const { rows, cols, groupSize } = weight;
    const { n, q, scales: sx } = x;
    const out = new Float32Array(n * rows);
    const row = new Int8Array(cols);
    const totals = new Float64Array(n);
    for (let r = 0; r < rows; r++) {
      decodeRow(weight, r, row);
      totals.fill(0);
      for (let g0 = 0, g = 0; g0 < cols; g0 += groupSize, g++) {
        // Integer sums are exact (|sum| ≤ 128·cols ≪ 2^53); one scale multiply per group.
        sumRowWithTokens(row, q, n, cols, g0, Math.min(cols, g0 + groupSize), totals, weight.scales[weight.scaleIndex(r, g)]!);
      }
      const b = bias ? bias[r]! : 0;
      for (let i = 0; i < n; i++) out[i * rows + r] = totals[i]! / sx[i]! + b;
    }
    return out;
  }

  gatherRows(w: PreparedWeight, ids: ArrayLike<number>): Float32Array {
    const weight = w as RefWeight;
    if (weight.kind === 'int8') throw new Error(`gatherRows reads float or ternary weights; ${weight.name} is int8`);
    const { cols } = weight;
    const out = new Float32Array(ids.length * cols);
    const row = new Int8Array(cols);
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      if (weight.kind === 'float') {
        out.set(weight.data.subarray(id * cols, (id + 1) * cols), i * cols);
        continue;
      }
      decodeScaledRow(weight, id, row, out, i * cols);
    }
    return out;
  }

  rmsnorm(x: Float32Array, n: number, cols: number, weight: Float32Array, eps: number): Float32Array {
    const out = new Float32Array(n * cols);
    for (let i = 0; i < n; i++) {
      const o = i * cols;
      let sum = 0;
      for (let c = 0; c < cols; c++) sum += x[o + c]! * x[o + c]!;
      const inv = fround(1 / Math.sqrt(fround(fround(sum / cols) + eps)));
      for (let c = 0; c < cols; c++) out[o + c] = weight[c]! * fround(x[o + c]! * inv);
    }
    return out;
  }

  rope(x: Float32Array, n: number, heads: number, headDim: number, cos: Float32Array, sin: Float32Array): void {
    const half = headDim / 2;
    for (let i = 0; i < n; i++) {
      const t = i * half;
      for (let h = 0; h < heads; h++) {
        const o = (i * heads + h) * headDim;
        for (let j = 0; j < half; j++) {
          const x1 = x[o + j]!;
          const x2 = x[o + j + half]!;
          const c = cos[t + j]!;
          const s = sin[t + j]!;
          x[o + j] = fround(x1 * c) - fround(x2 * s);
          x[o + j + half] = fround(x2 * c) + fround(x1 * s);
        }
      }
    }
  }

  attention(q: Float32Array, n: number, cache: KvCache, shape: AttentionShape): Float32Array {
    const { numHeads, numKvHeads, headDim, slidingWindow } = shape;
    const group = numHeads / numKvHeads;
    const kvStride = numKvHeads * headDim;
    const scale = 1 / Math.sqrt(headDim);
    const out = new Float32Array(n * numHeads * headDim);
    const first = cache.length - n;
    const scores = new Float64Array(cache.length);
    const acc = new Float64Array(headDim);
    for (let i = 0; i < n; i++) {
      const pos = first + i;
      const from = slidingWindow === null ? 0 : Math.max(0, pos - slidingWindow + 1);
      for (let h = 0; h < numHeads; h++) {
        const qo = (i * numHeads + h) * headDim;
        const ko = Math.floor(h / group) * headDim;
        let max = -Infinity;
        for (let j = from; j <= pos; j++) {
          const kb = j * kvStride + ko;
          let dot = 0;
          for (let d = 0; d < headDim; d++) dot += q[qo + d]! * cache.keys[kb + d]!;
          scores[j] = dot * scale;
          if (scores[j]! > max) max = scores[j]!;
        }
        let sum = 0;
        for (let j = from; j <= pos; j++) {
          scores[j] = Math.exp(scores[j]! - max);
          sum += scores[j]!;
        }
        acc.fill(0);
        for (let j = from; j <= pos; j++) {
          const p = scores[j]! / sum;
          const vb = j * kvStride + ko;
          for (let d = 0; d < headDim; d++) acc[d] += p * cache.values[vb + d]!;
        }
        for (let d = 0; d < headDim; d++) out[qo + d] = acc[d]!;
      }
    }
    return out;
  }

  gatedActivation(gate: Float32Array, up: Float32Array, act: 'silu' | 'relu2'): Float32Array {
    const out = new Float32Array(gate.length);
    for (let i = 0; i < gate.length; i++) {
      const g = gate[i]!;
      const a = act === 'silu' ? fround(g / (1 + Math.exp(-g))) : g > 0 ? fround(g * g) : 0;
      out[i] = a * up[i]!;
    }
    return out;
  }

  addInPlace(x: Float32Array, y: Float32Array): void {
    for (let i = 0; i < x.length; i++) x[i] = x[i]! + y[i]!;
  }
}

function prepareFloat(w: FloatWeightSource): RefFloatWeight {
  const data = toFloat32(w.bytes, w.dtype);
  return { name: w.name, kind: 'float', rows: w.rows, cols: w.cols, data, byteLength: data.byteLength };
}

function prepareInt8(w: Int8WeightSource): RefInt8Weight {
  return { name: w.name, kind: 'int8', rows: w.rows, cols: w.cols, q: w.q, scales: w.scales, byteLength: w.q.byteLength + w.scales.byteLength };
}

/** out[i][r] = float(S / (s_r · s_x[i]) + bias) with S = Σ q_w·q exact (matmulQ8's int8 contract, backend.ts). */
function matmulInt8(w: RefInt8Weight, x: QuantizedActivations, bias?: Float32Array): Float32Array {
  const { rows, cols } = w;
  const { n, q, scales: sx } = x;
  if (x.cols !== cols) throw new Error(`matmulQ8: ${w.name} has ${cols} columns, the activations ${x.cols}`);
  const out = new Float32Array(n * rows);
  for (let r = 0; r < rows; r++) {
    const wo = r * cols;
    const sr = w.scales[r]!;
    const b = bias ? bias[r]! : 0;
    for (let i = 0; i < n; i++) {
      const xo = i * cols;
      let sum = 0; // integer, |sum| ≤ 127·128·cols ≪ 2^53: exact
      for (let c = 0; c < cols; c++) sum += w.q[wo + c]! * q[xo + c]!;
      out[i * rows + r] = sum / (sr * sx[i]!) + b; // the product of two float32 values is exact in double
    }
  }
  return out;
}

function prepareTernary(w: TernaryWeightSource): RefTernaryWeight {
  const { rows, cols } = w;
  const rowBytes = Math.ceil(cols / 4);
  const codes = new Uint8Array(rows * rowBytes);
  const row = new Int8Array(cols);
  for (let r = 0; r < rows; r++) {
    unpackTernary(w.packing, w.packed, cols, r * cols, row);
    const o = r * rowBytes;
    for (let c = 0; c < cols; c++) codes[o + (c >> 2)]! |= (row[c]! + 1) << (2 * (c & 3));
  }
  const groupSize = w.granularity === 'group' ? w.groupSize! : cols;
  const groupsPerRow = Math.ceil(cols / groupSize);
  const scaleIndex = w.granularity === 'tensor' ? () => 0
    : w.granularity === 'channel' ? (r: number) => r
      : (r: number, g: number) => r * groupsPerRow + g;
  return { name: w.name, kind: 'ternary', rows, cols, rowBytes, codes, scales: w.scales, groupSize, scaleIndex, byteLength: codes.byteLength + w.scales.byteLength };
}

/**
 * out[i][r] = Σ_c w[wo + c]·x[i][c] + bias for every token i; four tokens per pass over the row
 * (each token's sum still runs in column order, so blocking does not change any result).
 */
function dotRowWithTokens(w: Float32Array, wo: number, x: Float32Array, n: number, cols: number, out: Float32Array, rows: number, r: number, bias: number): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const x0 = i * cols, x1 = x0 + cols, x2 = x1 + cols, x3 = x2 + cols;
    let a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    for (let c = 0; c < cols; c++) {
      const wv = w[wo + c]!;
      a0 += wv * x[x0 + c]!; a1 += wv * x[x1 + c]!; a2 += wv * x[x2 + c]!; a3 += wv * x[x3 + c]!;
    }
    out[i * rows + r] = a0 + bias; out[(i + 1) * rows + r] = a1 + bias; out[(i + 2) * rows + r] = a2 + bias; out[(i + 3) * rows + r] = a3 + bias;
  }
  for (; i < n; i++) {
    const xo = i * cols;
    let acc = 0;
    for (let c = 0; c < cols; c++) acc += w[wo + c]! * x[xo + c]!;
    out[i * rows + r] = acc + bias;
  }
}

/** totals[i] += scale · Σ_{c∈[from,to)} t[c]·q[i][c], integer sums, four tokens per pass. */
function sumRowWithTokens(t: Int8Array, q: Int8Array, n: number, cols: number, from: number, to: number, totals: Float64Array, scale: number): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const x0 = i * cols, x1 = x0 + cols, x2 = x1 + cols, x3 = x2 + cols;
    let a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    for (let c = from; c < to; c++) {
      const tv = t[c]!;
      a0 += tv * q[x0 + c]!; a1 += tv * q[x1 + c]!; a2 += tv * q[x2 + c]!; a3 += tv * q[x3 + c]!;
    }
    totals[i] += a0 * scale; totals[i + 1] += a1 * scale; totals[i + 2] += a2 * scale; totals[i + 3] += a3 * scale;
  }
  for (; i < n; i++) {
    const xo = i * cols;
    let acc = 0;
    for (let c = from; c < to; c++) acc += t[c]! * q[xo + c]!;
    totals[i] += acc * scale;
  }
}

/** The codes t of row r, four per byte through the lookup table. */
function decodeRow(w: RefTernaryWeight, r: number, out: Int8Array): void {
  const o = r * w.rowBytes;
  const cols = w.cols;
  const full = cols >> 2;
  for (let b = 0; b < full; b++) {
    const k = w.codes[o + b]! * 4;
    const c = b * 4;
    out[c] = DECODE[k]!; out[c + 1] = DECODE[k + 1]!; out[c + 2] = DECODE[k + 2]!; out[c + 3] = DECODE[k + 3]!;
  }
  for (let c = full * 4; c < cols; c++) out[c] = DECODE[w.codes[o + full]! * 4 + (c & 3)]!;
}

/** Row r as float32 t·scale (exact: t ∈ {−1, 0, 1}) into out[at …]; `codes` is scratch. */
function decodeScaledRow(w: RefTernaryWeight, r: number, codes: Int8Array, out: Float32Array, at: number): void {
  decodeRow(w, r, codes);
  for (let g0 = 0, g = 0; g0 < w.cols; g0 += w.groupSize, g++) {
    const scale = w.scales[w.scaleIndex(r, g)]!;
    const end = Math.min(w.cols, g0 + w.groupSize);
    for (let c = g0; c < end; c++) out[at + c] = codes[c]! * scale;
  }
}
