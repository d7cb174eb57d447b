/**
 * The opt-in int8 LM head (`lmHead: 'int8'`, `--lm-head int8`): the shared weight quantizer's
 * rounding, the native int8 kernel (portable C, AVX2, and AVX-512 VNNI where the CPU has it) and the
 * wasm one (SIMD128 and relaxed SIMD modules) against the reference backend bit for bit on random and
 * edge inputs and at 1–3 threads, the head inside the fixture models on every backend
 * against an int8 head computed here from the float model's own final hidden states, and the CLI
 * flag end to end (validate's JSON and report record it).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { convertCheckpoint } from '../../src/converters/convert.js';
import { fromFloat32, type FloatDType } from '../../src/formats/dtype.js';
import { loadModel, ReferenceBackend, normalizeConfig, type Backend, type Int8WeightSource, type PreparedWeight, type QuantizedActivations } from '../../src/runtime-min/index.js';
import { quantizeWeightRows } from '../../src/runtime-min/quantize-rows.js';
import { loadNativeAddon, NativeBackend, nativeUnavailableReason } from '../../src/runtime-min/backends/native.js';
import { WasmBackend, loadWasmModule } from '../../src/runtime-min/backends/wasm.js';
import { Decoder } from '../../src/runtime-min/model.js';
import { openModelSource } from '../../src/runtime-min/sources.js';
import { loadWeights } from '../../src/runtime-min/weights.js';
import { runCli } from '../support/cli.js';
import { fixtureDir, makeTempDir, textFixture, type FixtureName } from '../support/fixtures.js';
import { packFixture } from '../support/validate-cli.js';
import { rng, sameBits, wasmBackendOrSkip } from '../support/fast-backend-checks.js';

const f = Math.fround;
const addon = loadNativeAddon();

function floatSource(values: Float32Array, rows: number, cols: number, dtype: FloatDType = 'F32') {
  return { kind: 'float' as const, name: 'lm_head.weight', rows, cols, dtype, bytes: fromFloat32(values, dtype) };
}

/** Round half to even, written differently from the runtime's (Math.round rounds halves up). */
function halfEven(v: number): number {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** The contract (backend.ts) computed independently: int8 rows of w, int8 tokens of x, S / (s_w·s_x). */
function int8HeadLogits(w: Float32Array, rows: number, cols: number, x: Float32Array, n: number): Float32Array {
  const quantize = (v: Float32Array, lo: number) => {
    const max = v.reduce((m, a) => Math.max(m, Math.abs(a)), 0);
    const s = f(127 / Math.max(max, f(1e-5)));
    return { s, q: Array.from(v, (a) => Math.min(127, Math.max(lo, halfEven(f(a * s))))) };
  };
  const wq = Array.from({ length: rows }, (_, r) => quantize(w.subarray(r * cols, (r + 1) * cols), -127));
  const out = new Float32Array(n * rows);
  for (let i = 0; i < n; i++) {
    const xq = quantize(x.subarray(i * cols, (i + 1) * cols), -128);
    for (let r = 0; r < rows; r++) {
      let sum = 0;
      for (let c = 0; c < cols; c++) sum += wq[r]!.q[c]! * xq.q[c]!;
      out[i * rows + r] = sum / (wq[r]!.s * xq.s);
    }
  }
  return out;
}

/** The quantizer's definition runs on the reference backend's activation quantizer. */
const REF = new ReferenceBackend();

describe('runtime: int8 LM head, the shared weight quantizer', () => {
  it('rounds w·s half to even in float32 with s = 127 / max|row|, per row', () => {
    // row 0: max 127 → s = 1, so the values themselves are the ties; row 1: max 254 → s = 0.5
    const w = Float32Array.of(127, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5, -127, 3,
      254, 1, 3, 5, -1, -3, -5, 7, -254, 0.25);
    const got = quantizeWeightRows(floatSource(w, 2, 10), REF);
    assert.deepEqual([...got.scales], [1, 0.5]);
    assert.deepEqual([...got.q], [127, 0, 2, 2, 0, -2, -2, 126, -127, 3, 127, 0, 2, 2, 0, -2, -2, 4, -127, 0]);
    assert.equal(got.kind, 'int8');
    assert.equal(got.name, 'lm_head.weight');
  });

  it('a zero row gets s = 127 / 1e-5 and zero codes; a row of tiny values is scaled up from 1e-5 like activations', () => {
    const got = quantizeWeightRows(floatSource(Float32Array.of(0, 0, 0, 5e-6, -2.5e-6, 1e-6), 2, 3), REF);
    assert.deepEqual([...got.scales], [f(127 / f(1e-5)), f(127 / f(1e-5))]);
    assert.deepEqual([...got.q.subarray(0, 3)], [0, 0, 0]);
    assert.deepEqual([...got.q.subarray(3)], [halfEven(f(f(5e-6) * got.scales[1]!)), halfEven(f(f(-2.5e-6) * got.scales[1]!)), halfEven(f(f(1e-6) * got.scales[1]!))]);
  });

  it('equals the activation quantizer on the same rows, and quantizes f16/bf16 bytes as their float32 values', () => {
    const rand = rng(5);
    const ref = new ReferenceBackend();
    const rows = 7, cols = 333;
    const w = Float32Array.from({ length: rows * cols }, () => (rand() * 2 - 1) * 0.1);
    const got = quantizeWeightRows(floatSource(w, rows, cols), REF);
    const act = ref.quantizeActivations(w, rows, cols);
    assert.ok(sameBits(got.scales, act.scales));
    assert.deepEqual([...got.q], [...act.q]);
    for (const dtype of ['F16', 'BF16'] as const) {
      const widened = new ReferenceBackend().gatherRows(ref.prepare(floatSource(w, rows, cols, dtype)), Array.from({ length: rows }, (_, r) => r));
      const a = quantizeWeightRows(floatSource(w, rows, cols, dtype), REF), b = quantizeWeightRows(floatSource(widened, rows, cols), REF);
      assert.ok(sameBits(a.scales, b.scales) && Buffer.from(a.q.buffer).equals(Buffer.from(b.q.buffer)), dtype);
    }
  });

  it('refuses non-finite weights, naming the tensor and row', () => {
    for (const bad of [NaN, Infinity, -Infinity]) {
      assert.throws(() => quantizeWeightRows(floatSource(Float32Array.of(1, 2, 3, 4, bad, 6), 2, 3), REF), new RegExp(`lm_head\\.weight: row 1 holds ${bad}`));
    }
  });

  it('gives the same q and s on the native and wasm backends, across widening slabs, and refuses a bad row past the first slab', function () {
    const rand = rng(17);
    const rows = 1100, cols = 2048; // 2.25M values: the quantizer widens 2M at a time
    const w = Float32Array.from({ length: rows * cols }, () => (rand() * 2 - 1) * 0.05);
    const want = quantizeWeightRows(floatSource(w, rows, cols, 'F16'), REF);
    const backends: Backend[] = [];
    if (addon) backends.push(new NativeBackend());
    if (loadWasmModule()) backends.push(new WasmBackend({ threads: 2 }));
    if (backends.length === 0) this.skip();
    for (const be of backends) {
      const got = quantizeWeightRows(floatSource(w, rows, cols, 'F16'), be);
      assert.ok(sameBits(got.scales, want.scales) && Buffer.from(got.q.buffer).equals(Buffer.from(want.q.buffer)), be.name);
      const bad = w.slice();
      bad[1050 * cols + 7] = Infinity;
      assert.throws(() => quantizeWeightRows(floatSource(bad, rows, cols), be), /lm_head\.weight: row 1050 holds Infinity/, be.name);
      (be as { dispose?: () => void }).dispose?.();
    }
  });
});

describe('runtime: int8 matmulQ8 on the reference backend', () => {
  const ref = new ReferenceBackend();
  const weight = (q: number[], scales: number[], cols: number): PreparedWeight =>
    ref.prepare({ kind: 'int8', name: 'w', rows: scales.length, cols, q: Int8Array.from(q), scales: Float32Array.from(scales) });
  const acts = (q: number[], scales: number[]): QuantizedActivations => ({ n: scales.length, cols: q.length / scales.length, q: Int8Array.from(q), scales: Float32Array.from(scales) });

  it('computes float(S / (s_w·s_x) + bias) with the exact integer sum S', () => {
    const w = weight([1, -2, 3, 127, 127, -127], [2, 3], 3);
    const x = acts([4, 5, -6, -128, 127, 0], [0.5, 7]);
    const out = ref.matmulQ8(w, x, Float32Array.of(0.25, -1));
    // token 0: S = 4 − 10 − 18 = −24 → −24/(2·0.5) + 0.25; 127·4 + 127·5 − 127·−6 = 1905 → 1905/(3·0.5) − 1
    // token 1: S = −128 − 254 = −382 → −382/14 + 0.25; 127·−128 + 127·127 = −127 → −127/21 − 1
    assert.deepEqual([...out], [f(-24 + 0.25), f(1905 / 1.5 - 1), f(-382 / 14 + 0.25), f(-127 / 21 - 1)]);
  });

  it('refuses an int8 weight where float activations or an embedding lookup are asked for', () => {
    const w = weight([1, 2], [1], 2);
    assert.throws(() => ref.matmul(w, Float32Array.of(1, 2), 1), /int8 weight w needs matmulQ8/);
    assert.throws(() => ref.gatherRows(w, [0]), /w is int8/);
  });
});

/** Random int8 weights (codes in [−127, 127]) and activations (codes in [−128, 127]) with positive float32 scales. */
function randomCase(rand: () => number, rows: number, cols: number, n: number) {
  const q = Int8Array.from({ length: rows * cols }, () => Math.floor(rand() * 255) - 127);
  const w: Int8WeightSource = { kind: 'int8', name: `w${rows}x${cols}`, rows, cols, q, scales: Float32Array.from({ length: rows }, () => 0.5 + rand() * 500) };
  const x: QuantizedActivations = { n, cols, q: Int8Array.from({ length: n * cols }, () => Math.floor(rand() * 256) - 128), scales: Float32Array.from({ length: n }, () => 0.01 + rand() * 100) };
  return { w, x };
}

// Columns around the 32/64/128-byte steps of the kernels; n = 1 (decode), 2–3 (single-token remainder),
// 4–9 (4-token groups plus remainders), 70 (past the 64-token tile).
const SHAPES: [rows: number, cols: number, n: number][] = [
  [1, 1, 1], [3, 5, 2], [7, 31, 4], [9, 32, 5], [5, 33, 3], [6, 63, 1], [6, 64, 9], [6, 65, 4], [4, 127, 8], [4, 128, 1],
  [5, 129, 6], [3, 255, 2], [8, 256, 1], [3, 257, 7], [33, 1000, 1], [40, 2048, 3], [12, 640, 70], [301, 96, 1],
];

const KERNELS = [
  { label: 'best SIMD (AVX-512 VNNI for 4-token groups where the CPU has it, AVX2 otherwise)', vnni: true, portable: false },
  { label: 'AVX2 (sign trick)', vnni: false, portable: false },
  { label: 'portable C', vnni: true, portable: true },
];

/**
 * One token against `rows` one-column rows whose logits catch a kernel that divides twice
 * (S / s_r / s_x): each row's bias is −float32(S / (s_r·s_x)), which leaves the quotient's low bits,
 * and rows are kept only where the two divisions then round to different float32 values.
 */
function roundingCase(rand: () => number, rows: number) {
  const qx = -113, sx = f(0.01 + rand() * 100);
  const q: number[] = [], scales: number[] = [], bias: number[] = [], want: number[] = [];
  while (q.length < rows) {
    const qw = Math.floor(rand() * 254) - 127, sr = f(0.5 + rand() * 500);
    const once = (qw * qx) / (sr * sx), twice = (qw * qx) / sr / sx, b = -f(once);
    if (f(once + b) === f(twice + b)) continue;
    q.push(qw); scales.push(sr); bias.push(b); want.push(f(once + b));
  }
  const w: Int8WeightSource = { kind: 'int8', name: 'rounding', rows, cols: 1, q: Int8Array.from(q), scales: Float32Array.from(scales) };
  const x: QuantizedActivations = { n: 1, cols: 1, q: Int8Array.of(qx), scales: Float32Array.of(sx) };
  return { w, x, bias: Float32Array.from(bias), want: Float32Array.from(want) };
}

/**
 * The int8 kernel checks shared by every fast backend: bit-identical to the reference on random and
 * edge inputs, and a token's logits the same alone as in a batch and at 1, 2 and 3 threads.
 */
function int8MatchesReference(backend: () => Backend, setThreads: (threads: number) => void, seed: number): void {
  const ref = new ReferenceBackend();
  const check = (w: Int8WeightSource, x: QuantizedActivations, what: string, bias?: Float32Array) => {
    const want = ref.matmulQ8(ref.prepare(w), x, bias);
    const got = backend().matmulQ8(backend().prepare(w), x, bias);
    assert.ok(sameBits(got, want), `${what}: [${w.rows}×${w.cols}] n=${x.n}`);
  };

  it('is bit-identical on random shapes, with and without bias', () => {
    const rand = rng(seed);
    for (const [rows, cols, n] of SHAPES) {
      const { w, x } = randomCase(rand, rows, cols, n);
      check(w, x, 'random');
      check(w, x, 'bias', Float32Array.from({ length: rows }, () => rand() * 4 - 2));
    }
  });

  it('is bit-identical at the extremes: codes ±127 against −128 and 127 everywhere, zero rows, all-zero activations', () => {
    const rand = rng(3);
    for (const [rows, cols, n] of [[9, 2048, 1], [9, 2048, 5], [5, 131, 4], [3, 7, 2]] as const) {
      const { w, x } = randomCase(rand, rows, cols, n);
      for (const [wfill, xfill] of [[127, -128], [-127, -128], [127, 127], [-127, 127]]) {
        check({ ...w, q: new Int8Array(rows * cols).fill(wfill) }, { ...x, q: new Int8Array(n * cols).fill(xfill) }, `w ${wfill}, x ${xfill}`);
      }
      const alternating = Int8Array.from({ length: rows * cols }, (_, i) => (i % 2 ? 127 : -127));
      check({ ...w, q: alternating }, { ...x, q: new Int8Array(n * cols).fill(-128) }, 'alternating signs');
      const zeroRows = w.q.slice();
      zeroRows.fill(0, 0, cols);
      zeroRows.fill(0, (rows - 1) * cols);
      check({ ...w, q: zeroRows }, x, 'zero first and last rows');
      check(w, { ...x, q: new Int8Array(n * cols) }, 'all-zero activations');
    }
  });

  it('divides S by s_r·s_x in one rounding, then adds the bias (rows where S / s_r / s_x would give other float32 bits)', () => {
    const { w, x, bias, want } = roundingCase(rng(seed + 100), 24);
    assert.ok(sameBits(ref.matmulQ8(ref.prepare(w), x, bias), want), 'the reference follows the contract');
    assert.ok(sameBits(backend().matmulQ8(backend().prepare(w), x, bias), want));
  });

  it('gives a token the same bits alone (decode) as inside a batch, at 1, 2 and 3 threads', () => {
    const { w, x } = randomCase(rng(8), 301, 1001, 9);
    const prepared = backend().prepare(w);
    const batch = backend().matmulQ8(prepared, x);
    for (let i = 0; i < 9; i++) {
      const one = { n: 1, cols: 1001, q: x.q.subarray(i * 1001, (i + 1) * 1001), scales: x.scales.subarray(i, i + 1) };
      assert.ok(sameBits(backend().matmulQ8(prepared, one), batch.subarray(i * 301, (i + 1) * 301)), `token ${i}`);
    }
    for (const t of [1, 2, 3]) {
      setThreads(t);
      assert.ok(sameBits(backend().matmulQ8(prepared, x), batch), `${t} threads`);
    }
  });
}

describe('runtime: int8 matmulQ8, native kernels vs the reference backend', function () {
  before(function () {
    if (!addon) {
      console.log(`      (skipped: the native addon did not load: ${nativeUnavailableReason()})`);
      this.skip();
    }
  });
  let native: NativeBackend;
  let threads: number;
  before(() => { native = new NativeBackend(); threads = native.threads; });
  afterEach(() => addon?.setThreads(threads));

  for (const k of KERNELS) {
    describe(k.label, () => {
      before(() => { addon!.setVnni(k.vnni); addon!.setPortable(k.portable); });
      after(() => { addon!.setVnni(true); addon!.setPortable(false); });
      int8MatchesReference(() => native, (t) => addon!.setThreads(t), k.label.length);
    });
  }

  it('holds the weights padded to 64 columns and refuses float activations, lookups and short buffers', () => {
    const { w, x } = randomCase(rng(4), 3, 65, 2);
    const prepared = native.prepare(w);
    assert.equal(prepared.kind, 'int8');
    assert.equal(prepared.byteLength, 3 * 128 + 3 * 4);
    assert.throws(() => native.matmul(prepared, new Float32Array(130), 2), /needs matmulQ8/);
    assert.throws(() => native.gatherRows(prepared, [0]), /is int8/);
    assert.throws(() => native.matmulQ8(prepared, { ...x, q: x.q.subarray(0, 100) }), RangeError);
  });
});

for (const variant of ['simd', 'relaxed'] as const) {
  describe(`runtime: int8 matmulQ8, the ${variant} wasm kernel vs the reference backend`, function () {
    let wasm: WasmBackend;
    before(function () { wasm = wasmBackendOrSkip(this, variant); });
    afterEach(() => { if (wasm) wasm.threads = 2; });
    after(() => wasm?.dispose());

    int8MatchesReference(() => wasm, (t) => { wasm.threads = t; }, variant.length + 11);

    it('holds the weights padded to 64 columns and refuses float activations, lookups, short buffers and over-wide rows', () => {
      const { w, x } = randomCase(rng(4), 3, 65, 2);
      const prepared = wasm.prepare(w);
      assert.equal(prepared.kind, 'int8');
      assert.equal(prepared.byteLength, 3 * 128 + 3 * 4); // TP_INT8_ALIGN
      assert.throws(() => wasm.matmul(prepared, new Float32Array(130), 2), /needs matmulQ8/);
      assert.throws(() => wasm.gatherRows(prepared, [0]), /is int8/);
      assert.throws(() => wasm.matmulQ8(prepared, { ...x, q: x.q.subarray(0, 100) }), RangeError);
      assert.throws(() => wasm.prepare({ ...w, rows: 1, cols: 131073, q: new Int8Array(131073) }), /w3x65: an int8 weight of 131073 columns; 1 to 131072 supported/);
    });
  });
}

/** A backend that records the input of every matmul with `rows` outputs (the LM head's final hidden states). */
function recording<T extends Backend>(be: T, rows: number): { backend: T; finals: Float32Array[] } {
  const finals: Float32Array[] = [];
  const matmul = be.matmul.bind(be);
  be.matmul = (w, x, n, bias, out) => {
    if (w.rows === rows) finals.push(x.slice(0, n * w.cols));
    return matmul(w, x, n, bias, out);
  };
  return { backend: be, finals };
}

for (const fixture of ['tinystories-656K', 'bitnet-tiny'] as FixtureName[]) {
  for (const backend of ['reference', 'native', 'wasm'] as const) {
    describe(`runtime: ${fixture} with lmHead int8 on the ${backend} backend`, function () {
      before(function () { if ((backend === 'native' && !addon) || (backend === 'wasm' && !loadWasmModule())) this.skip(); });
      const ids = [1, 400, 17, 1999, 5, 64, 300, 2, 800, 9, 1234, 77];

      it('gives exactly the int8 head, computed here, of the float model\'s own final hidden states (the tied embedding lookup stays float)', async () => {
        const src = openModelSource(fixtureDir(fixture));
        const cfg = normalizeConfig(JSON.parse(src.configText), src.configOrigin);
        const spy = recording(backend === 'native' ? new NativeBackend() : backend === 'wasm' ? new WasmBackend() : new ReferenceBackend(), cfg.vocabSize);
        const decoder = new Decoder(cfg, loadWeights(src, cfg, spy.backend), spy.backend);
        const floatLogits = decoder.forward(decoder.newState(), ids);
        (spy.backend as Backend).dispose?.();
        const head = src.tensor('lm_head.weight') ? 'lm_head.weight' : 'model.embed_tokens.weight';
        const want = int8HeadLogits(src.readVector(head), cfg.vocabSize, cfg.hiddenSize, spy.finals[0]!, ids.length);
        src.close();

        const model = await loadModel(fixtureDir(fixture), { backend, lmHead: 'int8' });
        const float = await loadModel(fixtureDir(fixture), { backend });
        try {
          assert.equal(model.lmHead, 'int8');
          assert.equal(float.lmHead, 'float');
          const got = model.logits(ids);
          assert.ok(sameBits(got, want), 'int8 head logits');
          assert.ok(!sameBits(got, floatLogits), 'the int8 head changes the logits');
          // the head is V×H int8 codes (rows padded to 64 columns on native, 32 on wasm) + V scales besides the float embedding (both fixtures are tied)
          const align = { reference: 1, native: 64, wasm: 32 }[backend];
          assert.equal(model.weightBytes - float.weightBytes, cfg.vocabSize * Math.ceil(cfg.hiddenSize / align) * align + cfg.vocabSize * 4);
          const session = model.createSession();
          session.feed(ids.slice(0, 5));
          for (let i = 5; i < ids.length; i++) assert.ok(sameBits(session.feed([ids[i]!], { lastOnly: true }), got.subarray(i * cfg.vocabSize, (i + 1) * cfg.vocabSize)), `decode position ${i}`);
        } finally {
          model.close();
          float.close();
        }
      });
    });
  }
}

describe('runtime: lmHead int8 on an untied model, and its errors', () => {
  let temp: ReturnType<typeof makeTempDir>;
  before(() => { temp = makeTempDir(); });
  after(() => temp.cleanup());

  it('quantizes lm_head and keeps model.embed_tokens float (llama-256 is untied)', async () => {
    const model = await loadModel(fixtureDir('llama-256'), { backend: 'reference', lmHead: 'int8' });
    const float = await loadModel(fixtureDir('llama-256'), { backend: 'reference' });
    try {
      const { vocabSize: V, hiddenSize: H } = model.config;
      // the f32 head (4 bytes a weight) is replaced by 1 byte a weight and a scale per row
      assert.equal(float.weightBytes - model.weightBytes, V * H * 3 - V * 4);
      const ids = [1, 5, 9, 200, 17];
      const a = model.logits(ids), b = float.logits(ids);
      let worst = 0;
      for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!) / (1 + Math.abs(b[i]!)));
      assert.ok(worst > 0 && worst < 0.05, `relative logit change ${worst}`);
    } finally {
      model.close();
      float.close();
    }
  });

  it('refuses an unknown precision, and a LM head stored ternary (nothing float to quantize)', async () => {
    await assert.rejects(loadModel(fixtureDir('tinystories-656K'), { lmHead: 'int4' as 'int8' }), /unknown LM head precision "int4"; available: float, int8/);
    const output = path.join(temp.dir, 'ternary-head.tpk');
    await convertCheckpoint({ input: fixtureDir('llama-256'), output, include: ['lm_head.weight'] });
    await assert.rejects(loadModel(output, { backend: 'reference', lmHead: 'int8' }), /ternary-head\.tpk: an int8 LM head is made from float weights, but lm_head\.weight is stored as ternary/);
  });
});

