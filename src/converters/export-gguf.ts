/**
 * .tpk → GGUF v3 for mainline llama.cpp (formats.md §1.7, §2).
 *
 * Llama-family models become arch `llama` (Q/K rows permuted for its NORM rope, §2.11); BitNet
 * models (`model_type: bitnet`, or 1bitLLM's `BitnetForCausalLM`) become arch `bitnet` (NEOX
 * rope, no permutation, no output tensor, §2.12). Ternary tensors are written as TQ1_0/TQ2_0
 * blocks whose d is the tensor's γ (so the codes are exact and x̂ = t·fp16(γ)); a ternary tensor
 * whose row length is not a multiple of 256, or whose scale groups do not cover whole blocks,
 * is written as F16 t·γ instead and reported. Embeddings and the output head are F16, norms and
 * biases F32, as llama.cpp's convert_hf_to_gguf.py does with --outtype tq1_0/tq2_0.
 */
import path from 'node:path';
import { statSync } from 'node:fs';
import { TritpackError } from '../errors.js';
import { fromFloat32 } from '../formats/dtype.js';
import {
  GGML_QUANTIZATION_VERSION, GgmlType, GgufWriter, LlamaFileType, ggmlTypeName, gguf,
  type GgufPlannedTensor, type GgufValue,
} from '../formats/gguf.js';
import { encodeTQ, type TQType } from '../formats/ternary.js';
import { elementCount, tpkScaleIndex, type TpkScale } from '../formats/tpk.js';
import { TpkModel, dequantizeTernary, type TernaryTensor } from './export-common.js';
import { ggufTokenizer } from './export-gguf-tokenizer.js';

export type GgufArch = 'llama' | 'bitnet';

export interface GgufExportOptions {
  input: string;
  output: string;
  type?: TQType;
  force?: boolean;
}

export interface GgufExportSummary {
  input: string;
  output: string;
  arch: GgufArch;
  type: TQType;
  tokenizer: { model: string; pre: string };
  tensors: { name: string; source: string; type: string; dims: number[] }[];
  /** Ternary tensors written as TQ blocks vs. those that fell back to F16, and their weight counts. */
  ternary: { tensors: number; fallback: string[]; weights: number; weightsStillTernary: number };
  outputBytes: number;
  warnings: string[];
}

// ---------------------------------------------------------------------------------------------
// Names and hyperparameters

/**
 * Per-layer modules: HF path ↔ llama.cpp name, and whether a bias may come with the weight.
 * BitNet sub-norms appear under 2B4T's names, then 1bitLLM's (tensor_mapping.py); importing
 * gives the first, 2B4T's.
 */
const LAYER_MODULES: { hf: string; gguf: string; bias?: true }[] = [
  { hf: 'input_layernorm', gguf: 'attn_norm' },
  { hf: 'self_attn.q_proj', gguf: 'attn_q', bias: true },
  { hf: 'self_attn.k_proj', gguf: 'attn_k', bias: true },
  { hf: 'self_attn.v_proj', gguf: 'attn_v', bias: true },
  { hf: 'self_attn.o_proj', gguf: 'attn_output', bias: true },
  { hf: 'post_attention_layernorm', gguf: 'ffn_norm' },
  { hf: 'mlp.gate_proj', gguf: 'ffn_gate' },
  { hf: 'mlp.up_proj', gguf: 'ffn_up' },
  { hf: 'mlp.down_proj', gguf: 'ffn_down' },
  { hf: 'self_attn.attn_sub_norm', gguf: 'attn_sub_norm' },
  { hf: 'mlp.ffn_sub_norm', gguf: 'ffn_sub_norm' },
  { hf: 'self_attn.inner_attn_ln', gguf: 'attn_sub_norm' },
  { hf: 'mlp.ffn_layernorm', gguf: 'ffn_sub_norm' },
];

const GLOBAL_NAMES: [hf: string, gguf: string][] = [
  ['model.embed_tokens.weight', 'token_embd.weight'],
  ['model.norm.weight', 'output_norm.weight'],
  ['lm_head.weight', 'output.weight'],
];

