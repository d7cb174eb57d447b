/**
 * Numbers as tritpack shows them to people, in terminal output and in the Markdown it writes (model
 * cards, validation reports), so that a figure reads the same everywhere. Dependency-free on
 * purpose: library modules that render Markdown use it as well as the commands.
 */

const BYTE_UNITS = ['B', 'kB', 'MB', 'GB', 'TB'];

/** Decimal units (1 MB = 10^6 B), as MB/s figures use. */
export function formatBytes(bytes: number): string {
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < BYTE_UNITS.length - 1) {
    value /= 1000;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(value < 10 ? 2 : 1)} ${BYTE_UNITS[unit]}`;
}

/** 1234567 → "1,234,567". */
export function formatCount(n: number): string {
  return n.toLocaleString('en-US');
}

/** `digits` significant digits without trailing zeros (0.25, 204.7, 1); NaN and ±Infinity as words. */
export function formatSignificant(x: number, digits: number): string {
  return Number.isFinite(x) ? Number(x.toPrecision(digits)).toString() : String(x);
}
