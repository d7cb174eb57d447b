import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { RateMeter } from '../../src/cli/transfer-progress.js';
import { pullModel } from '../../src/hub/pull.js';
import { fixtureDir } from '../support/fixtures.js';
import { TOKEN, useFixtureHub } from '../support/hub-repos.js';

const WEIGHTS = path.join(fixtureDir('tinystories-656K'), 'model.safetensors');

// The test hub's own contract: what the pull/push tests rely on it to do like the real hub.
describe('test hub server', function () {
  const fx = useFixtureHub();
  const url = (p: string) => `${fx.hub.url}${p}`;

  it('listens on 127.0.0.1 only and serves byte ranges like the hub (206, Content-Range, 416)', async () => {
    assert.match(fx.hub.url, /^http:\/\/127\.0\.0\.1:\d+$/);
    const bytes = readFileSync(WEIGHTS);
    const part = await fetch(url('/alice/tinystories/resolve/main/model.safetensors'), { headers: { Range: 'bytes=100-199' } });
    assert.equal(part.status, 206);
    assert.equal(part.headers.get('content-range'), `bytes 100-199/${bytes.length}`);
    assert.deepEqual(Buffer.from(await part.arrayBuffer()), bytes.subarray(100, 200));
    const tail = await fetch(url('/alice/tinystories/resolve/main/model.safetensors'), { headers: { Range: `bytes=${bytes.length - 10}-` } });
    assert.deepEqual(Buffer.from(await tail.arrayBuffer()), bytes.subarray(bytes.length - 10));
    const beyond = await fetch(url('/alice/tinystories/resolve/main/model.safetensors'), { headers: { Range: `bytes=${bytes.length}-` } });
    assert.equal(beyond.status, 416);
    const missing = await fetch(url('/alice/tinystories/resolve/main/nope.json'));
    assert.equal(missing.status, 404);
    assert.equal(missing.headers.get('x-error-code'), 'EntryNotFound');
    const badRev = await fetch(url(`/alice/tinystories/resolve/${'0'.repeat(40)}/config.json`));
    assert.equal(badRev.status, 404);
    assert.equal(badRev.headers.get('x-error-code'), 'RevisionNotFound');
  });

  it('refuses LFS uploads whose bytes do not match, one-time tickets, and commit paths that escape the repo', async () => {
    const before = fx.hub.commitOf('alice/tinystories');
    const auth = { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' };
    const data = Buffer.from('ternary bytes');
    const oid = createHash('sha256').update(data).digest('hex');
    const batch = await fetch(url('/alice/tinystories.git/info/lfs/objects/batch'), {
      method: 'POST', headers: auth, body: JSON.stringify({ operation: 'upload', transfers: ['basic'], objects: [{ oid, size: data.length }] }),
    });
    const href = (await batch.json() as { objects: { actions: { upload: { href: string } } }[] }).objects[0]!.actions.upload.href;
    assert.ok(href.startsWith(fx.hub.url));
    const wrong = await fetch(href, { method: 'PUT', body: Buffer.from('ternary bytez') });
    assert.equal(wrong.status, 400);
    const reused = await fetch(href, { method: 'PUT', body: data });
    assert.equal(reused.status, 403);
    const commit = (line: object) => fetch(url('/api/models/alice/tinystories/commit/main'), {
      method: 'POST', headers: { ...auth, 'Content-Type': 'application/x-ndjson' },
      body: [JSON.stringify({ key: 'header', value: { summary: 'x' } }), JSON.stringify(line)].join('\n'),
    });
    for (const p of ['../escape.txt', '/abs.txt', 'a/./b', '.hub/repo.json']) {
      assert.equal((await commit({ key: 'file', value: { path: p, content: 'eA==', encoding: 'base64' } })).status, 400, p);
    }
    assert.equal((await commit({ key: 'lfsFile', value: { path: 'x.bin', oid, size: data.length, algo: 'sha256' } })).status, 422, 'never uploaded');
    assert.equal(fx.hub.commitOf('alice/tinystories'), before, 'refused commits change nothing');
  });

  it('throttles on request, and a slow hub still delivers the right bytes', async () => {
    fx.hub.injectFault({ path: 'tokenizer.json', fault: { kind: 'throttle', bytesPerSecond: 200_000 } });
    const started = performance.now();
    const result = await pullModel({ repo: 'alice/tinystories', endpoint: fx.hub.url, cacheDir: fx.cache, include: ['tokenizer.json'] });
    const seconds = (performance.now() - started) / 1000;
    assert.ok(seconds >= 0.35, `86 kB at 200 kB/s took ${seconds} s`);
    assert.deepEqual(readFileSync(path.join(result.snapshotPath, 'tokenizer.json')), readFileSync(path.join(fixtureDir('tinystories-656K'), 'tokenizer.json')));
  });
});

describe('hub progress rate', () => {
  it('measures bytes/s over a sliding window, so a stall shows', () => {
    let now = 0;
    const meter = new RateMeter(3000, () => now);
    for (let i = 0; i < 10; i++) { now += 100; meter.add(100_000); } // 1 MB/s for a second
    assert.ok(Math.abs(meter.bytesPerSecond() - 1_000_000) < 1e-6);
    now += 5000;
    meter.add(0);
    assert.equal(meter.bytesPerSecond(), 0);
  });
});
