/**
 * A Hugging Face checkpoint directory of float weights (config.json plus model.safetensors or a
 * sharded index) as a tensor source for the convert pipeline, and the directory conventions the
 * HF offline-packed BitNet source shares with it: config.json, the side files a .tpk carries,
 * the tied-weight hints in `__metadata__`, and which files the output derives from.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { FormatError, TritpackError } from '../errors.js';
import { SafetensorsCheckpoint, SafetensorsFile } from '../formats/safetensors.js';
import type { TensorSource } from './import-source.js';

/** Text files copied verbatim into the .tpk header (config.json is required, the rest optional). */
export const SIDE_FILES = ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json'] as const;

export interface CheckpointConfig {
  text: string;
  parsed: Record<string, unknown>;
}

/** config.json of a checkpoint directory; one-line errors for a missing directory or file and for bad JSON. */
export function readCheckpointConfig(dir: string): CheckpointConfig {
  if (!existsSync(dir)) throw new TritpackError(`${dir}: no such checkpoint directory`);
  if (!statSync(dir).isDirectory()) throw new TritpackError(`${dir}: not a directory (convert needs a checkpoint directory with config.json)`);
  const file = path.join(dir, 'config.json');
  if (!existsSync(file)) throw new FormatError(dir, 'no config.json (a Hugging Face checkpoint directory needs one)');
  return parseCheckpointConfig(file, readFileSync(file, 'utf8'));
}

export function parseCheckpointConfig(file: string, text: string): CheckpointConfig {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new FormatError(file, `not valid JSON (${(err as Error).message})`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new FormatError(file, 'not a JSON object');
  return { text, parsed: parsed as Record<string, unknown> };
}

/** config.json (already read) and whichever other side files the directory has, verbatim. */
function readSideFiles(dir: string, config: CheckpointConfig): Record<string, string> {
  const files: Record<string, string> = { 'config.json': config.text };
  for (const name of SIDE_FILES) {
    const file = path.join(dir, name);
    if (name !== 'config.json' && existsSync(file)) files[name] = readFileSync(file, 'utf8');
  }
  return files;
}

/** The `__metadata__` of all weight files merged (tinystories-656K names its tied embedding there). */
function readSafetensorsMetadata(files: string[]): Record<string, string> {
  const merged: Record<string, string> = {};
  for (const file of files) {
    const f = SafetensorsFile.open(file);
    try {
      Object.assign(merged, f.metadata);
    } finally {
      f.close();
    }
  }
  return merged;
}

/**
 * The files of a checkpoint directory a conversion derives from: the side files present, the
 * shard index when the weights really come from shards (a model.safetensors beside it wins),
 * and the weight files.
 */
function checkpointProvenance(dir: string, weightFiles: string[]): string[] {
  const sharded = !weightFiles.some((f) => path.basename(f) === 'model.safetensors');
  const names = [...SIDE_FILES, ...(sharded ? ['model.safetensors.index.json'] : [])];
  return [...names.map((name) => path.join(dir, name)).filter((file) => existsSync(file)), ...weightFiles];
}

/** Everything a tensor source read from a checkpoint directory says besides its tensors. */
export function checkpointDirectory(dir: string, config: CheckpointConfig, weightFiles: string[]): Omit<TensorSource, 'kind' | 'tensors' | 'get' | 'readBytes' | 'readFloat32' | 'readTernary' | 'close'> {
  return {
    path: dir,
    root: dir,
    files: [...weightFiles],
    provenance: checkpointProvenance(dir, weightFiles),
    config: config.parsed,
    sideFiles: readSideFiles(dir, config),
    metadata: readSafetensorsMetadata(weightFiles),
    warnings: [],
  };
}

/** A float checkpoint directory as a tensor source (no tensor is ternary: convert ternarizes them). */
export function openSafetensorsSource(dir: string): TensorSource {
  const config = readCheckpointConfig(dir);
  const checkpoint = SafetensorsCheckpoint.open(dir);
  try {
    rejectPackedBitNet(dir, checkpoint);
    return {
      kind: 'safetensors',
      ...checkpointDirectory(dir, config, checkpoint.files),
      tensors: checkpoint.tensors,
      get: (name) => checkpoint.get(name),
      readBytes: (name) => checkpoint.readBytes(name),
      readFloat32: (name) => checkpoint.readFloat32(name),
      readTernary: (name) => { throw new FormatError(dir, `tensor ${name} is not stored ternary`); },
      close: () => checkpoint.close(),
    };
  } catch (err) {
    checkpoint.close();
    throw err;
  }
}

/**
 * uint8 codes + weight_scale without a config declaring offline BitNet quantization (which the
 * packed-BitNet source would have taken): absmean on the packed bytes would be nonsense.
 */
function rejectPackedBitNet(dir: string, checkpoint: SafetensorsCheckpoint): void {
  if (checkpoint.tensors.some((t) => t.name.endsWith('.weight_scale'))) {
    throw new FormatError(dir, 'is an already packed BitNet checkpoint (uint8 codes + weight_scale) but its config.json has no quantization_config for it (quant_method "bitnet"); convert needs float master weights or that config');
  }
}
