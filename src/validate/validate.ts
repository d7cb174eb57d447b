/**
 * Original vs packed, on the same token windows: perplexity of each and their ratio, KL(original‖
 * packed) per position (mean, p99, max), top-1 agreement, greedy continuations side by side, the
 * per-tensor table, and a PASS/FAIL verdict against thresholds. The report object is what `--json`
 * prints, what report.ts renders as Markdown and what `--embed` stores in the .tpk header.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { formatSignificant } from '../cli/units.js';
import { TritpackError } from '../errors.js';
import { ComparisonAccumulator } from './metrics.js';
import { tokensRead, windowRows, type EvalModel, type ProgressCallback } from './evaluate.js';
import { buildTensorTable, type TensorTable } from './tensors.js';
import { planWindows, readEvalText, resolveEvalInput, tokenizeText, type EvalInputOptions, type WindowOptions } from './windows.js';

/** What validation needs of a loaded model (runtime-min's LoadedModel has it). */
export interface ValidateModel extends EvalModel {
  config: EvalModel['config'] & { architecture: string; modelType?: string; bitnetQuantization?: { mode: string } | null };
  source: { kind: string; path: string };
  tokenizer: EvalModel['tokenizer'] & { decode(ids: number[]): string };
  generate(promptIds: number[], options: { maxNewTokens: number; temperature?: number; stopAtEos?: boolean }): number[];
}

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

export interface Continuation {
  prompt: string;
  promptIds: number[];
  original: { ids: number[]; text: string };
  packed: { ids: number[]; text: string };
  /** Index (into the generated ids) of the first token where the two differ; null if identical. */
  divergence: number | null;
  /** Character offset in each text where the divergence starts, when the decoded prefix lines up. */
  divergenceChar: { original: number; packed: number } | null;
}

/** Greedy continuations of each prompt by both models. */
export function compareContinuations(original: ValidateModel, packed: ValidateModel, prompts: string[], newTokens: number): Continuation[] {
  return prompts.map((prompt) => {
    const promptIds = original.tokenizer.encode(prompt);
    // @huggingface/tokenizers refuses to decode an empty list.
    const decode = (m: ValidateModel, ids: number[]) => (ids.length === 0 ? '' : m.tokenizer.decode(ids));
    const run = (m: ValidateModel) => {
      const ids = m.generate(promptIds, { maxNewTokens: newTokens, temperature: 0, stopAtEos: true });
      return { ids, text: decode(m, ids) };
    };
    const a = run(original);
    const b = run(packed);
    let d = 0;
    while (d < a.ids.length && d < b.ids.length && a.ids[d] === b.ids[d]) d++;
    const divergence = d === a.ids.length && d === b.ids.length ? null : d;
    let divergenceChar: Continuation['divergenceChar'] = null;
    if (divergence !== null) {
      const common = decode(original, a.ids.slice(0, d));
      if (a.text.startsWith(common) && b.text.startsWith(common)) divergenceChar = { original: common.length, packed: common.length };
    }
    return { prompt, promptIds, original: a, packed: b, divergence, divergenceChar };
  });
}

/** Default prompts: the opening words of the text's first lines (in-domain for the model under test). */
export function promptsFromText(text: string, count = 3, words = 6): string[] {
  return text.split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line.length > 0 && !/^<\|.*\|>$/.test(line))
    .slice(0, count)
    .map((line) => line.split(/\s+/).slice(0, words).join(' '));
}

/** A --prompts file: one prompt per non-empty line. */
export function readPromptsFile(path: string): string[] {
  return readEvalText(path).split(/\r?\n/).map((line) => line.trim()).filter((line) => line.length > 0);
}

export interface TernaryTrainingNote { ternaryTrained: boolean; note: string }

/** Says honestly whether the original was trained for ternary weights, which decides what to expect. */
export function ternaryTrainingNote(original: ValidateModel, table: TensorTable): TernaryTrainingNote {
  const c = original.config;
  if (c.architecture === 'bitnet' && c.bitnetQuantization) {
    return {
      ternaryTrained: true,
      note: `The original is a BitNet b1.58 model (${c.bitnetQuantization.mode} ternary weights): its own forward pass already uses ternary weights, so a faithful packing should be (nearly) lossless.`,
    };
  }
  if (c.architecture === 'bitnet') {
    return {
      ternaryTrained: false,
      note: 'The original has the BitNet architecture but its config carries no BitNet quantization_config, so its own forward pass '
        + '(like transformers\') uses its float weights unquantized: the packed model differs from it unless those weights were trained for ternary use.',
    };
  }
  const recomputed = table.rows.filter((r) => r.recomputed);
  if (recomputed.length > 0 && recomputed.every((r) => (r.relativeError ?? 1) < 1e-6)) {
    return { ternaryTrained: true, note: 'The original weights are already ternary-valued (saved after ternary training): packing them is lossless.' };
  }
  return {
    ternaryTrained: false,
    note: `The original is an ordinary ${c.modelType ?? c.architecture} model trained with full-precision weights, not for ternary weights. `
      + 'Post-training ternarization (absmean) usually destroys such a model, so large losses here are the expected, honest result, '
      + 'not a bug in the conversion. Lossless 1.58-bit models come from ternary-aware training (BitNet b1.58).',
  };
}

