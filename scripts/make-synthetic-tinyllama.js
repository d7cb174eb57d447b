#!/usr/bin/env node
/**
 * Writes the kernel benchmark's model pair into .cache/ (never committed): a synthetic ternary
 * model shaped like TinyLlama 1.1B (hidden 2048, intermediate 5632, 22 layers, 32 heads / 4 KV
 * heads, vocab 32000, untied head) and the very same weights in F16.
 *
 *  - ternary.tpk: BitNet architecture with quantization_config (so the runtime runs BitLinear:
 *    int8 activations × ternary codes), projections packed t2 with one scale γ per tensor,
 *    embeddings / LM head / norms F16.
 *  - f16/: model.safetensors holding W = t·γ in F16 (γ is a power-of-two multiple chosen to be
 *    exact in f16, so the two files hold identical weights), config without quantization_config,
 *    so the runtime multiplies F16 weights by float activations.
 * The weights are random (not a language model); only sizes and arithmetic matter for speed.
 * Deterministic: each tensor comes from its own seeded PRNG. Needs `npm run build`.
 *
 * `--tied` writes only ternary-tied.tpk: the same model with the embedding doubling as the LM head
 * (no lm_head tensor; the same bytes read per decoded token), which is what llama.cpp's bitnet
 * architecture can hold — scripts/bench-kernels.js exports it to GGUF TQ2_0 for its llama.cpp rows.
 *
 *   node scripts/make-synthetic-tinyllama.js [dir=.cache/synthetic-tinyllama] [--layers N] [--tied]
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { f32ToF16Bits } from '../dist/formats/dtype.js';
import { writeSafetensors } from '../dist/formats/safetensors.js';
import { TpkWriter } from '../dist/formats/tpk.js';
import { TINYLLAMA, parseArgs, prng, root } from './synthetic-common.js';

const tied = process.argv.includes('--tied');
if (tied) process.argv.splice(process.argv.indexOf('--tied'), 1);
const { dir, layers } = parseArgs('synthetic-tinyllama');
const { hidden, intermediate, heads, kvHeads, vocab } = TINYLLAMA;
const kvDim = (hidden / heads) * kvHeads;
const PROJ = [['self_attn.q_proj', hidden, hidden], ['self_attn.k_proj', kvDim, hidden], ['self_attn.v_proj', kvDim, hidden],
  ['self_attn.o_proj', hidden, hidden], ['mlp.gate_proj', intermediate, hidden], ['mlp.up_proj', intermediate, hidden], ['mlp.down_proj', hidden, intermediate]];

/** t2 bytes of rows×cols uniform codes: one PRNG word per byte, each of its bytes b picks code (3b) >> 8. */
function ternaryBytes(seed, count) {
  const next = prng(seed);
  const out = new Uint8Array(Math.ceil(count / 4));
  for (let i = 0; i < out.length; i++) {
    const r = next();
    out[i] = ((3 * (r & 255)) >> 8) | (((3 * ((r >>> 8) & 255)) >> 8) << 2) | (((3 * ((r >>> 16) & 255)) >> 8) << 4) | (((3 * (r >>> 24)) >> 8) << 6);
  }
  return out;
}

/** γ ≈ 1/sqrt(2/3·cols) (keeps activations' scale), rounded to 2^-10 steps so t·γ is exact in f16. */
function gammaFor(cols) {
  return Math.round(1024 / Math.sqrt((2 / 3) * cols)) / 1024;
}

/** F16 t·γ expanded from t2 bytes (the same weights as the ternary file). */
function dequantizedF16(packed, count, gamma) {
  const bits = [f32ToF16Bits(-gamma), 0, f32ToF16Bits(gamma)];
  const out = new Uint16Array(count);
  for (let e = 0; e < count; e++) out[e] = bits[(packed[e >> 2] >> (2 * (e & 3))) & 3];
  return new Uint8Array(out.buffer);
}

/** F16 values uniform in mean ± spread. */
function floatF16(seed, count, mean, spread) {
  const table = new Uint16Array(4096);
  const next = prng(seed);
  for (let i = 0; i < table.length; i++) table[i] = f32ToF16Bits(mean + spread * (next() / 2 ** 31 - 1));
  const out = new Uint16Array(count);
  for (let e = 0; e < count; e++) out[e] = table[next() & 4095];
  return new Uint8Array(out.buffer);
}

