/**
 * GGUF v3 (llama.cpp / ggml): constants, a strict reader and a streaming writer — bytes only, in
 * the manner of gguf-py. Layout and reader rules: docs formats.md §2.
 *
 * The reader never trusts a count or a length: each one is checked against the bytes that are
 * left in the file before anything is allocated, so a corrupt or hostile header gives a
 * FormatError, not a crash or a multi-gigabyte allocation. It enforces what ggml's `gguf.cpp`
 * enforces (so a file we accept, llama.cpp accepts): version 2 or 3, unique non-empty keys,
 * `general.alignment` a UINT32 power of two, names < 64 bytes, known tensor types, row lengths
 * that are whole blocks, and tensors back to back at aligned offsets in tensor-info order.
 * Beyond gguf.cpp it bounds what a JS reader would otherwise blow up on even in a file large
 * enough to back the counts: strings (V8 has a ~512 MiB string limit), array lengths (each
 * element becomes a JS value of 8+ bytes) and the number of tensors. Real models are orders of
 * magnitude below each bound.
 */
import { closeSync, existsSync, fstatSync, openSync, renameSync } from 'node:fs';
import path from 'node:path';
import { FormatError, TritpackError } from '../errors.js';
import { closeQuietly, ioProblem, openForReading, readExactly, removeQuietly, tempPathFor, writeExactly } from './io.js';

export const GGUF_MAGIC = 'GGUF';
export const GGUF_VERSION = 3;
export const GGUF_DEFAULT_ALIGNMENT = 32;
/** ggml's GGML_MAX_NAME is 64 including the NUL terminator. */
export const GGUF_MAX_NAME_BYTES = 63;
export const GGML_MAX_DIMS = 4;
/** GGML_QNT_VERSION, required in `general.quantization_version` when any tensor is quantized. */
export const GGML_QUANTIZATION_VERSION = 2;

export enum GgufValueType {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
}

/** Fixed byte size of each scalar value type (strings are variable: 8 bytes of length at least). */
const VALUE_SIZE: Partial<Record<GgufValueType, number>> = {
  [GgufValueType.UINT8]: 1, [GgufValueType.INT8]: 1, [GgufValueType.UINT16]: 2, [GgufValueType.INT16]: 2,
  [GgufValueType.UINT32]: 4, [GgufValueType.INT32]: 4, [GgufValueType.FLOAT32]: 4, [GgufValueType.BOOL]: 1,
  [GgufValueType.UINT64]: 8, [GgufValueType.INT64]: 8, [GgufValueType.FLOAT64]: 8,
};

export enum GgmlType {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9, Q2_K = 10, Q3_K = 11,
  Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15, IQ2_XXS = 16, IQ2_XS = 17, IQ3_XXS = 18, IQ1_S = 19,
  IQ4_NL = 20, IQ3_S = 21, IQ2_S = 22, IQ4_XS = 23, I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28,
  IQ1_M = 29, BF16 = 30, TQ1_0 = 34, TQ2_0 = 35, MXFP4 = 39,
}

