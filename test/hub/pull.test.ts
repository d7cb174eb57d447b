import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, readFileSync, readdirSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pullModel, type PullProgress } from '../../src/hub/pull.js';
import { fixtureDir } from '../support/fixtures.js';
import { TOKEN, OTHER_TOKEN, rejection, useFixtureHub } from '../support/hub-repos.js';

const TINY = fixtureDir('tinystories-656K');
const TINY_FILES = ['config.json', 'generation_config.json', 'model.safetensors', 'special_tokens_map.json', 'tokenizer.json', 'tokenizer_config.json'];
// sha256 of the fixture's weights as recorded in its SOURCE.md (computed when the fixture was made).
const TINY_WEIGHTS_SHA256 = '187d0d5e8360d9625e40e0b35ec57d1ef0eea1a60ddcf09412246bed3484852f';

/** git's own blob id for a file, as the hub reports it for non-LFS files. */
function gitHashObject(file: string): string {
  return execFileSync('git', ['hash-object', '--no-filters', file], { encoding: 'utf8' }).trim();
}


describe('hub pull (against the local hub server)', function () {
  const fx = useFixtureHub({ pageSize: 4 });

  const pull = (repo: string, extra: Partial<Parameters<typeof pullModel>[0]> = {}) =>
    pullModel({ repo, endpoint: fx.hub.url, cacheDir: fx.cache, retries: 0, ...extra });

  it('pulls the single-file fixture byte-identical into the Python cache layout', async () => {
    const result = await pull('alice/tinystories');
    assert.deepEqual(result.files.map((f) => f.path), TINY_FILES);
    const storage = path.join(fx.cache, 'models--alice--tinystories');
    const commit = fx.hub.commitOf('alice/tinystories');
    assert.equal(result.commit, commit);
    assert.equal(result.snapshotPath, path.join(storage, 'snapshots', commit));
    assert.equal(readFileSync(path.join(storage, 'refs', 'main'), 'utf8'), commit); // no newline, as Python writes it
    assert.deepEqual(readdirSync(result.snapshotPath).sort(), TINY_FILES);
    for (const name of TINY_FILES) {
      const pointer = path.join(result.snapshotPath, name);
      assert.ok(lstatSync(pointer).isSymbolicLink(), `${name} is a symlink`);
      const etag = name === 'model.safetensors' ? TINY_WEIGHTS_SHA256 : gitHashObject(path.join(TINY, name));
      assert.equal(readlinkSync(pointer), `../../blobs/${etag}`);
      assert.deepEqual(readFileSync(pointer), readFileSync(path.join(TINY, name)), `${name} byte-identical`);
    }
    assert.deepEqual(readdirSync(path.join(storage, 'blobs')).length, TINY_FILES.length);
    const total = TINY_FILES.reduce((sum, n) => sum + statSync(path.join(TINY, n)).size, 0);
    assert.equal(result.bytes, total);
    assert.equal(result.downloadedBytes, total);
    assert.equal(fx.hub.bytesServed(), total); // nothing fetched twice, nothing extra (no probes)
  });

  it('pulls the sharded fixture (3 shards + index, paginated listing) byte-identical and reports progress', async () => {
    const sharded = fx.sharded;
    const events: PullProgress[] = [];
    const result = await pull('alice/llama-sharded', { onProgress: (e) => events.push(e) });
    const expected = readdirSync(sharded).filter((n) => n.endsWith('.safetensors') || n.endsWith('.json') && n !== 'reference.json').sort();
    assert.deepEqual(result.files.map((f) => f.path), expected);
    for (const name of expected) assert.deepEqual(readFileSync(path.join(result.snapshotPath, name)), readFileSync(path.join(sharded, name)), name);
    assert.ok(fx.hub.requests.filter((r) => r.path.includes('/tree/')).length >= 3, 'listing was paginated');
    const plan = events[0];
    assert.ok(plan && plan.kind === 'plan');
    assert.equal(plan.totalBytes, result.bytes);
    const last = events.at(-1);
    assert.ok(last && last.kind === 'file' && last.done && last.totalDone === result.bytes);
  });

  it('resumes a pull cut mid-shard: byte-identical, and only the missing bytes are fetched again', async () => {
    const sharded = fx.sharded;
    const shard2 = 'model-00002-of-00003.safetensors';
    const shard2Size = statSync(path.join(sharded, shard2)).size;
    fx.hub.injectFault({ path: `/resolve/`, fault: { kind: 'drop', afterBytes: 1_000_000 }, times: 1, method: 'GET' });
    // The fault hits the first file fetched; make that the shard by asking for it alone first.
    const err = await rejection(pull('alice/llama-sharded', { include: [shard2] }));
    const cut = new RegExp(`download of ${shard2} was interrupted after (\\d+) of ${shard2Size} bytes.*run the same command again to resume`).exec(err.message);
    assert.ok(cut, err.message);
    // The server sent 1,000,000 bytes; the client may drop what it had buffered but not yet
    // written when the connection failed (undici discards it on a loaded machine), never more.
    const kept = Number(cut[1]);
    assert.ok(kept > 0 && kept <= 1_000_000, `kept ${kept}`);
    const storage = path.join(fx.cache, 'models--alice--llama-sharded');
    assert.ok(!existsSync(path.join(storage, 'snapshots')), 'nothing in the snapshot after a failed pull');
    const partial = readdirSync(path.join(storage, 'blobs'));
    assert.equal(partial.length, 1);
    assert.match(partial[0]!, /\.incomplete$/);
    assert.equal(statSync(path.join(storage, 'blobs', partial[0]!)).size, kept);

    await fx.hub.clearRequests();
    const result = await pull('alice/llama-sharded');
    for (const f of result.files) assert.deepEqual(readFileSync(path.join(result.snapshotPath, f.path)), readFileSync(path.join(sharded, f.path)), f.path);
    assert.equal(fx.hub.bytesServed(shard2), shard2Size - kept);
    const shardRequests = fx.hub.requests.filter((r) => r.path.endsWith(shard2));
    assert.deepEqual(shardRequests.map((r) => r.range), [`bytes=${kept}-${shard2Size - 1}`]);

    // A third pull fetches nothing at all: every blob is there.
    await fx.hub.clearRequests();
    const again = await pull('alice/llama-sharded');
    assert.equal(fx.hub.bytesServed(), 0);
    assert.equal(again.downloadedBytes, 0);
    assert.ok(again.files.every((f) => f.cached));
  });

  it('resumes by itself after a dropped connection, a 500 or a stall when retries are allowed', async () => {
    fx.hub.injectFault({ path: 'model.safetensors', fault: { kind: 'drop', afterBytes: 700_000 }, times: 1 });
    fx.hub.injectFault({ path: 'tokenizer.json', fault: { kind: 'status', status: 500 }, times: 1 });
    fx.hub.injectFault({ path: 'config.json', fault: { kind: 'delay', ms: 1500 }, times: 1 });
    const result = await pull('alice/tinystories', { retries: 2, stallTimeoutMs: 400 });
    for (const name of TINY_FILES) assert.deepEqual(readFileSync(path.join(result.snapshotPath, name)), readFileSync(path.join(TINY, name)), name);
    // Every retry resumes where the bytes on disk end. (Summing bytes served would over-count on a loaded
    // machine: a transfer slow enough to count as a stall is abandoned with bytes still in the socket.)
    const size = statSync(path.join(TINY, 'model.safetensors')).size;
    const weights = fx.hub.requests.filter((r) => r.path.endsWith('/model.safetensors'));
    assert.ok(weights.length >= 2, 'the dropped download was retried');
    assert.equal(weights[0]!.range, undefined);
    for (const retry of weights.slice(1)) assert.match(retry.range ?? '', /^bytes=[1-9]\d*-/, 'a retry asks only for the rest');
    const last = weights.at(-1)!;
    assert.equal(last.bodyBytes, size - Number(/^bytes=(\d+)-/.exec(last.range!)![1]), 'the last retry fetched exactly the rest');
  });

  it('serving wrong bytes is a checksum error and leaves nothing in the snapshot', async () => {
    fx.hub.injectFault({ path: 'model.safetensors', fault: { kind: 'corrupt' } });
    const err = await rejection(pull('alice/tinystories'));
    assert.match(err.message, /checksum mismatch for model\.safetensors/);
    assert.match(err.message, new RegExp(TINY_WEIGHTS_SHA256));
    const storage = path.join(fx.cache, 'models--alice--tinystories');
    assert.ok(!existsSync(path.join(storage, 'snapshots')));
    assert.ok(!existsSync(path.join(storage, 'refs')));
    assert.ok(!readdirSync(path.join(storage, 'blobs')).some((n) => n.startsWith(TINY_WEIGHTS_SHA256)), 'no blob or partial left for the bad file');
  });

  it('private repos need the token; a wrong token is a 401, an unknown repo a 404; the token never shows', async () => {
    const noToken = await rejection(pull('alice/private-tiny'));
    assert.match(noToken.message, /^401 Unauthorized for alice\/private-tiny on http:\/\/127\.0\.0\.1:\d+: the repo does not exist, or is private or gated.*--token or HF_TOKEN/);
    const wrong = 'hf_wrongTokenXYZ123456789';
    const badToken = await rejection(pull('alice/private-tiny', { token: wrong }));
    assert.match(badToken.message, /^401 Unauthorized for alice\/private-tiny .*the token was refused/);
    const otherUser = await rejection(pull('alice/private-tiny', { token: OTHER_TOKEN }));
    assert.match(otherUser.message, /^404 Not Found: alice\/private-tiny/);
    const missing = await rejection(pull('alice/no-such-model', { token: TOKEN }));
    assert.match(missing.message, /^404 Not Found: alice\/no-such-model on http:\/\/127\.0\.0\.1:\d+ \(Repository not found\)/);
    const ok = await pull('alice/private-tiny', { token: TOKEN });
    assert.deepEqual(readFileSync(path.join(ok.snapshotPath, 'model.safetensors')), readFileSync(path.join(TINY, 'model.safetensors')));
    // HF_TOKEN is honoured like --token.
    process.env.HF_TOKEN = TOKEN;
    try { await pull('alice/private-tiny'); } finally { delete process.env.HF_TOKEN; }
    // A hub that echoes the token back still does not get it printed.
    fx.hub.injectFault({ path: '/api/', fault: { kind: 'status', status: 500, message: `bad token ${TOKEN} and ${wrong}` }, times: 1 });
    const echoed = await rejection(pull('alice/tinystories', { token: TOKEN, revision: 'main' }));
    for (const err of [noToken, badToken, otherUser, missing, echoed]) {
      assert.ok(!err.message.includes(TOKEN) && !err.message.includes(wrong), `token leaked: ${err.message}`);
    }
    assert.match(echoed.message, /bad token hf_\*\*\* and hf_\*\*\*/);
  });

  it('pulls an empty file like any other (it has nothing to transfer, and still its git blob id)', async () => {
    const empty = path.join(fx.root, '..', 'empty.txt');
    writeFileSync(empty, '');
    fx.hub.createRepoOnDisk('alice/with-empty', { 'config.json': path.join(TINY, 'config.json'), 'notes.txt': empty });
    const result = await pull('alice/with-empty', { include: ['*'] });
    assert.deepEqual(result.files.map((f) => [f.path, f.size]), [['config.json', 649], ['notes.txt', 0]]);
    assert.equal(readlinkSync(path.join(result.snapshotPath, 'notes.txt')), `../../blobs/${gitHashObject(empty)}`);
    assert.equal(readFileSync(path.join(result.snapshotPath, 'notes.txt'), 'utf8'), '');
  });

  it('a cache it cannot write is a local error naming the path, not a network one', async () => {
    const notADir = path.join(fx.root, '..', 'cache-is-a-file');
    writeFileSync(notADir, 'x');
    const err = await rejection(pull('alice/tinystories', { cacheDir: notADir }));
    assert.match(err.message, /^cannot mkdir .*cache-is-a-file\/models--alice--tinystories\/blobs in the hub cache \(ENOTDIR\)$/);
  });

  it('refuses a pickle-only repo, saying why and what to do', async () => {
    fx.hub.createRepoOnDisk('alice/pickled', { 'config.json': path.join(TINY, 'config.json'), 'pytorch_model.bin': path.join(TINY, 'model.safetensors') });
    const err = await rejection(pull('alice/pickled'));
    assert.match(err.message, /has only pickle weights \(pytorch_model\.bin\)/);
    assert.match(err.message, /runs arbitrary code/);
    assert.match(err.message, /safetensors/);
    assert.equal(fx.hub.bytesServed(), 0, 'nothing was downloaded');
    const explicit = await rejection(pull('alice/pickled', { include: ['*.bin'] }));
    assert.match(explicit.message, /selects pickle weights/);
    // Asking only for what is safe works, pickles or not.
    const configOnly = await pull('alice/pickled', { include: ['config.json'] });
    assert.deepEqual(configOnly.files.map((f) => f.path), ['config.json']);
    assert.deepEqual(readFileSync(path.join(configOnly.snapshotPath, 'config.json')), readFileSync(path.join(TINY, 'config.json')));
  });

  it('refuses listings with names that would escape the cache', async () => {
    for (const evil of ['../../evil.safetensors', '/etc/evil.safetensors', 'a/../../evil.safetensors']) {
      // A hostile hub: the listing is rewritten on its way to the client.
      const hostile: typeof fetch = async (input, init) => {
        const res = await fetch(input, init);
        if (!String(input instanceof Request ? input.url : input).includes('/tree/')) return res;
        const items = (await res.json()) as { path: string }[];
        for (const item of items) if (item.path === 'model.safetensors') item.path = evil;
        return new Response(JSON.stringify(items), { status: res.status, headers: res.headers });
      };
      const err = await rejection(pull('alice/tinystories', { fetch: hostile }));
      assert.match(err.message, /refusing file name from alice\/tinystories@main's listing ".*evil\.safetensors": it is absolute or contains "\.\."/);
      assert.equal(fx.hub.bytesServed(), 0);
    }
    assert.ok(!existsSync(path.join(fx.cache, 'models--alice--tinystories', 'snapshots')));
  });

  it('works offline from the cache, and refuses offline what the cache lacks', async () => {
    const online = await pull('alice/tinystories');
    await fx.hub.close();
    const offline = await pull('alice/tinystories', { offline: true });
    assert.equal(offline.snapshotPath, online.snapshotPath);
    assert.deepEqual(offline.files.map((f) => f.path), TINY_FILES);
    process.env.HF_HUB_OFFLINE = '1';
    try {
      const viaEnv = await pull('alice/tinystories');
      assert.equal(viaEnv.commit, online.commit);
      const err = await rejection(pull('alice/llama-sharded'));
      assert.match(err.message, /alice\/llama-sharded@main is not in the hub cache .* offline mode is on/);
    } finally { delete process.env.HF_HUB_OFFLINE; }
  });

  it('takes its cache from HF_HUB_CACHE / HF_HOME and its endpoint from HF_ENDPOINT', async () => {
    process.env.HF_ENDPOINT = fx.hub.url;
    try {
      const viaHome = await pullModel({ repo: 'alice/tinystories@main' });
      assert.equal(viaHome.snapshotPath, path.join(fx.home, 'hub', 'models--alice--tinystories', 'snapshots', viaHome.commit));
      process.env.HF_HUB_CACHE = fx.cache;
      const viaCache = await pullModel({ repo: 'alice/tinystories' });
      assert.ok(viaCache.snapshotPath.startsWith(fx.cache + path.sep));
    } finally { process.env.HF_ENDPOINT = 'http://127.0.0.1:9'; delete process.env.HF_HUB_CACHE; }
  });
});
