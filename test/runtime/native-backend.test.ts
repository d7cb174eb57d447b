/**
 * The native backend against the TypeScript reference backend (test/support/fast-backend-checks.ts):
 * every kernel on random shapes, the portable C kernels, thread counts, the element-wise steps, use
 * from a worker thread, then the fixture models' reference checks run on it.
 */
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { fromFloat32 } from '../../src/formats/dtype.js';
import { ReferenceBackend } from '../../src/runtime-min/index.js';
import { loadNativeAddon, NativeBackend, nativeAddonPath, nativeUnavailableReason } from '../../src/runtime-min/backends/native.js';
import { assertClose, checkElementwise, fixtureModelsOn, kernelsMatchReference, magnitudes, randomFloats, rng, sameBits, SHAPES, ternarySource } from '../support/fast-backend-checks.js';
import { maxAbsDiff } from '../support/runtime-helpers.js';

const addon = loadNativeAddon();

describe('runtime: native backend kernels vs the reference backend', function () {
  before(function () {
    if (!addon) this.skip(); // the reason is printed by the next suite's skip
  });
  const ref = new ReferenceBackend();
  let native: NativeBackend;
  before(() => { native = new NativeBackend(); });

  kernelsMatchReference(() => native);

  it('the portable C kernels (no AVX2) agree too: matmulQ8 bit for bit, float paths to rounding', () => {
    const rand = rng(77);
    addon!.setPortable(true);
    try {
      assert.equal(addon!.features().avx2, false);
      for (const [rows, cols, n] of SHAPES) {
        const src = ternarySource(rand, rows, cols, 't158', 'channel');
        const x = randomFloats(rand, n * cols, 3);
        const q = ref.quantizeActivations(x, n, cols);
        assert.ok(Buffer.from(native.quantizeActivations(x, n, cols).q.buffer).equals(Buffer.from(q.q.buffer)), 'quantize');
        assert.ok(sameBits(native.matmulQ8(native.prepare(src), q), ref.matmulQ8(ref.prepare(src), q)), `[${rows}×${cols}] n=${n}`);
        const rw = ref.prepare(src);
        const dense = ref.gatherRows(rw, Array.from({ length: rows }, (_, r) => r));
        assertClose(native.matmul(native.prepare(src), x, n), ref.matmul(rw, x, n), magnitudes(dense, rows, cols, x, n), 2e-6, 'ternary f32');
        const fsrc = { kind: 'float' as const, name: 'w', rows, cols, dtype: 'F16' as const, bytes: fromFloat32(randomFloats(rand, rows * cols), 'F16') };
        const fw = ref.prepare(fsrc);
        const fdense = ref.gatherRows(fw, Array.from({ length: rows }, (_, r) => r));
        assertClose(native.matmul(native.prepare(fsrc), x, n), ref.matmul(fw, x, n), magnitudes(fdense, rows, cols, x, n), 2e-6, 'f16');
        const cache = { keys: randomFloats(rand, 12 * 2 * 16), values: randomFloats(rand, 12 * 2 * 16), length: 12 };
        const qa = randomFloats(rand, 3 * 4 * 16);
        const shape = { numHeads: 4, numKvHeads: 2, headDim: 16, slidingWindow: null };
        assert.ok(maxAbsDiff(native.attention(qa, 3, cache, shape), ref.attention(qa, 3, cache, shape)) < 2e-6);
      }
    } finally {
      addon!.setPortable(false);
    }
  });

  it('a token gets the same float result alone (decode) as inside a batch (prefill), at any thread count', () => {
    const rand = rng(99);
    const src = { kind: 'float' as const, name: 'w', rows: 301, cols: 1001, dtype: 'F16' as const, bytes: fromFloat32(randomFloats(rand, 301 * 1001), 'F16') };
    const w = native.prepare(src);
    const x = randomFloats(rand, 9 * 1001);
    const batch = native.matmul(w, x, 9);
    for (let i = 0; i < 9; i++) assert.ok(sameBits(native.matmul(w, x.subarray(i * 1001, (i + 1) * 1001), 1), batch.subarray(i * 301, (i + 1) * 301)), `token ${i}`);
    const before = native.threads;
    try {
      for (const t of [1, 2, 3]) {
        addon!.setThreads(t);
        assert.ok(sameBits(native.matmul(w, x, 9), batch), `${t} threads`);
      }
    } finally {
      addon!.setThreads(before);
    }
  });

  it('element-wise steps repeat the reference bit for bit (quantization incl. ties, zeros, NaN; RMSNorm; relu²; adds; RoPE), silu to rounding', () => {
    checkElementwise(native, 2 ** -22);
  });

  it('is safe to use from a worker thread at the same time as from the main thread', async () => {
    // The addon's thread pool belongs to one caller at a time; another JS thread computes alone.
    const rand = rng(123);
    const src = ternarySource(rand, 300, 1000, 't2', 'channel');
    const w = native.prepare(src) as unknown as { codes: Uint8Array };
    const q = ref.quantizeActivations(randomFloats(rand, 3 * 1000), 3, 1000);
    const args = [w.codes, 300, 1000, src.scales, 1, 1000, q.q, 3, null] as const;
    const want = new Float32Array(900);
    addon!.ternaryQ8(...args, want, q.scales);
    const worker = new Worker(`
      const { parentPort, workerData: d } = require('node:worker_threads');
      const addon = require(d.path);
      const out = new Float32Array(900);
      let same = true;
      for (let k = 0; k < 200; k++) {
        out.fill(0);
        addon.ternaryQ8(d.codes, 300, 1000, d.scales, 1, 1000, d.q, 3, null, out, d.sx);
        same = same && Buffer.from(out.buffer).equals(Buffer.from(d.want.buffer));
      }
      parentPort.postMessage(same);`, { eval: true, workerData: { path: nativeAddonPath(), codes: w.codes, scales: src.scales, q: q.q, sx: q.scales, want } });
    const fromWorker = new Promise<boolean>((resolve, reject) => { worker.once('message', resolve); worker.once('error', reject); });
    const out = new Float32Array(900);
    let same = true;
    for (let k = 0; k < 200; k++) {
      out.fill(0);
      addon!.ternaryQ8(...args, out, q.scales);
      same &&= sameBits(out, want);
    }
    assert.ok(same, 'main thread');
    assert.equal(await fromWorker, true, 'worker thread');
    await worker.terminate();
  });

  it('refuses buffers shorter than the shapes', () => {
    const w = native.prepare(ternarySource(rng(3), 2, 8, 't2', 'tensor'));
    assert.throws(() => native.matmul(w, new Float32Array(7), 1), RangeError);
  });

  it('reports a read bandwidth', () => {
    const gbs = addon!.readBandwidth(64 << 20, 2);
    assert.ok(gbs > 0.1 && gbs < 10000, `${gbs} GB/s`);
  });
});

fixtureModelsOn('native', () => (loadNativeAddon() ? null : nativeUnavailableReason()));
