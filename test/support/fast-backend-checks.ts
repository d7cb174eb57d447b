/**
 * Checks every fast backend (native, wasm) must pass against the TypeScript reference backend:
 * kernels on random shapes (odd column counts, partial 128-column blocks, token counts around the
 * kernels' tiles, every scale granularity, both packings), the element-wise steps bit for bit, and
 * the fixture models' reference checks. Integer paths must agree bit for bit; float paths to
 * float32 rounding.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { convertCheckpoint } from '../../src/converters/convert.js';
import { fromFloat32, type FloatDType } from '../../src/formats/dtype.js';
import { packTernary, type TernaryPacking } from '../../src/formats/ternary.js';
import { loadModel, ReferenceBackend, type Backend, type LoadedModel, type TernaryWeightSource } from '../../src/runtime-min/index.js';
import { loadWasmModule, wasmUnavailableReason, WasmBackend, type WasmVariant } from '../../src/runtime-min/backends/wasm.js';
import { fixtureDir, loadReference, makeTempDir } from './fixtures.js';
import { commonPrefix, maxAbsDiff, meanNll, top1 } from './runtime-helpers.js';

/** Deterministic xorshift32 so a failure reproduces. */
export function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    return s / 2 ** 32;
  };
}

export function randomFloats(rand: () => number, count: number, scale = 1): Float32Array {
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) out[i] = (rand() * 2 - 1) * scale;
  return out;
}

export function ternarySource(rand: () => number, rows: number, cols: number, packing: TernaryPacking, granularity: 'tensor' | 'channel' | 'group', groupSize = 0): TernaryWeightSource {
  const codes = new Int8Array(rows * cols);
  for (let i = 0; i < codes.length; i++) codes[i] = Math.floor(rand() * 3) - 1;
  const count = granularity === 'tensor' ? 1 : granularity === 'channel' ? rows : rows * Math.ceil(cols / groupSize);
  const scales = randomFloats(rand, count, 0.05).map((v) => Math.abs(v) + 1e-3);
  return { kind: 'ternary', name: `t${rows}x${cols}`, rows, cols, packing, packed: packTernary(packing, codes), scales, granularity, ...(granularity === 'group' ? { groupSize } : {}) };
}

export function sameBits(a: Float32Array, b: Float32Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

/** |a − b| ≤ tol · Σ|w·x| for each output: float32 accumulation error relative to the dot's magnitude. */
export function assertClose(got: Float32Array, want: Float32Array, magnitude: Float64Array, tol: number, what: string): void {
  assert.equal(got.length, want.length, what);
  for (let i = 0; i < got.length; i++) {
    const err = Math.abs(got[i]! - want[i]!);
    assert.ok(err <= tol * magnitude[i]! + 1e-30, `${what}: output ${i}: ${got[i]} vs ${want[i]} (|Σ|w·x|| = ${magnitude[i]})`);
  }
}

/** Σ|w·x| per output [n × rows] from float32 weights (the error bound's scale). */
export function magnitudes(w: Float32Array, rows: number, cols: number, x: Float32Array, n: number): Float64Array {
  const out = new Float64Array(n * rows);
  for (let i = 0; i < n; i++) for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let c = 0; c < cols; c++) s += Math.abs(w[r * cols + c]! * x[i * cols + c]!);
    out[i * rows + r] = s;
  }
  return out;
}

export const SHAPES: [rows: number, cols: number, n: number][] = [[1, 1, 1], [3, 5, 2], [7, 127, 4], [9, 128, 5], [5, 129, 3], [17, 300, 9], [33, 513, 1], [12, 640, 70], [64, 256, 8]];

