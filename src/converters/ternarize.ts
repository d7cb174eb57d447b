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
import { packedByteLength, packTernary, type TernaryPacking } from '../formats/ternary.js';

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
  const groups = absmeanGroups(weights, rows, cols, granularity, formula);
  const codes = new Int8Array(weights.length);
  const stats = quantizeChunks(weights, groups, (from, to) => codes.subarray(from, to), () => {});
  return { codes, scales: groups.scales, gammas: groups.gammas, ...ratios(stats, weights.length) };
}

export interface PackedTernarizedTensor extends Omit<TernarizedTensor, 'codes'> {
  /** The codes packed contiguously (packTernary's layout). */
  data: Uint8Array;
  /** Number of zero codes. */
  zeros: number;
}

/**
 * ternarizeAbsmean followed by packTernary, without the tensor-sized code array: codes are made
 * and packed CHUNK at a time, so they stay in cache and the only tensor-sized output is the
 * packed data. Same codes, scales and statistics as ternarizeAbsmean, bit for bit.
 */
export function ternarizeAbsmeanPacked(
  weights: Float32Array,
  rows: number,
  cols: number,
  packing: TernaryPacking,
  granularity: ScaleGranularity = { kind: 'tensor' },
  formula: AbsmeanFormula = 'reference',
): PackedTernarizedTensor {
  const groups = absmeanGroups(weights, rows, cols, granularity, formula);
  const data = new Uint8Array(packedByteLength(packing, weights.length));
  const scratch = new Int8Array(Math.min(CHUNK, weights.length));
  const stats = quantizeChunks(weights, groups, (from, to) => scratch.subarray(0, to - from), (codes, from) => {
    // `from` is a multiple of CHUNK, so its codes start on a byte boundary.
    data.set(packTernary(packing, codes), packedByteLength(packing, from));
  });
  return { data, scales: groups.scales, gammas: groups.gammas, zeros: stats.zeros, ...ratios(stats, weights.length) };
}

/**
 * Codes per chunk: a multiple of 20 so that every chunk but the last fills whole t158 (5 codes)
 * and t2 (4 codes) bytes, and small enough (64 KiB) to stay in L2 between quantizing and packing.
 */
const CHUNK = 20 * 3277;

/**
 * The scale groups of a tensor: group g covers columns [k·size, min(cols, (k+1)·size)) of row
 * ⌊g / perRow⌋, k = g mod perRow. A per-tensor scale is one group over the tensor seen as a
 * single row, so all three granularities share one quantization loop.
 */
interface ScaleGroups {
  cols: number;
  size: number;
  perRow: number;
  formula: AbsmeanFormula;
  gammas: Float32Array;
  scales: Float32Array;
}

function absmeanGroups(weights: Float32Array, rows: number, cols: number, granularity: ScaleGranularity, formula: AbsmeanFormula): ScaleGroups {
  if (!Number.isSafeInteger(rows) || !Number.isSafeInteger(cols) || rows < 0 || cols < 0 || rows * cols !== weights.length) {
    throw new TritpackError(`ternarize: shape [${rows}, ${cols}] does not match ${weights.length} weights`);
  }
  if (formula !== 'reference' && formula !== 'paper') throw new TritpackError(`unknown absmean formula "${String(formula)}"`);
  const n = weights.length;
  if (granularity.kind === 'tensor') {
    const gamma = meanAbs(weights, 0, n, TORCH_THREADS);
    return { cols: n, size: n, perRow: 1, formula, gammas: Float32Array.of(gamma), scales: Float32Array.of(storedScale(gamma, formula)) };
  }
  let size = cols;
  if (granularity.kind === 'group') {
    size = granularity.size;
    if (!Number.isSafeInteger(size) || size < 1) throw new TritpackError(`scale group size must be a positive integer, got ${size}`);
  } else if (granularity.kind !== 'channel') {
    throw new TritpackError(`unknown scale granularity ${JSON.stringify(granularity)}`);
  }
  const perRow = cols === 0 ? 0 : Math.ceil(cols / size);
  const gammas = new Float32Array(rows * perRow);
  const scales = new Float32Array(rows * perRow);
  for (let g = 0; g < gammas.length; g++) {
    const begin = Math.floor(g / perRow) * cols + (g % perRow) * size;
    const end = begin + Math.min(size, cols - (g % perRow) * size);
    // A per-row or per-group torch mean (W.view(rows, -1, size).abs().mean(-1)) reduces each
    // group serially, so no thread split here.
    gammas[g] = meanAbs(weights, begin, end, 1);
    scales[g] = storedScale(gammas[g]!, formula);
  }
  return { cols, size, perRow, formula, gammas, scales };
}

/** The float32 value a code of ±1 stands for: fround(1/s) for 'reference', γ for 'paper'. */
function storedScale(gamma: number, formula: AbsmeanFormula): number {
  return formula === 'reference' ? Math.fround(1 / referenceMultiplier(gamma)) : gamma;
}

