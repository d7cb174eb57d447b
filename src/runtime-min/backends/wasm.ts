/**
 * The WebAssembly SIMD backend: the portable fallback where the native addon is missing (no
 * compiler at install, another OS): the addon's own kernel files (native/tp_*.c, their SIMD128
 * paths) compiled for wasm32 with the module's platform layer (native/wasm/), committed as
 * native/wasm/tritpack.wasm and tritpack-relaxed.wasm (relaxed SIMD, used where the runtime
 * supports it) so users need no compiler.
 *
 * Threads: the module runs on a shared memory; `threads − 1` worker threads (default: one per
 * CPU, like native) each run an instance of it and take chunks of rows, tokens or heads from jobs
 * published in linear memory (native/wasm/pool.c, wasm-workers.ts). Every output row is computed
 * wholly by one thread, so results do not depend on the thread count. A runtime without shared
 * WebAssembly memory cannot run the module: the backend then reports itself unavailable and the
 * automatic choice falls back to the reference backend.
 *
 * Weights live in the module's linear memory (wasm-heap.ts); each call copies its activations in
 * and its result out (a few KiB, through scratch space kept between calls), and each layer's KV
 * cache is mirrored in linear memory, where only the newly appended positions are copied per call.
 * `matmulQ8` (ternary and int8 weights) and the element-wise steps (activation quantization,
 * RMSNorm, relu² and SiLU gating — the module imports V8's Math.exp, the reference's exp —,
 * residual adds, RoPE) are bit-identical to the reference; float matmuls and attention agree to
 * float32 rounding.
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import v8 from 'node:v8';
import { fileURLToPath } from 'node:url';
import { TritpackError } from '../../errors.js';
import { dtypeByteSize, toFloat32, type FloatDType } from '../../formats/dtype.js';
import { packedByteLength } from '../../formats/ternary.js';
import type { AttentionShape, Backend, Int8WeightSource, KvCache, PreparedWeight, QuantizedActivations, WeightSource } from '../backend.js';
import { LinearHeap, type WasmAllocator, type WasmMemory } from './wasm-heap.js';
import { WasmWorkers } from './wasm-workers.js';

type WasmModule = object;
const WA = (globalThis as unknown as {
  WebAssembly: {
    Module: new (bytes: Uint8Array) => WasmModule;
    Instance: new (module: WasmModule, imports: object) => { exports: unknown };
    Memory: new (descriptor: { initial: number; maximum: number; shared: boolean }) => WasmMemory;
    validate(bytes: Uint8Array): boolean;
  };
}).WebAssembly;

/** native/wasm/exports.c and the pool's and allocator's exports; numbers are byte offsets into the linear memory. */
interface WasmExports extends WasmAllocator {
  set_threads(threads: number): void;
  pool_quit(): void;
  repack(packing: number, packed: number, packedLen: number, row0: number, nrows: number, cols: number, out: number): number;
  ternary_q8(codes: number, rows: number, cols: number, scales: number, scaleMode: number, groupSize: number,
    q: number, n: number, sx: number, bias: number, out: number): void;
  ternary_f32(codes: number, rows: number, cols: number, scales: number, scaleMode: number, groupSize: number,
    x: number, n: number, bias: number, out: number): void;
  int8_stride(cols: number): number;
  int8_q8(w: number, rows: number, cols: number, scales: number, q: number, n: number, sx: number, bias: number, out: number): void;
  float_matmul(dtype: number, w: number, rows: number, cols: number, x: number, n: number, bias: number, out: number): void;
  f16_finite(h: number, count: number): number;
  attention(q: number, n: number, keys: number, values: number, length: number, heads: number, kvHeads: number, headDim: number,
    window: number, out: number): void;
  quantize(x: number, n: number, cols: number, q: number, scales: number): void;
  rmsnorm(x: number, n: number, cols: number, w: number, eps: number, out: number): void;
  gated(gate: number, up: number, count: number, relu2: number, out: number): void;
  add(x: number, y: number, count: number): void;
  rope(x: number, n: number, heads: number, headDim: number, cos: number, sin: number): void;
}

