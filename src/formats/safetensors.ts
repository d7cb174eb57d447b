/**
 * safetensors reader and writer (layout: shared docs/formats.md §6).
 *
 * The reader validates the header as strictly as the official `safetensors` crate (the tensors
 * must tile the data section exactly, with no overlap and no gap), reads only the header on open,
 * and reads one tensor's bytes at a time, so multi-GB checkpoints never sit in memory whole.
 * The writer reproduces the official serializer byte for byte and streams tensor data, which may
 * be produced lazily by a thunk, into a temporary file that is renamed into place only on success.
 */
import { closeSync, existsSync, fstatSync, openSync, readFileSync, readSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { endianness } from 'node:os';
import path from 'node:path';
import { FormatError } from '../errors.js';
import { type DType, dtypeByteSize, f16BitsToF32, isDType, toFloat32 } from './dtype.js';

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
const MAX_HEADER_BYTES = 100_000_000;
const SINGLE_FILE_NAME = 'model.safetensors';
const INDEX_FILE_NAME = 'model.safetensors.index.json';
/** readSync/writeSync take at most 2 GiB − 1 per call; tensors can be larger. */
const IO_CHUNK = 1 << 30;
/** F64 tensors are narrowed through a reused buffer of this many elements (8 MB). */
const F64_CHUNK = 1 << 20;

/**
 * Every dtype of the official `Dtype` enum, in its declaration order. The serializer sorts
 * tensors by this order (descending), and the reader uses the list to tell a valid dtype that
 * tritpack does not handle from a name that is not a safetensors dtype at all.
 */
const OFFICIAL_DTYPES = [
  'BOOL', 'F4', 'F6_E2M3', 'F6_E3M2', 'U8', 'I8', 'F8_E5M2', 'F8_E4M3', 'F8_E8M0', 'F8_E4M3FNUZ', 'F8_E5M2FNUZ',
  'I16', 'U16', 'F16', 'BF16', 'I32', 'U32', 'F32', 'C64', 'F64', 'I64', 'U64',
];

/**
 * The fast readFloat32 paths read the file's little-endian bytes straight into typed arrays,
 * which use host byte order. On a big-endian host they fall back to dtype.ts's portable decoder.
 */
const LITTLE_ENDIAN_HOST = endianness() === 'LE';

function fail(file: string, problem: string): never {
  throw new FormatError(file, problem);
}

/** Names may contain anything, newlines included; quoting them keeps every message on one line. */
function quote(name: string): string {
  return JSON.stringify(name);
}

/** A short, one-line rendering of an untrusted JSON value for an error message. */
function preview(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isCount(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 0;
}

/** One-line description of a failed fs call (Node's messages repeat the path we already print). */
function ioProblem(action: string, error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  const known: Record<string, string> = {
    ENOENT: 'no such file or directory', EACCES: 'permission denied', EISDIR: 'is a directory',
    ENOTDIR: 'a parent is not a directory', ENOSPC: 'no space left on device', EROFS: 'read-only file system',
  };
  const reason = (code && known[code]) ?? String((error as Error).message ?? error).split('\n')[0];
  return `cannot ${action}: ${reason}`;
}

// ---------------------------------------------------------------------------------------------
// Reading

/** Fills `target` from `fd` at `position`, failing if the file ends first. */
function readExactly(fd: number, file: string, target: Uint8Array, position: number): void {
  let done = 0;
  while (done < target.byteLength) {
    let n: number;
    try {
      n = readSync(fd, target, done, Math.min(IO_CHUNK, target.byteLength - done), position + done);
    } catch (error) {
      fail(file, ioProblem('read', error));
    }
    if (n === 0) fail(file, `file ended at byte ${position + done} while reading ${target.byteLength} bytes at ${position} (was it modified?)`);
    done += n;
  }
}

/**
 * serde (and so the official reader) rejects an object with a repeated key, but JSON.parse keeps
 * the last value silently. Scans the already-validated JSON text for keys of the top-level object.
 */
function findDuplicateTopLevelKey(text: string): string | undefined {
  const seen = new Set<string>();
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      const start = i;
      for (i++; text.charCodeAt(i) !== 0x22; i++) if (text.charCodeAt(i) === 0x5c) i++;
      if (depth !== 1) continue;
      let j = i + 1;
      while (text[j] === ' ' || text[j] === '\n' || text[j] === '\r' || text[j] === '\t') j++;
      if (text[j] !== ':') continue;
      const key = JSON.parse(text.slice(start, i + 1)) as string;
      if (seen.has(key)) return key;
      seen.add(key);
    } else if (c === 0x7b || c === 0x5b) depth++;
    else if (c === 0x7d || c === 0x5d) depth--;
  }
  return undefined;
}