const LAYER_PREFIX = { hf: 'model.layers.', gguf: 'blk.' } as const;

/** A per-layer tensor name from one naming to the other; undefined when no module matches. */
function mapLayerName(name: string, from: 'hf' | 'gguf', to: 'hf' | 'gguf'): string | undefined {
  if (!name.startsWith(LAYER_PREFIX[from])) return undefined;
  const m = /^(\d+)\.(.+)\.(weight|bias)$/.exec(name.slice(LAYER_PREFIX[from].length));
  const entry = m === null ? undefined : LAYER_MODULES.find((e) => e[from] === m[2] && (m[3] === 'weight' || e.bias));
  return entry === undefined ? undefined : `${LAYER_PREFIX[to]}${m![1]}.${entry[to]}.${m![3]}`;
}

/** HF tensor name → GGUF name, or null for tensors llama.cpp does not load (rotary inv_freq). */
export function hfToGgufName(name: string): string | null {
  const global = GLOBAL_NAMES.find(([hf]) => hf === name);
  if (global !== undefined) return global[1];
  if (/^model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq$/.test(name)) return null;
  const mapped = mapLayerName(name, 'hf', 'gguf');
  if (mapped === undefined) throw new TritpackError(`GGUF export: no llama.cpp tensor name for ${name}`);
  return mapped;
}

/** GGUF tensor name → HF name (the inverse of hfToGgufName, 2B4T sub-norm names for BitNet). */
export function ggufToHfName(name: string): string {
  const global = GLOBAL_NAMES.find(([, g]) => g === name);
  if (global !== undefined) return global[0];
  const mapped = mapLayerName(name, 'gguf', 'hf');
  if (mapped === undefined) throw new TritpackError(`GGUF import: no Hugging Face name for tensor ${name}`);
  return mapped;
}

export function ggufArchOf(config: Record<string, unknown>): GgufArch {
  const archs = (config['architectures'] as string[] | undefined) ?? [];
  if (config['model_type'] === 'bitnet' || archs.some((a) => a.toLowerCase() === 'bitnetforcausallm')) return 'bitnet';
  if (config['model_type'] === 'llama' || config['model_type'] === 'mistral') return 'llama';
  throw new TritpackError(`GGUF export supports Llama-family and BitNet models; this one has model_type ${String(config['model_type'])}`);
}

export interface ModelHyper {
  nEmbd: number; nLayer: number; nHead: number; nHeadKv: number; nFf: number; nCtx: number;
  headDim: number; explicitHeadDim: boolean; eps: number; ropeTheta: number; vocab: number;
  ropeScaling?: { type: string; factor: number };
}

function num(config: Record<string, unknown>, key: string, fallback?: number): number {
  const v = config[key] ?? fallback;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new TritpackError(`config.json: ${key} is missing or not a number`);
  return v;
}

export function modelHyper(config: Record<string, unknown>): ModelHyper {
  const nEmbd = num(config, 'hidden_size');
  const nHead = num(config, 'num_attention_heads');
  const rope = (config['rope_parameters'] ?? config['rope_scaling'] ?? undefined) as Record<string, unknown> | null | undefined;
  const ropeType = (rope?.['rope_type'] ?? rope?.['type'] ?? 'default') as string;
  const theta = (rope?.['rope_theta'] as number | undefined) ?? (config['rope_theta'] as number | undefined) ?? 10000;
  let ropeScaling: ModelHyper['ropeScaling'];
  if (ropeType === 'linear') ropeScaling = { type: 'linear', factor: num(rope as Record<string, unknown>, 'factor') };
  else if (ropeType !== 'default') throw new TritpackError(`GGUF export: rope scaling "${ropeType}" is not supported`);
  return {
    nEmbd, nHead,
    nLayer: num(config, 'num_hidden_layers'),
    nHeadKv: num(config, 'num_key_value_heads', nHead),
    nFf: num(config, 'intermediate_size'),
    nCtx: num(config, 'max_position_embeddings'),
    headDim: num(config, 'head_dim', nEmbd / nHead),
    explicitHeadDim: typeof config['head_dim'] === 'number',
    eps: num(config, 'rms_norm_eps', 1e-6),
    ropeTheta: theta,
    vocab: num(config, 'vocab_size'),
    ...(ropeScaling ? { ropeScaling } : {}),
  };
}