/** What an instance of the module imports: the shared memory and V8's exp (native/wasm/include/math.h). */
export function wasmImports(memory: WasmMemory): object {
  return { env: { memory, exp: Math.exp } };
}

export type WasmVariant = 'relaxed' | 'simd';
const compiled = new Map<WasmVariant, { module: WasmModule } | { error: string }>();

/**
 * The compiled module of a variant, or null (see wasmUnavailableReason). Without a variant: relaxed
 * SIMD where this runtime validates it, else plain SIMD128. Node 20's V8 keeps relaxed SIMD behind
 * a flag, which must be set before compiling (NODE_OPTIONS refuses it); setting it only enables
 * that instruction set.
 */
export function loadWasmModule(variant?: WasmVariant): WasmModule | null {
  if (variant === undefined) return loadWasmModule('relaxed') ?? loadWasmModule('simd');
  if (!compiled.has(variant)) {
    try {
      if (typeof SharedArrayBuffer !== 'function') throw new Error('this runtime has no shared memory (SharedArrayBuffer), which the threaded module needs');
      if (variant === 'relaxed') v8.setFlagsFromString('--experimental-wasm-relaxed-simd');
      const bytes = readFileSync(fileURLToPath(new URL(`../../../native/wasm/${variant === 'relaxed' ? 'tritpack-relaxed' : 'tritpack'}.wasm`, import.meta.url)));
      if (!WA.validate(bytes)) throw new Error(`this runtime does not support the ${variant === 'relaxed' ? 'relaxed SIMD' : 'SIMD128'} or threads instructions`);
      compiled.set(variant, { module: new WA.Module(bytes) });
    } catch (err) {
      compiled.set(variant, { error: (err as Error).message.split('\n')[0]! });
    }
  }
  const entry = compiled.get(variant)!;
  return 'module' in entry ? entry.module : null;
}

export function wasmUnavailableReason(variant: WasmVariant = 'simd'): string | null {
  loadWasmModule(variant);
  const entry = compiled.get(variant)!;
  return 'error' in entry ? entry.error : null;
}

const BLOCK_COLS = 128;
const BLOCK_BYTES = 32;
const FLOAT_CODES = { F32: 0, F16: 1, BF16: 2 } as const;
/** float_matmul's code for f16 weights without Inf/NaN (tp.h's TP_F16_FINITE: widened in fewer steps, native/tp_float.c). */
const F16_FINITE = 3;
const SCALE_MODES = { tensor: 0, channel: 1, group: 2 } as const;
/** Pages the module declares (build.sh: --initial-memory=524288, --max-memory=4 GiB). */
const INITIAL_PAGES = 8;
const MAX_PAGES = 65536;
/** Widest int8 row: |Σ w·x| ≤ 127·128·cols must stay below 2^31 (native/tp_int8.c sums in int32; tp.h's TP_INT8_MAX_COLS). */
const INT8_MAX_COLS = 131072;

interface WasmFloatWeight extends PreparedWeight { kind: 'float'; dtype: FloatDType; ptr: number; code: number }
interface WasmTernaryWeight extends PreparedWeight { kind: 'ternary'; codes: number; scales: number; scaleMode: number; groupSize: number }
/** Int8 rows zero padded to `stride` columns (int8_stride) at `q`, and one float32 scale per row. */
interface WasmInt8Weight extends PreparedWeight { kind: 'int8'; q: number; stride: number; scales: number }
type WasmWeight = WasmFloatWeight | WasmTernaryWeight | WasmInt8Weight;

/** A KV cache's mirror in linear memory: positions [0, synced) of keys and values are there. */
interface KvMirror { keys: number; values: number; capacity: number; synced: number }

/** The caller's destination when it has exactly the result's length (Backend's `out` contract), else a new array. */
function reuse(into: Float32Array | undefined, length: number): Float32Array {
  return into !== undefined && into.length === length ? into : new Float32Array(length);
}

