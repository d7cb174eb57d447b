/**
 * `tritpack convert` as a user runs it (the built CLI). Every bad input of issue 2 must give one
 * line on stderr naming the file and the problem, a non-zero exit, and leave no output or temp file.
 */
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { runCli, type CliResult } from '../support/cli.js';
import { fixtureDir, makeTempDir, textFixture } from '../support/fixtures.js';
import { rawSafetensors } from '../support/convert-helpers.js';

const TINY = fixtureDir('tinystories-656K');
const SIDE = ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json'];

describe('cli/convert', function () {
  let temp: ReturnType<typeof makeTempDir>;
  let out: string;
  beforeEach(() => {
    temp = makeTempDir();
    out = path.join(temp.dir, 'out');
    mkdirSync(out);
  });
  afterEach(() => temp.cleanup());

  /** A copy of tinystories-656K whose model.safetensors is `model` (side files copied unless dropped). */
  function checkpoint(model: Uint8Array, options: { withConfig?: boolean } = {}): string {
    const dir = path.join(temp.dir, 'ckpt');
    mkdirSync(dir, { recursive: true });
    for (const f of SIDE) if (f !== 'config.json' || options.withConfig !== false) copyFileSync(path.join(TINY, f), path.join(dir, f));
    writeFileSync(path.join(dir, 'model.safetensors'), model);
    return dir;
  }

  function tinyModel(): Buffer {
    return readFileSync(path.join(TINY, 'model.safetensors'));
  }

  /** One stderr line naming `file` and matching `problem`; non-zero exit; the output dir empty. */
  function assertCleanFailure(r: CliResult, file: string, problem: RegExp): void {
    assert.notEqual(r.code, 0, 'exit code');
    const lines = r.stderr.trimEnd().split('\n');
    assert.equal(lines.length, 1, `one stderr line, got:\n${r.stderr}`);
    assert.ok(lines[0]!.includes(file), `names ${file}: ${lines[0]}`);
    assert.match(lines[0]!, problem);
    assert.equal(r.stdout, '');
    assert.deepEqual(readdirSync(out), [], 'no output or temp file left');
  }

  const convert = (dir: string, ...extra: string[]) => runCli(['convert', dir, '-o', path.join(out, 'model.tpk'), ...extra]);

  it('converts tinystories-656K: summary table on stdout, honest warning on stderr, --json gives the summary', () => {
    const r = convert(TINY);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /tensors\s+14 ternarized, 6 kept \(20 in all\)/);
    assert.match(r.stdout, /bits\/weight\s+1\.60\d over ternarized tensors/);
    assert.match(r.stdout, /MB\/s of input/);
    assert.match(r.stderr, /not trained for ternary weights collapses it: run validate/);
    const j = runCli(['convert', TINY, '-o', path.join(out, 'model.tpk'), '--force', '--packing', 't2', '--json']);
    assert.equal(j.code, 0, j.stderr);
    const summary = JSON.parse(j.stdout);
    assert.equal(summary.packing, 't2');
    assert.deepEqual(summary.tensors, { ternarized: 14, kept: 6, total: 20 });
    assert.ok(summary.bitsPerWeight.ternarized <= 2.01 && summary.bitsPerWeight.ternarized > 2);
    assert.equal(summary.ternaryTraining, 'float');
    assert.deepEqual(readdirSync(out), ['model.tpk']);
  });

  it('passes --scale, --include/--exclude and --keep-dtype through', () => {
    const r = runCli(['convert', fixtureDir('llama-256'), '-o', path.join(out, 'm.tpk'), '--json', '--scale', 'group:128',
      '--exclude', 'model.layers.0.*', '--include', 'lm_head.weight', '--keep-dtype', 'bf16']);
    assert.equal(r.code, 0, r.stderr);
    const s = JSON.parse(r.stdout);
    assert.equal(s.scale, 'group:128');
    assert.deepEqual(s.tensors, { ternarized: 8, kept: 13, total: 21 });
    const bad = runCli(['convert', fixtureDir('llama-256'), '-o', path.join(out, 'x.tpk'), '--scale', 'group:0']);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /group:0/);
  });

  it('--validate --text: validates the fresh .tpk, embeds the report, exits 1 on FAIL with the JSON still printed', () => {
    const target = path.join(out, 'tiny.tpk');
    const r = runCli(['convert', TINY, '-o', target, '--validate', '--text', textFixture('tinystories_sample.txt'), '--json']);
    assert.equal(r.code, 1, r.stderr); // TinyStories-656K is not ternary-trained: absmean ruins it, validate says FAIL
    const j = JSON.parse(r.stdout);
    assert.equal(j.ternaryTraining, 'float');
    assert.equal(j.tensors.ternarized, 14);
    assert.equal(j.validation.verdict, 'FAIL');
    const inspected = JSON.parse(runCli(['inspect', target, '--json']).stdout);
    assert.equal(inspected.tpk.validated, true);
    assert.notEqual(runCli(['convert', TINY, '-o', path.join(out, 'x.tpk'), '--validate']).code, 0, '--validate needs --text');
  });

  it('truncated safetensors', () => {
    const model = tinyModel();
    const dir = checkpoint(model.subarray(0, model.length - 1000));
    assertCleanFailure(convert(dir), path.join(dir, 'model.safetensors'), /past the end|ended|truncated/);
  });

  it('header length beyond the file', () => {
    const model = Buffer.from(tinyModel());
    model.writeBigUInt64LE(BigInt(model.length + 100), 0);
    const dir = checkpoint(model);
    assertCleanFailure(convert(dir), path.join(dir, 'model.safetensors'), /header length \d+ runs past the end of the file/);
  });

  it('header not JSON', () => {
    const model = Buffer.from(tinyModel());
    model.write('{"lm_head.weight":[[[', 8, 'latin1');
    const dir = checkpoint(model);
    assertCleanFailure(convert(dir), path.join(dir, 'model.safetensors'), /not valid JSON/);
  });

  it('unknown dtype', () => {
    const dir = checkpoint(rawSafetensors({ 'a.mlp.up_proj.weight': { dtype: 'F12', shape: [2, 2], data_offsets: [0, 16] } }, new Uint8Array(16)));
    assertCleanFailure(convert(dir), path.join(dir, 'model.safetensors'), /F12/);
  });

  it('offsets out of bounds', () => {
    const dir = checkpoint(rawSafetensors({ 'a.mlp.up_proj.weight': { dtype: 'F32', shape: [2, 2], data_offsets: [0, 32] } }, new Uint8Array(16)));
    assertCleanFailure(convert(dir), path.join(dir, 'model.safetensors'), /run past the end/);
  });

  it('overlapping offsets', () => {
    const dir = checkpoint(rawSafetensors({
      'a.mlp.up_proj.weight': { dtype: 'F32', shape: [2, 2], data_offsets: [0, 16] },
      'a.mlp.down_proj.weight': { dtype: 'F32', shape: [2, 2], data_offsets: [8, 24] },
    }, new Uint8Array(24)));
    assertCleanFailure(convert(dir), path.join(dir, 'model.safetensors'), /overlap/);
  });

  it('bytes not matching the shape', () => {
    const dir = checkpoint(rawSafetensors({ 'a.mlp.up_proj.weight': { dtype: 'F32', shape: [2, 2], data_offsets: [0, 12] } }, new Uint8Array(12)));
    assertCleanFailure(convert(dir), path.join(dir, 'model.safetensors'), /needs 16 bytes but data_offsets \[0, 12\] hold 12/);
  });

  it('missing config.json', () => {
    const dir = checkpoint(tinyModel(), { withConfig: false });
    assertCleanFailure(convert(dir), dir, /no config\.json/);
  });

  it('NaN/Inf in a weight: the error names the tensor; --allow-nonfinite converts anyway', () => {
    const model = Buffer.from(tinyModel());
    const n = Number(model.readBigUInt64LE(0));
    const header = JSON.parse(model.subarray(8, 8 + n).toString());
    // the first projection converted, so the float-model warning (issued after it) cannot precede the error
    const [begin] = header['model.layers.0.mlp.down_proj.weight'].data_offsets as [number, number];
    model.writeFloatLE(NaN, 8 + n + begin + 4 * 7);
    model.writeFloatLE(-Infinity, 8 + n + begin + 4 * 9);
    const dir = checkpoint(model);
    assertCleanFailure(convert(dir), path.join(dir, 'model.safetensors'), /tensor model\.layers\.0\.mlp\.down_proj\.weight holds 2 NaN\/Inf value\(s\), the first at element 7/);
    const r = convert(dir, '--allow-nonfinite', '--json');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).tensors.ternarized, 14);
  });

  it('output directory missing', () => {
    const target = path.join(out, 'no-such-dir', 'model.tpk');
    assertCleanFailure(runCli(['convert', TINY, '-o', target]), target, /output directory .* does not exist/);
  });

  it('output exists without --force: refused and left untouched', () => {
    const target = path.join(out, 'model.tpk');
    writeFileSync(target, 'precious');
    const r = convert(TINY);
    assert.notEqual(r.code, 0);
    assert.equal(r.stderr.trimEnd().split('\n').length, 1);
    assert.match(r.stderr, new RegExp(`${target.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: already exists .*--force`));
    assert.deepEqual(readdirSync(out), ['model.tpk']);
    assert.equal(readFileSync(target, 'utf8'), 'precious');
    assert.equal(convert(TINY, '--force').code, 0);
    assert.ok(existsSync(target) && readFileSync(target).subarray(0, 8).toString('latin1') === 'TRITPACK');
  });
});
