/**
 * The WebAssembly SIMD backend: the portable fallback where the native addon is missing (no
 * compiler at install, another OS), built from native/wasm/tp_wasm.c and committed as
 * native/wasm/tritpack.wasm and tritpack-relaxed.wasm (relaxed SIMD, used where the runtime
 * supports it) so users need no compiler. Single-threaded for now.
 *
 * Weights live in the module's linear memory, bump-allocated here (the C side has no allocator);
 * each call copies its activations into scratch space above the weights and the result out again.
 * `matmulQ8` is bit-identical to the reference (exact integer sums, the same double steps); float
 * matmuls and attention agree to float32 rounding. The element-wise steps run in the reference backend.
 */
import { readFileSync } from 'node:fs';
import v8 from 'node:v8';
import { fileURLToPath } from 'node:url';
import { TritpackError } from '../../errors.js';
import { dtypeByteSize, toFloat32, type FloatDType } from '../../formats/dtype.js';
import { packedByteLength } from '../../formats/ternary.js';
import type { AttentionShape, Backend, KvCache, PreparedWeight, QuantizedActivations, WeightSource } from '../backend.js';
import { ReferenceBackend } from '../reference-backend.js';

/** The few members of the WebAssembly JS API used here (the project's `lib` setting declares none). */
interface WasmMemory { readonly buffer: ArrayBuffer; grow(pages: number): number }
type WasmModule = object;
const WA = (globalThis as unknown as {
  WebAssembly: {
    Module: new (bytes: Uint8Array) => WasmModule;
    Instance: new (module: WasmModule, imports: object) => { exports: unknown };
    validate(bytes: Uint8Array): boolean;
  };
}).WebAssembly;

interface WasmExports {
  memory: WasmMemory;
  __heap_base: { value: unknown };
  ternary_q8(codes: number, rows: number, cols: number, scales: number, scaleMode: number, groupSize: number,
    x: number, xcols: number, xsum: number, n: number, sx: number, bias: number, out: number): void;
  ternary_f32(codes: number, rows: number, cols: number, scales: number, scaleMode: number, groupSize: number,
    x: number, n: number, bias: number, out: number): void;
  float_matmul(dtype: number, w: number, rows: number, cols: number, x: number, n: number, bias: number, out: number): void;
  repack(packing: number, packed: number, row0: number, nrows: number, cols: number, out: number): number;
  activation_bytes(): number;
  attention(q: number, n: number, keys: number, values: number, length: number, heads: number, kvHeads: number, headDim: number,
    window: number, scores: number, out: number): void;
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
      if (variant === 'relaxed') v8.setFlagsFromString('--experimental-wasm-relaxed-simd');
      const bytes = readFileSync(fileURLToPath(new URL(`../../../native/wasm/${variant === 'relaxed' ? 'tritpack-relaxed' : 'tritpack'}.wasm`, import.meta.url)));
      if (!WA.validate(bytes)) throw new Error(`this runtime does not support the ${variant === 'relaxed' ? 'relaxed SIMD' : 'SIMD128'} instructions`);
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
const SCALE_MODES = { tensor: 0, channel: 1, group: 2 } as const;
const PAGE = 65536;

interface WasmFloatWeight extends PreparedWeight { kind: 'float'; dtype: FloatDType; ptr: number; kernelDtype: number }
interface WasmTernaryWeight extends PreparedWeight { kind: 'ternary'; codes: number; scales: number; scaleMode: number; groupSize: number }
type WasmWeight = WasmFloatWeight | WasmTernaryWeight;

/** Whether little-endian f16 bytes hold an Inf or NaN (exponent bits all ones). */
function hasF16Special(bytes: Uint8Array): boolean {
  for (let i = 1; i < bytes.length; i += 2) if ((bytes[i]! & 0x7c) === 0x7c) return true;
  return false;
}

export class WasmBackend implements Backend {
  readonly name = 'wasm';
  /** Which module runs: 'relaxed' (relaxed SIMD) or 'simd' (SIMD128). */
  readonly variant: WasmVariant;
  private readonly ex: WasmExports;
  private readonly ref = new ReferenceBackend();
  private top: number;

