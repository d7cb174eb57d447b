/**
 * Checks of a decoded .tpk header and of where its blobs lie. Hostile files get one clear
 * one-line FormatError, never a crash: tensor names are quoted in messages because they may hold
 * any character, newlines included.
 */
import { FormatError } from '../../errors.js';
import { type TpkBlobRef, type TpkHeader, TPK_ALIGNMENT, tensorProblem } from './table.js';

/** A tensor name as messages show it: JSON-quoted, so it stays on one line. */
export function quote(name: string): string {
  return JSON.stringify(name);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Uint8Array);
}

/** Checks the decoded header's shape; hostile files get one clear error, never a crash. */
export function validateHeader(file: string, raw: unknown, version: number): TpkHeader {
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
  for (const [key, value] of Object.entries(h.files as object)) string(value, `files[${quote(key)}]`);
  object(h.conversion, 'conversion');
  if (!Array.isArray(h.tensors)) throw bad('tensors', 'must be an array');
  const names = new Set<string>();
  (h.tensors as unknown[]).forEach((t, i) => {
    const where = `tensors[${i}]`;
    object(t, where);
    const e = t as Record<string, unknown>;
    if (typeof e.name !== 'string' || e.name === '') throw bad(`${where}.name`, 'must be a non-empty string');
    if (names.has(e.name)) throw bad(`${where}.name`, `${quote(e.name)} appears twice`);
    names.add(e.name);
    const at = `tensor ${quote(e.name)}:`;
    blobRef(e.data, `${at} data`);
    if (e.scales !== undefined) blobRef(e.scales, `${at} scales`);
    if (e.stats !== undefined) {
      object(e.stats, `${at} stats`);
      for (const [key, value] of Object.entries(e.stats as object)) if (typeof value !== 'number') throw bad(`${at} stats[${quote(key)}]`, 'must be a number');
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
export function checkBlobPlacement(file: string, header: TpkHeader, dataOffset: number, size: number): void {
  const refs = header.tensors.flatMap((t) => [{ ref: t.data, what: `tensor ${quote(t.name)}: data` }, ...(t.scales ? [{ ref: t.scales, what: `tensor ${quote(t.name)}: scales` }] : [])]);
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
