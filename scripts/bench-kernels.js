#!/usr/bin/env node
/**
 * Kernel benchmark of issue 6 on the synthetic TinyLlama-shaped pair written by
 * scripts/make-synthetic-tinyllama.js: decode tokens/s (128 tokens after a 64-token prompt),
 * prefill tokens/s (64- and 512-token prompts) at 1 and 2 threads for the ternary model and the
 * same weights in F16 on the native backend, and for the ternary model on the wasm backend at the
 * same thread counts (with the wasm/native decode and prefill ratios per thread count); the
 * machine's streaming read bandwidth measured by the addon in the same run (the median of several
 * readings, and the best); the decode roofline (bytes read per token × tokens/s ÷ median bandwidth);
 * and each run's peak RSS (every configuration runs in its own child process, so maxRSS is its own).
 * Timings on a shared machine are noisy: compare the ratios, which are measured in the same run.
 * `--lm-head int8` adds the ternary model with the opt-in int8 LM head on the native backend, and on
 * the wasm backend unless --no-wasm (rows "ternary+i8h"; its figures include that head's different numerics).
 * Where llama.cpp is installed (`npm run llama-cpp:install`) and unless --no-llama-cpp, llama.cpp itself
 * runs the same weights as GGUF TQ2_0 at the same thread counts (rows "llama.cpp"; the model's
 * embedding doubles as its LM head there, since llama.cpp's bitnet architecture has no separate one:
 * the same bytes per token), and the ternary/llama.cpp ratios are measured in the same run. (Through
 * node-llama-cpp on 2 vCPUs llama.cpp's 2-thread decode does not scale — 34–44 tok/s against 66 in the
 * runtime notes from llama.cpp's own tools: the binding's JavaScript thread competes with its two
 * threads — so the notes' figures are printed beside it.)
 *
 *   node scripts/bench-kernels.js [--dir .cache/synthetic-tinyllama] [--threads 1,2] [--no-wasm] [--no-llama-cpp] [--lm-head int8] [--quick] [--json]
 *
 * `runKernelBench({ dir, threads, quick, wasm, llamaCpp, lmHead, print, onProgress })` returns the same result object
 * (and prints the table when `print`) for scripts/bench.js. Needs `npm run build`.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = fileURLToPath(import.meta.url);
const root = path.resolve(path.dirname(here), '..');
/** node-llama-cpp, installed by scripts/install-llama-cpp.js. */
const LLAMA_CPP_ENTRY = path.join(root, '.cache', 'llama-cpp', 'node_modules', 'node-llama-cpp', 'dist', 'index.js');

/** llama.cpp on this machine kind, same model shape (docs/runtime-notes.md), for context where it is not installed. */
export const LLAMA_CPP_REFERENCE = {
  source: 'docs/runtime-notes.md (llama.cpp, TinyLlama-shaped 1.1B, clean medians)',
  TQ2_0: { decode: { 1: 44, 2: 66 }, prefill64: { 1: 55, 2: 112 } },
  F16: { decode: { 1: 11.6, 2: 21.4 }, prefill64: { 1: 48, 2: 92 } },
};

/** Deterministic prompt ids inside the vocabulary (skipping the first special ids). */
function promptIds(count, vocab, salt) {
  const ids = [];
  let s = 0x9e3779b9 ^ salt;
  for (let i = 0; i < count; i++) {
    s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0;
    ids.push(3 + (s % (vocab - 3)));
  }
  return ids;
}

function argmax(logits) {
  let best = 0;
  for (let v = 1; v < logits.length; v++) if (logits[v] > logits[best]) best = v;
  return best;
}

