import assert from 'node:assert/strict';
import { readFileSync, statSync, writeFileSync, copyFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { convertCheckpoint, type ConversionSummary } from '../../src/converters/convert.js';
import { updateTpkHeader } from '../../src/formats/tpk.js';
import { pullModel } from '../../src/hub/pull.js';
import { pushModel, type PushProgress } from '../../src/hub/push.js';
import { fixtureDir, makeTempDir } from '../support/fixtures.js';
import { OTHER_TOKEN, TOKEN, rejection, startFixtureHub, useFixtureHub } from '../support/hub-repos.js';

describe('hub push (against the local hub server)', function () {
  const fx = useFixtureHub();
  let work: ReturnType<typeof makeTempDir>;
  let tpk: string;
  let summary: ConversionSummary;

  before(async () => {
    work = makeTempDir('tritpack-push-');
    // The realistic path: pull the source from the hub, convert the cached snapshot, push the result.
    const origin = await startFixtureHub();
    try {
      const source = await pullModel({ repo: 'alice/tinystories', endpoint: origin.hub.url, cacheDir: path.join(work.dir, 'cache') });
      tpk = path.join(work.dir, 'tiny.tpk');
      summary = await convertCheckpoint({ input: source.snapshotPath, output: tpk });
    } finally { await origin.cleanup(); }
  });
  after(() => work.cleanup());

  const push = (extra: Partial<Parameters<typeof pushModel>[0]> = {}) =>
    pushModel({ path: tpk, repo: 'alice/tiny-ternary', endpoint: fx.hub.url, token: TOKEN, ...extra });

  it('--dry-run lists the files and renders the card without touching the hub or needing a token', async () => {
    const result = await pushModel({ path: tpk, repo: 'alice/tiny-ternary', endpoint: fx.hub.url, dryRun: true });
    assert.equal(fx.hub.requests.length, 0);
    assert.deepEqual(result.files.map((f) => f.path), ['tiny.tpk', 'README.md']);
    assert.equal(result.files[0]!.size, statSync(tpk).size);
    const card = result.card;
    assert.ok(card.startsWith('---\nbase_model: alice/tinystories\nbase_model_relation: quantized\ntags:\n- ternary\n- bitnet\n- 1.58-bit\n- tritpack\npipeline_tag: text-generation\n---\n'), card.slice(0, 300));
    assert.match(card, /\| Packing \| t158: base-3, 5 ternary codes per byte/);
    assert.match(card, /\| Scale granularity \| tensor /);
    assert.match(card, new RegExp(`at \`${fx.hub.commitOf('alice/tinystories')}\``));
    // Sizes against convert's own accounting and the fixture's parameter count (656K).
    assert.match(card, /\| Parameters \| 656,000: 393,216 ternarized, 262,784 kept/);
    assert.match(card, new RegExp(`\\| Bits per weight, ternarized tensors \\| ${summary.bitsPerWeight.ternarized.toFixed(3)} `));
    assert.match(card, new RegExp(`\\| Bits per weight, all tensors \\| ${summary.bitsPerWeight.overall.toFixed(3)} \\|`));
    assert.match(card, /tritpack generate "\$dir\/tiny\.tpk"/);
    // Every command the card shows is one the CLI takes as written.
    assert.match(card, /\$\(tritpack pull alice\/tiny-ternary\)/);
    assert.match(card, /`tritpack export "\$dir\/tiny\.tpk" --to gguf -o tiny\.gguf`/);
    assert.doesNotMatch(card, /## Validation/);
    assert.ok(!card.includes(work.dir), 'no local paths in the card');
  });

  it('push then pull round-trips the .tpk byte-identical, with the card as README.md', async () => {
    const events: PushProgress[] = [];
    const result = await push({ create: true, onProgress: (e) => events.push(e) });
    assert.equal(result.created, true);
    assert.match(result.commit!.oid, /^[0-9a-f]{40}$/);
    assert.equal(result.commit!.oid, fx.hub.commitOf('alice/tiny-ternary'));
    const uploads = events.filter((e): e is Extract<PushProgress, { kind: 'file' }> => e.kind === 'file' && e.state === 'uploading');
    assert.equal(uploads.at(-1)?.bytes, statSync(tpk).size, 'upload progress counts every byte of the .tpk');
    const lfsPut = fx.hub.requests.filter((r) => r.method === 'PUT' && r.path.startsWith('/__lfs/upload/'));
    assert.equal(lfsPut.length, 1, 'the .tpk went through the LFS basic transfer');

    const pulled = await pullModel({ repo: 'alice/tiny-ternary', endpoint: fx.hub.url, cacheDir: path.join(work.dir, 'pull-cache') });
    assert.deepEqual(pulled.files.map((f) => f.path), ['README.md', 'tiny.tpk']);
    assert.deepEqual(readFileSync(path.join(pulled.snapshotPath, 'tiny.tpk')), readFileSync(tpk));
    assert.equal(readFileSync(path.join(pulled.snapshotPath, 'README.md'), 'utf8'), result.card);

    // Pushing again to an existing repo with --create is fine; the same bytes are not uploaded twice.
    await fx.hub.clearRequests();
    const again = await push({ create: true, message: 'again' });
    assert.equal(again.created, false);
    assert.equal(fx.hub.requests.filter((r) => r.method === 'PUT').length, 0);
  });

  it('reads the licence from the source model card next to the checkpoint', async () => {
    const card = path.join(work.dir, 'source-card');
    mkdirSync(card, { recursive: true });
    for (const name of ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'generation_config.json']) {
      copyFileSync(path.join(fixtureDir('tinystories-656K'), name), path.join(card, name));
    }
    // The source's card declares its licence (the fixture's model card says Apache-2.0).
    writeFileSync(path.join(card, 'README.md'), '---\nlanguage: en\nlicense: apache-2.0\n---\n# TinyStories-656K\n');
    const licensed = path.join(work.dir, 'licensed.tpk');
    await convertCheckpoint({ input: card, output: licensed });
    const result = await pushModel({ path: licensed, repo: 'alice/x', dryRun: true });
    assert.ok(result.card.startsWith('---\nlicense: apache-2.0\ntags:\n'), result.card.slice(0, 100));
    assert.match(result.card, /Source \| a local checkpoint/);
    // Only the front matter declares a licence; a body that quotes one (after a --- rule) does not.
    writeFileSync(path.join(card, 'README.md'), '---\nlanguage: en\n---\n# Notes\n\n---\nlicense: mit\n');
    const unlicensed = await pushModel({ path: licensed, repo: 'alice/x', dryRun: true });
    assert.ok(unlicensed.card.startsWith('---\ntags:\n'), unlicensed.card.slice(0, 100));
  });

  it('renders the embedded validation report: its own Markdown, or the verdict and thresholds of any report shape', async () => {
    const validated = path.join(work.dir, 'validated.tpk');
    copyFileSync(tpk, validated);
    updateTpkHeader(validated, { validation: { verdict: 'FAIL', reasons: ['top-1 agreement 0.31 is below --min-top1 0.9'], thresholds: { maxPplRatio: 1.1, minTop1: 0.9, maxKl: 0.05 }, metrics: { pplRatio: 3.25, top1Agreement: 0.31, original: { perplexity: 5.5 } } } });
    const plain = (await pushModel({ path: validated, repo: 'alice/x', dryRun: true })).card;
    assert.match(plain, /## Validation\n\n\*\*Verdict: FAIL\*\* — top-1 agreement 0\.31 is below --min-top1 0\.9/);
    assert.match(plain, /\| pplRatio \| 3\.25 \|/);
    assert.match(plain, /\| original perplexity \| 5\.5 \|/);
    assert.match(plain, /\| minTop1 \| 0\.9 \|/);
    updateTpkHeader(validated, { validation: { verdict: 'PASS', markdown: '## Validation: ✅ PASS\n\n| check | value |\n|---|---|\n| ratio | 1.01 |' } });
    const rendered = (await pushModel({ path: validated, repo: 'alice/x', dryRun: true })).card;
    assert.match(rendered, /## Validation: ✅ PASS\n\n\| check \| value \|\n\|---\|---\|\n\| ratio \| 1\.01 \|\n/);
    updateTpkHeader(validated, { validation: 'not an object' });
    assert.doesNotMatch((await pushModel({ path: validated, repo: 'alice/x', dryRun: true })).card, /Validation/);
  });

  it('--private makes a repo that needs the token to pull; --branch commits to a new branch', async () => {
    await push({ repo: 'alice/secret', create: true, private: true });
    const cache = path.join(work.dir, 'private-cache');
    const denied = await rejection(pullModel({ repo: 'alice/secret', endpoint: fx.hub.url, cacheDir: cache }));
    assert.match(denied.message, /^401 Unauthorized/);
    const pulled = await pullModel({ repo: 'alice/secret', endpoint: fx.hub.url, cacheDir: cache, token: TOKEN });
    assert.deepEqual(readFileSync(path.join(pulled.snapshotPath, 'tiny.tpk')), readFileSync(tpk));

    await push({ repo: 'alice/tinystories', branch: 'ternary', message: 'Add the ternary version' });
    const branch = await pullModel({ repo: 'alice/tinystories@ternary', endpoint: fx.hub.url, cacheDir: cache, include: ['*.tpk', 'config.json'] });
    assert.deepEqual(branch.files.map((f) => f.path), ['config.json', 'tiny.tpk']);
    assert.equal(readFileSync(path.join(cache, 'models--alice--tinystories', 'refs', 'ternary'), 'utf8'), branch.commit);
    const main = await pullModel({ repo: 'alice/tinystories', endpoint: fx.hub.url, cacheDir: cache, include: ['*.tpk', 'config.json'] });
    assert.deepEqual(main.files.map((f) => f.path), ['config.json'], 'main is untouched');
  });

  it('says what is wrong without ever showing the token', async () => {
    const wrong = 'hf_notAValidToken1234567';
    const failures = [
      await rejection(pushModel({ path: tpk, repo: 'alice/new', endpoint: fx.hub.url, create: true })),
      await rejection(push({ repo: 'alice/new', create: true, token: wrong })),
      await rejection(push({ repo: 'alice/nope' })),
      await rejection(push({ repo: 'alice/tinystories', token: OTHER_TOKEN })),
      await rejection(push({ repo: 'alice/new', token: 'not-a-token' })),
    ];
    assert.match(failures[0]!.message, /push needs a hub token with write access: pass --token or set HF_TOKEN/);
    assert.match(failures[1]!.message, /^401 Unauthorized for alice\/new .*the token was refused/);
    assert.match(failures[2]!.message, /^404 Not Found: alice\/nope .*pass --create/);
    assert.match(failures[3]!.message, /^403 Forbidden for alice\/tinystories .*no write access/);
    assert.match(failures[4]!.message, /not a Hugging Face access token/);
    fx.hub.injectFault({ path: '/preupload/', fault: { kind: 'status', status: 500, message: `leaked ${TOKEN}` } });
    failures.push(await rejection(push({ create: true, repo: 'alice/new2' })));
    assert.match(failures[5]!.message, /answered 500 .*leaked hf_\*\*\*/);
    for (const f of failures) {
      for (const t of [TOKEN, wrong, OTHER_TOKEN, 'not-a-token']) assert.ok(!f.message.includes(t), `token in: ${f.message}`);
    }
    await rejection(pushModel({ path: path.join(work.dir, 'missing.tpk'), repo: 'alice/x', dryRun: true }));
    await rejection(pushModel({ path: tpk, repo: 'nonamespace', dryRun: true }));
  });

  it('pushes a directory as it is, with a generated card unless it has its own', async () => {
    const dir = path.join(work.dir, 'export');
    mkdirSync(path.join(dir, 'sub'), { recursive: true });
    copyFileSync(path.join(fixtureDir('llama-256'), 'config.json'), path.join(dir, 'config.json'));
    copyFileSync(path.join(fixtureDir('llama-256'), 'model.safetensors'), path.join(dir, 'model.safetensors'));
    writeFileSync(path.join(dir, 'sub', 'notes.txt'), 'hello');
    writeFileSync(path.join(dir, '.hidden'), 'not pushed');
    const result = await push({ path: dir, repo: 'alice/export', create: true });
    assert.deepEqual(result.files.map((f) => f.path), ['config.json', 'model.safetensors', 'sub/notes.txt', 'README.md']);
    assert.match(result.card, /^---\ntags:\n- ternary/);
    const pulled = await pullModel({ repo: 'alice/export', endpoint: fx.hub.url, cacheDir: path.join(work.dir, 'dir-cache'), include: ['**'] });
    assert.deepEqual(pulled.files.map((f) => f.path), ['README.md', 'config.json', 'model.safetensors', 'sub/notes.txt']);
    assert.deepEqual(readFileSync(path.join(pulled.snapshotPath, 'model.safetensors')), readFileSync(path.join(dir, 'model.safetensors')));
  });
});