/** Elements per block and bytes per block of every ggml type (ggml.c type_traits). */
export const GGML_TYPE_TRAITS: Readonly<Record<GgmlType, { name: string; blockSize: number; typeSize: number }>> = {
  [GgmlType.F32]: { name: 'F32', blockSize: 1, typeSize: 4 },
  [GgmlType.F16]: { name: 'F16', blockSize: 1, typeSize: 2 },
  [GgmlType.Q4_0]: { name: 'Q4_0', blockSize: 32, typeSize: 18 },
  [GgmlType.Q4_1]: { name: 'Q4_1', blockSize: 32, typeSize: 20 },
  [GgmlType.Q5_0]: { name: 'Q5_0', blockSize: 32, typeSize: 22 },
  [GgmlType.Q5_1]: { name: 'Q5_1', blockSize: 32, typeSize: 24 },
  [GgmlType.Q8_0]: { name: 'Q8_0', blockSize: 32, typeSize: 34 },
  [GgmlType.Q8_1]: { name: 'Q8_1', blockSize: 32, typeSize: 36 },
  [GgmlType.Q2_K]: { name: 'Q2_K', blockSize: 256, typeSize: 84 },
  [GgmlType.Q3_K]: { name: 'Q3_K', blockSize: 256, typeSize: 110 },
  [GgmlType.Q4_K]: { name: 'Q4_K', blockSize: 256, typeSize: 144 },
  [GgmlType.Q5_K]: { name: 'Q5_K', blockSize: 256, typeSize: 176 },
  [GgmlType.Q6_K]: { name: 'Q6_K', blockSize: 256, typeSize: 210 },
  [GgmlType.Q8_K]: { name: 'Q8_K', blockSize: 256, typeSize: 292 },
  [GgmlType.IQ2_XXS]: { name: 'IQ2_XXS', blockSize: 256, typeSize: 66 },
  [GgmlType.IQ2_XS]: { name: 'IQ2_XS', blockSize: 256, typeSize: 74 },
  [GgmlType.IQ3_XXS]: { name: 'IQ3_XXS', blockSize: 256, typeSize: 98 },
  [GgmlType.IQ1_S]: { name: 'IQ1_S', blockSize: 256, typeSize: 50 },
  [GgmlType.IQ4_NL]: { name: 'IQ4_NL', blockSize: 32, typeSize: 18 },
  [GgmlType.IQ3_S]: { name: 'IQ3_S', blockSize: 256, typeSize: 110 },
  [GgmlType.IQ2_S]: { name: 'IQ2_S', blockSize: 256, typeSize: 82 },
  [GgmlType.IQ4_XS]: { name: 'IQ4_XS', blockSize: 256, typeSize: 136 },
  [GgmlType.I8]: { name: 'I8', blockSize: 1, typeSize: 1 },
  [GgmlType.I16]: { name: 'I16', blockSize: 1, typeSize: 2 },
  [GgmlType.I32]: { name: 'I32', blockSize: 1, typeSize: 4 },
  [GgmlType.I64]: { name: 'I64', blockSize: 1, typeSize: 8 },
  [GgmlType.F64]: { name: 'F64', blockSize: 1, typeSize: 8 },
  [GgmlType.IQ1_M]: { name: 'IQ1_M', blockSize: 256, typeSize: 56 },
  [GgmlType.BF16]: { name: 'BF16', blockSize: 1, typeSize: 2 },
  [GgmlType.TQ1_0]: { name: 'TQ1_0', blockSize: 256, typeSize: 54 },
  [GgmlType.TQ2_0]: { name: 'TQ2_0', blockSize: 256, typeSize: 66 },
  [GgmlType.MXFP4]: { name: 'MXFP4', blockSize: 32, typeSize: 17 },
};

/** llama.cpp's LlamaFileType, the value of `general.file_type`. */
export const LlamaFileType = {
  ALL_F32: 0, MOSTLY_F16: 1, MOSTLY_Q8_0: 7, MOSTLY_BF16: 32, MOSTLY_TQ1_0: 36, MOSTLY_TQ2_0: 37,
} as const;

/** ggml token types (`tokenizer.ggml.token_type`). */
export const GgufTokenType = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;

export type GgufScalarType = Exclude<GgufValueType, GgufValueType.ARRAY>;
export type GgufScalar = number | bigint | boolean | string;
/** A typed KV value: the type is part of the value because llama.cpp checks it exactly. */
export type GgufValue =
  | { type: GgufScalarType; value: GgufScalar }
  | { type: GgufValueType.ARRAY; elemType: GgufScalarType; value: GgufScalar[] };

export interface GgufTensorInfo {
  name: string;
  /** ggml order: dims[0] = ne[0], the contiguous (innermost) dimension — the reverse of a PyTorch shape. */
  dims: number[];
  type: GgmlType;
  /** offset relative to the start of the data section, as stored */
  offset: number;
  /** absolute offset in the file */
  dataOffset: number;
  byteLength: number;
}

