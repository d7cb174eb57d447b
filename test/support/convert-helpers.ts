/**
 * Independent references for the conversion tests: a safetensors header parser, float decoding,
 * absmean ternarization and trit unpacking written here from the specs (formats.md §6, DESIGN.md
 * "Ternarization semantics", docs/tpk-format.md), sharing no code with src/, so the tests compare
 * the pipeline against a second implementation rather than against itself.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';

export interface RawTensor { dtype: string; shape: number[]; bytes: Uint8Array }

/** Every tensor of one .safetensors file, by name, plus its metadata. */
export function readSafetensorsRaw(file: string): { tensors: Map<string, RawTensor>; metadata: Record<string, string> } {
  const buf = readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  const tensors = new Map<string, RawTensor>();
  let metadata: Record<string, string> = {};
  for (const [name, v] of Object.entries(header)) {
    if (name === '__metadata__') { metadata = v as unknown as Record<string, string>; continue; }
    tensors.set(name, { dtype: v.dtype, shape: v.shape, bytes: new Uint8Array(buf.subarray(8 + n + v.data_offsets[0], 8 + n + v.data_offsets[1])) });
  }
  return { tensors, metadata };
}

/** Exact decoding via typed-array bit reinterpretation (not the arithmetic decoder in src/). */
export function decodeFloats(bytes: Uint8Array, dtype: string): Float32Array {
  const copy = new Uint8Array(bytes); // aligned
  if (dtype === 'F32') return new Float32Array(copy.buffer);
  const halves = new Uint16Array(copy.buffer);
  const out = new Float32Array(halves.length);
  const bits = new Uint32Array(out.buffer);
  if (dtype === 'BF16') {
    for (let i = 0; i < halves.length; i++) bits[i] = halves[i]! << 16;
    return out;
  }
  if (dtype === 'F16') {
    for (let i = 0; i < halves.length; i++) {
      const h = halves[i]!;
      const e = (h >> 10) & 31;
      const m = h & 1023;
      const s = h & 0x8000 ? -1 : 1;
      out[i] = e === 0 ? s * m * 2 ** -24 : e === 31 ? (m ? NaN : s * Infinity) : s * (1024 + m) * 2 ** (e - 25);
    }
    return out;
  }
  throw new Error(`decodeFloats: ${dtype}`);
}

/** Round half to even, like torch.round. */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x - Math.trunc(x)) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * Per-tensor absmean (DESIGN.md): γ = mean|W| (accumulated in float64 here, then rounded to f32 —
 * the fixtures record that this differs from torch's f32 reduction only in last bits and changes
 * no code); reference formula t = clamp(round(W·f32(1/max(γ,1e-5))), −1, 1), paper formula
 * t = clamp(round(W/f32(γ+1e-5)), −1, 1), products and quotients rounded to f32.
 */
export function absmeanReference(w: Float32Array, formula: 'reference' | 'paper' = 'reference'): { gamma: number; codes: Int8Array } {
  let sum = 0;
  for (let i = 0; i < w.length; i++) sum += Math.abs(w[i]!);
  const gamma = Math.fround(sum / w.length);
  const codes = new Int8Array(w.length);
  const s = Math.fround(1 / Math.max(gamma, 1e-5));
  const d = Math.fround(gamma + Math.fround(1e-5));
  for (let i = 0; i < w.length; i++) {
    const x = formula === 'reference' ? Math.fround(w[i]! * s) : Math.fround(w[i]! / d);
    codes[i] = Math.max(-1, Math.min(1, roundHalfEven(x)));
  }
  return { gamma, codes };
}

/**
 * t158: 5 codes per byte, c = t + 1, first code most significant: q = Σ c_k·3^(4−k) and the byte is
 * ceil(q·256/243) (docs/ternary-packing.md), so q = floor(byte·243/256) exactly.
 */
export function unpackT158(packed: Uint8Array, count: number): Int8Array {
  const out = new Int8Array(count);
  for (let i = 0; i < count; i++) {
    const q = Math.floor((packed[Math.floor(i / 5)]! * 243) / 256);
    out[i] = (Math.floor(q / 3 ** (4 - (i % 5))) % 3) - 1;
  }
  return out;
}

/** t2: 4 codes per byte, first code in the low bits, c = t + 1. */
export function unpackT2(packed: Uint8Array, count: number): Int8Array {
  const out = new Int8Array(count);
  for (let i = 0; i < count; i++) out[i] = ((packed[i >> 2]! >> (2 * (i & 3))) & 3) - 1;
  return out;
}

export function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

export function countDiffering(a: Int8Array, b: Int8Array): number {
  let n = 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) n++;
  return n;
}

/** Bytes of a .safetensors file with exactly this header (space-padded to 8, as the official writer) and data. */
export function rawSafetensors(header: Record<string, unknown>, data: Uint8Array): Buffer {
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([length, Buffer.from(json, 'utf8'), data]);
}
