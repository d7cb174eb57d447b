/**
 * GGUF `tokenizer.ggml.*` metadata → tokenizer.json, tokenizer_config.json and
 * generation_config.json, the reverse of export-gguf-tokenizer (formats.md §2.9).
 *
 * `gpt2` vocabularies carry their merges and map back directly. `llama` (SentencePiece) ones
 * carry scores instead: llama.cpp merges the adjacent pair whose concatenation scores highest,
 * so the BPE merges are rebuilt as every split of a normal token into two vocabulary pieces,
 * ranked by that token's score — the same reconstruction transformers' SentencePiece converter
 * performs, and the behaviour llama.cpp has on the file.
 */
import { GgufTokenType, GgufValueType, type GgufFile } from '../formats/gguf.js';
import { jsonText } from './export-common.js';
import { KNOWN_PRE_REGEXES } from './export-gguf-tokenizer.js';

type Json = Record<string, unknown>;

export interface RebuiltTokenizer {
  files: Record<string, string>;
  ids: { bos_token_id?: number; eos_token_id?: number; pad_token_id?: number };
  warnings: string[];
}

function spmMerges(tokens: string[], scores: number[], types: number[], vocab: Map<string, number>): string[] {
  const candidates: { l: number; r: number; score: number }[] = [];
  tokens.forEach((text, id) => {
    if (types[id] !== GgufTokenType.NORMAL) return;
    const chars = [...text];
    for (let k = 1; k < chars.length; k++) {
      const l = vocab.get(chars.slice(0, k).join(''));
      const r = vocab.get(chars.slice(k).join(''));
      if (l !== undefined && r !== undefined) candidates.push({ l, r, score: scores[id] ?? 0 });
    }
  });
  candidates.sort((a, b) => b.score - a.score || a.l - b.l || a.r - b.r);
  return candidates.map((c) => `${tokens[c.l]} ${tokens[c.r]}`);
}

function template(bos: string | undefined, eos: string | undefined, ids: Map<string, number>): Json {
  const special = (t: string) => ({ SpecialToken: { id: t, type_id: 0 } });
  const single = [...(bos ? [special(bos)] : []), { Sequence: { id: 'A', type_id: 0 } }, ...(eos ? [special(eos)] : [])];
  const pair = [...single, ...(bos ? [special(bos)] : []), { Sequence: { id: 'B', type_id: 1 } }, ...(eos ? [special(eos)] : [])];
  const specials: Json = {};
  for (const t of [bos, eos]) if (t) specials[t] = { id: t, ids: [ids.get(t)], tokens: [t] };
  return { type: 'TemplateProcessing', single, pair, special_tokens: specials };
}

/** The tokenizer facts a GGUF states or implies (llama.cpp's defaults for absent keys). */
interface TokenizerMeta {
  model: 'llama' | 'gpt2';
  tokens: string[];
  types: number[];
  /** token text → first id, without the [PADn] placeholders */
  vocab: Map<string, number>;
  bosId?: number; eosId?: number; unkId?: number; padId?: number;
  addBos: boolean; addEos: boolean;
}

export function rebuildTokenizerFiles(g: GgufFile, config: Json): RebuiltTokenizer {
  const model = g.value('tokenizer.ggml.model', GgufValueType.STRING) as string | undefined;
  const tokens = g.value('tokenizer.ggml.tokens') as string[] | undefined;
  if (model === undefined || tokens === undefined) {
    return { files: {}, ids: {}, warnings: ['the GGUF has no tokenizer metadata: the converted model carries no tokenizer'] };
  }
  if (model !== 'llama' && model !== 'gpt2') {
    return { files: {}, ids: {}, warnings: [`tokenizer model "${model}" is not supported (llama and gpt2 are): the converted model carries no tokenizer`] };
  }
  const meta = readTokenizerMeta(g, model, tokens);
  const warnings: string[] = [];
  const tokenizer = model === 'llama' ? spmTokenizerJson(g, meta) : gpt2TokenizerJson(g, meta, warnings);
  const ids: RebuiltTokenizer['ids'] = {
    ...(meta.bosId !== undefined ? { bos_token_id: meta.bosId } : {}),
    ...(meta.eosId !== undefined ? { eos_token_id: meta.eosId } : {}),
    ...(meta.padId !== undefined ? { pad_token_id: meta.padId } : {}),
  };
  return {
    files: {
      'tokenizer.json': jsonText(tokenizer),
      'tokenizer_config.json': jsonText(tokenizerConfigJson(g, meta, config)),
      'generation_config.json': jsonText({ ...ids }),
    },
    ids,
    warnings,
  };
}

function readTokenizerMeta(g: GgufFile, model: 'llama' | 'gpt2', tokens: string[]): TokenizerMeta {
  const types = (g.value('tokenizer.ggml.token_type') as number[] | undefined) ?? tokens.map(() => GgufTokenType.NORMAL);
  const id = (key: string) => g.value(`tokenizer.ggml.${key}`) as number | undefined;
  const flag = (key: string) => g.value(`tokenizer.ggml.${key}`) as boolean | undefined;
  // [PADn] placeholders fill ids a vocabulary does not define; they are not real tokens.
  const vocab = new Map<string, number>();
  tokens.forEach((t, i) => {
    if (types[i] === GgufTokenType.UNUSED && /^\[PAD\d+\]$/.test(t)) return;
    if (!vocab.has(t)) vocab.set(t, i);
  });
  const llama = model === 'llama';
  return {
    model, tokens, types, vocab,
    bosId: id('bos_token_id') ?? (llama ? 1 : undefined),
    eosId: id('eos_token_id') ?? (llama ? 2 : undefined),
    unkId: id('unknown_token_id') ?? (llama ? 0 : undefined),
    padId: id('padding_token_id'),
    addBos: flag('add_bos_token') ?? llama,
    addEos: flag('add_eos_token') ?? false,
  };
}

