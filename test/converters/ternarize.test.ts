import assert from 'node:assert/strict';
import { parseScaleGranularity, ternarizeAbsmean, ternarizeAbsmeanPacked, type AbsmeanFormula } from '../../src/converters/ternarize.js';
import { packTernary, unpackTernary } from '../../src/formats/ternary.js';
import { TritpackError } from '../../src/errors.js';
import { loadReference, type FixtureName } from '../support/fixtures.js';
import { f32Hex, readFixtureTensors, sha256Hex, type FixtureTensor } from '../support/ternarize-weights.js';

function countDiffs(a: Int8Array, b: Int8Array): number {
  let n = 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) n++;
  return n;
}

function ternarizeFixture(t: FixtureTensor, formula: AbsmeanFormula) {
  return ternarizeAbsmean(t.values, t.shape[0]!, t.shape[1]!, { kind: 'tensor' }, formula);
}

/** The reference's per-tensor records for the ternarized tensors of a fixture, with their weights. */
function fixtureCases(name: FixtureName, records: Record<string, any>): [string, any, FixtureTensor][] {
  const weights = readFixtureTensors(name, Object.keys(records));
  return Object.entries(records).map(([tensor, info]) => [tensor, info, weights.get(tensor)!]);
}

describe('converters/ternarize: fixtures computed by torch/transformers', () => {
  it('tinystories-656K: γ bits, codes sha256 and zero fraction of all 14 tensors (paper formula; reference formula identical here)', () => {
    const ref = loadReference('tinystories-656K');
    const cases = fixtureCases('tinystories-656K', ref.ternary_absmean.tensors);
    assert.equal(cases.length, 14);
    let float64GammaWouldDiffer = 0;
    for (const [name, info, w] of cases) {
      const paper = ternarizeFixture(w, 'paper');
      assert.equal(f32Hex(paper.scales[0]!), info.gamma_f32_hex, `${name} gamma`);
      if (info.gamma_from_float64_mean_rounded_to_f32 !== info.gamma) float64GammaWouldDiffer++;
      assert.equal(sha256Hex(paper.codes), info.codes_int8_rowmajor_sha256, `${name} codes`);
      assert.equal(paper.zeroFraction, info.frac_zero, `${name} zeros`);
      const reference = ternarizeFixture(w, 'reference');
      assert.equal(countDiffs(reference.codes, paper.codes), info.codes_differ_if_transformers_WeightQuant_formula, name);
    }
    // torch's float32 cascade sum, not a float64 sum, is what these γ record (SOURCE.md: 6 of 14 differ).
    assert.equal(float64GammaWouldDiffer, 6);
  });

  it('llama-256 (float16): γ bits and codes sha256 of all 14 tensors; formula differences per tensor', () => {
    const ref = loadReference('llama-256');
    const cases = fixtureCases('llama-256', ref.ternary_absmean.tensors);
    assert.equal(cases.length, 14);
    let total = 0;
    for (const [name, info, w] of cases) {
      const paper = ternarizeFixture(w, 'paper');
      assert.equal(f32Hex(paper.scales[0]!), info.gamma_f32_hex, `${name} gamma`);
      assert.equal(sha256Hex(paper.codes), info.codes_int8_rowmajor_sha256, `${name} codes`);
      assert.equal(paper.zeroFraction, info.frac_zero, `${name} zeros`);
      const diffs = countDiffs(ternarizeFixture(w, 'reference').codes, paper.codes);
      assert.equal(diffs, info.codes_differ_if_transformers_WeightQuant_formula, `${name} formula diffs`);
      total += diffs;
    }
    assert.equal(total, 365);
  });

  it('bitnet-tiny (bf16): transformers WeightQuant codes, effective scales 1/s, and the 1017 paper-formula differences', () => {
    const ref = loadReference('bitnet-tiny');
    const records = Object.fromEntries(Object.entries(ref.tensors as Record<string, any>).filter(([, v]) => v.ternarized));
    const cases = fixtureCases('bitnet-tiny', records);
    assert.equal(cases.length, 14);
    const perTensor: Record<string, number> = {};
    let total = 0;
    for (const [name, info, w] of cases) {
      const reference = ternarizeFixture(w, 'reference');
      assert.equal(sha256Hex(reference.codes), info.codes_int8_rowmajor_sha256, `${name} codes`);
      assert.equal(reference.scales[0], info['effective_scale_f32 (=1/s)'], `${name} effective scale`);
      assert.equal(reference.gammas[0], info.gamma_mean_abs_f32, `${name} gamma`);
      assert.equal(reference.zeroFraction, info.frac_zero, `${name} zeros`);
      const paper = ternarizeFixture(w, 'paper');
      assert.equal(paper.scales[0], info.gamma_mean_abs_f32, `${name} gamma`);
      const diffs = countDiffs(reference.codes, paper.codes);
      assert.equal(diffs, info.codes_differ_under_paper_eps_formula, name);
      if (diffs) perTensor[name] = diffs;
      total += diffs;
    }
    assert.equal(total, 1017);
    assert.equal(total, ref.codes_differ_under_paper_eps_formula_total);
    assert.deepEqual(perTensor, {
      'model.layers.0.mlp.down_proj.weight': 407,
      'model.layers.0.mlp.up_proj.weight': 476,
      'model.layers.1.self_attn.o_proj.weight': 134,
    });
  });
});

