import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import {
  decodeTQ, dequantizeTQ, encodeTQ, packTernary, packedByteLength, quantizeTQReference, tqByteLength, unpackTernary,
  type TernaryPacking, type TQType,
} from '../../src/formats/ternary.js';
import { TritpackError } from '../../src/errors.js';

/** Deterministic codes in {−1,0,1} (xorshift), so failures reproduce. */
function pseudoCodes(n: number, seed = 12345): Int8Array {
  const out = new Int8Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    out[i] = (s % 3) - 1;
  }
  return out;
}

/** All `width`-trit combinations, first trit most significant, concatenated (3^width × width codes). */
function allTritPatterns(width: number): Int8Array {
  const count = 3 ** width;
  const out = new Int8Array(count * width);
  for (let v = 0; v < count; v++) {
    for (let k = 0; k < width; k++) out[v * width + k] = Math.floor(v / 3 ** (width - 1 - k)) % 3 - 1;
  }
  return out;
}

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');
const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

describe('formats/ternary: t158 and t2 packing', () => {
  it('sizes: t158 5 codes per byte, t2 4, whole tensor contiguous', () => {
    assert.equal(packedByteLength('t158', 0), 0);
    assert.equal(packedByteLength('t158', 1), 1);
    assert.equal(packedByteLength('t158', 5), 1);
    assert.equal(packedByteLength('t158', 6), 2);
    assert.equal(packedByteLength('t158', 256 * 768), 39322);
    assert.equal(packedByteLength('t2', 4), 1);
    assert.equal(packedByteLength('t2', 9), 3);
    assert.throws(() => packedByteLength('t2', -1), TritpackError);
  });

  it('t158 stores every 5-trit value as ceil(q·256/243) and decodes each digit with the pow3 multiply trick', () => {
    const codes = allTritPatterns(5);
    const packed = packTernary('t158', codes);
    assert.equal(packed.length, 243);
    const pow3 = [1, 3, 9, 27, 81];
    for (let q = 0; q < 243; q++) {
      // formats.md §1.4: byte = ceil(q·256/243), digit k = ((uint8)(byte·3^k) · 3) >> 8, slot 0 most significant.
      assert.equal(packed[q], Math.ceil((q * 256) / 243), `q=${q}`);
      for (let k = 0; k < 5; k++) {
        assert.equal((((packed[q]! * pow3[k]!) & 0xff) * 3) >> 8, codes[q * 5 + k]! + 1, `q=${q} digit ${k}`);
      }
    }
    assert.deepEqual(unpackTernary('t158', packed, codes.length), codes);
  });

  it('worked example from docs/ternary-packing.md', () => {
    // codes +1 0 −1 −1 +1 | −1 0 → c = 2 1 0 0 2 → q = 191 → byte 202; second byte c = 0 1 [1 1 1] → q = 40 → 43
    const codes = Int8Array.from([1, 0, -1, -1, 1, -1, 0]);
    assert.equal(hex(packTernary('t158', codes)), 'ca2b');
    assert.equal(hex(packTernary('t2', codes)), '0652');
    for (const packing of ['t158', 't2'] as const) {
      assert.deepEqual(Array.from(unpackTernary(packing, packTernary(packing, codes), 3, 3)), [-1, 1, -1]);
    }
  });

  it('t2 stores code i of a byte in bits 2i..2i+1 for all 81 four-trit values', () => {
    const codes = allTritPatterns(4);
    const packed = packTernary('t2', codes);
    assert.equal(packed.length, 81);
    for (let v = 0; v < 81; v++) {
      let expected = 0;
      for (let i = 0; i < 4; i++) expected |= (codes[v * 4 + i]! + 1) << (2 * i);
      assert.equal(packed[v], expected);
    }
    assert.deepEqual(unpackTernary('t2', packed, codes.length), codes);
    assert.equal(hex(packTernary('t2', Int8Array.from([-1, 0, 1, 0]))), '64');
  });

  it('t2 decodes all 256 byte values: the 175 holding code 3 are rejected, the 81 others round-trip', () => {
    let rejected = 0;
    for (let b = 0; b < 256; b++) {
      const byte = Uint8Array.of(b);
      const hasThree = [0, 1, 2, 3].some((i) => ((b >> (2 * i)) & 3) === 3);
      if (hasThree) {
        assert.throws(() => unpackTernary('t2', byte, 4), (e: unknown) => e instanceof TritpackError && /invalid code 3/.test(e.message));
        rejected++;
      } else {
        assert.deepEqual(packTernary('t2', unpackTernary('t2', byte, 4)), byte);
      }
    }
    assert.equal(rejected, 256 - 81);
    // Code 3 in a slot outside the decoded range is not looked at: 0xC0 holds 3 only in slot 3.
    assert.deepEqual(unpackTernary('t2', Uint8Array.of(0xc0), 3), Int8Array.from([-1, -1, -1]));
    assert.throws(() => unpackTernary('t2', Uint8Array.of(0xc0), 1, 3), TritpackError);
  });

  for (const packing of ['t158', 't2'] as TernaryPacking[]) {
    it(`${packing}: odd lengths round-trip and partial last bytes pad with t = 0`, () => {
      const per = packing === 't158' ? 5 : 4;
      for (let n = 0; n <= 41; n++) {
        const codes = pseudoCodes(n, 7 + n);
        const packed = packTernary(packing, codes);
        assert.equal(packed.length, Math.ceil(n / per));
        assert.deepEqual(unpackTernary(packing, packed, n), codes, `n=${n}`);
        // The unused slots of the last byte decode as zeros.
        const all = unpackTernary(packing, packed, packed.length * per);
        assert.deepEqual(Array.from(all.subarray(n)), new Array(packed.length * per - n).fill(0));
      }
    });

    it(`${packing}: every (start, count) window decodes, including mid-byte starts and reuse of an out buffer`, () => {
      const n = 37;
      const codes = pseudoCodes(n, 99);
      const packed = packTernary(packing, codes);
      const out = new Int8Array(n + 3).fill(9);
      for (let start = 0; start <= n; start++) {
        for (let count = 0; start + count <= n; count++) {
          assert.deepEqual(unpackTernary(packing, packed, count, start), codes.subarray(start, start + count), `start=${start} count=${count}`);
        }
        out.fill(9);
        const returned = unpackTernary(packing, packed, n - start, start, out);
        assert.equal(returned, out);
        assert.deepEqual(out.subarray(0, n - start), codes.subarray(start));
        assert.ok(out.subarray(n - start).every((v) => v === 9), 'writes nothing past count');
      }
    });

    it(`${packing}: row-by-row decoding of a large tensor equals whole-tensor decoding`, () => {
      const rows = 13, cols = 259; // row length not a multiple of 4 or 5: rows start mid-byte
      const codes = pseudoCodes(rows * cols, 3);
      const packed = packTernary(packing, codes);
      const row = new Int8Array(cols);
      for (let r = 0; r < rows; r++) {
        unpackTernary(packing, packed, cols, r * cols, row);
        assert.deepEqual(row, codes.subarray(r * cols, (r + 1) * cols));
      }
    });

    it(`${packing}: windows decode into outputs at every offset mod 4 (the word-at-a-time paths and their edges)`, () => {
      const n = 403;
      const codes = pseudoCodes(n, 11);
      const packed = packTernary(packing, codes);
      const backing = new Int8Array(n + 8);
      for (let shift = 0; shift < 4; shift++) {
        for (const start of [0, 1, 2, 3, 4, 5, 9, 20, 21]) {
          for (const count of [n - start, n - start - 7, 40, 41, 19]) {
            backing.fill(9);
            const out = backing.subarray(shift, shift + count);
            unpackTernary(packing, packed, count, start, out);
            assert.deepEqual(out, codes.subarray(start, start + count), `shift=${shift} start=${start} count=${count}`);
            assert.ok(backing.subarray(shift + count).every((v) => v === 9), 'writes nothing past count');
          }
        }
      }
      if (packing === 't2') {
        const corrupt = packed.slice();
        corrupt[60] = 0xff; // four codes 3, deep inside the aligned word loop
        assert.throws(() => unpackTernary('t2', corrupt, n), /t2 data: byte 60 = 0xff holds the invalid code 3/);
      }
    });

    it(`${packing}: rejects codes other than -1, 0, 1, short data and small out buffers`, () => {
      for (const bad of [2, -2, 127, -128]) {
        for (const at of [0, 3, 9, 10]) { // inside a full byte and inside the final partial byte
          const codes = pseudoCodes(11, 5);
          codes[at] = bad;
          assert.throws(() => packTernary(packing, codes), (e: unknown) =>
            e instanceof TritpackError && e.message === `ternary code ${bad} at element ${at} is not -1, 0 or 1`);
        }
      }
      const packed = packTernary(packing, pseudoCodes(20));
      assert.throws(() => unpackTernary(packing, packed, 21), /too short/);
      assert.throws(() => unpackTernary(packing, packed, 5, 16), /too short/);
      assert.throws(() => unpackTernary(packing, packed, 10, 0, new Int8Array(9)), /output buffer/);
      assert.throws(() => unpackTernary(packing, packed, 1.5), TritpackError);
    });
  }

  it('bits per weight, one f32 scale included, at the fixture tensor sizes: t158 ≤ 1.61, t2 ≤ 2.01', () => {
    for (const n of [64 * 128, 128 * 128, 128 * 384, 128 * 256, 256 * 256, 256 * 768]) {
      assert.ok(((packedByteLength('t158', n) + 4) * 8) / n <= 1.61, `t158 n=${n}`);
      assert.ok(((packedByteLength('t2', n) + 4) * 8) / n <= 2.01, `t2 n=${n}`);
    }
  });
});

