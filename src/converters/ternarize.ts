/**
 * Absmean ternarization (BitNet b1.58): γ = mean|W| over a scale group, codes t ∈ {−1, 0, +1}.
 *
 * Two formulas (DESIGN.md "Ternarization semantics"):
 * - 'reference' — transformers' WeightQuant / AutoBitLinear, the code BitNet b1.58 2B4T runs:
 *   s = 1/max(γ, 1e-5), t = clamp(round(W·s), −1, 1), W' = t/s; all float32, round half to even.
 *   The stored scale is fround(1/s), the float32 value a code of ±1 stands for (the fixtures call
 *   it the "effective scale"; it equals γ except when 1/(1/γ) does not round-trip in float32).
 * - 'paper' — t = clamp(round(W/(γ + 1e-5)), −1, 1), W' = t·γ; the stored scale is γ.
 *
 * γ is reproduced bit for bit: it is summed the way torch's CPU `W.abs().mean()` sums float32
 * (see meanAbs below), because a last-bit difference in γ can flip a code sitting on ±γ/2.
 */
import { TritpackError } from '../errors.js';

export type ScaleGranularity = { kind: 'tensor' } | { kind: 'channel' } | { kind: 'group'; size: number };
export type AbsmeanFormula = 'reference' | 'paper';

export interface TernarizedTensor {
  codes: Int8Array;
  /** f32 scale per group: 1 (tensor), rows (channel) or rows·ceil(cols/size) (group), row-major. */
  scales: Float32Array;
  /** γ = mean|W| of each scale group (same layout as scales), for reporting. */
  gammas: Float32Array;
  zeroFraction: number;
  /** ‖W − W'‖F / ‖W‖F in float64, W' = code · scale (0 for an all-zero W). */
  relativeError: number;
}

/** torch clamps γ with the Python float 1e-5, which becomes this float32 in the float32 op. */
const EPS = Math.fround(1e-5);

export function parseScaleGranularity(text: string): ScaleGranularity {
  if (text === 'tensor') return { kind: 'tensor' };
  if (text === 'channel') return { kind: 'channel' };
  const m = /^group:([1-9][0-9]{0,9})$/.exec(text);
  if (m) {
    const size = Number(m[1]);
    if (Number.isSafeInteger(size)) return { kind: 'group', size };
  }
  throw new TritpackError(`invalid scale granularity "${text}": expected tensor, channel or group:N (N a positive integer)`);
}

export function ternarizeAbsmean(
  weights: Float32Array,
  rows: number,
  cols: number,
  granularity: ScaleGranularity = { kind: 'tensor' },
  formula: AbsmeanFormula = 'reference',
): TernarizedTensor {
  if (!Number.isSafeInteger(rows) || !Number.isSafeInteger(cols) || rows < 0 || cols < 0 || rows * cols !== weights.length) {
    throw new TritpackError(`ternarize: shape [${rows}, ${cols}] does not match ${weights.length} weights`);
  }
  if (formula !== 'reference' && formula !== 'paper') throw new TritpackError(`unknown absmean formula "${String(formula)}"`);
  const n = weights.length;
  const codes = new Int8Array(n);
  const stats = { zeros: 0, errSq: 0, normSq: 0 };
  let scales: Float32Array;
  let gammas: Float32Array;

  if (granularity.kind === 'tensor') {
    gammas = Float32Array.of(meanAbs(weights, 0, n, TORCH_THREADS));
    scales = Float32Array.of(quantizeRange(weights, 0, n, gammas[0]!, formula, codes, stats));
  } else {
    let groupSize = cols;
    if (granularity.kind === 'group') {
      groupSize = granularity.size;
      if (!Number.isSafeInteger(groupSize) || groupSize < 1) throw new TritpackError(`scale group size must be a positive integer, got ${groupSize}`);
    } else if (granularity.kind !== 'channel') {
      throw new TritpackError(`unknown scale granularity ${JSON.stringify(granularity)}`);
    }
    const perRow = cols === 0 ? 0 : Math.ceil(cols / groupSize);
    scales = new Float32Array(rows * perRow);
    gammas = new Float32Array(rows * perRow);
    let g = 0;
    for (let r = 0; r < rows; r++) {
      const rowStart = r * cols;
      for (let c = 0; c < cols; c += groupSize) {
        const begin = rowStart + c;
        const end = rowStart + Math.min(cols, c + groupSize);
        // A per-row or per-group torch mean (W.view(rows, -1, size).abs().mean(-1)) reduces each
        // group serially, so no thread split here.
        gammas[g] = meanAbs(weights, begin, end, 1);
        scales[g] = quantizeRange(weights, begin, end, gammas[g]!, formula, codes, stats);
        g++;
      }
    }
  }

  return {
    codes,
    scales,
    gammas,
    zeroFraction: n === 0 ? 0 : stats.zeros / n,
    relativeError: stats.normSq === 0 ? 0 : Math.sqrt(stats.errSq / stats.normSq),
  };
}

/**
 * Codes for w[begin, end) with absmean γ; returns the group's stored scale and adds to `stats`.
 * round-half-even followed by clamp to [−1, 1] is exactly: v > 0.5 → 1, v < −0.5 → −1, else 0
 * (0.5 itself is a tie that rounds to the even 0); NaN lands on 0.
 */