describe('converters/ternarize: packed without a code array', () => {
  it('tinystories-656K: the packed codes unpack to the reference codes sha256, t158 and t2', () => {
    const ref = loadReference('tinystories-656K');
    for (const [name, info, w] of fixtureCases('tinystories-656K', ref.ternary_absmean.tensors)) {
      for (const packing of ['t158', 't2'] as const) {
        const p = ternarizeAbsmeanPacked(w.values, w.shape[0]!, w.shape[1]!, packing, { kind: 'tensor' }, 'paper');
        assert.equal(sha256Hex(unpackTernary(packing, p.data, w.values.length)), info.codes_int8_rowmajor_sha256, `${name} ${packing}`);
        assert.equal(f32Hex(p.scales[0]!), info.gamma_f32_hex, `${name} gamma`);
        assert.equal(p.zeros, info.count_zero, `${name} zeros`);
      }
    }
  });

  it('equals ternarizeAbsmean + packTernary when chunks split rows and scale groups (3 × 70001 weights)', () => {
    const rows = 3, cols = 70001; // > one 65540-code chunk per row, not a multiple of 4 or 5
    const w = Float32Array.from({ length: rows * cols }, (_, i) => Math.sin(i * 0.731) * (1 + (i % 13)));
    for (const granularity of [{ kind: 'tensor' }, { kind: 'channel' }, { kind: 'group', size: 7 }] as const) {
      for (const formula of ['reference', 'paper'] as const) {
        const whole = ternarizeAbsmean(w, rows, cols, granularity, formula);
        for (const packing of ['t158', 't2'] as const) {
          const p = ternarizeAbsmeanPacked(w, rows, cols, packing, granularity, formula);
          const what = `${granularity.kind} ${formula} ${packing}`;
          assert.ok(Buffer.from(p.data).equals(packTernary(packing, whole.codes)), what);
          assert.deepEqual(p.scales, whole.scales, what);
          assert.deepEqual(p.gammas, whole.gammas, what);
          assert.equal(p.zeros, whole.codes.filter((t) => t === 0).length, what);
          assert.equal(p.zeroFraction, whole.zeroFraction, what);
          assert.equal(p.relativeError, whole.relativeError, what);
        }
      }
    }
  });
});

