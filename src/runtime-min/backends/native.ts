/**
 * The native backend: the kernels run in tritpack's Node-API addon (native/, built by node-gyp at
 * install). Matmuls and attention are the work; the element-wise steps (activation quantization,
 * RMSNorm, gating, residual adds, RoPE) are native too because in JavaScript they cost about a fifth
 * of a decode step, and they repeat the reference's roundings exactly.
 *
 * Ternary weights are repacked once at load into the addon's compute layout (2-bit codes in
 * 128-column blocks, see native/tp.h), in memory outside the JS heap on huge pages; float weights
 * are used in place from their stored bytes. loadModel hands both over as views into a mapping of
 * the model file (`mapFile`), so no weight is copied into a JavaScript buffer on the way.
 * Results go into the caller's `out` buffers when given.
 * `matmulQ8` is bit-identical to the reference (exact integer sums, then the same double-precision
 * steps); float matmuls accumulate in float32 lanes and agree to rounding.
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { TritpackError } from '../../errors.js';
import { dtypeByteSize, toFloat32, type FloatDType } from '../../formats/dtype.js';
import { packedByteLength } from '../../formats/ternary.js';
import type { AttentionShape, Backend, Int8WeightSource, KvCache, PreparedWeight, QuantizedActivations, WeightSource } from '../backend.js';
import type { FileMapper } from '../sources.js';

/** The addon's entry points (native/tp_addon.c). */
export interface NativeAddon {
  features(): { avx2: boolean; threads: number };
  setThreads(threads: number): number;
  /** Force the portable C kernels (no AVX2) process-wide; for tests and comparisons. */
  setPortable(on: boolean): void;
  /** false: the AVX2 kernels even where AVX-512 VNNI is available (tests reach them on VNNI machines). */
  setVnni(on: boolean): void;
  repack(packing: number, packed: Uint8Array, row0: number, nrows: number, cols: number, out: Uint8Array): number;
  ternaryQ8(codes: Uint8Array, rows: number, cols: number, scales: Float32Array, scaleMode: number, groupSize: number,
    q: Int8Array, n: number, bias: Float32Array | null, out: Float32Array, sx: Float32Array): void;
  /** Int8 weights (rows × stride bytes, stride = cols rounded up to INT8_ALIGN, zero padded) × int8 activations. */
  int8Q8(q: Uint8Array, rows: number, cols: number, scales: Float32Array, x: Int8Array, n: number, bias: Float32Array | null, out: Float32Array, sx: Float32Array): void;
  ternaryF32(codes: Uint8Array, rows: number, cols: number, scales: Float32Array, scaleMode: number, groupSize: number,
    x: Float32Array, n: number, bias: Float32Array | null, out: Float32Array): void;
  ternaryRow(codes: Uint8Array, rows: number, cols: number, scales: Float32Array, scaleMode: number, groupSize: number, row: number, out: Float32Array): void;
  floatMatmul(dtype: number, bytes: Uint8Array, rows: number, cols: number, x: Float32Array, n: number, bias: Float32Array | null, out: Float32Array): void;
  attention(q: Float32Array, n: number, keys: Float32Array, values: Float32Array, length: number, heads: number, kvHeads: number, headDim: number,
    window: number, out: Float32Array): void;
  quantize(x: Float32Array, n: number, cols: number, q: Int8Array, scales: Float32Array): void;
  rmsnorm(x: Float32Array, n: number, cols: number, weight: Float32Array, eps: number, out: Float32Array): void;
  gated(gate: Float32Array, up: Float32Array, relu2: number, out: Float32Array): void;
  add(x: Float32Array, y: Float32Array): void;
  rope(x: Float32Array, n: number, heads: number, headDim: number, cos: Float32Array, sin: Float32Array): void;
  readBandwidth(bytes: number, reps: number): number;
  /** A zero-filled buffer outside the JS heap on huge pages where the OS allows (fewer TLB misses while streaming weights). */
  allocWeights(bytes: number): Uint8Array;
  /**
   * The whole file mapped read-only (native/tp_map.c), through `fd` when given (left open) or by opening
   * `file`; unmapped when the buffer is collected. Never write through a view. Throws an error with
   * `code` 'TP_MMAP_UNSUPPORTED' where the file system does not map the file.
   */
  mapFile(file: string, fd?: number): ArrayBuffer;
  /** Lets the pages wholly inside `view` leave the resident set if it lies in a mapFile mapping (they re-fault from the file); false otherwise. */
  dropPages(view: Uint8Array): boolean;
}

