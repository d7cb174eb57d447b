/**
 * Validation from paths, as `tritpack validate` and `tritpack convert --validate` run it: check the
 * options, load both models, compare, then write the Markdown report and/or embed the report in
 * the packed .tpk's header (where `push` finds it for the model card).
 */
import { renameSync, writeFileSync, unlinkSync, statSync } from 'node:fs';
import path from 'node:path';
import { TritpackError, EXIT_FAILED_GATE } from '../errors.js';
import { updateTpkHeader } from '../formats/tpk.js';
import { loadModel, type LmHeadPrecision, type LoadedModel } from '../runtime-min/index.js';
import type { ProgressCallback } from './evaluate.js';
import { renderReportMarkdown } from './report.js';
import { isFile } from './tensors.js';
import { readPromptsFile } from './continuations.js';
import { checkThresholds, DEFAULT_THRESHOLDS, type Thresholds } from './thresholds.js';
import { validateModels, type ValidationReport } from './validate.js';
import type { EvalInputOptions } from './windows.js';

export interface RunValidationOptions extends EvalInputOptions {
  /** The original: an HF checkpoint directory (or a .tpk). */
  original: string;
  /** The packed model: a .tpk (or any model loadModel opens). */
  packed: string;
  /** Evaluation text file (UTF-8). */
  text: string;
  /** A file of continuation prompts, one per line; default: the text's first lines. */
  promptsFile?: string;
  /** Tokens generated per continuation (default 32). */
  newTokens?: number;
  thresholds?: Partial<Thresholds>;
  /** Write the Markdown report here (temp file + rename). */
  reportPath?: string;
  /** Store the report (with its Markdown) in the packed .tpk's header as `validation`. */
  embed?: boolean;
  backend?: string;
  /** kernel threads of the native and wasm backends (default: all cores) */
  threads?: number;
  /** The packed model's LM head precision (default 'float'); the original always runs its float head. */
  packedLmHead?: LmHeadPrecision;
  onProgress?: ProgressCallback;
  /** Told what runs next, in words ("loading the original"), for status lines. */
  onStage?: (stage: string) => void;
}

export interface RunValidationResult {
  report: ValidationReport;
  markdown: string;
  /** 0 when the verdict is PASS, 1 (EXIT_FAILED_GATE) when FAIL. */
  exitCode: 0 | 1;
  reportPath?: string;
  embedded: boolean;
}

/** What `--embed` stores in the .tpk header's `validation` field: the report plus its rendered Markdown. */
export type EmbeddedValidation = ValidationReport & { markdown: string };

export async function runValidation(options: RunValidationOptions): Promise<RunValidationResult> {
  // Cheap usage checks first, before minutes of model loading.
  const thresholds = checkThresholds({ ...DEFAULT_THRESHOLDS, ...options.thresholds });
  if (options.newTokens !== undefined && !(Number.isInteger(options.newTokens) && options.newTokens >= 0)) {
    throw new TritpackError(`--new-tokens must be a non-negative integer, got ${options.newTokens}`);
  }
  if (options.embed && !(options.packed.endsWith('.tpk') && isFile(options.packed))) {
    throw new TritpackError(`--embed writes the report into a .tpk, but ${options.packed} is not a .tpk file`);
  }
  if (options.reportPath !== undefined && !isDirectory(path.dirname(path.resolve(options.reportPath)))) {
    throw new TritpackError(`--report ${options.reportPath}: its directory does not exist`);
  }
  const prompts = options.promptsFile === undefined ? undefined : readPromptsFile(options.promptsFile);

  let original: LoadedModel | undefined;
  let packed: LoadedModel | undefined;
  let report: ValidationReport;
  try {
    options.onStage?.('loading the original');
    original = await loadModel(options.original, { backend: options.backend, threads: options.threads });
    options.onStage?.('loading the packed model');
    packed = await loadModel(options.packed, { backend: options.backend, threads: options.threads, lmHead: options.packedLmHead });
    options.onStage?.('tokenizing the text');
    report = validateModels({
      original, packed, text: { path: options.text }, ctx: options.ctx, stride: options.stride, maxTokens: options.maxTokens,
      prompts, newTokens: options.newTokens, thresholds, onProgress: options.onProgress,
    });
  } finally {
    original?.close();
    packed?.close();
  }

  options.onStage?.('writing the report');
  const markdown = renderReportMarkdown(report);
  if (options.reportPath !== undefined) writeTextAtomic(options.reportPath, markdown);
  if (options.embed) {
    // JSON round trip: the .tpk header is plain msgpack, which has no `undefined` (and NaN reads badly elsewhere).
    const validation = JSON.parse(JSON.stringify({ ...report, markdown } satisfies EmbeddedValidation)) as EmbeddedValidation;
    updateTpkHeader(options.packed, { validation });
  }
  return {
    report, markdown, exitCode: report.verdict === 'PASS' ? 0 : EXIT_FAILED_GATE as 1,
    reportPath: options.reportPath, embedded: options.embed ?? false,
  };
}

function writeTextAtomic(file: string, text: string): void {
  const temp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  try {
    writeFileSync(temp, text);
    renameSync(temp, file);
  } catch (err) {
    try { unlinkSync(temp); } catch { /* never created */ }
    throw new TritpackError(`${file}: cannot write the report (${(err as NodeJS.ErrnoException).code ?? String(err)})`, { cause: err });
  }
}

function isDirectory(p: string): boolean {
  try { return statSync(p).isDirectory(); } catch { return false; }
}
