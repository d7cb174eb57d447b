/** The reference kernels on hand-computed cases: int8 activation rounding, ternary and float matmuls, attention, norms. */
import assert from 'node:assert/strict';
import { fromFloat32 } from '../../src/formats/dtype.js';
import { packTernary } from '../../src/formats/ternary.js';
import type { TernaryWeightSource } from '../../src/runtime-min/backend.js';
import { ReferenceBackend } from '../../src/runtime-min/reference-backend.js';

const be = new ReferenceBackend();
const f32 = (xs: number[]) => Float32Array.from(xs);

/** 2 × 6 ternary weight, two groups of 3 columns per row (scales row-major: r0g0, r0g1, r1g0, r1g1). */
const CODES = Int8Array.from([1, -1, 0, 1, 1, -1, /**/ 0, 0, 1, -1, 1, 1]);
function ternary(packing: 't158' | 't2', granularity: TernaryWeightSource['granularity'], scales: number[]): TernaryWeightSource {
  return { kind: 'ternary', name: 'w', rows: 2, cols: 6, packing, packed: packTernary(packing, CODES), scales: f32(scales), granularity, groupSize: 3 };
}

describe('runtime: reference backend kernels', () => {
  it('quantizes activations per token: s = 127/max|x|, round half to even, zero rows stay zero', () => {
    const q = be.quantizeActivations(f32([127, 2.5, -2.5, 3.5, -0.5, 0.5, /**/ 0.5, -1, 0.25, 2, 0, 0, /**/ 0, 0, 0, 0, 0, 0]), 3, 6);
    assert.deepEqual([...q.q], [127, 2, -2, 4, 0, 0, /**/ 32, -64, 16, 127, 0, 0, /**/ 0, 0, 0, 0, 0, 0]);
    assert.deepEqual([...q.scales], [1, 63.5, Math.fround(127 / Math.fround(1e-5))]);
  });

  it('ternary × float activations with per-group scales, any packing', () => {
    const x = f32([1, 2, 3, 4, 5, 6, /**/ -1, 0.5, 0, 2, -2, 1]);
    // token 0: row 0 = 2·(1−2) + 3·(4+5−6) = 7, row 1 = 5·3 + 7·(−4+5+6) = 64
    // token 1: row 0 = 2·(−1−0.5) + 3·(2−2−1) = −6, row 1 = 5·0 + 7·(−2−2+1) = −21
    for (const packing of ['t158', 't2'] as const) {
      const w = be.prepare(ternary(packing, 'group', [2, 3, 5, 7]));
      assert.deepEqual([...be.matmul(w, x, 2)], [7, 64, -6, -21]);
      assert.deepEqual([...be.matmul(w, x, 2, f32([0.5, -1]))], [7.5, 63, -5.5, -22]);
    }
    const perRow = be.prepare(ternary('t2', 'channel', [2, 3]));
    assert.deepEqual([...be.matmul(perRow, x, 1)], [2 * (1 - 2 + 4 + 5 - 6), 3 * (3 - 4 + 5 + 6)]);
    assert.equal(perRow.byteLength, 2 * 2 + 2 * 4); // two 6-code rows at 2 bits (padded to bytes) + 2 scales
  });

  it('ternary × int8 activations: exact integer sums, one scale per group, divided by s_x', () => {
    const w = be.prepare(ternary('t158', 'group', [2, 3, 5, 7]));
    const q = be.quantizeActivations(f32([127, -127, 0, 10, 20, -30]), 1, 6); // s_x = 1: q = x
    // row 0 = 2·(127+127) + 3·(10+20+30) = 688, row 1 = 5·0 + 7·(−10+20−30) = −140
    assert.deepEqual([...be.matmulQ8(w, q)], [688, -140]);
    const half = be.quantizeActivations(f32([63.5, -63.5, 0, 5, 10, -15]), 1, 6); // s_x = 2: q = 2x
    assert.deepEqual([...be.matmulQ8(w, half, f32([1, 1]))], [345, -69]);
  });

  it('gathers embedding rows from float (f16 bytes) and ternary weights', () => {
    const float = be.prepare({ kind: 'float', name: 'e', rows: 3, cols: 2, dtype: 'F16', bytes: fromFloat32(f32([1, 2, 3, 4, 5, 6]), 'F16') });
    assert.deepEqual([...be.gatherRows(float, [2, 0])], [5, 6, 1, 2]);
    assert.deepEqual([...be.matmul(float, f32([1, -1]), 1)], [-1, -1, -1]);
    const tern = be.prepare(ternary('t2', 'group', [2, 3, 5, 7]));
    assert.deepEqual([...be.gatherRows(tern, [1])], [0, 0, 5, -7, 7, 7]);
  });

  it('RMSNorm, rotate-half RoPE and the gated activations', () => {
    const n = be.rmsnorm(f32([3, 4]), 1, 2, f32([1, 2]), 0);
    assert.ok(Math.abs(n[0]! - 3 / Math.sqrt(12.5)) < 1e-6 && Math.abs(n[1]! - 8 / Math.sqrt(12.5)) < 1e-6);
    const x = f32([1, 0, 0, 1]); // one token, head_dim 4: pairs (x0, x2) and (x1, x3)
    be.rope(x, 1, 1, 4, f32([0, 1]), f32([1, 0])); // angle π/2 on pair 0, 0 on pair 1
    assert.deepEqual([...x], [0, 0, 1, 1]);
    const silu = be.gatedActivation(f32([0, 2]), f32([5, 3]), 'silu');
    assert.equal(silu[0], 0);
    assert.ok(Math.abs(silu[1]! - 3 * 2 / (1 + Math.exp(-2))) < 1e-6);
    assert.deepEqual([...be.gatedActivation(f32([-2, 3]), f32([5, 2]), 'relu2')], [0, 18]);
  });

  it('attention is causal, maps query heads onto KV heads (GQA) and honours a sliding window', () => {
    // 3 positions, 1 KV head shared by 2 query heads, head_dim 2; zero queries give uniform weights.
    const cache = { keys: f32([1, 0, 0, 1, 1, 1]), values: f32([3, 0, 6, 3, 0, 9]), length: 3 };
    const q = new Float32Array(3 * 2 * 2);
    const shape = { numHeads: 2, numKvHeads: 1, headDim: 2, slidingWindow: null };
    const out = be.attention(q, 3, cache, shape);
    // position 0 sees v0; 1 sees mean(v0, v1); 2 sees mean(v0, v1, v2) — for both heads.
    assert.deepEqual([...out], [3, 0, 3, 0, 4.5, 1.5, 4.5, 1.5, 3, 4, 3, 4]);
    const windowed = be.attention(q, 3, cache, { ...shape, slidingWindow: 2 });
    assert.deepEqual([...windowed.subarray(8)], [3, 6, 3, 6]); // position 2 sees v1, v2 only
    // A query aligned with key 0 weighs it by e^(1/√2) against 1 for the others.
    const q1 = f32([1, 0, 0, 0]);
    const one = be.attention(q1, 1, { ...cache, length: 2 }, shape);
    const w0 = Math.exp(1 / Math.sqrt(2));
    assert.ok(Math.abs(one[0]! - (3 * w0 + 6) / (w0 + 1)) < 1e-5 && Math.abs(one[2]! - 4.5) < 1e-6);
  });
});
