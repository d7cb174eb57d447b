/**
 * One .safetensors file, opened lazily: open() reads and validates only the header, and each
 * tensor's bytes are read on request, so a multi-GB checkpoint never sits in memory whole.
 */
import { closeSync, fstatSync } from 'node:fs';
import { dtypeByteSize, toFloat32Into } from '../dtype.js';
import { openForReading, readExactly } from '../io.js';
import { type ParsedHeader, parseHeader } from './header.js';
import { type SafetensorsTensorInfo, MAX_HEADER_BYTES, fail, quote } from './shared.js';

/** F64 tensors are narrowed through a reused buffer of this many elements (8 MB). */
const F64_CHUNK = 1 << 20;

export class SafetensorsFile {
  readonly path: string;
  readonly metadata: Record<string, string>;
  /** In data-offset order. */
  readonly tensors: SafetensorsTensorInfo[];
  private readonly byName: Map<string, SafetensorsTensorInfo>;
  private fd: number;

  private constructor(file: string, fd: number, header: ParsedHeader) {
    this.path = file;
    this.fd = fd;
    this.metadata = header.metadata;
    this.tensors = header.tensors;
    this.byName = new Map(header.tensors.map((t) => [t.name, t]));
  }

  static open(file: string): SafetensorsFile {
    const fd = openForReading(file);
    try {
      const size = fstatSync(fd).size;
      if (size < 8) fail(file, `file is ${size} bytes, too short for the 8-byte header length`);
      const prefix = new Uint8Array(8);
      readExactly(fd, file, prefix, 0);
      const declared = new DataView(prefix.buffer).getBigUint64(0, true);
      if (declared > BigInt(size - 8)) fail(file, `header length ${declared} runs past the end of the file (${size} bytes)`);
      if (declared > BigInt(MAX_HEADER_BYTES)) fail(file, `header length ${declared} exceeds the ${MAX_HEADER_BYTES}-byte maximum`);
      const headerLength = Number(declared);
      const header = new Uint8Array(headerLength);
      readExactly(fd, file, header, 8);
      return new SafetensorsFile(file, fd, parseHeader(file, header, 8 + headerLength, size - 8 - headerLength));
    } catch (error) {
      closeSync(fd);
      throw error;
    }
  }

  /** The open file's descriptor, to map exactly the file whose header was checked (even if its path was replaced since). */
  get descriptor(): number {
    return this.fdOrThrow();
  }

  get(name: string): SafetensorsTensorInfo | undefined {
    return this.byName.get(name);
  }

  private require(name: string): SafetensorsTensorInfo {
    const info = this.byName.get(name);
    if (!info) fail(this.path, `no tensor named ${quote(name)}`);
    return info;
  }

  private fdOrThrow(): number {
    if (this.fd < 0) throw new Error(`${this.path} is closed`);
    return this.fd;
  }

  private readInto(info: SafetensorsTensorInfo, target: Uint8Array): void {
    readExactly(this.fdOrThrow(), this.path, target, info.dataOffset);
  }

  /** The tensor's raw little-endian bytes; reads only that tensor. */
  readBytes(name: string): Uint8Array {
    const info = this.require(name);
    const out = new Uint8Array(info.byteLength);
    this.readInto(info, out);
    return out;
  }

  /**
   * F32, F16, BF16 or F64 values as float32 (F64 rounds to nearest even). The file's bytes are
   * read into the upper end of the result and widened in place (F32: the whole result, 16-bit
   * types: its upper half), so the result is the only memory used; F64, wider than its result,
   * goes through a bounded chunk buffer.
   */
  readFloat32(name: string): Float32Array {
    const info = this.require(name);
    const { dtype } = info;
    if (dtype !== 'F32' && dtype !== 'F16' && dtype !== 'BF16' && dtype !== 'F64') {
      fail(this.path, `tensor ${quote(name)} is ${dtype}; only F32, F16, BF16 and F64 can be read as float32`);
    }
    const count = info.byteLength / dtypeByteSize(dtype);
    const out = new Float32Array(count);
    if (dtype === 'F64') {
      const chunk = new Float64Array(Math.min(count, F64_CHUNK));
      for (let start = 0; start < count; start += chunk.length) {
        const part = new Uint8Array(chunk.buffer, 0, Math.min(chunk.length, count - start) * 8);
        readExactly(this.fdOrThrow(), this.path, part, info.dataOffset + start * 8);
        toFloat32Into(part, dtype, out.subarray(start));
      }
    } else {
      const bytes = new Uint8Array(out.buffer, out.byteLength - info.byteLength, info.byteLength);
      this.readInto(info, bytes);
      toFloat32Into(bytes, dtype, out);
    }
    return out;
  }

  close(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }
}