/** The text of token `i`, when the vocabulary has one. */
function tokenText(meta: TokenizerMeta, i: number | undefined): string | undefined {
  return i !== undefined && i < meta.tokens.length ? meta.tokens[i] : undefined;
}

/** Control, user-defined (and for SentencePiece, unknown) tokens as tokenizer.json added_tokens. */
function addedTokens(meta: TokenizerMeta): Json[] {
  return meta.tokens
    .map((content, i) => ({ id: i, content, type: meta.types[i] }))
    .filter((t) => t.type === GgufTokenType.CONTROL || t.type === GgufTokenType.USER_DEFINED || (meta.model === 'llama' && t.type === GgufTokenType.UNKNOWN))
    .map((t) => ({ id: t.id, content: t.content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: t.type !== GgufTokenType.USER_DEFINED }));
}

function postProcessor(meta: TokenizerMeta): Json {
  return template(meta.addBos ? tokenText(meta, meta.bosId) : undefined, meta.addEos ? tokenText(meta, meta.eosId) : undefined, meta.vocab);
}

/** SentencePiece-style BPE (▁ for spaces, byte fallback) with merges rebuilt from the scores. */
function spmTokenizerJson(g: GgufFile, meta: TokenizerMeta): Json {
  const scores = (g.value('tokenizer.ggml.scores') as number[] | undefined) ?? meta.tokens.map(() => 0);
  const prefix = (g.value('tokenizer.ggml.add_space_prefix') as boolean | undefined) ?? true;
  return {
    version: '1.0', truncation: null, padding: null, added_tokens: addedTokens(meta),
    normalizer: { type: 'Sequence', normalizers: [...(prefix ? [{ type: 'Prepend', prepend: '\u2581' }] : []), { type: 'Replace', pattern: { String: ' ' }, content: '\u2581' }] },
    pre_tokenizer: null,
    post_processor: postProcessor(meta),
    decoder: { type: 'Sequence', decoders: [{ type: 'Replace', pattern: { String: '\u2581' }, content: ' ' }, { type: 'ByteFallback' }, { type: 'Fuse' }, ...(prefix ? [{ type: 'Strip', content: ' ', start: 1, stop: 0 }] : [])] },
    model: {
      type: 'BPE', dropout: null, unk_token: tokenText(meta, meta.unkId) ?? null, continuing_subword_prefix: null, end_of_word_suffix: null,
      fuse_unk: true, byte_fallback: true, ignore_merges: false,
      vocab: Object.fromEntries(meta.vocab), merges: spmMerges(meta.tokens, scores, meta.types, meta.vocab),
    },
  };
}

/** GPT-2 byte-level BPE with its merges, and the split regex of a known `tokenizer.ggml.pre`. */
function gpt2TokenizerJson(g: GgufFile, meta: TokenizerMeta, warnings: string[]): Json {
  const pre = (g.value('tokenizer.ggml.pre', GgufValueType.STRING) as string | undefined) ?? 'default';
  const regex = KNOWN_PRE_REGEXES.find(([, n]) => n === pre)?.[0];
  if (regex === undefined && pre !== 'gpt-2' && pre !== 'default') warnings.push(`pre-tokenizer "${pre}" is not known here: rebuilt with GPT-2's byte-level split`);
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: regex === undefined };
  const merges = (g.value('tokenizer.ggml.merges') as string[] | undefined) ?? [];
  return {
    version: '1.0', truncation: null, padding: null, added_tokens: addedTokens(meta), normalizer: null,
    pre_tokenizer: regex === undefined ? byteLevel : { type: 'Sequence', pretokenizers: [{ type: 'Split', pattern: { Regex: regex }, behavior: 'Isolated', invert: false }, byteLevel] },
    post_processor: meta.addBos || meta.addEos ? postProcessor(meta) : { ...byteLevel, use_regex: true },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null,
      fuse_unk: false, byte_fallback: false, ignore_merges: pre === 'llama-bpe',
      vocab: Object.fromEntries(meta.vocab), merges,
    },
  };
}

function tokenizerConfigJson(g: GgufFile, meta: TokenizerMeta, config: Json): Json {
  const text = (i: number | undefined) => tokenText(meta, i);
  const tokenizerConfig: Json = {
    add_bos_token: meta.addBos, add_eos_token: meta.addEos,
    ...(text(meta.bosId) !== undefined ? { bos_token: text(meta.bosId) } : {}),
    ...(text(meta.eosId) !== undefined ? { eos_token: text(meta.eosId) } : {}),
    ...(meta.model === 'llama' && text(meta.unkId) !== undefined ? { unk_token: text(meta.unkId) } : {}),
    ...(text(meta.padId) !== undefined ? { pad_token: text(meta.padId) } : {}),
    clean_up_tokenization_spaces: false,
    model_max_length: config['max_position_embeddings'],
    tokenizer_class: 'PreTrainedTokenizerFast',
  };
  const chat = g.value('tokenizer.chat_template');
  if (typeof chat === 'string') tokenizerConfig['chat_template'] = chat;
  return tokenizerConfig;
}
