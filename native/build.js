#!/usr/bin/env node
/**
 * `npm install` hook: build the native kernels with node-gyp. A machine without a compiler (or a
 * different OS) must still install tritpack, so a failed build prints one warning and exits 0; the
 * runtime then falls back to the committed WebAssembly kernels. TRITPACK_SKIP_NATIVE=1 skips it.
 */
import { spawnSync } from 'node:child_process';

if (process.env.TRITPACK_SKIP_NATIVE === '1') process.exit(0);
// npm runs install scripts with its own node-gyp in npm_config_node_gyp and the headers' location
// in npm_config_nodedir (from .npmrc), so the build works offline.
const gyp = process.env.npm_config_node_gyp;
const result = gyp
  ? spawnSync(process.execPath, [gyp, 'rebuild'], { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' })
  : spawnSync('node-gyp', ['rebuild'], { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8', shell: true });
if (result.status !== 0) {
  const why = result.error?.message ?? (result.stderr ?? '').split('\n').find((l) => /error/i.test(l))?.trim() ?? `exit ${result.status}`;
  console.warn(`tritpack: native kernels not built (${why}); the WebAssembly backend will be used instead`);
}
process.exit(0);
