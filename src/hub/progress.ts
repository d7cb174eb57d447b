/**
 * Progress for transfers: a byte-rate meter over a sliding window and the formatting the pull and
 * push commands print on stderr.
 */

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

export function formatBytes(bytes: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) { value /= 1000; unit++; }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(value < 10 ? 2 : 1)} ${units[unit]}`;
}

/** "name  1.20 MB / 2.63 MB  (total 3.10 MB / 5.36 MB)  4.5 MB/s" */
export function progressLine(name: string, done: number, size: number, totalDone: number, totalSize: number, bytesPerSecond: number): string {
  return `${name}  ${formatBytes(done)} / ${formatBytes(size)}  (total ${formatBytes(totalDone)} / ${formatBytes(totalSize)})  ${formatBytes(Math.round(bytesPerSecond))}/s`;
}

/**
 * Renders transfer progress on a stream: on a terminal one line rewritten in place (at most ~8
 * times a second), elsewhere one line per finished file, so logs stay readable.
 */
export class TransferDisplay {
  private readonly meter = new RateMeter();
  private lastDraw = 0;
  private drawn = false;
  constructor(private readonly stream: NodeJS.WriteStream | undefined) {}

  /** `delta` new bytes moved; then the state of the current file and of the whole transfer. */
  update(name: string, delta: number, done: number, size: number, totalDone: number, totalSize: number): void {
    this.meter.add(delta);
    if (!this.stream?.isTTY) return;
    const now = performance.now();
    if (now - this.lastDraw < 125 && done < size) return;
    this.lastDraw = now;
    this.drawn = true;
    const line = progressLine(name, done, size, totalDone, totalSize, this.meter.bytesPerSecond());
    this.stream.write(`\r${line.slice(0, (this.stream.columns || 120) - 1)}\x1b[K`);
  }

  /** A finished step, printed on its own line. */
  line(text: string): void {
    if (!this.stream) return;
    if (this.drawn) { this.stream.write('\r\x1b[K'); this.drawn = false; }
    this.stream.write(`${text}\n`);
  }

  rate(): number { return this.meter.bytesPerSecond(); }
}