  constructor(options: { variant?: WasmVariant } = {}) {
    const variant = options.variant ?? (loadWasmModule('relaxed') ? 'relaxed' : 'simd');
    const module = loadWasmModule(variant);
    if (!module) throw new TritpackError(`the wasm backend is not available: ${wasmUnavailableReason(variant)}`);
    this.variant = variant;
    this.ex = new WA.Instance(module, {}).exports as WasmExports;
    this.top = this.ex.__heap_base.value as number;
  }

  /** Bump-allocates `bytes` (16-byte aligned), growing linear memory as needed; returns the offset. */
  private alloc(bytes: number): number {
    const at = Math.ceil(this.top / 16) * 16;
    const end = at + bytes;
    const have = this.ex.memory.buffer.byteLength;
    if (end > have) {
      if (end > 2 ** 32) throw new TritpackError(`the wasm backend needs ${end} bytes of memory; wasm32 holds at most 4 GiB`);
      this.ex.memory.grow(Math.ceil((end - have) / PAGE));
    }
    this.top = end;
    return at;
  }

  /** Copies `data` into fresh linear memory; returns its offset. */
  private put(data: ArrayBufferView): number {
    const at = this.alloc(data.byteLength);
    new Uint8Array(this.ex.memory.buffer, at, data.byteLength).set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    return at;
  }

  /** Runs `fn` with scratch allocations released afterwards (weights allocated before stay). */
  private scratch<T>(fn: () => T): T {
    const mark = this.top;
    try {
      return fn();
    } finally {
      this.top = mark;
    }
  }

  prepare(weight: WeightSource): PreparedWeight {
    const { name, rows, cols } = weight;
    if (weight.kind === 'int8') return this.ref.prepare(weight); // no wasm int8 kernel yet: the reference computes it
    if (weight.kind === 'float') {
      // f16 without Inf/NaN (the usual case) takes a conversion without the special-value fix-up
      const kernelDtype = weight.dtype === 'F16' && !hasF16Special(weight.bytes) ? 3 : FLOAT_CODES[weight.dtype];
      return { name, kind: 'float', rows, cols, dtype: weight.dtype, ptr: this.put(weight.bytes), kernelDtype, byteLength: weight.bytes.byteLength } as WasmFloatWeight;
    }
    const need = packedByteLength(weight.packing, rows * cols);
    if (weight.packed.length < need) throw new TritpackError(`${name}: ${weight.packing} data holds ${weight.packed.length} bytes, [${rows}, ${cols}] needs ${need}`);
    const codeBytes = rows * Math.ceil(cols / BLOCK_COLS) * BLOCK_BYTES;
    const codes = this.alloc(codeBytes);
    new Uint8Array(this.ex.memory.buffer, codes, codeBytes).fill(0); // the space may have been scratch before
    const scales = this.put(weight.scales);
    const bad = this.scratch(() => this.ex.repack(weight.packing === 't2' ? 0 : 1, this.put(weight.packed.subarray(0, need)), 0, rows, cols, codes));
    if (bad >= 0) throw new TritpackError(`${name}: t2 data holds the invalid code 3 at element ${bad}`);
    const groupSize = weight.granularity === 'group' ? weight.groupSize! : cols;
    return { name, kind: 'ternary', rows, cols, codes, scales, scaleMode: SCALE_MODES[weight.granularity], groupSize, byteLength: codeBytes + weight.scales.byteLength } as WasmTernaryWeight;
  }

  matmul(w: PreparedWeight, x: Float32Array, n: number, bias?: Float32Array): Float32Array {
    const weight = w as WasmWeight;
    return this.scratch(() => {
      const xp = this.put(x.subarray(0, n * weight.cols));
      const bp = bias ? this.put(bias) : 0;
      const out = this.alloc(n * weight.rows * 4);
      if (weight.kind === 'float') this.ex.float_matmul(weight.kernelDtype, weight.ptr, weight.rows, weight.cols, xp, n, bp, out);
      else this.ex.ternary_f32(weight.codes, weight.rows, weight.cols, weight.scales, weight.scaleMode, weight.groupSize, xp, n, bp, out);
      return new Float32Array(this.ex.memory.buffer.slice(out, out + n * weight.rows * 4));
    });
  }

