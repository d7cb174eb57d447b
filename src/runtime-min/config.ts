/**
 * Model config normalisation: an HF `config.json` (transformers 4 or 5 style) plus the optional
 * `generation_config.json`, turned into the one shape the forward pass reads. Everything the
 * runtime cannot run is rejected here, with the file and key named, before any weight is read.
 */
import { FormatError } from '../errors.js';

/** `model_type` values the runtime runs; the first three share the Llama decoder. */
export const SUPPORTED_MODEL_TYPES = ['llama', 'mistral', 'qwen2', 'bitnet'] as const;
export type SupportedModelType = (typeof SUPPORTED_MODEL_TYPES)[number];
const SUPPORTED_LIST = `supported model_type: ${SUPPORTED_MODEL_TYPES.join(', ')}`;

/** Defaults of the transformers config classes, for keys a config.json may omit. */
const CLASS_DEFAULTS: Record<SupportedModelType, { ropeTheta: number; rmsNormEps: number; maxPositions: number }> = {
  llama: { ropeTheta: 10000, rmsNormEps: 1e-6, maxPositions: 2048 },
  mistral: { ropeTheta: 10000, rmsNormEps: 1e-6, maxPositions: 4096 * 32 },
  qwen2: { ropeTheta: 10000, rmsNormEps: 1e-6, maxPositions: 32768 },
  bitnet: { ropeTheta: 500000, rmsNormEps: 1e-5, maxPositions: 2048 },
};

/** How RoPE frequencies are rescaled (HF `rope_type`); 'default' is plain rope_theta. */
export type RopeScaling =
  | { type: 'default' }
  | { type: 'linear'; factor: number }
  | { type: 'llama3'; factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositions: number };

/**
 * BitNet linear semantics (formats.md §4.1, §4.3). `online`: float master weights ternarized at load
 * like transformers' WeightQuant; `offline`: packed uint8 codes plus `weight_scale`, which multiplies
 * (`autobitlinear`, holds γ) or divides (`bitlinear`, holds 1/γ).
 */
export interface BitNetQuantization { linearClass: 'autobitlinear' | 'bitlinear'; mode: 'online' | 'offline' }

export interface GenerationDefaults { doSample: boolean; temperature?: number; topK?: number; topP?: number; maxNewTokens?: number }

export interface ModelConfig {
  architecture: 'llama' | 'bitnet';
  modelType: SupportedModelType;
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  maxPositions: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling: RopeScaling;
  hiddenAct: 'silu' | 'relu2';
  tieWordEmbeddings: boolean;
  /** Biases on q/k/v and on o_proj (Llama `attention_bias` sets both; Qwen2 has q/k/v only). */
  qkvBias: boolean;
  outputBias: boolean;
  mlpBias: boolean;
  /** Mistral-style sliding-window attention: a position sees at most this many keys (itself included). */
  slidingWindow: number | null;
  /** BitNet architecture only: null means transformers' plain nn.Linear forward (no quantization). */
  bitnetQuantization: BitNetQuantization | null;
  bosTokenId: number | null;
  eosTokenIds: number[];
  padTokenId: number | null;
  generation: GenerationDefaults;
}

type Json = Record<string, unknown>;

class ConfigReader {
  constructor(readonly file: string, readonly raw: Json) {}
  fail(problem: string): never { throw new FormatError(this.file, problem); }
  has(key: string): boolean { return this.raw[key] !== undefined && this.raw[key] !== null; }
  int(key: string, fallback?: number): number {
    const v = this.raw[key];
    if (v === undefined || v === null) {
      if (fallback !== undefined) return fallback;
      this.fail(`missing key "${key}" (a positive integer)`);
    }
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) this.fail(`"${key}" must be a positive integer, got ${JSON.stringify(v)}`);
    return v;
  }
  num(key: string, fallback?: number): number {
    const v = this.raw[key];
    if (v === undefined || v === null) {
      if (fallback !== undefined) return fallback;
      this.fail(`missing key "${key}" (a number)`);
    }
    if (typeof v !== 'number' || !Number.isFinite(v)) this.fail(`"${key}" must be a number, got ${JSON.stringify(v)}`);
    return v;
  }
  bool(key: string, fallback: boolean): boolean {
    const v = this.raw[key];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'boolean') this.fail(`"${key}" must be true or false, got ${JSON.stringify(v)}`);
    return v;
  }
  /** A token id or a list of them (eos_token_id is either in HF configs). */
  ids(key: string): number[] | undefined {
    const v = this.raw[key];
    if (v === undefined || v === null) return undefined;
    const list = Array.isArray(v) ? v : [v];
    if (!list.every((x) => typeof x === 'number' && Number.isInteger(x) && x >= 0)) this.fail(`"${key}" must be a token id or a list of ids, got ${JSON.stringify(v)}`);
    return list as number[];
  }
}

