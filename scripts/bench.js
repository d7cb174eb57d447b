#!/usr/bin/env node
/**
 * `npm run bench [-- --json] [-- --kernels]`: tritpack's speed, every figure next to a baseline
 * measured in the same run (machines here are shared and noisy: trust the ratios and medians).
 *
 * - conversion: MB/s of input for `convertCheckpoint`, against the baseline of only reading the
 *   same checkpoint's tensors as float32 (what any converter must do at least). Input: the bundled
 *   fixtures, and .cache/synthetic-2g when scripts/make-synthetic-checkpoint.js has made it.
 * - runtime: prefill (eval over a 256-token window) and decode (generate 64 tokens) tokens/s of the
 *   original and the packed tinystories-656K and bitnet-tiny, on each backend that loads here;
 *   ratios packed/original and backend/reference.
 * - --kernels: the TinyLlama-shaped kernel benchmark of scripts/bench-kernels.js (needs
 *   scripts/make-synthetic-tinyllama.js first: 3 GB in .cache/, several minutes). With
 *   `--lm-head int8` it adds the ternary model with the opt-in int8 LM head.
 */
import { mkdtempSync, rmSync, statSync, existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { AVAILABLE_BACKENDS, SafetensorsCheckpoint, convertCheckpoint, loadModel } from '../dist/index.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = new Set(process.argv.slice(2));
const json = args.has('--json');
const log = json ? () => {} : (line = '') => console.log(line);

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** Median seconds of `fn` over `repeats` runs (after one warm-up run when repeats > 1). */
async function timeIt(fn, repeats) {
  if (repeats > 1) await fn();
  const seconds = [];
  for (let i = 0; i < repeats; i++) {
    const t = performance.now();
    await fn();
    seconds.push((performance.now() - t) / 1000);
  }
  return median(seconds);
}

function inputBytes(dir) {
  return readdirSync(dir).filter((f) => f.endsWith('.safetensors')).reduce((s, f) => s + statSync(path.join(dir, f)).size, 0);
}

async function benchConversion(work) {
  const inputs = ['tinystories-656K', 'bitnet-tiny', 'llama-256'].map((n) => ({ name: n, dir: path.join(root, 'fixtures', n), repeats: 5 }));
  const synthetic = path.join(root, '.cache', 'synthetic-2g');
  if (existsSync(path.join(synthetic, 'model.safetensors.index.json'))) inputs.push({ name: 'synthetic-2g (F16, 3 shards)', dir: synthetic, repeats: 1 });
  const rows = [];
  for (const input of inputs) {
    const bytes = inputBytes(input.dir);
    const readSeconds = await timeIt(() => {
      const ckpt = SafetensorsCheckpoint.open(input.dir);
      try { for (const t of ckpt.tensors) ckpt.readFloat32(t.name); } finally { ckpt.close(); }
    }, input.repeats);
    const output = path.join(work, 'bench.tpk');
    const convertSeconds = await timeIt(() => convertCheckpoint({ input: input.dir, output, force: true }), input.repeats);
    rows.push({
      model: input.name, inputMB: bytes / 1e6,
      readMBps: bytes / 1e6 / readSeconds, convertMBps: bytes / 1e6 / convertSeconds,
      convertVsRead: readSeconds / convertSeconds,
    });
  }
  return rows;
}

async function benchRuntime(work) {
  const rows = [];
  for (const name of ['tinystories-656K', 'bitnet-tiny']) {
    const original = path.join(root, 'fixtures', name);
    const packed = path.join(work, `${name}.tpk`);
    await convertCheckpoint({ input: original, output: packed, force: true });
    for (const backend of AVAILABLE_BACKENDS) {
      for (const [kind, modelPath] of [['original', original], ['packed', packed]]) {
        let model;
        try {
          model = await loadModel(modelPath, { backend });
        } catch (err) {
          rows.push({ model: name, kind, backend, error: err.message });
          continue;
        }
        try {
          const ids = model.tokenizer.encode(BENCH_TEXT).slice(0, 256);
          const prefillSeconds = await timeIt(() => model.logits(ids), 3);
          const decodeTokens = 64;
          const decodeSeconds = await timeIt(() => model.generate([ids[0]], { maxNewTokens: decodeTokens, temperature: 0, stopAtEos: false }), 3);
          rows.push({ model: name, kind, backend, prefillTokPerS: ids.length / prefillSeconds, decodeTokPerS: decodeTokens / decodeSeconds });
        } finally {
          model.close();
        }
      }
    }
  }
  const find = (model, kind, backend) => rows.find((r) => r.model === model && r.kind === kind && r.backend === backend && !r.error);
  for (const r of rows.filter((x) => !x.error)) {
    const original = find(r.model, 'original', r.backend);
    const reference = find(r.model, r.kind, 'reference');
    r.decodeVsOriginal = original ? r.decodeTokPerS / original.decodeTokPerS : null;
    r.decodeVsReference = reference ? r.decodeTokPerS / reference.decodeTokPerS : null;
    r.prefillVsReference = reference ? r.prefillTokPerS / reference.prefillTokPerS : null;
  }
  return rows;
}

// Long enough for a 256-token window with the fixtures' 2048-token vocabulary.
const BENCH_TEXT = `Once upon a time, there was a little girl named Lily. She loved to play outside in the park with
her friends. One day, she saw a big red ball under a tree. She ran to get it, but a small dog got
there first. The dog wagged its tail and looked at Lily. Lily laughed and said, "Let's play
together!" They played all afternoon, and when the sun went down, Lily went home happy. `.repeat(4);

const fmt = (x, digits = 1) => (x === null || x === undefined ? '–' : x.toFixed(digits));

const work = mkdtempSync(path.join(tmpdir(), 'tritpack-bench-'));
try {
  const result = { machine: { node: process.version, cpus: (await import('node:os')).cpus().length } };
  log('conversion (median of 5; synthetic-2g once)');
  result.conversion = await benchConversion(work);
  for (const r of result.conversion) {
    log(`  ${r.model.padEnd(30)} ${fmt(r.inputMB)} MB: convert ${fmt(r.convertMBps)} MB/s, read-only baseline ${fmt(r.readMBps)} MB/s, convert/read ${fmt(r.convertVsRead, 2)}×`);
  }
  log('\nruntime (256-token prefill, 64-token greedy decode; median of 3)');
  result.runtime = await benchRuntime(work);
  for (const r of result.runtime) {
    if (r.error) { log(`  ${r.model} ${r.kind} on ${r.backend}: not available (${r.error})`); continue; }
    log(`  ${`${r.model} ${r.kind}`.padEnd(26)} ${r.backend.padEnd(9)} prefill ${fmt(r.prefillTokPerS, 0).padStart(7)} tok/s, decode ${fmt(r.decodeTokPerS, 0).padStart(6)} tok/s`
      + ` | decode vs original ${fmt(r.decodeVsOriginal, 2)}×, vs reference backend: prefill ${fmt(r.prefillVsReference, 2)}×, decode ${fmt(r.decodeVsReference, 2)}×`);
  }
  if (args.has('--kernels')) {
    const { runKernelBench } = await import('./bench-kernels.js');
    log('\nkernels (TinyLlama-shaped synthetic model)');
    const lmHead = process.argv.includes('--lm-head') ? process.argv[process.argv.indexOf('--lm-head') + 1] : undefined;
    result.kernels = await runKernelBench({ print: !json, lmHead });
  }
  if (json) console.log(JSON.stringify(result, null, 2));
} finally {
  rmSync(work, { recursive: true, force: true });
}
