/**
 * Weight loading: the tensor names of the Llama/BitNet layout, their expected shapes from the
 * config, and how each stored form becomes something a backend can prepare:
 *  - float tensors (safetensors or kept .tpk tensors) are handed over as bytes;
 *  - .tpk ternary tensors (t158/t2 + f32 scales) are handed over packed, as stored;
 *  - HF offline-packed BitNet (U8 [out/4, in] + weight_scale, formats.md §4.2–4.3) is re-packed to t2;
 *  - float projections of a quantized BitNet model are ternarized at load exactly like
 *    transformers' WeightQuant (online quantization).
 * Every missing tensor is reported at once; nothing is loaded before the layout checks pass.
 */
import { FormatError, TritpackError } from '../errors.js';
import { isFloatDType } from '../formats/dtype.js';
import { isTernaryEncoding } from '../formats/tpk.js';
import { packTernary } from '../formats/ternary.js';
import { ternarizeAbsmeanPacked } from '../converters/ternarize.js';
import type { Backend, LmHeadPrecision, PreparedWeight, WeightSource } from './backend.js';
import { quantizeWeightRows } from './quantize-rows.js';
import type { ModelConfig } from './config.js';
import type { LayerWeights, ModelWeights } from './model.js';
import type { ModelSource, StoredTensor } from './sources.js';

const EMBED = 'model.embed_tokens.weight';
const LM_HEAD = 'lm_head.weight';
const PROJECTIONS = ['q', 'k', 'v', 'o', 'gate', 'up', 'down'] as const;
type Projection = (typeof PROJECTIONS)[number];

interface Expected { name: string; shape: number[]; role: 'matrix' | 'vector' }

function projectionName(layer: number, p: Projection): string {
  return `model.layers.${layer}.${p === 'gate' || p === 'up' || p === 'down' ? 'mlp' : 'self_attn'}.${p}_proj`;
}

/** [rows, cols] of each projection: nn.Linear stores [out_features, in_features]. */
function projectionShape(cfg: ModelConfig, p: Projection): [number, number] {
  const h = cfg.hiddenSize, q = cfg.numHeads * cfg.headDim, kv = cfg.numKvHeads * cfg.headDim, i = cfg.intermediateSize;
  return ({ q: [q, h], k: [kv, h], v: [kv, h], o: [h, q], gate: [i, h], up: [i, h], down: [h, i] } as const)[p] as [number, number];
}

function hasBias(cfg: ModelConfig, p: Projection): boolean {
  if (p === 'q' || p === 'k' || p === 'v') return cfg.qkvBias;
  if (p === 'o') return cfg.outputBias;
  return cfg.mlpBias;
}

/** Everything the config says the checkpoint must hold, except the embedding / LM head pair. */
function expectedTensors(cfg: ModelConfig): Expected[] {
  const out: Expected[] = [{ name: 'model.norm.weight', shape: [cfg.hiddenSize], role: 'vector' }];
  for (let l = 0; l < cfg.numLayers; l++) {
    const prefix = `model.layers.${l}`;
    out.push({ name: `${prefix}.input_layernorm.weight`, shape: [cfg.hiddenSize], role: 'vector' });
    out.push({ name: `${prefix}.post_attention_layernorm.weight`, shape: [cfg.hiddenSize], role: 'vector' });
    if (cfg.architecture === 'bitnet') {
      out.push({ name: `${prefix}.self_attn.attn_sub_norm.weight`, shape: [cfg.numHeads * cfg.headDim], role: 'vector' });
      out.push({ name: `${prefix}.mlp.ffn_sub_norm.weight`, shape: [cfg.intermediateSize], role: 'vector' });
    }
    for (const p of PROJECTIONS) {
      const shape = projectionShape(cfg, p);
      out.push({ name: `${projectionName(l, p)}.weight`, shape, role: 'matrix' });
      if (hasBias(cfg, p)) out.push({ name: `${projectionName(l, p)}.bias`, shape: [shape[0]], role: 'vector' });
    }
  }
  return out;
}

function listNames(names: string[], max = 6): string {
  return names.length <= max ? names.join(', ') : `${names.slice(0, max).join(', ')} … and ${names.length - max} more`;
}

/**
 * The embedding and LM head names to read. A tied model may store either one (TinyStories-656K
 * stores only lm_head.weight; transformers fills embed_tokens from it); untied needs both.
 */
function embeddingNames(src: ModelSource, cfg: ModelConfig): { embed?: string; lmHead?: string } {
  const hasEmbed = src.tensor(EMBED) !== undefined;
  const hasHead = src.tensor(LM_HEAD) !== undefined;
  if (cfg.tieWordEmbeddings) {
    const name = hasEmbed ? EMBED : hasHead ? LM_HEAD : undefined;
    return { embed: name, lmHead: name };
  }
  return { embed: hasEmbed ? EMBED : undefined, lmHead: hasHead ? LM_HEAD : undefined };
}

