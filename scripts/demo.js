#!/usr/bin/env node
/**
 * `npm run demo` (after the build): the main job on the bundled models, as a user runs it.
 *
 * 1. fixtures/tinystories-656K, an ordinary trained float model: convert, inspect --verify, then
 *    validate against the original. Plain absmean ruins a model that was not trained for ternary
 *    weights, and validate says so with a FAIL verdict (exit 1) — the honest, expected answer.
 * 2. fixtures/bitnet-tiny, a BitNet b1.58 model (bf16 master weights): the same steps end in PASS,
 *    because for a ternary-aware model the packed codes are the model.
 *
 * Outputs go to .cache/demo/ (git-ignored). The demo fails only if a step fails unexpectedly.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const bin = path.join(root, 'bin', 'run.js');
const outDir = path.join('.cache', 'demo');
const text = path.join('fixtures', 'text', 'tinystories_sample.txt');

/** Runs one tritpack command in the foreground; returns its exit code, stopping the demo on an unexpected one. */
function tritpack(args, expectedCodes = [0]) {
  console.log(`\n$ tritpack ${args.join(' ')}`);
  const r = spawnSync(process.execPath, [bin, ...args], { cwd: root, stdio: 'inherit' });
  if (!expectedCodes.includes(r.status)) {
    console.error(`\ndemo: \`tritpack ${args[0]}\` exited with ${r.status}`);
    process.exit(r.status ?? 1);
  }
  return r.status;
}

function demo(model, { expectPass }) {
  const name = path.basename(model);
  const out = path.join(outDir, `${name}.tpk`);
  console.log(`\n=== ${name} ===`);
  tritpack(['convert', model, '-o', out, '--force']);
  tritpack(['inspect', out, '--verify']);
  const code = tritpack(
    ['validate', model, out, '--text', text, '--embed', '--report', path.join(outDir, `${name}.report.md`)],
    [0, 1],
  );
  const verdict = code === 0 ? 'PASS' : 'FAIL';
  console.log(`\n→ ${name}: ${verdict}${(code === 0) === expectPass ? ' (as expected)' : ' (NOT as expected)'}`);
  if ((code === 0) !== expectPass) process.exit(1);
}

mkdirSync(path.join(root, outDir), { recursive: true });
demo(path.join('fixtures', 'tinystories-656K'), { expectPass: false });
demo(path.join('fixtures', 'bitnet-tiny'), { expectPass: true });
console.log(`
TinyStories-656K was trained with float weights: its exact absmean ternarization is measured above
and fails the quality gate. bitnet-tiny has the BitNet b1.58 architecture: its packed model matches
the original and passes. Reports with the full tables are in ${outDir}/.`);
