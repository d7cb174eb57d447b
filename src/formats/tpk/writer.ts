/**
 * Writing a .tpk file. The layout is fixed from the planned tensor lengths before any blob exists,
 * blobs go straight to their final offsets in a temp file, and the header is rewritten with the
 * real hashes at the end, followed by rename — a crash leaves a temp file, never a partial .tpk.
 */
import { createHash } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, ftruncateSync, openSync, renameSync, statSync } from 'node:fs';
import path from 'node:path';
import { FormatError, TritpackError } from '../../errors.js';
import { fromFloat32 } from '../dtype.js';
import { closeQuietly, ioProblem, removeQuietly, syncDirectory, tempPathFor, writeExactly } from '../io.js';
import { encodeHeader } from './codec.js';
import { type BlobPlace, type Layout, fitLayout, writeHeaderRegion } from './layout.js';
import { rewriteTpk } from './rewrite.js';
import { type TpkHeader, type TpkPlannedTensor, type TpkTensorEntry, TPK_FORMAT_VERSION, TPK_PREAMBLE_SIZE, isTernaryEncoding, tensorProblem } from './table.js';

const ZERO_SHA256 = '0'.repeat(64);
/** Header room reserved for per-tensor stats, which arrive only with each tensor's data. */
const STATS_RESERVE_BASE = 1024;
const STATS_RESERVE_PER_TENSOR = 256;

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
    try {
      this.fd = openSync(this.tempPath, 'wx', 0o644);
    } catch (err) {
      throw new FormatError(target, ioProblem('create the output file', err));
    }
    try {
      ftruncateSync(this.fd, this.layout.fileSize); // gaps between blobs read back as zeros
      writeHeaderRegion(this.fd, this.target, this.layout.header, this.layout.dataOffset, false);
    } catch (err) {
      this.abort();
      throw err instanceof TritpackError ? err : new FormatError(target, ioProblem('write', err));
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
    writeExactly(fd, this.target, data, place.data.offset);
    const written: Written = { dataSha: createHash('sha256').update(data).digest('hex') };
    if (place.scales && scales) {
      const bytes = fromFloat32(scales, 'F32');
      writeExactly(fd, this.target, bytes, place.scales.offset);
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
        writeHeaderRegion(fd, this.target, header, this.layout.dataOffset, true);
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
    try {
      renameSync(file, this.target);
    } catch (err) {
      throw new FormatError(this.target, ioProblem('rename the finished file into place', err));
    }
    syncDirectory(path.dirname(path.resolve(this.target)));
  }

  /** Closes and removes the temp file; safe to call more than once and after finish(). */
  abort(): void {
    if (this.fd !== undefined) {
      closeQuietly(this.fd);
      this.fd = undefined;
    }
    removeQuietly(this.tempPath);
  }
}