/** Checks presence and shapes of every tensor the config implies; throws one error listing all problems of a kind. */
function checkLayout(src: ModelSource, cfg: ModelConfig): void {
  const missing: string[] = [];
  const { embed, lmHead } = embeddingNames(src, cfg);
  if (!embed) missing.push(cfg.tieWordEmbeddings ? `${EMBED} (or ${LM_HEAD}, tied)` : EMBED);
  if (!lmHead && !cfg.tieWordEmbeddings) missing.push(`${LM_HEAD} (tie_word_embeddings is false)`);
  const expected = expectedTensors(cfg);
  for (const e of expected) if (!src.tensor(e.name)) missing.push(e.name);
  if (missing.length > 0) {
    throw new FormatError(src.tensorOrigin, `missing ${missing.length} tensor(s) that a ${cfg.modelType} model with ${cfg.numLayers} layers needs: ${listNames(missing)}`);
  }
  for (const name of new Set([embed!, lmHead ?? embed!])) expected.push({ name, shape: [cfg.vocabSize, cfg.hiddenSize], role: 'matrix' });
  for (const e of expected) checkShape(src, cfg, e);
}

function checkShape(src: ModelSource, cfg: ModelConfig, e: Expected): void {
  const t = src.tensor(e.name)!;
  let want = e.shape;
  if (t.encoding === 'U8' && e.role === 'matrix' && cfg.bitnetQuantization?.mode === 'offline') want = [Math.ceil(e.shape[0]! / 4), e.shape[1]!];
  if (t.shape.length !== want.length || t.shape.some((d, i) => d !== want[i])) {
    throw new FormatError(src.tensorOrigin, `tensor ${e.name} has shape [${t.shape.join(', ')}], expected [${want.join(', ')}] from ${cfgSummary(cfg)}`);
  }
}

function cfgSummary(cfg: ModelConfig): string {
  return `config (hidden ${cfg.hiddenSize}, heads ${cfg.numHeads}/${cfg.numKvHeads}×${cfg.headDim}, intermediate ${cfg.intermediateSize}, vocab ${cfg.vocabSize})`;
}

/** The stored tensor as something Backend.prepare accepts; `ternaryRequired`: BitLinear needs codes. */
function weightSource(src: ModelSource, cfg: ModelConfig, name: string, rows: number, cols: number, ternaryRequired: boolean): WeightSource {
  const t: StoredTensor = src.tensor(name)!;
  if (isTernaryEncoding(t.encoding)) {
    const scale = t.scale;
    if (!scale) throw new FormatError(src.tensorOrigin, `ternary tensor ${name} has no scale entry`);
    return {
      kind: 'ternary', name, rows, cols, packing: t.encoding, packed: src.readBytes(name), scales: src.readScales(name),
      granularity: scale.granularity, ...(scale.groupSize !== undefined ? { groupSize: scale.groupSize } : {}),
    };
  }
  if (t.encoding === 'U8' && cfg.bitnetQuantization?.mode === 'offline') return hfPackedBitNet(src, cfg, name, rows, cols);
  if (!isFloatDType(t.encoding)) {
    throw new FormatError(src.tensorOrigin, `tensor ${name} is stored as ${t.encoding}; supported: F32, F16, BF16, t158, t2${cfg.architecture === 'bitnet' ? ', U8 (HF packed BitNet, offline)' : ''}`);
  }
  if (!ternaryRequired) return { kind: 'float', name, rows, cols, dtype: t.encoding, bytes: src.readBytes(name) };
  // transformers' WeightQuant: per tensor, s = 1/max(mean|W|, 1e-5), t = clamp(round(W·s)), W' = t/s (formula 'reference').
  const tern = ternarizeAbsmeanPacked(src.readVector(name), rows, cols, 't2', { kind: 'tensor' }, 'reference');
  return { kind: 'ternary', name, rows, cols, packing: 't2', packed: tern.data, scales: tern.scales, granularity: 'tensor' };
}

/**
 * HF offline BitNet: U8 [ceil(out/4), in]; unpacked row i·P + r sits in packed row r at bits 2i..2i+1
 * (chunked along the output dim), code t + 1. `weight_scale` multiplies for autobitlinear (it holds γ)
 * and divides for bitlinear (it holds 1/γ).
 */