export function isGgmlType(id: number): id is GgmlType {
  return Object.prototype.hasOwnProperty.call(GGML_TYPE_TRAITS, id);
}

export function ggmlTypeName(type: GgmlType): string {
  return GGML_TYPE_TRAITS[type].name;
}

/** Bytes of a tensor of this type and ggml dims; null when ne[0] is not a whole number of blocks. */
export function ggmlTensorBytes(type: GgmlType, dims: readonly number[]): number | null {
  const { blockSize, typeSize } = GGML_TYPE_TRAITS[type];
  const ne0 = dims[0] ?? 1;
  if (ne0 % blockSize !== 0) return null;
  let bytes = (ne0 / blockSize) * typeSize;
  for (let i = 1; i < dims.length; i++) bytes *= dims[i]!;
  return bytes;
}

export function alignUp(n: number, alignment: number): number {
  return Math.ceil(n / alignment) * alignment;
}

// ---------------------------------------------------------------------------------------------
// Reader

const WINDOW = 1 << 20;
/** Longest string value: above a whole embedded tokenizer.json, below V8's string length limit. */
export const GGUF_MAX_STRING_BYTES = 256 * 1024 * 1024;
/** Most elements in one array value (vocabularies and merge lists are at most a few hundred thousand). */
export const GGUF_MAX_ARRAY_ELEMENTS = 1 << 24;
/** Most tensors in one file (the largest models have a few thousand). */
export const GGUF_MAX_TENSORS = 1 << 20;

/** Names and keys may hold any character; quoting them keeps every message on one line. */
function quote(name: string): string {
  return JSON.stringify(name.length > 80 ? `${name.slice(0, 77)}...` : name);
}

/** Sequential little-endian reads over a file, through a window buffer, bounded by the file size. */
class Cursor {
  pos = 0;
  private buf = new Uint8Array(0);
  private view = new DataView(this.buf.buffer);
  private bufStart = 0;
  private readonly decoder = new TextDecoder('utf-8');

  constructor(private readonly fd: number, readonly size: number, private readonly file: string) {}

  get remaining(): number {
    return this.size - this.pos;
  }

  /** Makes [pos, pos+n) addressable; fails before allocating if the file is too short. */
  private need(n: number, what: string): number {
    if (n > this.remaining) {
      throw new FormatError(this.file, `truncated: ${what} needs ${n} bytes at offset ${this.pos}, but the file ends at ${this.size}`);
    }
    if (this.pos < this.bufStart || this.pos + n > this.bufStart + this.buf.length) {
      const length = Math.min(Math.max(n, WINDOW), this.remaining);
      this.buf = new Uint8Array(length);
      readExactly(this.fd, this.file, this.buf, this.pos);
      this.view = new DataView(this.buf.buffer);
      this.bufStart = this.pos;
    }
    const at = this.pos - this.bufStart;
    this.pos += n;
    return at;
  }

  // need() may swap the window buffer, so it is always called before this.buf / this.view is read.
  u8(what: string): number { const at = this.need(1, what); return this.buf[at]!; }
  u32(what: string): number { const at = this.need(4, what); return this.view.getUint32(at, true); }
  u64(what: string): bigint { const at = this.need(8, what); return this.view.getBigUint64(at, true); }

  /**
   * A uint64 count or size that must fit what is left of the file at `minBytesEach` per item,
   * and `limit`.
   */
  count(what: string, minBytesEach: number, limit: number): number {
    const n = this.u64(what);
    if (n > BigInt(Math.floor(this.remaining / Math.max(minBytesEach, 1)))) {
      throw new FormatError(this.file, `${what} ${n} at offset ${this.pos - 8} is larger than the rest of the file allows (${this.remaining} bytes left)`);
    }
    if (n > BigInt(limit)) throw new FormatError(this.file, `${what} ${n} at offset ${this.pos - 8} exceeds the limit of ${limit}`);
    return Number(n);
  }

