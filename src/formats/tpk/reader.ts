/**
 * Reading a .tpk file: the preamble and header are checked on open, each blob's sha256 when it is
 * read (or first viewed in a mapping of the file).
 */
import { createHash, type Hash } from 'node:crypto';
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { FormatError, TritpackError } from '../../errors.js';
import { toFloat32 } from '../dtype.js';
import { readExactly } from '../io.js';
import { unpackr } from './codec.js';
import { HASHED_PREAMBLE_BYTES, MAGIC_BYTES, headerHash } from './layout.js';
import { type TpkBlobRef, type TpkHeader, type TpkTensorEntry, TPK_ALIGNMENT, TPK_FORMAT_VERSION, TPK_MAGIC, TPK_MAX_HEADER_BYTES, TPK_PREAMBLE_SIZE } from './table.js';
import { checkBlobPlacement, quote, validateHeader } from './validate.js';

/** Blobs are hashed through a buffer of at most this size, so verifying a large file keeps memory flat. */
const HASH_CHUNK = 8 * 1024 * 1024;

export class TpkFile {
  readonly path: string;
  readonly header: TpkHeader;
  private fd: number | undefined;
  private readonly byName: Map<string, TpkTensorEntry>;
  private readonly verified = new Set<TpkBlobRef>();

  /** Opens and checks magic, version, flags, the header's checksum and shape, and every blob's bounds. */
  static open(file: string): TpkFile {
    let fd: number;
    try {
      fd = openSync(file, 'r');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new TritpackError(`${file}: ${code === 'ENOENT' ? 'no such file' : `cannot open (${code ?? String(err)})`}`, { cause: err });
    }
    try {
      return new TpkFile(file, fd, readHeader(file, fd));
    } catch (err) {
      closeSync(fd);
      throw err;
    }
  }

  private constructor(file: string, fd: number, header: TpkHeader) {
    this.path = file;
    this.fd = fd;
    this.header = header;
    this.byName = new Map(header.tensors.map((t) => [t.name, t]));
  }

  /** The open file's descriptor, to map exactly the file that was checked (even if its path was replaced since). */
  get descriptor(): number {
    return this.openFd();
  }

  tensor(name: string): TpkTensorEntry | undefined {
    return this.byName.get(name);
  }

  /** The tensor's data blob, checked against its sha256 the first time it is read. */
  readData(name: string): Uint8Array {
    const entry = this.entry(name);
    return this.readBlob(entry, entry.data, 'data');
  }

  /**
   * The tensor's data blob as a view into `fileBytes`, this file's whole content (a memory mapping),
   * instead of a read copy; checked against its sha256 the first time, like readData. The blob's
   * bounds were checked against the file's size at open; `fileBytes` shorter than that (the file
   * shrank since) is the same truncation error, raised before anything reads past its end. (A file
   * that shrinks while mapped makes later reads fault with SIGBUS, as with any mmap.)
   */
  dataView(name: string, fileBytes: ArrayBuffer): Uint8Array {
    const entry = this.entry(name);
    const { offset, length } = entry.data;
    if (offset + length > fileBytes.byteLength) {
      throw new FormatError(this.path, `truncated: tensor ${quote(name)}: data ends at byte ${offset + length} but the file has ${fileBytes.byteLength} bytes`);
    }
    return this.verify(entry, entry.data, 'data', new Uint8Array(fileBytes, offset, length));
  }

  /** The ternary tensor's f32 scales (little-endian on disk), checked against their sha256. */
  readScales(name: string): Float32Array {
    const entry = this.entry(name);
    if (!entry.scales) throw new FormatError(this.path, `tensor ${quote(name)} has no scales (encoding ${entry.encoding})`);
    return toFloat32(this.readBlob(entry, entry.scales, 'scales'), 'F32');
  }

  /** Hashes every blob in chunks (memory stays flat however large the tensors are). */
  verifyAll(): { name: string; ok: boolean; problem?: string }[] {
    const fd = this.openFd();
    const largest = this.header.tensors.reduce((m, t) => Math.max(m, t.data.length, t.scales?.length ?? 0), 1);
    const buffer = Buffer.allocUnsafe(Math.min(HASH_CHUNK, largest));
    return this.header.tensors.map((t) => {
      const bad = [t.data, t.scales].filter((ref): ref is TpkBlobRef => ref !== undefined).filter((ref) => {
        if (this.verified.has(ref)) return false;
        const hash = createHash('sha256');
        for (let done = 0; done < ref.length; done += buffer.length) {
          const chunk = buffer.subarray(0, Math.min(buffer.length, ref.length - done));
          readExactly(fd, this.path, chunk, ref.offset + done);
          hash.update(chunk);
        }
        return !this.accept(ref, hash);
      });
      if (bad.length === 0) return { name: t.name, ok: true };
      return { name: t.name, ok: false, problem: mismatchProblem(t.name, bad[0] === t.data ? 'data' : 'scales') };
    });
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }

  private entry(name: string): TpkTensorEntry {
    const entry = this.byName.get(name);
    if (!entry) throw new FormatError(this.path, `no tensor named ${quote(name)}`);
    return entry;
  }

  private openFd(): number {
    if (this.fd === undefined) throw new TritpackError(`${this.path}: tpk file is closed`);
    return this.fd;
  }

  private readBlob(entry: TpkTensorEntry, ref: TpkBlobRef, what: 'data' | 'scales'): Uint8Array {
    const bytes = new Uint8Array(ref.length);
    readExactly(this.openFd(), this.path, bytes, ref.offset);
    return this.verify(entry, ref, what, bytes);
  }

  /** `bytes` (the blob `ref`), once its sha256 matches the header's; hashed the first time only. */
  private verify(entry: TpkTensorEntry, ref: TpkBlobRef, what: 'data' | 'scales', bytes: Uint8Array): Uint8Array {
    if (!this.verified.has(ref) && !this.accept(ref, createHash('sha256').update(bytes))) {
      throw new FormatError(this.path, mismatchProblem(entry.name, what));
    }
    return bytes;
  }

  private accept(ref: TpkBlobRef, hash: Hash): boolean {
    if (hash.digest('hex') !== ref.sha256) return false;
    this.verified.add(ref);
    return true;
  }
}

export function mismatchProblem(name: string, what: 'data' | 'scales'): string {
  return `tensor ${quote(name)}: ${what === 'scales' ? 'scales ' : ''}sha256 mismatch (file corrupted)`;
}

/** Reads and checks everything before the blobs; the blobs themselves are only bounds-checked here. */
function readHeader(file: string, fd: number): TpkHeader {
  const stat = fstatSync(fd);
  if (!stat.isFile()) throw new FormatError(file, 'not a regular file');
  const size = stat.size;
  const pre = Buffer.alloc(TPK_PREAMBLE_SIZE);
  const got = readSync(fd, pre, 0, TPK_PREAMBLE_SIZE, 0);
  if (got < MAGIC_BYTES.length || !pre.subarray(0, MAGIC_BYTES.length).equals(MAGIC_BYTES)) {
    throw new FormatError(file, `not a .tpk file (no ${TPK_MAGIC} magic)`);
  }
  if (got < TPK_PREAMBLE_SIZE) throw new FormatError(file, `truncated: ${size} bytes, shorter than the ${TPK_PREAMBLE_SIZE}-byte preamble`);
  const version = pre.readUInt32LE(8);
  if (version > TPK_FORMAT_VERSION) {
    throw new FormatError(file, `.tpk format version ${version} is newer than this tritpack reads (${TPK_FORMAT_VERSION}); upgrade tritpack`);
  }
  if (version < 1) throw new FormatError(file, `invalid .tpk format version ${version}`);
  const flags = pre.readUInt32LE(12);
  if (flags !== 0) throw new FormatError(file, `unknown flags 0x${flags.toString(16)} in the preamble`);
  const headerLength = Number(pre.readBigUInt64LE(16));
  const dataOffset = Number(pre.readBigUInt64LE(24));
  if (headerLength < 1 || headerLength > TPK_MAX_HEADER_BYTES) throw new FormatError(file, `header length ${headerLength} is out of range`);
  if (TPK_PREAMBLE_SIZE + headerLength > size) {
    throw new FormatError(file, `truncated: header of ${headerLength} bytes extends past the end of the file (${size} bytes)`);
  }
  if (dataOffset % TPK_ALIGNMENT !== 0 || dataOffset < TPK_PREAMBLE_SIZE + headerLength || dataOffset > size) {
    throw new FormatError(file, `data offset ${dataOffset} is not a 64-aligned position between the header's end and the file's end`);
  }
  const headerBytes = Buffer.alloc(headerLength);
  readExactly(fd, file, headerBytes, TPK_PREAMBLE_SIZE);
  if (!headerHash(pre, headerBytes).equals(pre.subarray(HASHED_PREAMBLE_BYTES))) {
    throw new FormatError(file, 'header sha256 mismatch (preamble or header corrupted)');
  }
  let raw: unknown;
  try {
    raw = unpackr.unpack(headerBytes);
  } catch (err) {
    throw new FormatError(file, `header is not valid msgpack (${err instanceof Error ? err.message : String(err)})`, { cause: err });
  }
  const header = validateHeader(file, raw, version);
  checkBlobPlacement(file, header, dataOffset, size);
  return header;
}
