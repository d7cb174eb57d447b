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
import { KNOWN_PRE_REGEXES } from './export-gguf-tokenizer.js';

type Json = Record<string, unknown>;

export interface RebuiltTokenizer {
  files: Record<string, string>;
  ids: { bos_token_id?: number; eos_token_id?: number; pad_token_id?: number };
  warnings: string[];
}

const json = (v: unknown): string => `${JSON.stringify(v, null, 2)}\n`;

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

export function rebuildTokenizerFiles(g: GgufFile, config: Json): RebuiltTokenizer {
  const warnings: string[] = [];
  const model = g.value('tokenizer.ggml.model', GgufValueType.STRING) as string | undefined;
  const tokens = g.value('tokenizer.ggml.tokens') as string[] | undefined;
  if (model === undefined || tokens === undefined) {
    warnings.push('the GGUF has no tokenizer metadata: the converted model carries no tokenizer');
    return { files: {}, ids: {}, warnings };
  }
  if (model !== 'llama' && model !== 'gpt2') {
    warnings.push(`tokenizer model "${model}" is not supported (llama and gpt2 are): the converted model carries no tokenizer`);
    return { files: {}, ids: {}, warnings };
  }
  const types = (g.value('tokenizer.ggml.token_type') as number[] | undefined) ?? tokens.map(() => GgufTokenType.NORMAL);
  const id = (key: string) => g.value(`tokenizer.ggml.${key}`) as number | undefined;
  const flag = (key: string) => g.value(`tokenizer.ggml.${key}`) as boolean | undefined;
  const bosId = id('bos_token_id') ?? (model === 'llama' ? 1 : undefined);
  const eosId = id('eos_token_id') ?? (model === 'llama' ? 2 : undefined);
  const unkId = id('unknown_token_id') ?? (model === 'llama' ? 0 : undefined);
  const padId = id('padding_token_id');
  const addBos = flag('add_bos_token') ?? model === 'llama';
  const addEos = flag('add_eos_token') ?? false;

  // [PADn] placeholders fill ids a vocabulary does not define; they are not real tokens.
  const vocab = new Map<string, number>();
  tokens.forEach((t, i) => {
    if (types[i] === GgufTokenType.UNUSED && /^\[PAD\d+\]$/.test(t)) return;
    if (!vocab.has(t)) vocab.set(t, i);
  });
  const added = tokens
    .map((content, i) => ({ id: i, content, type: types[i] }))
    .filter((t) => t.type === GgufTokenType.CONTROL || t.type === GgufTokenType.USER_DEFINED || (model === 'llama' && t.type === GgufTokenType.UNKNOWN))
    .map((t) => ({ id: t.id, content: t.content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: t.type !== GgufTokenType.USER_DEFINED }));
  const name = (i: number | undefined) => (i !== undefined && i < tokens.length ? tokens[i] : undefined);

  let tokenizer: Json;
  if (model === 'llama') {
    const scores = (g.value('tokenizer.ggml.scores') as number[] | undefined) ?? tokens.map(() => 0);
    const prefix = flag('add_space_prefix') ?? true;
    tokenizer = {
      version: '1.0', truncation: null, padding: null, added_tokens: added,
      normalizer: { type: 'Sequence', normalizers: [...(prefix ? [{ type: 'Prepend', prepend: '\u2581' }] : []), { type: 'Replace', pattern: { String: ' ' }, content: '\u2581' }] },
      pre_tokenizer: null,
      post_processor: template(addBos ? name(bosId) : undefined, addEos ? name(eosId) : undefined, vocab),
      decoder: { type: 'Sequence', decoders: [{ type: 'Replace', pattern: { String: '\u2581' }, content: ' ' }, { type: 'ByteFallback' }, { type: 'Fuse' }, ...(prefix ? [{ type: 'Strip', content: ' ', start: 1, stop: 0 }] : [])] },
      model: {
        type: 'BPE', dropout: null, unk_token: name(unkId) ?? null, continuing_subword_prefix: null, end_of_word_suffix: null,
        fuse_unk: true, byte_fallback: true, ignore_merges: false,
        vocab: Object.fromEntries(vocab), merges: spmMerges(tokens, scores, types, vocab),
      },
    };
  } else {
    const pre = (g.value('tokenizer.ggml.pre', GgufValueType.STRING) as string | undefined) ?? 'default';
    const regex = KNOWN_PRE_REGEXES.find(([, n]) => n === pre)?.[0];
    if (regex === undefined && pre !== 'gpt-2' && pre !== 'default') warnings.push(`pre-tokenizer "${pre}" is not known here: rebuilt with GPT-2's byte-level split`);
    const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: regex === undefined };
    const merges = (g.value('tokenizer.ggml.merges') as string[] | undefined) ?? [];
    tokenizer = {
      version: '1.0', truncation: null, padding: null, added_tokens: added, normalizer: null,
      pre_tokenizer: regex === undefined ? byteLevel : { type: 'Sequence', pretokenizers: [{ type: 'Split', pattern: { Regex: regex }, behavior: 'Isolated', invert: false }, byteLevel] },
      post_processor: addBos || addEos ? template(addBos ? name(bosId) : undefined, addEos ? name(eosId) : undefined, vocab) : { ...byteLevel, use_regex: true },
      decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
      model: {
        type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null,
        fuse_unk: false, byte_fallback: false, ignore_merges: pre === 'llama-bpe',
        vocab: Object.fromEntries(vocab), merges,
      },
    };
  }

  const tokenizerConfig: Json = {
    add_bos_token: addBos, add_eos_token: addEos,
    ...(name(bosId) !== undefined ? { bos_token: name(bosId) } : {}),
    ...(name(eosId) !== undefined ? { eos_token: name(eosId) } : {}),
    ...(model === 'llama' && name(unkId) !== undefined ? { unk_token: name(unkId) } : {}),
    ...(name(padId) !== undefined ? { pad_token: name(padId) } : {}),
    clean_up_tokenization_spaces: false,
    model_max_length: config['max_position_embeddings'],
    tokenizer_class: 'PreTrainedTokenizerFast',
  };
  const chat = g.value('tokenizer.chat_template');
  if (typeof chat === 'string') tokenizerConfig['chat_template'] = chat;
  const ids: RebuiltTokenizer['ids'] = {
    ...(bosId !== undefined ? { bos_token_id: bosId } : {}),
    ...(eosId !== undefined ? { eos_token_id: eosId } : {}),
    ...(padId !== undefined ? { pad_token_id: padId } : {}),
  };
  return {
    files: {
      'tokenizer.json': json(tokenizer),
      'tokenizer_config.json': json(tokenizerConfig),
      'generation_config.json': json({ ...ids }),
    },
    ids,
    warnings,
  };
}