  /** A length-prefixed UTF-8 string of at most `maxBytes` bytes. */
  string(what: string, maxBytes = GGUF_MAX_STRING_BYTES): string {
    const length = this.count(`${what} length`, 1, maxBytes);
    const at = this.need(length, what);
    return this.decoder.decode(this.buf.subarray(at, at + length));
  }

  scalar(type: GgufScalarType, what: string): GgufScalar {
    switch (type) {
      case GgufValueType.UINT8: return this.u8(what);
      case GgufValueType.INT8: { const at = this.need(1, what); return this.view.getInt8(at); }
      case GgufValueType.UINT16: { const at = this.need(2, what); return this.view.getUint16(at, true); }
      case GgufValueType.INT16: { const at = this.need(2, what); return this.view.getInt16(at, true); }
      case GgufValueType.UINT32: return this.u32(what);
      case GgufValueType.INT32: { const at = this.need(4, what); return this.view.getInt32(at, true); }
      case GgufValueType.FLOAT32: { const at = this.need(4, what); return this.view.getFloat32(at, true); }
      case GgufValueType.BOOL: {
        const b = this.u8(what);
        if (b > 1) throw new FormatError(this.file, `${what}: bool byte ${b} is neither 0 nor 1`);
        return b === 1;
      }
      case GgufValueType.STRING: return this.string(what);
      case GgufValueType.UINT64: return this.u64(what);
      case GgufValueType.INT64: { const at = this.need(8, what); return this.view.getBigInt64(at, true); }
      case GgufValueType.FLOAT64: { const at = this.need(8, what); return this.view.getFloat64(at, true); }
    }
  }
}

function isScalarType(id: number): id is GgufScalarType {
  return Number.isInteger(id) && id >= 0 && id <= 12 && id !== GgufValueType.ARRAY;
}

function minValueBytes(type: GgufScalarType): number {
  return VALUE_SIZE[type] ?? 8; // a string is at least its 8-byte length
}

export class GgufFile {
  readonly path: string;
  readonly version: number;
  readonly alignment: number;
  readonly kv: ReadonlyMap<string, GgufValue>;
  readonly tensors: readonly GgufTensorInfo[];
  /** absolute offset of the tensor data section */
  readonly dataStart: number;
  readonly fileSize: number;
  private fd: number | null;
  private readonly byName: Map<string, GgufTensorInfo>;

