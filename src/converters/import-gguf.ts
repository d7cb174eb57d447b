/**
 * A GGUF file (arch `llama` or `bitnet`; tensors TQ1_0, TQ2_0, F16, BF16 or F32) as a tensor
 * source for the convert pipeline — the reverse of export-gguf: names mapped back to Hugging
 * Face, dims reversed to PyTorch shapes, llama's Q/K row permutation undone, and config.json plus
 * tokenizer files rebuilt from the metadata.
 *
 * TQ tensors are ternary already: codes exact, and their per-256-block d values become the
 * coarsest tritpack scale layout that holds them (one γ per tensor when every block that holds a
 * non-zero shares d, as in our own export; else per row; else per 256-group). Float projection
 * tensors whose values are {−a, 0, +a} (a TQ export's F16 fallback) are recognised as ternary too.
 */
import path from 'node:path';
import { FormatError, TritpackError } from '../errors.js';
import { dtypeByteSize, toFloat32, fromFloat32, type DType, type FloatDType } from '../formats/dtype.js';
import { GgmlType, GgufFile, GgufValueType, ggmlTypeName, type GgufTensorInfo } from '../formats/gguf.js';
import { decodeTQ, type TQType } from '../formats/ternary.js';
import type { TpkScale } from '../formats/tpk.js';
import { ggufToHfName, permuteQKRows } from './export-gguf.js';
import { rebuildTokenizerFiles } from './import-gguf-tokenizer.js';
import { dequantizeTernary, jsonText } from './export-common.js';
import type { SourceTensor, SourceTernary, TensorSource } from './import-source.js';

const FLOAT_TYPES: Partial<Record<GgmlType, DType>> = { [GgmlType.F32]: 'F32', [GgmlType.F16]: 'F16', [GgmlType.BF16]: 'BF16' };
const TQ_TYPES: Partial<Record<GgmlType, TQType>> = { [GgmlType.TQ1_0]: 'tq1_0', [GgmlType.TQ2_0]: 'tq2_0' };
const PROJECTION = /\.(?:self_attn\.[qkvo]_proj|mlp\.(?:gate|up|down)_proj)\.weight$/;

interface Entry { info: GgufTensorInfo; tensor: SourceTensor; permuteHeads?: number }

/** The smallest scale layout that reproduces per-block d values for the blocks that matter. */
function scalesFromBlocks(codes: Int8Array, blockScales: Float32Array, rows: number, cols: number): { scales: Float32Array; scale: TpkScale } {
  const perRow = cols / 256;
  const used = (b: number): boolean => {
    for (let i = b * 256; i < (b + 1) * 256; i++) if (codes[i] !== 0) return true;
    return false;
  };
  const usedBlocks = Array.from({ length: blockScales.length }, (_, b) => b).filter(used);
  const first = usedBlocks.length > 0 ? blockScales[usedBlocks[0]!]! : (blockScales[0] ?? 0);
  if (usedBlocks.every((b) => blockScales[b] === first)) return { scales: Float32Array.of(first), scale: { granularity: 'tensor', count: 1 } };
  const rowScales = new Float32Array(rows);
  const rowSeen = new Uint8Array(rows);
  let perRowOk = true;
  for (const b of usedBlocks) {
    const r = Math.floor(b / perRow);
    if (rowSeen[r] === 0) {
      rowSeen[r] = 1;
      rowScales[r] = blockScales[b]!;
    } else if (blockScales[b] !== rowScales[r]) {
      perRowOk = false;
      break;
    }
  }
  if (perRowOk) return { scales: rowScales, scale: { granularity: 'channel', count: rows } };
  return { scales: Float32Array.from(blockScales), scale: { granularity: 'group', groupSize: 256, count: blockScales.length } };
}

/** {−a, 0, +a} for one a > 0 over the whole tensor → codes and a; otherwise undefined. */
function ternaryValued(values: Float32Array): { codes: Int8Array; a: number } | undefined {
  let a = 0;
  const codes = new Int8Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (v === 0) continue;
    const m = Math.abs(v);
    if (a === 0) a = m;
    else if (m !== a) return undefined;
    codes[i] = v > 0 ? 1 : -1;
  }
  return a > 0 ? { codes, a } : undefined;
}