export interface WasmBackendOptions {
  variant?: WasmVariant;
  /** Threads for the kernels, the calling thread included (default: one per CPU). */
  threads?: number;
}

export class WasmBackend implements Backend {
  readonly name = 'wasm';
  /** Which module runs: 'relaxed' (relaxed SIMD) or 'simd' (SIMD128). */
  readonly variant: WasmVariant;
  private readonly ex: WasmExports;
  private readonly memory: WasmMemory;
  private readonly heap: LinearHeap;
  private readonly workers: WasmWorkers;
  private readonly mirrors = new WeakMap<KvCache, KvMirror>();
  /** Frees a cache's mirror once the cache object is garbage (states are dropped, never closed). */
  private readonly mirrorCleanup = new FinalizationRegistry<KvMirror>((m) => this.releaseMirror(m));
  /** The block per-call scratch is bump-allocated from (see scratch()). */
  private arena = { at: 0, size: 0 };
  private threadCount = 1;
  private disposed = false;

  constructor(options: WasmBackendOptions = {}) {
    const variant = options.variant ?? (loadWasmModule('relaxed') ? 'relaxed' : 'simd');
    const module = loadWasmModule(variant);
    if (!module) throw new TritpackError(`the wasm backend is not available: ${wasmUnavailableReason(variant)}`);
    this.variant = variant;
    this.memory = new WA.Memory({ initial: INITIAL_PAGES, maximum: MAX_PAGES, shared: true });
    this.ex = new WA.Instance(module, wasmImports(this.memory)).exports as WasmExports;
    this.heap = new LinearHeap(this.ex);
    this.workers = new WasmWorkers(module, this.memory, this.heap);
    this.threads = options.threads ?? os.availableParallelism();
  }

  /** Threads the kernels use, the calling thread included. */
  get threads(): number { return this.threadCount; }
  set threads(threads: number) {
    if (!Number.isInteger(threads) || threads < 1) throw new TritpackError(`threads must be a positive integer, got ${threads}`);
    this.workers.ensure(threads - 1);
    this.ex.set_threads(threads);
    this.threadCount = threads;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.ex.pool_quit();
    this.workers.dispose();
  }

  private bytes(at: number, length: number): Uint8Array { return new Uint8Array(this.memory.buffer, at, length); }
  private floats(at: number, length: number): Float32Array { return new Float32Array(this.memory.buffer, at, length); }

  /** Copies `data` into fresh linear memory; returns its offset. */
  private put(data: ArrayBufferView): number {
    const at = this.heap.alloc(data.byteLength);
    this.bytes(at, data.byteLength).set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    return at;
  }

  /**
   * Runs `fn` with an allocator for per-call scratch: bump allocation in one block kept between calls
   * (a heap allocation per buffer costed about as much as a small kernel); what does not fit comes
   * from the heap, and the block is enlarged afterwards to what the call needed.
   */
  private scratch<T>(fn: (alloc: (bytes: number) => number, put: (data: ArrayBufferView) => number) => T): T {
    let used = 0;
    const overflow: number[] = [];
    const alloc = (bytes: number): number => {
      const span = Math.max(64, Math.ceil(bytes / 64) * 64);
      used += span;
      if (used <= this.arena.size) return this.arena.at + used - span;
      const at = this.heap.alloc(bytes);
      overflow.push(at);
      return at;
    };
    const put = (data: ArrayBufferView): number => {
      const at = alloc(data.byteLength);
      this.bytes(at, data.byteLength).set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      return at;
    };
    try {
      return fn(alloc, put);
    } finally {
      for (const at of overflow) this.heap.release(at);
      if (overflow.length > 0) {
        if (this.arena.size > 0) this.heap.release(this.arena.at);
        this.arena = { at: this.heap.alloc(used), size: used };
      }
    }
  }

