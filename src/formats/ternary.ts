/**
 * Bit layouts for ternary weights: tritpack's own contiguous packings (`t158`, `t2`) and ggml's
 * block types TQ1_0 / TQ2_0. Pure functions over typed arrays; byte layouts are specified in
 * docs/ternary-packing.md (ours) and docs/formats.md §1 (ggml).
 *
 * Codes are Int8Array values t ∈ {−1, 0, +1}; every layout stores c = t + 1 ∈ {0, 1, 2}.
 */
import { TritpackError } from '../errors.js';
import { LITTLE_ENDIAN_HOST, f16BitsToF32, f32ToF16Bits } from './dtype.js';

export type TernaryPacking = 't158' | 't2';
export type TQType = 'tq1_0' | 'tq2_0';

/** Codes per byte of each packing. */
const PER_BYTE: Record<TernaryPacking, number> = { t158: 5, t2: 4 };

/** Code stored in the unused slots of a final partial byte: t = 0, so a kernel that reads whole bytes adds nothing. */
const PAD_CODE = 1;

// ---------------------------------------------------------------------------------------------
// Base-3 bytes (t158 and TQ1_0 share them).
//
// Five codes c0..c4 (c0 most significant) form q = c0·81 + c1·27 + c2·9 + c3·3 + c4 ∈ [0, 242];
// the byte is ceil(q·256/243), a fixed-point base-3 fraction. Digit k is then recovered with one
// 8-bit multiply and one 16-bit multiply-high — ((uint8)(byte·3^k) · 3) >> 8 — which is what
// makes the 1.6-bit layout decodable with SIMD (no division, no lookup).

const POW3 = [1, 3, 9, 27, 81] as const;

/** q (0..242) → stored byte. */
const BASE3_ENCODE = new Uint8Array(243);
/** stored byte → its 5 codes c0..c4, as t = c − 1 (row b at offset 5b). */
const BASE3_DECODE = new Int8Array(256 * 5);
for (let q = 0; q < 243; q++) BASE3_ENCODE[q] = Math.floor((q * 256 + 242) / 243);
for (let b = 0; b < 256; b++) {
  for (let k = 0; k < 5; k++) BASE3_DECODE[b * 5 + k] = ((((b * POW3[k]!) & 0xff) * 3) >> 8) - 1;
}

/**
 * The same decoding as little-endian 32-bit words, for writing four codes with one store:
 * BASE3_WORD[b] holds codes c0..c3 of byte b (t as bytes, c0 lowest), BASE3_LAST[b] its c4.
 */
const BASE3_WORD = new Int32Array(256);
const BASE3_LAST = new Int32Array(256);
for (let b = 0; b < 256; b++) {
  for (let k = 0; k < 4; k++) BASE3_WORD[b]! |= (BASE3_DECODE[b * 5 + k]! & 0xff) << (8 * k);
  BASE3_LAST[b] = BASE3_DECODE[b * 5 + 4]! & 0xff;
}

// 2-bit bytes (t2): code i of the byte in bits 2i..2i+1, t = c − 1; c = 3 is invalid.
/** stored byte → its 4 values t (row b at offset 4b); −2 marks the invalid code 3. */
const T2_DECODE = new Int8Array(256 * 4);
/** bytes that hold code 3 in any slot (invalid as a full byte). */
const T2_HAS_INVALID = new Uint8Array(256);
for (let b = 0; b < 256; b++) {
  for (let i = 0; i < 4; i++) {
    const c = (b >> (2 * i)) & 3;
    T2_DECODE[b * 4 + i] = c === 3 ? -2 : c - 1;
    if (c === 3) T2_HAS_INVALID[b] = 1;
  }
}
/** T2_DECODE as little-endian 32-bit words: a byte's four codes in one store. */
const T2_WORD = new Int32Array(T2_DECODE.buffer);

function invalidCode(value: number, index: number): TritpackError {
  return new TritpackError(`ternary code ${value} at element ${index} is not -1, 0 or 1`);
}

function checkCount(what: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) throw new TritpackError(`${what} must be a non-negative integer, got ${value}`);
}

// ---------------------------------------------------------------------------------------------
// t158 / t2: whole tensor packed contiguously, rows not padded.

export function packedByteLength(packing: TernaryPacking, count: number): number {
  checkCount('ternary element count', count);
  return Math.ceil(count / PER_BYTE[packing]);
}

