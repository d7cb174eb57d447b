/**
 * A "tensor source": what the convert pipeline reads from — a float safetensors checkpoint
 * directory, an HF offline-packed BitNet directory or a GGUF file. Tensors appear under their
 * Hugging Face names and PyTorch shapes. Tensors the source already stores ternary carry
 * `ternary` and must be taken with readTernary(): re-running absmean on their dequantized values
 * would keep the codes but turn γ into γ·(fraction of non-zeros).
 */
import { closeSync, existsSync, openSync, readSync, statSync } from 'node:fs';
import type { DType } from '../formats/dtype.js';
import type { TpkScale } from '../formats/tpk.js';
import { openGgufSource } from './import-gguf.js';
import { isPackedHfBitnet, openHfBitnetSource } from './import-hf-bitnet.js';
import { openSafetensorsSource } from './import-safetensors.js';

export interface SourceTensor {
  name: string;
  /** float dtype of the bytes readBytes() returns */
  dtype: DType;
  /** PyTorch shape (for packed tensors, the unpacked one) */
  shape: number[];
  byteLength: number;
  /** the file the tensor is read from (for error messages) */
  file: string;
  /** present when the source stores this tensor ternary: its scale layout */
  ternary?: TpkScale;
}

export interface SourceTernary {
  /** t ∈ {−1, 0, 1}, row-major over the PyTorch shape */
  codes: Int8Array;
  /** γ per scale group, f32; t·γ is the weight */
  scales: Float32Array;
  scale: TpkScale;
}

export interface TensorSource {
  readonly kind: 'safetensors' | 'hf-bitnet-packed' | 'gguf';
  readonly path: string;
  /** the files the tensors come from (their sizes are the conversion's input bytes) */
  readonly files: string[];
  /** every file the output derives from (side files, index, weights), hashed into the .tpk header … */
  readonly provenance: string[];
  /** … under names relative to this directory */
  readonly root: string;
  /** the model's config.json, parsed (rebuilt from metadata for GGUF) */
  readonly config: Record<string, unknown>;
  /** verbatim text of config.json, tokenizer.json, … for the .tpk header (config.json always present) */
  readonly sideFiles: Record<string, string>;
  /** tied-weight hints in the safetensors `__metadata__` style: missing name → stored name */
  readonly metadata: Record<string, string>;
  /** things the user should know about the source (assumptions made while reading it) */
  readonly warnings: string[];
  readonly tensors: SourceTensor[];
  get(name: string): SourceTensor | undefined;
  /** the tensor's values in `dtype`, little-endian (ternary tensors dequantized to t·γ) */
  readBytes(name: string): Uint8Array;
  /** the same values as float32 */
  readFloat32(name: string): Float32Array;
  readTernary(name: string): SourceTernary;
  close(): void;
}

/** Whether a path is a GGUF file (by its magic, not its extension). */
export function looksLikeGguf(input: string): boolean {
  if (!existsSync(input) || !statSync(input).isFile()) return false;
  const head = Buffer.alloc(4);
  const fd = openSync(input, 'r');
  try {
    readSync(fd, head, 0, 4, 0);
  } finally {
    closeSync(fd);
  }
  return head.toString('latin1') === 'GGUF';
}

/** The tensor source for a convert input: a GGUF file, an HF offline-packed BitNet directory, else a float checkpoint directory. */
export function openTensorSource(input: string): TensorSource {
  // by magic, or by name: a damaged .gguf must get the GGUF reader's diagnosis, not "not a directory"
  if (looksLikeGguf(input) || (/\.gguf$/i.test(input) && existsSync(input) && statSync(input).isFile())) return openGgufSource(input);
  if (isPackedHfBitnet(input)) return openHfBitnetSource(input);
  return openSafetensorsSource(input);
}