  prepare(weight: WeightSource): PreparedWeight {
    const { name, rows, cols } = weight;
    if (weight.kind === 'int8') return this.prepareInt8(weight);
    if (weight.kind === 'float') {
      const ptr = this.put(weight.bytes);
      const code = weight.dtype === 'F16' && this.ex.f16_finite(ptr, rows * cols) ? F16_FINITE : FLOAT_CODES[weight.dtype];
      return { name, kind: 'float', rows, cols, dtype: weight.dtype, ptr, code, byteLength: weight.bytes.byteLength } as WasmFloatWeight;
    }
    const need = packedByteLength(weight.packing, rows * cols);
    if (weight.packed.length < need) throw new TritpackError(`${name}: ${weight.packing} data holds ${weight.packed.length} bytes, [${rows}, ${cols}] needs ${need}`);
    const codeBytes = rows * Math.ceil(cols / BLOCK_COLS) * BLOCK_BYTES;
    const codes = this.heap.alloc(codeBytes); // repack writes every byte, padding included
    const scales = this.put(weight.scales);
    const bad = this.scratch((_, put) => this.ex.repack(weight.packing === 't2' ? 0 : 1, put(weight.packed.subarray(0, need)), need, 0, rows, cols, codes));
    if (bad >= 0) {
      this.heap.release(codes);
      this.heap.release(scales);
      throw new TritpackError(`${name}: t2 data holds the invalid code 3 at element ${bad}`);
    }
    const groupSize = weight.granularity === 'group' ? weight.groupSize! : cols;
    return { name, kind: 'ternary', rows, cols, codes, scales, scaleMode: SCALE_MODES[weight.granularity], groupSize, byteLength: codeBytes + weight.scales.byteLength } as WasmTernaryWeight;
  }

  private prepareInt8(weight: Int8WeightSource): WasmInt8Weight {
    const { name, rows, cols } = weight;
    if (cols < 1 || cols > INT8_MAX_COLS) throw new TritpackError(`${name}: an int8 weight of ${cols} columns; 1 to ${INT8_MAX_COLS} supported`);
    if (weight.q.length < rows * cols || weight.scales.length < rows) throw new TritpackError(`${name}: int8 [${rows}, ${cols}] needs ${rows * cols} codes and ${rows} scales, got ${weight.q.length} and ${weight.scales.length}`);
    const stride = this.ex.int8_stride(cols);
    const q = this.heap.alloc(rows * stride);
    const dst = this.bytes(q, rows * stride);
    const src = new Uint8Array(weight.q.buffer, weight.q.byteOffset, rows * cols);
    if (stride === cols) dst.set(src);
    else {
      for (let r = 0; r < rows; r++) {
        dst.set(src.subarray(r * cols, (r + 1) * cols), r * stride);
        dst.fill(0, r * stride + cols, (r + 1) * stride); // the heap hands out reused memory
      }
    }
    const scales = this.put(weight.scales.subarray(0, rows));
    return { name, kind: 'int8', rows, cols, q, stride, scales, byteLength: rows * stride + rows * 4 };
  }

  matmul(w: PreparedWeight, x: Float32Array, n: number, bias?: Float32Array, into?: Float32Array): Float32Array {
    const weight = w as WasmWeight;
    if (weight.kind === 'int8') throw new Error(`matmul takes float activations; the int8 weight ${weight.name} needs matmulQ8`);
    const { rows, cols } = weight;
    const out = reuse(into, n * rows);
    return this.scratch((alloc, put) => {
      const xp = put(x.subarray(0, n * cols));
      const bp = bias ? put(bias) : 0;
      const op = alloc(n * rows * 4);
      if (weight.kind === 'float') this.ex.float_matmul(weight.code, weight.ptr, rows, cols, xp, n, bp, op);
      else this.ex.ternary_f32(weight.codes, rows, cols, weight.scales, weight.scaleMode, weight.groupSize, xp, n, bp, op);
      out.set(this.floats(op, n * rows));
      return out;
    });
  }

