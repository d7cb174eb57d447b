/**
 * Original vs packed, on the same token windows: perplexity of each and their ratio, KL(original‖
 * packed) per position (mean, p99, max), top-1 agreement, greedy continuations side by side, the
 * per-tensor table, and a PASS/FAIL verdict against thresholds. The report object is what `--json`
 * prints, what report.ts renders as Markdown and what `--embed` stores in the .tpk header.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { TritpackError } from '../errors.js';
import { compareModels, type ComparisonMetrics } from './compare.js';
import { compareContinuations, promptsFromText, type Continuation } from './continuations.js';
import { tokensRead, type EvalModel, type ProgressCallback } from './evaluate.js';
import { buildTensorTable, type TensorTable } from './tensors.js';
import { checkThresholds, DEFAULT_THRESHOLDS, verdictOf, type Thresholds } from './thresholds.js';
import { readEvalText, resolveEvalInput, tokenizeText, type EvalInputOptions } from './windows.js';

// The whole validate API from one module, as src/index.ts and the commands import it.
export { compareModels, type ComparisonMetrics, type ModelScore } from './compare.js';
export { compareContinuations, promptsFromText, readPromptsFile, type Continuation } from './continuations.js';
export { checkThresholds, DEFAULT_THRESHOLDS, verdictOf, type Thresholds } from './thresholds.js';

/** What validation needs of a loaded model (runtime-min's LoadedModel has it). */
export interface ValidateModel extends EvalModel {
  config: EvalModel['config'] & { architecture: string; modelType?: string; bitnetQuantization?: { mode: string } | null };
  source: { kind: string; path: string };
  tokenizer: EvalModel['tokenizer'] & { decode(ids: number[]): string };
  generate(promptIds: number[], options: { maxNewTokens: number; temperature?: number; stopAtEos?: boolean }): number[];
  /** The LM head's precision when it is not the stored float one (runtime-min's lmHead: 'int8'); absent: float. */
  lmHead?: 'float' | 'int8';
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
  /** lmHead: how each model's LM head ran ('int8' only with --lm-head int8), so no figure is misattributed. */
  original: { path: string; kind: string; architecture: string; lmHead: 'float' | 'int8' };
  packed: { path: string; kind: string; lmHead: 'float' | 'int8' };
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


export function validateModels(options: ValidateOptions): ValidationReport {
  const thresholds = checkThresholds({ ...DEFAULT_THRESHOLDS, ...options.thresholds });
  const { original, packed } = options;
  const started = performance.now();
  const text = comparisonText(options);
  const maxPositions = Math.min(original.config.maxPositions, packed.config.maxPositions);
  const limiting = maxPositions === original.config.maxPositions ? original : packed;
  const input = resolveEvalInput(text.ids, options, { maxPositions, path: limiting.source.path }, text.source, text.totalTokens);
  const compareStarted = performance.now();
  const metrics = compareModels(original, packed, input.ids, input, options.onProgress);
  const compareSeconds = (performance.now() - compareStarted) / 1000;
  const continuations = compareContinuations(original, packed, options.prompts ?? text.prompts, options.newTokens ?? 32);
  const tensors = buildTensorTable(original.source.path, packed.source.path);
  return {
    tool: { name: 'tritpack', version: toolVersion() },
    createdAt: new Date().toISOString(),
    original: { path: original.source.path, kind: original.source.kind, architecture: original.config.modelType ?? original.config.architecture, lmHead: original.lmHead ?? 'float' },
    packed: { path: packed.source.path, kind: packed.source.kind, lmHead: packed.lmHead ?? 'float' },
    text: { source: text.source, sha256: text.sha256, totalTokens: input.totalTokens, tokens: input.ids.length, ctx: input.ctx, stride: input.stride, windows: input.windows.length },
    metrics,
    thresholds,
    ...verdictOf(metrics, thresholds),
    ternaryTraining: ternaryTrainingNote(original, tensors),
    continuations,
    tensors,
    seconds: (performance.now() - started) / 1000,
    tokensPerSecond: (2 * tokensRead(input.windows)) / Math.max(compareSeconds, 1e-9),
  };
}

/** The ids both models read, where they came from, and the default prompts (from a text's first lines). */
interface ComparisonText { ids: number[]; totalTokens: number | null; source: string; sha256?: string; prompts: string[] }

/**
 * Tokenizes the text with the original's tokenizer, and refuses a packed model whose tokenizer splits
 * it differently: the comparison is token by token, so both must read the very same ids.
 */
function comparisonText(options: ValidateOptions): ComparisonText {
  const { original, packed } = options;
  if (!('path' in options.text)) {
    return { ids: options.text.ids, totalTokens: options.text.ids.length, source: options.text.label, prompts: [] };
  }
  const source = options.text.path;
  const text = readEvalText(source);
  const tokens = tokenizeText((t) => original.tokenizer.encode(t), text, options.maxTokens);
  const packedIds = packed.tokenizer.encode(tokens.textUsed);
  // A prefix (totalTokens null) was cut to --max-tokens ids after tokenizing: compare those only.
  if ((tokens.totalTokens !== null && packedIds.length !== tokens.ids.length) || tokens.ids.some((id, i) => id !== packedIds[i])) {
    throw new TritpackError(`${packed.source.path}: its tokenizer splits ${source} differently from the original's (${original.source.path}); the models cannot be compared token by token`);
  }
  return {
    ids: tokens.ids, totalTokens: tokens.totalTokens, source, prompts: promptsFromText(text),
    sha256: createHash('sha256').update(readFileSync(source)).digest('hex'),
  };
}

let version: string | undefined;
function toolVersion(): string {
  // package.json sits two levels above both src/validate (tsx) and dist/validate (built).
  version ??= (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  return version;
}
