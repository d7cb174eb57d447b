/**
 * What the two synthetic-model scripts share: the TinyLlama-1.1B shape they imitate, their
 * command line ([dir] [--layers N]) and a seeded PRNG, so every run writes the same bytes.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** TinyLlama 1.1B: hidden 2048, intermediate 5632, 32 heads / 4 KV heads, vocab 32000 (22 layers by default). */
export const TINYLLAMA = { hidden: 2048, intermediate: 5632, heads: 32, kvHeads: 4, vocab: 32000, layers: 22 };

/** `[dir] [--layers N]` → the output directory (default .cache/<defaultName>) and the layer count. */
export function parseArgs(defaultName) {
  const args = process.argv.slice(2);
  const layersAt = args.indexOf('--layers');
  const layers = layersAt === -1 ? TINYLLAMA.layers : Number(args.splice(layersAt, 2)[1]);
  if (!Number.isInteger(layers) || layers < 1) throw new Error('--layers needs a positive whole number');
  return { dir: path.resolve(root, args[0] ?? path.join('.cache', defaultName)), layers };
}

/** mulberry32: a small, fast, well-mixed 32-bit PRNG; enough for weights nobody trains. */
export function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return (t ^ (t >>> 14)) >>> 0;
  };
}