/** Packs codes (t ∈ {−1,0,1}) into t158 or t2 bytes; throws TritpackError on any other value. */
export function packTernary(packing: TernaryPacking, codes: Int8Array): Uint8Array {
  const n = codes.length;
  const out = new Uint8Array(packedByteLength(packing, n));
  const per = PER_BYTE[packing];
  const full = Math.floor(n / per);
  let e = 0;
  if (packing === 't158') {
    for (let b = 0; b < full; b++, e += 5) {
      const c0 = codes[e]! + 1, c1 = codes[e + 1]! + 1, c2 = codes[e + 2]! + 1, c3 = codes[e + 3]! + 1, c4 = codes[e + 4]! + 1;
      // One unsigned test per code: anything outside 0..2 (including wrapped negatives) is > 2.
      if ((c0 >>> 0) > 2 || (c1 >>> 0) > 2 || (c2 >>> 0) > 2 || (c3 >>> 0) > 2 || (c4 >>> 0) > 2) throw invalidFrom(codes, e);
      out[b] = BASE3_ENCODE[c0 * 81 + c1 * 27 + c2 * 9 + c3 * 3 + c4]!;
    }
  } else {
    for (let b = 0; b < full; b++, e += 4) {
      const c0 = codes[e]! + 1, c1 = codes[e + 1]! + 1, c2 = codes[e + 2]! + 1, c3 = codes[e + 3]! + 1;
      if ((c0 >>> 0) > 2 || (c1 >>> 0) > 2 || (c2 >>> 0) > 2 || (c3 >>> 0) > 2) throw invalidFrom(codes, e);
      out[b] = c0 | (c1 << 2) | (c2 << 4) | (c3 << 6);
    }
  }
  if (e < n) out[full] = packSlots(packing, codes, e, n - e);
  return out;
}

/** The error for the first invalid code at or after `from` (the caller has seen one there). */
function invalidFrom(codes: Int8Array, from: number): TritpackError {
  let i = from;
  while (codes[i]! >= -1 && codes[i]! <= 1) i++;
  return invalidCode(codes[i]!, i);
}

/** One byte from `used` codes starting at `from`; the remaining slots hold PAD_CODE. */
function packSlots(packing: TernaryPacking, codes: Int8Array, from: number, used: number): number {
  const per = PER_BYTE[packing];
  let q = 0;
  for (let k = 0; k < per; k++) {
    let c = PAD_CODE;
    if (k < used) {
      c = codes[from + k]! + 1;
      if ((c >>> 0) > 2) throw invalidCode(codes[from + k]!, from + k);
    }
    q = packing === 't158' ? q * 3 + c : q | (c << (2 * k));
  }
  return packing === 't158' ? BASE3_ENCODE[q]! : q;
}

/**
 * Decodes codes [start, start + count) of a packed tensor into `out` (allocated when omitted) and
 * returns it. `start` may fall inside a byte, so a runtime can decode one row at a time.
 * t2 bytes holding the invalid code 3 in a decoded slot throw TritpackError. Every t158 byte decodes
 * to valid codes (the 13 byte values that packing never writes included), so t158 needs no check.
 */
export function unpackTernary(packing: TernaryPacking, packed: Uint8Array, count: number, start = 0, out?: Int8Array): Int8Array {
  checkCount('ternary element count', count);
  checkCount('ternary start index', start);
  const per = PER_BYTE[packing];
  const needed = Math.ceil((start + count) / per);
  if (packed.length < needed) {
    throw new TritpackError(`${packing} data too short: ${packed.length} bytes, elements [${start}, ${start + count}) need ${needed}`);
  }
  if (out === undefined) out = new Int8Array(count);
  else if (out.length < count) throw new TritpackError(`output buffer holds ${out.length} codes, ${count} requested`);
  if (count === 0) return out;

  const table = packing === 't158' ? BASE3_DECODE : T2_DECODE;
  let o = 0; // next output index
  let b = Math.floor(start / per); // current byte
  const end = start + count;
  // Head: the tail slots of a byte we start inside (or the only byte touched).
  const headSlot = start - b * per;
  if (headSlot !== 0 || count < per) {
    const stop = Math.min(per, end - b * per);
    o = decodeSlots(table, per, packed, b, headSlot, stop, out, o);
    b++;
  }
  // Body: whole bytes.
  const bodyBytes = Math.max(0, Math.floor(end / per) - b);
  if (per === 5) decodeT158Bytes(packed, b, bodyBytes, out, o);
  else decodeT2Bytes(packed, b, bodyBytes, out, o);
  b += bodyBytes;
  o += bodyBytes * per;
  // Tail: the leading slots of a final partial byte.
  if (o < count) decodeSlots(table, per, packed, b, 0, end - b * per, out, o);
  return out;
}

