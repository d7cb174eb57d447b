/**
 * Evaluation text and windows. A text is read whole as strict UTF-8, tokenized (with the
 * tokenizer's special tokens, so BOS comes first as in the references), optionally cut to
 * --max-tokens ids, then covered by causal windows of --ctx tokens that slide by --stride, as in
 * Hugging Face's "Perplexity of fixed-length models" guide: every token is scored at most once,
 * with up to ctx − stride tokens of context carried over from the previous window.
 */
import { readFileSync } from 'node:fs';
import { FormatError, TritpackError } from '../errors.js';

/** One causal window: the model reads ids[start, end); positions [from, to) are the ones scored here. */
export interface EvalWindow {
  start: number;
  end: number;
  /** First position (absolute index into ids) whose logits this window scores. */
  from: number;
  /** One past the last scored position. Position p predicts ids[p + 1] when p + 1 < ids.length. */
  to: number;
}

export interface WindowOptions { ctx: number; stride: number }

/**
 * Windows over `tokenCount` ids. Window k reads [k·stride, min(k·stride + ctx, n)); it scores the
 * targets not scored before — those in [max(previous end, start + 1), end) — at the positions one
 * before them. The last window also scores its final position (which has no target), so
 * distribution metrics (KL, top-1) cover every position of a single window, as the references do.
 * With stride = ctx the first token of each later window has no context and is not scored (the
 * guide's behaviour); a smaller stride scores every token.
 */
export function planWindows(tokenCount: number, options: WindowOptions): EvalWindow[] {
  const { ctx, stride } = options;
  if (!Number.isInteger(ctx) || ctx < 2) throw new RangeError(`ctx must be an integer ≥ 2, got ${ctx}`);
  if (!Number.isInteger(stride) || stride < 1 || stride > ctx) throw new RangeError(`stride must be an integer in 1..ctx, got ${stride}`);
  if (tokenCount < ctx) throw new RangeError(`${tokenCount} tokens is fewer than one window of ${ctx}`);
  const windows: EvalWindow[] = [];
  let previousEnd = 0;
  for (let start = 0; ; start += stride) {
    const end = Math.min(start + ctx, tokenCount);
    const from = Math.max(previousEnd, start + 1) - 1;
    const to = end === tokenCount ? end : end - 1;
    if (to > from) windows.push({ start, end, from, to });
    previousEnd = end;
    if (end === tokenCount) break;
  }
  return windows;
}

/** Reads an evaluation text: strict UTF-8, not empty. Errors name the file. */
export function readEvalText(path: string): string {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (err) {
    throw new FormatError(path, `cannot read the text file (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  if (bytes.length === 0) throw new FormatError(path, 'the text file is empty');
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new FormatError(path, `is not valid UTF-8 (first bad byte at offset ${firstInvalidUtf8Offset(bytes)}); evaluation texts must be UTF-8`);
  }
  if (text.trim().length === 0) throw new FormatError(path, 'the text file holds only whitespace');
  return text;
}

/** Byte offset of the first byte that breaks UTF-8 (for the error message only). */
function firstInvalidUtf8Offset(bytes: Uint8Array): number {
  let lo = 0;
  let hi = bytes.length;
  // The longest prefix that decodes, allowing a sequence cut at its end (stream mode).
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    try { new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(0, mid), { stream: true }); lo = mid; } catch { hi = mid - 1; }
  }
  // If that prefix ends inside a multi-byte sequence, the sequence's lead byte is the culprit.
  let lead = lo;
  while (lead > 0 && (bytes[lead - 1]! & 0xc0) === 0x80) lead--;
  if (lead > 0 && bytes[lead - 1]! >= 0xc0) {
    const first = bytes[lead - 1]!;
    const length = first >= 0xf0 ? 4 : first >= 0xe0 ? 3 : 2;
    if (lo - (lead - 1) < length) return lead - 1;
  }
  return lo;
}

export interface EvalInputOptions { ctx?: number; stride?: number; maxTokens?: number }
/** `totalTokens` is null when only a prefix of the text was tokenized (see tokenizeText). */
export interface ResolvedEvalInput { ids: number[]; totalTokens: number | null; ctx: number; stride: number; windows: EvalWindow[] }

export interface TokenizedText {
  ids: number[];
  /** Tokens in the whole text, or null when only a prefix was tokenized. */
  totalTokens: number | null;
  /** The part of the text that was tokenized. */
  textUsed: string;
}

/** Tokens past --max-tokens that a prefix must yield before its first --max-tokens ids are trusted. */
const PREFIX_MARGIN_TOKENS = 256;

/**
 * Tokenizes a text whole, BOS first. With --max-tokens, tokenizes growing prefixes cut at a line
 * break instead, and stops once a prefix yields comfortably more ids than needed: a 1 MB corpus
 * then costs what its first few kB cost. Tokenization is local (a cut can only change the last
 * few ids before it), so the first maxTokens ids of such a prefix are those of the whole text.
 */
export function tokenizeText(encode: (text: string) => number[], text: string, maxTokens?: number): TokenizedText {
  if (maxTokens !== undefined) {
    for (let chars = Math.max(4096, maxTokens * 8); chars < text.length; chars *= 2) {
      const lineEnd = text.lastIndexOf('\n', chars);
      const textUsed = text.slice(0, lineEnd > chars / 2 ? lineEnd + 1 : chars);
      const ids = encode(textUsed);
      if (ids.length >= maxTokens + PREFIX_MARGIN_TOKENS) return { ids: ids.slice(0, maxTokens), totalTokens: null, textUsed };
    }
  }
  const ids = encode(text);
  return { ids, totalTokens: ids.length, textUsed: text };
}

/** The default window: 512 tokens, or the model's maximum if it is smaller. */
export const DEFAULT_CTX = 512;

/**
 * Checks window options against the model and the ids, cuts to --max-tokens and plans windows.
 * `source` names what the ids came from (the text file) and `modelPath` the model, for messages.
 */
export function resolveEvalInput(
  allIds: number[], options: EvalInputOptions, model: { maxPositions: number; path: string }, source: string,
  totalTokens: number | null = allIds.length,
): ResolvedEvalInput {
  const ctx = options.ctx ?? Math.min(DEFAULT_CTX, model.maxPositions);
  if (!Number.isInteger(ctx) || ctx < 2) throw new TritpackError(`--ctx must be an integer ≥ 2, got ${ctx}`);
  if (ctx > model.maxPositions) {
    throw new TritpackError(`--ctx ${ctx} is beyond the ${model.maxPositions} positions ${model.path} supports (max_position_embeddings)`);
  }
  const stride = options.stride ?? ctx;
  if (!Number.isInteger(stride) || stride < 1 || stride > ctx) throw new TritpackError(`--stride must be an integer in 1..${ctx} (the --ctx), got ${stride}`);
  const maxTokens = options.maxTokens;
  if (maxTokens !== undefined) {
    if (!Number.isInteger(maxTokens) || maxTokens < 1) throw new TritpackError(`--max-tokens must be a positive integer, got ${maxTokens}`);
    if (maxTokens < ctx) throw new TritpackError(`--max-tokens ${maxTokens} is less than one window (--ctx ${ctx})`);
  }
  const ids = maxTokens !== undefined && allIds.length > maxTokens ? allIds.slice(0, maxTokens) : allIds;
  if (ids.length < ctx) {
    throw new FormatError(source, `is ${ids.length} tokens long, shorter than one window of ${ctx} (--ctx); use a longer text or a smaller --ctx`);
  }
  return { ids, totalTokens, ctx, stride, windows: planWindows(ids.length, { ctx, stride }) };
}