  matmulQ8(w: PreparedWeight, x: QuantizedActivations, bias?: Float32Array, into?: Float32Array): Float32Array {
    const weight = w as WasmWeight;
    if (weight.kind === 'int8') return this.int8Q8(weight, x, bias, into);
    if (weight.kind !== 'ternary') throw new Error(`matmulQ8 needs a ternary or int8 weight; ${weight.name} is float`);
    const { rows, cols } = weight;
    const { n } = x;
    const out = reuse(into, n * rows);
    return this.scratch((alloc, put) => {
      const qp = put(x.q.subarray(0, n * cols)), sxp = put(x.scales.subarray(0, n));
      const bp = bias ? put(bias) : 0;
      const op = alloc(n * rows * 4);
      this.ex.ternary_q8(weight.codes, rows, cols, weight.scales, weight.scaleMode, weight.groupSize, qp, n, sxp, bp, op);
      out.set(this.floats(op, n * rows));
      return out;
    });
  }

  private int8Q8(weight: WasmInt8Weight, x: QuantizedActivations, bias: Float32Array | undefined, into: Float32Array | undefined): Float32Array {
    const { rows, cols } = weight;
    const { n } = x;
    if (x.cols !== cols) throw new Error(`matmulQ8: ${weight.name} has ${cols} columns, the activations ${x.cols}`);
    if (x.q.length < n * cols || x.scales.length < n) throw new RangeError(`matmulQ8: ${n} tokens of ${cols} columns need ${n * cols} codes and ${n} scales, got ${x.q.length} and ${x.scales.length}`);
    const out = reuse(into, n * rows);
    return this.scratch((alloc, put) => {
      const qp = put(x.q.subarray(0, n * cols)), sxp = put(x.scales.subarray(0, n)), bp = bias ? put(bias) : 0, op = alloc(n * rows * 4);
      this.ex.int8_q8(weight.q, rows, cols, weight.scales, qp, n, sxp, bp, op);
      out.set(this.floats(op, n * rows));
      return out;
    });
  }