let loaded: { addon: NativeAddon } | { error: string } | undefined;

/** Where the built addon lives: the same relative path from src/runtime-min/backends (tsx) and dist/runtime-min/backends. */
export function nativeAddonPath(): string {
  return fileURLToPath(new URL('../../../build/Release/tritpack_native.node', import.meta.url));
}

/** The addon, or null with the reason it could not be loaded (not built, other platform). */
export function loadNativeAddon(): NativeAddon | null {
  if (!loaded) {
    try {
      loaded = { addon: createRequire(import.meta.url)(nativeAddonPath()) as NativeAddon };
    } catch (err) {
      loaded = { error: (err as Error).message.split('\n')[0]! };
    }
  }
  return 'addon' in loaded ? loaded.addon : null;
}

export function nativeUnavailableReason(): string | null {
  loadNativeAddon();
  return loaded && 'error' in loaded ? loaded.error : null;
}

const FLOAT_CODES = { F32: 0, F16: 1, BF16: 2 } as const;
const SCALE_MODES = { tensor: 0, channel: 1, group: 2 } as const;

interface NativeFloatWeight extends PreparedWeight { kind: 'float'; dtype: FloatDType; bytes: Uint8Array }
interface NativeTernaryWeight extends PreparedWeight {
  kind: 'ternary';
  codes: Uint8Array;      // compute layout, rows × ceil(cols/128)·32 bytes
  scales: Float32Array;
  scaleMode: number;
  groupSize: number;
}
interface NativeInt8Weight extends PreparedWeight { kind: 'int8'; q: Uint8Array; scales: Float32Array }
type NativeWeight = NativeFloatWeight | NativeTernaryWeight | NativeInt8Weight;

/** Int8 weight rows are padded to this many columns (native/tp.h's TP_INT8_ALIGN): whole 64-byte loads. */
const INT8_ALIGN = 64;

export interface NativeBackendOptions {
  /** Threads for the kernels, the calling thread included (default: one per online CPU). Process-wide. */
  threads?: number;
}

/** Weights are carved out of mappings of this size (untouched tails cost no memory). */
const SLAB_BYTES = 64 << 20;

/** The caller's destination when it has exactly the result's length (Backend's `out` contract), else a new array. */
function reuse(into: Float32Array | undefined, length: number): Float32Array {
  return into !== undefined && into.length === length ? into : new Float32Array(length);
}

export class NativeBackend implements Backend, FileMapper {
  readonly name = 'native';
  private readonly addon: NativeAddon;
  private slab: Uint8Array | null = null;
  private slabUsed = 0;

  constructor(options: NativeBackendOptions = {}) {
    const addon = loadNativeAddon();
    if (!addon) throw new TritpackError(`the native backend is not available: ${nativeUnavailableReason()} (build it with \`npm rebuild tritpack\` or use --backend reference)`);
    this.addon = addon;
    if (options.threads !== undefined) {
      if (!Number.isInteger(options.threads) || options.threads < 1) throw new TritpackError(`threads must be a positive integer, got ${options.threads}`);
      addon.setThreads(options.threads);
    }
  }