export function openGgufSource(file: string): TensorSource {
  const g = GgufFile.open(file);
  try {
    const h = readHyperParams(g, file);
    const entries = mapTensors(g, file, h);
    const decode = (e: Entry) => decodeTensor(g, e);
    // Which projections are ternary is known only from their data (TQ type, or {−a, 0, +a}
    // values): decode them once now, keeping only the scale layout, so the plan can see it.
    for (const e of entries.values()) {
      if (TQ_TYPES[e.info.type] === undefined && !PROJECTION.test(e.tensor.name)) continue;
      const d = decode(e);
      if (!(d instanceof Float32Array)) e.tensor.ternary = d.scale;
    }
    const { config, sideFiles, warnings } = rebuildConfig(g, file, h, entries);

    const must = (name: string): Entry => {
      const e = entries.get(name);
      if (e === undefined) throw new FormatError(file, `no tensor ${name}`);
      return e;
    };
    /** The tensor's values in HF order (ternary ones as t·γ). */
    const values = (e: Entry): Float32Array => {
      const d = decode(e);
      if (d instanceof Float32Array) return d;
      const rows = e.tensor.shape[0]!;
      return dequantizeTernary({ ...d, rows, cols: d.codes.length / rows });
    };
    return {
      kind: 'gguf',
      path: file,
      root: path.dirname(file),
      files: [file],
      provenance: [file],
      config,
      sideFiles,
      metadata: {},
      tensors: [...entries.values()].map((e) => e.tensor),
      warnings,
      get: (name) => entries.get(name)?.tensor,
      readTernary: (name) => {
        const d = decode(must(name));
        if (d instanceof Float32Array) throw new FormatError(file, `tensor ${name} is not ternary`);
        return d;
      },
      readFloat32: (name) => values(must(name)),
      readBytes: (name) => {
        const e = must(name);
        return fromFloat32(values(e), e.tensor.dtype as FloatDType);
      },
      close: () => g.close(),
    };
  } catch (err) {
    g.close();
    throw err;
  }
}

interface HyperParams {
  arch: 'llama' | 'bitnet';
  nHead: number;
  nHeadKv: number;
  u32: (key: string, fallback?: number) => number;
  f32: (key: string, fallback: number) => number;
}

function readHyperParams(g: GgufFile, file: string): HyperParams {
  const arch = g.value('general.architecture', GgufValueType.STRING) as string | undefined;
  if (arch !== 'llama' && arch !== 'bitnet') throw new FormatError(file, `architecture ${String(arch)} is not supported (llama and bitnet are)`);
  const u32 = (key: string, fallback?: number): number => {
    const v = (g.value(`${arch}.${key}`, GgufValueType.UINT32) as number | undefined) ?? fallback;
    if (v === undefined) throw new FormatError(file, `missing ${arch}.${key}`);
    return v;
  };
  const f32 = (key: string, fallback: number): number => {
    const v = g.value(`${arch}.${key}`, GgufValueType.FLOAT32) as number | undefined;
    // f32 metadata holds the f32 nearest a decimal config value: give the decimal back
    return v === undefined ? fallback : Number(v.toPrecision(7));
  };
  const nHead = u32('attention.head_count');
  return { arch, nHead, nHeadKv: u32('attention.head_count_kv', nHead), u32, f32 };
}

/** GGUF tensors under their HF names and PyTorch shapes; llama's Q and K remember their head count to undo §2.11. */
function mapTensors(g: GgufFile, file: string, h: HyperParams): Map<string, Entry> {
  const entries = new Map<string, Entry>();
  for (const info of g.tensors) {
    let name: string;
    try {
      name = ggufToHfName(info.name);
    } catch (err) {
      throw new FormatError(file, (err as TritpackError).message);
    }
    const shape = [...info.dims].reverse();
    const permuteHeads = h.arch === 'llama' && /\.self_attn\.q_proj\./.test(name) ? h.nHead
      : h.arch === 'llama' && /\.self_attn\.k_proj\./.test(name) ? h.nHeadKv : undefined;
    const floatType = FLOAT_TYPES[info.type];
    if (TQ_TYPES[info.type] === undefined && floatType === undefined) {
      throw new FormatError(file, `tensor ${info.name} is ${ggmlTypeName(info.type)}; convert reads GGUF tensors of type TQ1_0, TQ2_0, F16, BF16 and F32`);
    }
    const dtype = floatType ?? 'F16';
    const byteLength = shape.reduce((a, b) => a * b, 1) * dtypeByteSize(dtype);
    entries.set(name, { info, tensor: { name, dtype, shape, byteLength, file }, ...(permuteHeads !== undefined ? { permuteHeads } : {}) });
  }
  return entries;
}

