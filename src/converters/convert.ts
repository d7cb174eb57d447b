/**
 * The conversion pipeline: a model (Hugging Face checkpoint directory, HF offline-packed BitNet
 * directory or GGUF file, all read through one TensorSource) → one packed ternary .tpk file.
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
import { packTernary, type TernaryPacking } from '../formats/ternary.js';
import { TPK_FORMAT_VERSION, TpkWriter, type TpkHeader } from '../formats/tpk.js';
import {
  declaresTernaryTraining, findAliases, isTernaryValued, planConversion, toTpkPlanned,
  type PlannedKeep, type PlannedTensor, type PlannedTernary, type TensorPlan,
} from './plan.js';
import { openTensorSource, type SourceTensor, type TensorSource } from './import-source.js';
import { ternarizeAbsmeanPacked, type AbsmeanFormula, type ScaleGranularity } from './ternarize.js';

export interface ConvertOptions {
  /** A checkpoint directory (config.json plus model.safetensors or a sharded index), an HF offline-packed BitNet directory or a GGUF file. */
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
  /** The absmean settings, as in the header's conversion record ('imported' when absmean made no tensor). */
  scale: string;
  formula: AbsmeanFormula | 'imported';
  tensors: { ternarized: number; kept: number; total: number };
  /** Of the ternarized tensors, those whose codes and scales were taken from the source as they were (no absmean). */
  imported: number;
  parameters: { ternarized: number; kept: number; total: number };
  /** Bytes of the weight files read. */
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

interface Settings {
  input: string;
  output: string;
  packing: TernaryPacking;
  scale: ScaleGranularity;
  formula: AbsmeanFormula;
  force: boolean;
  allowNonFinite: boolean;
  emit: (event: ConvertEvent) => void;
}

export async function convertCheckpoint(options: ConvertOptions): Promise<ConversionSummary> {
  const started = performance.now();
  const settings: Settings = {
    input: path.resolve(options.input),
    output: path.resolve(options.output),
    packing: options.packing ?? 't158',
    scale: options.scale ?? { kind: 'tensor' },
    formula: options.formula ?? 'reference',
    force: options.force ?? false,
    allowNonFinite: options.allowNonFinite ?? false,
    emit: options.onProgress ?? (() => {}),
  };
  const source = openTensorSource(settings.input);
  let writer: TpkWriter | undefined;
  try {
    checkOutput(settings.output, settings.force);
    const plan = planConversion(source.tensors, {
      packing: settings.packing, scale: settings.scale, include: options.include, exclude: options.exclude, keepDType: options.keepDType,
      aliases: findAliases(source.tensors.map((t) => t.name), source.metadata, source.config),
    });
    const inputBytes = source.files.reduce((sum, f) => sum + statSync(f).size, 0);
    settings.emit({ type: 'plan', plan, inputBytes });
    const warnings = new Warnings(settings.emit);
    for (const message of [...source.warnings, ...plan.warnings]) warnings.add(message);

    const record = ternaryRecord(source, plan, settings);
    const header = buildHeader(source, plan, record, options, settings);
    writer = TpkWriter.create(settings.output, header, plan.tensors.map(toTpkPlanned), { force: settings.force });
    const written = await writeTensors(source, plan, writer, settings, warnings);
    writer.finish();
    writer = undefined;

    const seconds = (performance.now() - started) / 1000;
    return summarize({ settings, plan, record, inputBytes, seconds, zeros: written.zeros, ternaryTraining: written.verdict, warnings: warnings.all });
  } catch (err) {
    writer?.abort();
    throw err;
  } finally {
    source.close();
  }
}

/** Warnings kept for the summary and emitted the moment they are known, not after a long conversion. */
class Warnings {
  readonly all: string[] = [];
  constructor(private readonly emit: (event: ConvertEvent) => void) {}
  add(message: string): void {
    this.all.push(message);
    this.emit({ type: 'warning', message });
  }
}

const PRODUCER = { name: 'tritpack', version: packageVersion() };

