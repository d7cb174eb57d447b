/**
 * Perplexity of one model over evaluation windows (what `tritpack eval` runs). Each window is one
 * batched prefill; NLL is taken from float64 log-softmax of its logits.
 */
import { NllAccumulator, nll, type LogitsRow } from './metrics.js';
import { planWindows, readEvalText, resolveEvalInput, tokenizeText, type EvalInputOptions, type EvalWindow, type WindowOptions } from './windows.js';

/** What evaluation needs of a loaded model (runtime-min's LoadedModel has it). */
export interface EvalModel {
  config: { vocabSize: number; maxPositions: number };
  source: { path: string };
  tokenizer: { encode(text: string, options?: { addSpecialTokens?: boolean }): number[] };
  logits(ids: ArrayLike<number>): Float32Array;
}

export interface EvalProgress { windowsDone: number; windowsTotal: number; tokensDone: number; tokensTotal: number; seconds: number }
export type ProgressCallback = (progress: EvalProgress) => void;

export interface PerplexityResult {
  /** Ids evaluated (after --max-tokens) and how many of them were scored as targets. */
  tokens: number;
  scoredTokens: number;
  windows: number;
  ctx: number;
  stride: number;
  sumNll: number;
  meanNll: number;
  perplexity: number;
  seconds: number;
  /** Prefill throughput: tokens read by the model (overlapping windows count again) per second. */
  tokensPerSecond: number;
}

/** Rows [from, to) of a window's logits, as absolute positions mapped into the window. */
export function windowRows(logits: Float32Array, window: EvalWindow, vocab: number): (position: number) => LogitsRow {
  if (logits.length !== (window.end - window.start) * vocab) {
    throw new RangeError(`the model returned ${logits.length} logits for a window of ${window.end - window.start} ids × vocab ${vocab}`);
  }
  return (position) => ({ logits, offset: (position - window.start) * vocab, vocab });
}

/** Tokens a whole run will feed the model, for progress and throughput. */
export function tokensRead(windows: EvalWindow[]): number {
  return windows.reduce((sum, w) => sum + w.end - w.start, 0);
}

/** Perplexity of `ids` (BOS first, as the tokenizer gives them) in windows of ctx sliding by stride (see planWindows). */
export function evaluatePerplexity(model: EvalModel, ids: number[], window: WindowOptions, onProgress?: ProgressCallback): PerplexityResult {
  const windows = planWindows(ids.length, window);
  const vocab = model.config.vocabSize;
  const acc = new NllAccumulator();
  const tokensTotal = tokensRead(windows);
  const started = performance.now();
  let tokensDone = 0;
  windows.forEach((w, index) => {
    const row = windowRows(model.logits(ids.slice(w.start, w.end)), w, vocab);
    for (let p = w.from; p < w.to && p + 1 < ids.length; p++) acc.add(nll(row(p), ids[p + 1]!));
    tokensDone += w.end - w.start;
    onProgress?.({ windowsDone: index + 1, windowsTotal: windows.length, tokensDone, tokensTotal, seconds: (performance.now() - started) / 1000 });
  });
  const seconds = (performance.now() - started) / 1000;
  return {
    tokens: ids.length, scoredTokens: acc.scoredTokens, windows: windows.length, ctx: window.ctx, stride: window.stride,
    sumNll: acc.sumNll, meanNll: acc.meanNll, perplexity: acc.perplexity, seconds, tokensPerSecond: tokensTotal / Math.max(seconds, 1e-9),
  };
}

export interface TextEvalResult extends PerplexityResult { text: string; totalTokens: number | null }

/** `tritpack eval`: read, tokenize, window and score a text file. */
export function evaluateTextFile(model: EvalModel, textPath: string, options: EvalInputOptions, onProgress?: ProgressCallback): TextEvalResult {
  const tokens = tokenizeText((t) => model.tokenizer.encode(t), readEvalText(textPath), options.maxTokens);
  const input = resolveEvalInput(tokens.ids, options, { maxPositions: model.config.maxPositions, path: model.source.path }, textPath, tokens.totalTokens);
  const result = evaluatePerplexity(model, input.ids, input, onProgress);
  return { ...result, text: textPath, totalTokens: input.totalTokens };
}