/** Normalise a parsed config.json (and generation_config.json, when the model has one). */
export function normalizeConfig(raw: unknown, file: string, generationRaw?: unknown, generationFile = 'generation_config.json'): ModelConfig {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new FormatError(file, 'not a JSON object');
  const c: ConfigReader = new ConfigReader(file, raw as Json);
  const modelType = c.raw.model_type;
  if (typeof modelType !== 'string') c.fail(`missing key "model_type"; ${SUPPORTED_LIST}`);
  if (!(SUPPORTED_MODEL_TYPES as readonly string[]).includes(modelType)) {
    c.fail(`unsupported model_type "${modelType}" (architectures ${JSON.stringify(c.raw.architectures ?? [])}); ${SUPPORTED_LIST}`);
  }
  const type = modelType as SupportedModelType;
  const architecture = type === 'bitnet' ? 'bitnet' : 'llama';

  const hiddenSize = c.int('hidden_size');
  const numHeads = c.int('num_attention_heads');
  const numKvHeads = c.int('num_key_value_heads', numHeads);
  if (numHeads % numKvHeads !== 0) c.fail(`num_attention_heads (${numHeads}) is not a multiple of num_key_value_heads (${numKvHeads})`);
  const headDim = c.int('head_dim', hiddenSize % numHeads === 0 ? hiddenSize / numHeads : undefined);
  if (headDim % 2 !== 0) c.fail(`head_dim ${headDim} must be even for rotary embeddings`);

  const act = c.raw.hidden_act ?? (architecture === 'bitnet' ? 'relu2' : 'silu');
  const hiddenAct = act === 'swish' ? 'silu' : act;
  if (hiddenAct !== 'silu' && hiddenAct !== 'relu2') c.fail(`unsupported hidden_act ${JSON.stringify(act)}; supported: silu, relu2`);

  const defaults = CLASS_DEFAULTS[type];
  const { theta, scaling } = readRope(c, defaults.ropeTheta);
  const attentionBias = c.bool('attention_bias', false);
  const qkvBias = type === 'qwen2' ? true : attentionBias;

  let slidingWindow: number | null = null;
  if (type === 'mistral' && c.has('sliding_window')) slidingWindow = c.int('sliding_window');
  if (type === 'qwen2' && c.bool('use_sliding_window', false)) c.fail('use_sliding_window=true is not supported (Qwen2 per-layer sliding windows)');

  const gen = readGeneration(generationRaw, generationFile);
  const eos = gen.eos ?? c.ids('eos_token_id') ?? [];
  return {
    architecture,
    modelType: type,
    vocabSize: c.int('vocab_size'),
    hiddenSize,
    intermediateSize: c.int('intermediate_size'),
    numLayers: c.int('num_hidden_layers'),
    numHeads,
    numKvHeads,
    headDim,
    maxPositions: c.int('max_position_embeddings', defaults.maxPositions),
    rmsNormEps: c.num('rms_norm_eps', defaults.rmsNormEps),
    ropeTheta: theta,
    ropeScaling: scaling,
    hiddenAct,
    // LlamaConfig, MistralConfig, Qwen2Config and BitNetConfig all default to untied.
    tieWordEmbeddings: c.bool('tie_word_embeddings', false),
    qkvBias,
    outputBias: type === 'qwen2' ? false : attentionBias,
    mlpBias: c.bool('mlp_bias', false),
    slidingWindow,
    bitnetQuantization: architecture === 'bitnet' ? readBitNetQuantization(c) : null,
    bosTokenId: gen.bos ?? c.ids('bos_token_id')?.[0] ?? null,
    eosTokenIds: eos,
    padTokenId: c.ids('pad_token_id')?.[0] ?? null,
    generation: gen.defaults,
  };
}