interface ParsedHeader {
  metadata: Record<string, string>;
  tensors: SafetensorsTensorInfo[];
}

function parseMetadata(file: string, raw: unknown): Record<string, string> {
  if (!isPlainObject(raw)) fail(file, `__metadata__ must be an object mapping strings to strings, got ${preview(raw)}`);
  for (const [key, value] of Object.entries(raw)) {
    if (typeof value !== 'string') fail(file, `__metadata__ value of ${quote(key)} must be a string, got ${preview(value)}`);
  }
  return raw as Record<string, string>;
}

function parseTensorEntry(file: string, name: string, raw: unknown, dataStart: number, dataSize: number): SafetensorsTensorInfo {
  const where = `tensor ${quote(name)}`;
  if (!isPlainObject(raw)) fail(file, `${where}: entry must be an object, got ${preview(raw)}`);
  const { dtype, shape, data_offsets: offsets } = raw;
  if (typeof dtype !== 'string') fail(file, `${where}: dtype must be a string, got ${preview(dtype)}`);
  if (!isDType(dtype)) {
    fail(file, OFFICIAL_DTYPES.includes(dtype)
      ? `${where}: dtype ${dtype} is valid safetensors but not supported by tritpack`
      : `${where}: unknown dtype ${quote(dtype)}`);
  }
  if (!Array.isArray(shape) || !shape.every(isCount)) {
    fail(file, `${where}: shape must be an array of non-negative integers, got ${preview(shape)}`);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount)) {
    fail(file, `${where}: data_offsets must be [begin, end] with non-negative integers, got ${preview(offsets)}`);
  }
  const [begin, end] = offsets as [number, number];
  if (end < begin) fail(file, `${where}: data_offsets [${begin}, ${end}] end before they begin`);
  if (end > dataSize) fail(file, `${where}: data_offsets [${begin}, ${end}] run past the end of the ${dataSize}-byte data section`);
  const numel = (shape as number[]).includes(0) ? 0 : (shape as number[]).reduce((a, b) => a * b, 1);
  const expected = numel * dtypeByteSize(dtype);
  if (!Number.isSafeInteger(expected)) fail(file, `${where}: shape ${preview(shape)} is too large`);
  if (end - begin !== expected) {
    fail(file, `${where}: shape ${preview(shape)} of ${dtype} needs ${expected} bytes but data_offsets [${begin}, ${end}] hold ${end - begin}`);
  }
  return { name, dtype, shape: shape as number[], file, dataOffset: dataStart + begin, byteLength: expected };
}

/**
 * Validates the header JSON and the tensors' layout. `dataStart` is the absolute offset of the
 * data section (8 + header length) and `dataSize` its length (the rest of the file).
 */
