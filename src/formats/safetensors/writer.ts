/**
 * safetensors writer: byte-identical to the official serializer, streaming tensor data (which a
 * thunk may produce only when the writer reaches it) into temporary files that are renamed into
 * place only when everything succeeded. Sharded checkpoints are split and indexed like
 * transformers' save_pretrained.
 */
import { closeSync, openSync, renameSync } from 'node:fs';
import path from 'node:path';
import { type DType, dtypeByteSize, isDType } from '../dtype.js';
import { closeQuietly, ioProblem, removeQuietly, tempPathFor, writeExactly } from '../io.js';
import { type SafetensorsEntry, INDEX_FILE_NAME, OFFICIAL_DTYPES, SINGLE_FILE_NAME, fail, isCount, preview, quote, shapeByteLength } from './shared.js';

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
  const bytes = shapeByteLength(entry.shape, entry.dtype);
  if (bytes === undefined) fail(file, `tensor ${quote(entry.name)}: shape ${preview(entry.shape)} is too large`);
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

/**
 * Writes `target`'s content to a temporary file beside it and returns that temporary path; on any
 * failure the temporary file is removed and the error rethrown, so no partial file is left.
 */
function writeTempFile(target: string, write: (fd: number) => void): string {
  const temp = tempPathFor(target);
  let fd: number;
  try {
    fd = openSync(temp, 'wx', 0o644);
  } catch (error) {
    fail(target, ioProblem('create the output file', error));
  }
  try {
    write(fd);
  } catch (error) {
    closeQuietly(fd);
    removeQuietly(temp);
    throw error;
  }
  try {
    closeSync(fd);
  } catch (error) {
    removeQuietly(temp);
    fail(target, ioProblem('write', error));
  }
  return temp;
}

function writeSafetensorsToTemp(file: string, entries: SafetensorsEntry[], metadata: Record<string, string> | undefined): string {
  const { prefix, tensors } = planFile(file, entries, metadata);
  return writeTempFile(file, (fd) => {
    writeExactly(fd, file, prefix);
    for (const { entry, byteLength } of tensors) {
      // A thunk is called only now, so one tensor at a time is held in memory.
      const bytes = typeof entry.data === 'function' ? entry.data() : entry.data;
      if (bytes.byteLength !== byteLength) {
        fail(file, `tensor ${quote(entry.name)}: got ${bytes.byteLength} bytes of data but shape ${preview(entry.shape)} of ${entry.dtype} needs ${byteLength}`);
      }
      writeExactly(fd, file, bytes);
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
      written.push([writeTempFile(target, (fd) => writeExactly(fd, target, Buffer.from(text, 'utf8'))), target]);
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
