/**
 * Packed models: checkpoints converted to .tpk by tritpack's converter, then run from their packed
 * ternary codes, against the references' ternarized figures (tinystories-656K and llama-256
 * `ternary_absmean`) and transformers' BitNet forward (bitnet-tiny).
 */
import assert from 'node:assert/strict';
import { closeSync, copyFileSync, openSync, readSync, writeSync } from 'node:fs';
import path from 'node:path';
import { convertCheckpoint } from '../../src/converters/convert.js';
import { TpkFile, updateTpkHeader } from '../../src/formats/tpk.js';
import { loadModel, type LoadedModel } from '../../src/runtime-min/index.js';
import { fixtureDir, loadReference, makeTempDir } from '../support/fixtures.js';
import { commonPrefix, compareWindows, maxAbsDiff, meanNll, top1 } from '../support/runtime-helpers.js';

/** These checks define the reference backend's correctness (other backends have their own test files). */
const REFERENCE = { backend: 'reference' };

const V = 2048;

describe('runtime: models converted to .tpk', () => {
  let tmp: { dir: string; cleanup: () => void };
  const tpk = (name: string) => path.join(tmp.dir, `${name}.tpk`);

  before(async () => {
    tmp = makeTempDir('tritpack-runtime-tpk-');
    await convertCheckpoint({ input: fixtureDir('tinystories-656K'), output: tpk('tinystories-t158'), packing: 't158' });
    await convertCheckpoint({ input: fixtureDir('tinystories-656K'), output: tpk('tinystories-t2'), packing: 't2' });
    await convertCheckpoint({ input: fixtureDir('bitnet-tiny'), output: tpk('bitnet-tiny') });
    // llama-256's reference ternarizes with the paper's W/(γ+1e-5), which differs from WeightQuant on some codes.
    await convertCheckpoint({ input: fixtureDir('llama-256'), output: tpk('llama-256'), formula: 'paper' });
  });
  after(() => tmp.cleanup());

  describe('tinystories-656K ternarized (absmean per tensor)', () => {
    const ref = loadReference('tinystories-656K');
    const ta = ref.ternary_absmean.float32;
    let model: LoadedModel;
    let sample: Float32Array;
    before(async () => {
      model = await loadModel(tpk('tinystories-t158'), REFERENCE);
      sample = model.logits(ref.tokenizer.sample_ids_first512);
    });

    it('loads from the .tpk with its embedded config and tokenizer, codes kept packed', () => {
      assert.equal(model.source.kind, 'tpk');
      assert.deepEqual(model.tokenizer.encode(ref.tokenizer.prompt, { addSpecialTokens: false }), ref.tokenizer.prompt_ids_add_special_tokens_false);
      // 393,216 ternary codes at 2 bits + the float32 tied embedding (2048 × 128).
      assert.ok(model.weightBytes <= 2048 * 128 * 4 + 393216 / 4 + 1024, `${model.weightBytes}`);
    });

    it('mean NLL on both texts is within 1e-4 of ternary_absmean (issue bound: 1e-3)', () => {
      const nll = meanNll(sample, ref.tokenizer.sample_ids_first512, V);
      assert.ok(Math.abs(nll - ta.nll.tinystories_sample.mean_nll) < 1e-4, `${nll}`);
      const sh = ref.tokenizer.shakespeare_ids_first512;
      const nllSh = meanNll(model.logits(sh), sh, V);
      assert.ok(Math.abs(nllSh - ta.nll.tinyshakespeare.mean_nll) < 1e-4, `${nllSh}`);
    });

    it('top-1 of the first 128 positions, early logits and greedy 64 match the ternarized reference', () => {
      assert.deepEqual(top1(sample, V, 128), ta.top1_first128_sample);
      assert.ok(maxAbsDiff(sample.subarray(0, 16), ta.logits_sample.pos0_first16) < 1e-3);
      assert.ok(maxAbsDiff(sample.subarray(V, V + 16), ta.logits_sample.pos1_first16) < 1e-3);
      const g = ta.greedy64_from_prompt;
      assert.equal(commonPrefix(model.generate(g.prompt_ids, { maxNewTokens: 64 }), g.generated_ids), 64);
    });

    it('against the original: mean KL and top-1 agreement on both 512-token windows within 1% of the reference figures', async () => {
      const original = await loadModel(fixtureDir('tinystories-656K'), REFERENCE);
      const vs = ref.ternary_absmean.float32.vs_original_float32;
      const sh = ref.tokenizer.shakespeare_ids_first512;
      for (const [ids, packed, want] of [[ref.tokenizer.sample_ids_first512, sample, vs.tinystories_sample_512], [sh, model.logits(sh), vs.tinyshakespeare_512]]) {
        const got = compareWindows(original.logits(ids), packed, V);
        assert.ok(Math.abs(got.meanKl - want.mean_kl) <= 0.01 * want.mean_kl, `KL ${got.meanKl} vs ${want.mean_kl}`);
        assert.ok(Math.abs(got.top1Agreement - want.top1_agreement) <= 0.01, `top-1 ${got.top1Agreement} vs ${want.top1_agreement}`);
      }
    });

    it('t2 packing gives exactly the same logits as t158', async () => {
      const t2 = await loadModel(tpk('tinystories-t2'), REFERENCE);
      assert.equal(maxAbsDiff(t2.logits(ref.tokenizer.sample_ids_first512.slice(0, 64)), sample.subarray(0, 64 * V)), 0);
    });
  });

  it('bitnet-tiny converted to .tpk: NLL within 1e-4, greedy 32 equal, position-0 logits within 1e-3', async () => {
    const ref = loadReference('bitnet-tiny');
    const r = ref.reference_float32;
    const model = await loadModel(tpk('bitnet-tiny'), REFERENCE);
    const logits = model.logits(ref.sample_ids_first256);
    assert.ok(Math.abs(meanNll(logits, ref.sample_ids_first256, V) - r.nll.mean_nll) < 1e-4);
    assert.ok(maxAbsDiff(logits.subarray(0, 32), r.logits_pos0_first32) < 1e-3);
    assert.deepEqual(model.generate([1], { maxNewTokens: 32 }), r.greedy32_from_bos.generated_ids);
  });

  it('llama-256 (untied lm_head, f16) converted to .tpk: NLL within 1e-4 of its ternary_absmean, position-0 logits within 1e-3', async () => {
    const ref = loadReference('llama-256');
    const ta = ref.ternary_absmean.float32;
    const model = await loadModel(tpk('llama-256'), REFERENCE);
    const logits = model.logits(ref.sample_ids_first256);
    assert.ok(Math.abs(meanNll(logits, ref.sample_ids_first256, V) - ta.nll.mean_nll) < 1e-4);
    assert.ok(maxAbsDiff(logits.subarray(0, 32), ta.logits_pos0_first32) < 1e-3);
  });

  it('a .tpk with one flipped byte in a tensor is refused (hash mismatch)', async () => {
    const file = tpk('corrupted');
    copyFileSync(tpk('tinystories-t158'), file);
    const entry = TpkFile.open(file);
    const offset = entry.header.tensors.find((t) => t.name === 'model.layers.1.mlp.down_proj.weight')!.data.offset + 3;
    entry.close();
    const fd = openSync(file, 'r+');
    const byte = Buffer.alloc(1);
    readSync(fd, byte, 0, 1, offset);
    byte[0] ^= 0x01;
    writeSync(fd, byte, 0, 1, offset);
    closeSync(fd);
    await assert.rejects(loadModel(file, REFERENCE), (err: Error) => err.message.startsWith(file) && /sha256|hash/i.test(err.message));
  });

  it('a .tpk that embeds no tokenizer.json is refused, naming the file', async () => {
    const file = tpk('no-tokenizer');
    copyFileSync(tpk('tinystories-t2'), file);
    const header = TpkFile.open(file);
    const { 'tokenizer.json': _, ...files } = header.header.files;
    header.close();
    updateTpkHeader(file, { files });
    await assert.rejects(loadModel(file, REFERENCE), { message: `${file}: the .tpk embeds no tokenizer.json` });
  });
});