  /**
   * Room for one weight's codes in the current slab (64-byte aligned), or in a new one. Slabs are huge
   * page mappings (allocWeights); sharing them keeps small tensors (k/v projections) on huge pages
   * too without rounding each up to 2 MiB of resident memory.
   */
  private allocCodes(bytes: number): Uint8Array {
    const span = Math.ceil(bytes / 64) * 64;
    if (!this.slab || this.slabUsed + span > this.slab.length) {
      this.slab = this.addon.allocWeights(Math.max(SLAB_BYTES, span));
      this.slabUsed = 0;
    }
    const view = this.slab.subarray(this.slabUsed, this.slabUsed + bytes);
    this.slabUsed += span;
    return view;
  }

  /**
   * The model file mapped read-only (through `fd`, its open descriptor, when given), for tensor bytes
   * used where they lie; null where the file system does not map files (the source reads it instead).
   * Any other failure is one line naming the file. The mapping lives as long as a view into it does:
   * prepared float weights hold theirs.
   */
  mapFile(file: string, fd?: number): ArrayBuffer | null {
    try {
      return this.addon.mapFile(file, fd);
    } catch (err) {
      if ((err as { code?: unknown }).code === 'TP_MMAP_UNSUPPORTED') return null;
      throw new TritpackError((err as Error).message, { cause: err });
    }
  }

  /** Lets the pages wholly inside a view of a mapFile mapping leave the resident set; other buffers are left alone. */
  dropPages(view: Uint8Array): void {
    this.addon.dropPages(view);
  }

  /** Threads the kernels use now, the calling thread included. */
  get threads(): number {
    return this.addon.features().threads;
  }

  prepare(weight: WeightSource): PreparedWeight {
    const { name, rows, cols } = weight;
    if (weight.kind === 'float') {
      // Used in place: no float32 copy of an f16/bf16 tensor. A mapped tensor's pages were all touched by
      // the load's sha256 check (.tpk); let the kernels fault in what they read (of an embedding, its rows).
      this.dropPages(weight.bytes);
      return { name, kind: 'float', rows, cols, dtype: weight.dtype, bytes: weight.bytes, byteLength: weight.bytes.byteLength } as NativeFloatWeight;
    }
    if (weight.kind === 'int8') return this.prepareInt8(weight);
    const need = packedByteLength(weight.packing, rows * cols);
    if (weight.packed.length < need) throw new TritpackError(`${name}: ${weight.packing} data holds ${weight.packed.length} bytes, [${rows}, ${cols}] needs ${need}`);
    const codes = this.allocCodes(rows * Math.ceil(cols / 128) * 32);
    const bad = this.addon.repack(weight.packing === 't2' ? 0 : 1, weight.packed, 0, rows, cols, codes);
    if (bad >= 0) throw new TritpackError(`${name}: t2 data holds the invalid code 3 at element ${bad}`);
    // Stored codes mapped from the file are not needed any more: their pages leave the resident set
    // (a no-op for codes read into a buffer).
    this.dropPages(weight.packed);
    const groupSize = weight.granularity === 'group' ? weight.groupSize! : cols;
    return {
      name, kind: 'ternary', rows, cols, codes, scales: weight.scales, scaleMode: SCALE_MODES[weight.granularity], groupSize,
      byteLength: codes.byteLength + weight.scales.byteLength,
    } as NativeTernaryWeight;
  }

  /** Rows copied into huge-page memory, each zero padded to whole 64-byte loads. */
  private prepareInt8(weight: Int8WeightSource): NativeInt8Weight {
    const { name, rows, cols } = weight;
    const stride = Math.ceil(cols / INT8_ALIGN) * INT8_ALIGN;
    const q = this.allocCodes(rows * stride); // fresh slab memory: the padding is already zero
    const from = new Uint8Array(weight.q.buffer, weight.q.byteOffset, rows * cols);
    for (let r = 0; r < rows; r++) q.set(from.subarray(r * cols, (r + 1) * cols), r * stride);
    return { name, kind: 'int8', rows, cols, q, scales: weight.scales, byteLength: q.byteLength + weight.scales.byteLength };
  }