  matmulQ8(w: PreparedWeight, x: QuantizedActivations, bias?: Float32Array): Float32Array {
    if (w.kind === 'int8') return this.ref.matmulQ8(w, x, bias);
    const weight = w as WasmWeight;
    if (weight.kind !== 'ternary') throw new Error(`matmulQ8 needs a ternary or int8 weight; ${weight.name} is float`);
    const { rows, cols, groupSize } = weight;
    const { n, q } = x;
    const xcols = Math.ceil(cols / BLOCK_COLS) * BLOCK_COLS;
    const groups = Math.ceil(cols / groupSize);
    // activations (int8, or int16 for the SIMD128 module) zero padded to whole blocks, and Σ q per
    // token and group (the −Σx of Σt·x = Σc·x − Σx)
    const xa = this.ex.activation_bytes() === 1 ? new Int8Array(n * xcols) : new Int16Array(n * xcols);
    const xsum = new Int32Array(n * groups);
    for (let i = 0; i < n; i++) {
      for (let c = 0; c < cols; c++) {
        const v = q[i * cols + c]!;
        xa[i * xcols + c] = v;
        xsum[i * groups + Math.floor(c / groupSize)] += v;
      }
    }
    return this.scratch(() => {
      const xp = this.put(xa), sp = this.put(xsum), sxp = this.put(x.scales);
      const bp = bias ? this.put(bias) : 0;
      const out = this.alloc(n * rows * 4);
      this.ex.ternary_q8(weight.codes, rows, cols, weight.scales, weight.scaleMode, groupSize, xp, xcols, sp, n, sxp, bp, out);
      return new Float32Array(this.ex.memory.buffer.slice(out, out + n * rows * 4));
    });
  }

  gatherRows(w: PreparedWeight, ids: ArrayLike<number>): Float32Array {
    const weight = w as WasmWeight;
    const { cols } = weight;
    const out = new Float32Array(ids.length * cols);
    const mem = new Uint8Array(this.ex.memory.buffer);
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
      const scales = new Float32Array(this.ex.memory.buffer, weight.scales, weight.scaleMode === 0 ? 1 : weight.scaleMode === 1 ? weight.rows : weight.rows * groups);
      for (let c = 0; c < cols; c++) {
        const t = ((row[(c >> 7) * BLOCK_BYTES + (c & 31)]! >> (2 * ((c >> 5) & 3))) & 3) - 1;
        const g = Math.floor(c / weight.groupSize);
        out[i * cols + c] = t * scales[weight.scaleMode === 0 ? 0 : weight.scaleMode === 1 ? id : id * groups + g]!;
      }
    }
    return out;
  }

  quantizeActivations(x: Float32Array, n: number, cols: number): QuantizedActivations { return this.ref.quantizeActivations(x, n, cols); }
  rmsnorm(x: Float32Array, n: number, cols: number, weight: Float32Array, eps: number): Float32Array { return this.ref.rmsnorm(x, n, cols, weight, eps); }
  rope(x: Float32Array, n: number, heads: number, headDim: number, cos: Float32Array, sin: Float32Array): void { this.ref.rope(x, n, heads, headDim, cos, sin); }
  attention(q: Float32Array, n: number, cache: KvCache, shape: AttentionShape): Float32Array {
    const { numHeads, numKvHeads, headDim, slidingWindow } = shape;
    const kvFloats = cache.length * numKvHeads * headDim;
    const outFloats = n * numHeads * headDim;
    return this.scratch(() => {
      const qp = this.put(q.subarray(0, outFloats)), kp = this.put(cache.keys.subarray(0, kvFloats)), vp = this.put(cache.values.subarray(0, kvFloats));
      const scores = this.alloc(cache.length * 4), out = this.alloc(outFloats * 4);
      this.ex.attention(qp, n, kp, vp, cache.length, numHeads, numKvHeads, headDim, slidingWindow ?? 0, scores, out);
      return new Float32Array(this.ex.memory.buffer.slice(out, out + outFloats * 4));
    });
  }
  gatedActivation(gate: Float32Array, up: Float32Array, act: 'silu' | 'relu2'): Float32Array { return this.ref.gatedActivation(gate, up, act); }
  addInPlace(x: Float32Array, y: Float32Array): void { this.ref.addInPlace(x, y); }
}
