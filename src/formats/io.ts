/**
 * File I/O shared by the format readers and writers: exact positional reads and writes in chunks
 * that Node accepts, one-line descriptions of failed fs calls, and the temp-file-then-rename
 * discipline that keeps a failed write from ever leaving a partial output file.
 */
import { closeSync, fsyncSync, openSync, readSync, unlinkSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { FormatError } from '../errors.js';

/** readSync/writeSync take at most 2 GiB − 1 bytes per call; tensors can be larger. */
const IO_CHUNK = 1 << 30;

/** One-line description of a failed fs call (Node's own messages repeat the path we already print). */
export function ioProblem(action: string, error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  const known: Record<string, string> = {
    ENOENT: 'no such file or directory', EACCES: 'permission denied', EISDIR: 'is a directory',
    ENOTDIR: 'a parent is not a directory', ENOSPC: 'no space left on device', EROFS: 'read-only file system',
  };
  const reason = (code && known[code]) ?? String((error as Error).message ?? error).split('\n')[0];
  return `cannot ${action}: ${reason}`;
}

/** Opens `file` for reading; failures are a FormatError naming the file. */
export function openForReading(file: string): number {
  try {
    return openSync(file, 'r');
  } catch (error) {
    throw new FormatError(file, ioProblem('open', error));
  }
}

/** Fills `target` from `fd` at `position`; a file that ends first (or an I/O error) is a FormatError. */
export function readExactly(fd: number, file: string, target: Uint8Array, position: number): void {
  let done = 0;
  while (done < target.byteLength) {
    let n: number;
    try {
      n = readSync(fd, target, done, Math.min(IO_CHUNK, target.byteLength - done), position + done);
    } catch (error) {
      throw new FormatError(file, ioProblem('read', error));
    }
    if (n === 0) {
      throw new FormatError(file, `file ended at byte ${position + done} while reading ${target.byteLength} bytes at ${position} (was it modified?)`);
    }
    done += n;
  }
}

/** Writes all of `bytes` at `position` (or at the current position when omitted); I/O errors are a FormatError naming `file`. */
export function writeExactly(fd: number, file: string, bytes: Uint8Array, position?: number): void {
  let done = 0;
  while (done < bytes.byteLength) {
    try {
      const length = Math.min(IO_CHUNK, bytes.byteLength - done);
      done += position === undefined ? writeSync(fd, bytes, done, length) : writeSync(fd, bytes, done, length, position + done);
    } catch (error) {
      throw new FormatError(file, ioProblem('write', error));
    }
  }
}

/** A fresh name beside `target` for its temporary file (unique per process and call). */
export function tempPathFor(target: string): string {
  return `${target}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
}

export function removeQuietly(file: string): void {
  try {
    unlinkSync(file);
  } catch {
    // already gone: nothing to clean up
  }
}

export function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // closing is best effort on the way out of a failure
  }
}

/** Makes a rename durable; some filesystems refuse fsync on a directory, which is harmless. */
export function syncDirectory(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch {
    // best effort
  } finally {
    if (fd !== undefined) closeQuietly(fd);
  }
}
