/** Small float64 metrics for the runtime tests, computed independently of src/validate. */

/** Mean NLL (nats) of ids[i+1] given logits row i, over one window; log-softmax in float64 like the references. */
export function meanNll(logits: Float32Array, ids: ArrayLike<number>, vocab: number): number {
  let sum = 0;
  for (let i = 0; i + 1 < ids.length; i++) {
    const o = i * vocab;
    let max = -Infinity;
    for (let v = 0; v < vocab; v++) max = Math.max(max, logits[o + v]!);
    let z = 0;
    for (let v = 0; v < vocab; v++) z += Math.exp(logits[o + v]! - max);
    sum -= logits[o + ids[i + 1]!]! - max - Math.log(z);
  }
  return sum / (ids.length - 1);
}

/** Argmax (lowest id on ties, like torch.argmax) of each of the first `count` rows. */
export function top1(logits: Float32Array, vocab: number, count: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < count; i++) {
    let best = 0;
    for (let v = 1; v < vocab; v++) if (logits[i * vocab + v]! > logits[i * vocab + best]!) best = v;
    out.push(best);
  }
  return out;
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** Number of leading positions where the two id lists agree. */
export function commonPrefix(a: number[], b: number[]): number {
  let k = 0;
  while (k < a.length && k < b.length && a[k] === b[k]) k++;
  return k;
}

/** log-softmax of row o of a logits window, in float64, into out. */
function logSoftmaxRow(l: Float32Array, o: number, vocab: number, out: Float64Array): void {
  let max = -Infinity;
  for (let v = 0; v < vocab; v++) max = Math.max(max, l[o + v]!);
  let z = 0;
  for (let v = 0; v < vocab; v++) z += Math.exp(l[o + v]! - max);
  const lz = Math.log(z) + max;
  for (let v = 0; v < vocab; v++) out[v] = l[o + v]! - lz;
}

/** Mean over positions of KL(p‖q) and the top-1 agreement, p and q the softmaxes of two logits windows. */
export function compareWindows(p: Float32Array, q: Float32Array, vocab: number): { meanKl: number; top1Agreement: number } {
  const positions = p.length / vocab;
  const lp = new Float64Array(vocab), lq = new Float64Array(vocab);
  let kl = 0, agree = 0;
  for (let i = 0; i < positions; i++) {
    logSoftmaxRow(p, i * vocab, vocab, lp);
    logSoftmaxRow(q, i * vocab, vocab, lq);
    for (let v = 0; v < vocab; v++) kl += Math.exp(lp[v]!) * (lp[v]! - lq[v]!);
    if (top1(p.subarray(i * vocab), vocab, 1)[0] === top1(q.subarray(i * vocab), vocab, 1)[0]) agree++;
  }
  return { meanKl: kl / positions, top1Agreement: agree / positions };
}