/** Every tensor in file order: name, shape, and either ternary (seed, γ) or float (a thunk for its F16 bytes). */
function plan() {
  const tensors = [];
  let seed = 100;
  const vec = (name, size, mean, spread) => { const s = seed++; tensors.push({ name, shape: [size], f16: () => floatF16(s, size, mean, spread) }); };
  const embed = seed++, head = seed++;
  tensors.push({ name: 'model.embed_tokens.weight', shape: [vocab, hidden], f16: () => floatF16(embed, vocab * hidden, 0, 0.05) });
  for (let l = 0; l < layers; l++) {
    const p = `model.layers.${l}`;
    vec(`${p}.input_layernorm.weight`, hidden, 1, 0.1);
    vec(`${p}.post_attention_layernorm.weight`, hidden, 1, 0.1);
    vec(`${p}.self_attn.attn_sub_norm.weight`, hidden, 1, 0.1);
    vec(`${p}.mlp.ffn_sub_norm.weight`, intermediate, 1, 0.1);
    for (const [name, rows, cols] of PROJ) tensors.push({ name: `${p}.${name}.weight`, shape: [rows, cols], seed: seed++, gamma: gammaFor(cols) });
  }
  vec('model.norm.weight', hidden, 1, 0.1);
  if (!tied) tensors.push({ name: 'lm_head.weight', shape: [vocab, hidden], f16: () => floatF16(head, vocab * hidden, 0, 0.05) });
  return tensors;
}

function config(quantized) {
  return {
    architectures: ['BitNetForCausalLM'], model_type: 'bitnet', hidden_size: hidden, intermediate_size: intermediate,
    num_hidden_layers: layers, num_attention_heads: heads, num_key_value_heads: kvHeads, vocab_size: vocab,
    hidden_act: 'relu2', max_position_embeddings: 2048, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: tied,
    bos_token_id: 1, eos_token_id: 2, torch_dtype: 'float16',
    ...(quantized ? { quantization_config: { quant_method: 'bitnet', linear_class: 'autobitlinear', quantization_mode: 'online' } } : {}),
  };
}

const tensors = plan();
// Any tokenizer will do for a benchmark that feeds token ids; the bundled TinyStories one is small.
const tokenizerJson = readFileSync(path.join(root, 'fixtures', 'tinystories-656K', 'tokenizer.json'), 'utf8');
mkdirSync(path.join(dir, 'f16'), { recursive: true });

const started = Date.now();
const tpkPath = path.join(dir, tied ? 'ternary-tied.tpk' : 'ternary.tpk');
const writer = TpkWriter.create(tpkPath, {
  formatVersion: 1, producer: { name: 'tritpack make-synthetic-tinyllama', version: '0' }, createdAt: new Date().toISOString(),
  source: { path: 'synthetic' }, files: { 'config.json': JSON.stringify(config(true), null, 2), 'tokenizer.json': tokenizerJson },
  conversion: { packing: 't2', scale: 'tensor', synthetic: true },
}, tensors.map((t) => {
  const count = t.shape.reduce((a, b) => a * b, 1);
  return t.f16 ? { name: t.name, shape: t.shape, encoding: 'F16', dataLength: 2 * count }
    : { name: t.name, shape: t.shape, encoding: 't2', sourceDType: 'F16', scale: { granularity: 'tensor', count: 1 }, dataLength: Math.ceil(count / 4) };
}), { force: true });
try {
  for (const t of tensors) {
    if (t.f16) writer.writeTensor(t.name, t.f16());
    else writer.writeTensor(t.name, ternaryBytes(t.seed, t.shape[0] * t.shape[1]), Float32Array.of(t.gamma), { gamma: t.gamma });
  }
  writer.finish();
} catch (err) {
  writer.abort();
  throw err;
}
console.log(`wrote ${path.relative(root, tpkPath)} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
if (tied) process.exit(0);

writeSafetensors(path.join(dir, 'f16', 'model.safetensors'), tensors.map((t) => ({
  name: t.name, dtype: 'F16', shape: t.shape,
  data: t.f16 ?? (() => dequantizedF16(ternaryBytes(t.seed, t.shape[0] * t.shape[1]), t.shape[0] * t.shape[1], t.gamma)),
})), { format: 'pt' });
writeFileSync(path.join(dir, 'f16', 'config.json'), JSON.stringify(config(false), null, 2));
writeFileSync(path.join(dir, 'f16', 'tokenizer.json'), tokenizerJson);
console.log(`wrote ${path.relative(root, path.join(dir, 'f16'))}/ (${((Date.now() - started) / 1000).toFixed(1)} s total)`);