/** Kernel checks every fast backend must pass against the reference (integer paths bit for bit). */
export function kernelsMatchReference(be: () => Backend): void {
  const ref = new ReferenceBackend();

  for (const packing of ['t2', 't158'] as const) {
    for (const [granularity, groupSize] of [['tensor', 0], ['channel', 0], ['group', 128], ['group', 256], ['group', 64], ['group', 50]] as const) {
      it(`matmulQ8 is bit-identical: ${packing}, ${granularity}${groupSize ? ` ${groupSize}` : ''}, odd shapes, with and without bias`, () => {
        const rand = rng(packing.length * 1000 + groupSize + granularity.length);
        for (const [rows, cols, n] of SHAPES) {
          if (granularity === 'group' && groupSize > cols && cols > 1) continue;
          const src = ternarySource(rand, rows, cols, packing, granularity, groupSize || undefined);
          const x = randomFloats(rand, n * cols, 3);
          const q = ref.quantizeActivations(x, n, cols);
          const bias = rand() < 0.5 ? randomFloats(rand, rows) : undefined;
          const want = ref.matmulQ8(ref.prepare(src), q, bias);
          const got = be().matmulQ8(be().prepare(src), q, bias);
          assert.ok(sameBits(got, want), `[${rows}×${cols}] n=${n}: max diff ${maxAbsDiff(got, want)}`);
        }
      });
    }
  }

  it('matmulQ8 stays bit-identical at the activation extremes (q = −128 and 127 everywhere), decode and prefill', () => {
    const rand = rng(7);
    // rows of all +1 too: the largest partial sums a kernel keeps in 16-bit lanes (wasm's relaxed dot)
    const ones = { ...ternarySource(rand, 40, 1000, 't2', 'channel'), packed: packTernary('t2', new Int8Array(40 * 1000).fill(1)) };
    for (const fill of [-128, 127]) {
      for (const src of [ternarySource(rand, 40, 1000, 't2', 'channel'), ones]) {
        for (const n of [1, 5]) {
          const q = { n, cols: 1000, q: new Int8Array(n * 1000).fill(fill), scales: randomFloats(rand, n, 10).map(Math.abs) };
          assert.ok(sameBits(be().matmulQ8(be().prepare(src), q), ref.matmulQ8(ref.prepare(src), q)), `fill ${fill} n=${n}`);
        }
      }
    }
  });

  it('ternary weights with float activations (matmul) agree to float32 rounding; a token gets the same bits alone as in the batch', () => {
    const rand = rng(11);
    // group sizes off the 128-column blocks and the 16-column SIMD units too (groups that start and end inside them)
    for (const [granularity, groupSize] of [['tensor', 0], ['channel', 0], ['group', 128], ['group', 256], ['group', 64], ['group', 96], ['group', 50], ['group', 200]] as const) {
      for (const [rows, cols, n] of SHAPES) {
        if (granularity === 'group' && groupSize > cols && cols > 1) continue;
        const src = ternarySource(rand, rows, cols, 't158', granularity, groupSize || undefined);
        const rw = ref.prepare(src), w = be().prepare(src);
        const dense = ref.gatherRows(rw, Array.from({ length: rows }, (_, r) => r));
        const x = randomFloats(rand, n * cols);
        const bias = randomFloats(rand, rows);
        const what = `${granularity}${groupSize ? ` ${groupSize}` : ''} [${rows}×${cols}] n=${n}`;
        const got = be().matmul(w, x, n, bias);
        assertClose(got, ref.matmul(rw, x, n, bias), magnitudes(dense, rows, cols, x, n).map((m, i) => m + Math.abs(bias[i % rows]!)), 2e-6, what);
        for (let i = 0; i < n; i++) {
          const alone = be().matmul(w, x.subarray(i * cols, (i + 1) * cols), 1, bias);
          assert.ok(sameBits(alone, got.subarray(i * rows, (i + 1) * rows)), `${what}: token ${i} alone vs in the batch`);
        }
      }
    }
  });

  for (const dtype of ['F32', 'F16', 'BF16'] as const) {
    it(`${dtype} matmul agrees to float32 rounding and gatherRows is exact`, () => {
      const rand = rng(dtype.length * 31);
      for (const [rows, cols, n] of [...SHAPES, [40, 2048, 3] as [number, number, number]]) {
        const w = randomFloats(rand, rows * cols);
        const src = { kind: 'float' as const, name: 'w', rows, cols, dtype: dtype as FloatDType, bytes: fromFloat32(w, dtype) };
        const rw = ref.prepare(src);
        const nw = be().prepare(src);
        const x = randomFloats(rand, n * cols);
        const dense = ref.gatherRows(rw, Array.from({ length: rows }, (_, r) => r));
        assertClose(be().matmul(nw, x, n), ref.matmul(rw, x, n), magnitudes(dense, rows, cols, x, n), 2e-6, `${dtype} [${rows}×${cols}] n=${n}`);
        if (dtype !== 'F32') { // Inf and NaN weights take their own path in some kernels
          const special = w.slice();
          special[0] = Infinity; special[special.length - 1] = -Infinity; special[Math.floor(special.length / 2)] = NaN;
          const ss = { ...src, bytes: fromFloat32(special, dtype) };
          const got = be().matmul(be().prepare(ss), x, n), want = ref.matmul(ref.prepare(ss), x, n);
          for (let i = 0; i < got.length; i++) {
            const ok = Number.isFinite(want[i]!) ? Math.abs(got[i]! - want[i]!) <= 1e-5 * (1 + Math.abs(want[i]!)) * Math.sqrt(cols) : Object.is(got[i], want[i]);
            assert.ok(ok, `${dtype} with Inf/NaN weights, output ${i}: ${got[i]} vs ${want[i]}`);
          }
        }
        const ids = [rows - 1, 0, Math.floor(rows / 2)];
        assert.ok(sameBits(be().gatherRows(nw, ids), ref.gatherRows(rw, ids)));
      }
    });
  }

  it('gatherRows of a ternary weight is exact', () => {
    const rand = rng(5);
    const src = ternarySource(rand, 20, 333, 't158', 'group', 64);
    const ids = [19, 0, 7, 7];
    assert.ok(sameBits(be().gatherRows(be().prepare(src), ids), ref.gatherRows(ref.prepare(src), ids)));
  });

  it('attention agrees with the reference (GQA, sliding window, odd head dims) and decode reproduces prefill', () => {
    const rand = rng(21);
    // the last shape's large queries push many softmax arguments below −87, where the vector exp gives 0
    for (const [heads, kvHeads, headDim, length, n, window, qScale] of [[8, 4, 16, 40, 40, null, 2], [4, 1, 13, 33, 5, null, 2], [6, 2, 64, 70, 1, 16, 2], [2, 2, 8, 9, 3, 4, 2], [4, 2, 128, 37, 2, null, 2], [4, 2, 64, 45, 3, null, 200]] as const) {
      const cache = { keys: randomFloats(rand, length * kvHeads * headDim), values: randomFloats(rand, length * kvHeads * headDim), length };
      const q = randomFloats(rand, n * heads * headDim, qScale);
      const shape = { numHeads: heads, numKvHeads: kvHeads, headDim, slidingWindow: window };
      const got = be().attention(q, n, cache, shape);
      const want = ref.attention(q, n, cache, shape);
      assert.ok(maxAbsDiff(got, want) < 2e-6, `${heads}/${kvHeads}×${headDim} n=${n}: ${maxAbsDiff(got, want)}`);
      const stride = heads * headDim;
      const last = be().attention(q.subarray((n - 1) * stride), 1, cache, shape);
      assert.ok(sameBits(last, got.subarray((n - 1) * stride)));
    }
  });

  it('refuses t2 data holding the invalid code 3', () => {
    const src = ternarySource(rng(3), 2, 8, 't2', 'tensor');
    src.packed[3] = 0xff;
    assert.throws(() => be().prepare(src), /invalid code 3 at element 12/);
    assert.throws(() => be().prepare({ ...src, packed: src.packed.subarray(0, 3) }), /needs 4/);
  });
}

