/**
 * The one line of live progress a command draws on stderr. On a terminal it is redrawn in place
 * ("\r…" then erase to the end of the line) and cut to the terminal's width, so it never wraps;
 * anywhere else (pipes, CI logs) it is not drawn at all and only finished lines are written, so
 * captured stderr stays readable. Evaluation windows and hub transfers both draw through it.
 */
export class StatusLine {
  private drawn = false;

  /** `undefined` (e.g. under --json) writes nothing at all. */
  constructor(private readonly stream: NodeJS.WriteStream | undefined) {}

  /** Whether draw() shows anything: callers skip building lines nobody sees. */
  get live(): boolean {
    return this.stream?.isTTY === true;
  }

  draw(text: string): void {
    if (!this.live) return;
    this.stream!.write(`\r${text.slice(0, (this.stream!.columns || 120) - 1)}\x1b[K`);
    this.drawn = true;
  }

  /** Erases the live line, if one is drawn. */
  clear(): void {
    if (!this.drawn) return;
    this.stream!.write('\r\x1b[K');
    this.drawn = false;
  }

  /** A finished step, on a line of its own above the live line (terminals and logs alike). */
  print(text: string): void {
    if (!this.stream) return;
    this.clear();
    this.stream.write(`${text}\n`);
  }
}
