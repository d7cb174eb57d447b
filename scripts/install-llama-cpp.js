#!/usr/bin/env node
/**
 * Installs real llama.cpp — node-llama-cpp's prebuilt binaries, pinned — into .cache/llama-cpp/, for
 * the interop test that runs tritpack's GGUF exports in llama.cpp itself
 * (test/interop/llama-cpp.test.ts) and the llama.cpp rows of `node scripts/bench-kernels.js`.
 * A development tool, not a dependency of tritpack: users never need it, and `npm ci` does not pull
 * its ~14 platform builds (CUDA ones included). Needs the npm registry; idempotent.
 *
 *   node scripts/install-llama-cpp.js      (npm run llama-cpp:install)
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** node-llama-cpp 3.22.1 bundles llama.cpp release v0.5.0 (its bins' _nlcBuildMetadata.json), with TQ1_0/TQ2_0. */
const VERSION = '3.22.1';
/** node-llama-cpp's CPU build of each platform (its optional dependencies, by name). */
const PLATFORM_PACKAGES = {
  'linux-x64': 'linux-x64', 'linux-arm64': 'linux-arm64', 'darwin-arm64': 'mac-arm64-metal', 'darwin-x64': 'mac-x64', 'win32-x64': 'win-x64',
};

const dir = fileURLToPath(new URL('../.cache/llama-cpp/', import.meta.url));
const platform = PLATFORM_PACKAGES[`${process.platform}-${process.arch}`];
if (!platform) {
  console.error(`install-llama-cpp: node-llama-cpp has no prebuilt CPU build for ${process.platform}-${process.arch}`);
  process.exit(1);
}
const marker = path.join(dir, `installed-${VERSION}-${platform}`);
if (existsSync(marker)) {
  console.log(`llama.cpp (node-llama-cpp ${VERSION}, ${platform}) is already in .cache/llama-cpp`);
  process.exit(0);
}
mkdirSync(dir, { recursive: true });
writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'tritpack-llama-cpp', private: true, type: 'module' }));
// --ignore-scripts: its postinstall would look for a GPU build or compile one; the prebuilt CPU binary is all that is used.
execFileSync(process.platform === 'win32' ? 'npm.cmd' : 'npm', ['install', '--no-save', '--no-audit', '--no-fund', '--omit=optional', '--ignore-scripts',
  `node-llama-cpp@${VERSION}`, `@node-llama-cpp/${platform}@${VERSION}`], { cwd: dir, stdio: ['ignore', 'ignore', 'inherit'] });
writeFileSync(marker, '');
console.log(`installed llama.cpp (node-llama-cpp ${VERSION}, ${platform}) into .cache/llama-cpp`);