/** Reads a tensor in HF row order: ternary (codes + the coarsest scale layout) or float values. */
function decodeTensor(g: GgufFile, e: Entry): SourceTernary | Float32Array {
  const count = e.tensor.shape.reduce((a, b) => a * b, 1);
  const rows = e.tensor.shape[0]!;
  const bytes = g.readBytes(e.info.name);
  const tq = TQ_TYPES[e.info.type];
  if (tq !== undefined) {
    let { codes, blockScales } = decodeTQ(tq, bytes, count);
    if (e.permuteHeads !== undefined) {
      codes = permuteQKRows(codes, rows, count / rows, e.permuteHeads, false);
      blockScales = permuteQKRows(blockScales, rows, blockScales.length / rows, e.permuteHeads, false);
    }
    return { codes, ...scalesFromBlocks(codes, blockScales, rows, count / rows) };
  }
  let values = toFloat32(bytes, FLOAT_TYPES[e.info.type]!);
  if (e.permuteHeads !== undefined) values = permuteQKRows(values, rows, count / rows, e.permuteHeads, false);
  if (PROJECTION.test(e.tensor.name) && e.tensor.shape.length === 2) {
    const t = ternaryValued(values);
    if (t !== undefined) return { codes: t.codes, scales: Float32Array.of(t.a), scale: { granularity: 'tensor', count: 1 } };
  }
  return values;
}

/** config.json and the tokenizer files, rebuilt from the GGUF metadata. */
function rebuildConfig(g: GgufFile, file: string, h: HyperParams, entries: Map<string, Entry>): { config: Record<string, unknown>; sideFiles: Record<string, string>; warnings: string[] } {
  const vocab = entries.get('model.embed_tokens.weight')?.tensor.shape[0];
  if (vocab === undefined) throw new FormatError(file, 'no token_embd.weight');
  const nEmbd = h.u32('embedding_length');
  const config: Record<string, unknown> = {
    architectures: [h.arch === 'bitnet' ? 'BitNetForCausalLM' : 'LlamaForCausalLM'],
    model_type: h.arch,
    hidden_size: nEmbd,
    intermediate_size: h.u32('feed_forward_length'),
    num_hidden_layers: h.u32('block_count'),
    num_attention_heads: h.nHead,
    num_key_value_heads: h.nHeadKv,
    head_dim: h.u32('attention.key_length', nEmbd / h.nHead),
    max_position_embeddings: h.u32('context_length'),
    rms_norm_eps: h.f32('attention.layer_norm_rms_epsilon', 1e-6),
    rope_theta: h.f32('rope.freq_base', 10000),
    // GGUF does not record the FFN activation: llama is SiLU; `bitnet` files are taken as
    // BitNet b1.58 2B4T-style (relu², transformers' BitNetConfig default).
    hidden_act: h.arch === 'bitnet' ? 'relu2' : 'silu',
    vocab_size: vocab,
    tie_word_embeddings: !entries.has('lm_head.weight'),
    torch_dtype: 'float16',
  };
  const warnings: string[] = [];
  if (h.arch === 'bitnet') warnings.push('GGUF does not record the FFN activation; assumed relu² (BitNet b1.58 2B4T); upstream llama.cpp runs bitnet files with SiLU');
  const tokenizer = rebuildTokenizerFiles(g, config);
  for (const key of ['bos_token_id', 'eos_token_id', 'pad_token_id'] as const) if (tokenizer.ids[key] !== undefined) config[key] = tokenizer.ids[key];
  const sideFiles: Record<string, string> = { 'config.json': jsonText(config), ...tokenizer.files };
  return { config, sideFiles, warnings: [...warnings, ...tokenizer.warnings] };
}
