/**
 * The native kernels' SIMD paths against their portable C path, outside Node: native/test/cross-check.sh
 * builds native/test/kernel-check.c natively (AVX2/AVX-512 where the CPU has them) and for aarch64,
 * runs it under qemu-aarch64 with and without dotprod, and compiles every native/*.c for aarch64.
 * Pending, with the reason in its title, where the cross toolchain or qemu is not installed.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const SCRIPT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../native/test/cross-check.sh');
const TOOLS = ['cc', 'aarch64-linux-gnu-gcc', 'qemu-aarch64'];

function missingTools(): string[] {
  return TOOLS.filter((tool) => spawnSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' }).status !== 0);
}

describe('native kernels: SIMD (AVX2, AVX-512, NEON) against portable C, x86 and emulated arm64', function () {
  const missing = missingTools();
  const title = 'cross-check.sh: integer paths bit-identical, float paths within 2e-6·Σ|w·x|, the addon compiles for aarch64';
  if (missing.length > 0) {
    it(`${title} (pending: ${missing.join(', ')} not installed; apt-get install gcc-aarch64-linux-gnu qemu-user)`);
    return;
  }
  it(title, function () {
    this.timeout(600_000); // a few compiles and three emulated runs, on a shared machine
    const run = spawnSync('sh', [SCRIPT], { encoding: 'utf8' });
    assert.equal(run.status, 0, `cross-check.sh failed (exit ${run.status}):\n${run.stdout}\n${run.stderr}`);
    assert.match(run.stdout, /portable against neon neon\+dotprod\n/);
    assert.match(run.stdout, /cross-check: all passed/);
  });
});
