/**
 * Validation of a safetensors header, as strict as the official `safetensors` crate: valid UTF-8
 * JSON object without repeated keys, string-to-string `__metadata__`, known dtypes, shapes whose
 * size matches their data_offsets, and tensors that tile the data section exactly.
 */
import { isDType } from '../dtype.js';
import { type SafetensorsTensorInfo, OFFICIAL_DTYPES, fail, isCount, isPlainObject, preview, quote, shapeByteLength } from './shared.js';

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

export interface ParsedHeader {
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
  const expected = shapeByteLength(shape as number[], dtype);
  if (expected === undefined) fail(file, `${where}: shape ${preview(shape)} is too large`);
  if (end - begin !== expected) {
    fail(file, `${where}: shape ${preview(shape)} of ${dtype} needs ${expected} bytes but data_offsets [${begin}, ${end}] hold ${end - begin}`);
  }
  return { name, dtype, shape: shape as number[], file, dataOffset: dataStart + begin, byteLength: expected };
}

/**
 * Validates the header JSON and the tensors' layout. `dataStart` is the absolute offset of the
 * data section (8 + header length) and `dataSize` its length (the rest of the file).
 */
export function parseHeader(file: string, bytes: Uint8Array, dataStart: number, dataSize: number): ParsedHeader {
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
