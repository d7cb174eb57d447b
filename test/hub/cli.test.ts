import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { convertCheckpoint } from '../../src/converters/convert.js';
import { fixtureDir, makeTempDir } from '../support/fixtures.js';
import { runCliAsync } from '../support/cli.js';
import { TOKEN, isolateHubEnv, startFixtureHub, type HubFixture } from '../support/hub-repos.js';

// Runs the built CLI (npm run build first; npm test does it).
describe('cli: tritpack pull / push', function () {
  let env: ReturnType<typeof isolateHubEnv>;
  let fx: HubFixture;
  let work: ReturnType<typeof makeTempDir>;
  before(async () => {
    env = isolateHubEnv();
    work = makeTempDir('tritpack-hub-cli-');
    fx = await startFixtureHub();
    process.env.HF_ENDPOINT = fx.hub.url;
  });
  after(async () => { await fx.cleanup(); work.cleanup(); env.restore(); });

  it('pull prints the snapshot path on stdout and per-file progress with bytes/s on stderr', async () => {
    const r = await runCliAsync(['pull', 'alice/tinystories', '--cache-dir', path.join(work.dir, 'c1')]);
    assert.equal(r.code, 0, r.stderr);
    const snapshot = r.stdout.trim();
    assert.equal(snapshot, path.join(work.dir, 'c1', 'models--alice--tinystories', 'snapshots', fx.hub.commitOf('alice/tinystories')));
    assert.deepEqual(readFileSync(path.join(snapshot, 'model.safetensors')), readFileSync(path.join(fixtureDir('tinystories-656K'), 'model.safetensors')));
    assert.match(r.stderr, /alice\/tinystories: 6 files, 2\.\d+ MB/);
    assert.match(r.stderr, /^ {2}model\.safetensors {2}2\.63 MB {2}[\d.]+ [kMG]?B\/s$/m);
    const again = await runCliAsync(['pull', 'alice/tinystories', '--cache-dir', path.join(work.dir, 'c1'), '--json']);
    assert.equal(again.code, 0, again.stderr);
    const json = JSON.parse(again.stdout);
    assert.equal(json.path, snapshot);
    assert.equal(json.downloadedBytes, 0);
    assert.equal(json.files.length, 6);
    assert.ok(json.files.every((f: { cached: boolean }) => f.cached));
  });

  it('pull failures are one line, exit 2, and never show the token', async () => {
    const wrong = 'hf_wrongCliToken99999999';
    const cases = [
      { args: ['pull', 'alice/nothing-here', '--token', TOKEN], want: /^Error: 404 Not Found: alice\/nothing-here on http:\/\/127\.0\.0\.1:\d+/ },
      { args: ['pull', 'alice/nothing-here'], want: /^Error: 401 Unauthorized for alice\/nothing-here .*the repo does not exist, or is private or gated/ },
      { args: ['pull', 'alice/private-tiny', '--token', wrong], want: /^Error: 401 Unauthorized for alice\/private-tiny .*the token was refused/ },
      { args: ['pull', 'alice/private-tiny'], env: { HF_TOKEN: wrong }, want: /^Error: 401 Unauthorized/ },
      { args: ['pull', 'not a repo'], want: /^Error: "not a repo" is not a hub repo id/ },
    ];
    for (const c of cases) {
      const r = await runCliAsync([...c.args, '--cache-dir', path.join(work.dir, 'c2')], c.env);
      assert.equal(r.code, 2, `${c.args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr.trim(), c.want);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      for (const t of [wrong, TOKEN]) assert.ok(!r.stderr.includes(t) && !r.stdout.includes(t));
    }
  });

  it('a hub that echoes the token back: pull and push still print it nowhere, under --json too', async () => {
    const tpk = path.join(work.dir, 'echo.tpk');
    await convertCheckpoint({ input: fixtureDir('tinystories-656K'), output: tpk });
    const runs = [
      ['pull', 'alice/tinystories', '--cache-dir', path.join(work.dir, 'c4'), '--token', TOKEN],
      ['push', tpk, 'alice/echo', '--create', '--token', TOKEN],
    ];
    for (const json of [[], ['--json']]) {
      for (const args of runs) {
        fx.hub.injectFault({ path: '/api/', fault: { kind: 'status', status: 500, message: `token ${TOKEN} refused` }, times: 1 });
        const r = await runCliAsync([...args, ...json]);
        assert.equal(r.code, 2, r.stderr);
        assert.equal(r.stdout, '');
        // Progress lines (push's "creating…") may come first, except under --json; the error is the one last line.
        const lines = r.stderr.trimEnd().split('\n');
        if (json.length > 0) assert.equal(lines.length, 1, r.stderr);
        assert.match(lines.at(-1)!, /^Error: the hub answered 500 for alice\/\w+ on http:\/\/127\.0\.0\.1:\d+ \(token hf_\*\*\* refused\); try again later$/);
        assert.ok(!r.stderr.includes(TOKEN));
      }
    }
  });

  it('push --dry-run prints the files and the card; push --json then pull round-trips the .tpk', async () => {
    const tpk = path.join(work.dir, 'tiny.tpk');
    await convertCheckpoint({ input: fixtureDir('tinystories-656K'), output: tpk });
    const dry = await runCliAsync(['push', tpk, 'alice/tiny-cli', '--dry-run']);
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /^Would upload to alice\/tiny-cli \(main\):\n {2}tiny\.tpk {2}1\.23 MB\n {2}README\.md {2}[\d.]+ k?B\n/);
    assert.match(dry.stdout, /\n---\ntags:\n- ternary\n- bitnet\n- 1\.58-bit\n- tritpack\npipeline_tag: text-generation\n---\n/);

    const pushed = await runCliAsync(['push', tpk, 'alice/tiny-cli', '--create', '--private', '--json'], { HF_TOKEN: TOKEN });
    assert.equal(pushed.code, 0, pushed.stderr);
    const result = JSON.parse(pushed.stdout);
    assert.equal(result.created, true);
    assert.equal(result.commit.oid, fx.hub.commitOf('alice/tiny-cli'));
    assert.ok(!pushed.stdout.includes(TOKEN) && !pushed.stderr.includes(TOKEN));

    const pulled = await runCliAsync(['pull', 'alice/tiny-cli', '--cache-dir', path.join(work.dir, 'c3'), '--json'], { HF_TOKEN: TOKEN });
    assert.equal(pulled.code, 0, pulled.stderr);
    assert.deepEqual(readFileSync(path.join(JSON.parse(pulled.stdout).path, 'tiny.tpk')), readFileSync(tpk));
  });
});
