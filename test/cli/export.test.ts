/**
 * `tritpack export` as a user runs it (the built CLI: `npm run build` first).
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { gguf as parseIndependently } from '@huggingface/gguf';
import { runCli } from '../support/cli.js';
import { makeTempDir } from '../support/fixtures.js';
import { convertedFixture } from '../support/interop-models.js';

describe('cli/export', function () {
  this.timeout(120000);
  let temp: ReturnType<typeof makeTempDir>;
  beforeEach(() => { temp = makeTempDir(); });
  afterEach(() => temp.cleanup());

  it('--to gguf --type tq1_0 --json: summary with the tensor types; the file parses independently', async () => {
    const out = path.join(temp.dir, 'm.gguf');
    const r = runCli(['export', await convertedFixture('llama-256'), '--to', 'gguf', '-o', out, '--type', 'tq1_0', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const summary = JSON.parse(r.stdout);
    assert.equal(summary.to, 'gguf');
    assert.equal(summary.arch, 'llama');
    assert.equal(summary.ternary.weightsStillTernary, summary.ternary.weights);
    assert.equal(summary.tensors.filter((t: { type: string }) => t.type === 'TQ1_0').length, 14);
    const parsed = await parseIndependently(out, { allowLocalFile: true });
    assert.equal(parsed.tensorInfos.length, 21);
  });

  it('--to gguf on tinystories warns on stderr with the fallback tensors and says how many weights stayed ternary', async () => {
    const out = path.join(temp.dir, 't.gguf');
    const r = runCli(['export', await convertedFixture('tinystories-656K'), '--to', 'gguf', '-o', out]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /Warning: 14 ternary tensor\(s\) written as F16 because TQ2_0 cannot hold them: blk\.0\.ffn_down\.weight \(row length 384/);
    assert.match(r.stdout, /still ternary\s+0 of 393[,.]?216 ternary weights \(0\.0 %\)/);
  });

  it('--to hf-bitnet and --to safetensors write complete directories', async () => {
    const tpk = await convertedFixture('bitnet-tiny');
    const hf = path.join(temp.dir, 'hf');
    const r1 = runCli(['export', tpk, '--to', 'hf-bitnet', '-o', hf]);
    assert.equal(r1.code, 0, r1.stderr);
    assert.match(r1.stdout, /linear_class autobitlinear, offline; weight_scale = BF16 gamma/);
    assert.deepEqual(readdirSync(hf).sort(), ['config.json', 'generation_config.json', 'model.safetensors', 'special_tokens_map.json', 'tokenizer.json', 'tokenizer_config.json']);
    const plain = path.join(temp.dir, 'plain');
    const r2 = runCli(['export', tpk, '--to', 'safetensors', '-o', plain, '--dtype', 'bf16', '--json']);
    assert.equal(r2.code, 0, r2.stderr);
    const summary = JSON.parse(r2.stdout);
    assert.equal(summary.dtype, 'BF16');
    assert.ok(summary.warnings.some((w: string) => /quantization_config removed/.test(w)));
  });

  it('bad input: one-line errors, exit 2, nothing written', async () => {
    const tpk = await convertedFixture('llama-256');
    const missing = runCli(['export', path.join(temp.dir, 'nope.tpk'), '--to', 'gguf', '-o', path.join(temp.dir, 'x.gguf')]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /nope\.tpk: no such file/);

    const notTpk = path.join(temp.dir, 'bad.tpk');
    writeFileSync(notTpk, 'GGUF this is not a tpk');
    const bad = runCli(['export', notTpk, '--to', 'gguf', '-o', path.join(temp.dir, 'y.gguf')]);
    assert.equal(bad.code, 2);
    assert.equal(bad.stderr.trim().split('\n').length, 1, bad.stderr);

    const existing = path.join(temp.dir, 'exists.gguf');
    writeFileSync(existing, 'keep');
    const clash = runCli(['export', tpk, '--to', 'gguf', '-o', existing]);
    assert.equal(clash.code, 2);
    assert.match(clash.stderr, /already exists/);

    const dtype = runCli(['export', tpk, '--to', 'gguf', '-o', path.join(temp.dir, 'z.gguf'), '--dtype', 'f16']);
    assert.equal(dtype.code, 2);
    assert.match(dtype.stderr, /--dtype does not apply to --to gguf/);
    assert.deepEqual(readdirSync(temp.dir).sort(), ['bad.tpk', 'exists.gguf']);
    assert.ok(!existsSync(path.join(temp.dir, 'x.gguf')));
  });
});