function packageVersion(): string {
  // src/converters/ (tsx) and dist/converters/ (built) are both two levels below the package root.
  const file = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'package.json');
  return (JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version;
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

/**
 * What the conversion record says about the ternary tensors. Tensors the source stores ternary
 * keep their codes and scales (their layouts are in the tensor table), so the absmean settings
 * describe only the tensors absmean made here; when it made none they read 'imported', so the
 * record never names a granularity or formula that no tensor in the file went through.
 */
interface TernaryRecord {
  scale: string;
  formula: AbsmeanFormula | 'imported';
  /** names of the ternary tensors taken from the source as they were */
  imported: string[];
}

function ternaryRecord(source: TensorSource, plan: TensorPlan, settings: Settings): TernaryRecord {
  const ternary = plan.tensors.filter((t) => t.action === 'ternarize');
  const imported = ternary.filter((t) => source.get(t.name)!.ternary !== undefined).map((t) => t.name);
  const onlyImported = imported.length > 0 && imported.length === ternary.length;
  return {
    scale: onlyImported ? 'imported' : formatScale(settings.scale),
    formula: onlyImported ? 'imported' : settings.formula,
    imported,
  };
}

function buildHeader(source: TensorSource, plan: TensorPlan, record: TernaryRecord, options: ConvertOptions, settings: Settings): Omit<TpkHeader, 'tensors'> {
  return {
    formatVersion: TPK_FORMAT_VERSION,
    producer: PRODUCER,
    createdAt: new Date().toISOString(),
    source: { ...options.sourceRepo, path: settings.input, files: hashSourceFiles(source, settings.emit) },
    files: source.sideFiles,
    conversion: {
      packing: settings.packing, scale: record.scale, formula: record.formula, imported: record.imported,
      include: options.include ?? [], exclude: options.exclude ?? [],
      keepDType: options.keepDType ?? null, allowNonFinite: settings.allowNonFinite,
      aliases: plan.aliases,
      declaredTernaryTraining: declaresTernaryTraining(source.config),
    },
  };
}

/**
 * Size and sha256 of every source file the .tpk derives from, so the output can be audited
 * against its source. The hashes go in the header, which is laid out before the tensors, so this
 * is a separate streaming pass (fixed 4 MiB buffer); sha256 runs at well over 1 GB/s.
 */
function hashSourceFiles(source: TensorSource, emit: (e: ConvertEvent) => void): { name: string; size: number; sha256: string }[] {
  const buffer = Buffer.allocUnsafe(4 << 20);
  return source.provenance.map((file) => {
    const size = statSync(file).size;
    if (size > 1 << 20) emit({ type: 'hash', file, bytes: size });
    const hash = createHash('sha256');
    const fd = openSync(file, 'r');
    try {
      for (let n; (n = readSync(fd, buffer, 0, buffer.length, null)) > 0;) hash.update(buffer.subarray(0, n));
    } finally {
      closeSync(fd);
    }
    return { name: path.relative(source.root, file) || path.basename(file), size, sha256: hash.digest('hex') };
  });
}

/** One tensor's bytes for the writer, and for ternary tensors what the summary needs. */
interface TensorOutput {
  data: Uint8Array;
  scales?: Float32Array;
  stats?: Record<string, number>;
  ternary?: { zeros: number; ternaryValued: boolean };
}

/** Reads, converts and writes every planned tensor in order; returns the zero count and the ternary-training verdict. */
async function writeTensors(
  source: TensorSource, plan: TensorPlan, writer: TpkWriter, settings: Settings, warnings: Warnings,
): Promise<{ zeros: number; verdict: TernaryTrainingVerdict }> {
  const declared = declaresTernaryTraining(source.config);
  let zeros = 0, ternaryTensors = 0, allTernaryValued = true;
  let bytesDone = 0;
  const bytesTotal = plan.tensors.reduce((s, t) => s + source.get(t.name)!.byteLength, 0);
  for (const [index, tensor] of plan.tensors.entries()) {
    // One turn of the event loop per tensor, so a progress spinner can repaint.
    await new Promise((resolve) => setImmediate(resolve));
    settings.emit({ type: 'tensor', index, count: plan.tensors.length, tensor, bytesDone, bytesTotal });
    const info = source.get(tensor.name)!;
    const out = tensor.action === 'keep' ? keepTensor(source, info, tensor, settings)
      : info.ternary !== undefined ? copyTernary(source, tensor) : ternarizeTensor(source, info, tensor, settings);
    writer.writeTensor(tensor.name, out.data, out.scales, out.stats);
    bytesDone += info.byteLength;
    if (out.ternary === undefined) continue;
    ternaryTensors++;
    zeros += out.ternary.zeros;
    if (!declared && allTernaryValued && !out.ternary.ternaryValued) warnings.add(NOT_TERNARY_TRAINED_WARNING);
    allTernaryValued &&= out.ternary.ternaryValued;
  }
  const verdict = declared ? 'declared' : ternaryTensors > 0 && allTernaryValued ? 'ternary-valued' : 'float';
  return { zeros, verdict };
}

/**
 * Already ternary in the source: keep its codes and scales (absmean again would shrink γ). Its
 * stats are those of a ternarized tensor that can be read off the codes; there is no
 * relativeError, as no float weights were rounded here.
 */
function copyTernary(source: TensorSource, tensor: PlannedTernary): TensorOutput {
  const pre = source.readTernary(tensor.name);
  const zeros = countZeros(pre.codes);
  const stats: Record<string, number> = { zeroFraction: pre.codes.length === 0 ? 0 : zeros / pre.codes.length };
  if (pre.scales.length === 1) stats['gamma'] = pre.scales[0]!;
  return {
    data: packTernary(tensor.encoding, pre.codes),
    scales: pre.scales,
    stats,
    ternary: { zeros, ternaryValued: true },
  };
}

function ternarizeTensor(source: TensorSource, info: SourceTensor, tensor: PlannedTernary, settings: Settings): TensorOutput {
  // Floats straight from the reader (widened in place: 4 bytes per weight, no second copy).
  const values = source.readFloat32(tensor.name);
  const granularity: ScaleGranularity = tensor.scale.granularity === 'group'
    ? { kind: 'group', size: tensor.scale.groupSize! }
    : { kind: tensor.scale.granularity };
  const ternarize = () => ternarizeAbsmeanPacked(values, tensor.rows, tensor.cols, tensor.encoding, granularity, settings.formula);
  let t = ternarize();
  // Σ|w| of a scale group is finite exactly when its weights are (and their sum fits in float32),
  // so finite γ everywhere proves there is no NaN/Inf without a pass of its own.
  let nonFinite = 0;
  if (!t.gammas.every(Number.isFinite)) {
    nonFinite = checkFinite(new Uint8Array(values.buffer, values.byteOffset, values.byteLength), 'F32', info, settings.allowNonFinite);
    if (nonFinite > 0) {
      for (let i = 0; i < values.length; i++) if (!Number.isFinite(values[i]!)) values[i] = 0;
      t = ternarize();
    }
  }
  const stats: Record<string, number> = { zeroFraction: t.zeroFraction, relativeError: t.relativeError };
  if (t.gammas.length === 1) stats['gamma'] = t.gammas[0]!;
  if (nonFinite > 0) stats['nonFinite'] = nonFinite;
  return {
    data: t.data,
    scales: t.scales,
    stats,
    ternary: { zeros: t.zeros, ternaryValued: isTernaryValued(values, tensor.rows, tensor.cols) },
  };
}

function keepTensor(source: TensorSource, info: SourceTensor, tensor: PlannedKeep, settings: Settings): TensorOutput {
  const bytes = source.readBytes(tensor.name);
  checkFinite(bytes, info.dtype, info, settings.allowNonFinite);
  if (tensor.verbatim) return { data: bytes };
  if (!isFloatDType(tensor.encoding)) throw new Error(`plan keeps ${tensor.name} as ${tensor.encoding} from ${info.dtype}`);
  return { data: fromFloat32(toFloat32(bytes, info.dtype), tensor.encoding) };
}

/** NaN/Inf scan on the raw little-endian bytes (an all-ones exponent), so kept tensors need no float copy. */
function countNonFinite(bytes: Uint8Array, dtype: DType): { count: number; first: number } {
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

function countZeros(codes: Int8Array): number {
  let zeros = 0;
  for (let i = 0; i < codes.length; i++) if (codes[i] === 0) zeros++;
  return zeros;
}

function summarize(s: {
  settings: Settings; plan: TensorPlan; record: TernaryRecord; inputBytes: number; seconds: number; zeros: number; ternaryTraining: TernaryTrainingVerdict; warnings: string[];
}): ConversionSummary {
  const count = (t: PlannedTensor) => t.shape.reduce((a, b) => a * b, 1);
  const bytes = (t: PlannedTensor) => t.dataLength + (t.action === 'ternarize' ? t.scalesLength : 0);
  const ternary = s.plan.tensors.filter((t) => t.action === 'ternarize');
  const kept = s.plan.tensors.filter((t) => t.action === 'keep');
  const sum = (ts: PlannedTensor[], f: (t: PlannedTensor) => number) => ts.reduce((a, t) => a + f(t), 0);
  const params = { ternarized: sum(ternary, count), kept: sum(kept, count), total: sum(s.plan.tensors, count) };
  const ratio = (a: number, b: number) => (b === 0 ? 0 : a / b);
  return {
    input: s.settings.input, output: s.settings.output, packing: s.settings.packing, scale: s.record.scale, formula: s.record.formula,
    tensors: { ternarized: ternary.length, kept: kept.length, total: s.plan.tensors.length },
    imported: s.record.imported.length,
    parameters: params,
    inputBytes: s.inputBytes,
    outputBytes: statSync(s.settings.output).size,
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