  private constructor(file: string, fd: number) {
    this.path = file;
    this.fd = fd;
    const cursor = new Cursor(fd, fstatSync(fd).size, file);
    this.fileSize = cursor.size;
    const magic = new Uint8Array(4);
    if (cursor.size < 4) throw new FormatError(file, `not a GGUF file (only ${cursor.size} bytes)`);
    for (let i = 0; i < 4; i++) magic[i] = cursor.u8('magic');
    const magicText = String.fromCharCode(...magic);
    if (magicText !== GGUF_MAGIC) {
      throw new FormatError(file, `not a GGUF file (magic ${[...magic].map((b) => b.toString(16).padStart(2, '0')).join(' ')}, expected 47 47 55 46 "GGUF")`);
    }
    const version = cursor.u32('version');
    if ((version & 0xffff) === 0) throw new FormatError(file, `GGUF version ${version} looks byte-swapped: big-endian GGUF files are not supported`);
    if (version < 2 || version > GGUF_VERSION) throw new FormatError(file, `unsupported GGUF version ${version} (supported: 2, 3)`);
    this.version = version;

    // A tensor-info record is at least 8 (name length) + 4 (n_dims) + 4 (type) + 8 (offset) bytes;
    // a KV record at least 8 (key length) + 4 (type) + 1 (value) bytes.
    const nTensors = cursor.count('tensor count', 24, GGUF_MAX_TENSORS);
    const nKv = cursor.count('KV count', 13, Number.MAX_SAFE_INTEGER);

    const kv = new Map<string, GgufValue>();
    for (let i = 0; i < nKv; i++) {
      const key = cursor.string(`key of KV ${i}`);
      if (key.length === 0) throw new FormatError(file, `KV ${i} has an empty key`);
      if (kv.has(key)) throw new FormatError(file, `duplicate key ${quote(key)}`);
      kv.set(key, readValue(cursor, file, key));
    }
    this.kv = kv;

    const alignmentValue = kv.get('general.alignment');
    let alignment = GGUF_DEFAULT_ALIGNMENT;
    if (alignmentValue !== undefined) {
      if (alignmentValue.type !== GgufValueType.UINT32) throw new FormatError(file, `general.alignment must be UINT32, found ${GgufValueType[alignmentValue.type]}`);
      alignment = alignmentValue.value as number;
      if (alignment === 0 || (alignment & (alignment - 1)) !== 0) throw new FormatError(file, `general.alignment ${alignment} is not a non-zero power of two`);
    }
    this.alignment = alignment;

    const infos: Omit<GgufTensorInfo, 'dataOffset'>[] = [];
    const names = new Set<string>();
    for (let i = 0; i < nTensors; i++) {
      const name = cursor.string(`name of tensor ${i}`, GGUF_MAX_NAME_BYTES);
      const shown = quote(name);
      if (names.has(name)) throw new FormatError(file, `duplicate tensor name ${quote(name)}`);
      names.add(name);
      const nDims = cursor.u32(`n_dims of ${shown}`);
      if (nDims < 1 || nDims > GGML_MAX_DIMS) throw new FormatError(file, `tensor ${shown} has ${nDims} dimensions (1 to ${GGML_MAX_DIMS} allowed)`);
      const dims: number[] = [];
      for (let d = 0; d < nDims; d++) {
        const ne = cursor.u64(`dims of ${shown}`);
        // Anything beyond the file size cannot be backed by data; checking here keeps the numbers exact.
        if (ne > BigInt(cursor.size) * 8n) throw new FormatError(file, `tensor ${shown} dimension ${d} = ${ne} is larger than the file could hold`);
        dims.push(Number(ne));
      }
      const typeId = cursor.u32(`type of ${shown}`);
      if (!isGgmlType(typeId)) throw new FormatError(file, `tensor ${shown} has unknown ggml type ${typeId}`);
      const offset = cursor.u64(`offset of ${shown}`);
      const byteLength = ggmlTensorBytes(typeId, dims);
      if (byteLength === null) {
        throw new FormatError(file, `tensor ${shown}: row length ${dims[0]} is not a multiple of the ${ggmlTypeName(typeId)} block size ${GGML_TYPE_TRAITS[typeId].blockSize}`);
      }
      if (offset > BigInt(cursor.size)) throw new FormatError(file, `tensor ${shown} offset ${offset} is beyond the end of the file`);
      infos.push({ name, dims, type: typeId, offset: Number(offset), byteLength });
    }

    this.dataStart = alignUp(cursor.pos, alignment);
    let expected = 0;
    const tensors: GgufTensorInfo[] = [];
    for (const info of infos) {
      if (info.offset % alignment !== 0) throw new FormatError(file, `tensor ${quote(info.name)} offset ${info.offset} is not a multiple of the alignment ${alignment}`);
      // ggml requires the data to be laid out back to back in tensor-info order.
      if (info.offset !== expected) throw new FormatError(file, `tensor ${quote(info.name)} has offset ${info.offset}, expected ${expected}`);
      const dataOffset = this.dataStart + info.offset;
      if (dataOffset + info.byteLength > cursor.size) {
        throw new FormatError(file, `tensor ${quote(info.name)} data [${dataOffset}, ${dataOffset + info.byteLength}) lies beyond the end of the file (${cursor.size} bytes)`);
      }
      tensors.push({ ...info, dataOffset });
      expected = alignUp(info.offset + info.byteLength, alignment);
    }
    this.tensors = tensors;
    this.byName = new Map(tensors.map((t) => [t.name, t]));
  }