export interface ValidationReport {
  tool: { name: 'tritpack'; version: string };
  createdAt: string;
  original: { path: string; kind: string; architecture: string };
  packed: { path: string; kind: string };
  text: { source: string; sha256?: string; totalTokens: number | null; tokens: number; ctx: number; stride: number; windows: number };
  metrics: ComparisonMetrics;
  thresholds: Thresholds;
  verdict: 'PASS' | 'FAIL';
  reasons: string[];
  ternaryTraining: TernaryTrainingNote;
  continuations: Continuation[];
  tensors: TensorTable;
  seconds: number;
  /** Both models' prefill tokens per second over the windows. */
  tokensPerSecond: number;
}

export interface ValidateOptions extends EvalInputOptions {
  original: ValidateModel;
  packed: ValidateModel;
  /** A text file to tokenize, or ids given directly (with a label for the report). */
  text: { path: string } | { ids: number[]; label: string };
  /** Continuation prompts; default: from the text's first lines (or none when ids are given). */
  prompts?: string[];
  newTokens?: number;
  thresholds?: Partial<Thresholds>;
  onProgress?: ProgressCallback;
}

export function verdictOf(m: ComparisonMetrics, t: Thresholds): { verdict: 'PASS' | 'FAIL'; reasons: string[] } {
  const reasons: string[] = [];
  if (!(m.pplRatio <= t.maxPplRatio)) reasons.push(`perplexity ratio ${formatSignificant(m.pplRatio, 4)} exceeds --max-ppl-ratio ${t.maxPplRatio}`);
  if (!(m.top1Agreement >= t.minTop1)) reasons.push(`top-1 agreement ${formatSignificant(m.top1Agreement, 4)} is below --min-top1 ${t.minTop1}`);
  if (!(m.klMean <= t.maxKl)) reasons.push(`mean KL ${formatSignificant(m.klMean, 4)} nats exceeds --max-kl ${t.maxKl}`);
  return { verdict: reasons.length === 0 ? 'PASS' : 'FAIL', reasons };
}

export function validateModels(options: ValidateOptions): ValidationReport {
  const thresholds = checkThresholds({ ...DEFAULT_THRESHOLDS, ...options.thresholds });
  const { original, packed } = options;
  const started = performance.now();
  let allIds: number[];
  let totalTokens: number | null;
  let source: string;
  let sha256: string | undefined;
  let prompts = options.prompts;
  if ('path' in options.text) {
    source = options.text.path;
    const text = readEvalText(source);
    sha256 = createHash('sha256').update(readFileSync(source)).digest('hex');
    const tokens = tokenizeText((t) => original.tokenizer.encode(t), text, options.maxTokens);
    ({ ids: allIds, totalTokens } = tokens);
    const packedIds = packed.tokenizer.encode(tokens.textUsed);
    if ((totalTokens !== null && packedIds.length !== allIds.length) || allIds.some((id, i) => id !== packedIds[i])) {
      throw new TritpackError(`${packed.source.path}: its tokenizer splits ${source} differently from the original's (${original.source.path}); the models cannot be compared token by token`);
    }
    prompts ??= promptsFromText(text);
  } else {
    source = options.text.label;
    allIds = options.text.ids;
    totalTokens = allIds.length;
  }
  const maxPositions = Math.min(original.config.maxPositions, packed.config.maxPositions);
  const input = resolveEvalInput(allIds, options, { maxPositions, path: maxPositions === original.config.maxPositions ? original.source.path : packed.source.path }, source, totalTokens);
  const compareStarted = performance.now();
  const metrics = compareModels(original, packed, input.ids, input, options.onProgress);
  const compareSeconds = (performance.now() - compareStarted) / 1000;
  const continuations = compareContinuations(original, packed, prompts ?? [], options.newTokens ?? 32);
  const tensors = buildTensorTable(original.source.path, packed.source.path);
  const { verdict, reasons } = verdictOf(metrics, thresholds);
  return {
    tool: { name: 'tritpack', version: toolVersion() },
    createdAt: new Date().toISOString(),
    original: { path: original.source.path, kind: original.source.kind, architecture: original.config.modelType ?? original.config.architecture },
    packed: { path: packed.source.path, kind: packed.source.kind },
    text: { source, sha256, totalTokens: input.totalTokens, tokens: input.ids.length, ctx: input.ctx, stride: input.stride, windows: input.windows.length },
    metrics,
    thresholds,
    verdict,
    reasons,
    ternaryTraining: ternaryTrainingNote(original, tensors),
    continuations,
    tensors,
    seconds: (performance.now() - started) / 1000,
    tokensPerSecond: (2 * tokensRead(input.windows)) / Math.max(compareSeconds, 1e-9),
  };
}

let version: string | undefined;
function toolVersion(): string {
  // package.json sits two levels above both src/validate (tsx) and dist/validate (built).
  version ??= (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  return version;
}