/** s = fl(1/max(γ, ε)), the reference formula's multiplier. */
function referenceMultiplier(gamma: number): number {
  return Math.fround(1 / Math.max(gamma, EPS));
}

interface QuantizeStats { zeros: number; errSq: number; normSq: number }

function ratios(stats: QuantizeStats, n: number): { zeroFraction: number; relativeError: number } {
  return {
    zeroFraction: n === 0 ? 0 : stats.zeros / n,
    relativeError: stats.normSq === 0 ? 0 : Math.sqrt(stats.errSq / stats.normSq),
  };
}

/**
 * Quantizes the weights CHUNK codes at a time: `target(from, to)` gives the array the codes of
 * [from, to) go to, `done(codes, from)` receives them once written.
 */
function quantizeChunks(
  w: Float32Array, groups: ScaleGroups,
  target: (from: number, to: number) => Int8Array, done: (codes: Int8Array, from: number) => void,
): QuantizeStats {
  const stats = { zeros: 0, errSq: 0, normSq: 0 };
  const { cols, size, perRow } = groups;
  for (let from = 0; from < w.length; from += CHUNK) {
    const to = Math.min(w.length, from + CHUNK);
    const codes = target(from, to);
    // Split the chunk where a scale group ends.
    for (let i = from; i < to;) {
      const row = Math.floor(i / cols);
      const k = Math.floor((i - row * cols) / size);
      const end = Math.min(to, row * cols + Math.min(cols, (k + 1) * size));
      quantizeRun(w, i, end, groups.gammas[row * perRow + k]!, groups.formula, codes, i - from, stats);
      i = end;
    }
    done(codes, from);
  }
  return stats;
}

/**
 * Codes for w[begin, end), all in one scale group, into codes[at…]; adds to `stats`.
 * round-half-even followed by clamp to [−1, 1] is exactly: v > 0.5 → 1, v < −0.5 → −1, else 0
 * (0.5 itself is a tie that rounds to the even 0); NaN lands on 0.
 *
 * Speed: the code comes from the two comparisons without a branch (the three codes are about
 * equally likely, so a branch on them mispredicts about every other weight: ~5× slower), and
 * each formula has its own loop (a formula test inside the loop cost another 1.5×).
 * reference: v = fl(W·s), s = fl(1/max(γ, ε)); paper: v = fl(W/d), d = fl(γ + ε), the division
 * kept as a division because W·(1/d) rounds differently.
 */
function quantizeRun(
  w: Float32Array, begin: number, end: number, gamma: number, formula: AbsmeanFormula,
  codes: Int8Array, at: number, stats: QuantizeStats,
): void {
  const scale = storedScale(gamma, formula);
  const shift = at - begin;
  let nonZeros = 0, errSq = 0, normSq = 0;
  if (formula === 'reference') {
    const s = referenceMultiplier(gamma);
    for (let i = begin; i < end; i++) {
      const x = w[i]!;
      const v = Math.fround(x * s);
      const t = +(v > 0.5) - +(v < -0.5);
      codes[i + shift] = t;
      nonZeros += t & 1;
      const e = x - t * scale;
      errSq += e * e;
      normSq += x * x;
    }
  } else {
    const d = Math.fround(gamma + EPS);
    for (let i = begin; i < end; i++) {
      const x = w[i]!;
      const v = Math.fround(x / d);
      const t = +(v > 0.5) - +(v < -0.5);
      codes[i + shift] = t;
      nonZeros += t & 1;
      const e = x - t * scale;
      errSq += e * e;
      normSq += x * x;
    }
  }
  stats.zeros += end - begin - nonZeros;
  stats.errSq += errSq;
  stats.normSq += normSq;
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
 * acc[m] += |w[p + m]| for m < count, each add rounded to float32 by the store. Unrolled by one
 * vector of lanes: the plain loop spent half its time on loop control (2.8 vs 1.4 ns/weight).
 */
function addAbs(w: Float32Array, p: number, count: number): void {
  let m = 0;
  for (; m + 8 <= count; m += 8) {
    acc[m] += Math.abs(w[p + m]!); acc[m + 1] += Math.abs(w[p + m + 1]!);
    acc[m + 2] += Math.abs(w[p + m + 2]!); acc[m + 3] += Math.abs(w[p + m + 3]!);
    acc[m + 4] += Math.abs(w[p + m + 4]!); acc[m + 5] += Math.abs(w[p + m + 5]!);
    acc[m + 6] += Math.abs(w[p + m + 6]!); acc[m + 7] += Math.abs(w[p + m + 7]!);
  }
  for (; m < count; m++) acc[m] += Math.abs(w[p + m]!);
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
      addAbs(w, p, row);
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
    addAbs(w, p, row);
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
