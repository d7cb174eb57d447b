/**
 * A strict decimal-number CLI flag (oclif has only integer flags): the whole value must parse,
 * and a value out of range is a one-line usage error (exit 2) saying what is allowed.
 */
import { TritpackError } from '../errors.js';

export function parseNumberFlag(flag: string, text: string, ok: (x: number) => boolean = () => true, allowed = 'a number'): number {
  const x = Number(text);
  if (text.trim() === '' || !Number.isFinite(x) || !ok(x)) throw new TritpackError(`${flag} must be ${allowed}, got ${JSON.stringify(text)}`);
  return x;
}
