import { strict as assert } from 'node:assert';
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { convertCheckpoint } from '../../src/converters/convert.js';
import { TpkModel } from '../../src/converters/export-common.js';
import { exportHfBitnet, packHfBitnet, unpackHfBitnet } from '../../src/converters/export-hf-bitnet.js';
import { exportSafetensors } from '../../src/converters/export-safetensors.js';
import { openTensorSource } from '../../src/converters/import-source.js';
import { bf16BitsToF32, f32ToBf16Bits, toFloat32 } from '../../src/formats/dtype.js';
import { SafetensorsFile } from '../../src/formats/safetensors.js';
import { renderModelCard } from '../../src/hub/card.js';
import { isTernaryEncoding, TpkFile } from '../../src/formats/tpk.js';
import { fixtureDir, loadReference } from '../support/fixtures.js';
import { convertedFixture, scratchDir, tpkFromSource, writeHandTpk } from '../support/interop-models.js';

const bf16round = (x: number) => bf16BitsToF32(f32ToBf16Bits(x));
const PROJECTIONS = ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj'];
const packedNames = [0, 1].flatMap((l) => PROJECTIONS.map((p) => `model.layers.${l}.${p}.weight`));

/** bitnet-tiny-packed/SOURCE.md: stored weight_scale (bf16) and gamma_eff = 1/s (float32) per tensor. */
const SOURCE_TABLE: Record<string, [number, number]> = {
  'model.layers.0.mlp.down_proj.weight': [0.0159912109, 0.0159878209],
  'model.layers.0.self_attn.k_proj.weight': [0.0158691406, 0.0158721656],
  'model.layers.1.self_attn.v_proj.weight': [0.0158691406, 0.0158359669],
  'model.layers.1.mlp.up_proj.weight': [0.0159912109, 0.0159395263],
};