function parseHeader(file: string, bytes: Uint8Array, dataStart: number, dataSize: number): ParsedHeader {
  let text: string;
  try {
    // ignoreBOM keeps a byte-order mark in the text, so it fails the '{' check below as in the official reader.
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    fail(file, 'header is not valid UTF-8');
  }
  if (!text.startsWith('{')) fail(file, `header does not start with '{' (got ${preview(text.slice(0, 16))}); not a safetensors file`);
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch (error) {
    const detail = String((error as Error).message).replace(/\s+/g, ' ').slice(0, 100);
    fail(file, `header is not valid JSON (${detail})`);
  }
  const duplicate = findDuplicateTopLevelKey(text);
  if (duplicate !== undefined) fail(file, `header has the key ${quote(duplicate)} twice`);

  let metadata: Record<string, string> = {};
  const tensors: SafetensorsTensorInfo[] = [];
  for (const [name, raw] of Object.entries(json)) {
    if (name === '__metadata__') metadata = parseMetadata(file, raw);
    else tensors.push(parseTensorEntry(file, name, raw, dataStart, dataSize));
  }

  // Like the official Metadata::validate: sorted by offsets, the tensors must tile the data
  // section exactly, so no byte is shared by two tensors or hidden between them ("polyglot" files).
  tensors.sort((a, b) => a.dataOffset - b.dataOffset || a.byteLength - b.byteLength);
  let covered = dataStart;
  let previous: SafetensorsTensorInfo | undefined;
  for (const t of tensors) {
    if (t.dataOffset < covered) {
      fail(file, `tensors ${quote(previous!.name)} and ${quote(t.name)} overlap (data bytes ${t.dataOffset - dataStart} to ${covered - dataStart})`);
    }
    if (t.dataOffset > covered) {
      fail(file, `${t.dataOffset - covered} data bytes before tensor ${quote(t.name)} belong to no tensor (data must be fully covered)`);
    }
    covered = t.dataOffset + t.byteLength;
    previous = t;
  }
  if (covered !== dataStart + dataSize) {
    fail(file, `${dataStart + dataSize - covered} bytes after the last tensor belong to no tensor (file size must be 8 + header + data)`);
  }
  return { metadata, tensors };
}

let f16Table: Float32Array | undefined;

/** All 65536 half-precision values, so F16 decoding is one array lookup per element. */
function f16ToF32Table(): Float32Array {
  if (!f16Table) {
    f16Table = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) f16Table[h] = f16BitsToF32(h);
  }
  return f16Table;
}

/** One .safetensors file, opened lazily: only the header is read until a tensor is asked for. */
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
    let fd: number;
    try {
      fd = openSync(file, 'r');
    } catch (error) {
      fail(file, ioProblem('open', error));
    }
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
   * F32, F16, BF16 or F64 values as float32 (F64 rounds to nearest even). The bytes are read
   * straight into the freshly allocated (so aligned) result, with no per-element DataView call:
   * F32 is a single read; 16-bit values are read into the upper half of the result and widened
   * in place (one shift per element for BF16, one table lookup for F16), so the only memory used
   * is the result itself.
   */
  readFloat32(name: string): Float32Array {
    const info = this.require(name);
    const { dtype } = info;
    if (dtype !== 'F32' && dtype !== 'F16' && dtype !== 'BF16' && dtype !== 'F64') {
      fail(this.path, `tensor ${quote(name)} is ${dtype}; only F32, F16, BF16 and F64 can be read as float32`);
    }
    if (!LITTLE_ENDIAN_HOST) return toFloat32(this.readBytes(name), dtype);
    const count = info.byteLength / dtypeByteSize(dtype);
    const out = new Float32Array(count);
    if (dtype === 'F32') {
      this.readInto(info, new Uint8Array(out.buffer));
    } else if (dtype === 'F64') {
      const chunk = new Float64Array(Math.min(count, F64_CHUNK));
      for (let start = 0; start < count; start += chunk.length) {
        const part = chunk.subarray(0, Math.min(chunk.length, count - start));
        readExactly(this.fdOrThrow(), this.path, new Uint8Array(part.buffer, 0, part.byteLength), info.dataOffset + start * 8);
        out.set(part, start);
      }
    } else {
      // Element i is written to bytes [4i, 4i+4) after reading half-word count+i, which lies at or
      // beyond them, so widening front to back never overwrites a value still to be read.
      const halves = new Uint16Array(out.buffer);
      this.readInto(info, new Uint8Array(out.buffer, count * 2, count * 2));
      if (dtype === 'BF16') {
        const bits = new Uint32Array(out.buffer);
        for (let i = 0; i < count; i++) bits[i] = halves[count + i]! << 16; // bf16 is the top half of an f32
      } else {
        const table = f16ToF32Table();
        for (let i = 0; i < count; i++) out[i] = table[halves[count + i]!]!;
      }
    }
    return out;
  }

  close(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }
}