// ---------------------------------------------------------------------------------------------
// Q/K row permutation (llama only, §2.11)

/**
 * Row permutation between HF's rotate-half layout and llama.cpp's adjacent-pair (NORM rope)
 * layout, over `rows` rows of `width` items each: HF row h·hd + s·hd/2 + i ↔ GGUF row h·hd + 2i + s.
 * forward = HF → GGUF (export); !forward = GGUF → HF (import).
 */
export function permuteQKRows<T extends Int8Array | Float32Array>(data: T, rows: number, width: number, nHead: number, forward: boolean): T {
  const hd = rows / nHead;
  if (!Number.isInteger(hd) || hd % 2 !== 0) throw new TritpackError(`Q/K permutation: ${rows} rows do not split into ${nHead} heads of even size`);
  const out = new (data.constructor as { new(n: number): T })(data.length);
  const half = hd / 2;
  for (let h = 0; h < nHead; h++) {
    for (let i = 0; i < half; i++) {
      for (let s = 0; s < 2; s++) {
        const hf = h * hd + s * half + i;
        const gg = h * hd + 2 * i + s;
        const [from, to] = forward ? [hf, gg] : [gg, hf];
        out.set(data.subarray(from * width, (from + 1) * width), to * width);
      }
    }
  }
  return out;
}

/** Permutes a ternary tensor's rows, and its scales when they are per row. */
export function permuteTernary(t: TernaryTensor, nHead: number, forward: boolean): TernaryTensor {
  const perRow = t.scale.granularity === 'tensor' ? 0 : t.scales.length / t.rows;
  return {
    ...t,
    codes: permuteQKRows(t.codes, t.rows, t.cols, nHead, forward),
    scales: perRow === 0 ? t.scales : permuteQKRows(t.scales, t.rows, perRow, nHead, forward),
  };
}

// ---------------------------------------------------------------------------------------------
// Export

interface PlannedGguf extends GgufPlannedTensor {
  source: string;
  /** heads for the Q/K permutation, when it applies */
  permuteHeads?: number;
  ternary: boolean;
  fallback?: string;
}

/** Why a ternary tensor cannot be TQ blocks with one d per block, or undefined when it can. */
function tqMisfit(shape: number[], scale: TpkScale): string | undefined {
  if (shape.length !== 2) return 'not a matrix';
  if (shape[1]! % 256 !== 0) return `row length ${shape[1]} is not a multiple of 256`;
  if (scale.granularity === 'group' && scale.groupSize! % 256 !== 0) return `scale groups of ${scale.groupSize} do not cover whole 256-blocks`;
  return undefined;
}

/** The d of each 256-block of a ternary tensor that tqMisfit accepts. */
function tqBlockScales(t: TernaryTensor): Float32Array {
  const perRow = t.cols / 256;
  const out = new Float32Array(t.rows * perRow);
  for (let r = 0; r < t.rows; r++) for (let b = 0; b < perRow; b++) out[r * perRow + b] = t.scales[tpkScaleIndex(t.scale, t.cols, r, b * 256)]!;
  return out;
}

