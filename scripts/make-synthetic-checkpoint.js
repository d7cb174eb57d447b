#!/usr/bin/env node
/**
 * Writes a synthetic Llama-shaped F16 checkpoint of ≥ 2 GB in 3 shards (TinyLlama-1.1B shapes:
 * hidden 2048, intermediate 5632, 22 layers, 32 heads / 4 KV heads, vocab 32000, untied head),
 * for measuring conversion memory and throughput on something larger than the fixtures. Needs the
 * build (`npm run build`). Deterministic: every tensor comes from its own seeded PRNG, so the file
 * bytes are the same on every run. Tensors are produced one at a time by writer thunks, so memory
 * stays at one tensor (the largest is the 131 MB embedding). Not committed: it lands in .cache/.
 *
 *   node scripts/make-synthetic-checkpoint.js [dir=.cache/synthetic-2g] [--layers N]
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { f32ToF16Bits } from '../dist/formats/dtype.js';
import { writeShardedSafetensors } from '../dist/formats/safetensors.js';
import { TINYLLAMA, parseArgs, prng } from './synthetic-common.js';

const { dir, layers } = parseArgs('synthetic-2g');
const SHARD_BYTES = 1_000_000_000;

const { hidden, intermediate, heads, kvHeads, vocab } = TINYLLAMA;
const headDim = hidden / heads;

/**
 * 65,536 f16 samples of N(mean, std) (Box-Muller): drawing table entries at random gives
 * Gaussian-distributed weights at one PRNG call per element instead of a log, sqrt and cos.
 */
function gaussianTable(seed, mean, std) {
  const next = prng(seed);
  const table = new Uint16Array(65536);
  for (let i = 0; i < table.length; i++) {
    const u = (next() + 1) / 4294967297;
    const v = next() / 4294967296;
    table[i] = f32ToF16Bits(mean + std * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v));
  }
  return table;
}

const LINEAR = gaussianTable(1, 0, 0.02);
const NORM = gaussianTable(2, 1, 0.1);

function tensor(name, shape, table, seed) {
  const count = shape.reduce((a, b) => a * b, 1);
  return {
    name, dtype: 'F16', shape,
    data: () => {
      const next = prng(seed);
      const out = new Uint16Array(count);
      for (let i = 0; i < count; i++) out[i] = table[next() & 0xffff];
      return new Uint8Array(out.buffer);
    },
  };
}

const entries = [];
const add = (name, shape, table) => entries.push(tensor(name, shape, table, 1000 + entries.length));
add('model.embed_tokens.weight', [vocab, hidden], LINEAR);
for (let l = 0; l < layers; l++) {
  const p = `model.layers.${l}`;
  add(`${p}.input_layernorm.weight`, [hidden], NORM);
  add(`${p}.self_attn.q_proj.weight`, [hidden, hidden], LINEAR);
  add(`${p}.self_attn.k_proj.weight`, [kvHeads * headDim, hidden], LINEAR);
  add(`${p}.self_attn.v_proj.weight`, [kvHeads * headDim, hidden], LINEAR);
  add(`${p}.self_attn.o_proj.weight`, [hidden, hidden], LINEAR);
  add(`${p}.post_attention_layernorm.weight`, [hidden], NORM);
  add(`${p}.mlp.gate_proj.weight`, [intermediate, hidden], LINEAR);
  add(`${p}.mlp.up_proj.weight`, [intermediate, hidden], LINEAR);
  add(`${p}.mlp.down_proj.weight`, [hidden, intermediate], LINEAR);
}
add('model.norm.weight', [hidden], NORM);
add('lm_head.weight', [vocab, hidden], LINEAR);

if (existsSync(path.join(dir, 'model.safetensors.index.json')) || existsSync(path.join(dir, 'model.safetensors'))) {
  console.log(`${dir}: already there (delete it to regenerate)`);
  process.exit(0);
}
mkdirSync(dir, { recursive: true });
const config = {
  architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: hidden, intermediate_size: intermediate,
  num_hidden_layers: layers, num_attention_heads: heads, num_key_value_heads: kvHeads, head_dim: headDim,
  vocab_size: vocab, max_position_embeddings: 2048, rms_norm_eps: 1e-5, rope_theta: 10000.0, hidden_act: 'silu',
  tie_word_embeddings: false, bos_token_id: 1, eos_token_id: 2, torch_dtype: 'float16',
};
writeFileSync(path.join(dir, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
const started = Date.now();
const files = writeShardedSafetensors(dir, entries, SHARD_BYTES, { format: 'pt' });
const params = entries.reduce((s, e) => s + e.shape.reduce((a, b) => a * b, 1), 0);
const shards = files.filter((f) => f.endsWith('.safetensors')).length;
console.log(`${dir}: ${params.toLocaleString('en-US')} F16 parameters (${(2 * params / 1e9).toFixed(2)} GB) in ${shards} file(s), ${((Date.now() - started) / 1000).toFixed(1)} s`);
