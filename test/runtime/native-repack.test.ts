/**
 * The addon's repack (t2/t158 → i2x128 compute layout, native/tp.h) against a model of the layout
 * written here from its definition: random codes, shapes with and without whole 128-column blocks,
 * sub-ranges of rows, 1 and 2 threads, and the first invalid t2 code (3) reported exactly. The wasm
 * backend compiles the same C (native/tp_repack.c): its prepare is checked the same way (the codes read
 * back through gatherRows, the lowest invalid code in prepare's error).
 */
import assert from 'node:assert/strict';
import { packTernary, type TernaryPacking } from '../../src/formats/ternary.js';
import { loadNativeAddon } from '../../src/runtime-min/backends/native.js';
import type { WasmBackend } from '../../src/runtime-min/backends/wasm.js';
import { rng, wasmBackendOrSkip } from '../support/fast-backend-checks.js';

const addon = loadNativeAddon();

function randomTernary(rand: () => number, count: number): Int8Array {
  const t = new Int8Array(count);
  for (let i = 0; i < count; i++) t[i] = Math.floor(rand() * 3) - 1;
  return t;
}

/**
 * Rows [row0, row0 + nrows) in the compute layout: each row padded to whole 128-column blocks of 32
 * bytes; byte j of block b holds the code t + 1 of column 128b + 32k + j in bits 2k..2k+1; padding 0.
 */
function modelLayout(t: Int8Array, cols: number, row0: number, nrows: number): Uint8Array {
  const rowBytes = Math.ceil(cols / 128) * 32;
  const out = new Uint8Array(nrows * rowBytes);
  for (let r = 0; r < nrows; r++) {
    for (let c = 0; c < cols; c++) {
      const code = t[(row0 + r) * cols + c]! + 1;
      out[r * rowBytes + Math.floor(c / 128) * 32 + (c % 32)]! |= code << (2 * (Math.floor(c / 32) % 4));
    }
  }
  return out;
}

/** The addon's repack into a buffer filled with 0xff first (every byte of the rows must be written). */
function repack(packing: TernaryPacking, packed: Uint8Array, row0: number, nrows: number, cols: number): { bad: number; out: Uint8Array } {
  const out = new Uint8Array(nrows * Math.ceil(cols / 128) * 32).fill(0xff);
  const bad = addon!.repack(packing === 't2' ? 0 : 1, packed, row0, nrows, cols, out);
  return { bad, out };
}

/** Sets element e of t2 data to the invalid code 3. */
function poison(packed: Uint8Array, e: number): void {
  packed[e >> 2]! |= 3 << (2 * (e & 3));
}

/** Runs `body` with the addon's pool at `threads`, restoring the count it had. */
function withThreads(threads: number, body: () => void): void {
  const before = addon!.features().threads;
  addon!.setThreads(threads);
  try {
    body();
  } finally {
    addon!.setThreads(before);
  }
}

// Ragged column counts (rows starting inside a byte, partial last blocks), whole blocks, a row longer
// than the 640-column decode segment with and without a partial one, and enough rows for many chunks.
const SHAPES: [rows: number, cols: number][] = [[1, 1], [3, 5], [7, 127], [9, 128], [5, 129], [17, 300], [6, 641], [4, 1283], [12, 640], [300, 256], [40, 2048]];