describe('converters/ternarize: semantics', () => {
  it('hand-computed tensor: γ = 1.6, s = 0.625, codes, stored scale, zero fraction and relative error', () => {
    const w = Float32Array.of(1, -2, 0.4, 3);
    const r = ternarizeAbsmean(w, 2, 2);
    assert.deepEqual(Array.from(r.codes), [1, -1, 0, 1]);
    assert.deepEqual(Array.from(r.scales), [Math.fround(1.6)]);
    assert.deepEqual(Array.from(r.gammas), [Math.fround(1.6)]);
    assert.equal(r.zeroFraction, 0.25);
    const s = Math.fround(1.6);
    const expected = Math.sqrt(((1 - s) ** 2 + (-2 + s) ** 2 + 0.4 ** 2 + (3 - s) ** 2) / (1 + 4 + 0.16 + 9));
    assert.ok(Math.abs(r.relativeError - expected) < 1e-7, `${r.relativeError} vs ${expected}`);
  });

  it('exact halves round to even (torch.round), so ±0.5·γ gives 0 and ±1.5·γ clamps to ±1', () => {
    const w = Float32Array.of(0.5, -0.5, 1.5, -1.5); // γ = 1, s = 1
    for (const formula of ['reference', 'paper'] as const) {
      assert.deepEqual(Array.from(ternarizeAbsmean(w, 1, 4, { kind: 'tensor' }, formula).codes), [0, 0, 1, -1], formula);
    }
  });

  it('the two formulas differ exactly for γ/2 < |W| ≤ (γ + 1e-5)/2', () => {
    // γ ≈ 0.01 (sum 0.06 over 6): reference threshold 0.005, paper threshold 0.005005
    const w = Float32Array.of(0.0050025, -0.0050025, 0.0049, 0.0051, 0.025, 0.014995);
    assert.ok(Math.abs(ternarizeAbsmean(w, 1, 6).scales[0]! - 0.01) < 1e-8);
    assert.deepEqual(Array.from(ternarizeAbsmean(w, 1, 6, { kind: 'tensor' }, 'reference').codes), [1, -1, 0, 1, 1, 1]);
    assert.deepEqual(Array.from(ternarizeAbsmean(w, 1, 6, { kind: 'tensor' }, 'paper').codes), [0, 0, 0, 1, 1, 1]);
  });

  it('channel and group scales equal ternarizing each row / group on its own; the last group may be short', () => {
    const rows = 6, cols = 50;
    const w = Float32Array.from({ length: rows * cols }, (_, i) => Math.sin(i * 12.9898) * (1 + (i % 7)));
    for (const formula of ['reference', 'paper'] as const) {
      const channel = ternarizeAbsmean(w, rows, cols, { kind: 'channel' }, formula);
      const group = ternarizeAbsmean(w, rows, cols, { kind: 'group', size: 16 }, formula);
      assert.equal(channel.scales.length, rows);
      assert.equal(group.scales.length, rows * 4); // 16 + 16 + 16 + 2
      for (let r = 0; r < rows; r++) {
        const row = w.subarray(r * cols, (r + 1) * cols);
        const alone = ternarizeAbsmean(row, 1, cols, { kind: 'tensor' }, formula);
        assert.equal(channel.scales[r], alone.scales[0]);
        assert.deepEqual(channel.codes.subarray(r * cols, (r + 1) * cols), alone.codes);
        for (let g = 0; g < 4; g++) {
          const part = row.subarray(g * 16, Math.min(cols, g * 16 + 16));
          const aloneGroup = ternarizeAbsmean(part, 1, part.length, { kind: 'tensor' }, formula);
          assert.equal(group.scales[r * 4 + g], aloneGroup.scales[0], `row ${r} group ${g}`);
          assert.equal(group.gammas[r * 4 + g], aloneGroup.gammas[0]);
          assert.deepEqual(group.codes.subarray(r * cols + g * 16, r * cols + g * 16 + part.length), aloneGroup.codes);
        }
      }
      // Finer scales fit better than one scale for the whole tensor.
      const tensor = ternarizeAbsmean(w, rows, cols, { kind: 'tensor' }, formula);
      assert.ok(group.relativeError < tensor.relativeError);
    }
  });

  it('relative error and zero fraction agree with a direct float64 computation', () => {
    const rows = 40, cols = 33;
    const w = Float32Array.from({ length: rows * cols }, (_, i) => Math.cos(i * 0.37) * Math.exp((i % 11) / 5));
    const r = ternarizeAbsmean(w, rows, cols, { kind: 'group', size: 8 });
    let err = 0, norm = 0, zeros = 0;
    for (let i = 0; i < w.length; i++) {
      const scale = r.scales[Math.floor(i / cols) * 5 + Math.floor((i % cols) / 8)]!;
      err += (w[i]! - r.codes[i]! * scale) ** 2;
      norm += w[i]! ** 2;
      if (r.codes[i] === 0) zeros++;
    }
    assert.ok(Math.abs(r.relativeError - Math.sqrt(err / norm)) < 1e-12);
    assert.equal(r.zeroFraction, zeros / w.length);
  });

  it('degenerate input: all zeros, empty, NaN and Inf do not throw or hang', () => {
    const zero = ternarizeAbsmean(new Float32Array(64), 8, 8);
    assert.ok(zero.codes.every((t) => t === 0));
    assert.equal(zero.zeroFraction, 1);
    assert.equal(zero.relativeError, 0);
    assert.ok(Number.isFinite(zero.scales[0]!)); // 1/(1/1e-5): the clamp keeps s finite
    assert.equal(ternarizeAbsmean(new Float32Array(0), 0, 5).codes.length, 0);
    assert.equal(ternarizeAbsmean(new Float32Array(0), 3, 0, { kind: 'group', size: 4 }).scales.length, 0);
    const bad = ternarizeAbsmean(Float32Array.of(1, NaN, -Infinity, 2), 1, 4);
    assert.equal(bad.codes.length, 4);
  });

  it('rejects shapes that do not match and bad group sizes', () => {
    assert.throws(() => ternarizeAbsmean(new Float32Array(10), 3, 3), TritpackError);
    assert.throws(() => ternarizeAbsmean(new Float32Array(9), 3, 3, { kind: 'group', size: 0 }), /group size/);
  });

  it('parseScaleGranularity', () => {
    assert.deepEqual(parseScaleGranularity('tensor'), { kind: 'tensor' });
    assert.deepEqual(parseScaleGranularity('channel'), { kind: 'channel' });
    assert.deepEqual(parseScaleGranularity('group:128'), { kind: 'group', size: 128 });
    for (const bad of ['group:0', 'group:', 'group:-4', 'group:1.5', 'group:08', 'row', 'Tensor', 'group:99999999999']) {
      assert.throws(() => parseScaleGranularity(bad), (e: unknown) => e instanceof TritpackError && e.message.includes(`"${bad}"`), bad);
    }
  });
});
