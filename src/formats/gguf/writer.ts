/**
 * GGUF v3 writer: the header (KV pairs and tensor infos) encoded like gguf-py, then tensors
 * streamed in plan order into a temporary file that is renamed into place when complete.
 */
import { closeSync, existsSync, openSync, renameSync } from 'node:fs';
import path from 'node:path';
import { FormatError, TritpackError } from '../../errors.js';
import { closeQuietly, ioProblem, removeQuietly, tempPathFor, writeExactly } from '../io.js';
import {
  GGML_MAX_DIMS, GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, GGUF_MAX_NAME_BYTES, GGUF_VERSION, GgufValueType,
  type GgmlType, type GgufScalar, type GgufScalarType, type GgufValue,
  alignUp, ggmlTensorBytes, ggmlTypeName,
} from './types.js';

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

  // Reserve first, then read this.buf / this.view: reserve may replace them (in
  // `this.view.setUint32(this.reserve(4), v)` the old, outgrown view is read before reserve runs).
  bytes(b: Uint8Array): void { const at = this.reserve(b.length); this.buf.set(b, at); }
  private put(n: number, write: (view: DataView, at: number) => void): void { const at = this.reserve(n); write(this.view, at); }
  u32(v: number): void { this.put(4, (d, at) => d.setUint32(at, v, true)); }
  u64(v: number | bigint): void { this.put(8, (d, at) => d.setBigUint64(at, BigInt(v), true)); }
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
      case GgufValueType.UINT8: { const x = num(); this.put(1, (d, at) => d.setUint8(at, x)); return; }
      case GgufValueType.INT8: { const x = num(); this.put(1, (d, at) => d.setInt8(at, x)); return; }
      case GgufValueType.UINT16: { const x = num(); this.put(2, (d, at) => d.setUint16(at, x, true)); return; }
      case GgufValueType.INT16: { const x = num(); this.put(2, (d, at) => d.setInt16(at, x, true)); return; }
      case GgufValueType.UINT32: { const x = num(); this.put(4, (d, at) => d.setUint32(at, x, true)); return; }
      case GgufValueType.INT32: { const x = num(); this.put(4, (d, at) => d.setInt32(at, x, true)); return; }
      case GgufValueType.FLOAT32: { const x = num(); this.put(4, (d, at) => d.setFloat32(at, x, true)); return; }
      case GgufValueType.BOOL: this.put(1, (d, at) => d.setUint8(at, v ? 1 : 0)); return;
      case GgufValueType.STRING: this.string(String(v)); return;
      case GgufValueType.UINT64: { const x = BigInt(v as number | bigint); this.put(8, (d, at) => d.setBigUint64(at, x, true)); return; }
      case GgufValueType.INT64: { const x = BigInt(v as number | bigint); this.put(8, (d, at) => d.setBigInt64(at, x, true)); return; }
      case GgufValueType.FLOAT64: { const x = num(); this.put(8, (d, at) => d.setFloat64(at, x, true)); return; }
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