/** A shard name from an index must stay inside the checkpoint directory. */
function isPlainFileName(name: string): boolean {
  return name !== '' && name !== '.' && name !== '..' && !name.includes('/') && !name.includes('\\') && !name.includes('\0');
}

/** Reads model.safetensors.index.json: tensor name → shard file name. */
function readIndex(indexPath: string): Map<string, string> {
  let text: string;
  try {
    text = readFileSync(indexPath, 'utf8');
  } catch (error) {
    fail(indexPath, ioProblem('read', error));
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    fail(indexPath, `not valid JSON (${String((error as Error).message).replace(/\s+/g, ' ').slice(0, 100)})`);
  }
  const weightMap = isPlainObject(json) ? json['weight_map'] : undefined;
  if (!isPlainObject(weightMap)) fail(indexPath, 'has no "weight_map" object');
  const map = new Map<string, string>();
  for (const [name, shard] of Object.entries(weightMap)) {
    if (typeof shard !== 'string' || !isPlainFileName(shard)) {
      fail(indexPath, `weight_map entry for ${quote(name)} must be a file name in the same directory, got ${preview(shard)}`);
    }
    map.set(name, shard);
  }
  return map;
}

/**
 * A whole checkpoint: a directory holding model.safetensors or a sharded set described by
 * model.safetensors.index.json, an index file itself, or a single .safetensors file.
 */
export class SafetensorsCheckpoint {
  /** Paths of the .safetensors files, in shard order. */
  readonly files: string[];
  /** Every tensor, file by file in shard order, each file's in data-offset order. */
  readonly tensors: SafetensorsTensorInfo[];
  private readonly owner: Map<string, SafetensorsFile>;
  private readonly opened: SafetensorsFile[];
  /** The path the checkpoint was opened from, named in its errors. */
  private readonly source: string;

  private constructor(source: string, opened: SafetensorsFile[]) {
    this.source = source;
    this.opened = opened;
    this.files = opened.map((f) => f.path);
    this.tensors = opened.flatMap((f) => f.tensors);
    this.owner = new Map(opened.flatMap((f) => f.tensors.map((t) => [t.name, f] as const)));
  }

  static open(pathOrDir: string): SafetensorsCheckpoint {
    let isDir: boolean;
    try {
      isDir = statSync(pathOrDir).isDirectory();
    } catch (error) {
      fail(pathOrDir, ioProblem('open', error));
    }
    if (isDir) {
      // The same precedence as transformers' from_pretrained: a single file wins over an index.
      const single = path.join(pathOrDir, SINGLE_FILE_NAME);
      if (existsSync(single)) return new SafetensorsCheckpoint(pathOrDir, [SafetensorsFile.open(single)]);
      const index = path.join(pathOrDir, INDEX_FILE_NAME);
      if (existsSync(index)) return SafetensorsCheckpoint.openSharded(index);
      fail(pathOrDir, `directory has neither ${SINGLE_FILE_NAME} nor ${INDEX_FILE_NAME}`);
    }
    if (pathOrDir.endsWith('.index.json')) return SafetensorsCheckpoint.openSharded(pathOrDir);
    return new SafetensorsCheckpoint(pathOrDir, [SafetensorsFile.open(pathOrDir)]);
  }