  static open(file: string): GgufFile {
    const fd = openForReading(file);
    try {
      return new GgufFile(file, fd);
    } catch (err) {
      closeSync(fd);
      throw err;
    }
  }

  get(name: string): GgufTensorInfo | undefined {
    return this.byName.get(name);
  }

  /** The value of a key, or undefined; `type` (when given) must match exactly, as in llama.cpp. */
  value(key: string, type?: GgufValueType): GgufScalar | GgufScalar[] | undefined {
    const entry = this.kv.get(key);
    if (entry === undefined) return undefined;
    if (type !== undefined && entry.type !== type) {
      throw new FormatError(this.path, `key ${quote(key)} has type ${GgufValueType[entry.type]}, expected ${GgufValueType[type]}`);
    }
    return entry.value;
  }

  readBytes(name: string): Uint8Array {
    const info = this.byName.get(name);
    if (info === undefined) throw new FormatError(this.path, `no tensor named ${quote(name)}`);
    if (this.fd === null) throw new TritpackError(`${this.path}: file is closed`);
    const out = new Uint8Array(info.byteLength);
    readExactly(this.fd, this.path, out, info.dataOffset);
    return out;
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
}

function readValue(cursor: Cursor, file: string, key: string): GgufValue {
  const shown = quote(key);
  const type = cursor.u32(`type of ${shown}`);
  if (type === GgufValueType.ARRAY) {
    const elemType = cursor.u32(`element type of ${shown}`);
    if (elemType === GgufValueType.ARRAY) throw new FormatError(file, `key ${shown}: nested arrays are not supported`);
    if (!isScalarType(elemType)) throw new FormatError(file, `key ${shown}: unknown array element type ${elemType}`);
    const n = cursor.count(`element count of ${shown}`, minValueBytes(elemType), GGUF_MAX_ARRAY_ELEMENTS);
    const value: GgufScalar[] = new Array(n);
    // One description for all elements: vocabularies have hundreds of thousands, and the error names the offset.
    const what = `an element of ${shown}`;
    for (let i = 0; i < n; i++) value[i] = cursor.scalar(elemType, what);
    return { type: GgufValueType.ARRAY, elemType, value };
  }
  if (!isScalarType(type)) throw new FormatError(file, `key ${shown}: unknown value type ${type}`);
  return { type, value: cursor.scalar(type, shown) };
}

// ---------------------------------------------------------------------------------------------
// Writer

/** Growable little-endian byte builder for the header (KV + tensor infos). */
class ByteBuilder {
  private buf = new Uint8Array(1 << 16);
  private view = new DataView(this.buf.buffer);
  length = 0;
  private readonly encoder = new TextEncoder();

  private reserve(n: number): number {
    if (this.length + n > this.buf.length) {
      const next = new Uint8Array(Math.max(this.buf.length * 2, this.length + n));
      next.set(this.buf.subarray(0, this.length));
      this.buf = next;
      this.view = new DataView(next.buffer);
    }
    const at = this.length;
    this.length += n;
    return at;
  }

  bytes(b: Uint8Array): void { this.buf.set(b, this.reserve(b.length)); }
  u32(v: number): void { this.view.setUint32(this.reserve(4), v, true); }
  u64(v: number | bigint): void { this.view.setBigUint64(this.reserve(8), BigInt(v), true); }
  string(s: string): void {
    const b = this.encoder.encode(s);
    this.u64(b.length);
    this.bytes(b);
  }

