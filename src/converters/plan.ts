/**
 * The tensor plan: for every tensor of a checkpoint, whether it is ternarized or kept, in which
 * encoding, and how many bytes it will take in the output. Deciding everything up front lets the
 * writer reserve the whole file layout before a single weight is read (so conversion can stream).
 *
 * Default rule: 2-D float weights of the attention and MLP linear projections are ternarized (the
 * BitLinear layers of BitNet b1.58); embeddings, the LM head, norms and biases are kept, because
 * BitNet keeps them in high precision too. `--exclude` beats `--include` beats the default rule.
 */
import { minimatch } from 'minimatch';
import { TritpackError } from '../errors.js';
import { type DType, type FloatDType, isFloatDType } from '../formats/dtype.js';
import type { TernaryPacking } from '../formats/ternary.js';
import { elementCount, tpkDataLength, tpkScaleCount, type TpkPlannedTensor, type TpkScale } from '../formats/tpk.js';
import type { ScaleGranularity } from './ternarize.js';

export interface PlanTensorInfo {
  name: string; dtype: DType; shape: number[];
  /** The source already stores this tensor ternary (an imported BitNet/GGUF model): keep its scale layout. */
  ternary?: TpkScale;
}

export interface PlanOptions {
  packing: TernaryPacking;
  scale: ScaleGranularity;
  /** Globs (minimatch, matched against the whole tensor name): ternarize these as well. */
  include?: string[];
  /** Globs: never ternarize these. */
  exclude?: string[];
  /** Encoding for kept float tensors; absent = their source dtype, bytes copied unchanged. */
  keepDType?: FloatDType;
  /** Tensor names the checkpoint does not store but means (tied weights): missing name → stored name. */
  aliases?: Record<string, string>;
}

interface PlannedBase {
  name: string;
  sourceDType: DType;
  shape: number[];
  /** Why the tensor got its action, for progress output and --json ("attention/MLP projection", "norm", …). */
  reason: string;
  dataLength: number;
}
export interface PlannedTernary extends PlannedBase {
  action: 'ternarize';
  encoding: TernaryPacking;
  /** The tensor viewed as a matrix: rows = shape[0] (output features), cols = the rest. */
  rows: number;
  cols: number;
  scale: TpkScale;
  scalesLength: number;
}
export interface PlannedKeep extends PlannedBase {
  action: 'keep';
  encoding: DType;
  /** True when the kept bytes are the source bytes unchanged (no dtype conversion). */
  verbatim: boolean;
}
export type PlannedTensor = PlannedTernary | PlannedKeep;

export interface TensorPlan {
  tensors: PlannedTensor[];
  aliases: Record<string, string>;
  /** Things the user should know but that do not stop the conversion (e.g. a glob that matched nothing). */
  warnings: string[];
}

/**
 * Linear projections by checkpoint family. Anchored on the module path so that e.g. a norm called
 * `q_norm` or BitNet's `attn_sub_norm` never matches.
 *  - Llama/Mistral/Qwen/Gemma/BitNet: self_attn.{q,k,v,o}_proj, mlp.{gate,up,down}_proj
 *  - Phi-3: self_attn.qkv_proj, mlp.gate_up_proj
 *  - GPT-NeoX (attention.*) and Falcon (self_attention.*): query_key_value, dense, mlp.dense_h_to_4h/_4h_to_h
 *  - Mixtral experts: block_sparse_moe.experts.N.w{1,2,3}
 * GPT-2 is deliberately absent: its Conv1D weights are stored transposed ([in, out]).
 */
const LINEAR_PATTERNS: RegExp[] = [
  /(?:^|\.)self_attn\.(?:q_proj|k_proj|v_proj|o_proj|qkv_proj)\.weight$/,
  /(?:^|\.)(?:attention|self_attention)\.(?:query_key_value|dense)\.weight$/,
  /(?:^|\.)mlp\.(?:gate_proj|up_proj|down_proj|gate_up_proj|dense_h_to_4h|dense_4h_to_h)\.weight$/,
  /(?:^|\.)experts\.\d+\.(?:w1|w2|w3|gate_proj|up_proj|down_proj)\.weight$/,
];

export function isLinearProjection(name: string): boolean {
  return LINEAR_PATTERNS.some((re) => re.test(name));
}

/** A short description of what a kept tensor is, for the progress output. */
function keptRole(name: string): string {
  if (/(?:^|\.)(?:embed_tokens|embed_in|word_embeddings|wte)\.weight$/.test(name)) return 'embedding';
  if (/(?:^|\.)(?:lm_head|embed_out)\.weight$/.test(name)) return 'LM head';
  if (/norm|(?:^|\.)ln_/.test(name)) return 'norm';
  if (name.endsWith('.bias')) return 'bias';
  return 'not a linear projection';
}

function firstMatch(name: string, globs: string[]): string | undefined {
  return globs.find((glob) => minimatch(name, glob, { dot: true }));
}

