/**
 * The decoder forward pass (llama2.c style: the math, in order, one block per concept), for the
 * Llama family and for BitNet b1.58 (relu² MLP, attn_sub_norm / ffn_sub_norm, BitLinear with
 * per-token int8 activations). All arithmetic happens in the backend; this file only sequences it.
 */
import type { Backend, KvCache, PreparedWeight, QuantizedActivations } from './backend.js';
import type { ModelConfig } from './config.js';
import { ropeInverseFrequencies, ropeTables } from './rope.js';

export interface LayerWeights {
  inputNorm: Float32Array;
  postAttentionNorm: Float32Array;
  q: PreparedWeight; k: PreparedWeight; v: PreparedWeight; o: PreparedWeight;
  gate: PreparedWeight; up: PreparedWeight; down: PreparedWeight;
  qBias?: Float32Array; kBias?: Float32Array; vBias?: Float32Array; oBias?: Float32Array;
  gateBias?: Float32Array; upBias?: Float32Array; downBias?: Float32Array;
  /** BitNet only: RMSNorm before o_proj and before down_proj. */
  attnSubNorm?: Float32Array;
  ffnSubNorm?: Float32Array;
}

export interface ModelWeights {
  embed: PreparedWeight;
  /** The same object as `embed` when the embedding is tied, unless the head was made int8 (the lookup stays float). */
  lmHead: PreparedWeight;
  norm: Float32Array;
  layers: LayerWeights[];
  /** 'int8': the projections are BitLinear (BitNet W1.58A8); 'float': activations stay float. */
  activations: 'float' | 'int8';
}

/** Decoding state: one KV cache per layer, and how many positions it holds. */
export interface DecoderState { caches: KvCache[]; position: number }

export class Decoder {
  private readonly invFreq: Float32Array;
  /**
   * Activation buffers reused from one forward call to the next (backends that honour `out` then
   * allocate nothing per decoded token). Every one is dead when forward returns: keys and values
   * are copied into the cache, and the logits it returns are always a fresh array.
   */
  private readonly scratch = new Map<string, Float32Array>();
  private readonly scratchQ = new Map<number, QuantizedActivations>();

  constructor(readonly config: ModelConfig, readonly weights: ModelWeights, readonly backend: Backend) {
    this.invFreq = ropeInverseFrequencies(config);
  }

  newState(): DecoderState {
    return { caches: this.weights.layers.map(() => ({ keys: new Float32Array(0), values: new Float32Array(0), length: 0 })), position: 0 };
  }

  /**
   * Run `ids` at the state's next positions (a whole window at once), append their keys/values,
   * and return the logits [ids.length × vocab], or only the last token's when `lastOnly`.
   */
  forward(state: DecoderState, ids: ArrayLike<number>, lastOnly = false): Float32Array {
    const { backend: be, config: cfg, weights: w } = this;
    const n = ids.length;
    const dim = cfg.hiddenSize;
    const x = be.gatherRows(w.embed, ids);
    const rope = ropeTables(this.invFreq, state.position, n);
    for (let l = 0; l < w.layers.length; l++) {
      const layer = w.layers[l]!;
      be.addInPlace(x, this.attention(layer, state.caches[l]!, rope, be.rmsnorm(x, n, dim, layer.inputNorm, cfg.rmsNormEps, this.buf('norm', n * dim)), n));
      be.addInPlace(x, this.mlp(layer, be.rmsnorm(x, n, dim, layer.postAttentionNorm, cfg.rmsNormEps, this.buf('norm', n * dim)), n));
    }
    state.position += n;
    const rows = lastOnly ? 1 : n;
    const final = be.rmsnorm(lastOnly ? x.subarray((n - 1) * dim) : x, rows, dim, w.norm, cfg.rmsNormEps);
    // transformers keeps the LM head an unquantized nn.Linear; an int8 head exists only by request (lmHead: 'int8')
    if (w.lmHead.kind === 'int8') return be.matmulQ8(w.lmHead, be.quantizeActivations(final, rows, dim));
    return be.matmul(w.lmHead, final, rows);
  }