describe('runtime: native repack into the compute layout', function () {
  before(function () {
    if (!addon) this.skip(); // the native backend suite prints why
  });

  for (const threads of [1, 2]) {
    for (const packing of ['t2', 't158'] as const) {
      it(`${packing}, ${threads} thread(s): every shape, whole tensors and row sub-ranges, equal the model`, () => {
        withThreads(threads, () => {
          const rand = rng(threads * 100 + packing.length);
          for (const [rows, cols] of SHAPES) {
            const t = randomTernary(rand, rows * cols);
            const packed = packTernary(packing, t);
            const ranges: [number, number][] = [[0, rows], [0, 1], [rows - 1, 1], [Math.floor(rows / 3), rows - Math.floor(rows / 3) - 1]];
            for (const [row0, nrows] of ranges) {
              if (nrows <= 0) continue;
              const { bad, out } = repack(packing, packed, row0, nrows, cols);
              assert.equal(bad, -1, `${rows}×${cols} rows ${row0}+${nrows}`);
              assert.deepEqual(out, modelLayout(t, cols, row0, nrows), `${rows}×${cols} rows ${row0}+${nrows}`);
            }
          }
        });
      });
    }

    it(`t2, ${threads} thread(s): the lowest invalid code of the rows is reported, whichever chunk finds it`, () => {
      withThreads(threads, () => {
        const rand = rng(threads + 11);
        for (const [rows, cols] of [[300, 256], [200, 129], [90, 2048]] as const) {
          const packed = packTernary('t2', randomTernary(rand, rows * cols));
          // invalid codes late in the tensor first, so a chunk that finishes early holds a higher one
          const at = [(rows - 2) * cols + 7, Math.floor(rows * 0.6) * cols + cols - 1, Math.floor(rows * 0.3) * cols + 3, Math.floor(rows * 0.3) * cols + 100];
          for (const e of at) poison(packed, e);
          const lowest = Math.min(...at);
          assert.equal(repack('t2', packed, 0, rows, cols).bad, lowest, `${rows}×${cols}`);
          // a sub-range reports its own rows' lowest, as a flat index of the whole tensor
          const row0 = Math.floor(rows * 0.3) + 1;
          assert.equal(repack('t2', packed, row0, rows - row0, cols).bad, Math.min(...at.filter((e) => e >= row0 * cols)), `${rows}×${cols} from row ${row0}`);
          assert.equal(repack('t2', packed, 0, Math.floor(rows * 0.3), cols).bad, -1, `${rows}×${cols} rows before the first invalid code`);
        }
      });
    });
  }

  it('t2: an invalid code sharing a byte with a row, in the row before it, is not that row\'s', () => {
    const rows = 6, cols = 13; // row 1 starts at element 13: slot 1 of byte 3, next to row 0's last element
    const t = randomTernary(rng(5), rows * cols);
    const packed = packTernary('t2', t);
    poison(packed, cols - 1);
    assert.equal(repack('t2', packed, 0, rows, cols).bad, cols - 1);
    const { bad, out } = repack('t2', packed, 1, rows - 1, cols);
    assert.equal(bad, -1);
    assert.deepEqual(out, modelLayout(t, cols, 1, rows - 1));
    poison(packed, 2 * cols); // row 2's first element, slot 2 of byte 6
    assert.equal(repack('t2', packed, 1, rows - 1, cols).bad, 2 * cols);
  });
});

describe('runtime: wasm backend prepare repacks with the same C (native/tp_repack.c)', function () {
  let wasm: WasmBackend;
  before(function () { wasm = wasmBackendOrSkip(this, 'simd'); });
  after(() => wasm?.dispose());

  /** A tensor-scale 1 weight: gatherRows then gives back the ternary values themselves. */
  const source = (packing: TernaryPacking, packed: Uint8Array, rows: number, cols: number) =>
    ({ kind: 'ternary' as const, name: 'w', rows, cols, packing, packed, scales: new Float32Array([1]), granularity: 'tensor' as const });

  for (const threads of [1, 2]) {
    for (const packing of ['t2', 't158'] as const) {
      it(`${packing}, ${threads} thread(s): every shape reads back as the codes it was given`, () => {
        wasm.threads = threads;
        const rand = rng(threads * 200 + packing.length);
        for (const [rows, cols] of SHAPES) {
          const t = randomTernary(rand, rows * cols);
          const w = wasm.prepare(source(packing, packTernary(packing, t), rows, cols));
          assert.deepEqual(wasm.gatherRows(w, Array.from({ length: rows }, (_, r) => r)), Float32Array.from(t), `${rows}×${cols}`);
        }
      });
    }

    it(`t2, ${threads} thread(s): prepare names the lowest invalid code, whichever chunk finds it`, () => {
      wasm.threads = threads;
      const rand = rng(threads + 21);
      for (const [rows, cols] of [[300, 256], [200, 129], [90, 2048], [6, 13]] as const) {
        const packed = packTernary('t2', randomTernary(rand, rows * cols));
        const at = [(rows - 2) * cols + 7, Math.floor(rows * 0.6) * cols + cols - 1, Math.floor(rows * 0.3) * cols + 3];
        for (const e of at) poison(packed, e);
        assert.throws(() => wasm.prepare(source('t2', packed, rows, cols)), new RegExp(`invalid code 3 at element ${Math.min(...at)}$`), `${rows}×${cols}`);
      }
    });
  }
});
