/**
 * What the safetensors reader and writer share: the public types, the official dtype list and
 * the small helpers that keep every error message on one line.
 */
import { FormatError } from '../../errors.js';
import { type DType, dtypeByteSize } from '../dtype.js';

export interface SafetensorsTensorInfo {
  name: string;
  dtype: DType;
  shape: number[];
  file: string;
  /** Absolute byte offset of the tensor's data in `file`. */
  dataOffset: number;
  byteLength: number;
}

export interface SafetensorsEntry {
  name: string;
  dtype: DType;
  shape: number[];
  /** The tensor's little-endian bytes, or a function producing them when the writer reaches this tensor. */
  data: Uint8Array | (() => Uint8Array);
}

/** The official reader refuses larger headers (safetensors `MAX_HEADER_SIZE`). */
export const MAX_HEADER_BYTES = 100_000_000;
export const SINGLE_FILE_NAME = 'model.safetensors';
export const INDEX_FILE_NAME = 'model.safetensors.index.json';

/**
 * Every dtype of the official `Dtype` enum, in its declaration order. The serializer sorts
 * tensors by this order (descending), and the reader uses the list to tell a valid dtype that
 * tritpack does not handle from a name that is not a safetensors dtype at all.
 */
export const OFFICIAL_DTYPES = [
  'BOOL', 'F4', 'F6_E2M3', 'F6_E3M2', 'U8', 'I8', 'F8_E5M2', 'F8_E4M3', 'F8_E8M0', 'F8_E4M3FNUZ', 'F8_E5M2FNUZ',
  'I16', 'U16', 'F16', 'BF16', 'I32', 'U32', 'F32', 'C64', 'F64', 'I64', 'U64',
];

export function fail(file: string, problem: string): never {
  throw new FormatError(file, problem);
}

/** Names may contain anything, newlines included; quoting them keeps every message on one line. */
export function quote(name: string): string {
  return JSON.stringify(name);
}

/** A short, one-line rendering of an untrusted JSON value for an error message. */
export function preview(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function isCount(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 0;
}

/** Bytes of a tensor of `shape` and `dtype`, or undefined when the count is not a safe integer. */
export function shapeByteLength(shape: number[], dtype: DType): number | undefined {
  const numel = shape.includes(0) ? 0 : shape.reduce((a, b) => a * b, 1);
  const bytes = numel * dtypeByteSize(dtype);
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}
