/**
 * Element types that tritpack reads and writes, and exact conversions between the float
 * encodings. f16 and bf16 conversions are written here rather than taken from a library because
 * they must round exactly like numpy/torch (nearest, ties to even) and run over every weight of
 * multi-GB models: the bulk conversions work on typed-array views of the bytes (one table lookup
 * or a few integer operations per element, no DataView call and no allocation per element).
 */
import { TritpackError } from '../errors.js';

export type FloatDType = 'F32' | 'F16' | 'BF16';
export type DType = FloatDType | 'F64' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

const BYTE_SIZE: Record<DType, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1,
};

export function isDType(name: string): name is DType {
  return Object.prototype.hasOwnProperty.call(BYTE_SIZE, name);
}

export function dtypeByteSize(dtype: DType): number {
  return BYTE_SIZE[dtype];
}

export function isFloatDType(dtype: DType): dtype is FloatDType {
  return dtype === 'F32' || dtype === 'F16' || dtype === 'BF16';
}

/**
 * Tensor bytes are little-endian on disk and typed arrays use the host's byte order, so the bulk
 * paths below view the bytes directly only on a little-endian host (every platform Node ships
 * for); elsewhere they fall back to DataView reads and writes.
 */
export const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** IEEE binary16 bits → number (exact). */
export function f16BitsToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** float32 bits → IEEE binary16 bits, rounding to nearest even (as numpy's astype(float16)). */
function f32BitsToF16Bits(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rest = mant & ((1 << shift) - 1);
    let h = mant >>> shift;
    if (rest > half || (rest === half && (h & 1))) h += 1;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (h & 1))) h += 1; // may carry into the exponent: still correct
  return sign | h;
}

/** float32 bits → bfloat16 bits, rounding to nearest even (as torch's .to(bfloat16)); NaNs stay quiet NaNs. */
function f32BitsToBf16Bits(x: number): number {
  if ((x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff)) return ((x >>> 16) | 0x40) & 0xffff;
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

/** number → IEEE binary16 bits, rounding to nearest even (as numpy's astype(float16)). */
export function f32ToF16Bits(value: number): number {
  f32[0] = value;
  return f32BitsToF16Bits(u32[0]!);
}

/** bfloat16 bits → number (exact). */
export function bf16BitsToF32(b: number): number {
  u32[0] = (b & 0xffff) << 16;
  return f32[0]!;
}

/** number → bfloat16 bits, rounding to nearest even (as torch's .to(bfloat16)). */
export function f32ToBf16Bits(value: number): number {
  f32[0] = value;
  return f32BitsToBf16Bits(u32[0]!);
}

let f16Table: Float32Array | undefined;

/** All 65536 half-precision values (256 KB, built on first use): F16 widening is one lookup per element. */
function f16ToF32Table(): Float32Array {
  if (!f16Table) {
    f16Table = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) f16Table[h] = f16BitsToF32(h);
  }
  return f16Table;
}

/** `bytes` as a typed array of `size`-byte elements, copying only when its offset is not a multiple of the element size. */
function aligned<T>(bytes: Uint8Array, size: number, make: (buffer: ArrayBufferLike, offset: number, length: number) => T): T {
  if (bytes.byteOffset % size === 0) return make(bytes.buffer, bytes.byteOffset, bytes.byteLength / size);
  return make(bytes.slice().buffer, 0, bytes.byteLength / size);
}

function floatDTypeError(dtype: DType): TritpackError {
  return new TritpackError(`cannot read ${dtype} values as float`);
}

/**
 * Little-endian bytes of an F32, F16, BF16 or F64 tensor → float32 values in `out` (F64 rounds
 * to nearest even), which must hold at least bytes.length / element size values.
 * `bytes` may be the upper end of `out`'s own memory — readers fill that part from the file and
 * widen in place, so decoding a 16-bit tensor needs no second buffer: element i is written to
 * bytes [4i, 4i+4) only after the source bytes of elements ≤ i have been read, and the sources of
 * later elements lie beyond 4i+4.
 */
