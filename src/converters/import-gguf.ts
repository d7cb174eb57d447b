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
 *
 * The plan needs each layout before the first tensor is converted, and the layout depends on the
 * data. So opening scans the candidate tensors in fixed-size chunks (TQ: only each block's d and
 * whether its bytes are the all-zero encoding; floats: the magnitudes), and a tensor is decoded
 * once, when the converter reads it: nothing tensor-sized is made or kept while opening.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import path from 'node:path';
import { FormatError, TritpackError } from '../errors.js';
import { dtypeByteSize, f16BitsToF32, toFloat32, fromFloat32, type DType, type FloatDType } from '../formats/dtype.js';
import { GGML_TYPE_TRAITS, GgmlType, GgufFile, GgufValueType, ggmlTypeName, type GgufTensorInfo } from '../formats/gguf.js';
import { decodeTQ, encodeTQ, type TQType } from '../formats/ternary.js';
import type { TpkScale } from '../formats/tpk.js';
import { ggufToHfName, permuteQKRows } from './export-gguf.js';
import { rebuildTokenizerFiles } from './import-gguf-tokenizer.js';
import { dequantizeTernary, jsonText } from './export-common.js';
import type { SourceTensor, SourceTernary, TensorSource } from './import-source.js';

const FLOAT_TYPES: Partial<Record<GgmlType, DType>> = { [GgmlType.F32]: 'F32', [GgmlType.F16]: 'F16', [GgmlType.BF16]: 'BF16' };
const TQ_TYPES: Partial<Record<GgmlType, TQType>> = { [GgmlType.TQ1_0]: 'tq1_0', [GgmlType.TQ2_0]: 'tq2_0' };
const PROJECTION = /\.(?:self_attn\.[qkvo]_proj|mlp\.(?:gate|up|down)_proj)\.weight$/;

interface Entry { info: GgufTensorInfo; tensor: SourceTensor; permuteHeads?: number }

/** The smallest scale layout that reproduces per-block d values for the blocks that hold a non-zero code. */
function scalesFromBlocks(used: Int8Array, blockScales: Float32Array, rows: number): { scales: Float32Array; scale: TpkScale } {
  const perRow = blockScales.length / rows;
  const usedBlocks = Array.from({ length: blockScales.length }, (_, b) => b).filter((b) => used[b] !== 0);
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

/** Bytes 0 … size−3 of a TQ block whose 256 codes are all 0 (the d that follows is free). */
const ZERO_BLOCK: Record<TQType, Uint8Array> = {
  tq1_0: encodeTQ('tq1_0', new Int8Array(256), Float32Array.of(0)).subarray(0, GGML_TYPE_TRAITS[GgmlType.TQ1_0].typeSize - 2),
  tq2_0: encodeTQ('tq2_0', new Int8Array(256), Float32Array.of(0)).subarray(0, GGML_TYPE_TRAITS[GgmlType.TQ2_0].typeSize - 2),
};

/**
 * Each block's d, and whether it holds a non-zero code, straight from the packed bytes of blocks
 * first, first+1, … (no code is decoded). A block counts as all-zero only when its bytes are the
 * canonical all-zero encoding: a non-canonical one counts as used, which can only make the
 * layout finer, never wrong. Opening and reading both use this, so they agree on the layout.
 */
function readBlockHeads(type: TQType, bytes: Uint8Array, first: number, blockScales: Float32Array, used: Int8Array): void {
  const zero = ZERO_BLOCK[type];
  const size = zero.length + 2;
  for (let b = 0; b * size < bytes.length; b++) {
    const o = b * size;
    let nonZero = 0;
    for (let i = 0; i < zero.length && nonZero === 0; i++) nonZero = +(bytes[o + i] !== zero[i]);
    used[first + b] = nonZero;
    blockScales[first + b] = f16BitsToF32(bytes[o + size - 2]! | (bytes[o + size - 1]! << 8));
  }
}

/** The one magnitude of the non-zero values, continuing from `a` (0: none seen yet); NaN once two differ (or one is NaN). */
function sharedMagnitude(values: Float32Array, a: number): number {
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (v === 0) continue;
    const m = Math.abs(v);
    if (a === 0) a = m;
    else if (m !== a) return NaN;
  }
  return a;
}

/** {−a, 0, +a} for one a > 0 over the whole tensor → codes and a; otherwise undefined. */
function ternaryValued(values: Float32Array): { codes: Int8Array; a: number } | undefined {
  const a = sharedMagnitude(values, 0);
  if (!(a > 0)) return undefined;
  const codes = new Int8Array(values.length);
  for (let i = 0; i < values.length; i++) codes[i] = Math.sign(values[i]!);
  return { codes, a };
}

