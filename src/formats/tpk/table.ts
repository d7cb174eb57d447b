/**
 * The .tpk tensor table: constants and public types, and the rules a tensor's description must
 * satisfy (shared by the writer's plan check and the reader's header validation).
 */
import { dtypeByteSize, isDType, type DType } from '../dtype.js';
import { packedByteLength } from '../ternary.js';

export const TPK_MAGIC = 'TRITPACK';
export const TPK_FORMAT_VERSION = 1;
export const TPK_ALIGNMENT = 64;
export const TPK_PREAMBLE_SIZE = 64;
/** Headers embed tokenizer.json (tens of MB for 256k vocabularies); anything past this is hostile. */
export const TPK_MAX_HEADER_BYTES = 512 * 1024 * 1024;


export type TpkEncoding = 't158' | 't2' | DType;
export interface TpkBlobRef { offset: number; length: number; sha256: string /* hex */ }
export interface TpkScale { granularity: 'tensor' | 'channel' | 'group'; groupSize?: number; count: number }
export interface TpkTensorEntry {
  name: string; shape: number[]; encoding: TpkEncoding; sourceDType?: DType;
  scale?: TpkScale; // ternary only; scales blob = f32 LE
  stats?: Record<string, number>; // gamma, zeroFraction, relativeError … for ternary tensors
  data: TpkBlobRef; scales?: TpkBlobRef;
}
export interface TpkHeader {
  formatVersion: number; producer: { name: string; version: string }; createdAt: string;
  source: { repo?: string; revision?: string; path?: string; files?: { name: string; size: number; sha256?: string }[] };
  files: Record<string, string>;
  conversion: Record<string, unknown>;
  tensors: TpkTensorEntry[];
  validation?: unknown;
}
export interface TpkPlannedTensor {
  name: string; shape: number[]; encoding: TpkEncoding; sourceDType?: DType; scale?: TpkScale;
  dataLength: number; scalesLength?: number;
}

export function isTpkEncoding(value: unknown): value is TpkEncoding {
  return value === 't158' || value === 't2' || (typeof value === 'string' && isDType(value));
}

export function isTernaryEncoding(encoding: TpkEncoding): encoding is 't158' | 't2' {
  return encoding === 't158' || encoding === 't2';
}

export function elementCount(shape: readonly number[]): number {
  return shape.reduce((n, d) => n * d, 1);
}

/** Bytes of a tensor's data blob: ternary packings per docs/ternary-packing.md, dtypes their element size. */
export function tpkDataLength(encoding: TpkEncoding, count: number): number {
  return isTernaryEncoding(encoding) ? packedByteLength(encoding, count) : count * dtypeByteSize(encoding);
}

/** Number of f32 scales for a ternary tensor: rows = shape[0], cols = product of the other dims. */
export function tpkScaleCount(scale: Pick<TpkScale, 'granularity' | 'groupSize'>, shape: readonly number[]): number {
  const rows = shape.length === 0 ? 1 : shape[0]!;
  const cols = elementCount(shape.slice(1));
  switch (scale.granularity) {
    case 'tensor': return 1;
    case 'channel': return rows;
    case 'group': return rows * Math.ceil(cols / scale.groupSize!);
  }
}

/** Index in the scales blob of the scale that applies to element (row, col) of a tensor with `cols` columns. */
export function tpkScaleIndex(scale: Pick<TpkScale, 'granularity' | 'groupSize'>, cols: number, row: number, col: number): number {
  switch (scale.granularity) {
    case 'tensor': return 0;
    case 'channel': return row;
    case 'group': return row * Math.ceil(cols / scale.groupSize!) + Math.floor(col / scale.groupSize!);
  }
}

/** Returns a problem description, or undefined when the tensor's description is consistent. */
export function tensorProblem(t: { shape?: unknown; encoding?: unknown; scale?: unknown; sourceDType?: unknown }, dataLength: number, scalesLength: number | undefined): string | undefined {
  if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) return 'shape must be an array of non-negative integers';
  const count = elementCount(t.shape as number[]);
  if (!Number.isSafeInteger(count)) return 'shape has too many elements';
  if (!isTpkEncoding(t.encoding)) return `unknown encoding ${JSON.stringify(t.encoding)}`;
  if (t.sourceDType !== undefined && !(typeof t.sourceDType === 'string' && isDType(t.sourceDType))) return `unknown sourceDType ${JSON.stringify(t.sourceDType)}`;
  const expected = tpkDataLength(t.encoding, count);
  if (dataLength !== expected) return `data is ${dataLength} bytes but ${t.encoding} × ${count} elements needs ${expected}`;
  if (!isTernaryEncoding(t.encoding)) {
    if (t.scale !== undefined || scalesLength !== undefined) return `encoding ${t.encoding} takes no scales`;
    return undefined;
  }
  const scale = t.scale as Partial<TpkScale> | undefined;
  if (!scale || typeof scale !== 'object') return `encoding ${t.encoding} needs a scale description`;
  if (scale.granularity !== 'tensor' && scale.granularity !== 'channel' && scale.granularity !== 'group') return `unknown scale granularity ${JSON.stringify(scale.granularity)}`;
  if (scale.granularity === 'group' ? !(Number.isSafeInteger(scale.groupSize) && scale.groupSize! > 0) : scale.groupSize !== undefined) {
    return 'scale.groupSize must be a positive integer exactly when granularity is group';
  }
  if (scale.granularity !== 'tensor' && t.shape.length === 0) return `${scale.granularity} scales need at least one dimension`;
  const scaleCount = tpkScaleCount(scale as TpkScale, t.shape as number[]);
  if (scale.count !== scaleCount) return `scale.count is ${scale.count} but ${scale.granularity} scales of shape [${t.shape}] are ${scaleCount}`;
  if (scalesLength !== scaleCount * 4) return `scales are ${scalesLength ?? 'missing'} bytes but ${scaleCount} f32 scales need ${scaleCount * 4}`;
  return undefined;
}