/**
 * `n` whole t158 bytes from packed[b] → out[o…]: bytes one at a time until the output is 4-byte
 * aligned (each byte moves it by 5 ≡ 1 mod 4), then 4 bytes → 20 codes as five word stores
 * (~3x faster than byte stores), then the rest one at a time.
 */
function decodeT158Bytes(packed: Uint8Array, b: number, n: number, out: Int8Array, o: number): void {
  const end = b + n;
  for (; b < end && (out.byteOffset + o) % 4 !== 0; b++, o += 5) decodeBase3Byte(packed[b]!, out, o);
  const groups = LITTLE_ENDIAN_HOST ? Math.floor((end - b) / 4) : 0;
  if (groups > 0) { // more bytes left means the loop above stopped aligned
    decodeBase3Groups(packed, b, groups, new Int32Array(out.buffer, out.byteOffset + o, groups * 5));
    b += groups * 4;
    o += groups * 20;
  }
  for (; b < end; b++, o += 5) decodeBase3Byte(packed[b]!, out, o);
}

/** `n` whole t2 bytes from packed[b] → out[o…]: one word store per byte when the output is aligned. */
function decodeT2Bytes(packed: Uint8Array, b: number, n: number, out: Int8Array, o: number): void {
  if (LITTLE_ENDIAN_HOST && (out.byteOffset + o) % 4 === 0) {
    const words = new Int32Array(out.buffer, out.byteOffset + o, n);
    for (let k = 0; k < n; k++, b++) {
      const v = packed[b]!;
      if (T2_HAS_INVALID[v]) throw invalidT2(v, b);
      words[k] = T2_WORD[v]!;
    }
    return;
  }
  for (let k = 0; k < n; k++, b++, o += 4) {
    const v = packed[b]!;
    if (T2_HAS_INVALID[v]) throw invalidT2(v, b);
    const r = v * 4;
    out[o] = T2_DECODE[r]!; out[o + 1] = T2_DECODE[r + 1]!; out[o + 2] = T2_DECODE[r + 2]!; out[o + 3] = T2_DECODE[r + 3]!;
  }
}

function decodeBase3Byte(byte: number, out: Int8Array, o: number): void {
  const r = byte * 5;
  out[o] = BASE3_DECODE[r]!; out[o + 1] = BASE3_DECODE[r + 1]!; out[o + 2] = BASE3_DECODE[r + 2]!;
  out[o + 3] = BASE3_DECODE[r + 3]!; out[o + 4] = BASE3_DECODE[r + 4]!;
}

/** `groups` runs of 4 t158 bytes from packed[b] → 20 codes each, written as 5 little-endian words. */
function decodeBase3Groups(packed: Uint8Array, b: number, groups: number, words: Int32Array): void {
  for (let g = 0, w = 0; g < groups; g++, b += 4, w += 5) {
    const b0 = packed[b]!, b1 = packed[b + 1]!, b2 = packed[b + 2]!, b3 = packed[b + 3]!;
    const a1 = BASE3_WORD[b1]!, a2 = BASE3_WORD[b2]!, a3 = BASE3_WORD[b3]!;
    words[w] = BASE3_WORD[b0]!;
    words[w + 1] = BASE3_LAST[b0]! | (a1 << 8);
    words[w + 2] = (a1 >>> 24) | (BASE3_LAST[b1]! << 8) | (a2 << 16);
    words[w + 3] = (a2 >>> 16) | (BASE3_LAST[b2]! << 16) | (a3 << 24);
    words[w + 4] = (a3 >>> 8) | (BASE3_LAST[b3]! << 24);
  }
}

/** Slots [from, to) of byte `b` into out[o…]; returns the next output index. */
function decodeSlots(table: Int8Array, per: number, packed: Uint8Array, b: number, from: number, to: number, out: Int8Array, o: number): number {
  const byte = packed[b]!;
  for (let k = from; k < to; k++) {
    const t = table[byte * per + k]!;
    if (t === -2) throw invalidT2(byte, b, b * per + k);
    out[o++] = t;
  }
  return o;
}

