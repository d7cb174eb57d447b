/**
 * GGUF v3 reader (llama.cpp / ggml), bytes only, in the manner of gguf-py. Layout and reader
 * rules: docs formats.md §2.
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
import { closeSync, fstatSync } from 'node:fs';
import { FormatError, TritpackError } from '../../errors.js';
import { openForReading, readExactly } from '../io.js';
import {
  GGML_MAX_DIMS, GGML_TYPE_TRAITS, GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, GGUF_MAX_NAME_BYTES, GGUF_VERSION, GgufValueType,
  type GgufScalar, type GgufScalarType, type GgufTensorInfo, type GgufValue,
  alignUp, ggmlTensorBytes, ggmlTypeName, isGgmlType,
} from './types.js';

/** Fixed byte size of each scalar value type (strings are variable: 8 bytes of length at least). */
const VALUE_SIZE: Partial<Record<GgufValueType, number>> = {
  [GgufValueType.UINT8]: 1, [GgufValueType.INT8]: 1, [GgufValueType.UINT16]: 2, [GgufValueType.INT16]: 2,
  [GgufValueType.UINT32]: 4, [GgufValueType.INT32]: 4, [GgufValueType.FLOAT32]: 4, [GgufValueType.BOOL]: 1,
  [GgufValueType.UINT64]: 8, [GgufValueType.INT64]: 8, [GgufValueType.FLOAT64]: 8,
};

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
