/**
 * The llama-256 fixture written as shards the way transformers' save_pretrained does it. The
 * safetensors tests prove this reproduces shared/fixtures/llama-256-sharded byte for byte, so the
 * repo generates the sharded variant instead of storing the same tensors twice.
 */
import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { SafetensorsFile, writeShardedSafetensors } from '../../src/formats/safetensors.js';
import { fixtureDir } from './fixtures.js';

/** Tensor names in the order of a Llama state dict (the order save_pretrained fills shards in). */
export function llamaStateDictOrder(layers: number): string[] {
  const names = ['model.embed_tokens.weight'];
  for (let i = 0; i < layers; i++) {
    const p = `model.layers.${i}.`;
    names.push(...['q_proj', 'k_proj', 'v_proj', 'o_proj'].map((m) => `${p}self_attn.${m}.weight`));
    names.push(...['gate_proj', 'up_proj', 'down_proj'].map((m) => `${p}mlp.${m}.weight`));
    names.push(`${p}input_layernorm.weight`, `${p}post_attention_layernorm.weight`);
  }
  names.push('model.norm.weight', 'lm_head.weight');
  return names;
}

/** llama-256's weights as save_pretrained(max_shard_size=`maxShardBytes`) shards in `dir`; returns the paths written. */
export function writeLlamaShards(dir: string, maxShardBytes = 2_000_000): string[] {
  const file = SafetensorsFile.open(path.join(fixtureDir('llama-256'), 'model.safetensors'));
  try {
    const byName = new Map(file.tensors.map((t) => [t.name, t]));
    const ordered = llamaStateDictOrder(2).map((name) => {
      const t = byName.get(name);
      if (!t) throw new Error(`llama-256 has no tensor ${name}`);
      return { name, dtype: t.dtype, shape: t.shape, data: () => file.readBytes(name) };
    });
    return writeShardedSafetensors(dir, ordered, maxShardBytes, { format: 'pt' });
  } finally {
    file.close();
  }
}

/** A complete sharded llama-256 checkpoint directory (shards, index, config and tokenizer files) in `dir`. */
export function makeShardedLlama256(dir: string): string {
  mkdirSync(dir, { recursive: true });
  if (!existsSync(path.join(dir, 'model.safetensors.index.json'))) writeLlamaShards(dir);
  for (const name of ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json']) {
    copyFileSync(path.join(fixtureDir('llama-256'), name), path.join(dir, name));
  }
  return dir;
}
