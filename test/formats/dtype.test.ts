import assert from 'node:assert/strict';
import {
  bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits, fromFloat32, fromFloat32Portable, toFloat32, toFloat32Into,
  toFloat32Portable,
} from '../../src/formats/dtype.js';

/** Little-endian bytes of 16-bit patterns, built byte by byte (independent of the host's byte order). */
function le16(patterns: ArrayLike<number>): Uint8Array {
  const out = new Uint8Array(patterns.length * 2);
  for (let i = 0; i < patterns.length; i++) { out[2 * i] = patterns[i]! & 0xff; out[2 * i + 1] = patterns[i]! >> 8; }
  return out;
}

const ALL_16_BIT = Array.from({ length: 65536 }, (_, h) => h);
const isF16NaN = (h: number) => (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
const isBf16NaN = (h: number) => (h & 0x7f80) === 0x7f80 && (h & 0x7f) !== 0;
/** Compares float arrays bit for bit (so −0 ≠ 0) with NaN equal to NaN. */
const sameFloats = (a: Float32Array, b: Float32Array) => a.length === b.length && a.every((v, i) => Object.is(v, b[i]));

describe('formats/dtype', () => {
  it('binary16 anchors: 1, max, min normal, min subnormal, −0, ±Inf, NaN', () => {
    const anchors: [number, number][] = [
      [0x3c00, 1], [0x7bff, 65504], [0x0400, 2 ** -14], [0x0001, 2 ** -24], [0x03ff, 1023 * 2 ** -24],
      [0x8000, -0], [0x7c00, Infinity], [0xfc00, -Infinity], [0xc000, -2], [0x3555, 0.333251953125],
    ];
    const decoded = toFloat32(le16(anchors.map(([h]) => h)), 'F16');
    anchors.forEach(([h, v], i) => {
      assert.ok(Object.is(f16BitsToF32(h), v), `scalar 0x${h.toString(16)}`);
      assert.ok(Object.is(decoded[i], v), `bulk 0x${h.toString(16)}`);
      assert.equal(f32ToF16Bits(v), h);
    });
    assert.ok(Number.isNaN(toFloat32(le16([0x7e00]), 'F16')[0]));
  });

  for (const [dtype, isNaN16, scalar] of [['F16', isF16NaN, f16BitsToF32], ['BF16', isBf16NaN, bf16BitsToF32]] as const) {
    it(`${dtype}: all 65536 patterns widen like the scalar decoder, and every non-NaN one narrows back to itself`, () => {
      const wide = toFloat32(le16(ALL_16_BIT), dtype);
      assert.ok(sameFloats(wide, Float32Array.from(ALL_16_BIT, scalar)));
      const back = fromFloat32(wide, dtype);
      for (const h of ALL_16_BIT) {
        const got = back[2 * h]! | (back[2 * h + 1]! << 8);
        if (isNaN16(h)) assert.ok(isNaN16(got), `NaN 0x${h.toString(16)} stays NaN`);
        else assert.equal(got, h, `0x${h.toString(16)}`);
      }
    });
  }

  it('F16 narrowing rounds to nearest, ties to even, at every pair of neighbouring finite values (subnormals and overflow included)', () => {
    const a = new Float32Array(3);
    for (let h = 0; h < 0x7c00; h++) {
      const lo = f16BitsToF32(h);
      const hi = h === 0x7bff ? 65536 : f16BitsToF32(h + 1); // 65536 is where binary16 overflows to Inf
      const mid = (lo + hi) / 2; // exact in f32: binary16 has 11 significant bits
      a[0] = mid; a[1] = Math.fround(mid - mid * 2 ** -23); a[2] = Math.fround(mid + mid * 2 ** -23);
      const even = h % 2 === 0 ? h : h + 1;
      const bytes = fromFloat32(a, 'F16');
      const got = [0, 1, 2].map((i) => bytes[2 * i]! | (bytes[2 * i + 1]! << 8));
      assert.deepEqual(got, [even, h, h + 1], `between 0x${h.toString(16)} and its successor`);
    }
  });

  it('BF16 narrowing rounds to nearest, ties to even; NaN payloads stay NaN', () => {
    const cases: [number, number][] = [
      [1 + 2 ** -8, 0x3f80], [1 + 3 * 2 ** -8, 0x3f82], [1 + 2 ** -8 + 2 ** -20, 0x3f81], [-(1 + 2 ** -8), 0xbf80],
      [3.4e38, 0x7f80], [1e-40, 0x0001], [Infinity, 0x7f80], [-0, 0x8000],
    ];
    const bytes = fromFloat32(Float32Array.from(cases, ([v]) => v), 'BF16');
    cases.forEach(([v, h], i) => {
      assert.equal(bytes[2 * i]! | (bytes[2 * i + 1]! << 8), h, String(v));
      assert.equal(f32ToBf16Bits(v), h, String(v));
    });
    assert.ok(isBf16NaN(f32ToBf16Bits(NaN)));
  });

  it('F64 narrows to nearest float32, ties to even; F32 bytes are copied exactly', () => {
    const f64 = new Float64Array([1 + 2 ** -24, 1 + 3 * 2 ** -24, -1e300, 2 ** -150, 0.1]);
    const got = toFloat32(new Uint8Array(f64.buffer), 'F64');
    assert.deepEqual([...got], [1, 1 + 2 ** -22, -Infinity, 0, Math.fround(0.1)]);
    const f32 = Float32Array.of(-0, 1.5, 3.4e38, -1e-45);
    assert.ok(sameFloats(toFloat32(fromFloat32(f32, 'F32'), 'F32'), f32));
  });

  it('decodes bytes at odd offsets and bytes that live in the upper end of the output itself', () => {
    const values = Float32Array.from({ length: 1001 }, (_, i) => Math.sin(i) * 100);
    for (const dtype of ['F32', 'F16', 'BF16'] as const) {
      const bytes = fromFloat32(values, dtype);
      const expected = toFloat32(bytes, dtype);
      const shifted = new Uint8Array(bytes.length + 1);
      shifted.set(bytes, 1);
      assert.ok(sameFloats(toFloat32(shifted.subarray(1), dtype), expected), `${dtype} unaligned`);
      const out = new Float32Array(values.length);
      const tail = new Uint8Array(out.buffer, out.byteLength - bytes.length, bytes.length);
      tail.set(bytes);
      assert.ok(sameFloats(toFloat32Into(tail, dtype, out), expected), `${dtype} in place`);
    }
  });

  it('the big-endian fallback agrees with the fast paths', () => {
    const values = Float32Array.from({ length: 4099 }, (_, i) => (i % 7 === 0 ? -1 : 1) * Math.exp((i % 200) - 100));
    for (const dtype of ['F32', 'F16', 'BF16'] as const) {
      const bytes = fromFloat32(values, dtype);
      assert.deepEqual(fromFloat32Portable(values, dtype), bytes, `${dtype} narrowing`);
      assert.ok(sameFloats(toFloat32Portable(bytes, dtype, new Float32Array(values.length)), toFloat32(bytes, dtype)), `${dtype} widening`);
    }
    const f64 = new Float64Array([0.1, -2.5e-40, 7]);
    assert.ok(sameFloats(toFloat32Portable(new Uint8Array(f64.buffer), 'F64', new Float32Array(3)), Float32Array.from(f64)));
  });

  it('refuses non-float dtypes, ragged byte counts and short outputs', () => {
    assert.throws(() => toFloat32(new Uint8Array(4), 'I32'), /cannot read I32 values as float/);
    assert.throws(() => toFloat32(new Uint8Array(3), 'F16'), /not a whole number of F16 values/);
    assert.throws(() => toFloat32Into(new Uint8Array(8), 'F32', new Float32Array(1)), /output holds 1 values, 2 F32 values given/);
  });
});