  /** Opens every shard named in the index and checks that the index and the shards agree exactly. */
  private static openSharded(indexPath: string): SafetensorsCheckpoint {
    const weightMap = readIndex(indexPath);
    const indexName = path.basename(indexPath);
    const dir = path.dirname(indexPath);
    const shardNames = [...new Set(weightMap.values())].sort();
    const opened: SafetensorsFile[] = [];
    try {
      for (const shardName of shardNames) {
        const shardPath = path.join(dir, shardName);
        if (!existsSync(shardPath)) fail(shardPath, `shard listed in ${indexName} does not exist`);
        const shard = SafetensorsFile.open(shardPath);
        opened.push(shard);
        for (const t of shard.tensors) {
          const listed = weightMap.get(t.name);
          if (listed !== shardName) {
            fail(shardPath, listed === undefined
              ? `tensor ${quote(t.name)} is not listed in ${indexName}`
              : `tensor ${quote(t.name)} is listed in ${indexName} under ${listed}`);
          }
        }
      }
      for (const [name, shardName] of weightMap) {
        const shard = opened.find((f) => path.basename(f.path) === shardName)!;
        if (!shard.get(name)) fail(shard.path, `tensor ${quote(name)} is listed in ${indexName} but missing from this shard`);
      }
    } catch (error) {
      for (const f of opened) f.close();
      throw error;
    }
    return new SafetensorsCheckpoint(indexPath, opened);
  }

  get(name: string): SafetensorsTensorInfo | undefined {
    return this.owner.get(name)?.get(name);
  }

  private fileOf(name: string): SafetensorsFile {
    const file = this.owner.get(name);
    if (!file) fail(this.source, `no tensor named ${quote(name)}`);
    return file;
  }

  readBytes(name: string): Uint8Array {
    return this.fileOf(name).readBytes(name);
  }

  readFloat32(name: string): Float32Array {
    return this.fileOf(name).readFloat32(name);
  }

  close(): void {
    for (const f of this.opened) f.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Writing

/** Code-point order, which equals the UTF-8 byte order Rust sorts names by and Python's str order. */
function compareCodePoints(a: string, b: string): number {
  // UTF-16 code units sort surrogates (astral characters) below U+E000..U+FFFF; shift them above.
  const rank = (c: number) => (c >= 0xd800 && c <= 0xdfff ? c + 0x2000 : c >= 0xe000 ? c - 0x800 : c);
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) return rank(x) - rank(y);
  }
  return a.length - b.length;
}

interface PlannedTensor {
  entry: SafetensorsEntry;
  byteLength: number;
}

function checkNames(file: string, entries: SafetensorsEntry[]): void {
  const names = new Set<string>();
  for (const e of entries) {
    if (e.name === '__metadata__') fail(file, 'a tensor cannot be named "__metadata__"');
    if (names.has(e.name)) fail(file, `tensor ${quote(e.name)} is given twice`);
    names.add(e.name);
  }
}

function tensorByteLength(file: string, entry: SafetensorsEntry): number {
  if (!isDType(entry.dtype)) fail(file, `tensor ${quote(entry.name)}: unknown dtype ${quote(String(entry.dtype))}`);
  if (!Array.isArray(entry.shape) || !entry.shape.every(isCount)) {
    fail(file, `tensor ${quote(entry.name)}: shape must be an array of non-negative integers, got ${preview(entry.shape)}`);
  }
  const numel = entry.shape.includes(0) ? 0 : entry.shape.reduce((a, b) => a * b, 1);
  const bytes = numel * dtypeByteSize(entry.dtype);
  if (!Number.isSafeInteger(bytes)) fail(file, `tensor ${quote(entry.name)}: shape ${preview(entry.shape)} is too large`);
  return bytes;
}

/**
 * The official serializer's layout: tensors sorted by dtype (descending enum order, which keeps
 * every tensor naturally aligned) then by name, data contiguous in that order, and a compact
 * header with `__metadata__` first, padded with spaces to a multiple of 8 bytes.
 * Returns the 8-byte length plus the header, and the tensors in data order.
 */
