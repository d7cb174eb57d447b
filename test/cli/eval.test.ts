import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { runCli } from '../support/cli.js';
import { fixtureDir, loadReference, makeTempDir, textFixture } from '../support/fixtures.js';
import { assertUsageError, assertUsageErrorBothWays, packFixture } from '../support/validate-cli.js';

describe('cli: eval', () => {
  let temp: ReturnType<typeof makeTempDir>;
  let tpk: string;
  const model = fixtureDir('tinystories-656K');
  before(async () => {
    temp = makeTempDir();
    tpk = await packFixture('tinystories-656K', temp.dir);
  });
  after(() => temp.cleanup());
  const file = (name: string, content: string | Uint8Array) => { const p = path.join(temp.dir, name); writeFileSync(p, content); return p; };

  it('scores the first 512 tokenizer.json ids of the sample like the reference (--json), tokens/s on stderr', () => {
    const r = runCli(['eval', model, '--text', textFixture('tinystories_sample.txt'), '--max-tokens', '512', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    const want = loadReference('tinystories-656K').float32.nll.tinystories_sample_tokenizer_json_ids;
    assert.equal(out.scoredTokens, want.scored_tokens);
    assert.ok(Math.abs(out.meanNll - want.mean_nll) < 1e-4, `${out.meanNll} vs ${want.mean_nll}`);
    assert.ok(Math.abs(out.perplexity - want.ppl) < 1e-2);
    assert.equal(out.totalTokens, 891);
    assert.ok(out.tokensPerSecond > 0);
    const plain = runCli(['eval', model, '--text', textFixture('tinystories_sample.txt'), '--ctx', '128', '--stride', '64', '--max-tokens', '256']);
    assert.equal(plain.code, 0, plain.stderr);
    assert.match(plain.stdout, /perplexity\s+\d/);
    assert.match(plain.stdout, /windows\s+3 × 128 tokens, stride 64/);
    assert.match(plain.stderr, /tokens\/s/);
  });

  it('Shakespeare (1.1 MB) with --max-tokens 512 tokenizes only a prefix and matches the reference window NLL', () => {
    const started = Date.now();
    const r = runCli(['eval', tpk, '--text', textFixture('tinyshakespeare.txt'), '--max-tokens', '512', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    const want = loadReference('tinystories-656K').ternary_absmean.float32.nll.tinyshakespeare;
    assert.ok(Math.abs(out.meanNll - want.mean_nll) < 1e-3, `${out.meanNll} vs ${want.mean_nll}`);
    assert.equal(out.totalTokens, null);
    assert.ok(Date.now() - started < 10_000, 'a prefix, not the whole corpus, was tokenized');
  });

  it('one-line errors, exit 2, also under --json', () => {
    const short = file('short.txt', 'Once upon a time there was a cat.');
    assertUsageErrorBothWays(['eval', model, '--text', short], /short\.txt: is \d+ tokens long, shorter than one window of 512/);
    assertUsageErrorBothWays(['eval', model, '--text', file('empty.txt', '')], /empty\.txt: the text file is empty/);
    assertUsageErrorBothWays(['eval', model, '--text', file('latin1.txt', Uint8Array.from([0x43, 0x61, 0x66, 0xe9, 0x0a]))], /latin1\.txt: is not valid UTF-8 \(first bad byte at offset 3\)/);
    assertUsageErrorBothWays(['eval', model, '--text', textFixture('tinystories_sample.txt'), '--ctx', '1024'], /--ctx 1024 is beyond the 512 positions/);
    assertUsageErrorBothWays(['eval', model, '--text', path.join(temp.dir, 'missing.txt')], /missing\.txt: cannot read the text file \(ENOENT\)/);

    // A .tpk with one flipped byte in its last tensor blob: the blob's sha256 no longer matches.
    const bytes = readFileSync(tpk);
    bytes[bytes.length - 1] ^= 0x01;
    const flipped = file('flipped.tpk', bytes);
    assertUsageErrorBothWays(['eval', flipped, '--text', textFixture('tinystories_sample.txt')], /flipped\.tpk: .*sha256/);

    // A model directory without tokenizer.json.
    const noTok = path.join(temp.dir, 'no-tokenizer');
    mkdirSync(noTok);
    for (const f of ['config.json', 'generation_config.json', 'model.safetensors']) copyFileSync(path.join(model, f), path.join(noTok, f));
    assertUsageErrorBothWays(['eval', noTok, '--text', textFixture('tinystories_sample.txt')], /no-tokenizer: no tokenizer\.json/);

    // A hub repo id that is not cached, offline: nothing is fetched.
    const cache = path.join(temp.dir, 'hub-cache');
    mkdirSync(cache);
    assertUsageError(runCli(['eval', 'someone/tiny-model', '--text', textFixture('tinystories_sample.txt'), '--offline'], { env: { HF_HUB_CACHE: cache } }),
      /someone\/tiny-model.* is not in the hub cache .*offline/);
  });
});