function planTensors(model: TpkModel, arch: GgufArch, hyper: ModelHyper, type: TQType): PlannedGguf[] {
  const tied = (model.config['tie_word_embeddings'] as boolean | undefined) ?? arch === 'bitnet';
  const names = [...model.tensors.map((t) => t.name), ...Object.keys(model.aliases)];
  if (!names.includes('model.embed_tokens.weight')) throw new TritpackError(`${model.path}: no model.embed_tokens.weight (nor a tied alias for it)`);
  const tq = type === 'tq1_0' ? GgmlType.TQ1_0 : GgmlType.TQ2_0;
  const planned: PlannedGguf[] = [];
  for (const name of names) {
    if (name === 'lm_head.weight' && tied) continue; // llama.cpp reuses token_embd as the output
    if (name === 'lm_head.weight' && arch === 'bitnet') throw new TritpackError('GGUF export: the bitnet architecture has no output tensor, but this model has an untied lm_head');
    const ggufName = hfToGgufName(name);
    if (ggufName === null) continue;
    const entry = model.entry(name)!;
    const dims = [...entry.shape].reverse();
    const base = { name: ggufName, dims, source: name };
    const permuteHeads = arch === 'llama' && /\.attn_q\./.test(ggufName) ? hyper.nHead
      : arch === 'llama' && /\.attn_k\./.test(ggufName) ? hyper.nHeadKv : undefined;
    const withPermute = permuteHeads !== undefined ? { permuteHeads } : {};
    if (model.isTernary(name)) {
      const fallback = tqMisfit(entry.shape, entry.scale!);
      planned.push({ ...base, ...withPermute, type: fallback === undefined ? tq : GgmlType.F16, ternary: true, ...(fallback !== undefined ? { fallback } : {}) });
    } else {
      const isMatrix = entry.shape.length >= 2 && !/_norm\.weight$/.test(ggufName);
      planned.push({ ...base, ...withPermute, type: isMatrix ? GgmlType.F16 : GgmlType.F32, ternary: false });
    }
  }
  return planned;
}

function metadata(model: TpkModel, arch: GgufArch, hyper: ModelHyper, type: TQType, anyTq: boolean): { kv: [string, GgufValue][]; tokenizer: { model: string; pre: string }; warnings: string[] } {
  if (arch === 'llama' && hyper.headDim !== hyper.nEmbd / hyper.nHead && !hyper.explicitHeadDim) {
    throw new TritpackError(`GGUF export: head_dim ${hyper.headDim} ≠ hidden_size/heads; llama.cpp would reject n_rot`);
  }
  const kv: [string, GgufValue][] = [['general.architecture', gguf.str(arch)], ['general.type', gguf.str('model')]];
  const name = model.header.source.repo ?? path.basename(model.path).replace(/\.tpk$/, '');
  if (name.length > 0) kv.push(['general.name', gguf.str(name)]);
  kv.push(['general.file_type', gguf.u32(anyTq ? (type === 'tq1_0' ? LlamaFileType.MOSTLY_TQ1_0 : LlamaFileType.MOSTLY_TQ2_0) : LlamaFileType.MOSTLY_F16)]);
  if (anyTq) kv.push(['general.quantization_version', gguf.u32(GGML_QUANTIZATION_VERSION)]);
  kv.push(...hyperParamKv(arch, hyper));
  const tok = ggufTokenizer(model.header.files, model.config, hyper.vocab);
  kv.push(...tok.kv);
  return { kv, tokenizer: { model: tok.model, pre: tok.pre }, warnings: [...activationWarnings(arch, model.config['hidden_act']), ...tok.warnings] };
}

/** The `<arch>.*` keys with the types llama.cpp's loader checks (§2.6). */
function hyperParamKv(arch: GgufArch, hyper: ModelHyper): [string, GgufValue][] {
  const kv: [string, GgufValue][] = [];
  const a = (k: string, v: GgufValue): void => { kv.push([`${arch}.${k}`, v]); };
  a('vocab_size', gguf.u32(hyper.vocab));
  a('context_length', gguf.u32(hyper.nCtx));
  a('embedding_length', gguf.u32(hyper.nEmbd));
  a('block_count', gguf.u32(hyper.nLayer));
  a('feed_forward_length', gguf.u32(hyper.nFf));
  a('rope.dimension_count', gguf.u32(hyper.headDim));
  a('attention.head_count', gguf.u32(hyper.nHead));
  a('attention.head_count_kv', gguf.u32(hyper.nHeadKv));
  a('attention.layer_norm_rms_epsilon', gguf.f32(hyper.eps));
  a('rope.freq_base', gguf.f32(hyper.ropeTheta));
  if (hyper.explicitHeadDim) {
    a('attention.key_length', gguf.u32(hyper.headDim));
    a('attention.value_length', gguf.u32(hyper.headDim));
  }
  if (hyper.ropeScaling) {
    a('rope.scaling.type', gguf.str(hyper.ropeScaling.type));
    a('rope.scaling.factor', gguf.f32(hyper.ropeScaling.factor));
  } else if (arch === 'bitnet') {
    // what convert_hf_to_gguf.py's BitnetModel writes (§1.7)
    a('rope.scaling.type', gguf.str('linear'));
    a('rope.scaling.factor', gguf.f32(1.0));
  }
  return kv;
}