  gatherRows(w: PreparedWeight, ids: ArrayLike<number>): Float32Array {
    const weight = w as WasmWeight;
    if (weight.kind === 'int8') throw new Error(`gatherRows reads float or ternary weights; ${weight.name} is int8`);
    const { cols } = weight;
    const out = new Float32Array(ids.length * cols);
    const mem = new Uint8Array(this.memory.buffer);
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      if (weight.kind === 'float') {
        const rowBytes = cols * dtypeByteSize(weight.dtype);
        out.set(toFloat32(mem.slice(weight.ptr + id * rowBytes, weight.ptr + (id + 1) * rowBytes), weight.dtype), i * cols);
        continue;
      }
      const rowBytes = Math.ceil(cols / BLOCK_COLS) * BLOCK_BYTES;
      const row = mem.subarray(weight.codes + id * rowBytes, weight.codes + (id + 1) * rowBytes);
      const groups = Math.ceil(cols / weight.groupSize);
      const scales = this.floats(weight.scales, weight.scaleMode === 0 ? 1 : weight.scaleMode === 1 ? weight.rows : weight.rows * groups);
      for (let c = 0; c < cols; c++) {
        const t = ((row[(c >> 7) * BLOCK_BYTES + (c & 31)]! >> (2 * ((c >> 5) & 3))) & 3) - 1;
        const g = Math.floor(c / weight.groupSize);
        out[i * cols + c] = t * scales[weight.scaleMode === 0 ? 0 : weight.scaleMode === 1 ? id : id * groups + g]!;
      }
    }
    return out;
  }

  quantizeActivations(x: Float32Array, n: number, cols: number, into?: QuantizedActivations): QuantizedActivations {
    const fits = into !== undefined && into.q.length === n * cols && into.scales.length === n;
    const q = fits ? into.q : new Int8Array(n * cols);
    const scales = fits ? into.scales : new Float32Array(n);
    this.scratch((alloc, put) => {
      const qp = alloc(n * cols), sp = alloc(n * 4);
      this.ex.quantize(put(x.subarray(0, n * cols)), n, cols, qp, sp);
      q.set(this.bytes(qp, n * cols));
      scales.set(this.floats(sp, n));
    });
    return { n, cols, q, scales };
  }

  rmsnorm(x: Float32Array, n: number, cols: number, weight: Float32Array, eps: number, into?: Float32Array): Float32Array {
    const out = reuse(into, n * cols);
    return this.scratch((alloc, put) => {
      const op = alloc(n * cols * 4);
      this.ex.rmsnorm(put(x.subarray(0, n * cols)), n, cols, put(weight), eps, op);
      out.set(this.floats(op, n * cols));
      return out;
    });
  }

  rope(x: Float32Array, n: number, heads: number, headDim: number, cos: Float32Array, sin: Float32Array): void {
    const count = n * heads * headDim, half = n * (headDim / 2);
    this.scratch((_, put) => {
      const xp = put(x.subarray(0, count));
      this.ex.rope(xp, n, heads, headDim, put(cos.subarray(0, half)), put(sin.subarray(0, half)));
      x.set(this.floats(xp, count));
    });
  }

  attention(q: Float32Array, n: number, cache: KvCache, shape: AttentionShape, into?: Float32Array): Float32Array {
    const { numHeads, numKvHeads, headDim, slidingWindow } = shape;
    const outFloats = n * numHeads * headDim;
    const out = reuse(into, outFloats);
    const mirror = this.mirror(cache, n, numKvHeads * headDim);
    return this.scratch((alloc, put) => {
      const qp = put(q.subarray(0, outFloats));
      const op = alloc(outFloats * 4);
      this.ex.attention(qp, n, mirror.keys, mirror.values, cache.length, numHeads, numKvHeads, headDim, slidingWindow ?? 0, op);
      out.set(this.floats(op, outFloats));
      return out;
    });
  }

  /**
   * The cache's copy in linear memory, brought up to date. Positions before length − n were there at
   * earlier calls (the decoder appends, then attends, and never rewrites a position); the last n are
   * new. A cache seen for the first time, or one that skipped calls, is copied whole.
   */
  private mirror(cache: KvCache, n: number, stride: number): KvMirror {
    let m = this.mirrors.get(cache);
    const from = m && m.synced >= cache.length - n ? cache.length - n : 0;
    if (!m || m.capacity < cache.length) {
      const capacity = Math.max(cache.length, 2 * (m?.capacity ?? 0), 64);
      const grown = { keys: this.heap.alloc(capacity * stride * 4), values: this.heap.alloc(capacity * stride * 4), capacity, synced: 0 };
      if (m) {
        this.floats(grown.keys, from * stride).set(this.floats(m.keys, from * stride));
        this.floats(grown.values, from * stride).set(this.floats(m.values, from * stride));
        this.mirrorCleanup.unregister(m);
        this.releaseMirror(m);
      }
      m = grown;
      this.mirrors.set(cache, m);
      this.mirrorCleanup.register(cache, m, m);
    }
    this.floats(m.keys + from * stride * 4, (cache.length - from) * stride).set(cache.keys.subarray(from * stride, cache.length * stride));
    this.floats(m.values + from * stride * 4, (cache.length - from) * stride).set(cache.values.subarray(from * stride, cache.length * stride));
    m.synced = cache.length;
    return m;
  }

  private releaseMirror(m: KvMirror): void {
    if (this.disposed) return;
    this.heap.release(m.keys);
    this.heap.release(m.values);
  }

  gatedActivation(gate: Float32Array, up: Float32Array, act: 'silu' | 'relu2', into?: Float32Array): Float32Array {
    const count = gate.length;
    const out = reuse(into, count);
    return this.scratch((alloc, put) => {
      const op = alloc(count * 4);
      this.ex.gated(put(gate), put(up.subarray(0, count)), count, act === 'relu2' ? 1 : 0, op);
      out.set(this.floats(op, count));
      return out;
    });
  }

  addInPlace(x: Float32Array, y: Float32Array): void {
    const count = x.length;
    this.scratch((_, put) => {
      const xp = put(x);
      this.ex.add(xp, put(y.subarray(0, count)), count);
      x.set(this.floats(xp, count));
    });
  }
}