  scalar(type: GgufScalarType, v: GgufScalar, key: string): void {
    const num = (): number => {
      if (typeof v !== 'number') throw new TritpackError(`GGUF key ${key}: expected a number for ${GgufValueType[type]}, got ${typeof v}`);
      return v;
    };
    switch (type) {
      case GgufValueType.UINT8: this.view.setUint8(this.reserve(1), num()); return;
      case GgufValueType.INT8: this.view.setInt8(this.reserve(1), num()); return;
      case GgufValueType.UINT16: this.view.setUint16(this.reserve(2), num(), true); return;
      case GgufValueType.INT16: this.view.setInt16(this.reserve(2), num(), true); return;
      case GgufValueType.UINT32: this.view.setUint32(this.reserve(4), num(), true); return;
      case GgufValueType.INT32: this.view.setInt32(this.reserve(4), num(), true); return;
      case GgufValueType.FLOAT32: this.view.setFloat32(this.reserve(4), num(), true); return;
      case GgufValueType.BOOL: this.view.setUint8(this.reserve(1), v ? 1 : 0); return;
      case GgufValueType.STRING: this.string(String(v)); return;
      case GgufValueType.UINT64: this.view.setBigUint64(this.reserve(8), BigInt(v as number | bigint), true); return;
      case GgufValueType.INT64: this.view.setBigInt64(this.reserve(8), BigInt(v as number | bigint), true); return;
      case GgufValueType.FLOAT64: this.view.setFloat64(this.reserve(8), num(), true); return;
    }
  }

  result(): Uint8Array { return this.buf.subarray(0, this.length); }
}

export interface GgufPlannedTensor { name: string; dims: number[]; type: GgmlType }

/** Serialises the header (magic … tensor infos) plus the zero padding up to the data section. */
export function encodeGgufHeader(kv: ReadonlyArray<[string, GgufValue]>, tensors: ReadonlyArray<GgufPlannedTensor>): { header: Uint8Array; offsets: number[]; alignment: number } {
  const keys = new Set<string>();
  let alignment = GGUF_DEFAULT_ALIGNMENT;
  const out = new ByteBuilder();
  out.bytes(new TextEncoder().encode(GGUF_MAGIC));
  out.u32(GGUF_VERSION);
  out.u64(tensors.length);
  out.u64(kv.length);
  for (const [key, value] of kv) {
    if (key.length === 0 || keys.has(key)) throw new TritpackError(`GGUF writer: empty or duplicate key "${key}"`);
    keys.add(key);
    if (key === 'general.alignment') {
      if (value.type !== GgufValueType.UINT32) throw new TritpackError('GGUF writer: general.alignment must be UINT32');
      alignment = value.value as number;
      if (alignment === 0 || (alignment & (alignment - 1)) !== 0) throw new TritpackError(`GGUF writer: alignment ${alignment} is not a power of two`);
    }
    out.string(key);
    out.u32(value.type);
    if (value.type === GgufValueType.ARRAY) {
      out.u32(value.elemType);
      out.u64(value.value.length);
      for (const v of value.value) out.scalar(value.elemType, v, key);
    } else {
      out.scalar(value.type, value.value, key);
    }
  }
  const offsets: number[] = [];
  const names = new Set<string>();
  let offset = 0;
  for (const t of tensors) {
    if (Buffer.byteLength(t.name) > GGUF_MAX_NAME_BYTES) throw new TritpackError(`GGUF writer: tensor name ${t.name} is longer than ${GGUF_MAX_NAME_BYTES} bytes`);
    if (names.has(t.name)) throw new TritpackError(`GGUF writer: duplicate tensor ${t.name}`);
    names.add(t.name);
    if (t.dims.length < 1 || t.dims.length > GGML_MAX_DIMS) throw new TritpackError(`GGUF writer: tensor ${t.name} has ${t.dims.length} dims`);
    const bytes = ggmlTensorBytes(t.type, t.dims);
    if (bytes === null) throw new TritpackError(`GGUF writer: tensor ${t.name} row length ${t.dims[0]} is not a multiple of the ${ggmlTypeName(t.type)} block size`);
    out.string(t.name);
    out.u32(t.dims.length);
    for (const d of t.dims) out.u64(d);
    out.u32(t.type);
    out.u64(offset);
    offsets.push(offset);
    offset = alignUp(offset + bytes, alignment);
  }
  const body = out.result();
  const header = new Uint8Array(alignUp(body.length, alignment));
  header.set(body);
  return { header, offsets, alignment };
}

/**
 * Streams a GGUF file: the header is written at create(), then each tensor's bytes in the planned
 * order, each followed by zero padding to the alignment (the last one too, as llama.cpp's writers
 * do). Everything goes to a temporary file that finish() renames into place; abort() removes it.
 */
export class GgufWriter {
  private fd: number | null;
  private next = 0;
  private readonly tmpPath: string;

