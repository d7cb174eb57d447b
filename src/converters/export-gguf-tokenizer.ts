/**
 * tokenizer.json (+ tokenizer_config.json) → GGUF `tokenizer.ggml.*` metadata (formats.md §2.9).
 *
 * Two families are supported, the ones llama.cpp's loader knows as `llama` and `gpt2`:
 *  - SentencePiece-style BPE (byte_fallback, ▁ as the space marker — Llama 1/2, TinyStories):
 *    tokenizer model `llama`. llama.cpp's SPM tokenizer merges the adjacent pair whose
 *    concatenation has the highest score, so the score of a token is minus the rank of the
 *    merge that creates it: earlier merges win, as in the HF BPE model. Tokens no merge creates
 *    (single characters, bytes, specials) score below every merge, as in SentencePiece.
 *  - GPT-2 byte-level BPE (Llama 3, Qwen2, GPT-2): tokenizer model `gpt2` with the merges and a
 *    `tokenizer.ggml.pre` chosen by recognising the pre-tokenizer's split regex.
 */
import { TritpackError } from '../errors.js';
import { GgufTokenType, GgufValueType, gguf, type GgufValue } from '../formats/gguf.js';

type Json = Record<string, unknown>;

export interface GgufTokenizer { model: 'llama' | 'gpt2'; pre: string; kv: [string, GgufValue][]; warnings: string[] }

/** Split regexes of known byte-level pre-tokenizers → llama.cpp's `tokenizer.ggml.pre` name. */
export const KNOWN_PRE_REGEXES: [string, string][] = [
  ["(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", 'llama-bpe'],
  ["(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", 'qwen2'],
];

function parseJson(name: string, text: string | undefined): Json | undefined {
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text) as Json;
  } catch (err) {
    throw new TritpackError(`${name} in the .tpk is not valid JSON (${(err as Error).message})`);
  }
}

/** Every `type` in a (possibly Sequence-nested) normalizer / pre-tokenizer / decoder object. */
function components(node: unknown): Json[] {
  if (node === null || typeof node !== 'object') return [];
  const n = node as Json;
  const children = (n['normalizers'] ?? n['pretokenizers'] ?? n['decoders'] ?? n['processors']) as unknown[] | undefined;
  return [n, ...(Array.isArray(children) ? children.flatMap(components) : [])];
}

function tokenId(vocab: Map<string, number>, token: unknown): number | undefined {
  const content = typeof token === 'string' ? token : (token as Json | null)?.['content'];
  return typeof content === 'string' ? vocab.get(content) : undefined;
}

function firstId(value: unknown): number | undefined {
  if (typeof value === 'number') return value;
  if (Array.isArray(value) && typeof value[0] === 'number') return value[0];
  return undefined;
}

export function ggufTokenizer(files: Record<string, string>, config: Json, vocabSize: number): GgufTokenizer {
  const tok = parseJson('tokenizer.json', files['tokenizer.json']);
  if (tok === undefined) throw new TritpackError('the .tpk holds no tokenizer.json, which GGUF export needs for the tokenizer metadata');
  const tcfg = parseJson('tokenizer_config.json', files['tokenizer_config.json']) ?? {};
  const model = tok['model'] as Json | undefined;
  if (model?.['type'] !== 'BPE') throw new TritpackError(`GGUF export supports BPE tokenizers only; tokenizer.json has a ${String(model?.['type'])} model`);
  const table = tokenTable(tok, model, vocabSize);
  const warnings: string[] = [];
  const byteLevel = components(tok['pre_tokenizer']).some((c) => c['type'] === 'ByteLevel');
  const vocabulary = byteLevel ? gpt2Kv(tok, table, warnings) : spmKv(tok, model, table, warnings);
  const kv = [...vocabulary.kv, ...specialTokenKv(tok, model, tcfg, config, table)];
  return { model: byteLevel ? 'gpt2' : 'llama', pre: vocabulary.pre, kv, warnings };
}

/** The vocabulary as GGUF lists it: one entry per embedding row, [PADn] UNUSED where tokenizer.json has no token. */
interface TokenTable {
  vocab: Map<string, number>;
  tokens: string[];
  types: number[];
  merges: string[];
}

