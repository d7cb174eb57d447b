/**
 * The .tpk file: tritpack's single-file packed model (specified byte by byte in docs/tpk-format.md).
 *
 *   [64-byte preamble][msgpack header][zero padding to 64][blob][pad][blob][pad]…[last blob]
 *
 * The preamble carries magic, version, flags, the header's length, where the blob region starts
 * and a sha256 over itself and the header, so every byte that describes the model is checked.
 * The header is plain msgpack (no msgpackr records or extensions) so any language can read it.
 * Each blob starts at a 64-byte-aligned absolute offset and has its own sha256 in the header.
 *
 * Writing streams: the layout is fixed from the planned tensor lengths before any blob exists,
 * blobs go straight to their final offsets in a temp file, and the header is rewritten with the
 * real hashes at the end, followed by rename — a crash leaves a temp file, never a partial .tpk.
 */
import { createHash, randomBytes, type Hash } from 'node:crypto';
import {
  closeSync, existsSync, fstatSync, fsyncSync, ftruncateSync, openSync, readSync, renameSync,
  statSync, unlinkSync, writeSync,
} from 'node:fs';
import path from 'node:path';
import { Packr, Unpackr } from 'msgpackr';
import { FormatError, TritpackError } from '../errors.js';
import { dtypeByteSize, isDType, type DType } from './dtype.js';
import { packedByteLength } from './ternary.js';

// ---------------------------------------------------------------------------------------------
// Constants and public types
// ---------------------------------------------------------------------------------------------

export const TPK_MAGIC = 'TRITPACK';
export const TPK_FORMAT_VERSION = 1;
export const TPK_ALIGNMENT = 64;
export const TPK_PREAMBLE_SIZE = 64;
/** Headers embed tokenizer.json (tens of MB for 256k vocabularies); anything past this is hostile. */
export const TPK_MAX_HEADER_BYTES = 512 * 1024 * 1024;

const MAGIC_BYTES = Buffer.from(TPK_MAGIC, 'latin1');
const HASHED_PREAMBLE_BYTES = 32; // magic, version, flags, header length, data offset
const ZERO_SHA256 = '0'.repeat(64);
const COPY_CHUNK = 8 * 1024 * 1024;
/** Header room reserved for per-tensor stats, which arrive only with each tensor's data. */
const STATS_RESERVE_BASE = 1024;
const STATS_RESERVE_PER_TENSOR = 256;

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

// ---------------------------------------------------------------------------------------------
// Header encoding: plain msgpack only
// ---------------------------------------------------------------------------------------------

// variableMapSize: smallest map headers (canonical msgpack); records/undefined would be msgpackr-only.
const packr = new Packr({ useRecords: false, variableMapSize: true, encodeUndefinedAsNil: true, moreTypes: false });
// int64AsType 'number': offsets past 4 GiB are stored as msgpack integers (see plainValue).
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

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

function encodeHeader(header: TpkHeader): Buffer {
  const shaped = ordered({ ...header, tensors: header.tensors.map((t) => ordered(t, ENTRY_KEY_ORDER)) }, HEADER_KEY_ORDER);
  return packr.pack(plainValue(shaped, 'header'));
}

// ---------------------------------------------------------------------------------------------
// Layout
// ---------------------------------------------------------------------------------------------

function alignUp(n: number): number {
  return Math.ceil(n / TPK_ALIGNMENT) * TPK_ALIGNMENT;
}

interface BlobSizes { dataLength: number; scalesLength?: number }
interface BlobPlace { data: { offset: number; length: number }; scales?: { offset: number; length: number } }
interface Layout { dataOffset: number; fileSize: number; blobs: BlobPlace[]; header: Buffer }

/** Blobs one after another from `dataOffset`, each at the next 64-byte boundary, in table order. */
function placeBlobs(sizes: BlobSizes[], dataOffset: number): { blobs: BlobPlace[]; fileSize: number } {
  let cursor = dataOffset;
  let fileSize = dataOffset;
  const place = (length: number) => {
    const offset = alignUp(cursor);
    cursor = offset + length;
    fileSize = cursor;
    return { offset, length };
  };
  const blobs = sizes.map((s) => {
    const data = place(s.dataLength);
    return s.scalesLength === undefined ? { data } : { data, scales: place(s.scalesLength) };
  });
  return { blobs, fileSize };
}

/**
 * The header holds the blob offsets and the blob offsets depend on the header's size, so iterate
 * to a fixed point: the data offset only grows and the header's size is bounded, so it settles.
 */
