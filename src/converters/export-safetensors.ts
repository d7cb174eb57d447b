/**
 * .tpk → a plain dequantized Hugging Face checkpoint: every tensor as floats of one dtype
 * (ternary ones as t·γ), config.json without quantization_config, and the tokenizer files — for
 * tools that understand nothing else. The weights are exactly the ternary model's; what is lost
 * is BitNet's int8 activation quantization, which a plain checkpoint cannot request.
 */
import { fromFloat32, isFloatDType, type DType, type FloatDType } from '../formats/dtype.js';
import type { SafetensorsEntry } from '../formats/safetensors.js';
import { TpkModel, writeHfCheckpoint } from './export-common.js';

export interface SafetensorsExportOptions {
  input: string;
  output: string;
  /** default: the model's own dtype from config.json (torch_dtype / dtype), else F32 */
  dtype?: FloatDType;
  force?: boolean;
}

export interface SafetensorsExportSummary { input: string; output: string; dtype: FloatDType; tensors: number; dequantized: number; files: string[]; warnings: string[] }

const TORCH_DTYPES: Record<string, FloatDType> = { float32: 'F32', float16: 'F16', bfloat16: 'BF16' };
const TORCH_NAMES: Record<FloatDType, string> = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' };

export function exportSafetensors(options: SafetensorsExportOptions): SafetensorsExportSummary {
  const model = TpkModel.open(options.input);
  try {
    const configured = (model.config['torch_dtype'] ?? model.config['dtype']) as string | undefined;
    const dtype = options.dtype ?? TORCH_DTYPES[configured ?? ''] ?? 'F32';
    let dequantized = 0;
    const entries: SafetensorsEntry[] = model.tensors.map((entry) => {
      const name = model.hfName(entry);
      if (model.isTernary(entry.name)) dequantized++;
      else if (!isFloatDType(entry.encoding as DType) && entry.encoding !== 'F64') {
        // integer tensors (position ids, masks) are not weights: carried as they are
        return { name, dtype: entry.encoding as DType, shape: entry.shape, data: () => model.tpk.readData(entry.name) };
      }
      return { name, dtype, shape: entry.shape, data: () => fromFloat32(model.float32(entry.name), dtype) };
    });
    const config: Record<string, unknown> = { ...model.config };
    const warnings: string[] = [];
    if (config['quantization_config'] !== undefined) {
      delete config['quantization_config'];
      warnings.push('quantization_config removed: transformers will run the ternary weights with float activations (no int8 activation quantization)');
    }
    if ('dtype' in config) config['dtype'] = TORCH_NAMES[dtype];
    else config['torch_dtype'] = TORCH_NAMES[dtype];

    const files = writeHfCheckpoint(options.output, options.force ?? false, entries, config, model.header.files);
    return { input: options.input, output: options.output, dtype, tensors: entries.length, dequantized, files, warnings };
  } finally {
    model.close();
  }
}
