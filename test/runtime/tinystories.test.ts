/**
 * tinystories-656K (a real trained Llama) against transformers' float32 reference: the runtime's
 * must-holds from issue 3, fed with the reference's own token ids through the public API.
 */
import assert from 'node:assert/strict';
import { loadModel, type LoadedModel } from '../../src/runtime-min/index.js';
import { fixtureDir, loadReference } from '../support/fixtures.js';
import { commonPrefix, maxAbsDiff, meanNll, top1 } from '../support/runtime-helpers.js';

/** These checks define the reference backend's correctness (other backends have their own test files). */
const REFERENCE = { backend: 'reference' };

describe('runtime: tinystories-656K (HF dir, float32 reference)', () => {
  const ref = loadReference('tinystories-656K');
  const f32 = ref.float32;
  let model: LoadedModel;
  let sampleLogits: Float32Array;
  const V = 2048;

  before(async () => {
    model = await loadModel(fixtureDir('tinystories-656K'), REFERENCE);
    sampleLogits = model.logits(ref.tokenizer.sample_ids_first512);
  });
  after(() => model.close());

  it('normalises the config (tied lm_head-only checkpoint, GQA 8/4, rope 10000)', () => {
    const c = model.config;
    assert.equal(c.architecture, 'llama');
    assert.deepEqual([c.vocabSize, c.hiddenSize, c.numLayers, c.numHeads, c.numKvHeads, c.headDim, c.maxPositions], [2048, 128, 2, 8, 4, 16, 512]);
    assert.equal(c.tieWordEmbeddings, true);
    assert.equal(c.bosTokenId, 1);
    assert.deepEqual(c.eosTokenIds, [2]);
    assert.equal(model.source.kind, 'hf-dir');
  });

  it('mean NLL over the 512-token sample window is within 1e-4 of float32', () => {
    const nll = meanNll(sampleLogits, ref.tokenizer.sample_ids_first512, V);
    assert.ok(Math.abs(nll - f32.nll.tinystories_sample.mean_nll) < 1e-4, `${nll} vs ${f32.nll.tinystories_sample.mean_nll}`);
  });

  it('mean NLL of the tokenizer.json ids is within 1e-4 of float32', () => {
    const ids = ref.tokenizer.tokenizer_json_vs_autotokenizer.sample_ids_first512_tokenizer_json;
    const nll = meanNll(model.logits(ids), ids, V);
    const want = f32.nll.tinystories_sample_tokenizer_json_ids.mean_nll;
    assert.ok(Math.abs(nll - want) < 1e-4, `${nll} vs ${want}`);
  });

  it('mean NLL over the Shakespeare window is within 1e-4 of float32', () => {
    const ids = ref.tokenizer.shakespeare_ids_first512;
    const nll = meanNll(model.logits(ids), ids, V);
    assert.ok(Math.abs(nll - f32.nll.tinyshakespeare.mean_nll) < 1e-4, `${nll} vs ${f32.nll.tinyshakespeare.mean_nll}`);
  });

  it('top-1 ids of the first 128 sample positions equal the reference', () => {
    assert.deepEqual(top1(sampleLogits, V, 128), f32.top1_first128_sample);
  });

  it('position-0 logits (full vocabulary) and positions 1–3 are within 1e-3', () => {
    const ls = f32.logits_sample;
    assert.ok(maxAbsDiff(sampleLogits.subarray(0, V), ls.pos0_full_vocab) < 1e-3);
    for (const p of [1, 2, 3]) {
      assert.ok(maxAbsDiff(sampleLogits.subarray(p * V, p * V + 16), ls[`pos${p}_first16`]) < 1e-3, `position ${p}`);
    }
  });

  it('greedy 64 from the prompt equals the reference at least up to the near-tie step', () => {
    const g = f32.greedy64_from_prompt;
    const streamed: number[] = [];
    const ids = model.generate(g.prompt_ids, { maxNewTokens: 64, temperature: 0 }, (id) => streamed.push(id));
    assert.equal(ids.length, 64);
    assert.deepEqual(streamed, ids);
    assert.ok(commonPrefix(ids, g.generated_ids) >= g.min_margin_step, `diverged at ${commonPrefix(ids, g.generated_ids)}`);
  });

  it('greedy from the doubled-BOS default-call prompt matches its reference too', () => {
    const g = f32.greedy64_from_prompt_default_call_ids;
    const ids = model.generate(g.prompt_ids, { maxNewTokens: 64 });
    assert.ok(commonPrefix(ids, g.generated_ids) >= g.min_margin_step);
  });

  it('the KV-cached session gives the batched prefill logits, token by token', () => {
    const ids: number[] = ref.tokenizer.sample_ids_first512.slice(0, 40);
    const session = model.createSession();
    session.feed(ids.slice(0, 16));
    for (let i = 16; i < ids.length; i++) {
      const last = session.feed([ids[i]!], { lastOnly: true });
      assert.ok(maxAbsDiff(last, sampleLogits.subarray(i * V, (i + 1) * V)) < 1e-5, `position ${i}`);
    }
    assert.equal(session.position, 40);
  });

  it('rejects empty input, out-of-vocabulary ids and windows beyond max_position_embeddings', () => {
    assert.throws(() => model.logits([]), /no input tokens/);
    assert.throws(() => model.logits([1, 2048]), /outside the vocabulary/);
    assert.throws(() => model.logits(new Array(513).fill(1)), /513 positions exceed the model's max_position_embeddings \(512\)/);
    assert.throws(() => model.generate([1], { maxNewTokens: 512 }), /exceed/);
  });
});
