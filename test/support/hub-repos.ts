/**
 * Test repos for the local hub: the fixtures laid out as hub repos, and a started server around them.
 */
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { TritpackError } from '../../src/errors.js';
import { fixtureDir, makeTempDir } from './fixtures.js';
import { makeShardedLlama256 } from './sharded-llama.js';
import { HubServer, type HubServerOptions } from './hub-server.js';

export const TOKEN = 'hf_testTokenAlice0123456789';
export const OTHER_TOKEN = 'hf_testTokenBob9876543210';

/** name → absolute path for every file of a fixture folder. */
export function filesOf(dir: string): Record<string, string> {
  return Object.fromEntries(readdirSync(dir).map((name) => [name, path.join(dir, name)]));
}

/** `sharded`: the local directory that alice/llama-sharded was made from. */
export interface HubFixture { hub: HubServer; root: string; cache: string; sharded: string; cleanup: () => Promise<void> }

/**
 * A hub with alice/tinystories (single file), alice/llama-sharded (3 shards + index) and
 * alice/private-tiny (private), all from the fixtures, and an empty cache directory.
 */
export async function startFixtureHub(options: Partial<HubServerOptions> = {}): Promise<HubFixture> {
  const temp = makeTempDir('tritpack-hub-');
  const root = path.join(temp.dir, 'hub');
  const hub = await HubServer.start({ root, tokens: { [TOKEN]: 'alice', [OTHER_TOKEN]: 'bob' }, ...options });
  hub.createRepoOnDisk('alice/tinystories', filesOf(fixtureDir('tinystories-656K')));
  const sharded = makeShardedLlama256(path.join(temp.dir, 'llama-sharded'));
  hub.createRepoOnDisk('alice/llama-sharded', filesOf(sharded));
  hub.createRepoOnDisk('alice/private-tiny', filesOf(fixtureDir('tinystories-656K')), { private: true });
  return { hub, root, cache: path.join(temp.dir, 'cache'), sharded, cleanup: async () => { await hub.close(); temp.cleanup(); } };
}

const HUB_ENV = ['HF_TOKEN', 'HUGGING_FACE_HUB_TOKEN', 'HF_TOKEN_PATH', 'HF_HOME', 'HF_HUB_CACHE', 'HUGGINGFACE_HUB_CACHE', 'HF_ENDPOINT', 'HF_HUB_OFFLINE', 'XDG_CACHE_HOME'];

/**
 * For the duration of a test file: no hub variables from the machine leak in (no stray token, no
 * real cache), the default endpoint is a closed local port, and any fetch to a host other than
 * 127.0.0.1 throws — the hub tests never reach outside this machine.
 */
export function isolateHubEnv(): { restore: () => void; home: string } {
  const saved = Object.fromEntries(HUB_ENV.map((k) => [k, process.env[k]]));
  const temp = makeTempDir('tritpack-hf-home-');
  for (const k of HUB_ENV) delete process.env[k];
  process.env.HF_HOME = temp.dir;
  process.env.HF_ENDPOINT = 'http://127.0.0.1:9';
  const realFetch = globalThis.fetch;
  globalThis.fetch = (input, init) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    if (url.hostname !== '127.0.0.1') throw new Error(`test tried to reach ${url.host}`);
    return realFetch(input, init);
  };
  return {
    home: temp.dir,
    restore: () => {
      globalThis.fetch = realFetch;
      for (const k of HUB_ENV) { if (saved[k] === undefined) delete process.env[k]; else process.env[k] = saved[k]; }
      temp.cleanup();
    },
  };
}

/**
 * The mocha hooks a hub test file needs: an isolated hub environment for the whole file and a fresh
 * fixture hub for every test. The returned object is refilled before each test, so the tests use it
 * as a plain HubFixture (plus `home`, the isolated HF_HOME).
 */
export function useFixtureHub(options: Partial<HubServerOptions> = {}): HubFixture & { home: string } {
  const live = {} as HubFixture & { home: string };
  let env: ReturnType<typeof isolateHubEnv>;
  before(() => { env = isolateHubEnv(); live.home = env.home; });
  after(() => env.restore());
  beforeEach(async () => { Object.assign(live, await startFixtureHub(options)); });
  afterEach(() => live.cleanup());
  return live;
}

/** The TritpackError a hub call must fail with (anything else, or success, fails the test). */
export async function rejection(promise: Promise<unknown>): Promise<TritpackError> {
  try { await promise; } catch (err) { assert.ok(err instanceof TritpackError, `expected a TritpackError, got ${String(err)}`); return err; }
  assert.fail('expected a failure');
}
