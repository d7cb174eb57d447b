/**
 * The JavaScript side's allocations in a WebAssembly module's linear memory (weights, KV-cache
 * mirrors, worker stacks, per-call scratch), through the module's own allocator (tp_alloc/tp_free,
 * native/wasm/libc.c), which the C kernels use for their scratch too: one allocator owns the memory
 * and grows it. Offsets are 64-byte aligned.
 */
import { TritpackError } from '../../errors.js';

/** The members of WebAssembly.Memory used here (the project's `lib` setting declares none). */
export interface WasmMemory { readonly buffer: ArrayBuffer | SharedArrayBuffer; grow(pages: number): number }

/** The module's allocator exports. */
export interface WasmAllocator { tp_alloc(bytes: number): number; tp_free(at: number): void }

export class LinearHeap {
  /** Live offsets: a release of anything else is a bug here, caught before the C allocator sees it. */
  private readonly live = new Set<number>();

  constructor(private readonly allocator: WasmAllocator) {}

  /** Offset of `bytes` fresh bytes (contents undefined), 64-byte aligned. */
  alloc(bytes: number): number {
    const at = bytes < 2 ** 32 ? this.allocator.tp_alloc(bytes) >>> 0 : 0;
    if (at === 0) throw new TritpackError(`the wasm backend could not get ${bytes} more bytes of memory (wasm32 holds at most 4 GiB)`);
    this.live.add(at);
    return at;
  }

  release(at: number): void {
    if (!this.live.delete(at)) throw new Error(`wasm heap: ${at} is not allocated`);
    this.allocator.tp_free(at);
  }
}
