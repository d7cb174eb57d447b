/**
 * The wasm backend against the TypeScript reference backend (test/support/fast-backend-checks.ts),
 * both modules (SIMD128 and relaxed SIMD), with worker threads: every kernel on random shapes,
 * the element-wise steps bit for bit, results independent of the thread count, the linear-memory
 * allocator, a process that uses the threads exiting on its own, and the fixture models on 2 threads.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { fromFloat32 } from '../../src/formats/dtype.js';
import { ReferenceBackend } from '../../src/runtime-min/index.js';
import { LinearHeap, type WasmAllocator, type WasmMemory } from '../../src/runtime-min/backends/wasm-heap.js';
import { loadWasmModule, WasmBackend, wasmImports, wasmUnavailableReason } from '../../src/runtime-min/backends/wasm.js';
import { assertClose, checkElementwise, fixtureModelsOn, kernelsMatchReference, magnitudes, randomFloats, rng, sameBits, ternarySource, wasmBackendOrSkip } from '../support/fast-backend-checks.js';

for (const variant of ['simd', 'relaxed'] as const) {
  describe(`runtime: wasm backend (${variant}, 2 threads) kernels vs the reference backend`, function () {
    let wasm: WasmBackend;
    before(function () { wasm = wasmBackendOrSkip(this, variant); });
    after(() => wasm?.dispose());

    kernelsMatchReference(() => wasm);

    it('element-wise steps repeat the reference bit for bit, SiLU included', () => checkElementwise(wasm, 0));

    it('every kernel gives the same bits on 1, 2 and 3 threads (decode and prefill shapes)', () => {
      const rand = rng(41);
      const ref = new ReferenceBackend();
      const ternary = wasm.prepare(ternarySource(rand, 301, 1000, 't2', 'group', 128));
      const f16 = wasm.prepare({ kind: 'float', name: 'w', rows: 301, cols: 1000, dtype: 'F16', bytes: fromFloat32(randomFloats(rand, 301 * 1000), 'F16') });
      const results = (): Float32Array[] => {
        const outs: Float32Array[] = [];
        for (const n of [1, 9]) {
          const x = randomFloats(rng(n), n * 1000, 3);
          const q = wasm.quantizeActivations(x, n, 1000);
          outs.push(Float32Array.from(q.q), q.scales, wasm.matmulQ8(ternary, q), wasm.matmul(f16, x, n), wasm.matmul(ternary, x, n));
          outs.push(wasm.rmsnorm(x, n, 1000, randomFloats(rng(2), 1000), 1e-5));
          const cache = { keys: randomFloats(rng(3), 40 * 2 * 50), values: randomFloats(rng(4), 40 * 2 * 50), length: 40 };
          outs.push(wasm.attention(randomFloats(rng(5), n * 8 * 50), n, cache, { numHeads: 8, numKvHeads: 2, headDim: 50, slidingWindow: null }));
        }
        return outs;
      };
      const before = wasm.threads;
      try {
        wasm.threads = 1;
        const one = results();
        // and the integer path equals the reference on one thread too
        const x = randomFloats(rng(9), 9 * 1000, 3);
        assert.ok(sameBits(wasm.matmulQ8(ternary, ref.quantizeActivations(x, 9, 1000)), ref.matmulQ8(ref.prepare(ternarySource(rng(41), 301, 1000, 't2', 'group', 128)), ref.quantizeActivations(x, 9, 1000))));
        for (const t of [2, 3]) {
          wasm.threads = t;
          results().forEach((r, i) => assert.ok(sameBits(r, one[i]!), `${t} threads, result ${i}`));
        }
      } finally {
        wasm.threads = before;
      }
    });

    it('f16 matmul: the same bits per token whether the 2^112 factor goes onto the activations, onto the weights (activations too large to carry it) or a weight holding Inf takes the exact widening', () => {
      const rand = rng(43);
      const rows = 70, cols = 300;
      const w = randomFloats(rand, rows * cols);
      const src = { kind: 'float' as const, name: 'w', rows, cols, dtype: 'F16' as const, bytes: fromFloat32(w, 'F16') };
      const ref = new ReferenceBackend();
      const rw = ref.prepare(src), ww = wasm.prepare(src);
      const x = randomFloats(rand, 2 * cols);
      x[cols + 7] = 1e30; // token 1 overflows x·2^112
      const both = wasm.matmul(ww, x, 2);
      assert.ok(sameBits(both.subarray(0, rows), wasm.matmul(ww, x.subarray(0, cols), 1)), 'token 0 alone vs next to an overflowing token');
      const dense = ref.gatherRows(rw, Array.from({ length: rows }, (_, r) => r));
      assertClose(both, ref.matmul(rw, x, 2), magnitudes(dense, rows, cols, x, 2), 2e-6, 'large activations');
      const inf = w.slice();
      inf[5] = Infinity; // row 0
      const exact = wasm.matmul(wasm.prepare({ ...src, bytes: fromFloat32(inf, 'F16') }), x, 2);
      for (let i = 0; i < 2; i++) {
        assert.ok(sameBits(exact.subarray(i * rows + 1, (i + 1) * rows), both.subarray(i * rows + 1, (i + 1) * rows)), `token ${i}: rows without Inf, exact widening vs finite`);
      }
      assert.ok(!Number.isFinite(exact[0]!) && !Number.isFinite(exact[rows]!), 'the row holding Inf');
    });

    it('a KV cache that grows, and several caches side by side, stay in step with the reference', () => {
      const rand = rng(47);
      const ref = new ReferenceBackend();
      const shape = { numHeads: 4, numKvHeads: 2, headDim: 16, slidingWindow: null };
      const stride = 2 * 16;
      const caches = [0, 1].map(() => ({ keys: new Float32Array(0), values: new Float32Array(0), length: 0 }));
      for (let step = 0; step < 90; step++) {
        const cache = caches[step % 2]!;
        const n = step < 2 ? 5 : 1;
        const keys = new Float32Array((cache.length + n) * stride), values = new Float32Array((cache.length + n) * stride);
        keys.set(cache.keys.subarray(0, cache.length * stride)); values.set(cache.values.subarray(0, cache.length * stride));
        keys.set(randomFloats(rand, n * stride), cache.length * stride); values.set(randomFloats(rand, n * stride), cache.length * stride);
        Object.assign(cache, { keys, values, length: cache.length + n });
        const q = randomFloats(rand, n * 4 * 16);
        const got = wasm.attention(q, n, cache, shape), want = ref.attention(q, n, cache, shape);
        for (let i = 0; i < got.length; i++) assert.ok(Math.abs(got[i]! - want[i]!) < 2e-6, `step ${step}, output ${i}: ${got[i]} vs ${want[i]}`);
      }
    });
  });
}

describe('runtime: wasm linear-memory allocator (native/wasm/libc.c)', function () {
  before(function () { if (!loadWasmModule()) this.skip(); });

  it('hands out 64-byte aligned blocks, reuses merged holes, grows the memory and refuses what cannot fit', () => {
    const WA = (globalThis as unknown as { WebAssembly: { Memory: new (d: object) => WasmMemory; Instance: new (m: object, i: object) => { exports: unknown } } }).WebAssembly;
    const memory = new WA.Memory({ initial: 8, maximum: 65536, shared: true });
    const heap = new LinearHeap(new WA.Instance(loadWasmModule()!, wasmImports(memory)).exports as WasmAllocator);
    const a = heap.alloc(10), b = heap.alloc(100), c = heap.alloc(64);
    for (const at of [a, b, c]) assert.equal(at % 64, 0);
    assert.deepEqual([b - a, c - b], [128, 192], 'a 64-byte header before each block, sizes rounded up to 64');
    heap.release(a);
    heap.release(b);
    assert.equal(heap.alloc(150), a, 'the merged hole of a and b');
    const before = memory.buffer.byteLength;
    const big = heap.alloc(10_000_000);
    assert.ok(big > c && memory.buffer.byteLength >= big + 10_000_000 && memory.buffer.byteLength > before, 'the memory grew');
    heap.release(big);
    assert.equal(heap.alloc(10_000_000), big, 'a released top block goes back to the top');
    assert.throws(() => heap.release(7), /not allocated/);
    assert.throws(() => heap.alloc(2 ** 32 - 1), /could not get 4294967295 more bytes/);
  });
});

describe('runtime: wasm worker threads', function () {
  before(function () {
    if (!loadWasmModule()) this.skip();
  });
  it('a process that used them (and never called dispose) exits on its own', () => {
    const wasmTs = fileURLToPath(new URL('../../src/runtime-min/backends/wasm.ts', import.meta.url));
    const script = `
      const { WasmBackend } = await import(${JSON.stringify(wasmTs)});
      const be = new WasmBackend({ threads: 3 });
      const w = be.prepare({ kind: 'float', name: 'w', rows: 500, cols: 256, dtype: 'F32', bytes: new Uint8Array(500 * 256 * 4) });
      for (let i = 0; i < 50; i++) be.matmul(w, new Float32Array(256), 1);
      await new Promise((r) => setTimeout(r, 200)); // let the workers reach their sleeping wait
      console.log('ok', be.threads);`;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.signal, null, `the child hung (killed after 60 s): ${r.stderr}`);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'ok 3');
  });

  it('back-to-back jobs of different chunk counts never hang (a worker late from one job cannot take a chunk of the next)', () => {
    // Before the pool closed a job's ticket first, a worker still looking at the finished ticket of one job
    // could pass the new job's larger chunk count and win its CAS, counting one chunk too many: the caller
    // then waited forever. This loop hung within 3 s every time with that pool (2 vCPUs, 3 threads).
    const wasmTs = fileURLToPath(new URL('../../src/runtime-min/backends/wasm.ts', import.meta.url));
    const script = `
      const { WasmBackend } = await import(${JSON.stringify(wasmTs)});
      const be = new WasmBackend({ threads: 3 });
      const weights = [8, 200, 33, 1000].map((rows) => be.prepare({ kind: 'float', name: 'w' + rows, rows, cols: 64, dtype: 'F32', bytes: new Uint8Array(rows * 64 * 4) }));
      const x = new Float32Array(64), until = performance.now() + 4000;
      let calls = 0;
      while (performance.now() < until) for (const w of weights) { be.matmul(w, x, 1); calls++; }
      console.log('ok', calls > 1000);`;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.signal, null, `the child hung (killed after 60 s): ${r.stderr}`);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'ok true');
  });
});

fixtureModelsOn('wasm', () => (loadWasmModule() ? null : wasmUnavailableReason()), 2);