export function openGgufSource(file: string): TensorSource {
  const g = GgufFile.open(file);
  try {
    const h = readHyperParams(g, file);
    const entries = mapTensors(g, file, h);
    // Which projections are ternary, and in which scale layout, is known only from their data
    // (TQ type, or {−a, 0, +a} values): the plan needs it now, the codes only when converting.
    findTernaryLayouts(file, entries.values());
    const decode = (e: Entry) => decodeTensor(g, e);
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

/** Whether a float tensor may be a TQ export's F16 fallback, i.e. worth testing for {−a, 0, +a}. */
function mayBeTernaryFloat(e: Entry): boolean {
  return TQ_TYPES[e.info.type] === undefined && PROJECTION.test(e.tensor.name) && e.tensor.shape.length === 2;
}

/** Sets `tensor.ternary` on every TQ tensor and every {−a, 0, +a} float projection, reading each in fixed-size chunks. */
function findTernaryLayouts(file: string, entries: Iterable<Entry>): void {
  const fd = openSync(file, 'r');
  try {
    const buffer = new Uint8Array(SCAN_BYTES);
    for (const e of entries) {
      const tq = TQ_TYPES[e.info.type];
      if (tq !== undefined) {
        const blocks = e.info.byteLength / GGML_TYPE_TRAITS[e.info.type].typeSize;
        const blockScales = new Float32Array(blocks);
        const used = new Int8Array(blocks);
        scanTensor(fd, file, e.info, buffer, (chunk, first) => readBlockHeads(tq, chunk, first, blockScales, used));
        e.tensor.ternary = tqLayout(e, used, blockScales).scale;
      } else if (mayBeTernaryFloat(e)) {
        let a = 0;
        scanTensor(fd, file, e.info, buffer, (chunk) => { a = sharedMagnitude(toFloat32(chunk, FLOAT_TYPES[e.info.type]!), a); });
        if (a > 0) e.tensor.ternary = { granularity: 'tensor', count: 1 };
      }
    }
  } finally {
    closeSync(fd);
  }
}

/** Bytes read per step while scanning a tensor (whole ggml blocks, so a little less). */
const SCAN_BYTES = 1 << 20;

/** Calls `visit` with the tensor's bytes, whole ggml blocks at a time, through `buffer`; `first` is the chunk's first block. */
function scanTensor(fd: number, file: string, info: GgufTensorInfo, buffer: Uint8Array, visit: (chunk: Uint8Array, first: number) => void): void {
  const blockBytes = GGML_TYPE_TRAITS[info.type].typeSize;
  const step = Math.max(1, Math.floor(buffer.length / blockBytes)) * blockBytes;
  const chunkBuffer = step <= buffer.length ? buffer : new Uint8Array(step);
  for (let at = 0; at < info.byteLength; at += step) {
    const chunk = chunkBuffer.subarray(0, Math.min(step, info.byteLength - at));
    for (let got = 0; got < chunk.length;) {
      const n = readSync(fd, chunk, got, chunk.length - got, info.dataOffset + at + got);
      if (n === 0) throw new FormatError(file, `tensor ${info.name}: file ends inside its data`);
      got += n;
    }
    visit(chunk, at / blockBytes);
  }
}

/** A TQ tensor's scale layout in HF row order, from its per-block d values and used flags in GGUF order. */
function tqLayout(e: Entry, used: Int8Array, blockScales: Float32Array): { scales: Float32Array; scale: TpkScale } {
  const rows = e.tensor.shape[0]!;
  if (e.permuteHeads !== undefined) {
    used = permuteQKRows(used, rows, used.length / rows, e.permuteHeads, false);
    blockScales = permuteQKRows(blockScales, rows, blockScales.length / rows, e.permuteHeads, false);
  }
  return scalesFromBlocks(used, blockScales, rows);
}

/** Reads a tensor in HF row order: ternary (codes + the layout found when opening) or float values. */
function decodeTensor(g: GgufFile, e: Entry): SourceTernary | Float32Array {
  const count = e.tensor.shape.reduce((a, b) => a * b, 1);
  const rows = e.tensor.shape[0]!;
  const bytes = g.readBytes(e.info.name);
  const tq = TQ_TYPES[e.info.type];
  if (tq !== undefined) {
    let { codes, blockScales } = decodeTQ(tq, bytes, count);
    const used = new Int8Array(blockScales.length);
    readBlockHeads(tq, bytes, 0, blockScales, used);
    if (e.permuteHeads !== undefined) codes = permuteQKRows(codes, rows, count / rows, e.permuteHeads, false);
    return { codes, ...tqLayout(e, used, blockScales) };
  }
  let values = toFloat32(bytes, FLOAT_TYPES[e.info.type]!);
  if (e.permuteHeads !== undefined) values = permuteQKRows(values, rows, count / rows, e.permuteHeads, false);
  if (e.tensor.ternary !== undefined) {
    const t = ternaryValued(values);
    if (t === undefined) throw new FormatError(e.tensor.file, `tensor ${e.info.name} changed while it was being read`);
    return { codes: t.codes, scales: Float32Array.of(t.a), scale: e.tensor.ternary };
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
