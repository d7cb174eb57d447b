#!/usr/bin/env node
/**
 * `npm run demo` (after the build): the main job on the bundled model. Converts
 * fixtures/tinystories-656K to a packed ternary .tpk under .cache/demo/, inspects and verifies it,
 * and says plainly what the result is worth: this model was not trained for ternary weights.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const bin = path.join(root, 'bin', 'run.js');
const model = path.join('fixtures', 'tinystories-656K');
const outDir = path.join('.cache', 'demo');
const out = path.join(outDir, 'tinystories-656K.tpk');

function tritpack(args) {
  console.log(`\n$ tritpack ${args.join(' ')}`);
  const r = spawnSync(process.execPath, [bin, ...args], { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
}

mkdirSync(path.join(root, outDir), { recursive: true });
tritpack(['convert', model, '-o', out, '--force']);
tritpack(['inspect', out, '--verify']);

// The damage, as transformers measured it on the same rule (fixtures/…/reference.json).
const ref = JSON.parse(readFileSync(path.join(root, model, 'reference.json'), 'utf8'));
const before = ref.float32.nll.tinystories_sample.ppl;
const after = ref.ternary_absmean.float32.nll.tinystories_sample.ppl;
console.log(`
Note: TinyStories-656K is an ordinary float model, not trained for ternary weights. The .tpk above
is an exact, verified absmean ternarization (codes equal transformers' to the bit), but plain absmean
on a model not trained for ternary weights collapses it: transformers measures perplexity
${before.toFixed(1)} before and ${after.toFixed(0)} after on the TinyStories sample (vocabulary: 2048).
Run validate on a conversion before using it; convert ternary-trained (BitNet b1.58) checkpoints
for models that keep their quality.`);
