/**
 * Allocation in a WebAssembly module's linear memory (the C kernels have no allocator): first fit
 * over a sorted free list, neighbours merged on release, the memory grown when nothing fits.
 * Weights live until the backend is disposed; per-call scratch and KV-cache copies come and go.
 */
import { TritpackError } from '../../errors.js';

/** The members of WebAssembly.Memory used here (the project's `lib` setting declares none). */
export interface WasmMemory { readonly buffer: ArrayBuffer | SharedArrayBuffer; grow(pages: number): number }

const PAGE = 65536;
const ALIGN = 64; // a cache line: weight rows and activation vectors never straddle one needlessly

export class LinearHeap {
  private readonly free: { at: number; size: number }[] = [];
  private readonly sizes = new Map<number, number>();
  private top: number;

  constructor(private readonly memory: WasmMemory, base: number) {
    this.top = Math.ceil(base / ALIGN) * ALIGN;
  }

  /** Offset of `bytes` fresh bytes (contents undefined), 64-byte aligned. */
  alloc(bytes: number): number {
    const size = Math.max(ALIGN, Math.ceil(bytes / ALIGN) * ALIGN);
    const i = this.free.findIndex((b) => b.size >= size);
    let at: number;
    if (i >= 0) {
      const block = this.free[i]!;
      at = block.at;
      if (block.size === size) this.free.splice(i, 1);
      else { block.at += size; block.size -= size; }
    } else {
      at = this.top;
      const end = at + size;
      if (end > 2 ** 32) throw new TritpackError(`the wasm backend needs ${end} bytes of memory; wasm32 holds at most 4 GiB`);
      const have = this.memory.buffer.byteLength;
      if (end > have) this.memory.grow(Math.ceil((end - have) / PAGE));
      this.top = end;
    }
    this.sizes.set(at, size);
    return at;
  }

  release(at: number): void {
    const size = this.sizes.get(at);
    if (size === undefined) throw new Error(`wasm heap: ${at} is not allocated`);
    this.sizes.delete(at);
    let i = this.free.findIndex((b) => b.at > at);
    if (i < 0) i = this.free.length;
    this.free.splice(i, 0, { at, size });
    // merge with the following block, then with the preceding one
    const next = this.free[i + 1];
    if (next && at + size === next.at) { this.free[i]!.size += next.size; this.free.splice(i + 1, 1); }
    const prev = this.free[i - 1];
    if (prev && prev.at + prev.size === at) { prev.size += this.free[i]!.size; this.free.splice(i, 1); i--; }
    // a free block at the end goes back to the unallocated top
    const last = this.free[this.free.length - 1];
    if (last && last.at + last.size === this.top) { this.top = last.at; this.free.pop(); }
  }
}
