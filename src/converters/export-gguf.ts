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
import { elementCount, tpkScaleIndex } from '../formats/tpk.js';
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

const LAYER_MAP: [RegExp, string][] = [
  [/^input_layernorm\.weight$/, 'attn_norm.weight'],
  [/^self_attn\.q_proj\.(weight|bias)$/, 'attn_q.$1'],
  [/^self_attn\.k_proj\.(weight|bias)$/, 'attn_k.$1'],
  [/^self_attn\.v_proj\.(weight|bias)$/, 'attn_v.$1'],
  [/^self_attn\.o_proj\.(weight|bias)$/, 'attn_output.$1'],
  [/^post_attention_layernorm\.weight$/, 'ffn_norm.weight'],
  [/^mlp\.gate_proj\.weight$/, 'ffn_gate.weight'],
  [/^mlp\.up_proj\.weight$/, 'ffn_up.weight'],
  [/^mlp\.down_proj\.weight$/, 'ffn_down.weight'],
  // BitNet sub-norms: 2B4T names, then 1bitLLM names (tensor_mapping.py)
  [/^self_attn\.(?:attn_sub_norm|inner_attn_ln)\.weight$/, 'attn_sub_norm.weight'],
  [/^mlp\.(?:ffn_sub_norm|ffn_layernorm)\.weight$/, 'ffn_sub_norm.weight'],
];

const GLOBAL_MAP: Record<string, string> = {
  'model.embed_tokens.weight': 'token_embd.weight',
  'model.norm.weight': 'output_norm.weight',
  'lm_head.weight': 'output.weight',
};

/** HF tensor name → GGUF name, or null for tensors llama.cpp does not load (rotary inv_freq). */
export function hfToGgufName(name: string): string | null {
  if (GLOBAL_MAP[name] !== undefined) return GLOBAL_MAP[name]!;
  const m = /^model\.layers\.(\d+)\.(.+)$/.exec(name);
  if (m !== null) {
    if (m[2] === 'self_attn.rotary_emb.inv_freq') return null;
    for (const [re, to] of LAYER_MAP) if (re.test(m[2]!)) return `blk.${m[1]}.${m[2]!.replace(re, to)}`;
  }
  throw new TritpackError(`GGUF export: no llama.cpp tensor name for ${name}`);
}

/** GGUF tensor name → HF name (the inverse of hfToGgufName, 2B4T sub-norm names for BitNet). */
export function ggufToHfName(name: string): string {
  for (const [hf, g] of Object.entries(GLOBAL_MAP)) if (g === name) return hf;
  const m = /^blk\.(\d+)\.(.+)$/.exec(name);
  const layer: Record<string, string> = {
    'attn_norm.weight': 'input_layernorm.weight', 'attn_q': 'self_attn.q_proj', 'attn_k': 'self_attn.k_proj',
    'attn_v': 'self_attn.v_proj', 'attn_output': 'self_attn.o_proj', 'ffn_norm.weight': 'post_attention_layernorm.weight',
    'ffn_gate': 'mlp.gate_proj', 'ffn_up': 'mlp.up_proj', 'ffn_down': 'mlp.down_proj',
    'attn_sub_norm.weight': 'self_attn.attn_sub_norm.weight', 'ffn_sub_norm.weight': 'mlp.ffn_sub_norm.weight',
  };
  if (m !== null) {
    const rest = m[2]!;
    if (layer[rest] !== undefined) return `model.layers.${m[1]}.${layer[rest]}`;
    const p = /^(.+)\.(weight|bias)$/.exec(rest);
    if (p !== null && layer[p[1]!] !== undefined) return `model.layers.${m[1]}.${layer[p[1]!]}.${p[2]}`;
  }
  throw new TritpackError(`GGUF import: no Hugging Face name for tensor ${name}`);
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

/** Per-256-block d values for a ternary tensor, or a reason why its scales do not fit TQ blocks. */
function tqBlockScales(t: Pick<TernaryTensor, 'scale' | 'scales' | 'rows' | 'cols'>): Float32Array | string {
  if (t.cols % 256 !== 0) return `row length ${t.cols} is not a multiple of 256`;
  if (t.scale.granularity === 'group' && t.scale.groupSize! % 256 !== 0) return `scale groups of ${t.scale.groupSize} do not cover whole 256-blocks`;
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
      const rows = entry.shape[0]!;
      const fit = entry.shape.length !== 2 ? 'not a matrix' : tqBlockScales({ scale: entry.scale!, scales: new Float32Array(entry.scale!.count), rows, cols: elementCount(entry.shape) / rows });
      if (typeof fit === 'string') planned.push({ ...base, ...withPermute, type: GgmlType.F16, ternary: true, fallback: fit });
      else planned.push({ ...base, ...withPermute, type: tq, ternary: true });
    } else {
      const isMatrix = entry.shape.length >= 2 && !/_norm\.weight$/.test(ggufName);
      planned.push({ ...base, ...withPermute, type: isMatrix ? GgmlType.F16 : GgmlType.F32, ternary: false });
    }
  }
  return planned;
}

function metadata(model: TpkModel, arch: GgufArch, hyper: ModelHyper, type: TQType, anyTq: boolean): { kv: [string, GgufValue][]; tokenizer: { model: string; pre: string }; warnings: string[] } {
  const kv: [string, GgufValue][] = [['general.architecture', gguf.str(arch)], ['general.type', gguf.str('model')]];
  const name = model.header.source.repo ?? path.basename(model.path).replace(/\.tpk$/, '');
  if (name.length > 0) kv.push(['general.name', gguf.str(name)]);
  kv.push(['general.file_type', gguf.u32(anyTq ? (type === 'tq1_0' ? LlamaFileType.MOSTLY_TQ1_0 : LlamaFileType.MOSTLY_TQ2_0) : LlamaFileType.MOSTLY_F16)]);
  if (anyTq) kv.push(['general.quantization_version', gguf.u32(GGML_QUANTIZATION_VERSION)]);
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
  const warnings: string[] = [];
  if (arch === 'llama' && hyper.headDim !== hyper.nEmbd / hyper.nHead && !hyper.explicitHeadDim) {
    throw new TritpackError(`GGUF export: head_dim ${hyper.headDim} ≠ hidden_size/heads; llama.cpp would reject n_rot`);
  }
  const act = model.config['hidden_act'];
  if (arch === 'bitnet' && act !== undefined && act !== 'silu') {
    warnings.push(`hidden_act is ${String(act)}: upstream llama.cpp's bitnet graph applies SiLU in the FFN, so its outputs will differ from this model's`);
  }
  if (arch === 'llama' && act !== undefined && act !== 'silu') warnings.push(`hidden_act is ${String(act)}, but llama.cpp's llama graph uses SiLU`);
  const tok = ggufTokenizer(model.header.files, model.config, hyper.vocab);
  kv.push(...tok.kv);
  warnings.push(...tok.warnings);
  return { kv, tokenizer: { model: tok.model, pre: tok.pre }, warnings };
}

function tensorBytes(model: TpkModel, p: PlannedGguf, type: TQType): Uint8Array {
  const entry = model.entry(p.source)!;
  if (p.ternary) {
    let t = model.ternary(p.source);
    if (p.permuteHeads !== undefined) t = permuteTernary(t, p.permuteHeads, true);
    if (p.type === GgmlType.F16) return fromFloat32(dequantizeTernary(t), 'F16');
    const d = tqBlockScales(t) as Float32Array;
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

