import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { TpkModel } from '../../src/converters/export-common.js';
import { exportGguf } from '../../src/converters/export-gguf.js';
import { openTensorSource } from '../../src/converters/import-source.js';
import { FormatError } from '../../src/errors.js';
import { GgmlType, GgufWriter, gguf } from '../../src/formats/gguf.js';
import { fixtureDir, textFixture } from '../support/fixtures.js';
import { convertedFixture, f16round, scratchDir, tpkFromSource } from '../support/interop-models.js';

/** Exports a converted fixture to GGUF, imports the GGUF back into a .tpk (both through the code under test). */
async function roundTrip(fixture: 'llama-256' | 'bitnet-tiny' | 'tinystories-656K', type: 'tq1_0' | 'tq2_0') {
  const original = await convertedFixture(fixture);
  const ggufPath = path.join(scratchDir(), `${fixture}-${type}-import.gguf`);
  exportGguf({ input: original, output: ggufPath, type, force: true });
  const source = openTensorSource(ggufPath);
  const back = path.join(scratchDir(), `${fixture}-${type}-back.tpk`);
  try {
    assert.equal(source.kind, 'gguf');
    tpkFromSource(source, back);
  } finally {
    source.close();
  }
  return { original: TpkModel.open(original), back: TpkModel.open(back) };
}

function assertSameTernary(original: TpkModel, back: TpkModel): number {
  let checked = 0;
  for (const entry of original.tensors) {
    if (!original.isTernary(entry.name)) continue;
    const a = original.ternary(entry.name);
    const b = back.ternary(entry.name);
    assert.deepEqual(back.entry(entry.name)!.shape, entry.shape, entry.name);
    assert.deepEqual(b.codes, a.codes, `${entry.name} codes`);
    assert.equal(b.scale.granularity, 'tensor', entry.name);
    assert.equal(b.scales[0], f16round(a.scales[0]!), `${entry.name}: gamma through fp16`);
    checked++;
  }
  return checked;
}

describe('interop/import-gguf', function () {
  this.timeout(120000);

  it('llama GGUF (TQ1_0) → tensor source: HF names and shapes, Q/K permutation undone, codes exact, gamma = fp16(gamma)', async () => {
    const { original, back } = await roundTrip('llama-256', 'tq1_0');
    try {
      assert.equal(assertSameTernary(original, back), 14);
      assert.deepEqual(back.tensors.map((t) => t.name).sort(), original.tensors.map((t) => t.name).sort());
      const norm = back.float32('model.layers.0.input_layernorm.weight');
      assert.deepEqual(norm, original.float32('model.layers.0.input_layernorm.weight'));
      const embedding = back.float32('model.embed_tokens.weight');
      const want = original.float32('model.embed_tokens.weight');
      for (let i = 0; i < want.length; i++) assert.equal(embedding[i], f16round(want[i]!));
      const config = back.config;
      const source = JSON.parse(readFileSync(path.join(fixtureDir('llama-256'), 'config.json'), 'utf8'));
      for (const key of ['model_type', 'hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads', 'num_key_value_heads', 'head_dim', 'max_position_embeddings', 'rms_norm_eps', 'vocab_size', 'tie_word_embeddings', 'bos_token_id', 'eos_token_id']) {
        assert.deepEqual(config[key], source[key], key);
      }
      assert.equal(config['rope_theta'], source.rope_parameters.rope_theta);
    } finally {
      original.close();
      back.close();
    }
  });

  it('the tokenizer rebuilt from GGUF metadata encodes the evaluation text to the same ids as the original tokenizer.json', async () => {
    const { original, back } = await roundTrip('llama-256', 'tq2_0');
    try {
      const load = (files: Record<string, string>) => new Tokenizer(JSON.parse(files['tokenizer.json']!), JSON.parse(files['tokenizer_config.json']!));
      const a = load(original.header.files);
      const b = load(back.header.files);
      for (const [name, chars] of [['tinystories_sample.txt', Infinity], ['tinyshakespeare.txt', 30_000]] as const) {
        const text = readFileSync(textFixture(name), 'utf8').slice(0, chars);
        const idsA = a.encode(text).ids;
        const idsB = b.encode(text).ids;
        assert.ok(idsA.length > 800, name);
        assert.deepEqual(idsB, idsA, name);
        assert.equal(b.decode(idsB), a.decode(idsA), name);
      }
    } finally {
      original.close();
      back.close();
    }
  });

  it('bitnet GGUF (TQ2_0) → no permutation, 2B4T sub-norm names, tied embedding, model_type bitnet', async () => {
    const { original, back } = await roundTrip('bitnet-tiny', 'tq2_0');
    try {
      assert.equal(assertSameTernary(original, back), 14);
      assert.ok(back.entry('model.layers.1.self_attn.attn_sub_norm.weight'));
      assert.ok(back.entry('model.layers.0.mlp.ffn_sub_norm.weight'));
      assert.equal(back.config['model_type'], 'bitnet');
      assert.equal(back.config['tie_word_embeddings'], true);
      assert.equal(back.config['rope_theta'], 500000);
      assert.equal(back.config['hidden_act'], 'relu2');
    } finally {
      original.close();
      back.close();
    }
  });

  it('F16 fallback tensors ({−a, 0, +a}) are read back as ternary: tinystories codes survive the round trip', async () => {
    const { original, back } = await roundTrip('tinystories-656K', 'tq1_0');
    try {
      assert.equal(assertSameTernary(original, back), 14);
    } finally {
      original.close();
      back.close();
    }
  });

  it('refuses GGUF tensor types it cannot convert, and architectures it does not know', () => {
    const file = path.join(scratchDir(), 'q4k.gguf');
    const w = GgufWriter.create(file, [['general.architecture', gguf.str('llama')], ['llama.embedding_length', gguf.u32(256)], ['llama.attention.head_count', gguf.u32(4)]],
      [{ name: 'token_embd.weight', dims: [256, 1], type: GgmlType.Q4_K }], { force: true });
    w.writeTensor('token_embd.weight', new Uint8Array(144));
    w.finish();
    assert.throws(() => openTensorSource(file), (err: unknown) => err instanceof FormatError && /token_embd\.weight is Q4_K; convert reads GGUF tensors of type TQ1_0, TQ2_0, F16, BF16 and F32/.test(err.message));
    const other = path.join(scratchDir(), 'gpt2.gguf');
    GgufWriter.create(other, [['general.architecture', gguf.str('gpt2')]], [], { force: true }).finish();
    assert.throws(() => openTensorSource(other), /architecture gpt2 is not supported/);
  });
});