/** Element-wise steps against the reference: bit for bit (quantization incl. ties, zeros, NaN and Inf; RMSNorm incl. rows
  * whose mean square is a rounding tie; relu²; adds; RoPE), SiLU within `siluTolerance` relative (0: bit for bit). */
export function checkElementwise(be: Backend, siluTolerance: number): void {
  const ref = new ReferenceBackend();
  const rand = rng(31);
  for (const [n, cols] of [[1, 1], [3, 7], [3, 1003], [5, 2048], [2, 5632]] as const) { // 1003: vector loops and their tails
    const x = randomFloats(rand, n * cols, 4);
    if (cols > 4) { x[0] = 0.5; x[1] = -2.5; x[2] = 0; x[3] = -0; } // exact ties after scaling are rare; zeros and signs are not
    const a = be.quantizeActivations(x, n, cols);
    const b = ref.quantizeActivations(x, n, cols);
    assert.ok(Buffer.from(a.q.buffer).equals(Buffer.from(b.q.buffer)) && sameBits(a.scales, b.scales), `quantize ${n}×${cols}`);
    const w = randomFloats(rand, cols, 2);
    assert.ok(sameBits(be.rmsnorm(x, n, cols, w, 1e-5), ref.rmsnorm(x, n, cols, w, 1e-5)), `rmsnorm ${n}×${cols}`);
    assert.ok(sameBits(be.rmsnorm(x, n, cols, w, 1e-6), ref.rmsnorm(x, n, cols, w, 1e-6)), `rmsnorm eps 1e-6 ${n}×${cols}`);
    const up = randomFloats(rand, n * cols, 3);
    assert.ok(sameBits(be.gatedActivation(x, up, 'relu2'), ref.gatedActivation(x, up, 'relu2')), 'relu2');
    const silu = be.gatedActivation(x, up, 'silu'), want = ref.gatedActivation(x, up, 'silu');
    for (let i = 0; i < silu.length; i++) assert.ok(Math.abs(silu[i]! - want[i]!) <= siluTolerance * Math.abs(want[i]!), `silu ${i}: ${silu[i]} vs ${want[i]}`);
    const s1 = x.slice(), s2 = x.slice();
    be.addInPlace(s1, up);
    ref.addInPlace(s2, up);
    assert.ok(sameBits(s1, s2), 'add');
    if (cols % 2 === 0) {
      const half = cols / 2, cos = randomFloats(rand, n * half, 1), sin = randomFloats(rand, n * half, 1);
      const r1 = x.slice(), r2 = x.slice();
      be.rope(r1, n, 1, cols, cos, sin);
      ref.rope(r2, n, 1, cols, cos, sin);
      assert.ok(sameBits(r1, r2), `rope ${n}×${cols}`);
    }
  }
  // Σx²/16 exactly halfway between two floats (up to even, then down to even): the lane sum cannot
  // decide these, so a lane-sum RMSNorm must fall back to the reference's sequential sum.
  for (const row of [[3941, 3121, 3235, 3966, 3705, 3658, 3902, 2960, 3861, 2989, 3531, 3706, 3248, 3245, 3928, 3364],
    [3723, 3476, 2937, 3221, 3311, 3571, 3176, 3594, 3779, 3336, 3445, 3097, 3676, 3604, 3994, 3892]]) {
    const x = Float32Array.from(row), w = new Float32Array(16).fill(1);
    assert.ok(sameBits(be.rmsnorm(x, 1, 16, w, 1e-5), ref.rmsnorm(x, 1, 16, w, 1e-5)), `rmsnorm tie ${row[0]}`);
  }
  // Integer-valued activations give exact .5 ties under s = 127/max: half-to-even must match.
  const ties = Float32Array.from({ length: 254 }, (_, i) => (i - 127) / 2);
  ties[0] = 127 * 2; // max 254 → s = 0.5, every x·s is k/4
  const a = be.quantizeActivations(ties, 1, ties.length), b = ref.quantizeActivations(ties, 1, ties.length);
  assert.ok(Buffer.from(a.q.buffer).equals(Buffer.from(b.q.buffer)));
  // the last two reach 16-column vector loops with NaN and ±Inf
  const wide = (at: number[], v: number[]): Float32Array => { const r = Float32Array.from({ length: 21 }, (_, i) => i - 10); at.forEach((i, k) => { r[i] = v[k]!; }); return r; };
  for (const odd of [Float32Array.of(NaN, 1, Infinity, -3), Float32Array.of(1, 2, 3, 4, 5, 6, 7, -Infinity, 9, -3), Float32Array.of(1, 2, 3, 4, 5, 6, 7, 8, NaN),
    wide([5], [NaN]), wide([3, 17], [Infinity, -Infinity])]) {
    const got = be.quantizeActivations(odd, 1, odd.length), want = ref.quantizeActivations(odd, 1, odd.length);
    assert.deepEqual([...got.q], [...want.q]);
    assert.ok(Object.is(got.scales[0], want.scales[0]), `${got.scales[0]} vs ${want.scales[0]}`);
  }
}