function planFile(file: string, entries: SafetensorsEntry[], metadata: Record<string, string> | undefined): { prefix: Uint8Array; tensors: PlannedTensor[] } {
  checkNames(file, entries);
  const rank = (d: DType) => OFFICIAL_DTYPES.indexOf(d);
  const tensors = entries
    .map((entry) => ({ entry, byteLength: tensorByteLength(file, entry) }))
    .sort((a, b) => rank(b.entry.dtype) - rank(a.entry.dtype) || compareCodePoints(a.entry.name, b.entry.name));

  const parts: string[] = [];
  // Python passes None when there is no metadata and the key is omitted; an empty map is treated
  // the same here so that a file without `__metadata__` (read back as {}) round-trips unchanged.
  if (metadata && Object.keys(metadata).length > 0) {
    const fields = Object.entries(metadata).map(([k, v]) => {
      if (typeof v !== 'string') fail(file, `__metadata__ value of ${quote(k)} must be a string`);
      return `${JSON.stringify(k)}:${JSON.stringify(v)}`;
    });
    parts.push(`"__metadata__":{${fields.join(',')}}`);
  }
  let offset = 0;
  for (const t of tensors) {
    const { name, dtype, shape } = t.entry;
    parts.push(`${JSON.stringify(name)}:{"dtype":"${dtype}","shape":[${shape.join(',')}],"data_offsets":[${offset},${offset + t.byteLength}]}`);
    offset += t.byteLength;
  }
  const json = Buffer.from(`{${parts.join(',')}}`, 'utf8');
  const headerLength = Math.ceil(json.length / 8) * 8;
  const prefix = Buffer.alloc(8 + headerLength, 0x20);
  prefix.writeBigUInt64LE(BigInt(headerLength), 0);
  json.copy(prefix, 8);
  return { prefix, tensors };
}

function writeAll(fd: number, file: string, bytes: Uint8Array): void {
  let done = 0;
  while (done < bytes.byteLength) {
    try {
      done += writeSync(fd, bytes, done, Math.min(IO_CHUNK, bytes.byteLength - done));
    } catch (error) {
      fail(file, ioProblem('write', error));
    }
  }
}

function removeQuietly(file: string): void {
  try {
    unlinkSync(file);
  } catch {
    // already gone: nothing to clean up
  }
}

/**
 * Writes `target`'s content to `<target>.tmp-<pid>` and returns that temporary path; on any
 * failure the temporary file is removed and the error rethrown, so no partial file is left.
 */
function writeTempFile(target: string, write: (fd: number) => void): string {
  const temp = `${target}.tmp-${process.pid}`;
  let fd: number;
  try {
    fd = openSync(temp, 'w');
  } catch (error) {
    fail(target, ioProblem('create the output file', error));
  }
  try {
    write(fd);
    closeSync(fd);
  } catch (error) {
    try {
      closeSync(fd);
    } catch {
      // closed already (the failure came after closing)
    }
    removeQuietly(temp);
    throw error;
  }
  return temp;
}

function writeSafetensorsToTemp(file: string, entries: SafetensorsEntry[], metadata: Record<string, string> | undefined): string {
  const { prefix, tensors } = planFile(file, entries, metadata);
  return writeTempFile(file, (fd) => {
    writeAll(fd, file, prefix);
    for (const { entry, byteLength } of tensors) {
      // A thunk is called only now, so one tensor at a time is held in memory.
      const bytes = typeof entry.data === 'function' ? entry.data() : entry.data;
      if (bytes.byteLength !== byteLength) {
        fail(file, `tensor ${quote(entry.name)}: got ${bytes.byteLength} bytes of data but shape ${preview(entry.shape)} of ${entry.dtype} needs ${byteLength}`);
      }
      writeAll(fd, file, bytes);
    }
  });
}

function commit(temp: string, target: string): void {
  try {
    renameSync(temp, target);
  } catch (error) {
    removeQuietly(temp);
    fail(target, ioProblem('rename the finished file into place', error));
  }
}

/** Writes one .safetensors file, byte-identical to the official serializer for the same tensors and metadata. */
export function writeSafetensors(file: string, entries: SafetensorsEntry[], metadata?: Record<string, string>): void {
  commit(writeSafetensorsToTemp(file, entries, metadata), file);
}

