/** A model the runtime cannot run gets one clear line naming what is wrong and what is supported. */
import assert from 'node:assert/strict';
import { copyFileSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { TritpackError } from '../../src/errors.js';
import { SafetensorsFile, writeSafetensors } from '../../src/formats/safetensors.js';
import { loadModel } from '../../src/runtime-min/index.js';
import { fixtureDir, makeTempDir } from '../support/fixtures.js';

const SRC = fixtureDir('tinystories-656K');
const FILES = ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'model.safetensors'];

/** A copy of tinystories-656K in a temp dir, with the config patched and tensors optionally dropped. */
function variant(dir: string, configPatch: Record<string, unknown> = {}, dropTensors: string[] = []): string {
  for (const f of FILES) copyFileSync(path.join(SRC, f), path.join(dir, f));
  const config = JSON.parse(readFileSync(path.join(SRC, 'config.json'), 'utf8'));
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...config, ...configPatch }));
  if (dropTensors.length > 0) {
    const st = SafetensorsFile.open(path.join(SRC, 'model.safetensors'));
    const entries = st.tensors.filter((t) => !dropTensors.includes(t.name))
      .map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape, data: st.readBytes(t.name) }));
    st.close();
    writeSafetensors(path.join(dir, 'model.safetensors'), entries);
  }
  return dir;
}

async function loadError(dir: string, options = {}): Promise<TritpackError> {
  try {
    await loadModel(dir, options);
  } catch (err) {
    assert.ok(err instanceof TritpackError, `not a TritpackError: ${String(err)}`);
    assert.ok(!err.message.includes('\n'), 'one line');
    return err;
  }
  assert.fail('loadModel succeeded');
}

describe('runtime: load errors', () => {
  let tmp: { dir: string; cleanup: () => void };
  beforeEach(() => { tmp = makeTempDir('tritpack-runtime-'); });
  afterEach(() => tmp.cleanup());

  it('unknown architecture: names the model_type and lists the supported ones', async () => {
    const err = await loadError(variant(tmp.dir, { model_type: 'gpt_neox', architectures: ['GPTNeoXForCausalLM'] }));
    assert.match(err.message, /config.json: unsupported model_type "gpt_neox" .*supported model_type: llama, mistral, qwen2, bitnet/);
  });

  it('missing tensors: lists every one', async () => {
    const err = await loadError(variant(tmp.dir, {}, ['model.layers.1.mlp.up_proj.weight', 'model.norm.weight']));
    assert.match(err.message, /model.safetensors: missing 2 tensor\(s\) that a llama model with 2 layers needs: model.norm.weight, model.layers.1.mlp.up_proj.weight$/);
  });

  it('no embedding at all: names both acceptable tensors of a tied model', async () => {
    const err = await loadError(variant(tmp.dir, {}, ['lm_head.weight']));
    assert.match(err.message, /missing 1 tensor\(s\) .*: model.embed_tokens.weight \(or lm_head.weight, tied\)/);
  });

  it('untied model: needs both matrices (TinyStories stores only lm_head.weight, which is enough only when tied)', async () => {
    assert.match((await loadError(variant(tmp.dir, { tie_word_embeddings: false }))).message, /needs: model.embed_tokens.weight$/);
    assert.match((await loadError(variant(tmp.dir, { tie_word_embeddings: false }, ['lm_head.weight']))).message,
      /needs: model.embed_tokens.weight, lm_head.weight \(tie_word_embeddings is false\)$/);
  });

  it('bad shape: names the tensor, its shape and the expected one', async () => {
    const err = await loadError(variant(tmp.dir, { intermediate_size: 256 }));
    assert.match(err.message, /tensor model.layers.0.mlp.gate_proj.weight has shape \[384, 128\], expected \[256, 128\] from config \(hidden 128, heads 8\/4×16, intermediate 256, vocab 2048\)/);
  });

  it('a directory without tokenizer.json: names the directory', async () => {
    const dir = variant(tmp.dir);
    rmSync(path.join(dir, 'tokenizer.json'));
    const err = await loadError(dir);
    assert.equal(err.message, `${dir}: no tokenizer.json in the model directory (the runtime needs the model's tokenizer.json)`);
  });

  it('a directory without config.json, a missing path, an unknown backend', async () => {
    assert.match((await loadError(tmp.dir)).message, /no config.json/);
    assert.match((await loadError(path.join(tmp.dir, 'nope'))).message, /nope: no such model file or directory/);
    assert.match((await loadError(SRC, { backend: 'cuda' })).message, /^unknown backend "cuda"; available: .*\breference\b/);
  });
});
