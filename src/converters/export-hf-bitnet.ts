/**
 * .tpk → a Hugging Face checkpoint directory in transformers' offline-packed BitNet format
 * (formats.md §4.1–4.3), ready to push: model.safetensors, config.json with quantization_config,
 * and the tokenizer / generation files carried in the .tpk.
 *
 * Each ternary projection becomes `<module>.weight` U8 [out/4, in] (4 codes per byte, chunked
 * along the output rows: unpacked row i·P + r sits in packed row r, bits 2i..2i+1, code t+1)
 * plus `<module>.weight_scale` [1]. Which value goes in weight_scale depends on linear_class:
 *  - `autobitlinear` (default, what microsoft/bitnet-b1.58-2B-4T and bitnet-tiny-packed use):
 *    W = t · weight_scale, so weight_scale = γ;
 *  - `bitlinear`: y = (x_q @ tᵀ) / (s_x · weight_scale), so weight_scale = 1/γ.
 * The packed format has one scale per tensor and needs out % 4 == 0; a ternary tensor that does
 * not fit (per-channel or group scales, odd row count) is stored dequantized instead and listed
 * in quantization_config.modules_to_not_convert, so transformers keeps it an ordinary Linear.
 */
import { TritpackError } from '../errors.js';
import { fromFloat32, isFloatDType, type DType, type FloatDType } from '../formats/dtype.js';
import type { SafetensorsEntry } from '../formats/safetensors.js';
import { TpkModel, dequantizeTernary, writeHfCheckpoint } from './export-common.js';

export type LinearClass = 'autobitlinear' | 'bitlinear';

export interface HfBitnetExportOptions {
  input: string;
  output: string;
  linearClass?: LinearClass;
  /** dtype of weight_scale (default BF16, as transformers stores it for 2B4T) */
  scaleDType?: FloatDType;
  force?: boolean;
}

export interface HfBitnetExportSummary {
  input: string;
  output: string;
  linearClass: LinearClass;
  weightScale: string;
  packed: string[];
  /** ternary tensors stored dequantized because the packed format cannot hold them */
  unpacked: { name: string; reason: string }[];
  files: string[];
  warnings: string[];
}

/** §4.2 packing: codes [rows, cols] (rows % 4 == 0) → U8 [rows/4, cols]. */
export function packHfBitnet(codes: Int8Array, rows: number, cols: number): Uint8Array {
  if (rows % 4 !== 0) throw new TritpackError(`HF BitNet packing needs a row count divisible by 4, got ${rows}`);
  const p = rows / 4;
  const out = new Uint8Array(p * cols);
  for (let i = 0; i < 4; i++) {
    for (let r = 0; r < p; r++) {
      const src = (i * p + r) * cols;
      const dst = r * cols;
      for (let c = 0; c < cols; c++) {
        const t = codes[src + c]!;
        if (t !== -1 && t !== 0 && t !== 1) throw new TritpackError(`ternary code ${t} at element ${src + c} is not -1, 0 or 1`);
        out[dst + c] = out[dst + c]! | ((t + 1) << (2 * i));
      }
    }
  }
  return out;
}

/** §4.2 unpacking: U8 [p, cols] → codes [4p, cols]; code 3 (never written) is rejected. */
export function unpackHfBitnet(packed: Uint8Array, p: number, cols: number): Int8Array {
  const out = new Int8Array(4 * p * cols);
  for (let r = 0; r < p; r++) {
    for (let c = 0; c < cols; c++) {
      const byte = packed[r * cols + c]!;
      for (let i = 0; i < 4; i++) {
        const code = (byte >> (2 * i)) & 3;
        if (code === 3) throw new TritpackError(`packed BitNet byte ${byte} at row ${r}, column ${c} holds the invalid code 3`);
        out[(i * p + r) * cols + c] = code - 1;
      }
    }
  }
  return out;
}

/** weight_scale for γ under a linear class (rounded to f32 first, then to the stored dtype). */
export function weightScaleFor(gamma: number, linearClass: LinearClass): number {
  return linearClass === 'autobitlinear' ? gamma : Math.fround(1 / gamma);
}

