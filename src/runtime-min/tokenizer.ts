/**
 * The model's tokenizer, from tokenizer.json (+ tokenizer_config.json) via @huggingface/tokenizers,
 * which follows the Rust `tokenizers` library on tokenizer.json. Loaded from a checkpoint directory
 * or from the verbatim texts a .tpk embeds.
 */
import { Tokenizer } from '@huggingface/tokenizers';
import { FormatError } from '../errors.js';

export interface RuntimeTokenizer {
  /** Token ids of `text`; special tokens (BOS…) are added unless `addSpecialTokens` is false. */
  encode(text: string, options?: { addSpecialTokens?: boolean }): number[];
  /** Text of `ids`; special tokens are kept unless `skipSpecialTokens` is true. */
  decode(ids: number[], options?: { skipSpecialTokens?: boolean }): string;
  /** The id of a token string (e.g. a special token), or undefined. */
  tokenToId(token: string): number | undefined;
}

/** Build a tokenizer from the texts of tokenizer.json and tokenizer_config.json; `origin` names where they came from. */
export function tokenizerFromJson(tokenizerJson: string, tokenizerConfigJson: string | undefined, origin: string): RuntimeTokenizer {
  const parse = (text: string, name: string): object => {
    try {
      const value: unknown = JSON.parse(text);
      if (typeof value !== 'object' || value === null) throw new Error('not a JSON object');
      return value;
    } catch (err) {
      throw new FormatError(`${origin}/${name}`, `invalid JSON (${(err as Error).message})`);
    }
  };
  const json = parse(tokenizerJson, 'tokenizer.json');
  const config = tokenizerConfigJson === undefined ? {} : parse(tokenizerConfigJson, 'tokenizer_config.json');
  let tokenizer: Tokenizer;
  try {
    tokenizer = new Tokenizer(json, config);
  } catch (err) {
    throw new FormatError(`${origin}/tokenizer.json`, `cannot build the tokenizer: ${(err as Error).message}`);
  }
  return {
    encode: (text, options = {}) => tokenizer.encode(text, { add_special_tokens: options.addSpecialTokens ?? true }).ids,
    decode: (ids, options = {}) => tokenizer.decode(ids, { skip_special_tokens: options.skipSpecialTokens ?? false }),
    tokenToId: (token) => tokenizer.token_to_id(token),
  };
}