function tokenTable(tok: Json, model: Json, vocabSize: number): TokenTable {
  const vocab = new Map<string, number>(Object.entries(model['vocab'] as Record<string, number>));
  const added = (tok['added_tokens'] as Json[] | undefined) ?? [];
  for (const a of added) vocab.set(a['content'] as string, a['id'] as number);
  let size = vocabSize;
  for (const id of vocab.values()) size = Math.max(size, id + 1);
  if (size !== vocabSize) throw new TritpackError(`tokenizer.json has ids up to ${size - 1}, but the model's vocabulary (embedding rows) is ${vocabSize}`);
  const tokens: string[] = Array.from({ length: size }, (_, i) => `[PAD${i}]`);
  const types: number[] = new Array(size).fill(GgufTokenType.UNUSED);
  for (const [text, id] of vocab) { tokens[id] = text; types[id] = GgufTokenType.NORMAL; }
  for (const a of added) types[a['id'] as number] = a['special'] ? GgufTokenType.CONTROL : GgufTokenType.USER_DEFINED;
  const merges = ((model['merges'] as (string | [string, string])[] | undefined) ?? []).map((m) => (Array.isArray(m) ? m.join(' ') : m));
  return { vocab, tokens, types, merges };
}

/** GPT-2 byte-level BPE: tokenizer model `gpt2` with its merges and the recognised pre-tokenizer. */
function gpt2Kv(tok: Json, t: TokenTable, warnings: string[]): { pre: string; kv: [string, GgufValue][] } {
  const pre = byteLevelPre(tok, warnings);
  const kv: [string, GgufValue][] = [
    ['tokenizer.ggml.model', gguf.str('gpt2')], ['tokenizer.ggml.pre', gguf.str(pre)],
    ['tokenizer.ggml.tokens', gguf.array(GgufValueType.STRING, t.tokens)],
    ['tokenizer.ggml.token_type', gguf.array(GgufValueType.INT32, t.types)],
  ];
  if (t.merges.length > 0) kv.push(['tokenizer.ggml.merges', gguf.array(GgufValueType.STRING, t.merges)]);
  return { pre, kv };
}

/** SentencePiece-style BPE: tokenizer model `llama`, merges expressed as scores, byte tokens typed BYTE. */
function spmKv(tok: Json, model: Json, t: TokenTable, warnings: string[]): { pre: string; kv: [string, GgufValue][] } {
  const spm = model['byte_fallback'] === true || components(tok['normalizer']).some((c) => c['type'] === 'Replace' && c['content'] === '\u2581')
    || components(tok['pre_tokenizer']).some((c) => c['type'] === 'Metaspace');
  if (!spm) throw new TritpackError('GGUF export: tokenizer.json is neither byte-level BPE nor SentencePiece-style BPE (no ByteLevel pre-tokenizer, no byte_fallback, no ▁ space marker)');
  const types = [...t.types];
  const unk = typeof model['unk_token'] === 'string' ? t.vocab.get(model['unk_token']) : undefined;
  if (unk !== undefined) types[unk] = GgufTokenType.UNKNOWN;
  for (const [text, id] of t.vocab) if (/^<0x[0-9A-Fa-f]{2}>$/.test(text)) types[id] = GgufTokenType.BYTE;
  // score = −(rank of the merge that creates the token); the rest below all merges, by id
  const scores: number[] = t.tokens.map((_, id) => -(t.merges.length + id));
  t.merges.forEach((m, rank) => {
    const id = t.vocab.get(m.replace(' ', ''));
    if (id !== undefined && scores[id]! < 0 - rank) scores[id] = 0 - rank;
  });
  const addSpacePrefix = components(tok['normalizer']).some((c) => c['type'] === 'Prepend' && c['prepend'] === '\u2581')
    || components(tok['pre_tokenizer']).some((c) => c['type'] === 'Metaspace' && c['prepend_scheme'] !== 'never' && c['add_prefix_space'] !== false);
  if (!t.vocab.has('<0x0A>') && !t.vocab.has('\n')) warnings.push('the vocabulary has no newline token (<0x0A>); llama.cpp will use the padding id for newlines');
  return {
    pre: 'default',
    kv: [
      ['tokenizer.ggml.model', gguf.str('llama')], ['tokenizer.ggml.pre', gguf.str('default')],
      ['tokenizer.ggml.tokens', gguf.array(GgufValueType.STRING, t.tokens)],
      ['tokenizer.ggml.scores', gguf.array(GgufValueType.FLOAT32, scores)],
      ['tokenizer.ggml.token_type', gguf.array(GgufValueType.INT32, types)],
      ['tokenizer.ggml.add_space_prefix', gguf.bool(addSpacePrefix)],
    ],
  };
}

