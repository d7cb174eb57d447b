/**
 * BitNet b1.58 (2B4T architecture) against transformers' W1.58A8 forward: bitnet-tiny (bf16 master
 * weights, ternarized at load like WeightQuant) and bitnet-tiny-packed (HF offline uint8 codes +
 * weight_scale). See fixtures/bitnet-tiny/SOURCE.md for why int8 activation rounding limits the
 * agreement to ~1e-5 in NLL and exactness at early positions.
 */
import assert from 'node:assert/strict';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fromFloat32 } from '../../src/formats/dtype.js';
import { SafetensorsFile, writeSafetensors, type SafetensorsEntry } from '../../src/formats/safetensors.js';
import { loadModel, type LoadedModel } from '../../src/runtime-min/index.js';
import { fixtureDir, loadReference, makeTempDir, type FixtureName } from '../support/fixtures.js';
import { maxAbsDiff, meanNll, top1 } from '../support/runtime-helpers.js';

/** These checks define the reference backend's correctness (other backends have their own test files). */
const REFERENCE = { backend: 'reference' };

const V = 2048;
/** Ternary parameters of bitnet-tiny: 2 layers × (q,o 256×256; k,v 128×256; gate,up 768×256; down 256×768). */
const TERNARY_PARAMS = 2 * (2 * 256 * 256 + 2 * 128 * 256 + 3 * 768 * 256);

for (const fixture of ['bitnet-tiny', 'bitnet-tiny-packed'] as FixtureName[]) {
  describe(`runtime: ${fixture} (HF dir, transformers W1.58A8 reference)`, () => {
    const ref = loadReference(fixture);
    const r = ref.reference_float32;
    const ids: number[] = ref.sample_ids_first256;
    let model: LoadedModel;
    let logits: Float32Array;

    before(async () => {
      model = await loadModel(fixtureDir(fixture), REFERENCE);
      logits = model.logits(ids);
    });
    after(() => model.close());

    it('reads the BitNet config (transformers 5 rope_parameters, quantization_config)', () => {
      const c = model.config;
      assert.equal(c.architecture, 'bitnet');
      assert.equal(c.ropeTheta, 500000);
      assert.equal(c.hiddenAct, 'relu2');
      assert.deepEqual(c.bitnetQuantization, { linearClass: 'autobitlinear', mode: fixture === 'bitnet-tiny' ? 'online' : 'offline' });
    });

    it('keeps the projections as 2-bit codes, not float weights', () => {
      const embedBytes = V * 256 * 4;
      assert.ok(model.weightBytes <= embedBytes + TERNARY_PARAMS / 4 + 1024, `${model.weightBytes} bytes`);
    });

    it('mean NLL over the 256-id window is within 1e-4 of the reference', () => {
      const nll = meanNll(logits, ids, V);
      assert.ok(Math.abs(nll - r.nll.mean_nll) < 1e-4, `${nll} vs ${r.nll.mean_nll}`);
    });

    it('position-0 logits are within 1e-3 (they are exact to ~1e-6 before any rounding flip)', () => {
      assert.ok(maxAbsDiff(logits.subarray(0, 32), r.logits_pos0_first32) < 1e-3);
    });

    it('top-1 agreement over the first 64 positions is at least 0.95', () => {
      const mine = top1(logits, V, 64);
      const agree = mine.filter((id, i) => id === r.top1_first64[i]).length;
      assert.ok(agree / 64 >= 0.95, `${agree}/64`);
    });

    it('greedy 32 from BOS equals the reference ids', () => {
      const g = r.greedy32_from_bos;
      assert.deepEqual(model.generate(g.prompt_ids, { maxNewTokens: 32, temperature: 0 }), g.generated_ids);
    });

    if (fixture === 'bitnet-tiny') {
      it('is the quantized forward, not the plain nn.Linear one (unquantized_contrast)', () => {
        const nll = meanNll(logits, ids, V);
        assert.ok(Math.abs(nll - ref.unquantized_contrast.nll.mean_nll) > 1e-2);
      });
    } else {
      it('agrees with bitnet-tiny\'s reference within the stated tolerance (bf16 weight_scale rounding)', () => {
        const other = loadReference('bitnet-tiny').reference_float32;
        assert.ok(Math.abs(meanNll(logits, ids, V) - other.nll.mean_nll) < 1e-3);
        assert.deepEqual(model.generate([1], { maxNewTokens: 32 }), other.greedy32_from_bos.generated_ids);
      });
    }
  });
}

describe('runtime: HF packed BitNet with linear_class "bitlinear" (weight_scale = s = 1/γ, divides)', () => {
  let tmp: { dir: string; cleanup: () => void };
  before(() => { tmp = makeTempDir('tritpack-runtime-bitlinear-'); });
  after(() => tmp.cleanup());

  it('matches bitnet-tiny\'s reference as transformers\' BitLinear does (NLL within 1e-4, greedy equal)', async () => {
    // The generator measured this variant: float32 s per tensor, BitLinear.forward → NLL −1.0e-5 from bitnet-tiny's reference.
    const src = fixtureDir('bitnet-tiny-packed');
    const packedRef = loadReference('bitnet-tiny-packed');
    const st = SafetensorsFile.open(path.join(src, 'model.safetensors'));
    const entries: SafetensorsEntry[] = st.tensors.map((t) => {
      if (!t.name.endsWith('.weight_scale')) return { name: t.name, dtype: t.dtype, shape: t.shape, data: st.readBytes(t.name) };
      const s = packedRef.per_tensor[t.name.replace(/_scale$/, '')].s_f32;
      return { name: t.name, dtype: 'F32', shape: [1], data: fromFloat32(Float32Array.of(s), 'F32') };
    });
    st.close();
    writeSafetensors(path.join(tmp.dir, 'model.safetensors'), entries);
    for (const f of ['tokenizer.json', 'tokenizer_config.json', 'generation_config.json']) copyFileSync(path.join(src, f), path.join(tmp.dir, f));
    const config = JSON.parse(readFileSync(path.join(src, 'config.json'), 'utf8'));
    config.quantization_config.linear_class = 'bitlinear';
    writeFileSync(path.join(tmp.dir, 'config.json'), JSON.stringify(config));

    const ref = loadReference('bitnet-tiny');
    const model = await loadModel(tmp.dir, REFERENCE);
    assert.deepEqual(model.config.bitnetQuantization, { linearClass: 'bitlinear', mode: 'offline' });
    const logits = model.logits(ref.sample_ids_first256);
    assert.ok(Math.abs(meanNll(logits, ref.sample_ids_first256, V) - ref.reference_float32.nll.mean_nll) < 1e-4);
    assert.ok(maxAbsDiff(logits.subarray(0, 32), ref.reference_float32.logits_pos0_first32) < 1e-4);
    assert.deepEqual(model.generate([1], { maxNewTokens: 32 }), ref.reference_float32.greedy32_from_bos.generated_ids);
  });
});
