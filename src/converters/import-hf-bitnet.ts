/**
 * An HF offline-packed BitNet checkpoint (formats.md §4: U8 `<module>.weight` [out/4, in] plus
 * `<module>.weight_scale` [1]) as a tensor source for the convert pipeline: every packed pair
 * becomes one ternary tensor under the `.weight` name with its unpacked shape, codes exact and
 * γ per tensor. γ depends on quantization_config.linear_class (§4.3):
 *  - `autobitlinear` (2B4T, bitnet-tiny-packed): W = t · weight_scale → γ = weight_scale;
 *  - `bitlinear` (the transformers default; HF1BitLLM): W = t / weight_scale → γ = 1/weight_scale.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { FormatError } from '../errors.js';
import { dtypeByteSize, fromFloat32, isFloatDType, type FloatDType } from '../formats/dtype.js';
import { SafetensorsCheckpoint } from '../formats/safetensors.js';
import { dequantizeTernary } from './export-common.js';
import { unpackHfBitnet, type LinearClass } from './export-hf-bitnet.js';
import { checkpointDirectory, parseCheckpointConfig, readCheckpointConfig } from './import-safetensors.js';
import type { SourceTensor, SourceTernary, TensorSource } from './import-source.js';

function quantization(config: Record<string, unknown>): Record<string, unknown> | undefined {
  const q = config['quantization_config'];
  return q !== null && typeof q === 'object' ? (q as Record<string, unknown>) : undefined;
}

/** A directory whose config declares transformers' BitNet quantization in offline (packed) mode, the default mode. */
export function isPackedHfBitnet(input: string): boolean {
  const file = path.join(input, 'config.json');
  if (!existsSync(input) || !statSync(input).isDirectory() || !existsSync(file)) return false;
  const q = quantization(parseCheckpointConfig(file, readFileSync(file, 'utf8')).parsed);
  return q?.['quant_method'] === 'bitnet' && (q['quantization_mode'] ?? 'offline') === 'offline';
}

interface Packed { weight: string; scale: string; rows: number; cols: number; dtype: FloatDType }

export function openHfBitnetSource(dir: string): TensorSource {
  const config = readCheckpointConfig(dir);
  const linearClass = (quantization(config.parsed)?.['linear_class'] ?? 'bitlinear') as LinearClass;
  if (linearClass !== 'bitlinear' && linearClass !== 'autobitlinear') throw new FormatError(path.join(dir, 'config.json'), `unknown quantization_config.linear_class "${String(linearClass)}"`);

  const ckpt = SafetensorsCheckpoint.open(dir);
  try {
    const { tensors, packed } = pairPackedWeights(dir, ckpt);
    const byName = new Map(tensors.map((t) => [t.name, t]));

    const readTernary = (name: string): SourceTernary => {
      const p = packed.get(name);
      if (p === undefined) throw new FormatError(dir, `${name} is not a packed BitNet weight`);
      const codes = unpackHfBitnet(ckpt.readBytes(p.weight), p.rows / 4, p.cols);
      const stored = ckpt.readFloat32(p.scale)[0]!;
      if (!Number.isFinite(stored) || stored <= 0) throw new FormatError(dir, `${p.scale} is ${stored}; a BitNet weight scale must be positive and finite`);
      const gamma = linearClass === 'autobitlinear' ? stored : Math.fround(1 / stored);
      return { codes, scales: Float32Array.of(gamma), scale: { granularity: 'tensor', count: 1 } };
    };
    const dequantize = (p: Packed): Float32Array => dequantizeTernary({ ...readTernary(p.weight), rows: p.rows, cols: p.cols });

    return {
      kind: 'hf-bitnet-packed',
      ...checkpointDirectory(dir, config, ckpt.files),
      tensors,
      get: (name) => byName.get(name),
      readBytes: (name) => {
        const p = packed.get(name);
        return p === undefined ? ckpt.readBytes(name) : fromFloat32(dequantize(p), p.dtype);
      },
      readFloat32: (name) => {
        const p = packed.get(name);
        return p === undefined ? ckpt.readFloat32(name) : dequantize(p);
      },
      readTernary,
      close: () => ckpt.close(),
    };
  } catch (err) {
    ckpt.close();
    throw err;
  }
}

/**
 * Each U8 `.weight` with its `.weight_scale` becomes one ternary tensor (the scale's float dtype,
 * the unpacked shape); every other tensor passes through. A scale without its weight, a weight
 * without its scale, or a packed weight of the wrong shape is a FormatError.
 */
function pairPackedWeights(dir: string, ckpt: SafetensorsCheckpoint): { tensors: SourceTensor[]; packed: Map<string, Packed> } {
  const packed = new Map<string, Packed>();
  const tensors: SourceTensor[] = [];
  for (const info of ckpt.tensors) {
    if (info.name.endsWith('.weight_scale')) {
      if (ckpt.get(info.name.replace(/_scale$/, '')) === undefined) throw new FormatError(info.file, `${info.name} has no packed weight beside it`);
      continue;
    }
    const scaleName = `${info.name}_scale`;
    const scale = ckpt.get(scaleName);
    if (info.dtype !== 'U8' || !info.name.endsWith('.weight')) {
      if (scale !== undefined) throw new FormatError(info.file, `${info.name} is ${info.dtype}, but a packed weight (U8) is expected beside ${scaleName}`);
      tensors.push({ name: info.name, dtype: info.dtype, shape: info.shape, byteLength: info.byteLength, file: info.file });
      continue;
    }
    if (scale === undefined) throw new FormatError(info.file, `packed weight ${info.name} has no ${scaleName}`);
    if (info.shape.length !== 2) throw new FormatError(info.file, `packed weight ${info.name} has shape ${JSON.stringify(info.shape)}, expected [out/4, in]`);
    if (scale.shape.reduce((a, b) => a * b, 1) !== 1 || !isFloatDType(scale.dtype)) throw new FormatError(scale.file, `${scaleName} must hold one float, found ${scale.dtype} ${JSON.stringify(scale.shape)}`);
    const [p, cols] = info.shape as [number, number];
    const dtype = scale.dtype;
    packed.set(info.name, { weight: info.name, scale: scaleName, rows: 4 * p, cols, dtype });
    tensors.push({ name: info.name, dtype, shape: [4 * p, cols], byteLength: 4 * p * cols * dtypeByteSize(dtype), file: info.file, ternary: { granularity: 'tensor', count: 1 } });
  }
  if (packed.size === 0) throw new FormatError(dir, 'declares offline BitNet quantization but holds no packed U8 weights with weight_scale');
  return { tensors, packed };
}
