/**
 * Greedy continuations of a few prompts by both models, side by side, with the first token where
 * they part (what a reader of the report looks at to see what a drift in the numbers means).
 */
import type { ValidateModel } from './validate.js';
import { readEvalText } from './windows.js';

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

/** Greedy continuations of each prompt by both models; none at all when `newTokens` is 0. */
export function compareContinuations(original: ValidateModel, packed: ValidateModel, prompts: string[], newTokens: number): Continuation[] {
  if (newTokens === 0) return [];
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
