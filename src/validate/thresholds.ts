/**
 * The quality gate: how far a packed model may drift from its original before validate says FAIL
 * (exit 1), and the verdict with a reason for every threshold missed.
 */
import { formatSignificant } from '../units.js';
import { TritpackError } from '../errors.js';
import type { ComparisonMetrics } from './compare.js';

export interface Thresholds {
  /** Largest allowed perplexity(packed) / perplexity(original). */
  maxPplRatio: number;
  /** Smallest allowed fraction of positions where both models' top-1 ids agree. */
  minTop1: number;
  /** Largest allowed mean KL(original‖packed) per position, in nats. */
  maxKl: number;
}

/**
 * Defaults for a packed model that should behave like its original: at most 10 % more perplexity,
 * the same next token at 90 % of positions, and 0.05 nats of mean KL. A lossless conversion (a
 * ternary-trained BitNet) gives 1.0 / 1.0 / ~0; post-training ternarization of a float model fails
 * by orders of magnitude, which is the point of the gate.
 */
export const DEFAULT_THRESHOLDS: Thresholds = { maxPplRatio: 1.1, minTop1: 0.9, maxKl: 0.05 };

/** Rejects thresholds that cannot mean anything (usage error, exit 2). */
export function checkThresholds(t: Thresholds): Thresholds {
  if (!(Number.isFinite(t.maxPplRatio) && t.maxPplRatio >= 1)) {
    throw new TritpackError(`--max-ppl-ratio must be a number ≥ 1 (perplexity of the packed model / the original's), got ${t.maxPplRatio}`);
  }
  if (!(Number.isFinite(t.minTop1) && t.minTop1 >= 0 && t.minTop1 <= 1)) {
    throw new TritpackError(`--min-top1 must be a fraction between 0 and 1, got ${t.minTop1}`);
  }
  if (!(Number.isFinite(t.maxKl) && t.maxKl >= 0)) throw new TritpackError(`--max-kl must be a number ≥ 0 (nats per token), got ${t.maxKl}`);
  return t;
}

export function verdictOf(m: ComparisonMetrics, t: Thresholds): { verdict: 'PASS' | 'FAIL'; reasons: string[] } {
  const reasons: string[] = [];
  if (!(m.pplRatio <= t.maxPplRatio)) reasons.push(`perplexity ratio ${formatSignificant(m.pplRatio, 4)} exceeds --max-ppl-ratio ${t.maxPplRatio}`);
  if (!(m.top1Agreement >= t.minTop1)) reasons.push(`top-1 agreement ${formatSignificant(m.top1Agreement, 4)} is below --min-top1 ${t.minTop1}`);
  if (!(m.klMean <= t.maxKl)) reasons.push(`mean KL ${formatSignificant(m.klMean, 4)} nats exceeds --max-kl ${t.maxKl}`);
  return { verdict: reasons.length === 0 ? 'PASS' : 'FAIL', reasons };
}
