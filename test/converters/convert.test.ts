/**
 * The conversion pipeline against independent references: every ternarized tensor's codes and
 * scales in the .tpk equal a straightforward absmean written in the test helpers and the
 * transformers-computed numbers in each fixture's reference.json; kept tensors are the source bytes.
 */
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { convertCheckpoint, type ConversionSummary, type ConvertOptions } from '../../src/converters/convert.js';
import { FormatError } from '../../src/errors.js';
import { writeSafetensors, writeShardedSafetensors } from '../../src/formats/safetensors.js';
import { TpkFile } from '../../src/formats/tpk.js';
import { fixtureDir, loadReference, makeTempDir, type FixtureName } from '../support/fixtures.js';
import {
  absmeanReference, countDiffering, decodeFloats, readSafetensorsRaw, sha256, unpackT158, unpackT2, type RawTensor,
} from '../support/convert-helpers.js';

interface Converted { summary: ConversionSummary; tpk: TpkFile; source: Map<string, RawTensor> }

describe('converters/convert', function () {
  let temp: ReturnType<typeof makeTempDir>;
  const open: TpkFile[] = [];
  beforeEach(() => { temp = makeTempDir(); });
  afterEach(() => {
    for (const f of open.splice(0)) f.close();
    temp.cleanup();
  });

  async function convert(fixture: FixtureName | string, options: Partial<ConvertOptions> = {}, name = 'out.tpk'): Promise<Converted> {
    const input = fixture.includes('/') ? fixture : fixtureDir(fixture as FixtureName);
    const output = path.join(temp.dir, name);
    const summary = await convertCheckpoint({ input, output, ...options });
    const tpk = TpkFile.open(output);
    open.push(tpk);
    const source = new Map<string, RawTensor>();
    for (const file of readdirSync(input).filter((f) => f.endsWith('.safetensors'))) {
      for (const [n, t] of readSafetensorsRaw(path.join(input, file)).tensors) source.set(n, t);
    }
    return { summary, tpk, source };
  }

  function codesOf(tpk: TpkFile, name: string): Int8Array {
    const t = tpk.tensor(name)!;
    const count = t.shape.reduce((a, b) => a * b, 1);
    return t.encoding === 't158' ? unpackT158(tpk.readData(name), count) : unpackT2(tpk.readData(name), count);
  }

  function assertKeptVerbatim({ tpk, source }: Converted): number {
    let kept = 0;
    for (const t of tpk.header.tensors.filter((e) => e.encoding !== 't158' && e.encoding !== 't2')) {
      const src = source.get(t.name)!;
      assert.equal(t.encoding, src.dtype, t.name);
      assert.ok(Buffer.from(tpk.readData(t.name)).equals(Buffer.from(src.bytes)), `${t.name} bytes differ from the source`);
      kept++;
    }
    return kept;
  }

  it('tinystories-656K, t158: codes and γ equal the reference for all 14 projections; kept tensors bit-identical', async () => {
    const ref = loadReference('tinystories-656K').ternary_absmean.tensors as Record<string, { gamma: number; frac_zero: number; count_zero: number; codes_int8_rowmajor_sha256: string }>;
    const c = await convert('tinystories-656K');
    let zeros = 0;
    let total = 0;
    for (const [name, r] of Object.entries(ref)) {
      const src = c.source.get(name)!;
      const codes = codesOf(c.tpk, name);
      const mine = absmeanReference(decodeFloats(src.bytes, src.dtype));
      assert.equal(countDiffering(codes, mine.codes), 0, `${name}: codes differ from the independent absmean`);
      assert.equal(sha256(new Uint8Array(codes.buffer)), r.codes_int8_rowmajor_sha256, `${name}: codes sha256`);
      assert.equal(codes.filter((x) => x === 0).length, r.count_zero, `${name}: zero count`);
      // reference formula: the stored scale is what a ±1 code stands for, fround(1/s) with s = fround(1/γ)
      const scales = c.tpk.readScales(name);
      assert.equal(scales.length, 1);
      assert.equal(scales[0], Math.fround(1 / Math.fround(1 / r.gamma)), `${name}: scale`);
      assert.ok(Math.abs(scales[0]! - mine.gamma) <= 1e-6 * mine.gamma, `${name}: scale vs independent γ`);
      const stats = c.tpk.tensor(name)!.stats!;
      assert.ok(Math.abs(stats['zeroFraction']! - r.frac_zero) < 1e-12);
      zeros += r.count_zero;
      total += codes.length;
    }
    assert.equal(assertKeptVerbatim(c), 6); // lm_head + 5 norms
    const s = c.summary;
    assert.deepEqual(s.tensors, { ternarized: 14, kept: 6, total: 20 });
    assert.deepEqual(s.parameters, { ternarized: 393216, kept: 2048 * 128 + 5 * 128, total: 393216 + 2048 * 128 + 5 * 128 });
    assert.ok(Math.abs(s.zeroFraction - loadReference('tinystories-656K').ternary_absmean.overall.frac_zero) < 1e-12);
    assert.equal(zeros / total, s.zeroFraction);
    assert.ok(s.bitsPerWeight.ternarized <= 1.61, `t158 ${s.bitsPerWeight.ternarized} bits/weight`);
    assert.ok(s.bitsPerWeight.ternarized > 1.6);
    assert.equal(s.ternaryTraining, 'float');
    assert.ok(s.warnings.some((w) => /not trained for ternary weights collapses it: run validate/.test(w)));
  });

  it('records provenance, the side files verbatim and the tied embedding in the header', async () => {
    const c = await convert('tinystories-656K');
    const h = c.tpk.header;
    const dir = fixtureDir('tinystories-656K');
    assert.equal(h.producer.name, 'tritpack');
    assert.equal(h.producer.version, JSON.parse(readFileSync(path.join(dir, '..', '..', 'package.json'), 'utf8')).version);
    for (const name of ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json']) {
      assert.equal(h.files[name], readFileSync(path.join(dir, name), 'utf8'), name);
    }
    const files = Object.fromEntries(h.source.files!.map((f) => [f.name, f]));
    // sha256 values from fixtures/tinystories-656K/SOURCE.md
    assert.equal(files['model.safetensors']!.sha256, '187d0d5e8360d9625e40e0b35ec57d1ef0eea1a60ddcf09412246bed3484852f');
    assert.equal(files['model.safetensors']!.size, 2626168);
    assert.equal(files['tokenizer.json']!.sha256, '9a7917d490ac034a4e69eb081096226971887e9e66b0969355421613f62b12e7');
    assert.equal(files['config.json']!.sha256, '5d34a34a12acbd8b0d4d8b400cb4ad72e6cdd49673d4b27b5b4c4e93030bc7ee');
    assert.equal(h.source.path, dir);
    assert.deepEqual(h.conversion['aliases'], { 'model.embed_tokens.weight': 'lm_head.weight' });
    assert.equal(h.conversion['packing'], 't158');
    assert.equal(h.conversion['scale'], 'tensor');
    assert.equal(h.conversion['formula'], 'reference');
    assert.equal(c.tpk.tensor('model.embed_tokens.weight'), undefined);
    assert.deepEqual(c.summary.aliases, { 'model.embed_tokens.weight': 'lm_head.weight' });
  });

  it('bitnet-tiny, t2: codes and effective scales equal transformers WeightQuant; bf16 tensors bit-identical', async () => {
    const ref = loadReference('bitnet-tiny').tensors as Record<string, { ternarized: boolean; gamma_mean_abs_f32?: number; 's_f32 (=1/max(gamma,1e-5))'?: number; codes_int8_rowmajor_sha256?: string }>;
    const c = await convert('bitnet-tiny', { packing: 't2' });
    let checked = 0;
    for (const [name, r] of Object.entries(ref).filter(([, r]) => r.ternarized)) {
      const src = c.source.get(name)!;
      const codes = codesOf(c.tpk, name);
      assert.equal(c.tpk.tensor(name)!.encoding, 't2');
      const mine = absmeanReference(decodeFloats(src.bytes, src.dtype));
      assert.equal(countDiffering(codes, mine.codes), 0, `${name}: codes differ from the independent absmean`);
      assert.equal(sha256(new Uint8Array(codes.buffer)), r.codes_int8_rowmajor_sha256, `${name}: codes sha256`);
      const s = r['s_f32 (=1/max(gamma,1e-5))']!;
      assert.equal(c.tpk.readScales(name)[0], Math.fround(1 / s), `${name}: effective scale 1/s`);
      checked++;
    }
    assert.equal(checked, 14);
    assert.equal(assertKeptVerbatim(c), 10); // embed_tokens + 9 norms
    assert.ok(c.summary.bitsPerWeight.ternarized <= 2.01, `t2 ${c.summary.bitsPerWeight.ternarized} bits/weight`);
    assert.equal(c.summary.ternaryTraining, 'declared');
    assert.equal(c.summary.warnings.length, 0);
    assert.deepEqual(c.tpk.header.conversion['aliases'], { 'lm_head.weight': 'model.embed_tokens.weight' });
  });

  it('bitnet-tiny, paper formula: changes exactly the 1,017 codes the reference counts, and matches an independent W/(γ+ε)', async () => {
    const ref = loadReference('bitnet-tiny');
    const paper = await convert('bitnet-tiny', { formula: 'paper' }, 'paper.tpk');
    const reference = await convert('bitnet-tiny', {}, 'reference.tpk');
    let changed = 0;
    for (const [name, r] of Object.entries(ref.tensors as Record<string, { ternarized: boolean; codes_differ_under_paper_eps_formula?: number }>).filter(([, r]) => r.ternarized)) {
      const src = paper.source.get(name)!;
      const codes = codesOf(paper.tpk, name);
      const mine = absmeanReference(decodeFloats(src.bytes, src.dtype), 'paper');
      assert.equal(countDiffering(codes, mine.codes), 0, name);
      const n = countDiffering(codes, codesOf(reference.tpk, name));
      assert.equal(n, r.codes_differ_under_paper_eps_formula, name);
      changed += n;
    }
    assert.equal(changed, ref.codes_differ_under_paper_eps_formula_total);
    assert.equal(changed, 1017);
  });

  it('per-channel and per-group scales on llama-256 match an independent row/group absmean', async () => {
    for (const [scale, groups] of [[{ kind: 'channel' } as const, 1], [{ kind: 'group', size: 96 } as const, 0]] as const) {
      const c = await convert('llama-256', { scale }, `${scale.kind}.tpk`);
      const name = 'model.layers.1.mlp.down_proj.weight'; // [256, 768]: 768/96 = 8 groups per row
      const src = c.source.get(name)!;
      const w = decodeFloats(src.bytes, src.dtype);
      const [rows, cols] = src.shape as [number, number];
      const size = groups === 1 ? cols : 96;
      const codes = codesOf(c.tpk, name);
      const scales = c.tpk.readScales(name);
      assert.equal(scales.length, rows * (cols / size));
      let g = 0;
      for (let begin = 0; begin < w.length; begin += size, g++) {
        const mine = absmeanReference(w.subarray(begin, begin + size));
        assert.equal(countDiffering(codes.subarray(begin, begin + size), mine.codes), 0, `${scale.kind} group ${g}`);
        assert.ok(Math.abs(scales[g]! - mine.gamma) <= 1e-6 * mine.gamma, `${scale.kind} scale ${g}`);
      }
      assert.equal(c.tpk.tensor(name)!.scale!.granularity, scale.kind);
      assertKeptVerbatim(c);
    }
  });

  it('converts a sharded llama-256 (written with our writer) to the same tensors as the single file', async () => {
    const src = readSafetensorsRaw(path.join(fixtureDir('llama-256'), 'model.safetensors'));
    const sharded = path.join(temp.dir, 'sharded');
    mkdirSync(sharded);
    const written = writeShardedSafetensors(sharded, [...src.tensors].map(([name, t]) => ({ name, dtype: t.dtype as 'F16', shape: t.shape, data: t.bytes })), 2_000_000, src.metadata);
    assert.ok(written.filter((f) => f.endsWith('.safetensors')).length >= 3);
    for (const f of ['config.json', 'tokenizer.json', 'generation_config.json']) copyFileSync(path.join(fixtureDir('llama-256'), f), path.join(sharded, f));
    const one = await convert('llama-256', {}, 'single.tpk');
    const many = await convert(sharded, {}, 'sharded.tpk');
    const strip = (tpk: TpkFile) => tpk.header.tensors.map((t) => ({ ...t, data: t.data.sha256, scales: t.scales?.sha256 })).sort((a, b) => a.name.localeCompare(b.name));
    assert.deepEqual(strip(many.tpk), strip(one.tpk));
    assert.ok(many.tpk.header.source.files!.some((f) => f.name === 'model.safetensors.index.json'));
    assert.equal(many.summary.tensors.total, 21);
    assert.equal(many.summary.parameters.total, 2622720);
  });

  it('keeps float tensors in --keep-dtype when asked, rounded to nearest', async () => {
    const c = await convert('tinystories-656K', { keepDType: 'F16' });
    const t = c.tpk.tensor('lm_head.weight')!;
    assert.equal(t.encoding, 'F16');
    assert.equal(t.sourceDType, 'F32');
    const src = c.source.get('lm_head.weight')!;
    const before = decodeFloats(src.bytes, 'F32');
    const after = decodeFloats(c.tpk.readData('lm_head.weight'), 'F16');
    for (let i = 0; i < before.length; i++) {
      // within half an f16 ulp (normal range: 2^-11 relative; subnormals: 2^-25 absolute)
      assert.ok(Math.abs(after[i]! - before[i]!) <= Math.max(Math.abs(before[i]!) * 2 ** -11, 2 ** -25), `element ${i}`);
    }
  });

  /** tinystories-656K copied into the temp dir, with `edit` applied to the raw tensors first. */
  function editedTinystories(edit: (tensors: Map<string, RawTensor>) => void): string {
    const dir = path.join(temp.dir, 'edited');
    mkdirSync(dir);
    for (const f of ['config.json', 'tokenizer.json']) copyFileSync(path.join(fixtureDir('tinystories-656K'), f), path.join(dir, f));
    const src = readSafetensorsRaw(path.join(fixtureDir('tinystories-656K'), 'model.safetensors'));
    edit(src.tensors);
    writeSafetensors(path.join(dir, 'model.safetensors'), [...src.tensors].map(([name, t]) => ({ name, dtype: t.dtype as 'F32', shape: t.shape, data: t.bytes })), src.metadata);
    return dir;
  }

  it('recognises a checkpoint saved after ternary training (rows of {−a, 0, a}) and keeps its codes', async () => {
    const expected = new Map<string, Int8Array>();
    const dir = editedTinystories((tensors) => {
      for (const [name, t] of tensors) {
        if (!/_proj\.weight$/.test(name)) continue;
        const { gamma, codes } = absmeanReference(decodeFloats(t.bytes, t.dtype));
        expected.set(name, codes);
        tensors.set(name, { ...t, bytes: new Uint8Array(Float32Array.from(codes, (c) => c * gamma).buffer) });
      }
    });
    const c = await convert(dir);
    assert.equal(c.summary.ternaryTraining, 'ternary-valued');
    assert.deepEqual(c.summary.warnings, []);
    for (const [name, codes] of expected) assert.equal(countDiffering(codesOf(c.tpk, name), codes), 0, name);
  });

  it('NaN/Inf in a projection: a FormatError naming tensor and file, no output; allowed, they count as 0', async () => {
    const name = 'model.layers.1.mlp.up_proj.weight';
    let clean = new Float32Array(0);
    const dir = editedTinystories((tensors) => {
      const t = tensors.get(name)!;
      const values = decodeFloats(t.bytes, t.dtype);
      clean = values.slice();
      clean[5] = 0; clean[300] = 0;
      values[5] = NaN; values[300] = -Infinity;
      tensors.set(name, { ...t, bytes: new Uint8Array(values.buffer) });
    });
    const output = path.join(temp.dir, 'refused.tpk');
    await assert.rejects(convertCheckpoint({ input: dir, output }), (err: unknown) => err instanceof FormatError
      && err.message === `${path.join(dir, 'model.safetensors')}: tensor ${name} holds 2 NaN/Inf value(s), the first at element 5 (--allow-nonfinite converts anyway)`);
    assert.deepEqual(readdirSync(temp.dir).filter((f) => f.endsWith('.tpk') || f.includes('.tmp')), []);
    const c = await convert(dir, { allowNonFinite: true });
    const mine = absmeanReference(clean);
    assert.equal(countDiffering(codesOf(c.tpk, name), mine.codes), 0);
    assert.equal(c.tpk.tensor(name)!.stats!['nonFinite'], 2);
    assert.ok(Math.abs(c.tpk.readScales(name)[0]! - mine.gamma) <= 1e-6 * mine.gamma);
    assert.equal(c.tpk.header.conversion['allowNonFinite'], true);
  });

  it('refuses packed BitNet weights (U8 + weight_scale) whose config.json does not declare them', async () => {
    const dir = path.join(temp.dir, 'undeclared');
    mkdirSync(dir);
    for (const f of readdirSync(fixtureDir('bitnet-tiny-packed'))) copyFileSync(path.join(fixtureDir('bitnet-tiny-packed'), f), path.join(dir, f));
    const config = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8'));
    delete config.quantization_config;
    writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
    const output = path.join(temp.dir, 'refused.tpk');
    await assert.rejects(convertCheckpoint({ input: dir, output }), (err: unknown) => err instanceof FormatError
      && err.message.startsWith(`${dir}: is an already packed BitNet checkpoint`) && !err.message.includes('\n'));
    assert.ok(!existsSync(output));
  });

  it('imports an HF offline-packed BitNet checkpoint: the same codes as its bf16 master, scales = its stored weight_scale', async () => {
    const master = await convert('bitnet-tiny', {}, 'master.tpk');
    const packed = await convert('bitnet-tiny-packed', {}, 'packed.tpk');
    assert.equal(packed.summary.tensors.ternarized, 14);
    const weightScales = readSafetensorsRaw(path.join(fixtureDir('bitnet-tiny-packed'), 'model.safetensors')).tensors;
    for (const t of master.tpk.header.tensors.filter((e) => e.encoding === 't158')) {
      assert.equal(countDiffering(codesOf(packed.tpk, t.name), codesOf(master.tpk, t.name)), 0, t.name);
      const stored = weightScales.get(t.name.replace(/\.weight$/, '.weight_scale'))!;
      assert.deepEqual([...packed.tpk.readScales(t.name)], [...decodeFloats(stored.bytes, stored.dtype)], t.name);
    }
  });
});