/** rope_theta at top level (transformers 4) or inside rope_parameters (transformers 5), plus scaling. */
function readRope(c: ConfigReader, defaultTheta: number): { theta: number; scaling: RopeScaling } {
  const params = (c.raw.rope_parameters ?? c.raw.rope_scaling ?? null) as Json | null;
  if (params !== null && (typeof params !== 'object' || Array.isArray(params))) c.fail('"rope_parameters"/"rope_scaling" must be an object');
  const theta = typeof params?.rope_theta === 'number' ? params.rope_theta : c.num('rope_theta', defaultTheta);
  const type = params?.rope_type ?? params?.type ?? 'default';
  const key = c.raw.rope_parameters ? 'rope_parameters' : 'rope_scaling';
  const num = (name: string): number => {
    const v = params?.[name];
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) c.fail(`"${key}.${name}" must be a positive number for rope_type "${String(type)}"`);
    return v;
  };
  switch (type) {
    case 'default': return { theta, scaling: { type: 'default' } };
    case 'linear': return { theta, scaling: { type: 'linear', factor: num('factor') } };
    case 'llama3': return {
      theta,
      scaling: {
        type: 'llama3', factor: num('factor'), lowFreqFactor: num('low_freq_factor'), highFreqFactor: num('high_freq_factor'),
        originalMaxPositions: num('original_max_position_embeddings'),
      },
    };
    default: return c.fail(`unsupported rope_type ${JSON.stringify(type)} in "${key}"; supported: default, linear, llama3`);
  }
}

function readBitNetQuantization(c: ConfigReader): BitNetQuantization | null {
  const q = c.raw.quantization_config as Json | undefined | null;
  // transformers runs BitNetForCausalLM without quantization_config as plain nn.Linear: mirror it.
  if (q === undefined || q === null) return null;
  if (q.quant_method !== 'bitnet') c.fail(`unsupported quantization_config.quant_method ${JSON.stringify(q.quant_method)}; supported: bitnet`);
  const linearClass = q.linear_class ?? 'bitlinear';
  const mode = q.quantization_mode ?? 'offline';
  if (linearClass !== 'bitlinear' && linearClass !== 'autobitlinear') c.fail(`unsupported quantization_config.linear_class ${JSON.stringify(linearClass)}; supported: bitlinear, autobitlinear`);
  if (mode !== 'online' && mode !== 'offline') c.fail(`unsupported quantization_config.quantization_mode ${JSON.stringify(mode)}; supported: online, offline`);
  if (mode === 'online' && linearClass !== 'autobitlinear') c.fail('quantization_mode "online" requires linear_class "autobitlinear" (as transformers does)');
  if (q.use_rms_norm === true) c.fail('quantization_config.use_rms_norm=true is not supported');
  return { linearClass, mode };
}

function readGeneration(raw: unknown, file: string): { bos?: number; eos?: number[]; defaults: GenerationDefaults } {
  if (raw === undefined || raw === null) return { defaults: { doSample: false } };
  if (typeof raw !== 'object' || Array.isArray(raw)) throw new FormatError(file, 'not a JSON object');
  const g: ConfigReader = new ConfigReader(file, raw as Json);
  const optionalNum = (key: string): number | undefined => (g.has(key) ? g.num(key) : undefined);
  const defaults: GenerationDefaults = { doSample: g.bool('do_sample', false) };
  const temperature = optionalNum('temperature');
  const topK = g.has('top_k') ? g.int('top_k') : undefined;
  const topP = optionalNum('top_p');
  const maxNewTokens = g.has('max_new_tokens') ? g.int('max_new_tokens') : undefined;
  if (temperature !== undefined) defaults.temperature = temperature;
  if (topK !== undefined) defaults.topK = topK;
  if (topP !== undefined) defaults.topP = topP;
  if (maxNewTokens !== undefined) defaults.maxNewTokens = maxNewTokens;
  const out: { bos?: number; eos?: number[]; defaults: GenerationDefaults } = { defaults };
  const bos = g.ids('bos_token_id')?.[0];
  const eos = g.ids('eos_token_id');
  if (bos !== undefined) out.bos = bos;
  if (eos !== undefined) out.eos = eos;
  return out;
}