function quantizeRange(
  w: Float32Array, begin: number, end: number, gamma: number, formula: AbsmeanFormula,
  codes: Int8Array, stats: { zeros: number; errSq: number; normSq: number },
): number {
  // reference: v = fl(W·s), s = fl(1/max(γ, ε)); paper: v = fl(W/d), d = fl(γ + ε). The division
  // is kept as a division: W·(1/d) rounds differently.
  const reference = formula === 'reference';
  const s = Math.fround(1 / Math.max(gamma, EPS));
  const d = Math.fround(gamma + EPS);
  const scale = reference ? Math.fround(1 / s) : gamma;
  let zeros = 0, errSq = 0, normSq = 0;
  for (let i = begin; i < end; i++) {
    const x = w[i]!;
    const v = reference ? Math.fround(x * s) : Math.fround(x / d);
    const t = v > 0.5 ? 1 : v < -0.5 ? -1 : 0;
    codes[i] = t;
    if (t === 0) zeros++;
    const e = x - t * scale;
    errSq += e * e;
    normSq += x * x;
  }
  stats.zeros += zeros;
  stats.errSq += errSq;
  stats.normSq += normSq;
  return scale;
}

// ---------------------------------------------------------------------------------------------
// γ = mean|w| in float32, summed like torch's CPU kernel (aten/src/ATen/native/cpu/SumKernel.cpp
// `cascade_sum` → `vectorized_inner_sum` → `row_sum` → `multi_row_sum`, AVX2 build: 8 float lanes,
// 4 vectors interleaved, 4 cascade levels), then divided by the element count as float32
// (`mean` = `sum(...).div_(numel)` on CPU). For a whole tensor of ≥ 32768 elements torch splits
// the range over its intra-op threads (`two_pass_reduction`, grain 32768) and adds the partial
// sums in thread order. The fixtures' references were made with 2 torch threads, and this
// reproduces all 42 of their recorded γ bit for bit; a float64 sum misses 13 of them.

/** Intra-op threads of the torch run whose γ we reproduce (the fixtures' generator used 2). */
const TORCH_THREADS = 2;
const TORCH_GRAIN = 32768;
/** Float lanes of an AVX2 Vectorized<float>. */
const VECTOR_LANES = 8;
const ILP = 4;
const LEVELS = 4;
/** Cascade accumulators: LEVELS × (ILP vectors × lanes); a Float32Array store rounds each add to float32. */
const acc = new Float32Array(LEVELS * ILP * VECTOR_LANES);

function meanAbs(w: Float32Array, begin: number, end: number, threads: number): number {
  const n = end - begin;
  if (n === 0) return 0;
  let sum: number;
  if (threads === 1 || n < TORCH_GRAIN) {
    sum = cascadeAbsSum(w, begin, end);
  } else {
    const tasks = Math.min(threads, Math.ceil(n / TORCH_GRAIN));
    const chunk = Math.ceil(n / tasks);
    sum = 0;
    for (let b = begin; b < end; b += chunk) sum = Math.fround(sum + cascadeAbsSum(w, b, Math.min(end, b + chunk)));
  }
  return Math.fround(sum / Math.fround(n));
}

function ceilLog2(x: number): number {
  if (x <= 2) return 1;
  let bits = 0;
  for (let v = x - 1; v > 0; v = Math.floor(v / 2)) bits++;
  return bits;
}

/**
 * Float32 Σ|w[begin, end)| in torch's order for one contiguous range. Ranges shorter than one
 * vector take torch's scalar path, which is the same algorithm with one lane.
 */
function cascadeAbsSum(w: Float32Array, begin: number, end: number): number {
  const lanes = end - begin >= VECTOR_LANES ? VECTOR_LANES : 1;
  const row = lanes * ILP;
  const vectors = Math.floor((end - begin) / lanes);
  const rows = Math.floor(vectors / ILP); // multi_row_sum's "size": rows of ILP vectors
  const levelPower = Math.max(4, Math.floor(ceilLog2(rows) / LEVELS));
  const levelStep = 2 ** levelPower;
  const levelMask = levelStep - 1; // rows < 2^27, so the shifted masks fit in 32 bits
  // Short ranges (small groups) never reach the upper levels: clear and fold only what is used.
  const cascaded = rows >= levelStep;
  acc.fill(0, 0, cascaded ? LEVELS * row : row);
  let i = 0;
  let p = begin;
  while (i + levelStep <= rows) {
    for (let j = 0; j < levelStep; j++, i++, p += row) {
      for (let m = 0; m < row; m++) acc[m] += Math.abs(w[p + m]!);
    }
    for (let level = 1; level < LEVELS; level++) {
      const up = level * row, down = up - row;
      for (let m = 0; m < row; m++) {
        acc[up + m] += acc[down + m]!;
        acc[down + m] = 0;
      }
      if ((i & (levelMask << (level * levelPower))) !== 0) break;
    }
  }
  for (; i < rows; i++, p += row) {
    for (let m = 0; m < row; m++) acc[m] += Math.abs(w[p + m]!);
  }
  for (let level = 1; cascaded && level < LEVELS; level++) {
    for (let m = 0; m < row; m++) acc[m] += acc[level * row + m]!;
  }
  // row_sum: leftover vectors go into the first vector accumulator, then the ILP vectors fold into it.
  for (let v = rows * ILP; v < vectors; v++, p += lanes) {
    for (let l = 0; l < lanes; l++) acc[l] += Math.abs(w[p + l]!);
  }
  for (let k = 1; k < ILP; k++) {
    for (let l = 0; l < lanes; l++) acc[l] += acc[k * lanes + l]!;
  }
  // vectorized_inner_sum: the scalar tail first, then the lanes in order.
  let total = 0;
  for (; p < end; p++) total = Math.fround(total + Math.abs(w[p]!));
  for (let l = 0; l < lanes; l++) total = Math.fround(total + acc[l]!);
  return total;
}
