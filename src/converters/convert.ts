/**
 * The conversion pipeline: a Hugging Face checkpoint directory → one packed ternary .tpk file.
 *
 * It streams: the plan fixes every tensor's encoding and byte length first, the writer lays out
 * the file, then each tensor is read, checked, ternarized or kept, packed and written before the
 * next is read. Peak memory is a small multiple of the largest tensor, whatever the model's size.
 * Any failure aborts the writer, which removes its temp file: there is never a partial output.
 */
import { createHash } from 'node:crypto';
import { closeSync, existsSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { FormatError, TritpackError } from '../errors.js';
import { type DType, type FloatDType, fromFloat32, isFloatDType, toFloat32 } from '../formats/dtype.js';
import { SafetensorsCheckpoint, SafetensorsFile } from '../formats/safetensors.js';
import { packTernary, type TernaryPacking } from '../formats/ternary.js';
import { TPK_FORMAT_VERSION, TpkWriter, type TpkHeader } from '../formats/tpk.js';
import {
  declaresTernaryTraining, findAliases, isTernaryValued, planConversion, toTpkPlanned,
  type PlannedKeep, type PlannedTensor, type PlannedTernary, type TensorPlan,
} from './plan.js';
import { openTensorSource } from './import-source.js';
import { ternarizeAbsmean, type AbsmeanFormula, type ScaleGranularity } from './ternarize.js';

/** Text files copied verbatim into the .tpk header (config.json is required, the rest optional). */
export const SIDE_FILES = ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json'] as const;

export interface ConvertOptions {
  /** A checkpoint directory: config.json plus model.safetensors or a sharded index. */
  input: string;
  output: string;
  packing?: TernaryPacking;
  scale?: ScaleGranularity;
  formula?: AbsmeanFormula;
  include?: string[];
  exclude?: string[];
  keepDType?: FloatDType;
  force?: boolean;
  /** Convert weights holding NaN/Inf anyway; those values count as 0 when ternarizing. */
  allowNonFinite?: boolean;
  /** The hub repo the input was pulled from, recorded in the .tpk header's `source`. */
  sourceRepo?: { repo: string; revision?: string };
  onProgress?: (event: ConvertEvent) => void;
}

export type ConvertEvent =
  | { type: 'plan'; plan: TensorPlan; inputBytes: number }
  | { type: 'hash'; file: string; bytes: number }
  | { type: 'tensor'; index: number; count: number; tensor: PlannedTensor; bytesDone: number; bytesTotal: number }
  | { type: 'warning'; message: string };

/**
 * Whether the source was trained for ternary weights. 'declared': the config says BitNet;
 * 'ternary-valued': every ternarized matrix already held only {−a, 0, a} per row (saved after
 * ternary training); 'float': an ordinary float model, which plain absmean usually ruins.
 */
export type TernaryTrainingVerdict = 'declared' | 'ternary-valued' | 'float';

export interface ConversionSummary {
  input: string;
  output: string;
  packing: TernaryPacking;
  scale: string;
  formula: AbsmeanFormula;
  tensors: { ternarized: number; kept: number; total: number };
  parameters: { ternarized: number; kept: number; total: number };
  /** Bytes of the safetensors files read. */
  inputBytes: number;
  /** Bytes of the .tpk written (header included). */
  outputBytes: number;
  /** Tensor data + scales, in bits per parameter: over the ternarized tensors, and over all tensors (header excluded). */
  bitsPerWeight: { ternarized: number; overall: number };
  /** Fraction of zero codes over all ternarized tensors. */
  zeroFraction: number;
  seconds: number;
  /** Input megabytes (10^6 bytes) per second, hashing included. */
  megabytesPerSecond: number;
  ternaryTraining: TernaryTrainingVerdict;
  /** Tensors the output does not store because they are tied to a stored one: name → stored name. */
  aliases: Record<string, string>;
  warnings: string[];
}

export const NOT_TERNARY_TRAINED_WARNING =
  'the source looks like an ordinary float model: plain absmean on a model not trained for ternary weights collapses it: run validate to measure the damage';

export function formatScale(scale: ScaleGranularity): string {
  return scale.kind === 'group' ? `group:${scale.size}` : scale.kind;
}

export async function convertCheckpoint(options: ConvertOptions): Promise<ConversionSummary> {
  const started = performance.now();
  const packing = options.packing ?? 't158';
  const scale = options.scale ?? { kind: 'tensor' };
  const formula = options.formula ?? 'reference';
  const emit = options.onProgress ?? (() => {});
  const input = path.resolve(options.input);
  const output = path.resolve(options.output);

  // A GGUF file or an HF offline-packed BitNet dir is read through its tensor source (already
  // ternary tensors keep their codes); anything else is a float safetensors checkpoint.
  const source = openTensorSource(input);
  const config = source ? parseConfig(input, source.sideFiles['config.json']!) : readConfig(input);
  checkOutput(output, options.force ?? false);
  const checkpoint = source ?? SafetensorsCheckpoint.open(input);
  let writer: TpkWriter | undefined;
  try {
    const metadata = source ? source.metadata : readMetadata(checkpoint.files);
    if (!source) rejectPackedBitNet(input, config.parsed, checkpoint as SafetensorsCheckpoint);
    for (const message of source?.warnings ?? []) emit({ type: 'warning', message });
    const plan = planConversion(checkpoint.tensors, {
      packing, scale, include: options.include, exclude: options.exclude, keepDType: options.keepDType,
      aliases: findAliases(checkpoint.tensors.map((t) => t.name), metadata, config.parsed),
    });
    const inputBytes = checkpoint.files.reduce((sum, f) => sum + statSync(f).size, 0);
    emit({ type: 'plan', plan, inputBytes });
    for (const message of plan.warnings) emit({ type: 'warning', message });

    const header: Omit<TpkHeader, 'tensors'> = {
      formatVersion: TPK_FORMAT_VERSION,
      producer: PRODUCER,
      createdAt: new Date().toISOString(),
      source: { ...options.sourceRepo, path: input, files: hashSourceFiles(source?.kind === 'gguf' ? path.dirname(input) : input, checkpoint.files, emit, source?.kind === 'gguf') },
      files: source ? source.sideFiles : readSideFiles(input, config.text),
      conversion: {
        packing, scale: formatScale(scale), formula,
        include: options.include ?? [], exclude: options.exclude ?? [],
        keepDType: options.keepDType ?? null, allowNonFinite: options.allowNonFinite ?? false,
        aliases: plan.aliases,
        declaredTernaryTraining: declaresTernaryTraining(config.parsed),
      },
    };
    writer = TpkWriter.create(output, header, plan.tensors.map(toTpkPlanned), { force: options.force ?? false });

    const declared = declaresTernaryTraining(config.parsed);
    const totals = { codes: 0, zeros: 0, ternaryValued: true };
    const warnings = [...plan.warnings];
    let bytesDone = 0;
    const bytesTotal = plan.tensors.reduce((s, t) => s + checkpoint.get(t.name)!.byteLength, 0);
    for (const [index, tensor] of plan.tensors.entries()) {
      // One turn of the event loop per tensor, so a progress spinner can repaint.
      await new Promise((resolve) => setImmediate(resolve));
      emit({ type: 'tensor', index, count: plan.tensors.length, tensor, bytesDone, bytesTotal });
      const info = checkpoint.get(tensor.name)!;
      if (tensor.action === 'ternarize' && source?.get(tensor.name)?.ternary) {
        // Already ternary in the source: keep its codes and scales (absmean again would shrink γ).
        const pre = source.readTernary(tensor.name);
        const stats: Record<string, number> = pre.scales.length === 1 ? { gamma: pre.scales[0]! } : {};
        writer.writeTensor(tensor.name, packTernary(tensor.encoding, pre.codes), pre.scales, stats);
        totals.codes += tensor.rows * tensor.cols;
        totals.zeros += countZeros(pre.codes);
      } else if (tensor.action === 'ternarize') {
        // Floats straight from the reader (widened in place: 4 bytes per weight, no second copy).
        const values = checkpoint.readFloat32(tensor.name);
        const nonFinite = checkFinite(new Uint8Array(values.buffer, values.byteOffset, values.byteLength), 'F32', info, options.allowNonFinite);
        const t = ternarizeOne(values, tensor, formula, nonFinite);
        writer.writeTensor(tensor.name, t.packed, t.scales, t.stats);
        totals.codes += tensor.rows * tensor.cols;
        totals.zeros += t.zeros;
        // Say it as soon as it is known, not after a long conversion.
        if (!declared && totals.ternaryValued && !t.ternaryValued) {
          warnings.push(NOT_TERNARY_TRAINED_WARNING);
          emit({ type: 'warning', message: NOT_TERNARY_TRAINED_WARNING });
        }
        totals.ternaryValued &&= t.ternaryValued;
      } else {
        const bytes = checkpoint.readBytes(tensor.name);
        checkFinite(bytes, info.dtype, info, options.allowNonFinite);
        writer.writeTensor(tensor.name, keptBytes(bytes, info.dtype, tensor));
      }
      bytesDone += info.byteLength;
    }
    writer.finish();
    writer = undefined;

    const ternaryTraining: TernaryTrainingVerdict = declared ? 'declared' : totals.codes > 0 && totals.ternaryValued ? 'ternary-valued' : 'float';
    const seconds = (performance.now() - started) / 1000;
    return summarize({ input, output, packing, scale, formula, plan, inputBytes, seconds, zeros: totals.zeros, ternaryTraining, warnings });
  } catch (err) {
    writer?.abort();
    throw err;
  } finally {
    checkpoint.close();
  }
}

const PRODUCER = { name: 'tritpack', version: packageVersion() };

function packageVersion(): string {
  // src/converters/ (tsx) and dist/converters/ (built) are both two levels below the package root.
  const file = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'package.json');
  return (JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version;
}

function readConfig(dir: string): { text: string; parsed: Record<string, unknown> } {
  if (!existsSync(dir)) throw new TritpackError(`${dir}: no such checkpoint directory`);
  if (!statSync(dir).isDirectory()) throw new TritpackError(`${dir}: not a directory (convert needs a checkpoint directory with config.json)`);
  const file = path.join(dir, 'config.json');
  if (!existsSync(file)) throw new FormatError(dir, 'no config.json (a Hugging Face checkpoint directory needs one)');
  return parseConfig(file, readFileSync(file, 'utf8'));
}

function parseConfig(file: string, text: string): { text: string; parsed: Record<string, unknown> } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new FormatError(file, `not valid JSON (${(err as Error).message})`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new FormatError(file, 'not a JSON object');
  return { text, parsed: parsed as Record<string, unknown> };
}

/** Fail before any work when the output cannot be written, with the message the user needs. */
function checkOutput(output: string, force: boolean): void {
  const dir = path.dirname(output);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new TritpackError(`${output}: output directory ${dir} does not exist`);
  if (existsSync(output)) {
    if (statSync(output).isDirectory()) throw new TritpackError(`${output}: is a directory, not a file name`);
    if (!force) throw new TritpackError(`${output}: already exists (--force overwrites it)`);
  }
}

function readMetadata(files: string[]): Record<string, string> {
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

/** An HF offline-packed BitNet checkpoint (uint8 codes + weight_scale) is already ternary; absmean on it would be nonsense. */
function rejectPackedBitNet(input: string, config: Record<string, unknown>, checkpoint: SafetensorsCheckpoint): void {
  const q = config['quantization_config'] as Record<string, unknown> | undefined;
  const packed = (q?.['quant_method'] === 'bitnet' && q['quantization_mode'] === 'offline')
    || checkpoint.tensors.some((t) => t.name.endsWith('.weight_scale'));
  if (packed) throw new FormatError(input, 'is an already packed BitNet checkpoint (uint8 codes + weight_scale); convert needs float master weights');
}

function readSideFiles(dir: string, configText: string): Record<string, string> {
  const files: Record<string, string> = { 'config.json': configText };
  for (const name of SIDE_FILES) {
    const file = path.join(dir, name);
    if (name !== 'config.json' && existsSync(file)) files[name] = readFileSync(file, 'utf8');
  }
  return files;
}

/**
 * Size and sha256 of every source file the .tpk derives from (side files, index, weight files),
 * so the output can be audited against its source. The hashes go in the header, which is laid
 * out before the tensors, so this is a separate streaming pass (fixed 4 MiB buffer); sha256 runs
 * at well over 1 GB/s, small next to ternarization.
 */
function hashSourceFiles(dir: string, weightFiles: string[], emit: (e: ConvertEvent) => void, weightsOnly = false): { name: string; size: number; sha256: string }[] {
  // The index counts only when the weights really come from shards (a model.safetensors beside it wins).
  const sharded = !weightFiles.some((f) => path.basename(f) === 'model.safetensors');
  const names = (weightsOnly ? [] : [...SIDE_FILES, ...(sharded ? ['model.safetensors.index.json'] : [])])
    .filter((name) => existsSync(path.join(dir, name)))
    .map((name) => path.join(dir, name));
  const buffer = Buffer.allocUnsafe(4 << 20);
  return [...names, ...weightFiles].map((file) => {
    const size = statSync(file).size;
    if (size > 1 << 20) emit({ type: 'hash', file, bytes: size });
    const hash = createHash('sha256');
    const fd = openSync(file, 'r');
    try {
      for (let n; (n = readSync(fd, buffer, 0, buffer.length, null)) > 0;) hash.update(buffer.subarray(0, n));
    } finally {
      closeSync(fd);
    }
    return { name: path.relative(dir, file) || path.basename(file), size, sha256: hash.digest('hex') };
  });
}

/** NaN/Inf scan on the raw little-endian bytes (an all-ones exponent), so kept tensors need no float copy. */
export function countNonFinite(bytes: Uint8Array, dtype: DType): { count: number; first: number } {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let count = 0;
  let first = -1;
  const note = (i: number) => { if (count++ === 0) first = i; };
  switch (dtype) {
    case 'F32':
      for (let i = 0, n = bytes.byteLength / 4; i < n; i++) if ((view.getUint32(i * 4, true) & 0x7f800000) === 0x7f800000) note(i);
      break;
    case 'F16':
      for (let i = 0, n = bytes.byteLength / 2; i < n; i++) if ((view.getUint16(i * 2, true) & 0x7c00) === 0x7c00) note(i);
      break;
    case 'BF16':
      for (let i = 0, n = bytes.byteLength / 2; i < n; i++) if ((view.getUint16(i * 2, true) & 0x7f80) === 0x7f80) note(i);
      break;
    case 'F64':
      for (let i = 0, n = bytes.byteLength / 8; i < n; i++) if ((view.getUint32(i * 8 + 4, true) & 0x7ff00000) === 0x7ff00000) note(i);
      break;
    default:
      break; // integer tensors cannot hold NaN/Inf
  }
  return { count, first };
}

/** The NaN/Inf count of a tensor's values; a FormatError naming the tensor and its file unless allowed. */
function checkFinite(bytes: Uint8Array, dtype: DType, info: { name: string; file: string }, allow: boolean | undefined): number {
  const { count, first } = countNonFinite(bytes, dtype);
  if (count > 0 && !allow) {
    throw new FormatError(info.file, `tensor ${info.name} holds ${count} NaN/Inf value(s), the first at element ${first} (--allow-nonfinite converts anyway)`);
  }
  return count;
}

function ternarizeOne(values: Float32Array, tensor: PlannedTernary, formula: AbsmeanFormula, nonFinite: number) {
  if (nonFinite > 0) for (let i = 0; i < values.length; i++) if (!Number.isFinite(values[i]!)) values[i] = 0;
  const ternaryValued = isTernaryValued(values, tensor.rows, tensor.cols);
  const scaleSpec: ScaleGranularity = tensor.scale.granularity === 'group'
    ? { kind: 'group', size: tensor.scale.groupSize! }
    : { kind: tensor.scale.granularity };
  const t = ternarizeAbsmean(values, tensor.rows, tensor.cols, scaleSpec, formula);
  const stats: Record<string, number> = { zeroFraction: t.zeroFraction, relativeError: t.relativeError };
  if (t.gammas.length === 1) stats['gamma'] = t.gammas[0]!;
  if (nonFinite > 0) stats['nonFinite'] = nonFinite;
  return {
    packed: packTernary(tensor.encoding, t.codes),
    scales: t.scales,
    stats,
    zeros: countZeros(t.codes),
    ternaryValued,
  };
}

function countZeros(codes: Int8Array): number {
  let zeros = 0;
  for (let i = 0; i < codes.length; i++) if (codes[i] === 0) zeros++;
  return zeros;
}

function keptBytes(bytes: Uint8Array, dtype: DType, tensor: PlannedKeep): Uint8Array {
  if (tensor.verbatim) return bytes;
  if (!isFloatDType(tensor.encoding)) throw new Error(`plan keeps ${tensor.name} as ${tensor.encoding} from ${dtype}`);
  return fromFloat32(toFloat32(bytes, dtype), tensor.encoding);
}

function summarize(s: {
  input: string; output: string; packing: TernaryPacking; scale: ScaleGranularity; formula: AbsmeanFormula; plan: TensorPlan;
  inputBytes: number; seconds: number; zeros: number; ternaryTraining: TernaryTrainingVerdict; warnings: string[];
}): ConversionSummary {
  const count = (t: PlannedTensor) => t.shape.reduce((a, b) => a * b, 1);
  const bytes = (t: PlannedTensor) => t.dataLength + (t.action === 'ternarize' ? t.scalesLength : 0);
  const ternary = s.plan.tensors.filter((t) => t.action === 'ternarize');
  const kept = s.plan.tensors.filter((t) => t.action === 'keep');
  const sum = (ts: PlannedTensor[], f: (t: PlannedTensor) => number) => ts.reduce((a, t) => a + f(t), 0);
  const params = { ternarized: sum(ternary, count), kept: sum(kept, count), total: sum(s.plan.tensors, count) };
  const ratio = (a: number, b: number) => (b === 0 ? 0 : a / b);
  return {
    input: s.input, output: s.output, packing: s.packing, scale: formatScale(s.scale), formula: s.formula,
    tensors: { ternarized: ternary.length, kept: kept.length, total: s.plan.tensors.length },
    parameters: params,
    inputBytes: s.inputBytes,
    outputBytes: statSync(s.output).size,
    bitsPerWeight: {
      ternarized: ratio(8 * sum(ternary, bytes), params.ternarized),
      overall: ratio(8 * sum(s.plan.tensors, bytes), params.total),
    },
    zeroFraction: ratio(s.zeros, params.ternarized),
    seconds: s.seconds,
    megabytesPerSecond: ratio(s.inputBytes / 1e6, s.seconds),
    ternaryTraining: s.ternaryTraining,
    aliases: s.plan.aliases,
    warnings: s.warnings,
  };
}