  private attention(layer: LayerWeights, cache: KvCache, rope: { cos: Float32Array; sin: Float32Array }, x: Float32Array, n: number): Float32Array {
    const { backend: be, config: cfg } = this;
    const [q, k, v] = this.project(x, n, [layer.q, layer.k, layer.v], [layer.qBias, layer.kBias, layer.vBias], ['q', 'k', 'v']);
    be.rope(q!, n, cfg.numHeads, cfg.headDim, rope.cos, rope.sin);
    be.rope(k!, n, cfg.numKvHeads, cfg.headDim, rope.cos, rope.sin);
    appendToCache(cache, k!, v!, n, cfg.numKvHeads * cfg.headDim);
    const width = cfg.numHeads * cfg.headDim;
    let a = be.attention(q!, n, cache, { numHeads: cfg.numHeads, numKvHeads: cfg.numKvHeads, headDim: cfg.headDim, slidingWindow: cfg.slidingWindow }, this.buf('attn', n * width));
    if (layer.attnSubNorm) a = be.rmsnorm(a, n, width, layer.attnSubNorm, cfg.rmsNormEps, this.buf('attnNorm', n * width));
    return this.project(a, n, [layer.o], [layer.oBias], ['o'])[0]!;
  }

  private mlp(layer: LayerWeights, x: Float32Array, n: number): Float32Array {
    const { backend: be, config: cfg } = this;
    const [gate, up] = this.project(x, n, [layer.gate, layer.up], [layer.gateBias, layer.upBias], ['gate', 'up']);
    let h = be.gatedActivation(gate!, up!, cfg.hiddenAct, this.buf('h', gate!.length));
    if (layer.ffnSubNorm) h = be.rmsnorm(h, n, cfg.intermediateSize, layer.ffnSubNorm, cfg.rmsNormEps, this.buf('hNorm', h.length));
    return this.project(h, n, [layer.down], [layer.downBias], ['down'])[0]!;
  }

  /** x · Wᵀ for weights sharing one input; a BitLinear input is quantized once for all of them. */
  private project(x: Float32Array, n: number, ws: PreparedWeight[], biases: (Float32Array | undefined)[], outs: string[]): Float32Array[] {
    const be = this.backend;
    if (this.weights.activations === 'float') return ws.map((w, i) => be.matmul(w, x, n, biases[i], this.buf(outs[i]!, n * w.rows)));
    const q = be.quantizeActivations(x, n, ws[0]!.cols, this.bufQ(n, ws[0]!.cols));
    return ws.map((w, i) => be.matmulQ8(w, q, biases[i], this.buf(outs[i]!, n * w.rows)));
  }

  /** The reusable buffer `key` with exactly `length` floats (reallocated when the window size changes). */
  private buf(key: string, length: number): Float32Array {
    let b = this.scratch.get(key);
    if (b?.length !== length) this.scratch.set(key, (b = new Float32Array(length)));
    return b;
  }

  private bufQ(n: number, cols: number): QuantizedActivations {
    let b = this.scratchQ.get(cols);
    if (b?.n !== n) this.scratchQ.set(cols, (b = { n, cols, q: new Int8Array(n * cols), scales: new Float32Array(n) }));
    return b;
  }
}

/** Append n positions of keys/values, growing the cache geometrically (sized by use, not by max_position_embeddings). */
function appendToCache(cache: KvCache, k: Float32Array, v: Float32Array, n: number, stride: number): void {
  const needed = (cache.length + n) * stride;
  if (needed > cache.keys.length) {
    const capacity = Math.max(needed, 2 * cache.keys.length, 64 * stride);
    const grow = (old: Float32Array): Float32Array => { const a = new Float32Array(capacity); a.set(old.subarray(0, cache.length * stride)); return a; };
    cache.keys = grow(cache.keys);
    cache.values = grow(cache.values);
  }
  cache.keys.set(k, cache.length * stride);
  cache.values.set(v, cache.length * stride);
  cache.length += n;
}