/** BOS/EOS/UNK/PAD ids (config.json first, then tokenizer_config.json), add-BOS/EOS flags and the chat template. */
function specialTokenKv(tok: Json, model: Json, tcfg: Json, config: Json, t: TokenTable): [string, GgufValue][] {
  const ids: [string, number | undefined][] = [
    ['bos_token_id', firstId(config['bos_token_id']) ?? tokenId(t.vocab, tcfg['bos_token'])],
    ['eos_token_id', firstId(config['eos_token_id']) ?? tokenId(t.vocab, tcfg['eos_token'])],
    ['unknown_token_id', typeof model['unk_token'] === 'string' ? t.vocab.get(model['unk_token']) : tokenId(t.vocab, tcfg['unk_token'])],
    ['padding_token_id', firstId(config['pad_token_id']) ?? tokenId(t.vocab, tcfg['pad_token'])],
  ];
  const kv: [string, GgufValue][] = [];
  for (const [key, id] of ids) if (id !== undefined && id >= 0 && id < t.tokens.length) kv.push([`tokenizer.ggml.${key}`, gguf.u32(id)]);
  const addBos = typeof tcfg['add_bos_token'] === 'boolean' ? tcfg['add_bos_token'] : postProcessorAddsBos(tok, ids[0]![1]);
  if (addBos !== undefined) kv.push(['tokenizer.ggml.add_bos_token', gguf.bool(addBos)]);
  if (typeof tcfg['add_eos_token'] === 'boolean') kv.push(['tokenizer.ggml.add_eos_token', gguf.bool(tcfg['add_eos_token'])]);
  if (typeof tcfg['chat_template'] === 'string' && tcfg['chat_template'].length > 0) kv.push(['tokenizer.chat_template', gguf.str(tcfg['chat_template'])]);
  return kv;
}

/** Whether the post-processor's single-sequence template starts with the BOS token. */
function postProcessorAddsBos(tok: Json, bos: number | undefined): boolean | undefined {
  const pp = components(tok['post_processor']).find((c) => c['type'] === 'TemplateProcessing');
  if (pp === undefined || bos === undefined) return undefined;
  const first = (pp['single'] as Json[] | undefined)?.[0]?.['SpecialToken'] as Json | undefined;
  const special = first !== undefined ? (pp['special_tokens'] as Record<string, Json> | undefined)?.[first['id'] as string] : undefined;
  return Array.isArray(special?.['ids']) && (special['ids'] as number[])[0] === bos;
}

function byteLevelPre(tok: Json, warnings: string[]): string {
  const splits = components(tok['pre_tokenizer']).filter((c) => c['type'] === 'Split');
  const regex = splits.map((s) => (s['pattern'] as Json | undefined)?.['Regex']).find((r): r is string => typeof r === 'string');
  if (regex === undefined) {
    const bl = components(tok['pre_tokenizer']).find((c) => c['type'] === 'ByteLevel');
    if (bl?.['use_regex'] !== false) return 'gpt-2';
  } else {
    const known = KNOWN_PRE_REGEXES.find(([r]) => r === regex);
    if (known) return known[1];
  }
  warnings.push('unrecognised byte-level pre-tokenizer: wrote tokenizer.ggml.pre = "default"; llama.cpp will pre-tokenize with its default regex, which may split text differently');
  return 'default';
}
