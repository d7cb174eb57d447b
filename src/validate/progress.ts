/**
 * A one-line progress bar on stderr for eval and validate. Drawn only on a terminal (redrawn in
 * place with \r); in pipes and CI logs nothing is written until the final summary, so captured
 * stderr stays readable.
 */
import type { EvalProgress } from './evaluate.js';

export function progressLine(label: string, p: EvalProgress, width = 24): string {
  const fraction = p.tokensTotal === 0 ? 1 : p.tokensDone / p.tokensTotal;
  const filled = Math.round(fraction * width);
  const rate = p.seconds > 0 ? `${Math.round(p.tokensDone / p.seconds)} tokens/s` : '';
  return `${label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] window ${p.windowsDone}/${p.windowsTotal}  ${rate}`;
}

/** A progress callback that redraws the line on a TTY stream, or does nothing elsewhere. */
export function terminalProgress(label: string, stream: NodeJS.WriteStream | undefined): { update: (p: EvalProgress) => void; done: () => void } {
  if (!stream?.isTTY) return { update: () => {}, done: () => {} };
  let drawn = false;
  return {
    update: (p) => { stream.write(`\r${progressLine(label, p)}\x1b[K`); drawn = true; },
    done: () => { if (drawn) stream.write('\r\x1b[K'); },
  };
}
