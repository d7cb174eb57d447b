/**
 * The kernel interface. Every matmul of the forward pass and the few element-wise ops go through
 * a Backend, so a fast one (WebAssembly SIMD, native) replaces the TypeScript reference without
 * touching the model code. Calls are batched: a matmul takes all N tokens of a window at once,
 * never one row or one token per call.
 *
 * Weights reach a backend in their storage form (packed codes + scales + shape, or float bytes);
 * `prepare` is called once per weight at load and may repack into whatever layout the backend
 * computes fastest on. Activations are row-major [n × cols] Float32Arrays.
 */
import type { FloatDType } from '../formats/dtype.js';
import type { TernaryPacking } from '../formats/ternary.js';

/** A weight kept in floating point (embeddings, lm_head, unquantized projections). Row-major [rows × cols]. */
export interface FloatWeightSource {
  kind: 'float';
  name: string;
  rows: number;
  cols: number;
  dtype: FloatDType;
  bytes: Uint8Array; // little-endian, rows*cols elements
}

/**
 * A ternary weight: codes t ∈ {−1,0,1} packed with tritpack's contiguous layouts (formats/ternary.ts),
 * row-major [rows × cols], and float32 scales. The effective weight is W[r][c] = t[r][c] · scale,
 * where scale is per tensor (1 value), per output row (`rows` values) or per group of `groupSize`
 * consecutive columns in a row (rows·ceil(cols/groupSize) values, row-major).
 */
export interface TernaryWeightSource {
  kind: 'ternary';
  name: string;
  rows: number;
  cols: number;
  packing: TernaryPacking;
  packed: Uint8Array;
  scales: Float32Array;
  granularity: 'tensor' | 'channel' | 'group';
  groupSize?: number;
}

/**
 * A float weight quantized to int8 per output row, once at load by `quantizeWeightRows`
 * (quantize-rows.ts: each row through quantizeActivations, which is bit-identical on every backend),
 * so that all of them hold the very same q and s. Symmetric, in float32 as torch would compute it, mirroring the activations'
 * quantization (QuantizedActivations) except for the clamp:
 *   s_r = 127 / max(max_c |w_rc|, 1e-5),  q_rc = clamp(roundHalfEven(w_rc · s_r), −127, 127),
 * so W[r][c] ≈ q_rc / s_r. Opt-in only (it changes the numerics): the LM head with `lmHead: 'int8'`.
 */
export interface Int8WeightSource {
  kind: 'int8';
  name: string;
  rows: number;
  cols: number;
  q: Int8Array;          // [rows × cols]
  scales: Float32Array;  // [rows] the s_r of each row
}

export type WeightSource = FloatWeightSource | TernaryWeightSource | Int8WeightSource;

/** How the LM head runs: 'float' as stored (f16/bf16/f32, the default), or 'int8' (Int8WeightSource × int8 activations). */
export type LmHeadPrecision = 'float' | 'int8';

/** A weight after `prepare`: its shape is public, its storage belongs to the backend that made it. */
export interface PreparedWeight {
  readonly name: string;
  readonly kind: 'float' | 'ternary' | 'int8';
  readonly rows: number;
  readonly cols: number;
  /** Bytes the backend holds for this weight (for memory reports). */
  readonly byteLength: number;
}

/**
 * BitNet per-token int8 activations (formats.md §4.4): for token i, s_x[i] = 127 / max(max|x_i|, 1e-5)
 * and q = clamp(roundHalfEven(x·s_x), −128, 127), in float32 as transformers computes it.
 */
export interface QuantizedActivations {
  n: number;
  cols: number;
  q: Int8Array;          // [n × cols]
  scales: Float32Array;  // [n] the s_x of each token
}

/** Attention geometry for one layer call. */
export interface AttentionShape {
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  /** Keys a query may see (itself included); null = the whole causal prefix. */
  slidingWindow: number | null;
}

/** A per-layer key/value cache: [capacity × numKvHeads × headDim] each, filled up to `length`. */
export interface KvCache {
  keys: Float32Array;
  values: Float32Array;
  length: number;
}

/**
 * Methods that produce an activation take an optional `out` of exactly the result's length: a
 * backend may write the result there and return it (no allocation per call while decoding), or
 * ignore it and return a new array. Callers always use the returned array.
 */
export interface Backend {
  readonly name: string;
  /** One-time conversion of a stored weight into this backend's compute layout. */
  prepare(weight: WeightSource): PreparedWeight;
  /** out[n × rows] = x[n × cols] · Wᵀ (+ bias), float activations; W float or ternary (not int8). */
  matmul(w: PreparedWeight, x: Float32Array, n: number, bias?: Float32Array, out?: Float32Array): Float32Array;
  /** Quantize activations to int8 per token (BitNet BitLinear input). */
  quantizeActivations(x: Float32Array, n: number, cols: number, out?: QuantizedActivations): QuantizedActivations;
  /**
   * Int8 activations times a ternary or int8 weight; every backend's result is bit-identical to the
   * reference's, because the sums are exact integers and the float steps after them are fixed:
   *  - ternary: out[i][r] = float((Σ_g scale_g · S_g) / s_x[i] + bias[r]) in double, where
   *    S_g = Σ_{c in group g} t·q exactly and the groups are added in column order;
   *  - int8: out[i][r] = float(S / (s_r · s_x[i]) + bias[r]) in double, where S = Σ_c q_w·q exactly
   *    (|S| ≤ 127·128·cols fits int32) and s_r · s_x[i] is exact in double (two 24-bit significands),
   *    so the quotient is S / (s_r·s_x) correctly rounded to double, then the bias is added in double
   *    (0 without one) and the sum rounded once to float32.
   */
  matmulQ8(w: PreparedWeight, x: QuantizedActivations, bias?: Float32Array, out?: Float32Array): Float32Array;
  /** Rows `ids` of W (embedding lookup), as float32 [ids.length × cols]. */
  gatherRows(w: PreparedWeight, ids: ArrayLike<number>): Float32Array;
  /** out = x / sqrt(mean(x²) + eps) · weight over each row of `cols` (torch float32 RMSNorm). */
  rmsnorm(x: Float32Array, n: number, cols: number, weight: Float32Array, eps: number, out?: Float32Array): Float32Array;
  /** Rotate-half RoPE in place on x [n × heads × headDim]; cos/sin are [n × headDim/2], row i for token i. */
  rope(x: Float32Array, n: number, heads: number, headDim: number, cos: Float32Array, sin: Float32Array): void;
  /**
   * Causal GQA attention of n new queries at positions cache.length − n … cache.length − 1 (their keys
   * and values already appended to the cache); q is [n × numHeads × headDim]; returns the same shape.
   */
  attention(q: Float32Array, n: number, cache: KvCache, shape: AttentionShape, out?: Float32Array): Float32Array;
  /** out = act(gate) · up element-wise, act = silu (SwiGLU) or relu² (BitNet). */
  gatedActivation(gate: Float32Array, up: Float32Array, act: 'silu' | 'relu2', out?: Float32Array): Float32Array;
  /** x += y element-wise (residual connections). */
  addInPlace(x: Float32Array, y: Float32Array): void;
  /** Release what prepare() allocated outside the JS heap (no-op for the reference). */
  dispose?(): void;
}
