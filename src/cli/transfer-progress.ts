/**
 * Progress of hub transfers (pull, push): a live line with the current file, the whole transfer and
 * the byte rate, and one line per finished file with its size and its own average rate.
 */
import { StatusLine } from './status-line.js';
import { formatBytes } from '../units.js';

/** Bytes per second over the last few seconds (not since the start, so stalls show). */
export class RateMeter {
  private readonly samples: { t: number; bytes: number }[] = [];
  private total = 0;
  constructor(private readonly windowMs = 3000, private readonly now: () => number = () => performance.now()) {}

  add(bytes: number): void {
    this.total += bytes;
    const t = this.now();
    this.samples.push({ t, bytes: this.total });
    while (this.samples.length > 2 && t - this.samples[0]!.t > this.windowMs) this.samples.shift();
  }

  bytesPerSecond(): number {
    const first = this.samples[0];
    const last = this.samples.at(-1);
    if (!first || !last || last.t <= first.t) return 0;
    return ((last.bytes - first.bytes) / (last.t - first.t)) * 1000;
  }
}

/** Redraws at most this often: a fast local transfer reports thousands of chunks a second. */
const REDRAW_MS = 125;

export class TransferDisplay {
  private readonly line: StatusLine;
  private readonly meter = new RateMeter();
  /** Per file: when its first bytes were reported and how many have been so far. */
  private readonly files = new Map<string, { started: number; bytes: number }>();
  private lastDraw = 0;

  constructor(stream: NodeJS.WriteStream | undefined) {
    this.line = new StatusLine(stream);
  }

  /** `name` has moved `done` of its `size` bytes (a running count), the whole transfer `totalDone` of `totalSize`. */
  update(name: string, done: number, size: number, totalDone: number, totalSize: number): void {
    const file = this.fileState(name);
    this.meter.add(done - file.bytes);
    file.bytes = done;
    const now = performance.now();
    if (!this.line.live || (now - this.lastDraw < REDRAW_MS && done < size)) return;
    this.lastDraw = now;
    this.line.draw(`${name}  ${formatBytes(done)} / ${formatBytes(size)}  (total ${formatBytes(totalDone)} / ${formatBytes(totalSize)})  `
      + `${formatBytes(Math.round(this.meter.bytesPerSecond()))}/s`);
  }

  /** `name` is complete: "  name  size  rate", or `note` instead of the rate (e.g. it was already cached). */
  finish(name: string, size: number, note?: string): void {
    const seconds = (performance.now() - this.fileState(name).started) / 1000;
    this.line.print(`  ${name}  ${formatBytes(size)}  ${note ?? `${formatBytes(Math.round(size / Math.max(seconds, 1e-3)))}/s`}`);
    this.files.delete(name);
  }

  /** A step or summary on its own line. */
  print(text: string): void {
    this.line.print(text);
  }

  private fileState(name: string): { started: number; bytes: number } {
    let file = this.files.get(name);
    if (!file) this.files.set(name, (file = { started: performance.now(), bytes: 0 }));
    return file;
  }
}
