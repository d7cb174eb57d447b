/**
 * Attention/MLP biases, checked with an exact identity instead of a stored reference: attention
 * weights sum to 1, so a v_proj bias b adds b to every head's output and o_proj maps it to W_o·b;
 * an o_proj bias of −W_o·b cancels it. A model with those two biases must give the original logits.
 */
import assert from 'node:assert/strict';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fromFloat32 } from '../../src/formats/dtype.js';
import { SafetensorsFile, writeSafetensors, type SafetensorsEntry } from '../../src/formats/safetensors.js';
import { loadModel } from '../../src/runtime-min/index.js';
import { fixtureDir, loadReference, makeTempDir } from '../support/fixtures.js';
import { maxAbsDiff } from '../support/runtime-helpers.js';

/** These checks define the reference backend's correctness (other backends have their own test files). */
const REFERENCE = { backend: 'reference' };

const SRC = fixtureDir('tinystories-656K');

describe('runtime: attention and MLP biases', () => {
  let tmp: { dir: string; cleanup: () => void };
  before(() => { tmp = makeTempDir('tritpack-runtime-bias-'); });
  after(() => tmp.cleanup());

  it('v_proj bias b with o_proj bias −W_o·b (and zero q/k/MLP biases) leaves the logits unchanged', async () => {
    const st = SafetensorsFile.open(path.join(SRC, 'model.safetensors'));
    const entries: SafetensorsEntry[] = st.tensors.map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape, data: st.readBytes(t.name) }));
    const bias = (name: string, values: Float32Array) => entries.push({ name, dtype: 'F32', shape: [values.length], data: fromFloat32(values, 'F32') });
    for (let l = 0; l < 2; l++) {
      const p = `model.layers.${l}`;
      const b = Float32Array.from({ length: 64 }, (_, i) => Math.sin(i + l)); // v_proj: 4 KV heads × 16
      const wo = st.readFloat32(`${p}.self_attn.o_proj.weight`); // [128, 128]; GQA: head h reads KV head h/2
      const ob = new Float32Array(128);
      for (let r = 0; r < 128; r++) {
        let s = 0;
        for (let c = 0; c < 128; c++) s += wo[r * 128 + c]! * b[Math.floor(c / 32) * 16 + (c % 16)]!;
        ob[r] = -s;
      }
      bias(`${p}.self_attn.q_proj.bias`, new Float32Array(128));
      bias(`${p}.self_attn.k_proj.bias`, new Float32Array(64));
      bias(`${p}.self_attn.v_proj.bias`, b);
      bias(`${p}.self_attn.o_proj.bias`, ob);
      for (const [name, n] of [['gate', 384], ['up', 384], ['down', 128]] as const) bias(`${p}.mlp.${name}_proj.bias`, new Float32Array(n));
    }
    st.close();
    writeSafetensors(path.join(tmp.dir, 'model.safetensors'), entries);
    for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(path.join(SRC, f), path.join(tmp.dir, f));
    const config = JSON.parse(readFileSync(path.join(SRC, 'config.json'), 'utf8'));
    writeFileSync(path.join(tmp.dir, 'config.json'), JSON.stringify({ ...config, attention_bias: true, mlp_bias: true }));

    const ids = loadReference('tinystories-656K').tokenizer.sample_ids_first512.slice(0, 96);
    const withBias = await loadModel(tmp.dir, REFERENCE);
    const original = await loadModel(SRC, REFERENCE);
    assert.ok(maxAbsDiff(withBias.logits(ids), original.logits(ids)) < 1e-4);

    // The biases are really applied: dropping the o_proj correction changes the output.
    writeFileSync(path.join(tmp.dir, 'config.json'), JSON.stringify({ ...config, model_type: 'qwen2' })); // q/k/v biases, no o_proj bias
    const qwen = await loadModel(tmp.dir, REFERENCE);
    assert.ok(maxAbsDiff(qwen.logits(ids), original.logits(ids)) > 1e-2);
  });
});