export function toFloat32Into(bytes: Uint8Array, dtype: DType, out: Float32Array): Float32Array {
  const size = dtypeByteSize(dtype);
  const n = bytes.byteLength / size;
  if (!Number.isInteger(n)) throw new TritpackError(`${bytes.byteLength} bytes are not a whole number of ${dtype} values`);
  if (out.length < n) throw new TritpackError(`output holds ${out.length} values, ${n} ${dtype} values given`);
  if (!LITTLE_ENDIAN_HOST) return toFloat32Portable(bytes, dtype, out);
  switch (dtype) {
    case 'F32':
      new Uint8Array(out.buffer, out.byteOffset, bytes.byteLength).set(bytes); // set() is overlap-safe
      return out;
    case 'F16': {
      const halves = aligned(bytes, 2, (b, o, l) => new Uint16Array(b, o, l));
      const table = f16ToF32Table();
      for (let i = 0; i < n; i++) out[i] = table[halves[i]!]!;
      return out;
    }
    case 'BF16': {
      const halves = aligned(bytes, 2, (b, o, l) => new Uint16Array(b, o, l));
      const bits = new Uint32Array(out.buffer, out.byteOffset, n);
      for (let i = 0; i < n; i++) bits[i] = halves[i]! << 16; // bf16 is the top half of an f32
      return out;
    }
    case 'F64':
      out.set(aligned(bytes, 8, (b, o, l) => new Float64Array(b, o, l))); // set() rounds to nearest even
      return out;
    default:
      throw floatDTypeError(dtype);
  }
}

/**
 * toFloat32Into for any host byte order, one DataView read per element (front to back, so also
 * correct for `bytes` inside `out`). Exported so that the tests cover the big-endian path.
 */
export function toFloat32Portable(bytes: Uint8Array, dtype: DType, out: Float32Array): Float32Array {
  const n = bytes.byteLength / dtypeByteSize(dtype);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  switch (dtype) {
    case 'F32':
      for (let i = 0; i < n; i++) out[i] = view.getFloat32(i * 4, true);
      return out;
    case 'F16':
      for (let i = 0; i < n; i++) out[i] = f16BitsToF32(view.getUint16(i * 2, true));
      return out;
    case 'BF16':
      for (let i = 0; i < n; i++) out[i] = bf16BitsToF32(view.getUint16(i * 2, true));
      return out;
    case 'F64':
      for (let i = 0; i < n; i++) out[i] = view.getFloat64(i * 8, true);
      return out;
    default:
      throw floatDTypeError(dtype);
  }
}

/** Little-endian bytes of a float tensor → a new Float32Array (F32 is copied so the result owns its memory). */
export function toFloat32(bytes: Uint8Array, dtype: DType): Float32Array {
  if (dtype !== 'F32' && dtype !== 'F16' && dtype !== 'BF16' && dtype !== 'F64') throw floatDTypeError(dtype);
  return toFloat32Into(bytes, dtype, new Float32Array(bytes.byteLength / dtypeByteSize(dtype)));
}

/** Float32Array → little-endian bytes of the given float dtype (rounding to nearest even). */
export function fromFloat32(values: Float32Array, dtype: FloatDType): Uint8Array {
  if (!LITTLE_ENDIAN_HOST) return fromFloat32Portable(values, dtype);
  const n = values.length;
  const out = new Uint8Array(n * dtypeByteSize(dtype));
  if (dtype === 'F32') {
    out.set(new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
    return out;
  }
  const bits = new Uint32Array(values.buffer, values.byteOffset, n);
  const halves = new Uint16Array(out.buffer);
  if (dtype === 'F16') for (let i = 0; i < n; i++) halves[i] = f32BitsToF16Bits(bits[i]!);
  else for (let i = 0; i < n; i++) halves[i] = f32BitsToBf16Bits(bits[i]!);
  return out;
}

/** fromFloat32 for any host byte order, one DataView write per element; exported for the tests. */
export function fromFloat32Portable(values: Float32Array, dtype: FloatDType): Uint8Array {
  const out = new Uint8Array(values.length * dtypeByteSize(dtype));
  const view = new DataView(out.buffer);
  switch (dtype) {
    case 'F32':
      for (let i = 0; i < values.length; i++) view.setFloat32(i * 4, values[i]!, true);
      break;
    case 'F16':
      for (let i = 0; i < values.length; i++) view.setUint16(i * 2, f32ToF16Bits(values[i]!), true);
      break;
    case 'BF16':
      for (let i = 0; i < values.length; i++) view.setUint16(i * 2, f32ToBf16Bits(values[i]!), true);
      break;
  }
  return out;
}