  matmul(w: PreparedWeight, x: Float32Array, n: number, bias?: Float32Array, into?: Float32Array): Float32Array {
    const weight = w as NativeWeight;
    if (weight.kind === 'int8') throw new Error(`matmul takes float activations; the int8 weight ${weight.name} needs matmulQ8`);
    const out = reuse(into, n * weight.rows);
    if (weight.kind === 'float') this.addon.floatMatmul(FLOAT_CODES[weight.dtype], weight.bytes, weight.rows, weight.cols, x, n, bias ?? null, out);
    else this.addon.ternaryF32(weight.codes, weight.rows, weight.cols, weight.scales, weight.scaleMode, weight.groupSize, x, n, bias ?? null, out);
    return out;
  }

  matmulQ8(w: PreparedWeight, x: QuantizedActivations, bias?: Float32Array, into?: Float32Array): Float32Array {
    const weight = w as NativeWeight;
    if (weight.kind === 'float') throw new Error(`matmulQ8 needs a ternary or int8 weight; ${weight.name} is float`);
    const out = reuse(into, x.n * weight.rows);
    if (weight.kind === 'int8') {
      this.addon.int8Q8(weight.q, weight.rows, weight.cols, weight.scales, x.q, x.n, bias ?? null, out, x.scales);
      return out;
    }
    this.addon.ternaryQ8(weight.codes, weight.rows, weight.cols, weight.scales, weight.scaleMode, weight.groupSize, x.q, x.n, bias ?? null, out, x.scales);
    return out;
  }

  gatherRows(w: PreparedWeight, ids: ArrayLike<number>): Float32Array {
    const weight = w as NativeWeight;
    if (weight.kind === 'int8') throw new Error(`gatherRows reads float or ternary weights; ${weight.name} is int8`);
    const { cols } = weight;
    const out = new Float32Array(ids.length * cols);
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      if (weight.kind === 'ternary') {
        this.addon.ternaryRow(weight.codes, weight.rows, cols, weight.scales, weight.scaleMode, weight.groupSize, id, out.subarray(i * cols, (i + 1) * cols));
        continue;
      }
      const rowBytes = cols * dtypeByteSize(weight.dtype);
      out.set(toFloat32(weight.bytes.subarray(id * rowBytes, (id + 1) * rowBytes), weight.dtype), i * cols);
    }
    return out;
  }

  quantizeActivations(x: Float32Array, n: number, cols: number, into?: QuantizedActivations): QuantizedActivations {
    const fits = into !== undefined && into.q.length === n * cols && into.scales.length === n;
    const q = fits ? into.q : new Int8Array(n * cols);
    const scales = fits ? into.scales : new Float32Array(n);
    this.addon.quantize(x, n, cols, q, scales);
    return { n, cols, q, scales };
  }

  rmsnorm(x: Float32Array, n: number, cols: number, weight: Float32Array, eps: number, into?: Float32Array): Float32Array {
    const out = reuse(into, n * cols);
    this.addon.rmsnorm(x, n, cols, weight, eps, out);
    return out;
  }

  rope(x: Float32Array, n: number, heads: number, headDim: number, cos: Float32Array, sin: Float32Array): void { this.addon.rope(x, n, heads, headDim, cos, sin); }

  attention(q: Float32Array, n: number, cache: KvCache, shape: AttentionShape, into?: Float32Array): Float32Array {
    const out = reuse(into, n * shape.numHeads * shape.headDim);
    this.addon.attention(q, n, cache.keys, cache.values, cache.length, shape.numHeads, shape.numKvHeads, shape.headDim, shape.slidingWindow ?? 0, out);
    return out;
  }
  gatedActivation(gate: Float32Array, up: Float32Array, act: 'silu' | 'relu2', into?: Float32Array): Float32Array {
    const out = reuse(into, gate.length);
    this.addon.gated(gate, up, act === 'relu2' ? 1 : 0, out);
    return out;
  }

  addInPlace(x: Float32Array, y: Float32Array): void { this.addon.add(x, y); }
}