function invalidT2(byte: number, byteIndex: number, element?: number): TritpackError {
  const where = element === undefined ? '' : ` (element ${element})`;
  return new TritpackError(`t2 data: byte ${byteIndex} = 0x${byte.toString(16).padStart(2, '0')} holds the invalid code 3${where}`);
}

// ---------------------------------------------------------------------------------------------
// ggml TQ1_0 / TQ2_0 (formats.md §1): blocks of 256 codes, each followed by its fp16 scale d.

const QK = 256;
const TQ_BLOCK_BYTES: Record<TQType, number> = { tq1_0: 54, tq2_0: 66 };

function tqBlockCount(type: TQType, count: number): number {
  checkCount(`${type} element count`, count);
  if (count % QK !== 0) throw new TritpackError(`${type} needs a multiple of ${QK} elements, got ${count}`);
  return count / QK;
}

/** Size in bytes of `count` elements (a multiple of 256) in a TQ type. */
export function tqByteLength(type: TQType, count: number): number {
  return tqBlockCount(type, count) * TQ_BLOCK_BYTES[type];
}

/**
 * Writes one block's codes (c = t + 1, already validated) at `o`. The element → byte/slot map is
 * ggml's (formats.md §1.3/§1.4): TQ1_0 spreads 5 trits over strided elements (stride 32, then 16,
 * then 4 for qh with a zero fifth slot); TQ2_0 puts elements m + 32n (per half) in bits 2n.
 */
function writeBlockCodes(type: TQType, c: Uint8Array, out: Uint8Array, o: number): void {
  if (type === 'tq2_0') {
    for (let half = 0; half < 2; half++) {
      const base = half * 128;
      for (let m = 0; m < 32; m++) {
        out[o + half * 32 + m] = c[base + m]! | (c[base + m + 32]! << 2) | (c[base + m + 64]! << 4) | (c[base + m + 96]! << 6);
      }
    }
    return;
  }
  for (let m = 0; m < 32; m++) {
    out[o + m] = BASE3_ENCODE[c[m]! * 81 + c[m + 32]! * 27 + c[m + 64]! * 9 + c[m + 96]! * 3 + c[m + 128]!]!;
  }
  for (let m = 0; m < 16; m++) {
    const e = 160 + m;
    out[o + 32 + m] = BASE3_ENCODE[c[e]! * 81 + c[e + 16]! * 27 + c[e + 32]! * 9 + c[e + 48]! * 3 + c[e + 64]!]!;
  }
  for (let j = 0; j < 4; j++) {
    const e = 240 + j;
    out[o + 48 + j] = BASE3_ENCODE[(c[e]! * 27 + c[e + 4]! * 9 + c[e + 8]! * 3 + c[e + 12]!) * 3]!;
  }
}

/** Reads one block's codes back as t = c − 1 into `t` at offset `to`. */
function readBlockCodes(type: TQType, bytes: Uint8Array, o: number, t: Int8Array, to: number, blockIndex: number): void {
  if (type === 'tq2_0') {
    for (let k = 0; k < 64; k++) {
      const v = bytes[o + k]!;
      if (T2_HAS_INVALID[v]) throw new TritpackError(`tq2_0 block ${blockIndex}: byte ${k} = 0x${v.toString(16).padStart(2, '0')} holds the invalid code 3`);
      const e = to + (k >> 5) * 128 + (k & 31);
      t[e] = T2_DECODE[v * 4]!; t[e + 32] = T2_DECODE[v * 4 + 1]!; t[e + 64] = T2_DECODE[v * 4 + 2]!; t[e + 96] = T2_DECODE[v * 4 + 3]!;
    }
    return;
  }
  for (let m = 0; m < 32; m++) {
    const r = bytes[o + m]! * 5;
    for (let n = 0; n < 5; n++) t[to + m + 32 * n] = BASE3_DECODE[r + n]!;
  }
  for (let m = 0; m < 16; m++) {
    const r = bytes[o + 32 + m]! * 5;
    for (let n = 0; n < 5; n++) t[to + 160 + m + 16 * n] = BASE3_DECODE[r + n]!;
  }
  for (let j = 0; j < 4; j++) {
    const r = bytes[o + 48 + j]! * 5;
    for (let n = 0; n < 4; n++) t[to + 240 + j + 4 * n] = BASE3_DECODE[r + n]!;
  }
}

