import assert from 'node:assert/strict';
import { readFileSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { fileDownloadInfo, scanCacheDir, snapshotDownload } from '@huggingface/hub';
import { pullModel } from '../../src/hub/pull.js';
import { sourceFromCachePath } from '../../src/hub/cache.js';
import { fixtureDir } from '../support/fixtures.js';
import { useFixtureHub } from '../support/hub-repos.js';

// @huggingface/hub's cache functions follow Python's huggingface_hub layout; they are the
// independent reader and writer our cache must agree with.
describe('hub cache interop with @huggingface/hub (Python layout)', function () {
  const fx = useFixtureHub();

  it('scanCacheDir reads our cache: repo, ref, files and blob sizes', async () => {
    const ours = await pullModel({ repo: 'alice/llama-sharded', endpoint: fx.hub.url, cacheDir: fx.cache });
    const scan = await scanCacheDir(fx.cache);
    assert.deepEqual(scan.warnings, []);
    assert.equal(scan.repos.length, 1);
    const repo = scan.repos[0]!;
    assert.deepEqual(repo.id, { name: 'alice/llama-sharded', type: 'model' });
    assert.equal(repo.revisions.length, 1);
    assert.equal(repo.revisions[0]!.commitOid, ours.commit);
    assert.deepEqual(repo.revisions[0]!.refs, ['main']);
    assert.equal(repo.filesCount, ours.files.length);
    assert.equal(repo.size, ours.bytes);
  });

  it('finds what the library\'s snapshotDownload put in the cache, and fetches nothing it already has', async () => {
    const debug = console.debug;
    console.debug = () => {}; // the library announces every file
    let theirs: string;
    try { theirs = await snapshotDownload({ repo: 'alice/tinystories', hubUrl: fx.hub.url, cacheDir: fx.cache }); } finally { console.debug = debug; }
    await fx.hub.clearRequests();
    const offline = await pullModel({ repo: 'alice/tinystories', cacheDir: fx.cache, offline: true });
    assert.equal(realpathSync(offline.snapshotPath), realpathSync(theirs));
    const online = await pullModel({ repo: 'alice/tinystories', endpoint: fx.hub.url, cacheDir: fx.cache });
    assert.equal(online.snapshotPath, theirs);
    assert.equal(online.downloadedBytes, 0, 'same blob names (ETags), so every blob was reused');
    assert.equal(fx.hub.bytesServed(), 0);
  });

  it('the server answers the client\'s download probe with the hub\'s ETag and size headers', async () => {
    const info = await fileDownloadInfo({ repo: 'alice/tinystories', path: 'model.safetensors', hubUrl: fx.hub.url });
    assert.equal(info?.etag, '"187d0d5e8360d9625e40e0b35ec57d1ef0eea1a60ddcf09412246bed3484852f"');
    assert.equal(info?.size, readFileSync(path.join(fixtureDir('tinystories-656K'), 'model.safetensors')).length);
    assert.equal(await fileDownloadInfo({ repo: 'alice/tinystories', path: 'nope.bin', hubUrl: fx.hub.url }), null);
    const head = await fetch(`${fx.hub.url}/alice/tinystories/resolve/main/model.safetensors`, { method: 'HEAD' });
    assert.equal(head.headers.get('x-repo-commit'), fx.hub.commitOf('alice/tinystories'));
    assert.equal(head.headers.get('x-linked-etag'), info?.etag);
  });

  it('knows which repo and commit a snapshot path came from', () => {
    const commit = 'a'.repeat(40);
    assert.deepEqual(sourceFromCachePath(`/home/u/.cache/huggingface/hub/models--org--name/snapshots/${commit}`), { repo: 'org/name', commit });
    assert.deepEqual(sourceFromCachePath(`/c/models--gpt2/snapshots/${commit}/config.json`), { repo: 'gpt2', commit });
    assert.equal(sourceFromCachePath('/data/models/llama'), undefined);
  });
});