  private constructor(readonly path: string, private readonly tensors: GgufPlannedTensor[], header: Uint8Array, private readonly alignment: number) {
    this.tmpPath = tempPathFor(path);
    try {
      this.fd = openSync(this.tmpPath, 'wx', 0o644);
    } catch (error) {
      throw new FormatError(path, ioProblem('create the output file', error));
    }
    this.write(header);
  }

  static create(file: string, kv: ReadonlyArray<[string, GgufValue]>, tensors: GgufPlannedTensor[], options: { force?: boolean } = {}): GgufWriter {
    if (existsSync(file) && !options.force) throw new TritpackError(`${file} already exists (use --force to overwrite)`);
    if (!existsSync(path.dirname(path.resolve(file)))) throw new TritpackError(`${file}: directory ${path.dirname(path.resolve(file))} does not exist`);
    const { header, alignment } = encodeGgufHeader(kv, tensors);
    return new GgufWriter(file, tensors.map((t) => ({ ...t, dims: [...t.dims] })), header, alignment);
  }

  /** Appends `bytes`; a failed write (a full disk) removes the temporary file before it throws. */
  private write(bytes: Uint8Array): void {
    if (this.fd === null) throw new TritpackError(`GGUF writer for ${this.path} is closed`);
    try {
      writeExactly(this.fd, this.path, bytes);
    } catch (error) {
      this.abort();
      throw error;
    }
  }

  writeTensor(name: string, data: Uint8Array): void {
    const planned = this.tensors[this.next];
    if (planned === undefined || planned.name !== name) {
      this.abort();
      throw new TritpackError(`GGUF writer: got tensor ${name}, expected ${planned?.name ?? 'no more tensors'} (tensors must be written in plan order)`);
    }
    const expected = ggmlTensorBytes(planned.type, planned.dims)!;
    if (data.length !== expected) {
      this.abort();
      throw new TritpackError(`GGUF writer: tensor ${name} has ${data.length} bytes, expected ${expected}`);
    }
    this.write(data);
    this.write(new Uint8Array(alignUp(data.length, this.alignment) - data.length));
    this.next++;
  }

  finish(): void {
    if (this.next !== this.tensors.length) {
      const missing = this.tensors[this.next]!.name;
      this.abort();
      throw new TritpackError(`GGUF writer: tensor ${missing} was never written`);
    }
    closeSync(this.fd!);
    this.fd = null;
    try {
      renameSync(this.tmpPath, this.path);
    } catch (error) {
      removeQuietly(this.tmpPath);
      throw new FormatError(this.path, ioProblem('rename the finished file into place', error));
    }
  }

  /** Closes and removes the temporary file; safe to call more than once. */
  abort(): void {
    if (this.fd !== null) closeQuietly(this.fd);
    this.fd = null;
    removeQuietly(this.tmpPath);
  }
}

/** Shorthands for typed KV values (the type is what llama.cpp checks). */
export const gguf = {
  u32: (value: number): GgufValue => ({ type: GgufValueType.UINT32, value }),
  i32: (value: number): GgufValue => ({ type: GgufValueType.INT32, value }),
  f32: (value: number): GgufValue => ({ type: GgufValueType.FLOAT32, value }),
  bool: (value: boolean): GgufValue => ({ type: GgufValueType.BOOL, value }),
  str: (value: string): GgufValue => ({ type: GgufValueType.STRING, value }),
  array: (elemType: GgufScalarType, value: GgufScalar[]): GgufValue => ({ type: GgufValueType.ARRAY, elemType, value }),
};