/** Child: llama.cpp on the GGUF twin at one thread count, timed like `child`; prints one JSON line. */
async function llamaCppChild(gguf, threads, decodeTokens, longPrompt, vocab, kvBytesPerPosition) {
  const { getLlama } = await import(pathToFileURL(LLAMA_CPP_ENTRY).href);
  const llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error' });
  let t = performance.now();
  const model = await llama.loadModel({ modelPath: gguf });
  const context = await model.createContext({ contextSize: Math.max(1024, longPrompt + 64), batchSize: 512, threads });
  const loadSeconds = (performance.now() - t) / 1000;
  const sequence = context.getSequence();
  const greedy = { temperature: 0 };
  let tokens = sequence.evaluate(promptIds(8, vocab, 1), greedy); // warm: pages, threads
  await tokens.next();
  await tokens.next();
  await tokens.return();
  await sequence.clearHistory();

  tokens = sequence.evaluate(promptIds(64, vocab, 2), greedy); // the prompt, then one token sampled after it
  t = performance.now();
  await tokens.next();
  const prefill64 = 64 / ((performance.now() - t) / 1000);
  t = performance.now();
  for (let i = 0; i < decodeTokens; i++) await tokens.next();
  const decode = decodeTokens / ((performance.now() - t) / 1000);
  await tokens.return();
  let prefillLong = null;
  if (longPrompt > 0) {
    await sequence.clearHistory();
    tokens = sequence.evaluate(promptIds(longPrompt, vocab, 3), greedy);
    t = performance.now();
    await tokens.next();
    prefillLong = longPrompt / ((performance.now() - t) / 1000);
    await tokens.return();
  }
  // Every tensor is read per decoded token (token_embd doubles as the LM head), plus the KV cache.
  const result = {
    threads, backend: 'llama.cpp', lmHead: 'float', loadSeconds, weightBytes: statSync(gguf).size,
    decodeBytesPerToken: statSync(gguf).size + (64 + decodeTokens / 2) * kvBytesPerPosition,
    prefill64, decode, prefillLong, maxRssBytes: process.resourceUsage().maxRSS * 1024,
  };
  await context.dispose();
  await model.dispose();
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(0); // llama.cpp's threads would keep the process alive
}

/**
 * The GGUF TQ2_0 twin of the synthetic model for llama.cpp: the tied variant written by
 * make-synthetic-tinyllama.js --tied (same seeds, same projections) exported by tritpack; cached.
 */
async function llamaCppTwin(dir) {
  const gguf = path.join(dir, 'ternary-tied-tq2_0.gguf');
  if (existsSync(gguf)) return gguf;
  const layers = JSON.parse(readFileSync(path.join(dir, 'f16', 'config.json'), 'utf8')).num_hidden_layers;
  const made = spawnSync(process.execPath, [path.join(root, 'scripts', 'make-synthetic-tinyllama.js'), dir, '--layers', String(layers), '--tied'], { stdio: ['ignore', 'ignore', 'inherit'] });
  if (made.status !== 0) throw new Error('make-synthetic-tinyllama.js --tied failed');
  const { exportGguf } = await import('../dist/converters/export-gguf.js');
  exportGguf({ input: path.join(dir, 'ternary-tied.tpk'), output: gguf, type: 'tq2_0' });
  return gguf;
}

