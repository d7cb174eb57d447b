/**
 * The progress bar of eval and validate: how many of the windows' tokens the model(s) have read,
 * and at what rate.
 */
import type { EvalProgress } from '../validate/evaluate.js';
import { StatusLine } from './status-line.js';

export function windowProgressLine(label: string, p: EvalProgress, width = 24): string {
  const fraction = p.tokensTotal === 0 ? 1 : p.tokensDone / p.tokensTotal;
  const filled = Math.round(fraction * width);
  const rate = p.seconds > 0 ? `${Math.round(p.tokensDone / p.seconds)} tokens/s` : '';
  return `${label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] window ${p.windowsDone}/${p.windowsTotal}  ${rate}`;
}

export interface WindowProgress {
  /** What is happening before the windows start (loading a large model takes a while). */
  stage: (what: string) => void;
  /** The progress callback of evaluateTextFile / runValidation. */
  update: (p: EvalProgress) => void;
  /** Erases the bar. */
  done: () => void;
}

export function windowProgress(label: string, stream: NodeJS.WriteStream | undefined): WindowProgress {
  const line = new StatusLine(stream);
  return {
    stage: (what) => line.draw(`${label}: ${what}…`),
    update: (p) => line.draw(windowProgressLine(label, p)),
    done: () => line.clear(),
  };
}