/** Stores d as fp16; llama.cpp rejects blocks whose d is NaN or ±Inf (ggml_validate_row_data), so we never write one. */
function writeBlockScale(type: TQType, d: number, out: Uint8Array, blockStart: number): void {
  const h = f32ToF16Bits(d);
  if ((h & 0x7c00) === 0x7c00) {
    throw new TritpackError(`${type} block ${blockStart / TQ_BLOCK_BYTES[type]}: scale ${d} is not a finite fp16 value`);
  }
  const at = blockStart + TQ_BLOCK_BYTES[type] - 2;
  out[at] = h & 0xff;
  out[at + 1] = h >> 8;
}

/** TQ blocks from codes (t ∈ {−1,0,1}) and one scale per 256 codes, stored as fp16 (nearest even). */
export function encodeTQ(type: TQType, codes: Int8Array, blockScales: Float32Array): Uint8Array {
  const blocks = tqBlockCount(type, codes.length);
  if (blockScales.length !== blocks) throw new TritpackError(`${type}: ${blocks} blocks need ${blocks} scales, got ${blockScales.length}`);
  const size = TQ_BLOCK_BYTES[type];
  const out = new Uint8Array(blocks * size);
  const c = new Uint8Array(QK);
  for (let b = 0; b < blocks; b++) {
    const base = b * QK;
    for (let i = 0; i < QK; i++) {
      const v = codes[base + i]! + 1;
      if ((v >>> 0) > 2) throw invalidCode(codes[base + i]!, base + i);
      c[i] = v;
    }
    writeBlockCodes(type, c, out, b * size);
    writeBlockScale(type, blockScales[b]!, out, b * size);
  }
  return out;
}

/** Codes and widened fp16 block scales of `count` elements (a multiple of 256) of TQ data. */
export function decodeTQ(type: TQType, bytes: Uint8Array, count: number): { codes: Int8Array; blockScales: Float32Array } {
  const blocks = tqBlockCount(type, count);
  const size = TQ_BLOCK_BYTES[type];
  if (bytes.length < blocks * size) throw new TritpackError(`${type} data too short: ${bytes.length} bytes, ${count} elements need ${blocks * size}`);
  const codes = new Int8Array(count);
  const blockScales = new Float32Array(blocks);
  for (let b = 0; b < blocks; b++) {
    const o = b * size;
    readBlockCodes(type, bytes, o, codes, b * QK, b);
    blockScales[b] = f16BitsToF32(bytes[o + size - 2]! | (bytes[o + size - 1]! << 8));
  }
  return { codes, blockScales };
}

/**
 * ggml's quantize_row_tq1_0_ref / quantize_row_tq2_0_ref (formats.md §1.2): per block, d = max|x|
 * (float32), id = 1/d in float32 (0 for an all-zero block), code = lroundf(x·id) + 1 with the
 * product rounded to float32 and halves rounded away from zero; d stored as fp16.
 */
export function quantizeTQReference(type: TQType, x: Float32Array): Uint8Array {
  const blocks = tqBlockCount(type, x.length);
  const size = TQ_BLOCK_BYTES[type];
  const out = new Uint8Array(blocks * size);
  const c = new Uint8Array(QK);
  for (let b = 0; b < blocks; b++) {
    const base = b * QK;
    let amax = 0;
    for (let i = 0; i < QK; i++) {
      const v = Math.abs(x[base + i]!);
      if (v > amax) amax = v; // ggml's MAX(amax, v): a NaN never replaces amax
    }
    const id = amax !== 0 ? Math.fround(1 / amax) : 0;
    for (let i = 0; i < QK; i++) {
      const v = Math.fround(x[base + i]! * id);
      // lroundf (half away from zero); |v| ≤ ~1 so the result is already within −1..1.
      c[i] = v >= 0.5 ? 2 : v <= -0.5 ? 0 : 1;
    }
    writeBlockCodes(type, c, out, b * size);
    writeBlockScale(type, amax, out, b * size);
  }
  return out;
}

/** ggml's dequantize_row_tq*_0: x̂ = t · d, with d widened from fp16. */
export function dequantizeTQ(type: TQType, bytes: Uint8Array, count: number): Float32Array {
  const { codes, blockScales } = decodeTQ(type, bytes, count);
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) out[i] = codes[i]! * blockScales[i >> 8]!;
  return out;
}
