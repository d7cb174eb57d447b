/**
 * Rewriting a .tpk file with a new header (header updates, and the writer's fallback when stats
 * outgrow the reserved header room): blobs are copied in chunks to fresh places and checked
 * against their sha256 on the way, so a rewrite never launders corruption.
 */
import { createHash } from 'node:crypto';
import { closeSync, fsyncSync, ftruncateSync, openSync, renameSync } from 'node:fs';
import path from 'node:path';
import { FormatError, TritpackError } from '../../errors.js';
import { readExactly, removeQuietly, syncDirectory, tempPathFor, writeExactly } from '../io.js';
import { encodeHeader } from './codec.js';
import { type BlobPlace, fitLayout, writeHeaderRegion } from './layout.js';
import { TpkFile, mismatchProblem } from './reader.js';
import type { TpkBlobRef, TpkHeader } from './table.js';

/** Blobs are copied through a buffer of this size. */
const COPY_CHUNK = 8 * 1024 * 1024;

/**
 * Writes `header` (whose blob refs point into `source`) to `output` with freshly placed blobs,
 * copying them in chunks and checking each against its sha256 on the way, so a rewrite never
 * launders corruption. Used for header updates and when the writer's reserved room ran out.
 */
export function rewriteTpk(source: string, header: TpkHeader, output: string): void {
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
    writeHeaderRegion(out, output, layout.header, layout.dataOffset, true);
    const buffer = Buffer.allocUnsafe(COPY_CHUNK);
    header.tensors.forEach((t, i) => {
      const pairs: [TpkBlobRef, { offset: number }, 'data' | 'scales'][] = [[t.data, layout.blobs[i]!.data, 'data']];
      if (t.scales) pairs.push([t.scales, layout.blobs[i]!.scales!, 'scales']);
      for (const [from, to, what] of pairs) {
        const hash = createHash('sha256');
        for (let done = 0; done < from.length; done += COPY_CHUNK) {
          const chunk = buffer.subarray(0, Math.min(COPY_CHUNK, from.length - done));
          readExactly(src, source, chunk, from.offset + done);
          hash.update(chunk);
          writeExactly(out!, output, chunk, to.offset + done);
        }
        if (hash.digest('hex') !== from.sha256) throw new FormatError(source, mismatchProblem(t.name, what));
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
