import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { TpkFile } from '../../src/formats/tpk.js';
import { runCli } from '../support/cli.js';
import { fixtureDir, makeTempDir, textFixture } from '../support/fixtures.js';
import { assertUsageErrorBothWays, packFixture } from '../support/validate-cli.js';

describe('cli: validate', () => {
  let temp: ReturnType<typeof makeTempDir>;
  let tinyTpk: string;
  let bitnetTpk: string;
  const tiny = fixtureDir('tinystories-656K');
  const sample = textFixture('tinystories_sample.txt');
  // Short windows keep these runs fast; the full-window figures are checked in test/validate/fixtures.test.ts.
  const quick = ['--text', sample, '--ctx', '128', '--max-tokens', '256', '--new-tokens', '8'];

  before(async () => {
    temp = makeTempDir();
    tinyTpk = await packFixture('tinystories-656K', temp.dir);
    bitnetTpk = await packFixture('bitnet-tiny', temp.dir);
  });
  after(() => temp.cleanup());

  it('post-training ternarized tinystories-656K: FAIL, exit 1, with a Markdown report and the report embedded in the .tpk', () => {
    const report = path.join(temp.dir, 'report.md');
    const r = runCli(['validate', tiny, tinyTpk, ...quick, '--report', report, '--embed']);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stdout, /^FAIL: perplexity ratio [\d.]+ exceeds --max-ppl-ratio 1\.1; top-1 agreement/m);
    assert.match(r.stdout, /ternary-trained: no\./);
    const md = readFileSync(report, 'utf8');
    assert.match(md, /^## Validation: ❌ FAIL/);
    assert.match(md, /\| `model\.layers\.0\.self_attn\.q_proj\.weight` \| 128×128 \| t158 \| tensor \| 0\.34572 \| 32\.6 % \|/);
    const tpk = TpkFile.open(tinyTpk);
    try {
      const v = tpk.header.validation as { verdict: string; markdown: string; metrics: { positions: number } };
      assert.equal(v.verdict, 'FAIL');
      assert.equal(v.markdown, md);
      assert.equal(v.metrics.positions, 255); // 2 windows of 128, stride 128: 127 + 128 positions
      assert.ok(tpk.verifyAll().every((t) => t.ok), 'embedding leaves every tensor blob intact');
    } finally { tpk.close(); }
  });

  it('--json prints the report and still exits 1 on FAIL', () => {
    const r = runCli(['validate', tiny, tinyTpk, ...quick, '--json']);
    assert.equal(r.code, 1, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.equal(out.verdict, 'FAIL');
    assert.ok(out.metrics.pplRatio > 10);
    assert.equal(out.continuations.length, 3);
  });

  it('a ternary-trained BitNet against its .tpk: PASS, exit 0', () => {
    const r = runCli(['validate', fixtureDir('bitnet-tiny'), bitnetTpk, ...quick, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.equal(out.verdict, 'PASS');
    assert.ok(Math.abs(out.metrics.pplRatio - 1) < 1e-6);
    assert.equal(out.metrics.top1Agreement, 1);
    assert.equal(out.ternaryTraining.ternaryTrained, true);
  });

  it('thresholds out of range and other bad input: one line, exit 2, also under --json', () => {
    assertUsageErrorBothWays(['validate', tiny, tinyTpk, ...quick, '--max-ppl-ratio', '0.9'], /--max-ppl-ratio must be a number ≥ 1/);
    assertUsageErrorBothWays(['validate', tiny, tinyTpk, ...quick, '--min-top1', '1.5'], /--min-top1 must be a fraction between 0 and 1/);
    assertUsageErrorBothWays(['validate', tiny, tinyTpk, ...quick, '--max-kl', '-0.1'], /--max-kl must be a number ≥ 0/);
    assertUsageErrorBothWays(['validate', tiny, tinyTpk, ...quick, '--max-kl', 'abc'], /--max-kl must be a number, got "abc"/);
    assertUsageErrorBothWays(['validate', tiny, tiny, ...quick, '--embed'], /--embed writes the report into a \.tpk/);
    assertUsageErrorBothWays(['validate', tiny, tinyTpk, '--text', sample, '--ctx', '1024'], /--ctx 1024 is beyond the 512 positions/);
    const empty = path.join(temp.dir, 'prompts.txt');
    writeFileSync(empty, '');
    assertUsageErrorBothWays(['validate', tiny, tinyTpk, ...quick, '--prompts', empty], /prompts\.txt: the text file is empty/);
  });
});
