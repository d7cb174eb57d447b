/**
 * The WebAssembly SIMD backend: the portable fallback where the native addon is missing (no
 * compiler at install, another OS), built from native/wasm/tp_wasm.c and committed as
 * native/wasm/tritpack.wasm so users need no compiler. Single-threaded for now.
 *
 * Weights live in the module's linear memory, bump-allocated here (the C side has no allocator);
 * each call copies its activations into scratch space above the weights and the result out again.
 * `matmulQ8` is bit-identical to the reference (exact integer sums, the same double steps); float
 * matmuls agree to float32 rounding. Element-wise steps and attention run in the reference backend.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { TritpackError } from '../../errors.js';
import { dtypeByteSize, toFloat32, type FloatDType } from '../../formats/dtype.js';
import { packedByteLength } from '../../formats/ternary.js';
import type { Backend, PreparedWeight, QuantizedActivations, WeightSource } from '../backend.js';
import { ReferenceBackend } from '../reference-backend.js';

/** The few members of the WebAssembly JS API used here (the project's `lib` setting declares none). */
interface WasmMemory { readonly buffer: ArrayBuffer; grow(pages: number): number }
type WasmModule = object;
const WA = (globalThis as unknown as {
  WebAssembly: { Module: new (bytes: Uint8Array) => WasmModule; Instance: new (module: WasmModule, imports: object) => { exports: unknown } };
}).WebAssembly;

interface WasmExports {
  memory: WasmMemory;
  __heap_base: { value: unknown };
  ternary_q8(codes: number, rows: number, cols: number, scales: number, scaleMode: number, groupSize: number,
    x16: number, xcols: number, xsum: number, n: number, sx: number, bias: number, out: number): void;
  ternary_f32(codes: number, rows: number, cols: number, scales: number, scaleMode: number, groupSize: number,
    x: number, n: number, bias: number, out: number): void;
  float_matmul(dtype: number, w: number, rows: number, cols: number, x: number, n: number, bias: number, out: number): void;
  repack(packing: number, packed: number, row0: number, nrows: number, cols: number, out: number): number;
}

const WASM_PATH = fileURLToPath(new URL('../../../native/wasm/tritpack.wasm', import.meta.url));
let compiled: { module: WasmModule } | { error: string } | undefined;

/** The compiled module, or null with the reason (file missing, no WebAssembly SIMD in this runtime). */
export function loadWasmModule(): WasmModule | null {
  if (!compiled) {
    try {
      compiled = { module: new WA.Module(readFileSync(WASM_PATH)) };
    } catch (err) {
      compiled = { error: (err as Error).message.split('\n')[0]! };
    }
  }
  return 'module' in compiled ? compiled.module : null;
}

export function wasmUnavailableReason(): string | null {
  loadWasmModule();
  return compiled && 'error' in compiled ? compiled.error : null;
}

const BLOCK_COLS = 128;
const BLOCK_BYTES = 32;
const FLOAT_CODES = { F32: 0, F16: 1, BF16: 2 } as const;
const SCALE_MODES = { tensor: 0, channel: 1, group: 2 } as const;
const PAGE = 65536;

interface WasmFloatWeight extends PreparedWeight { kind: 'float'; dtype: FloatDType; ptr: number }
interface WasmTernaryWeight extends PreparedWeight { kind: 'ternary'; codes: number; scales: number; scaleMode: number; groupSize: number }
type WasmWeight = WasmFloatWeight | WasmTernaryWeight;

export class WasmBackend implements Backend {
  readonly name = 'wasm';
  private readonly ex: WasmExports;
  private readonly ref = new ReferenceBackend();
  private top: number;

  constructor() {
    const module = loadWasmModule();
    if (!module) throw new TritpackError(`the wasm backend is not available: ${wasmUnavailableReason()}`);
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
    if (weight.kind === 'float') {
      return { name, kind: 'float', rows, cols, dtype: weight.dtype, ptr: this.put(weight.bytes), byteLength: weight.bytes.byteLength } as WasmFloatWeight;
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
      if (weight.kind === 'float') this.ex.float_matmul(FLOAT_CODES[weight.dtype], weight.ptr, weight.rows, weight.cols, xp, n, bp, out);
      else this.ex.ternary_f32(weight.codes, weight.rows, weight.cols, weight.scales, weight.scaleMode, weight.groupSize, xp, n, bp, out);
      return new Float32Array(this.ex.memory.buffer.slice(out, out + n * weight.rows * 4));
    });
  }

  matmulQ8(w: PreparedWeight, x: QuantizedActivations, bias?: Float32Array): Float32Array {
    const weight = w as WasmWeight;
    if (weight.kind !== 'ternary') throw new Error(`matmulQ8 needs a ternary weight; ${weight.name} is float`);
    const { rows, cols, groupSize } = weight;
    const { n, q } = x;
    const xcols = Math.ceil(cols / BLOCK_COLS) * BLOCK_COLS;
    const groups = Math.ceil(cols / groupSize);
    // int16 activations, zero padded to whole blocks, and Σ q per token and group (the −Σx of Σt·x = Σc·x − Σx)
    const x16 = new Int16Array(n * xcols);
    const xsum = new Int32Array(n * groups);
    for (let i = 0; i < n; i++) {
      for (let c = 0; c < cols; c++) {
        const v = q[i * cols + c]!;
        x16[i * xcols + c] = v;
        xsum[i * groups + Math.floor(c / groupSize)] += v;
      }
    }
    return this.scratch(() => {
      const xp = this.put(x16), sp = this.put(xsum), sxp = this.put(x.scales);
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
  attention(...args: Parameters<Backend['attention']>): Float32Array { return this.ref.attention(...args); }
  gatedActivation(gate: Float32Array, up: Float32Array, act: 'silu' | 'relu2'): Float32Array { return this.ref.gatedActivation(gate, up, act); }
  addInPlace(x: Float32Array, y: Float32Array): void { this.ref.addInPlace(x, y); }
}