/** The fixtures' transformers references, run on a fast backend (skipped, with the reason, where it does not load). */
export function fixtureModelsOn(backend: 'native' | 'wasm', unavailable: () => string | null, threads?: number): void {
describe(`runtime: fixture models on the ${backend} backend${threads ? ` (${threads} threads)` : ''}`, function () {
  before(function () {
    const why = unavailable();
    if (why !== null) {
      console.log(`      (skipped: the ${backend} backend did not load: ${why})`);
      this.skip();
    }
  });

  describe('tinystories-656K (float weights) against transformers float32', () => {
    const ref = loadReference('tinystories-656K');
    const f32 = ref.float32;
    const V = 2048;
    let model: LoadedModel;
    let logits: Float32Array;
    before(async () => {
      model = await loadModel(fixtureDir('tinystories-656K'), { backend, threads });
      logits = model.logits(ref.tokenizer.sample_ids_first512);
    });
    after(() => model?.close());

    it(`runs on the ${backend} backend`, () => assert.equal(model.backend, backend));
    it('mean NLL of the 512-token sample and of Shakespeare within 1e-4 of float32', () => {
      assert.ok(Math.abs(meanNll(logits, ref.tokenizer.sample_ids_first512, V) - f32.nll.tinystories_sample.mean_nll) < 1e-4);
      const ids = ref.tokenizer.shakespeare_ids_first512;
      assert.ok(Math.abs(meanNll(model.logits(ids), ids, V) - f32.nll.tinyshakespeare.mean_nll) < 1e-4);
    });
    it('top-1 of the first 128 positions and position-0 logits match', () => {
      assert.deepEqual(top1(logits, V, 128), f32.top1_first128_sample);
      assert.ok(maxAbsDiff(logits.subarray(0, V), f32.logits_sample.pos0_full_vocab) < 1e-3);
    });
    it('greedy 64 matches up to the near-tie step; the KV cache reproduces the batch exactly', () => {
      const g = f32.greedy64_from_prompt;
      assert.ok(commonPrefix(model.generate(g.prompt_ids, { maxNewTokens: 64, temperature: 0 }), g.generated_ids) >= g.min_margin_step);
      const ids: number[] = ref.tokenizer.sample_ids_first512.slice(0, 24);
      const session = model.createSession();
      session.feed(ids.slice(0, 8));
      for (let i = 8; i < ids.length; i++) assert.ok(maxAbsDiff(session.feed([ids[i]!], { lastOnly: true }), logits.subarray(i * V, (i + 1) * V)) === 0, `position ${i}`);
    });
  });

  describe('tinystories-656K converted to .tpk (ternary weights, float activations) against its ternarized reference', () => {
    const ref = loadReference('tinystories-656K');
    const ta = ref.ternary_absmean.float32;
    const V = 2048;
    let tmp: { dir: string; cleanup: () => void };
    let model: LoadedModel;
    before(async () => {
      tmp = makeTempDir('tritpack-fast-backend-');
      const file = path.join(tmp.dir, 'tinystories-t158.tpk');
      await convertCheckpoint({ input: fixtureDir('tinystories-656K'), output: file, packing: 't158' });
      model = await loadModel(file, { backend, threads });
    });
    after(() => { model?.close(); tmp?.cleanup(); });

    it('mean NLL within 1e-4, top-1 of the first 128 positions and greedy 64 equal the reference', () => {
      const ids = ref.tokenizer.sample_ids_first512;
      const logits = model.logits(ids);
      const nll = meanNll(logits, ids, V);
      assert.ok(Math.abs(nll - ta.nll.tinystories_sample.mean_nll) < 1e-4, `${nll} vs ${ta.nll.tinystories_sample.mean_nll}`);
      assert.deepEqual(top1(logits, V, 128), ta.top1_first128_sample);
      const g = ta.greedy64_from_prompt;
      assert.equal(commonPrefix(model.generate(g.prompt_ids, { maxNewTokens: 64 }), g.generated_ids), 64);
    });
  });

  describe('bitnet-tiny (W1.58A8, int8 kernels) against transformers', () => {
    const ref = loadReference('bitnet-tiny');
    const r32 = ref.reference_float32;
    const ids: number[] = ref.sample_ids_first256;
    const V = 2048;
    let model: LoadedModel;
    let logits: Float32Array;
    before(async () => {
      model = await loadModel(fixtureDir('bitnet-tiny'), { backend, threads });
      logits = model.logits(ids);
    });
    after(() => model?.close());

    it('mean NLL of the 256-id window within 1e-4 of transformers', () => {
      const nll = meanNll(logits, ids, V);
      assert.ok(Math.abs(nll - r32.nll.mean_nll) < 1e-4, `${nll} vs ${r32.nll.mean_nll}`);
    });
    it('position-0 logits within 1e-3 and top-1 of the first 64 positions agree (≥ 60/64)', () => {
      assert.ok(maxAbsDiff(logits.subarray(0, 32), r32.logits_pos0_first32) < 1e-3);
      const got = top1(logits, V, 64);
      assert.ok(got.filter((id, i) => id === r32.top1_first64[i]).length >= 60);
    });
    it('greedy 32 from BOS equals transformers', () => {
      const g = r32.greedy32_from_bos;
      assert.deepEqual(model.generate(g.prompt_ids, { maxNewTokens: 32, temperature: 0 }), g.generated_ids);
    });
    it('equals the reference backend to float32 rounding on the same window', async () => {
      const refModel = await loadModel(fixtureDir('bitnet-tiny'), { backend: 'reference' });
      try {
        assert.ok(maxAbsDiff(refModel.logits(ids.slice(0, 64)), logits.subarray(0, 64 * V)) < 1e-3);
      } finally {
        refModel.close();
      }
    });
  });
});
}

/** A 2-thread wasm backend of `variant` for a suite's before() hook; skips the suite, saying why, where that module does not load. */
export function wasmBackendOrSkip(ctx: Mocha.Context, variant: WasmVariant): WasmBackend {
  if (!loadWasmModule(variant)) {
    console.log(`      (skipped: the ${variant} wasm module did not load: ${wasmUnavailableReason(variant)})`);
    ctx.skip();
  }
  return new WasmBackend({ variant, threads: 2 });
}
