/** Next-token choice: greedy, seeded sampling, top-k / top-p cuts, option checks; and generate() on top of it. */
import assert from 'node:assert/strict';
import { TritpackError } from '../../src/errors.js';
import { loadModel, type LoadedModel } from '../../src/runtime-min/index.js';
import { argmax, createSampler } from '../../src/runtime-min/sampling.js';
import { fixtureDir, loadReference } from '../support/fixtures.js';

/** These checks define the reference backend's correctness (other backends have their own test files). */
const REFERENCE = { backend: 'reference' };

const logits = Float32Array.from([1, 3, 3, 0, 2.5]);

describe('runtime: sampling', () => {
  it('greedy is argmax with the lowest id on a tie (torch.argmax)', () => {
    assert.equal(argmax(logits), 1);
    assert.equal(createSampler({ temperature: 0 })(logits), 1);
  });

  it('the same seed gives the same draws; top-k 1 and a tiny top-p reduce to greedy', () => {
    const draw = (seed: number) => { const s = createSampler({ temperature: 1, seed }); return Array.from({ length: 50 }, () => s(logits)); };
    assert.deepEqual(draw(7), draw(7));
    assert.notDeepEqual(draw(7), draw(8));
    assert.ok(new Set(draw(7)).size > 2);
    const k1 = createSampler({ temperature: 1, topK: 1, seed: 1 });
    const p0 = createSampler({ temperature: 1, topP: 1e-9, seed: 1 });
    for (let i = 0; i < 20; i++) { assert.equal(k1(logits), 1); assert.equal(p0(logits), 1); }
  });

  it('top-k 3 draws only among the three largest; frequencies follow the softmax', () => {
    const s = createSampler({ temperature: 1, topK: 3, seed: 3 });
    const counts = new Map<number, number>();
    for (let i = 0; i < 6000; i++) { const id = s(logits); counts.set(id, (counts.get(id) ?? 0) + 1); }
    assert.deepEqual([...counts.keys()].sort(), [1, 2, 4]);
    const z = 2 * Math.exp(3) + Math.exp(2.5);
    assert.ok(Math.abs(counts.get(4)! / 6000 - Math.exp(2.5) / z) < 0.03);
  });

  it('top-p keeps the smallest set reaching p', () => {
    // softmax of [3, 3, 2.5, 1, 0]: the two 3s hold ≈ 0.67, so p = 0.6 keeps ids 1 and 2 only.
    const s = createSampler({ temperature: 1, topP: 0.6, seed: 5 });
    const seen = new Set(Array.from({ length: 400 }, () => s(logits)));
    assert.deepEqual([...seen].sort(), [1, 2]);
  });

  it('rejects out-of-range options', () => {
    assert.throws(() => createSampler({ temperature: -1 }), TritpackError);
    assert.throws(() => createSampler({ temperature: 1, topK: 0 }), /top-k must be a positive integer/);
    assert.throws(() => createSampler({ temperature: 1, topP: 1.5 }), /top-p must be in \(0, 1\]/);
  });

  describe('generate()', () => {
    let model: LoadedModel;
    before(async () => { model = await loadModel(fixtureDir('tinystories-656K'), REFERENCE); });

    it('sampled generation is reproducible with a seed and stops at EOS when asked', () => {
      const prompt = loadReference('tinystories-656K').float32.greedy64_from_prompt.prompt_ids;
      const a = model.generate(prompt, { maxNewTokens: 24, temperature: 0.9, topK: 40, topP: 0.95, seed: 11 });
      assert.deepEqual(model.generate(prompt, { maxNewTokens: 24, temperature: 0.9, topK: 40, topP: 0.95, seed: 11 }), a);
      assert.equal(a.length, 24);
      // Greedy from a long story runs into <|end_story|> (2); with stopAtEos the result ends there.
      const long = model.generate(prompt, { maxNewTokens: 400, stopAtEos: true });
      assert.equal(long.at(-1), 2);
      assert.ok(long.length < 400);
      assert.deepEqual(model.generate(prompt, { maxNewTokens: long.length }), long);
    });
  });
});
