/**
 * validate on real models against the fixtures' transformers references: tinystories-656K
 * ternarized by tritpack's converter must reproduce `ternary_absmean` (NLL, top-1 agreement, KL),
 * and a ternary-trained BitNet packs losslessly.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { convertCheckpoint } from '../../src/converters/convert.js';
import { loadModel, type LoadedModel } from '../../src/runtime-min/index.js';
import { compareModels, validateModels } from '../../src/validate/validate.js';
import { fixtureDir, loadReference, makeTempDir } from '../support/fixtures.js';

describe('validate on the fixtures (reference.json)', function () {
  let temp: ReturnType<typeof makeTempDir>;
  const models: LoadedModel[] = [];
  const load = async (p: string) => { const m = await loadModel(p); models.push(m); return m; };

  before(() => { temp = makeTempDir(); });
  after(() => { for (const m of models) m.close(); temp.cleanup(); });

  describe('tinystories-656K: post-training ternarization', () => {
    const ref = loadReference('tinystories-656K');
    const tern = ref.ternary_absmean;
    let original: LoadedModel;
    let packed: LoadedModel;
    let tpk: string;

    before(async () => {
      tpk = path.join(temp.dir, 'tinystories.tpk');
      await convertCheckpoint({ input: fixtureDir('tinystories-656K'), output: tpk });
      original = await load(fixtureDir('tinystories-656K'));
      packed = await load(tpk);
    });

    const cases = [
      ['sample', 'sample_ids_first512', 'tinystories_sample', 'tinystories_sample_512'],
      ['shakespeare', 'shakespeare_ids_first512', 'tinyshakespeare', 'tinyshakespeare_512'],
    ] as const;
    for (const [label, idsKey, nllKey, klKey] of cases) {
      it(`${label}: one 512-token window reproduces ternary_absmean (NLL 1e-3, top-1 and KL within 1 %)`, () => {
        const ids: number[] = ref.tokenizer[idsKey];
        const m = compareModels(original, packed, ids, { ctx: 512, stride: 512 });
        const want = tern.float32.vs_original_float32[klKey];
        assert.equal(m.scoredTokens, tern.float32.nll[nllKey].scored_tokens);
        assert.equal(m.positions, want.positions);
        assert.ok(Math.abs(m.original.meanNll - ref.float32.nll[nllKey].mean_nll) < 1e-4, `original NLL ${m.original.meanNll}`);
        assert.ok(Math.abs(m.packed.meanNll - tern.float32.nll[nllKey].mean_nll) < 1e-3, `packed NLL ${m.packed.meanNll} vs ${tern.float32.nll[nllKey].mean_nll}`);
        assert.ok(Math.abs(m.top1Agreement - want.top1_agreement) <= 0.01 * want.top1_agreement, `top-1 ${m.top1Agreement} vs ${want.top1_agreement}`);
        assert.ok(Math.abs(m.klMean - want.mean_kl) <= 0.01 * want.mean_kl, `KL ${m.klMean} vs ${want.mean_kl}`);
        assert.ok(Math.abs(m.klMax - want.max_kl) <= 0.01 * want.max_kl, `max KL ${m.klMax} vs ${want.max_kl}`);
      });
    }

    it('verdict FAIL with the default thresholds, with an honest "not ternary-trained" note and a recomputed per-tensor table', () => {
      const report = validateModels({ original, packed, text: { ids: ref.tokenizer.sample_ids_first512, label: 'sample ids' }, prompts: ['Once upon a time'], newTokens: 8 });
      assert.equal(report.verdict, 'FAIL');
      assert.equal(report.reasons.length, 3);
      assert.equal(report.ternaryTraining.ternaryTrained, false);
      assert.equal(report.continuations[0]!.divergence, 0);
      // γ and zero fractions from the original weights + packed codes against the reference's own.
      const rows = report.tensors.rows;
      assert.equal(rows.length, 14);
      for (const row of rows) {
        const t = tern.tensors[row.name];
        assert.ok(row.recomputed && !row.mismatch, row.name);
        assert.equal(Math.fround(row.gamma), t.gamma, `${row.name} γ`);
        assert.equal(row.zeroFraction, t.frac_zero, `${row.name} zero fraction`);
        assert.ok(row.relativeError! > 0.4 && row.relativeError! < 0.7, `${row.name} relative error ${row.relativeError}`);
      }
    });
  });

  describe('bitnet-tiny: a ternary-trained model packs losslessly', () => {
    it('HF dir vs its .tpk: ratio ≈ 1, top-1 ≈ 1, KL ≈ 0, PASS, relative errors recomputed', async () => {
      const ref = loadReference('bitnet-tiny');
      const tpk = path.join(temp.dir, 'bitnet-tiny.tpk');
      await convertCheckpoint({ input: fixtureDir('bitnet-tiny'), output: tpk });
      const original = await load(fixtureDir('bitnet-tiny'));
      const packed = await load(tpk);
      const ids: number[] = ref.sample_ids_first256;
      const report = validateModels({ original, packed, text: { ids, label: 'sample ids' }, ctx: 256, prompts: ['Once upon a time'], newTokens: 8 });
      const m = report.metrics;
      assert.equal(report.text.ctx, 256);
      assert.ok(Math.abs(m.original.meanNll - ref.reference_float32.nll.mean_nll) < 1e-3, `original NLL ${m.original.meanNll}`);
      // Both run the very same ternary codes and scales: identical up to float noise (in fact bit-identical today).
      assert.ok(Math.abs(m.pplRatio - 1) < 1e-6, `ratio ${m.pplRatio}`);
      assert.equal(m.top1Agreement, 1);
      assert.ok(m.klMean < 1e-9, `KL ${m.klMean}`);
      assert.equal(report.verdict, 'PASS');
      assert.equal(report.ternaryTraining.ternaryTrained, true);
      assert.equal(report.continuations[0]!.divergence, null);
      assert.equal(report.tensors.rows.length, 14);
      for (const row of report.tensors.rows) {
        assert.ok(row.recomputed && !row.mismatch, row.name);
        const t = ref.tensors[row.name];
        assert.ok(Math.abs(row.gamma - t.gamma_mean_abs_f32) <= 1e-6 * t.gamma_mean_abs_f32, `${row.name} γ ${row.gamma}`);
        assert.equal(row.zeroFraction, t.frac_zero, `${row.name} zero fraction`);
      }
    });
  });
});
