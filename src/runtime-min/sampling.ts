/**
 * Next-token choice: greedy (argmax, lowest id on a tie, like torch.argmax) at temperature 0,
 * otherwise temperature → top-k → top-p (nucleus) sampling, in that order as transformers'
 * logits warpers apply them, with a seeded PRNG so a seed reproduces a run.
 */
import { TritpackError } from '../errors.js';

export interface SamplingOptions { temperature?: number; topK?: number; topP?: number; seed?: number }

export type Sampler = (logits: Float32Array) => number;

export function argmax(logits: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[best]!) best = i;
  return best;
}

/** mulberry32: a small, fast 32-bit PRNG; uniform in [0, 1). */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function createSampler(options: SamplingOptions): Sampler {
  const { temperature = 0, topK, topP, seed } = options;
  if (!Number.isFinite(temperature) || temperature < 0) throw new TritpackError(`temperature must be ≥ 0, got ${temperature}`);
  if (topK !== undefined && (!Number.isInteger(topK) || topK < 1)) throw new TritpackError(`top-k must be a positive integer, got ${topK}`);
  if (topP !== undefined && !(topP > 0 && topP <= 1)) throw new TritpackError(`top-p must be in (0, 1], got ${topP}`);
  if (seed !== undefined && !Number.isInteger(seed)) throw new TritpackError(`seed must be an integer, got ${seed}`);
  if (temperature === 0) return argmax;
  const random = mulberry32(seed ?? Math.floor(Math.random() * 2 ** 32));
  return (logits) => {
    // Candidates in descending logit order (ties: lower id first), cut by top-k.
    const order = Array.from(logits.keys()).sort((a, b) => logits[b]! - logits[a]! || a - b);
    const k = Math.min(topK ?? order.length, order.length);
    const max = logits[order[0]!]! / temperature;
    const probs = new Float64Array(k);
    let sum = 0;
    for (let i = 0; i < k; i++) sum += probs[i] = Math.exp(logits[order[i]!]! / temperature - max);
    // Nucleus: the smallest prefix whose probability reaches top_p (always at least one token).
    let keep = k;
    if (topP !== undefined && topP < 1) {
      let cum = 0;
      for (let i = 0; i < k; i++) {
        cum += probs[i]! / sum;
        if (cum >= topP) { keep = i + 1; break; }
      }
    }
    let total = 0;
    for (let i = 0; i < keep; i++) total += probs[i]!;
    let r = random() * total;
    for (let i = 0; i < keep; i++) {
      r -= probs[i]!;
      if (r < 0) return order[i]!;
    }
    return order[keep - 1]!;
  };
}
