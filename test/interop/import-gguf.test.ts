import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { convertCheckpoint } from '../../src/converters/convert.js';
import { TpkModel } from '../../src/converters/export-common.js';
import { exportGguf } from '../../src/converters/export-gguf.js';
import { openTensorSource } from '../../src/converters/import-source.js';
import { FormatError } from '../../src/errors.js';
import { GgmlType, GgufFile, GgufWriter, gguf } from '../../src/formats/gguf.js';
import { isTernaryEncoding, TpkFile } from '../../src/formats/tpk.js';
import { fixtureDir, textFixture } from '../support/fixtures.js';
import { convertedFixture, f16round, scratchDir, tpkFromSource, writeHandTpk, type HandTensor } from '../support/interop-models.js';

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

/**
 * llama-256 converted with group:256 scales (one γ per TQ block, as llama.cpp's own quantizer
 * makes them), exported to TQ2_0 and converted back by `convertCheckpoint`, counting the GGUF
 * tensor reads the import makes. Made once for the tests that look at it.
 */
let groupImport: Promise<{ master: string; output: string; summary: Awaited<ReturnType<typeof convertCheckpoint>>; reads: Map<string, number> }> | undefined;
function importGroupScaled() {
  groupImport ??= (async () => {
    const master = path.join(scratchDir(), 'llama-256-group256.tpk');
    await convertCheckpoint({ input: fixtureDir('llama-256'), output: master, scale: { kind: 'group', size: 256 }, force: true });
    const ggufPath = path.join(scratchDir(), 'llama-256-group256.gguf');
    exportGguf({ input: master, output: ggufPath, type: 'tq2_0', force: true });
    const reads = new Map<string, number>();
    const readBytes = GgufFile.prototype.readBytes;
    GgufFile.prototype.readBytes = function (this: GgufFile, name: string) {
      reads.set(name, (reads.get(name) ?? 0) + 1);
      return readBytes.call(this, name);
    };
    const output = path.join(scratchDir(), 'llama-256-group256-back.tpk');
    try {
      const summary = await convertCheckpoint({ input: ggufPath, output, packing: 't2', force: true });
      return { master, output, summary, reads };
    } finally {
      GgufFile.prototype.readBytes = readBytes;
    }
  })();
  return groupImport;
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

  it('convert of a TQ GGUF: the conversion record says the scales were imported and names exactly the ternary tensors of the table', async () => {
    const { output, summary } = await importGroupScaled();
    const tpk = TpkFile.open(output);
    try {
      const { conversion, tensors } = tpk.header;
      const ternary = tensors.filter((t) => isTernaryEncoding(t.encoding));
      assert.equal(ternary.length, 14);
      // the table holds the per-block scales (one per row where a row is one block), not one γ per tensor
      assert.ok(ternary.every((t) => t.scale!.granularity !== 'tensor'));
      assert.ok(ternary.some((t) => t.scale!.granularity === 'group' && t.scale!.groupSize === 256));
      assert.equal(conversion['scale'], 'imported');
      assert.equal(conversion['formula'], 'imported');
      assert.deepEqual([...(conversion['imported'] as string[])].sort(), ternary.map((t) => t.name).sort());
      assert.equal(summary.scale, 'imported');
      assert.equal(summary.imported, 14);
    } finally {
      tpk.close();
    }
  });

  it('imported TQ tensors carry the zero fraction of their codes, equal to the master-weight conversion\'s', async () => {
    const { master, output } = await importGroupScaled();
    const original = TpkFile.open(master);
    const back = TpkFile.open(output);
    try {
      for (const entry of back.header.tensors.filter((t) => isTernaryEncoding(t.encoding))) {
        const want = original.header.tensors.find((t) => t.name === entry.name)!.stats!['zeroFraction']!;
        assert.ok(want > 0.1 && want < 0.9, `${entry.name}: master zero fraction ${want}`);
        assert.equal(entry.stats?.['zeroFraction'], want, entry.name);
      }
    } finally {
      original.close();
      back.close();
    }
  });

  it('convert decodes each TQ tensor once: its data is read from the GGUF a single time, codes and block scales intact', async () => {
    const { master, output, reads } = await importGroupScaled();
    const original = TpkModel.open(master);
    const back = TpkModel.open(output);
    try {
      for (const entry of original.tensors.filter((t) => original.isTernary(t.name))) {
        const a = original.ternary(entry.name);
        const b = back.ternary(entry.name);
        assert.deepEqual(b.codes, a.codes, `${entry.name} codes`);
        // per element, so a group layout read back as per-row (one block per row) compares too
        const perRowA = a.scales.length / entry.shape[0]!, perRowB = b.scales.length / entry.shape[0]!;
        for (let r = 0; r < entry.shape[0]!; r++) {
          for (let k = 0; k < perRowA; k++) assert.equal(b.scales[r * perRowB + Math.floor(k * perRowB / perRowA)], f16round(a.scales[r * perRowA + k]!), `${entry.name} row ${r} block ${k}`);
        }
      }
    } finally {
      original.close();
      back.close();
    }
    const g = GgufFile.open(path.join(scratchDir(), 'llama-256-group256.gguf'));
    try {
      const tq = g.tensors.filter((t) => t.type === GgmlType.TQ2_0).map((t) => t.name);
      assert.equal(tq.length, 14);
      for (const name of tq) assert.equal(reads.get(name), 1, name);
    } finally {
      g.close();
    }
  });

  it('a GGUF with one float (non-ternary) projection: absmean makes that one, the record keeps the absmean settings and lists the others as imported', async () => {
    const converted = TpkModel.open(await convertedFixture('llama-256'));
    const floats = openTensorSource(fixtureDir('llama-256'));
    const mixed = path.join(scratchDir(), 'llama-256-mixed.tpk');
    const floatName = 'model.layers.1.mlp.down_proj.weight';
    try {
      const tensors = converted.tensors.map((t): HandTensor => (converted.isTernary(t.name) && t.name !== floatName
        ? { name: t.name, shape: t.shape, ...converted.ternary(t.name) }
        : { name: t.name, shape: t.shape, values: floats.readFloat32(t.name) }));
      writeHandTpk(mixed, 'llama-256', tensors);
    } finally {
      converted.close();
      floats.close();
    }
    const ggufPath = path.join(scratchDir(), 'llama-256-mixed.gguf');
    exportGguf({ input: mixed, output: ggufPath, type: 'tq1_0', force: true });
    const output = path.join(scratchDir(), 'llama-256-mixed-back.tpk');
    const summary = await convertCheckpoint({ input: ggufPath, output, scale: { kind: 'channel' }, force: true });
    const tpk = TpkFile.open(output);
    try {
      const { conversion, tensors } = tpk.header;
      const ternary = tensors.filter((t) => isTernaryEncoding(t.encoding));
      assert.equal(ternary.length, 14);
      assert.equal(conversion['scale'], 'channel');
      assert.equal(conversion['formula'], 'reference');
      assert.deepEqual([...(conversion['imported'] as string[])].sort(), ternary.map((t) => t.name).filter((n) => n !== floatName).sort());
      assert.equal(summary.imported, 13);
      for (const t of ternary) assert.equal(t.scale!.granularity, t.name === floatName ? 'channel' : 'tensor', t.name);
      assert.ok(tensors.find((t) => t.name === floatName)!.stats!['relativeError']! > 0, 'absmean rounded this one');
    } finally {
      tpk.close();
    }
  });
});