describe('cli: --lm-head int8', () => {
  let temp: ReturnType<typeof makeTempDir>;
  let tpk: string;
  before(async () => {
    temp = makeTempDir();
    tpk = await packFixture('bitnet-tiny', temp.dir);
  });
  after(() => temp.cleanup());

  it('generate and eval run with it and say so (JSON and stderr)', () => {
    const gen = runCli(['generate', fixtureDir('tinystories-656K'), '--prompt', 'Once upon a time', '-n', '8', '--lm-head', 'int8', '--json']);
    assert.equal(gen.code, 0, gen.stderr);
    const g = JSON.parse(gen.stdout);
    assert.equal(g.lmHead, 'int8');
    assert.equal(g.ids.length, 8);
    const plain = runCli(['generate', tpk, '--prompt', 'Once upon a time', '-n', '4', '--lm-head', 'int8']);
    assert.equal(plain.code, 0, plain.stderr);
    assert.match(plain.stderr, /int8 LM head/);
    const ev = runCli(['eval', tpk, '--text', textFixture('tinystories_sample.txt'), '--ctx', '256', '--max-tokens', '256', '--lm-head', 'int8', '--json']);
    assert.equal(ev.code, 0, ev.stderr);
    assert.equal(JSON.parse(ev.stdout).lmHead, 'int8');
    const evFloat = runCli(['eval', tpk, '--text', textFixture('tinystories_sample.txt'), '--ctx', '256', '--max-tokens', '256', '--json']);
    assert.equal(JSON.parse(evFloat.stdout).lmHead, 'float');
    assert.notEqual(JSON.parse(ev.stdout).meanNll, JSON.parse(evFloat.stdout).meanNll);
    const bad = runCli(['eval', tpk, '--text', textFixture('tinystories_sample.txt'), '--lm-head', 'int4']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /Expected --lm-head=int4 to be one of: float, int8/);
  });

  it('validate applies it to the packed model only and records it in the JSON, the summary and the report', () => {
    const report = path.join(temp.dir, 'report.md');
    const r = runCli(['validate', fixtureDir('bitnet-tiny'), tpk, '--text', textFixture('tinystories_sample.txt'), '--ctx', '256', '--max-tokens', '256',
      '--new-tokens', '4', '--lm-head', 'int8', '--report', report, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.equal(out.original.lmHead, 'float');
    assert.equal(out.packed.lmHead, 'int8');
    assert.ok(out.metrics.klMean > 0, 'the int8 head is not the float head');
    const md = readFileSync(report, 'utf8');
    assert.match(md, /\(packed, int8 LM head\)/);
    assert.match(md, /the packed model's output layer ran in int8/);
    assert.match(md, /--max-kl [\d.]+ --lm-head int8`/);
    const text = runCli(['validate', fixtureDir('bitnet-tiny'), tpk, '--text', textFixture('tinystories_sample.txt'), '--ctx', '256', '--max-tokens', '256',
      '--new-tokens', '0', '--lm-head', 'int8']);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /LM head\s+original float, packed int8/);
    const plain = runCli(['validate', fixtureDir('bitnet-tiny'), tpk, '--text', textFixture('tinystories_sample.txt'), '--ctx', '256', '--max-tokens', '256', '--new-tokens', '0', '--json']);
    assert.equal(JSON.parse(plain.stdout).packed.lmHead, 'float');
    assert.equal(JSON.parse(plain.stdout).metrics.klMean, 0, 'bitnet-tiny packs losslessly with its float head');
  });
});
