/**
 * The wasm backend's worker threads: each runs its own instance of the kernel module on the
 * backend's shared memory, with its own stack in that memory, and sits in the module's
 * worker_loop (native/wasm/pool.c), which takes chunks of the jobs the calling thread publishes in
 * linear memory: no message per kernel call. Workers are unref'd, so they never keep the process
 * alive; dispose() ends them. A worker that fails to start only means fewer helpers: the calling
 * thread never waits for a worker to arrive.
 */
import { Worker } from 'node:worker_threads';
import type { LinearHeap, WasmMemory } from './wasm-heap.js';

/** Bytes of stack per worker, as the calling thread's (native/wasm/build.sh): the ternary kernel stages
 * 24 KiB there, and wasm has no guard page to stop an overflow. */
const WORKER_STACK_BYTES = 256 << 10;

/** CommonJS, no loader hooks (execArgv is emptied): the worker only instantiates the module (with
 * wasm.ts's wasmImports: functions cannot travel in workerData) and loops. */
const WORKER_SOURCE = `
const { workerData: d } = require('node:worker_threads');
const { exports: ex } = new WebAssembly.Instance(d.module, { env: { memory: d.memory, exp: Math.exp } });
ex.__stack_pointer.value = d.stackTop;
ex.worker_loop(d.tid);
`;

export class WasmWorkers {
  private readonly workers: Worker[] = [];
  private readonly stacks: number[] = [];

  constructor(private readonly module: object, private readonly memory: WasmMemory, private readonly heap: LinearHeap) {}

  /** Starts workers until `count` exist (they run whenever the pool's thread count includes their id). */
  ensure(count: number): void {
    while (this.workers.length < count) {
      const tid = this.workers.length + 1;
      const stack = this.heap.alloc(WORKER_STACK_BYTES);
      const worker = new Worker(WORKER_SOURCE, {
        eval: true, execArgv: [],
        workerData: { module: this.module, memory: this.memory, stackTop: stack + WORKER_STACK_BYTES, tid },
      });
      worker.on('error', () => {}); // a helper that failed to start leaves its chunks to the others
      worker.unref();
      this.workers.push(worker);
      this.stacks.push(stack);
    }
  }

  /** Call after the module's pool_quit(): stops every worker and frees their stacks. */
  dispose(): void {
    for (const w of this.workers) void w.terminate();
    for (const s of this.stacks) this.heap.release(s);
    this.workers.length = 0;
    this.stacks.length = 0;
  }
}