/** Child: one model at one thread count; prints one JSON line. */
async function child(modelPath, backend, threads, decodeTokens, longPrompt, lmHead) {
  const { loadModel } = await import('../dist/runtime-min/index.js');
  let t = performance.now();
  const model = await loadModel(modelPath, { backend, threads, lmHead });
  const loadSeconds = (performance.now() - t) / 1000;
  const cfg = model.config;
  const warm = model.createSession(); // first calls start the pool's threads and touch every weight page once
  warm.feed(promptIds(8, cfg.vocabSize, 1), { lastOnly: true });
  warm.feed([5], { lastOnly: true });

  const session = model.createSession();
  t = performance.now();
  let logits = session.feed(promptIds(64, cfg.vocabSize, 2), { lastOnly: true });
  const prefill64 = 64 / ((performance.now() - t) / 1000);
  t = performance.now();
  for (let i = 0; i < decodeTokens; i++) logits = session.feed([argmax(logits)], { lastOnly: true });
  const decode = decodeTokens / ((performance.now() - t) / 1000);

  let prefillLong = null;
  if (longPrompt > 0) {
    t = performance.now();
    model.createSession().feed(promptIds(longPrompt, cfg.vocabSize, 3), { lastOnly: true });
    prefillLong = longPrompt / ((performance.now() - t) / 1000);
  }
  // Bytes a decode step reads: every prepared weight except the embedding (one row is gathered), plus
  // the KV cache at the run's mean length (float32 keys and values).
  const embedBytes = cfg.vocabSize * cfg.hiddenSize * 2;
  const meanLength = 64 + decodeTokens / 2;
  const kvBytes = cfg.numLayers * 2 * meanLength * cfg.numKvHeads * cfg.headDim * 4;
  const result = {
    threads, backend: model.backend, lmHead: model.lmHead, layers: cfg.numLayers, loadSeconds, weightBytes: model.weightBytes,
    decodeBytesPerToken: model.weightBytes - embedBytes + kvBytes,
    prefill64, decode, prefillLong, maxRssBytes: process.resourceUsage().maxRSS * 1024,
  };
  model.close();
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

export async function runKernelBench(options = {}) {
  const dir = path.resolve(root, options.dir ?? path.join('.cache', 'synthetic-tinyllama'));
  const threadCounts = options.threads ?? [1, 2];
  const quick = options.quick ?? false;
  const decodeTokens = quick ? 16 : 128, longPrompt = quick ? 0 : 512;
  const models = { ternary: path.join(dir, 'ternary.tpk'), f16: path.join(dir, 'f16') };
  for (const p of Object.values(models)) {
    if (!existsSync(p)) throw new Error(`${p} is missing: run node scripts/make-synthetic-tinyllama.js first`);
  }
  const { loadNativeAddon, nativeUnavailableReason } = await import('../dist/runtime-min/backends/native.js');
  const addon = loadNativeAddon();
  if (!addon) throw new Error(`the native addon is not available: ${nativeUnavailableReason()}`);

  // Read bandwidth on this shared VM varies from reading to reading (at 2 threads 30–54 GB/s within a
  // minute), so the roofline divides by the median of several readings taken in turn for each thread
  // count; the best reading is reported too.
  const readings = Object.fromEntries(threadCounts.map((t) => [t, []]));
  for (let rep = 0; rep < (quick ? 3 : 7); rep++) {
    for (const t of threadCounts) {
      addon.setThreads(t);
      readings[t].push(addon.readBandwidth(quick ? 256 << 20 : 1 << 30, 1) * 1e9);
    }
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
  const bandwidth = Object.fromEntries(threadCounts.map((t) => [t, median(readings[t])]));
  const bandwidthBest = Object.fromEntries(threadCounts.map((t) => [t, Math.max(...readings[t])]));

  // ternary and F16 on the native backend at each thread count; ternary on the wasm backend at the same counts
  const configs = [
    ...threadCounts.map((t) => ({ model: 'ternary', backend: 'native', threads: t })),
    ...(options.wasm === false ? [] : threadCounts.map((t) => ({ model: 'ternary', backend: 'wasm', threads: t }))),
    ...threadCounts.map((t) => ({ model: 'f16', backend: 'native', threads: t })),
    ...(options.lmHead === 'int8' ? threadCounts.map((t) => ({ model: 'ternary', backend: 'native', threads: t, lmHead: 'int8' })) : []),
    ...(options.lmHead === 'int8' && options.wasm !== false ? threadCounts.map((t) => ({ model: 'ternary', backend: 'wasm', threads: t, lmHead: 'int8' })) : []),
  ];
  const useLlamaCpp = options.llamaCpp !== false && existsSync(LLAMA_CPP_ENTRY);
  const runs = [];
  for (const c of configs) {
    options.onProgress?.(`${c.model}, ${c.backend}, ${c.threads} thread(s)…`);
    const r = spawnSync(process.execPath, [here, '--child', models[c.model], c.backend, String(c.threads), String(decodeTokens), String(longPrompt), c.lmHead ?? 'float'], { encoding: 'utf8', timeout: 15 * 60_000 });
    if (r.status !== 0) throw new Error(`benchmark child (${c.model}, ${c.backend}, ${c.threads} threads) failed: ${(r.stderr || r.error?.message || '').trim().split('\n').slice(-3).join(' | ')}`);
    const run = { model: c.lmHead === 'int8' ? `${c.model}+i8h` : c.model, ...JSON.parse(r.stdout.trim().split('\n').pop()) };
    run.roofline = run.decodeBytesPerToken * run.decode / bandwidth[c.threads];
    run.rooflineOfBest = run.decodeBytesPerToken * run.decode / bandwidthBest[c.threads];
    runs.push(run);
  }
  if (useLlamaCpp) {
    const gguf = await llamaCppTwin(dir);
    const cfg = JSON.parse(readFileSync(path.join(dir, 'f16', 'config.json'), 'utf8'));
    const kvBytesPerPosition = cfg.num_hidden_layers * 2 * cfg.num_key_value_heads * (cfg.hidden_size / cfg.num_attention_heads) * 2; // f16 K and V
    for (const t of threadCounts) {
      options.onProgress?.(`llama.cpp TQ2_0, ${t} thread(s)…`);
      const r = spawnSync(process.execPath, [here, '--llama-cpp-child', gguf, String(t), String(decodeTokens), String(longPrompt), String(cfg.vocab_size), String(kvBytesPerPosition)], { encoding: 'utf8', timeout: 15 * 60_000 });
      if (r.status !== 0) throw new Error(`llama.cpp benchmark child (${t} threads) failed: ${(r.stderr || r.error?.message || '').trim().split('\n').slice(-3).join(' | ')}`);
      const run = { model: 'ternary', ...JSON.parse(r.stdout.trim().split('\n').pop()) };
      run.roofline = run.decodeBytesPerToken * run.decode / bandwidth[t];
      run.rooflineOfBest = run.decodeBytesPerToken * run.decode / bandwidthBest[t];
      runs.push(run);
    }
  }
  const find = (model, t, backend = 'native') => runs.find((r) => r.model === model && r.threads === t && r.backend === backend);
  const ratios = threadCounts.map((t) => ({
    threads: t,
    decodeTernaryOverF16: find('ternary', t).decode / find('f16', t).decode,
    prefill64TernaryOverF16: find('ternary', t).prefill64 / find('f16', t).prefill64,
    // the notes' llama.cpp figures are for the full 22-layer shape only
    decodeOverLlamaCppTQ2_0: LLAMA_CPP_REFERENCE.TQ2_0.decode[t] && find('ternary', t).layers === 22 ? find('ternary', t).decode / LLAMA_CPP_REFERENCE.TQ2_0.decode[t] : null,
    prefill64OverLlamaCppTQ2_0: LLAMA_CPP_REFERENCE.TQ2_0.prefill64[t] && find('ternary', t).layers === 22 ? find('ternary', t).prefill64 / LLAMA_CPP_REFERENCE.TQ2_0.prefill64[t] : null,
    // llama.cpp run here through node-llama-cpp, where installed
    decodeOverLlamaCppMeasured: find('ternary', t, 'llama.cpp') ? find('ternary', t).decode / find('ternary', t, 'llama.cpp').decode : null,
    prefill64OverLlamaCppMeasured: find('ternary', t, 'llama.cpp') ? find('ternary', t).prefill64 / find('ternary', t, 'llama.cpp').prefill64 : null,
    prefill512OverLlamaCppMeasured: find('ternary', t, 'llama.cpp')?.prefillLong ? find('ternary', t).prefillLong / find('ternary', t, 'llama.cpp').prefillLong : null,
    peakRssTernaryOverF16: find('ternary', t).maxRssBytes / find('f16', t).maxRssBytes,
    wasmDecodeOverNative: find('ternary', t, 'wasm') ? find('ternary', t, 'wasm').decode / find('ternary', t).decode : null,
    wasmPrefill64OverNative: find('ternary', t, 'wasm') ? find('ternary', t, 'wasm').prefill64 / find('ternary', t).prefill64 : null,
    decodeInt8HeadOverFloatHead: find('ternary+i8h', t) ? find('ternary+i8h', t).decode / find('ternary', t).decode : null,
    wasmDecodeInt8HeadOverFloatHead: find('ternary+i8h', t, 'wasm') ? find('ternary+i8h', t, 'wasm').decode / find('ternary', t, 'wasm').decode : null,
  }));
  const res = {
    llamaCppMeasured: useLlamaCpp,
    machine: { cpus: (await import('node:os')).cpus().length, loadAverage: (await import('node:os')).loadavg() },
    model: dir, decodeTokens, promptTokens: 64, longPromptTokens: longPrompt || null,
    bandwidthBytesPerSecond: bandwidth, bandwidthBestBytesPerSecond: bandwidthBest, bandwidthReadings: readings, runs, ratios, llamaCppReference: LLAMA_CPP_REFERENCE,
  };
  if (options.print) printTable(res);
  return res;
}

function printTable(res) {
  const gb = (b) => (b / 1e9).toFixed(2);
  console.log(`model: ${path.relative(root, res.model)}; load average at the end: ${res.machine.loadAverage.map((l) => l.toFixed(1)).join(' ')} on ${res.machine.cpus} CPUs`);
  for (const [t, bw] of Object.entries(res.bandwidthBytesPerSecond)) console.log(`read bandwidth, ${t} thread(s): median ${gb(bw)} GB/s, best ${gb(res.bandwidthBestBytesPerSecond[t])} GB/s (${res.bandwidthReadings[t].length} readings; roofline = against the median)`);
  console.log('model        backend  thr  decode tok/s  prefill64 tok/s  prefill512 tok/s  bytes/token  roofline  peak RSS   load');
  for (const r of res.runs) {
    console.log(`${r.model.padEnd(12)} ${r.backend.padEnd(7)} ${String(r.threads).padStart(3)}  ${r.decode.toFixed(1).padStart(12)}  ${r.prefill64.toFixed(1).padStart(15)}  ${(r.prefillLong?.toFixed(1) ?? '-').padStart(16)}  ${(gb(r.decodeBytesPerToken) + ' GB').padStart(11)}  ${(100 * r.roofline).toFixed(0).padStart(7)}%  ${(gb(r.maxRssBytes) + ' GB').padStart(8)}  ${r.loadSeconds.toFixed(1)} s`);
  }
  for (const q of res.ratios) {
    console.log(`${q.threads} thread(s): ternary/F16 decode ×${q.decodeTernaryOverF16.toFixed(2)}, prefill64 ×${q.prefill64TernaryOverF16.toFixed(2)}; peak RSS ternary/F16 ${q.peakRssTernaryOverF16.toFixed(2)}` +
      (q.decodeOverLlamaCppMeasured ? `; vs llama.cpp TQ2_0 in this run: decode ×${q.decodeOverLlamaCppMeasured.toFixed(2)}, prefill64 ×${q.prefill64OverLlamaCppMeasured.toFixed(2)}` +
        (q.prefill512OverLlamaCppMeasured ? `, prefill512 ×${q.prefill512OverLlamaCppMeasured.toFixed(2)}` : '') : '') +
      (q.decodeOverLlamaCppTQ2_0 ? `; vs llama.cpp TQ2_0 (notes): decode ×${q.decodeOverLlamaCppTQ2_0.toFixed(2)}, prefill64 ×${q.prefill64OverLlamaCppTQ2_0.toFixed(2)}` : '') +
      (q.wasmDecodeOverNative ? `; wasm/native decode ${q.wasmDecodeOverNative.toFixed(2)}, prefill64 ${q.wasmPrefill64OverNative.toFixed(2)}` : '') +
      (q.decodeInt8HeadOverFloatHead ? `; int8/float LM head decode ×${q.decodeInt8HeadOverFloatHead.toFixed(2)}` : '') +
      (q.wasmDecodeInt8HeadOverFloatHead ? ` (wasm ×${q.wasmDecodeInt8HeadOverFloatHead.toFixed(2)})` : ''));
  }
}

const argv = process.argv.slice(2);
if (argv[0] === '--child') {
  await child(argv[1], argv[2], Number(argv[3]), Number(argv[4]), Number(argv[5]), argv[6]);
} else if (argv[0] === '--llama-cpp-child') {
  await llamaCppChild(argv[1], Number(argv[2]), Number(argv[3]), Number(argv[4]), Number(argv[5]), Number(argv[6]));
} else if (process.argv[1] === here) {
  const opt = (name) => { const i = argv.indexOf(name); return i === -1 ? undefined : argv[i + 1]; };
  const json = argv.includes('--json');
  const res = await runKernelBench({
    dir: opt('--dir'), quick: argv.includes('--quick'), wasm: !argv.includes('--no-wasm'), llamaCpp: !argv.includes('--no-llama-cpp'), lmHead: opt('--lm-head'),
    threads: opt('--threads')?.split(',').map(Number),
    onProgress: json ? undefined : (m) => console.error(m), print: !json,
  });
  if (json) console.log(JSON.stringify(res, null, 2));
}