/** llama.cpp's llama and bitnet graphs both use SiLU in the FFN; say so when the model does not. */
function activationWarnings(arch: GgufArch, act: unknown): string[] {
  if (act === undefined || act === 'silu') return [];
  return [arch === 'bitnet'
    ? `hidden_act is ${String(act)}: upstream llama.cpp's bitnet graph applies SiLU in the FFN, so its outputs will differ from this model's`
    : `hidden_act is ${String(act)}, but llama.cpp's llama graph uses SiLU`];
}

function tensorBytes(model: TpkModel, p: PlannedGguf, type: TQType): Uint8Array {
  const entry = model.entry(p.source)!;
  if (p.ternary) {
    let t = model.ternary(p.source);
    if (p.permuteHeads !== undefined) t = permuteTernary(t, p.permuteHeads, true);
    if (p.type === GgmlType.F16) return fromFloat32(dequantizeTernary(t), 'F16');
    const d = tqBlockScales(t);
    // d is stored as fp16: a scale outside its range would silently become 0 or Inf
    const bad = d.find((x) => x !== 0 && (Math.abs(x) > 65504 || Math.abs(x) < 2 ** -24));
    if (bad !== undefined) throw new TritpackError(`GGUF export: ${p.source} has scale ${bad}, outside the fp16 range of a TQ block's d`);
    return encodeTQ(type, t.codes, d);
  }
  let values = model.float32(p.source);
  if (p.permuteHeads !== undefined) {
    const rows = entry.shape[0]!;
    values = permuteQKRows(values, rows, values.length / rows, p.permuteHeads, true);
  }
  return fromFloat32(values, p.type === GgmlType.F16 ? 'F16' : 'F32');
}

export function exportGguf(options: GgufExportOptions): GgufExportSummary {
  const type = options.type ?? 'tq2_0';
  const model = TpkModel.open(options.input);
  let writer: GgufWriter | undefined;
  try {
    const arch = ggufArchOf(model.config);
    const hyper = modelHyper(model.config);
    const planned = planTensors(model, arch, hyper, type);
    const anyTq = planned.some((p) => p.type === GgmlType.TQ1_0 || p.type === GgmlType.TQ2_0);
    const meta = metadata(model, arch, hyper, type, anyTq);
    const fallback = planned.filter((p) => p.fallback !== undefined);
    const warnings = [...meta.warnings];
    if (fallback.length > 0) {
      warnings.push(`${fallback.length} ternary tensor(s) written as F16 because ${type.toUpperCase()} cannot hold them: ${fallback.map((p) => `${p.name} (${p.fallback})`).join(', ')}`);
    }
    writer = GgufWriter.create(options.output, meta.kv, planned.map(({ name, dims, type: t }) => ({ name, dims, type: t })), { force: options.force ?? false });
    for (const p of planned) writer.writeTensor(p.name, tensorBytes(model, p, type));
    writer.finish();
    writer = undefined;

    const weights = (ps: PlannedGguf[]) => ps.reduce((s, p) => s + elementCount(p.dims), 0);
    const ternary = planned.filter((p) => p.ternary);
    return {
      input: options.input,
      output: options.output,
      arch,
      type,
      tokenizer: meta.tokenizer,
      tensors: planned.map((p) => ({ name: p.name, source: p.source, type: ggmlTypeName(p.type), dims: p.dims })),
      ternary: {
        tensors: ternary.length,
        fallback: fallback.map((p) => p.name),
        weights: weights(ternary),
        weightsStillTernary: weights(ternary.filter((p) => p.fallback === undefined)),
      },
      outputBytes: statSync(options.output).size,
      warnings,
    };
  } catch (err) {
    writer?.abort();
    throw err;
  } finally {
    model.close();
  }
}

