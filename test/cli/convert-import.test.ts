/**
 * `tritpack convert` on the inputs issue 5 adds: an HF offline-packed BitNet directory and a
 * GGUF file (built CLI). Malformed GGUF must give one line naming the file, exit 2, no output.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { runCli } from '../support/cli.js';
import { fixtureDir, makeTempDir } from '../support/fixtures.js';

describe('cli/convert (imports)', function () {
  this.timeout(120000);
  let temp: ReturnType<typeof makeTempDir>;
  beforeEach(() => { temp = makeTempDir(); });
  afterEach(() => temp.cleanup());

  it('bitnet-tiny-packed → convert → export hf-bitnet reproduces model.safetensors byte for byte', () => {
    const tpk = path.join(temp.dir, 'p.tpk');
    const c = runCli(['convert', fixtureDir('bitnet-tiny-packed'), '-o', tpk, '--json']);
    assert.equal(c.code, 0, c.stderr);
    assert.equal(JSON.parse(c.stdout).tensors.ternarized, 14);
    assert.equal(JSON.parse(c.stdout).imported, 14);
    // The human summary says the codes were taken as stored, not ternarized again.
    const human = runCli(['convert', fixtureDir('bitnet-tiny-packed'), '-o', path.join(temp.dir, 'p2.tpk')]);
    assert.match(human.stdout, /tensors\s+14 ternarized \(14 imported as stored\), 10 kept \(24 in all\)/);
    assert.match(human.stdout, /packing\s+t158, scale imported, formula imported/);
    const out = path.join(temp.dir, 'hf');
    const e = runCli(['export', tpk, '--to', 'hf-bitnet', '-o', out]);
    assert.equal(e.code, 0, e.stderr);
    const sha = createHash('sha256').update(readFileSync(path.join(out, 'model.safetensors'))).digest('hex');
    assert.equal(sha, '006a0395f99c697108ab1ffb63e66f43b00d18f0d0b03fdb27e034709b3d20e8');
  });

  it('GGUF → convert → .tpk (llama-256 round trip through export)', () => {
    const tpk = path.join(temp.dir, 'l.tpk');
    assert.equal(runCli(['convert', fixtureDir('llama-256'), '-o', tpk]).code, 0);
    const gguf = path.join(temp.dir, 'l.gguf');
    assert.equal(runCli(['export', tpk, '--to', 'gguf', '-o', gguf, '--type', 'tq1_0']).code, 0);
    const back = runCli(['convert', gguf, '-o', path.join(temp.dir, 'back.tpk'), '--json']);
    assert.equal(back.code, 0, back.stderr);
    const s = JSON.parse(back.stdout);
    assert.equal(s.tensors.ternarized, 14);
    assert.equal(s.ternaryTraining, 'ternary-valued');
  });

  for (const [what, patch, problem] of [
    ['bad magic', (b: Buffer) => b.write('GGML', 0, 'latin1'), /not a GGUF file \(magic 47 47 4d 4c/],
    ['unknown version', (b: Buffer) => b.writeUInt32LE(4, 4), /unsupported GGUF version 4/],
    ['tensor count beyond the file', (b: Buffer) => b.writeBigUInt64LE(2n ** 60n, 8), /tensor count .* larger than the rest of the file/],
    ['string length beyond the file', (b: Buffer) => b.writeBigUInt64LE(2n ** 40n, 24), /length .* larger than the rest of the file/],
  ] as const) {
    it(`malformed GGUF (${what}): one line naming the file, exit 2, no output`, () => {
      const tpk = path.join(temp.dir, 'l.tpk');
      assert.equal(runCli(['convert', fixtureDir('llama-256'), '-o', tpk]).code, 0);
      const gguf = path.join(temp.dir, 'bad.gguf');
      assert.equal(runCli(['export', tpk, '--to', 'gguf', '-o', gguf]).code, 0);
      const bytes = readFileSync(gguf);
      patch(bytes);
      writeFileSync(gguf, bytes);
      const r = runCli(['convert', gguf, '-o', path.join(temp.dir, 'out.tpk')]);
      assert.equal(r.code, 2);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.match(r.stderr, new RegExp(`bad\\.gguf`));
      assert.match(r.stderr, problem);
      assert.deepEqual(readdirSync(temp.dir).sort(), ['bad.gguf', 'l.tpk']);
    });
  }
});
