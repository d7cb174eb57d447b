/**
 * The per-tensor table of a validation report: for each ternarized tensor of a .tpk, the relative
 * Frobenius error ‖W − W'‖F/‖W‖F of its ternary approximation, the fraction of zero codes and γ.
 * Where the original float weights are readable, these are recomputed from them and the .tpk's
 * packed codes and scales — an independent check of the converter's own header statistics.
 */
import { existsSync, statSync } from 'node:fs';
import { SafetensorsCheckpoint } from '../formats/safetensors.js';
import { unpackTernary } from '../formats/ternary.js';
import { TpkFile, isTernaryEncoding, elementCount, tpkScaleIndex, type TpkTensorEntry } from '../formats/tpk.js';

export interface TensorRow {
  name: string;
  shape: number[];
  encoding: string;
  /** Scale granularity as stored ('tensor', 'channel', 'group:N'). */
  scale: string;
  /** γ for per-tensor scales; the mean of the scales otherwise. */
  gamma: number;
  zeroFraction: number;
  /** Recomputed from the original weights when `recomputed`, else the .tpk header's figure. */
  relativeError: number | null;
  recomputed: boolean;
  /** The converter's own figure from the .tpk header, when it recorded one. */
  headerRelativeError: number | null;
  /** True when the header's relative error disagrees with the recomputed one. */
  mismatch: boolean;
}

export interface TensorTable { rows: TensorRow[]; note: string }

/** Header and recomputed relative errors agree to this (both are float64 sums of the same values). */
const MISMATCH_TOLERANCE = 1e-4;

/** Builds the table when `packedPath` is a .tpk; `originalPath` supplies float weights if it is a safetensors checkpoint. */
export function buildTensorTable(originalPath: string, packedPath: string): TensorTable {
  if (!isFile(packedPath) || !packedPath.endsWith('.tpk')) {
    return { rows: [], note: 'The packed model is not a .tpk file, so there is no per-tensor table.' };
  }
  const tpk = TpkFile.open(packedPath);
  const original = openCheckpoint(originalPath);
  try {
    const rows = tpk.header.tensors.filter((t) => isTernaryEncoding(t.encoding)).map((entry) => tensorRow(tpk, entry, original));
    const recomputed = rows.filter((r) => r.recomputed).length;
    const note = recomputed === rows.length
      ? 'Every row was recomputed from the original weights and the packed codes and scales.'
      : recomputed === 0
        ? 'The original weights are not readable as floats here, so the figures are the .tpk header’s own.'
        : `${recomputed} of ${rows.length} rows were recomputed from the original weights; the others are the .tpk header’s figures.`;
    return { rows, note };
  } finally {
    original?.close();
    tpk.close();
  }
}

function tensorRow(tpk: TpkFile, entry: TpkTensorEntry, original: SafetensorsCheckpoint | undefined): TensorRow {
  const count = elementCount(entry.shape);
  const codes = unpackTernary(entry.encoding as 't158' | 't2', tpk.readData(entry.name), count);
  const scales = tpk.readScales(entry.name);
  let zeros = 0;
  for (let i = 0; i < count; i++) if (codes[i] === 0) zeros++;
  const weights = readOriginal(original, entry.name, count);
  const relativeError = weights === undefined ? null : relativeFrobeniusError(weights, codes, scales, entry);
  const headerRelativeError = entry.stats?.['relativeError'] ?? null;
  const granularity = entry.scale?.granularity ?? 'tensor';
  return {
    name: entry.name,
    shape: entry.shape,
    encoding: entry.encoding,
    scale: granularity === 'group' ? `group:${entry.scale?.groupSize}` : granularity,
    gamma: scales.length === 1 ? scales[0]! : scales.reduce((a, b) => a + b, 0) / scales.length,
    zeroFraction: zeros / count,
    relativeError: relativeError ?? headerRelativeError,
    recomputed: relativeError !== null,
    headerRelativeError,
    mismatch: relativeError !== null && headerRelativeError !== null && Math.abs(relativeError - headerRelativeError) > MISMATCH_TOLERANCE,
  };
}

/**
 * ‖W − code·scale‖F / ‖W‖F in float64. This runs over every ternary weight of the model, so it
 * walks each row in runs of columns that share one scale (the whole row, or one group) and looks
 * that scale up once per run rather than once per weight.
 */
function relativeFrobeniusError(weights: Float32Array, codes: Int8Array, scales: Float32Array, entry: TpkTensorEntry): number {
  const scale = entry.scale ?? { granularity: 'tensor' as const };
  const rows = entry.shape[0] ?? 1;
  const cols = weights.length / rows;
  const run = scale.granularity === 'group' ? scale.groupSize! : cols;
  let diff = 0;
  let norm = 0;
  for (let r = 0; r < rows; r++) {
    for (let c0 = 0; c0 < cols; c0 += run) {
      const s = scales[tpkScaleIndex(scale, cols, r, c0)]!;
      const end = r * cols + Math.min(c0 + run, cols);
      for (let i = r * cols + c0; i < end; i++) {
        const w = weights[i]!;
        const d = w - codes[i]! * s;
        diff += d * d;
        norm += w * w;
      }
    }
  }
  return norm === 0 ? 0 : Math.sqrt(diff / norm);
}

function openCheckpoint(path: string): SafetensorsCheckpoint | undefined {
  if (!existsSync(path)) return undefined;
  try {
    return SafetensorsCheckpoint.open(path);
  } catch {
    // Not a safetensors checkpoint (another .tpk, say): the table falls back to header figures.
    return undefined;
  }
}

/** The original float weights of a tensor, or undefined when absent or not float (e.g. packed uint8 BitNet). */
function readOriginal(original: SafetensorsCheckpoint | undefined, name: string, count: number): Float32Array | undefined {
  const info = original?.get(name);
  if (original === undefined || info === undefined || elementCount(info.shape) !== count) return undefined;
  if (!['F32', 'F16', 'BF16', 'F64'].includes(info.dtype)) return undefined;
  return original.readFloat32(name);
}

export function isFile(path: string): boolean {
  try { return statSync(path).isFile(); } catch { return false; }
}