function fitLayout(sizes: BlobSizes[], encode: (blobs: BlobPlace[]) => Buffer, reserve: number): Layout {
  let dataOffset = alignUp(TPK_PREAMBLE_SIZE + reserve);
  for (;;) {
    const { blobs, fileSize } = placeBlobs(sizes, dataOffset);
    const header = encode(blobs);
    const needed = alignUp(TPK_PREAMBLE_SIZE + header.length + reserve);
    if (needed <= dataOffset) return { dataOffset, fileSize, blobs, header };
    dataOffset = needed;
  }
}

function preamble(header: Buffer, dataOffset: number, withHash: boolean): Buffer {
  const out = Buffer.alloc(TPK_PREAMBLE_SIZE);
  MAGIC_BYTES.copy(out, 0);
  out.writeUInt32LE(TPK_FORMAT_VERSION, 8);
  out.writeUInt32LE(0, 12); // flags: none defined in version 1
  out.writeBigUInt64LE(BigInt(header.length), 16);
  out.writeBigUInt64LE(BigInt(dataOffset), 24);
  if (withHash) headerHash(out, header).copy(out, HASHED_PREAMBLE_BYTES);
  return out;
}

function headerHash(pre: Buffer, header: Uint8Array): Buffer {
  return createHash('sha256').update(pre.subarray(0, HASHED_PREAMBLE_BYTES)).update(header).digest();
}

/** Writes the preamble, the header and zeros up to the data offset (the header may have shrunk). */
function writeHeaderRegion(fd: number, header: Buffer, dataOffset: number, withHash: boolean): void {
  writeFully(fd, preamble(header, dataOffset, withHash), 0);
  writeFully(fd, header, TPK_PREAMBLE_SIZE);
  const end = TPK_PREAMBLE_SIZE + header.length;
  if (dataOffset > end) writeFully(fd, Buffer.alloc(dataOffset - end), end);
}

function writeFully(fd: number, bytes: Uint8Array, position: number): void {
  let done = 0;
  while (done < bytes.length) {
    done += writeSync(fd, bytes, done, Math.min(bytes.length - done, COPY_CHUNK), position + done);
  }
}

function readFully(fd: number, file: string, target: Uint8Array, position: number): void {
  let done = 0;
  while (done < target.length) {
    const n = readSync(fd, target, done, Math.min(target.length - done, COPY_CHUNK), position + done);
    if (n === 0) throw new FormatError(file, `unexpected end of file at byte ${position + done}`);
    done += n;
  }
}

function float32ToLE(values: Float32Array): Uint8Array {
  const out = new Uint8Array(values.length * 4);
  const view = new DataView(out.buffer);
  for (let i = 0; i < values.length; i++) view.setFloat32(i * 4, values[i]!, true);
  return out;
}

