/** The .tpk header's msgpack encoding: plain msgpack only (docs/tpk-format.md §2), deterministic key order. */
import { Packr, Unpackr } from 'msgpackr';
import { TritpackError } from '../../errors.js';
import type { TpkHeader } from './table.js';

// variableMapSize: smallest map headers (canonical msgpack); records/undefined would be msgpackr-only.
const packr = new Packr({ useRecords: false, variableMapSize: true, encodeUndefinedAsNil: true, moreTypes: false });
// int64AsType 'number': offsets past 4 GiB are stored as msgpack integers (see plainValue).
export const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

/**
 * Turns a header value into what plain msgpack can hold, so the writer never emits msgpackr
 * extensions: undefined properties are dropped, Dates become ISO strings, typed arrays other than
 * bytes become arrays, and integers outside 32 bits become BigInt so they are written as msgpack
 * int64 (msgpackr would otherwise write float64, which e.g. Python cannot use as a file offset).
 */
function plainValue(value: unknown, where: string): unknown {
  if (value === null || typeof value === 'string' || typeof value === 'boolean' || typeof value === 'bigint') return value;
  if (typeof value === 'number') {
    return Number.isSafeInteger(value) && (value > 0xffffffff || value < -0x80000000) ? BigInt(value) : value;
  }
  if (value === undefined) return null;
  if (value instanceof Date) return value.toISOString();
  if (value instanceof Uint8Array) return value;
  if (ArrayBuffer.isView(value)) return Array.from(value as unknown as ArrayLike<number>, (v, i) => plainValue(v, `${where}[${i}]`));
  if (Array.isArray(value)) return value.map((v, i) => plainValue(v, `${where}[${i}]`));
  const proto = typeof value === 'object' ? Object.getPrototypeOf(value) : undefined;
  if (proto === Object.prototype || proto === null) {
    const out: Record<string, unknown> = {};
    for (const [key, v] of Object.entries(value as object)) {
      if (v !== undefined) out[key] = plainValue(v, `${where}.${key}`);
    }
    return out;
  }
  throw new TritpackError(`tpk header: ${where} is a ${typeof value === 'object' ? proto?.constructor?.name ?? 'object' : typeof value} and cannot be stored in msgpack`);
}

const HEADER_KEY_ORDER = ['formatVersion', 'producer', 'createdAt', 'source', 'files', 'conversion', 'tensors', 'validation'];
const ENTRY_KEY_ORDER = ['name', 'shape', 'encoding', 'sourceDType', 'scale', 'stats', 'data', 'scales'];

/** Fixed key order makes the header deterministic; keys a newer writer added are kept after ours. */
function ordered(object: object, order: string[]): Record<string, unknown> {
  const source = object as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const key of order) if (source[key] !== undefined) out[key] = source[key];
  for (const key of Object.keys(source)) if (!order.includes(key) && source[key] !== undefined) out[key] = source[key];
  return out;
}

export function encodeHeader(header: TpkHeader): Buffer {
  const shaped = ordered({ ...header, tensors: header.tensors.map((t) => ordered(t, ENTRY_KEY_ORDER)) }, HEADER_KEY_ORDER);
  return packr.pack(plainValue(shaped, 'header'));
}