/** `json.dumps(s)` with Python's default ensure_ascii: everything outside ' '..'~' is \uXXXX-escaped. */
function pythonJsonString(s: string): string {
  return JSON.stringify(s).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** `json.dumps(obj, indent=2, sort_keys=True)` for a flat object, at the given nesting level. */
function pythonJsonObject(pairs: [string, string][], level: number): string {
  if (pairs.length === 0) return '{}';
  const inner = '  '.repeat(level + 1);
  const body = pairs
    .sort((a, b) => compareCodePoints(a[0], b[0]))
    .map(([k, v]) => `${inner}${pythonJsonString(k)}: ${v}`)
    .join(',\n');
  return `{\n${body}\n${'  '.repeat(level)}}`;
}

/**
 * Splits like huggingface_hub's `split_state_dict_into_shards_factory` (used by save_pretrained):
 * entries in the given order fill a shard until the next would exceed `maxShardBytes`; a tensor
 * larger than the limit gets a shard of its own, placed when it is met.
 */
function splitIntoShards(planned: PlannedTensor[], maxShardBytes: number): SafetensorsEntry[][] {
  const shards: SafetensorsEntry[][] = [];
  let current: SafetensorsEntry[] = [];
  let currentBytes = 0;
  for (const { entry, byteLength } of planned) {
    if (byteLength > maxShardBytes) {
      shards.push([entry]);
      continue;
    }
    if (currentBytes + byteLength > maxShardBytes) {
      shards.push(current);
      current = [];
      currentBytes = 0;
    }
    current.push(entry);
    currentBytes += byteLength;
  }
  if (current.length > 0 || shards.length === 0) shards.push(current);
  return shards;
}

/**
 * Writes a checkpoint the way transformers' save_pretrained does: `model-0000i-of-0000N.safetensors`
 * shards plus `model.safetensors.index.json` (metadata total_parameters and total_size in tensor
 * bytes, weight_map; indent 2, sorted keys, trailing newline), or a lone `model.safetensors` when
 * everything fits in one shard. `metadata` is each shard's `__metadata__` (save_pretrained uses
 * {"format": "pt"}). Entries are split in the order given, so pass them in state-dict order to
 * match save_pretrained's shards. Every file goes to a temporary name first and all are renamed
 * only after the last one is complete. Returns the paths written, shards first, then the index.
 */
export function writeShardedSafetensors(dir: string, entries: SafetensorsEntry[], maxShardBytes: number, metadata?: Record<string, string>): string[] {
  if (!(maxShardBytes > 0)) fail(dir, `maximum shard size must be positive, got ${maxShardBytes}`);
  checkNames(dir, entries);
  const planned = entries.map((entry) => ({ entry, byteLength: tensorByteLength(dir, entry) }));
  const shards = splitIntoShards(planned, maxShardBytes);
  const pad = (n: number) => String(n).padStart(5, '0');
  const shardNames = shards.length === 1 ? [SINGLE_FILE_NAME] : shards.map((_, i) => `model-${pad(i + 1)}-of-${pad(shards.length)}.safetensors`);

  const written: [temp: string, target: string][] = [];
  try {
    shards.forEach((shard, i) => {
      const target = path.join(dir, shardNames[i]!);
      written.push([writeSafetensorsToTemp(target, shard, metadata), target]);
    });
    if (shards.length > 1) {
      const weightMap: [string, string][] = shards.flatMap((shard, i) => shard.map((e): [string, string] => [e.name, pythonJsonString(shardNames[i]!)]));
      const totalSize = planned.reduce((sum, t) => sum + t.byteLength, 0);
      const totalParameters = planned.reduce((sum, t) => sum + t.byteLength / dtypeByteSize(t.entry.dtype), 0);
      const indexMetadata = pythonJsonObject([['total_parameters', String(totalParameters)], ['total_size', String(totalSize)]], 1);
      const text = `${pythonJsonObject([['metadata', indexMetadata], ['weight_map', pythonJsonObject(weightMap, 1)]], 0)}\n`;
      const target = path.join(dir, INDEX_FILE_NAME);
      written.push([writeTempFile(target, (fd) => writeAll(fd, target, Buffer.from(text, 'utf8'))), target]);
    }
  } catch (error) {
    for (const [temp] of written) removeQuietly(temp);
    throw error;
  }
  written.forEach(([temp, target], i) => {
    try {
      commit(temp, target);
    } catch (error) {
      for (const [rest] of written.slice(i + 1)) removeQuietly(rest);
      throw error;
    }
  });
  return written.map(([, target]) => target);
}
