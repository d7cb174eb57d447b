/**
 * The numbers validate and eval report, computed from raw logits. Everything past the model's
 * own float32 logits is float64: a log-softmax over a large vocabulary and sums over thousands of
 * positions lose digits in float32, and the references (fixtures' reference.json) take the
 * log-softmax in float64 too.
 */

/** Logits of one position: `vocab` values starting at `offset` in a [positions × vocab] array. */
export interface LogitsRow { logits: ArrayLike<number>; offset: number; vocab: number }

/** log Σ exp(logits) of one row in float64, max-shifted so exp never overflows. */
export function logSumExp(row: LogitsRow): number {
  return normalise(row).logZ;
}

/** log softmax of one row in float64. */
export function logSoftmax(row: LogitsRow, out: Float64Array = new Float64Array(row.vocab)): Float64Array {
  const logZ = logSumExp(row);
  for (let v = 0; v < row.vocab; v++) out[v] = row.logits[row.offset + v]! - logZ;
  return out;
}

/** Negative log-likelihood (nats) of `target` under one row. */
export function nll(row: LogitsRow, target: number): number {
  return logSumExp(row) - row.logits[row.offset + checkTarget(target, row.vocab)]!;
}

/** KL(p‖q) = Σ p (log p − log q) in nats, from two log-probability vectors. Terms with p = 0 add 0. */
export function klDivergence(logP: Float64Array, logQ: Float64Array): number {
  if (logP.length !== logQ.length) throw new RangeError(`KL over vocabularies of different sizes (${logP.length} vs ${logQ.length})`);
  let kl = 0;
  for (let v = 0; v < logP.length; v++) {
    const p = Math.exp(logP[v]!);
    if (p > 0) kl += p * (logP[v]! - logQ[v]!);
  }
  // Rounding can leave a tiny negative value for identical distributions; KL is never below 0.
  return Math.max(0, kl);
}

/** Index of the largest logit; the lowest id wins an exact tie, as torch.argmax does. */
export function argmax(row: LogitsRow): number {
  let best = 0;
  let bestValue = row.logits[row.offset]!;
  for (let v = 1; v < row.vocab; v++) {
    const x = row.logits[row.offset + v]!;
    if (x > bestValue) { bestValue = x; best = v; }
  }
  return best;
}

export function mean(values: ArrayLike<number>): number {
  if (values.length === 0) return NaN;
  let sum = 0;
  for (let i = 0; i < values.length; i++) sum += values[i]!;
  return sum / values.length;
}

/**
 * The q-th percentile (0–100) with linear interpolation between closest ranks — numpy's default
 * (`np.percentile(x, q)`), so a reader can reproduce p99 with one call.
 */
export function percentile(values: ArrayLike<number>, q: number): number {
  if (values.length === 0) return NaN;
  if (!(q >= 0 && q <= 100)) throw new RangeError(`percentile ${q} is outside 0..100`);
  const sorted = Float64Array.from(values).sort();
  const rank = (q / 100) * (sorted.length - 1);
  const lo = Math.floor(rank);
  const hi = Math.min(lo + 1, sorted.length - 1);
  return sorted[lo]! + (rank - lo) * (sorted[hi]! - sorted[lo]!);
}

export function perplexity(meanNll: number): number {
  return Math.exp(meanNll);
}

/** Running sum of per-token NLL: what eval reports. */
export class NllAccumulator {
  private sum = 0;
  private count = 0;
  add(value: number): void { this.sum += value; this.count++; }
  get scoredTokens(): number { return this.count; }
  get sumNll(): number { return this.sum; }
  get meanNll(): number { return this.count === 0 ? NaN : this.sum / this.count; }
  get perplexity(): number { return perplexity(this.meanNll); }
}

/**
 * Original-vs-packed comparison, position by position: NLL of each model on the scored targets,
 * KL(original‖packed) and whether the two top-1 ids agree at every compared position.
 */
export class ComparisonAccumulator {
  readonly original = new NllAccumulator();
  readonly packed = new NllAccumulator();
  private readonly kls: number[] = [];
  private agree = 0;
  private shifted: Float64Array | undefined;

  /**
   * One position of both models; `target` is the next token when there is one to score. This runs
   * for every position of every window over the whole vocabulary, so it reads each row twice and
   * takes one exp per logit: KL(p‖q) = Σ p (a − b) + log Z_q − log Z_p for logits a, b, with
   * p = exp(a − max a) / Σ exp(a − max a) kept from the normalising pass.
   */
  addPosition(original: LogitsRow, packed: LogitsRow, target?: number): void {
    if (original.vocab !== packed.vocab) {
      throw new RangeError(`the models have different vocabularies (${original.vocab} vs ${packed.vocab})`);
    }
    this.shifted ??= new Float64Array(original.vocab);
    const p = normalise(original, this.shifted);
    const q = normalise(packed);
    const { logits: a, offset: oa } = original;
    const { logits: b, offset: ob } = packed;
    let cross = 0;
    for (let v = 0; v < original.vocab; v++) cross += this.shifted[v]! * (a[oa + v]! - b[ob + v]!);
    // Rounding can leave a tiny negative value for identical distributions; KL is never below 0.
    this.kls.push(Math.max(0, cross / p.sum + q.logZ - p.logZ));
    if (p.argmax === q.argmax) this.agree++;
    if (target !== undefined) {
      this.original.add(p.logZ - a[oa + checkTarget(target, original.vocab)]!);
      this.packed.add(q.logZ - b[ob + target]!);
    }
  }

  get positions(): number { return this.kls.length; }
  get top1Agreement(): number { return this.kls.length === 0 ? NaN : this.agree / this.kls.length; }
  get klMean(): number { return mean(this.kls); }
  get klP99(): number { return percentile(this.kls, 99); }
  get klMax(): number { return this.kls.reduce((a, b) => Math.max(a, b), this.kls.length === 0 ? NaN : 0); }
}

/**
 * One row's top-1 id (the lowest on a tie, as torch.argmax), log Σ exp and Σ exp(x − max), in float64;
 * `shifted` receives exp(x − max) when given.
 */
function normalise(row: LogitsRow, shifted?: Float64Array): { argmax: number; logZ: number; sum: number } {
  const { logits, offset, vocab } = row;
  const best = argmax(row);
  const max = logits[offset + best]!;
  let sum = 0;
  for (let v = 0; v < vocab; v++) {
    const e = Math.exp(logits[offset + v]! - max);
    if (shifted) shifted[v] = e;
    sum += e;
  }
  return { argmax: best, logZ: max + Math.log(sum), sum };
}

function checkTarget(target: number, vocab: number): number {
  if (!Number.isInteger(target) || target < 0 || target >= vocab) throw new RangeError(`target id ${target} is outside the vocabulary of ${vocab}`);
  return target;
}
