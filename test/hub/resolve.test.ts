import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { looksLikeRepoId, resolveModel, resolveModelPath } from '../../src/hub/resolve.js';
import { pullModel } from '../../src/hub/pull.js';
import { convertCheckpoint } from '../../src/converters/convert.js';
import { fixtureDir, makeTempDir } from '../support/fixtures.js';
import { useFixtureHub } from '../support/hub-repos.js';

describe('hub resolveModelPath (repo ids wherever a model path is taken)', function () {
  const fx = useFixtureHub();

  it('tells repo ids from paths', () => {
    for (const id of ['alice/tinystories', 'alice/tinystories@main', 'org/Model-1.5B@refs/pr/1']) assert.ok(looksLikeRepoId(id), id);
    for (const p of ['./alice/tiny', '/abs/path', 'alice/tiny/', 'model.tpk', 'a/b/c', '~/models/x', 'out/model.tpk', 'a--b/c', 'a/..']) assert.ok(!looksLikeRepoId(p), p);
  });

  it('keeps local paths, pulls a repo id once, then answers from the cache without the network', async () => {
    const local = fixtureDir('tinystories-656K');
    assert.equal(await resolveModelPath(local), local);
    assert.equal(await resolveModelPath('not/here.tpk'), 'not/here.tpk'); // not a repo id: the command reports the missing file

    const first = await resolveModel('alice/tinystories', { endpoint: fx.hub.url, cacheDir: fx.cache });
    assert.equal(first.pulled, true);
    assert.equal(first.path, path.join(fx.cache, 'models--alice--tinystories', 'snapshots', fx.hub.commitOf('alice/tinystories')));
    assert.deepEqual({ repo: first.repo, revision: first.revision, commit: first.commit }, { repo: 'alice/tinystories', revision: 'main', commit: fx.hub.commitOf('alice/tinystories') });
    await fx.hub.close();
    const second = await resolveModel('alice/tinystories@main', { endpoint: fx.hub.url, cacheDir: fx.cache });
    assert.equal(second.path, first.path);
    assert.equal(second.pulled, false);
    const offline = await resolveModelPath('alice/tinystories', { cacheDir: fx.cache, offline: true });
    assert.equal(offline, first.path);
    await assert.rejects(resolveModelPath('alice/llama-sharded', { cacheDir: fx.cache, offline: true }), /not in the hub cache .*offline/);
  });

  it('completes a partial snapshot (config only) and checks every shard of an index', async () => {
    await pullModel({ repo: 'alice/llama-sharded', endpoint: fx.hub.url, cacheDir: fx.cache, include: ['config.json', 'model.safetensors.index.json', 'model-00001-of-00003.safetensors'] });
    await fx.hub.clearRequests();
    const dir = await resolveModelPath('alice/llama-sharded', { endpoint: fx.hub.url, cacheDir: fx.cache });
    assert.ok(fx.hub.bytesServed('model-00002') > 0 && fx.hub.bytesServed('model-00001') === 0, 'fetched the missing shards only');
    assert.equal(path.basename(dir), fx.hub.commitOf('alice/llama-sharded'));
  });

  it('gives the .tpk of a repo that holds only a packed model, and says when an id is neither repo nor path', async () => {
    const work = makeTempDir();
    try {
      const tpk = path.join(work.dir, 'model.tpk');
      await convertCheckpoint({ input: fixtureDir('tinystories-656K'), output: tpk });
      const repoDir = path.join(fx.root, 'alice', 'packed');
      mkdirSync(repoDir, { recursive: true });
      copyFileSync(tpk, path.join(repoDir, 'model.tpk'));
      const resolved = await resolveModelPath('alice/packed', { endpoint: fx.hub.url, cacheDir: fx.cache });
      assert.equal(path.basename(resolved), 'model.tpk');
      // Next to the checkpoint it came from: the model is the checkpoint, unless the .tpk is asked for.
      const both = path.join(fx.root, 'alice', 'both');
      mkdirSync(both, { recursive: true });
      for (const name of ['config.json', 'model.safetensors', 'tokenizer.json']) copyFileSync(path.join(fixtureDir('tinystories-656K'), name), path.join(both, name));
      copyFileSync(tpk, path.join(both, 'model.tpk'));
      const snapshot = path.join(fx.cache, 'models--alice--both', 'snapshots', fx.hub.commitOf('alice/both'));
      assert.equal(await resolveModelPath('alice/both', { endpoint: fx.hub.url, cacheDir: fx.cache }), snapshot);
      assert.equal(await resolveModelPath('alice/both', { cacheDir: fx.cache, offline: true, want: 'tpk' }), path.join(snapshot, 'model.tpk'));
      await assert.rejects(resolveModelPath('alice/missing', { endpoint: fx.hub.url, cacheDir: fx.cache, token: 'hf_testTokenAlice0123456789' }),
        /^TritpackError: alice\/missing: no such local file or directory, and as a hub repo id: 404 Not Found: alice\/missing /);
    } finally { work.cleanup(); }
  });
});