function tempPathFor(target: string): string {
  return `${target}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
}

function removeQuietly(file: string): void {
  try { unlinkSync(file); } catch { /* already gone */ }
}

/** Makes the rename durable; some filesystems refuse fsync on a directory, which is harmless. */
function syncDirectory(dir: string): void {
  let fd: number | undefined;
  try { fd = openSync(dir, 'r'); fsyncSync(fd); } catch { /* best effort */ } finally { if (fd !== undefined) closeSync(fd); }
}

function checkOutputPath(target: string, force: boolean): void {
  const dir = path.dirname(path.resolve(target));
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new TritpackError(`${dir}: output directory does not exist`);
  }
  if (existsSync(target)) {
    if (statSync(target).isDirectory()) throw new TritpackError(`${target}: output path is a directory`);
    if (!force) throw new TritpackError(`${target}: output file already exists (use --force to overwrite)`);
  }
}

// ---------------------------------------------------------------------------------------------
// Tensor-table rules shared by the writer's plan and the reader's validation
// ---------------------------------------------------------------------------------------------

/** Returns a problem description, or undefined when the tensor's description is consistent. */
function tensorProblem(t: { shape?: unknown; encoding?: unknown; scale?: unknown; sourceDType?: unknown }, dataLength: number, scalesLength: number | undefined): string | undefined {
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

// ---------------------------------------------------------------------------------------------
// Writer
// ---------------------------------------------------------------------------------------------

interface Written { dataSha: string; scalesSha?: string; stats?: Record<string, number> }

export class TpkWriter {
  private readonly target: string;
  private readonly tempPath: string;
  private readonly force: boolean;
  private readonly base: Omit<TpkHeader, 'tensors'>;
  private readonly planned: TpkPlannedTensor[];
  private readonly layout: Layout;
  private readonly written: Written[] = [];
  private fd: number | undefined;

  /**
   * Checks the destination, fixes the whole layout and writes a placeholder header to a temp file
   * beside `path`. The placeholder's hashes are zeros of the final hex length, so the final header
   * differs only by the hashes (same size) and the stats, for which header room is reserved.
   */
  static create(path: string, header: Omit<TpkHeader, 'tensors'>, planned: TpkPlannedTensor[], options: { force?: boolean } = {}): TpkWriter {
    checkOutputPath(path, options.force ?? false);
    const names = new Set<string>();
    for (const t of planned) {
      if (typeof t.name !== 'string' || t.name === '') throw new TritpackError(`tpk plan: tensor names must be non-empty strings`);
      if (names.has(t.name)) throw new TritpackError(`tpk plan: tensor ${t.name} is planned twice`);
      names.add(t.name);
      const problem = tensorProblem(t, t.dataLength, isTernaryEncoding(t.encoding) ? (t.scalesLength ?? (t.scale ? t.scale.count * 4 : undefined)) : t.scalesLength);
      if (problem) throw new TritpackError(`tpk plan: tensor ${t.name}: ${problem}`);
    }
    return new TpkWriter(path, header, planned, options.force ?? false);
  }

  private constructor(target: string, header: Omit<TpkHeader, 'tensors'>, planned: TpkPlannedTensor[], force: boolean) {
    this.target = target;
    this.force = force;
    this.base = { ...header, formatVersion: TPK_FORMAT_VERSION };
    this.planned = planned;
    const sizes = planned.map((t) => ({ dataLength: t.dataLength, scalesLength: isTernaryEncoding(t.encoding) ? t.scale!.count * 4 : undefined }));
    const reserve = STATS_RESERVE_BASE + STATS_RESERVE_PER_TENSOR * planned.length;
    this.layout = fitLayout(sizes, (blobs) => encodeHeader(this.headerFor(blobs)), reserve);
    this.tempPath = tempPathFor(target);
    this.fd = openSync(this.tempPath, 'wx', 0o644);
    try {
      ftruncateSync(this.fd, this.layout.fileSize); // gaps between blobs read back as zeros
      writeHeaderRegion(this.fd, this.layout.header, this.layout.dataOffset, false);
    } catch (err) {
      this.abort();
      throw err;
    }
  }

  /** The header for given blob places, with whatever hashes and stats are known so far. */
  private headerFor(blobs: BlobPlace[]): TpkHeader {
    const tensors = this.planned.map((t, i): TpkTensorEntry => {
      const w = this.written[i];
      const place = blobs[i]!;
      return {
        name: t.name, shape: t.shape, encoding: t.encoding, sourceDType: t.sourceDType, scale: t.scale, stats: w?.stats,
        data: { ...place.data, sha256: w?.dataSha ?? ZERO_SHA256 },
        scales: place.scales && { ...place.scales, sha256: w?.scalesSha ?? ZERO_SHA256 },
      };
    });
    return { ...this.base, tensors };
  }

  private openFd(): number {
    if (this.fd === undefined) throw new TritpackError(`${this.target}: tpk writer is already finished or aborted`);
    return this.fd;
  }

  /**
   * Writes the next planned tensor at its offset. A tensor out of order or of the wrong size is a
   * TritpackError that leaves the writer unchanged (the caller then aborts).
   */
  writeTensor(name: string, data: Uint8Array, scales?: Float32Array, stats?: Record<string, number>): void {
    const fd = this.openFd();
    const index = this.written.length;
    const plan = this.planned[index];
    const fail = (problem: string) => new TritpackError(`${this.target}: tensor ${name}: ${problem}`);
    if (!plan) throw fail('all planned tensors are already written');
    if (plan.name !== name) throw fail(`written out of order (expected ${plan.name})`);
    if (data.length !== plan.dataLength) throw fail(`data is ${data.length} bytes, planned ${plan.dataLength}`);
    const place = this.layout.blobs[index]!;
    if (place.scales) {
      if (!scales || scales.length * 4 !== place.scales.length) throw fail(`needs ${place.scales.length / 4} scales, got ${scales?.length ?? 'none'}`);
    } else if (scales) {
      throw fail(`encoding ${plan.encoding} takes no scales`);
    }
    if (stats !== undefined) {
      for (const [key, value] of Object.entries(stats)) if (typeof value !== 'number') throw fail(`stat ${key} is not a number`);
    }
    writeFully(fd, data, place.data.offset);
    const written: Written = { dataSha: createHash('sha256').update(data).digest('hex') };
    if (place.scales && scales) {
      const bytes = float32ToLE(scales);
      writeFully(fd, bytes, place.scales.offset);
      written.scalesSha = createHash('sha256').update(bytes).digest('hex');
    }
    if (stats !== undefined) written.stats = { ...stats };
    this.written.push(written);
  }

  /** Writes the final header, syncs and renames the temp file onto the destination. */
  finish(): void {
    const fd = this.openFd();
    if (this.written.length !== this.planned.length) {
      throw new TritpackError(`${this.target}: ${this.planned.length - this.written.length} planned tensors were not written (next: ${this.planned[this.written.length]!.name})`);
    }
    try {
      const header = encodeHeader(this.headerFor(this.layout.blobs));
      if (TPK_PREAMBLE_SIZE + header.length <= this.layout.dataOffset) {
        writeHeaderRegion(fd, header, this.layout.dataOffset, true);
        fsyncSync(fd);
        closeSync(fd);
        this.fd = undefined;
        this.publish(this.tempPath);
      } else {
        // Stats outgrew the reserved room: move the blobs down in a second temp file.
        closeSync(fd);
        this.fd = undefined;
        const relocated = tempPathFor(this.target);
        try {
          rewriteTpk(this.tempPath, this.headerFor(this.layout.blobs), relocated);
          this.publish(relocated);
        } finally {
          removeQuietly(relocated);
        }
      }
    } finally {
      this.abort();
    }
  }

  private publish(file: string): void {
    if (!this.force && existsSync(this.target)) {
      throw new TritpackError(`${this.target}: output file already exists (use --force to overwrite)`);
    }
    renameSync(file, this.target);
    syncDirectory(path.dirname(path.resolve(this.target)));
  }

  /** Closes and removes the temp file; safe to call more than once and after finish(). */
  abort(): void {
    if (this.fd !== undefined) {
      try { closeSync(this.fd); } catch { /* closing is best effort on the way out */ }
      this.fd = undefined;
    }
    removeQuietly(this.tempPath);
  }
}

/**
 * Writes `header` (whose blob refs point into `source`) to `output` with freshly placed blobs,
 * copying them in chunks and checking each against its sha256 on the way, so a rewrite never
 * launders corruption. Used for header updates and when the writer's reserved room ran out.
 */
function rewriteTpk(source: string, header: TpkHeader, output: string): void {
  const sizes = header.tensors.map((t) => ({ dataLength: t.data.length, scalesLength: t.scales?.length }));
  const withPlaces = (blobs: BlobPlace[]): TpkHeader => ({
    ...header,
    tensors: header.tensors.map((t, i) => ({
      ...t,
      data: { ...blobs[i]!.data, sha256: t.data.sha256 },
      scales: t.scales && { ...blobs[i]!.scales!, sha256: t.scales.sha256 },
    })),
  });
  const layout = fitLayout(sizes, (blobs) => encodeHeader(withPlaces(blobs)), 0);
  const src = openSync(source, 'r');
  let out: number | undefined;
  try {
    out = openSync(output, 'wx', 0o644);
    ftruncateSync(out, layout.fileSize);
    writeHeaderRegion(out, layout.header, layout.dataOffset, true);
    const buffer = Buffer.allocUnsafe(COPY_CHUNK);
    header.tensors.forEach((t, i) => {
      const pairs: [TpkBlobRef, { offset: number }, string][] = [[t.data, layout.blobs[i]!.data, 'data']];
      if (t.scales) pairs.push([t.scales, layout.blobs[i]!.scales!, 'scales']);
      for (const [from, to, what] of pairs) {
        const hash = createHash('sha256');
        for (let done = 0; done < from.length; done += COPY_CHUNK) {
          const chunk = buffer.subarray(0, Math.min(COPY_CHUNK, from.length - done));
          readFully(src, source, chunk, from.offset + done);
          hash.update(chunk);
          writeFully(out!, chunk, to.offset + done);
        }
        if (hash.digest('hex') !== from.sha256) throw new FormatError(source, `tensor ${t.name}: ${what === 'data' ? '' : 'scales '}sha256 mismatch (file corrupted)`);
      }
    });
    fsyncSync(out);
  } catch (err) {
    removeQuietly(output);
    throw err;
  } finally {
    closeSync(src);
    if (out !== undefined) closeSync(out);
  }
}

// ---------------------------------------------------------------------------------------------
// Reader
// ---------------------------------------------------------------------------------------------

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

  tensor(name: string): TpkTensorEntry | undefined {
    return this.byName.get(name);
  }

  /** The tensor's data blob, checked against its sha256 the first time it is read. */
  readData(name: string): Uint8Array {
    const entry = this.entry(name);
    return this.readBlob(entry, entry.data, 'data');
  }

  /** The ternary tensor's f32 scales (little-endian on disk), checked against their sha256. */
  readScales(name: string): Float32Array {
    const entry = this.entry(name);
    if (!entry.scales) throw new FormatError(this.path, `tensor ${name} has no scales (encoding ${entry.encoding})`);
    const bytes = this.readBlob(entry, entry.scales, 'scales');
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const out = new Float32Array(bytes.length / 4);
    for (let i = 0; i < out.length; i++) out[i] = view.getFloat32(i * 4, true);
    return out;
  }

  /** Hashes every blob in chunks (memory stays flat however large the tensors are). */
  verifyAll(): { name: string; ok: boolean; problem?: string }[] {
    const fd = this.openFd();
    const largest = this.header.tensors.reduce((m, t) => Math.max(m, t.data.length, t.scales?.length ?? 0), 1);
    const buffer = Buffer.allocUnsafe(Math.min(COPY_CHUNK, largest));
    return this.header.tensors.map((t) => {
      const bad = [t.data, t.scales].filter((ref): ref is TpkBlobRef => ref !== undefined).filter((ref) => {
        if (this.verified.has(ref)) return false;
        const hash = createHash('sha256');
        for (let done = 0; done < ref.length; done += buffer.length) {
          const chunk = buffer.subarray(0, Math.min(buffer.length, ref.length - done));
          readFully(fd, this.path, chunk, ref.offset + done);
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
    if (!entry) throw new FormatError(this.path, `no tensor named ${name}`);
    return entry;
  }

  private openFd(): number {
    if (this.fd === undefined) throw new TritpackError(`${this.path}: tpk file is closed`);
    return this.fd;
  }

  private readBlob(entry: TpkTensorEntry, ref: TpkBlobRef, what: 'data' | 'scales'): Uint8Array {
    const bytes = new Uint8Array(ref.length);
    readFully(this.openFd(), this.path, bytes, ref.offset);
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

function mismatchProblem(name: string, what: 'data' | 'scales'): string {
  return `tensor ${name}: ${what === 'scales' ? 'scales ' : ''}sha256 mismatch (file corrupted)`;
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
  readFully(fd, file, headerBytes, TPK_PREAMBLE_SIZE);
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

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Uint8Array);
}

/** Checks the decoded header's shape; hostile files get one clear error, never a crash. */
function validateHeader(file: string, raw: unknown, version: number): TpkHeader {
  const bad = (where: string, problem: string) => new FormatError(file, `header: ${where} ${problem}`);
  const string = (value: unknown, where: string) => { if (typeof value !== 'string') throw bad(where, 'must be a string'); };
  const optionalString = (value: unknown, where: string) => { if (value !== undefined) string(value, where); };
  const object = (value: unknown, where: string) => { if (!isObject(value)) throw bad(where, 'must be a map'); };
  object(raw, 'top level');
  const h = raw as Record<string, unknown>;
  if (h.formatVersion !== version) throw bad('formatVersion', `is ${JSON.stringify(h.formatVersion)} but the preamble says ${version}`);
  object(h.producer, 'producer');
  const producer = h.producer as Record<string, unknown>;
  string(producer.name, 'producer.name');
  string(producer.version, 'producer.version');
  string(h.createdAt, 'createdAt');
  object(h.source, 'source');
  const source = h.source as Record<string, unknown>;
  optionalString(source.repo, 'source.repo');
  optionalString(source.revision, 'source.revision');
  optionalString(source.path, 'source.path');
  if (source.files !== undefined) {
    if (!Array.isArray(source.files)) throw bad('source.files', 'must be an array');
    source.files.forEach((f: unknown, i) => {
      object(f, `source.files[${i}]`);
      const entry = f as Record<string, unknown>;
      string(entry.name, `source.files[${i}].name`);
      if (!Number.isSafeInteger(entry.size) || (entry.size as number) < 0) throw bad(`source.files[${i}].size`, 'must be a non-negative integer');
      optionalString(entry.sha256, `source.files[${i}].sha256`);
    });
  }
  object(h.files, 'files');
  for (const [key, value] of Object.entries(h.files as object)) string(value, `files[${JSON.stringify(key)}]`);
  object(h.conversion, 'conversion');
  if (!Array.isArray(h.tensors)) throw bad('tensors', 'must be an array');
  const names = new Set<string>();
  (h.tensors as unknown[]).forEach((t, i) => {
    const where = `tensors[${i}]`;
    object(t, where);
    const e = t as Record<string, unknown>;
    if (typeof e.name !== 'string' || e.name === '') throw bad(`${where}.name`, 'must be a non-empty string');
    if (names.has(e.name)) throw bad(`${where}.name`, `${e.name} appears twice`);
    names.add(e.name);
    const at = `tensor ${e.name}:`;
    blobRef(e.data, `${at} data`);
    if (e.scales !== undefined) blobRef(e.scales, `${at} scales`);
    if (e.stats !== undefined) {
      object(e.stats, `${at} stats`);
      for (const [key, value] of Object.entries(e.stats as object)) if (typeof value !== 'number') throw bad(`${at} stats.${key}`, 'must be a number');
    }
    const problem = tensorProblem(e, (e.data as TpkBlobRef).length, (e.scales as TpkBlobRef | undefined)?.length);
    if (problem) throw new FormatError(file, `header: ${at} ${problem}`);
  });
  return h as unknown as TpkHeader;

  function blobRef(value: unknown, where: string): void {
    object(value, where);
    const ref = value as Record<string, unknown>;
    if (!Number.isSafeInteger(ref.offset) || (ref.offset as number) < 0) throw bad(`${where}.offset`, 'must be a non-negative integer');
    if (!Number.isSafeInteger(ref.length) || (ref.length as number) < 0) throw bad(`${where}.length`, 'must be a non-negative integer');
    if (typeof ref.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(ref.sha256)) throw bad(`${where}.sha256`, 'must be 64 lowercase hex digits');
  }
}

/** Every blob aligned, inside [dataOffset, file end), no two overlapping, and no bytes after the last. */
function checkBlobPlacement(file: string, header: TpkHeader, dataOffset: number, size: number): void {
  const refs = header.tensors.flatMap((t) => [{ ref: t.data, what: `tensor ${t.name}: data` }, ...(t.scales ? [{ ref: t.scales, what: `tensor ${t.name}: scales` }] : [])]);
  refs.sort((a, b) => a.ref.offset - b.ref.offset || a.ref.length - b.ref.length); // empty blobs first at a shared offset
  let end = dataOffset;
  for (const { ref, what } of refs) {
    if (ref.offset % TPK_ALIGNMENT !== 0) throw new FormatError(file, `${what} offset ${ref.offset} is not a multiple of ${TPK_ALIGNMENT}`);
    if (ref.offset < end) throw new FormatError(file, `${what} at ${ref.offset} overlaps the header or another blob (free from ${end})`);
    end = ref.offset + ref.length;
    if (end > size) throw new FormatError(file, `truncated: ${what} ends at byte ${end} but the file has ${size} bytes`);
  }
  if (end < size) throw new FormatError(file, `${size - end} unexpected bytes after the last blob`);
}

// ---------------------------------------------------------------------------------------------
// Header update
// ---------------------------------------------------------------------------------------------

/**
 * Replaces top-level header fields (e.g. `validation`) by rewriting the file through a temp file
 * and rename: blobs are copied byte for byte (and re-verified), offsets recomputed for the new
 * header size. A field patched to `undefined` is removed.
 */
export function updateTpkHeader(file: string, patch: Partial<Omit<TpkHeader, 'tensors'>>): void {
  const tpk = TpkFile.open(file);
  const header: Record<string, unknown> = { ...tpk.header };
  tpk.close();
  for (const [key, value] of Object.entries(patch)) {
    if (key === 'tensors' || key === 'formatVersion') throw new TritpackError(`${file}: updateTpkHeader cannot change ${key}`);
    if (value === undefined) delete header[key];
    else header[key] = value;
  }
  const temp = tempPathFor(file);
  try {
    rewriteTpk(file, header as unknown as TpkHeader, temp);
    renameSync(temp, file);
    syncDirectory(path.dirname(path.resolve(file)));
  } finally {
    removeQuietly(temp);
  }
}