describe('interop/hf-bitnet', function () {
  this.timeout(120000);
  const packedDir = fixtureDir('bitnet-tiny-packed');

  it('packs and unpacks the transformers unpack_weights docstring example (formats.md §4.2)', () => {
    const packed = Uint8Array.of(0b10100001, 0b00011000, 0b10010000, 0b00001010);
    const matrix = [[0, -1], [-1, 1], [-1, 1], [-1, 1], [1, 0], [0, -1], [1, -1], [1, -1]];
    assert.deepEqual([...unpackHfBitnet(packed, 2, 2)], matrix.flat());
    assert.deepEqual([...packHfBitnet(Int8Array.from(matrix.flat()), 8, 2)], [...packed]);
    assert.throws(() => unpackHfBitnet(Uint8Array.of(0xff), 1, 1), /invalid code 3/);
  });

  it('imports bitnet-tiny-packed: 14 ternary tensors, unpacked shapes, gamma = the stored bf16 weight_scale (autobitlinear)', () => {
    const source = openTensorSource(packedDir);
    try {
      assert.equal(source.kind, 'hf-bitnet-packed');
      assert.deepEqual(source.tensors.filter((t) => t.ternary).map((t) => t.name).sort(), [...packedNames].sort());
      assert.ok(!source.tensors.some((t) => t.name.endsWith('weight_scale')));
      assert.deepEqual(source.get('model.layers.0.mlp.down_proj.weight')!.shape, [256, 768]);
      assert.deepEqual(source.get('model.layers.0.self_attn.k_proj.weight')!.shape, [128, 256]);
      for (const [name, [stored]] of Object.entries(SOURCE_TABLE)) {
        assert.ok(Math.abs(source.readTernary(name).scales[0]! - stored) < 5e-11, name);
      }
    } finally {
      source.close();
    }
    const master = openTensorSource(fixtureDir('bitnet-tiny'));
    try {
      assert.equal(master.kind, 'safetensors', 'bf16 master weights (online mode) are an ordinary checkpoint');
      assert.ok(!master.tensors.some((t) => t.ternary), 'nothing in it is ternary yet');
    } finally {
      master.close();
    }
  });

  it('bitnet-tiny (bf16 master, converted) and bitnet-tiny-packed (imported) give the same codes; scales equal up to bf16 rounding', async () => {
    const master = TpkModel.open(await convertedFixture('bitnet-tiny'));
    const source = openTensorSource(packedDir);
    try {
      let maxRel = 0;
      for (const name of packedNames) {
        const a = master.ternary(name);
        const b = source.readTernary(name);
        assert.deepEqual(b.codes, a.codes, `${name} codes`);
        assert.equal(b.scales[0], bf16round(a.scales[0]!), `${name}: packed scale is the bf16 rounding of the master gamma`);
        maxRel = Math.max(maxRel, Math.abs(b.scales[0]! - a.scales[0]!) / a.scales[0]!);
        if (SOURCE_TABLE[name]) assert.ok(Math.abs(a.scales[0]! - SOURCE_TABLE[name]![1]) < 5e-10, `${name} master gamma vs SOURCE.md`);
      }
      assert.ok(maxRel > 0 && maxRel <= 2 ** -8, `bf16 relative rounding (8 significant bits) ${maxRel}`);
    } finally {
      source.close();
      master.close();
    }
  });

  it('convert of bitnet-tiny-packed: the record says the per-tensor weight_scales were imported; stats give each tensor\'s zero fraction as the reference computed it', async () => {
    const output = path.join(scratchDir(), 'bitnet-tiny-packed-converted.tpk');
    const summary = await convertCheckpoint({ input: packedDir, output, force: true });
    const reference = loadReference('bitnet-tiny').tensors as Record<string, { frac_zero: number }>;
    const tpk = TpkFile.open(output);
    try {
      const { conversion, tensors } = tpk.header;
      const ternary = tensors.filter((t) => isTernaryEncoding(t.encoding));
      assert.deepEqual(ternary.map((t) => t.name).sort(), [...packedNames].sort());
      assert.deepEqual(ternary.map((t) => t.scale!.granularity), ternary.map(() => 'tensor'), 'weight_scale holds one value per tensor');
      assert.equal(conversion['scale'], 'imported');
      assert.equal(conversion['formula'], 'imported');
      assert.deepEqual([...(conversion['imported'] as string[])].sort(), [...packedNames].sort());
      assert.equal(summary.imported, packedNames.length);
      for (const entry of ternary) {
        assert.equal(entry.stats?.['gamma'], tpk.readScales(entry.name)[0], `${entry.name} gamma`);
        assert.ok(Math.abs(entry.stats!['zeroFraction']! - reference[entry.name]!.frac_zero) < 1e-12, `${entry.name} zero fraction`);
      }
      // the model card made from this header says so too, instead of claiming absmean
      const card = renderModelCard({ header: tpk.header, fileName: 'model.tpk', fileSize: 1, repo: 'me/bitnet-tiny-packed' });
      assert.doesNotMatch(card, /Scale granularity|Rounding formula|absmean/);
      assert.match(card, /\| Imported ternary tensors \| 14: codes and scales taken from the already-ternary source/);
    } finally {
      tpk.close();
    }
    // the master-weight conversion runs absmean itself: it records its settings and imports nothing
    const master = TpkFile.open(await convertedFixture('bitnet-tiny'));
    try {
      assert.equal(master.header.conversion['scale'], 'tensor');
      assert.equal(master.header.conversion['formula'], 'reference');
      assert.deepEqual(master.header.conversion['imported'], []);
    } finally {
      master.close();
    }
  });

  it('bitnet-tiny-packed → import → .tpk → export hf-bitnet reproduces model.safetensors byte for byte', () => {
    const source = openTensorSource(packedDir);
    const tpk = path.join(scratchDir(), 'packed-import.tpk');
    try {
      tpkFromSource(source, tpk);
    } finally {
      source.close();
    }
    const out = path.join(scratchDir(), 'packed-roundtrip');
    const summary = exportHfBitnet({ input: tpk, output: out, force: true });
    assert.equal(summary.packed.length, 14);
    assert.deepEqual(summary.unpacked, []);
    const original = SafetensorsFile.open(path.join(packedDir, 'model.safetensors'));
    const ours = SafetensorsFile.open(path.join(out, 'model.safetensors'));
    try {
      for (const name of packedNames) {
        assert.equal(ours.get(name)!.dtype, 'U8');
        assert.deepEqual(ours.get(name)!.shape, original.get(name)!.shape);
        assert.deepEqual(ours.readBytes(name), original.readBytes(name), name);
        assert.deepEqual(ours.readBytes(`${name}_scale`), original.readBytes(`${name}_scale`), `${name}_scale`);
      }
    } finally {
      ours.close();
      original.close();
    }
    const sha = (f: string) => createHash('sha256').update(readFileSync(f)).digest('hex');
    // the whole file, as SOURCE.md lists it: same tensors, order, header and metadata
    assert.equal(sha(path.join(out, 'model.safetensors')), '006a0395f99c697108ab1ffb63e66f43b00d18f0d0b03fdb27e034709b3d20e8');
    const config = JSON.parse(readFileSync(path.join(out, 'config.json'), 'utf8'));
    assert.deepEqual(config.quantization_config, { linear_class: 'autobitlinear', quant_method: 'bitnet', quantization_mode: 'offline' });
    assert.deepEqual(readdirSync(out).sort(), ['config.json', 'generation_config.json', 'model.safetensors', 'special_tokens_map.json', 'tokenizer.json', 'tokenizer_config.json']);
  });

  it('bitnet-tiny (bf16 master) → convert → export hf-bitnet gives the packed fixture\'s weight bytes and weight_scales', async () => {
    const out = path.join(scratchDir(), 'master-export');
    exportHfBitnet({ input: await convertedFixture('bitnet-tiny'), output: out, force: true });
    const original = SafetensorsFile.open(path.join(packedDir, 'model.safetensors'));
    const ours = SafetensorsFile.open(path.join(out, 'model.safetensors'));
    try {
      for (const name of packedNames) {
        assert.deepEqual(ours.readBytes(name), original.readBytes(name), name);
        assert.deepEqual(ours.readBytes(`${name}_scale`), original.readBytes(`${name}_scale`), `${name}_scale`);
      }
    } finally {
      ours.close();
      original.close();
    }
    const config = JSON.parse(readFileSync(path.join(out, 'config.json'), 'utf8'));
    assert.equal(config.quantization_config.quantization_mode, 'offline');
  });

  it('bitlinear convention: weight_scale = 1/gamma on export, gamma = 1/weight_scale on import', async () => {
    const tpk = await convertedFixture('bitnet-tiny');
    const out = path.join(scratchDir(), 'bitlinear');
    exportHfBitnet({ input: tpk, output: out, linearClass: 'bitlinear', scaleDType: 'F32', force: true });
    const config = JSON.parse(readFileSync(path.join(out, 'config.json'), 'utf8'));
    assert.equal(config.quantization_config.linear_class, 'bitlinear');
    const master = TpkModel.open(tpk);
    const written = SafetensorsFile.open(path.join(out, 'model.safetensors'));
    const source = openTensorSource(out);
    try {
      for (const name of packedNames) {
        const gamma = master.ternary(name).scales[0]!;
        assert.equal(toFloat32(written.readBytes(`${name}_scale`), 'F32')[0], Math.fround(1 / gamma));
        const back = source.readTernary(name);
        assert.deepEqual(back.codes, master.ternary(name).codes);
        assert.ok(Math.abs(back.scales[0]! - gamma) / gamma < 2 ** -22, name);
      }
    } finally {
      source.close();
      written.close();
      master.close();
    }
  });

  it('tensors the packed format cannot hold (per-channel scales) are stored dequantized and listed in modules_to_not_convert', async () => {
    const codes = (n: number) => Int8Array.from({ length: n }, (_, i) => ((i * 7) % 3) - 1);
    const tpk = path.join(scratchDir(), 'mixed.tpk');
    const config = { ...JSON.parse(readFileSync(path.join(fixtureDir('bitnet-tiny'), 'config.json'), 'utf8')), num_hidden_layers: 1 };
    const rowScales = Float32Array.from({ length: 128 }, (_, r) => 0.01 + r / 4096);
    writeHandTpk(tpk, 'bitnet-tiny', [
      { name: 'model.embed_tokens.weight', shape: [2048, 256], values: new Float32Array(2048 * 256) },
      { name: 'model.layers.0.self_attn.q_proj.weight', shape: [256, 256], codes: codes(256 * 256), scales: Float32Array.of(0.02) },
      { name: 'model.layers.0.self_attn.k_proj.weight', shape: [128, 256], codes: codes(128 * 256), scales: rowScales },
    ], config);
    const out = path.join(scratchDir(), 'mixed-hf');
    const summary = exportHfBitnet({ input: tpk, output: out, force: true });
    assert.deepEqual(summary.packed, ['model.layers.0.self_attn.q_proj.weight']);
    assert.deepEqual(summary.unpacked.map((u) => u.name), ['model.layers.0.self_attn.k_proj.weight']);
    const written = JSON.parse(readFileSync(path.join(out, 'config.json'), 'utf8'));
    assert.deepEqual(written.quantization_config.modules_to_not_convert, ['lm_head', 'model.layers.0.self_attn.k_proj']);
    const f = SafetensorsFile.open(path.join(out, 'model.safetensors'));
    try {
      assert.equal(f.get('model.layers.0.self_attn.k_proj.weight')!.dtype, 'BF16');
      assert.ok(!f.get('model.layers.0.self_attn.k_proj.weight_scale'));
      const k = f.readFloat32('model.layers.0.self_attn.k_proj.weight');
      const want = codes(128 * 256);
      for (let i = 0; i < k.length; i++) assert.equal(k[i], bf16round(want[i]! * rowScales[Math.floor(i / 256)]!));
      assert.equal(f.get('model.layers.0.self_attn.q_proj.weight')!.dtype, 'U8');
    } finally {
      f.close();
    }
  });

  it('export safetensors: plain dequantized checkpoint (t·gamma in the chosen dtype), no quantization_config', async () => {
    const tpk = await convertedFixture('bitnet-tiny');
    const out = path.join(scratchDir(), 'plain');
    const summary = exportSafetensors({ input: tpk, output: out, dtype: 'F32', force: true });
    assert.equal(summary.dequantized, 14);
    const config = JSON.parse(readFileSync(path.join(out, 'config.json'), 'utf8'));
    assert.equal(config.quantization_config, undefined);
    assert.equal(config.dtype, 'float32');
    const model = TpkModel.open(tpk);
    const file = SafetensorsFile.open(path.join(out, 'model.safetensors'));
    try {
      const t = model.ternary('model.layers.1.mlp.gate_proj.weight');
      const values = file.readFloat32('model.layers.1.mlp.gate_proj.weight');
      for (let i = 0; i < values.length; i++) assert.equal(values[i], t.codes[i]! * t.scales[0]!);
      assert.deepEqual(file.readFloat32('model.norm.weight'), model.float32('model.norm.weight'));
      assert.equal(file.get('model.norm.weight')!.dtype, 'F32');
    } finally {
      file.close();
      model.close();
    }
    // tinystories stores its tied embedding as lm_head only: the export names it embed_tokens
    const tiny = path.join(scratchDir(), 'plain-tiny');
    exportSafetensors({ input: await convertedFixture('tinystories-656K'), output: tiny, dtype: 'F16', force: true });
    const f = SafetensorsFile.open(path.join(tiny, 'model.safetensors'));
    assert.ok(f.get('model.embed_tokens.weight'));
    assert.ok(!f.get('lm_head.weight'));
    assert.equal(f.get('model.norm.weight')!.dtype, 'F16');
    f.close();
  });
});