function moduleName(weightName: string): string {
  return weightName.replace(/\.weight$/, '');
}

export function exportHfBitnet(options: HfBitnetExportOptions): HfBitnetExportSummary {
  const linearClass = options.linearClass ?? 'autobitlinear';
  const scaleDType = options.scaleDType ?? 'BF16';
  const model = TpkModel.open(options.input);
  try {
    const { entries, packed, unpacked } = hfBitnetEntries(model, linearClass, scaleDType);
    if (packed.length === 0) throw new TritpackError(`${options.input}: no ternary tensor can be stored in the HF BitNet packed format`);

    const quantizationConfig: Record<string, unknown> = { linear_class: linearClass, quant_method: 'bitnet', quantization_mode: 'offline' };
    if (unpacked.length > 0) quantizationConfig['modules_to_not_convert'] = ['lm_head', ...unpacked.map((u) => moduleName(u.name))];
    const config: Record<string, unknown> = { ...model.config, quantization_config: quantizationConfig };
    const warnings: string[] = [];
    if (unpacked.length > 0) warnings.push(`${unpacked.length} ternary tensor(s) stored dequantized: ${unpacked.map((u) => `${u.name} (${u.reason})`).join(', ')}`);
    if (config['model_type'] !== 'bitnet') {
      warnings.push('transformers\' BitNet layers quantize activations to int8 per token; this model was not trained that way, so its outputs under transformers will differ from tritpack\'s float-activation runtime');
    }

    const files = writeHfCheckpoint(options.output, options.force ?? false, entries, config, model.header.files);
    return {
      input: options.input, output: options.output, linearClass,
      weightScale: `${scaleDType} ${linearClass === 'autobitlinear' ? 'gamma (multiplied)' : '1/gamma (divided)'}`,
      packed, unpacked, files, warnings,
    };
  } finally {
    model.close();
  }
}

/** Why the packed format cannot hold a ternary tensor (one scale per tensor, rows in groups of 4), or undefined. */
function packedMisfit(shape: number[], granularity: string | undefined): string | undefined {
  if (shape.length !== 2) return 'not a matrix';
  if (granularity !== 'tensor') return `${granularity} scales (the packed format holds one scale per tensor)`;
  if (shape[0]! % 4 !== 0) return `${shape[0]} rows (not divisible by 4)`;
  return undefined;
}

/** The checkpoint's tensors, read lazily: packed U8 + weight_scale where the format allows, else floats. */
function hfBitnetEntries(model: TpkModel, linearClass: LinearClass, scaleDType: FloatDType): {
  entries: SafetensorsEntry[]; packed: string[]; unpacked: { name: string; reason: string }[];
} {
  const packed: string[] = [];
  const unpacked: { name: string; reason: string }[] = [];
  const entries: SafetensorsEntry[] = [];
  for (const entry of model.tensors) {
    const name = model.hfName(entry);
    if (!model.isTernary(entry.name)) {
      entries.push({ name, dtype: entry.encoding as DType, shape: entry.shape, data: () => model.tpk.readData(entry.name) });
      continue;
    }
    const reason = packedMisfit(entry.shape, entry.scale?.granularity);
    if (reason !== undefined) {
      const dtype: FloatDType = entry.sourceDType !== undefined && isFloatDType(entry.sourceDType) ? entry.sourceDType : 'BF16';
      unpacked.push({ name, reason });
      entries.push({ name, dtype, shape: entry.shape, data: () => fromFloat32(dequantizeTernary(model.ternary(entry.name)), dtype) });
      continue;
    }
    const [rows, cols] = entry.shape as [number, number];
    packed.push(name);
    entries.push({ name, dtype: 'U8', shape: [rows / 4, cols], data: () => packHfBitnet(model.ternary(entry.name).codes, rows, cols) });
    entries.push({
      name: `${moduleName(name)}.weight_scale`, dtype: scaleDType, shape: [1],
      data: () => fromFloat32(Float32Array.of(weightScaleFor(model.tpk.readScales(entry.name)[0]!, linearClass)), scaleDType),
    });
  }
  return { entries, packed, unpacked };
}