describe('formats/ternary: ggml TQ1_0 / TQ2_0', () => {
  // formats.md §1.5: t[k] = (floor(5k/3) mod 3) − 1, d = 0.5.
  const vectorCodes = Int8Array.from({ length: 256 }, (_, k) => (Math.floor((5 * k) / 3) % 3) - 1);
  const vectorFloats = Float32Array.from(vectorCodes, (t) => t * 0.5);

  it('the §1.5 code sequence starts as documented', () => {
    assert.deepEqual(Array.from(vectorCodes.subarray(0, 16)), [-1, 0, -1, 1, -1, 1, 0, 1, 0, -1, 0, -1, 1, -1, 1, 0]);
  });

  it('TQ2_0 test vector, from codes and from floats (quantize_row_tq2_0_ref)', () => {
    for (const bytes of [encodeTQ('tq2_0', vectorCodes, Float32Array.of(0.5)), quantizeTQReference('tq2_0', vectorFloats)]) {
      assert.equal(bytes.length, 66);
      assert.equal(hex(bytes.subarray(0, 8)), '588568066016a11a');
      assert.equal(hex(bytes.subarray(64)), '0038');
      assert.equal(sha256(bytes).slice(0, 16), '8f3fa6c5d80c9c61');
    }
  });

  it('TQ1_0 test vector, from codes and from floats (quantize_row_tq1_0_ref)', () => {
    for (const bytes of [encodeTQ('tq1_0', vectorCodes, Float32Array.of(0.5)), quantizeTQReference('tq1_0', vectorFloats)]) {
      assert.equal(bytes.length, 54);
      assert.equal(hex(bytes.subarray(0, 8)), '467b50ca18d370ee');
      assert.equal(hex(bytes.subarray(48, 54)), '85b8a2100038');
      assert.equal(sha256(bytes).slice(0, 16), '5835ac1dc9948789');
    }
  });

  it('constant blocks with d = 1.0 (§1.5 table)', () => {
    const block = (t: number) => new Int8Array(256).fill(t);
    const one = Float32Array.of(1);
    const q2plus = encodeTQ('tq2_0', block(1), one);
    assert.ok(q2plus.subarray(0, 64).every((b) => b === 0xaa));
    assert.equal(hex(q2plus.subarray(64)), '003c');
    assert.ok(encodeTQ('tq2_0', block(0), one).subarray(0, 64).every((b) => b === 0x55));
    for (const [t, qs, qh] of [[1, 0xff, 0xfd], [0, 0x80, 0x7f], [-1, 0x00, 0x00]] as const) {
      const bytes = encodeTQ('tq1_0', block(t), one);
      assert.ok(bytes.subarray(0, 48).every((b) => b === qs), `t=${t} qs`);
      assert.ok(bytes.subarray(48, 52).every((b) => b === qh), `t=${t} qh`);
      assert.equal(hex(bytes.subarray(52)), '003c');
    }
  });

  for (const type of ['tq1_0', 'tq2_0'] as TQType[]) {
    it(`${type}: multi-block round trip of codes and fp16 scales; dequantize = t · fp16(d)`, () => {
      const codes = pseudoCodes(256 * 5, 77);
      const scales = Float32Array.of(0.5, 0.0159878209233284, 3.25, 0, 1e-3);
      const bytes = encodeTQ(type, codes, scales);
      assert.equal(bytes.length, tqByteLength(type, codes.length));
      const decoded = decodeTQ(type, bytes, codes.length);
      assert.deepEqual(decoded.codes, codes);
      // fp16 of 0.0159878… is 0x2018 = 0.0159912109375; 1e-3 → 0x1419 = 0.0010004043579101562.
      assert.deepEqual(Array.from(decoded.blockScales), [0.5, 0.0159912109375, 3.25, 0, 0.0010004043579101562]);
      const x = dequantizeTQ(type, bytes, codes.length);
      for (let i = 0; i < codes.length; i++) assert.equal(x[i], codes[i]! * decoded.blockScales[i >> 8]!);
    });

    it(`${type}: quantizeTQReference uses per-block absmax and rounds halves away from zero`, () => {
      const x = new Float32Array(512);
      x[0] = 2; x[1] = 1; x[2] = -1; x[3] = 0.999; x[4] = -0.9; x[5] = 0.8; // block 0: d = 2, x/d = ±0.5 → ±1
      // block 1 stays all zero: d = 0 and every code is 0
      const { codes, blockScales } = decodeTQ(type, quantizeTQReference(type, x), 512);
      assert.deepEqual(Array.from(codes.subarray(0, 7)), [1, 1, -1, 0, 0, 0, 0]);
      assert.deepEqual(Array.from(blockScales), [2, 0]);
      assert.ok(codes.subarray(256).every((t) => t === 0));
    });

    it(`${type}: counts that are not a multiple of 256, bad codes and short data are errors`, () => {
      assert.throws(() => encodeTQ(type, new Int8Array(255), Float32Array.of(1)), /multiple of 256/);
      assert.throws(() => quantizeTQReference(type, new Float32Array(300)), /multiple of 256/);
      assert.throws(() => decodeTQ(type, new Uint8Array(200), 100), /multiple of 256/);
      assert.throws(() => encodeTQ(type, new Int8Array(256), Float32Array.of(1, 2)), /need 1 scales/);
      const codes = new Int8Array(256);
      codes[200] = 2;
      assert.throws(() => encodeTQ(type, codes, Float32Array.of(1)), (e: unknown) => e instanceof TritpackError && /element 200/.test(e.message));
      assert.throws(() => decodeTQ(type, new Uint8Array(tqByteLength(type, 256) - 1), 256), /too short/);
      // llama.cpp refuses non-finite block scales; fp16 overflows above 65504.
      for (const d of [NaN, Infinity, 70000]) {
        assert.throws(() => encodeTQ(type, new Int8Array(512), Float32Array.of(1, d)), /block 1: scale .* not a finite fp16/);
      }
      const x = new Float32Array(256);
      x[5] = Infinity;
      assert.throws(() => quantizeTQReference(type, x), /block 0: scale Infinity/);
    });
  }

  it('tq2_0 rejects a qs byte holding code 3', () => {
    const bytes = encodeTQ('tq2_0', new Int8Array(256), Float32Array.of(1));
    bytes[17] = 0x57; // slot 0 of byte 17 = 3
    assert.throws(() => decodeTQ('tq2_0', bytes, 256), /block 0: byte 17 .*invalid code 3/);
  });
});
