/**
 * The spinner `tritpack convert` shows on a terminal: the plan, then the tensor being converted and
 * how far through the input it is. Warnings go above it as they come; nothing is drawn off a terminal.
 */
import path from 'node:path';
import ora, { type Ora } from 'ora';
import type { ConvertEvent } from '../converters/convert.js';
import { formatBytes } from '../units.js';

export class ConvertSpinner {
  private readonly spinner: Ora | undefined;

  constructor(stream: NodeJS.WriteStream | undefined) {
    // Only on a real terminal: ora loops forever redrawing on a pty that reports 0 columns.
    this.spinner = stream?.isTTY && stream.columns > 0 ? ora({ stream }) : undefined;
  }

  update(event: ConvertEvent, warn: (message: string) => void): void {
    const s = this.spinner;
    switch (event.type) {
      case 'plan':
        s?.start(`${event.plan.tensors.length} tensors, ${formatBytes(event.inputBytes)}`);
        break;
      case 'hash':
        if (s) s.text = `hashing ${path.basename(event.file)} (${formatBytes(event.bytes)})`;
        break;
      case 'tensor':
        if (s) {
          const pct = event.bytesTotal === 0 ? 100 : Math.floor((100 * event.bytesDone) / event.bytesTotal);
          s.text = `[${event.index + 1}/${event.count}] ${pct}% ${event.tensor.action === 'ternarize' ? 'ternarize' : 'keep'} ${event.tensor.name}`;
        }
        break;
      case 'warning':
        if (s?.isSpinning) s.clear();
        warn(event.message);
        break;
    }
  }

  done(text: string): void {
    this.spinner?.succeed(text);
  }

  fail(): void {
    if (this.spinner?.isSpinning) this.spinner.stop();
  }
}