function hfPackedBitNet(src: ModelSource, cfg: ModelConfig, name: string, rows: number, cols: number): WeightSource {
  const scaleName = name.replace(/\.weight$/, '.weight_scale');
  const scaleInfo = src.tensor(scaleName);
  if (!scaleInfo) throw new FormatError(src.tensorOrigin, `packed BitNet tensor ${name} has no ${scaleName}`);
  const stored = src.readVector(scaleName);
  if (stored.length !== 1 && stored.length !== rows) {
    throw new FormatError(src.tensorOrigin, `${scaleName} has ${stored.length} values, expected 1 (per tensor) or ${rows} (per output row)`);
  }
  const divide = cfg.bitnetQuantization!.linearClass === 'bitlinear';
  const scales = stored.map((s) => (divide ? 1 / s : s));
  const bytes = src.readBytes(name);
  const packedRows = Math.ceil(rows / 4);
  const codes = new Int8Array(rows * cols);
  for (let u = 0; u < rows; u++) {
    const shift = 2 * Math.floor(u / packedRows);
    const base = (u % packedRows) * cols;
    for (let c = 0; c < cols; c++) {
      const code = (bytes[base + c]! >> shift) & 3;
      if (code === 3) throw new FormatError(src.tensorOrigin, `packed BitNet tensor ${name} holds the invalid code 3 (row ${u}, column ${c})`);
      codes[u * cols + c] = code - 1;
    }
  }
  return {
    kind: 'ternary', name, rows, cols, packing: 't2', packed: packTernary('t2', codes), scales,
    granularity: stored.length === 1 ? 'tensor' : 'channel',
  };
}

/**
 * The LM head as an int8 weight (opt-in, `lmHead: 'int8'`): quantized per output row by the shared
 * quantizer (on the backend's activation quantizer, bit-identical everywhere), so every backend
 * multiplies the same integers.
 */
function int8Head(src: ModelSource, head: WeightSource, backend: Backend): WeightSource {
  if (head.kind !== 'float') throw new TritpackError(`${src.path}: an int8 LM head is made from float weights, but ${head.name} is stored as ${head.kind}`);
  try {
    const int8 = quantizeWeightRows(head, backend);
    src.releaseBytes(head.bytes); // the float head is not read again (a tied embedding re-faults the rows it gathers)
    return int8;
  } catch (err) {
    throw new FormatError(src.tensorOrigin, (err as Error).message);
  }
}

/** Read, check and prepare every weight of the model on `backend`; `lmHead: 'int8'` quantizes the output layer. */
export function loadWeights(src: ModelSource, cfg: ModelConfig, backend: Backend, options: { lmHead?: LmHeadPrecision } = {}): ModelWeights {
  checkLayout(src, cfg);
  const bitLinear = cfg.architecture === 'bitnet' && cfg.bitnetQuantization !== null;
  const prepare = (name: string, rows: number, cols: number, ternary = false): PreparedWeight =>
    backend.prepare(weightSource(src, cfg, name, rows, cols, ternary));
  const vector = (name: string): Float32Array => src.readVector(name);
  const optionalVector = (name: string, present: boolean): Float32Array | undefined => (present ? vector(name) : undefined);

  const names = embeddingNames(src, cfg);
  const embedSource = weightSource(src, cfg, names.embed!, cfg.vocabSize, cfg.hiddenSize, false);
  const embed = backend.prepare(embedSource);
  const tied = names.lmHead === names.embed || names.lmHead === undefined;
  const headSource = tied ? embedSource : weightSource(src, cfg, names.lmHead!, cfg.vocabSize, cfg.hiddenSize, false);
  const lmHead = options.lmHead === 'int8' ? backend.prepare(int8Head(src, headSource, backend)) : tied ? embed : backend.prepare(headSource);

  const layers: LayerWeights[] = [];
  for (let l = 0; l < cfg.numLayers; l++) {
    const prefix = `model.layers.${l}`;
    const proj = {} as Record<Projection, PreparedWeight>;
    const bias = {} as Record<Projection, Float32Array | undefined>;
    for (const p of PROJECTIONS) {
      const [rows, cols] = projectionShape(cfg, p);
      proj[p] = prepare(`${projectionName(l, p)}.weight`, rows, cols, bitLinear);
      bias[p] = optionalVector(`${projectionName(l, p)}.bias`, hasBias(cfg, p));
    }
    const layer: LayerWeights = {
      inputNorm: vector(`${prefix}.input_layernorm.weight`),
      postAttentionNorm: vector(`${prefix}.post_attention_layernorm.weight`),
      ...proj,
      qBias: bias.q, kBias: bias.k, vBias: bias.v, oBias: bias.o, gateBias: bias.gate, upBias: bias.up, downBias: bias.down,
    };
    if (cfg.architecture === 'bitnet') {
      layer.attnSubNorm = vector(`${prefix}.self_attn.attn_sub_norm.weight`);
      layer.ffnSubNorm = vector(`${prefix}.mlp.ffn_sub_norm.weight`);
    }
    layers.push(layer);
  }
  return { embed, lmHead, norm: vector('model.norm.weight'), layers, activations: bitLinear ? 'int8' : 'float' };
}