export function planConversion(tensors: PlanTensorInfo[], options: PlanOptions): TensorPlan {
  const include = options.include ?? [];
  const exclude = options.exclude ?? [];
  const aliases = options.aliases ?? {};
  const aliasTargets = new Set(Object.values(aliases));
  const usedGlobs = new Set<string>();
  const planned = tensors.map((t): PlannedTensor => {
    const excludedBy = firstMatch(t.name, exclude);
    const includedBy = firstMatch(t.name, include);
    if (excludedBy !== undefined) usedGlobs.add(excludedBy);
    if (includedBy !== undefined) usedGlobs.add(includedBy);
    let reason: string | undefined;
    if (excludedBy !== undefined) reason = undefined;
    else if (includedBy !== undefined) {
      // The user asked for this one explicitly: refuse rather than silently keep it.
      if (!isFloatDType(t.dtype) || t.shape.length < 2) {
        throw new TritpackError(`--include ${includedBy} matches ${t.name} (${t.dtype} ${JSON.stringify(t.shape)}), which is not a float matrix and cannot be ternarized`);
      }
      if (aliasTargets.has(t.name)) {
        throw new TritpackError(`--include ${includedBy} matches ${t.name}, which is tied to ${aliasNames(aliases, t.name)}; ternarizing a tied embedding is not supported`);
      }
      reason = `--include ${includedBy}`;
    } else if (isLinearProjection(t.name) && t.shape.length === 2 && isFloatDType(t.dtype)) {
      reason = 'attention/MLP projection';
    }
    if (reason !== undefined) return planTernary(t, reason, options);
    return planKeep(t, excludedBy !== undefined ? `--exclude ${excludedBy}` : keptRole(t.name), options.keepDType);
  });
  const warnings = [...include.map((g) => ['--include', g]), ...exclude.map((g) => ['--exclude', g])]
    .filter(([, g]) => !usedGlobs.has(g!))
    .map(([flag, g]) => `${flag} ${g} matches no tensor`);
  return { tensors: planned, aliases: { ...aliases }, warnings };
}

function aliasNames(aliases: Record<string, string>, target: string): string {
  return Object.keys(aliases).filter((k) => aliases[k] === target).join(', ');
}

function planTernary(t: PlanTensorInfo, reason: string, options: PlanOptions): PlannedTernary {
  const rows = t.shape[0]!;
  const cols = elementCount(t.shape) / rows;
  const kind = options.scale.kind === 'group' ? { granularity: 'group' as const, groupSize: options.scale.size } : { granularity: options.scale.kind };
  const scale: TpkScale = t.ternary !== undefined ? { ...t.ternary } : { ...kind, count: tpkScaleCount(kind, t.shape) };
  return {
    action: 'ternarize', name: t.name, sourceDType: t.dtype, shape: t.shape, reason,
    encoding: options.packing, rows, cols, scale,
    dataLength: tpkDataLength(options.packing, rows * cols),
    scalesLength: scale.count * 4,
  };
}

function planKeep(t: PlanTensorInfo, reason: string, keepDType: FloatDType | undefined): PlannedKeep {
  const encoding = keepDType !== undefined && isFloatDType(t.dtype) ? keepDType : t.dtype;
  return {
    action: 'keep', name: t.name, sourceDType: t.dtype, shape: t.shape, reason, encoding,
    verbatim: encoding === t.dtype,
    dataLength: tpkDataLength(encoding, elementCount(t.shape)),
  };
}

/** The writer's view of a planned tensor. */
export function toTpkPlanned(t: PlannedTensor): TpkPlannedTensor {
  return t.action === 'ternarize'
    ? { name: t.name, shape: t.shape, encoding: t.encoding, sourceDType: t.sourceDType, scale: t.scale, dataLength: t.dataLength, scalesLength: t.scalesLength }
    : { name: t.name, shape: t.shape, encoding: t.encoding, sourceDType: t.sourceDType, dataLength: t.dataLength };
}

/**
 * Tied weights the checkpoint stores once. Two sources: safetensors `__metadata__` entries that
 * name a stored tensor for a missing one (tinystories-656K: {"model.embed_tokens.weight":
 * "lm_head.weight"}), and `tie_word_embeddings` in config.json when exactly one of the
 * Llama-family embedding / LM head pair is stored (an absent key counts as tied: a checkpoint
 * missing half of the pair cannot mean anything else).
 */
export function findAliases(tensorNames: string[], metadata: Record<string, string>, config: Record<string, unknown>): Record<string, string> {
  const stored = new Set(tensorNames);
  const aliases: Record<string, string> = {};
  for (const [key, value] of Object.entries(metadata)) {
    if (!stored.has(key) && stored.has(value)) aliases[key] = value;
  }
  const tied = config['tie_word_embeddings'] !== false;
  const embed = 'model.embed_tokens.weight';
  const head = 'lm_head.weight';
  if (tied && stored.has(embed) && !stored.has(head) && aliases[head] === undefined) aliases[head] = embed;
  if (tied && stored.has(head) && !stored.has(embed) && aliases[embed] === undefined) aliases[embed] = head;
  return aliases;
}

/**
 * Whether the config declares a model trained for ternary weights (BitNet architecture or the
 * transformers BitNet quantization config). Such models convert without loss of quality.
 */
export function declaresTernaryTraining(config: Record<string, unknown>): boolean {
  const q = config['quantization_config'] as Record<string, unknown> | undefined;
  return config['model_type'] === 'bitnet' || q?.['quant_method'] === 'bitnet';
}

/**
 * Whether a weight matrix already holds ternary values times a per-row scale, i.e. its rows take
 * at most the three values {−a, 0, a}: a checkpoint saved after ternary training in dequantized
 * form. An ordinary float matrix has thousands of distinct values per row.
 */
export function isTernaryValued(values: Float32Array, rows: number, cols: number): boolean {
  for (let r = 0; r < rows; r++) {
    let a = 0;
    for (let i = r * cols, end = i + cols; i < end; i++) {
      const v = Math.abs(values[i]!);
      if (v === 0) continue;
      if (a === 0) a = v;
      else if (v !== a) return false;
    }
  }
  return true;
}
