/**
 * Original vs packed on the same token windows, position by position: the NLL of each model on the
 * scored targets, KL(original‖packed) and top-1 agreement (see metrics.ts for the float64 math).
 */
import { TritpackError } from '../errors.js';
import { tokensRead, windowRows, type EvalModel, type ProgressCallback } from './evaluate.js';
import { ComparisonAccumulator } from './metrics.js';
import { planWindows, type WindowOptions } from './windows.js';

export interface ModelScore { meanNll: number; perplexity: number }

export interface ComparisonMetrics {
  original: ModelScore;
  packed: ModelScore;
  pplRatio: number;
  klMean: number;
  klP99: number;
  klMax: number;
  top1Agreement: number;
  /** Positions compared for KL/top-1, and next-token predictions scored for NLL. */
  positions: number;
  scoredTokens: number;
}

/** Runs both models over the windows of `ids` (see planWindows) and compares them position by position. */
export function compareModels(original: EvalModel, packed: EvalModel, ids: number[], window: WindowOptions, onProgress?: ProgressCallback): ComparisonMetrics {
  const windows = planWindows(ids.length, window);
  const vocab = original.config.vocabSize;
  if (packed.config.vocabSize !== vocab) {
    throw new TritpackError(`${packed.source.path}: vocabulary of ${packed.config.vocabSize} does not match the original's ${vocab} (${original.source.path})`);
  }
  const acc = new ComparisonAccumulator();
  const tokensTotal = 2 * tokensRead(windows);
  const started = performance.now();
  let tokensDone = 0;
  windows.forEach((w, index) => {
    const windowIds = ids.slice(w.start, w.end);
    const a = windowRows(original.logits(windowIds), w, vocab);
    const b = windowRows(packed.logits(windowIds), w, vocab);
    for (let p = w.from; p < w.to; p++) acc.addPosition(a(p), b(p), p + 1 < ids.length ? ids[p + 1] : undefined);
    tokensDone += 2 * windowIds.length;
    onProgress?.({ windowsDone: index + 1, windowsTotal: windows.length, tokensDone, tokensTotal, seconds: (performance.now() - started) / 1000 });
  });
  return {
    original: { meanNll: acc.original.meanNll, perplexity: acc.original.perplexity },
    packed: { meanNll: acc.packed.meanNll, perplexity: acc.packed.perplexity },
    pplRatio: acc.packed.perplexity / acc.original.perplexity,
    klMean: acc.klMean, klP99: acc.klP99, klMax: acc.klMax,
    top1Agreement: acc.top1Agreement,
    positions: acc.positions,
    scoredTokens: acc.original.scoredTokens,
  };
}
