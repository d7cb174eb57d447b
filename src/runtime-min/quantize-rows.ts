/**
 * The int8 LM head's weight quantizer (Int8WeightSource's contract, backend.ts): each weight row is
 * quantized exactly as a token's activations are, s = 127 / max(max|w|, 1e-5) and round half to even
 * — so any backend's `quantizeActivations`, bit-identical to the reference by contract, computes it:
 * the native one does a 32000 × 2048 head in a fraction of the reference's time (0.55 s). The ±127
 * clamp of the contract never binds: every |w·s| is at most 127·(1 + 2⁻²⁴), which rounds to 127.
 * Rows are widened to float32 a slab at a time (bounded scratch); non-finite weights, which have no
 * int8 form, are refused.
 */
import { TritpackError } from '../errors.js';
import { dtypeByteSize, toFloat32Into } from '../formats/dtype.js';
import type { Backend, FloatWeightSource, Int8WeightSource } from './backend.js';

/** Float32 values widened per slab: 8 MiB of scratch. */
const SLAB_FLOATS = 1 << 21;

export function quantizeWeightRows(w: FloatWeightSource, quantizer: Pick<Backend, 'quantizeActivations'>): Int8WeightSource {
  const { rows, cols } = w;
  const rowBytes = cols * dtypeByteSize(w.dtype);
  const q = new Int8Array(rows * cols);
  const scales = new Float32Array(rows);
  const slabRows = Math.max(1, Math.floor(SLAB_FLOATS / cols));
  const slab = new Float32Array(Math.min(rows, slabRows) * cols);
  for (let r0 = 0; r0 < rows; r0 += slabRows) {
    const n = Math.min(slabRows, rows - r0);
    const x = slab.subarray(0, n * cols);
    toFloat32Into(w.bytes.subarray(r0 * rowBytes, (r0 + n) * rowBytes), w.dtype, x);
    const into = { n, cols, q: q.subarray(r0 * cols, (r0 + n) * cols), scales: scales.subarray(r0, r0 + n) };
    const got = quantizer.quantizeActivations(x, n, cols, into);
    if (got.q !== into.q) { into.q.set(got.q); into.scales.set(got.scales); } // `out` is a hint a backend may ignore
    // A row holding ±Inf or NaN ends with s = 0 or NaN (max|w| is Inf or NaN): find the value to name it.
    for (let i = 0; i < n; i++) {
      if (scales[r0 + i]! > 0 && scales[r0 + i]! < Infinity) continue;
      const bad = x.subarray(i * cols, (i + 1) * cols).find((v) => !Number.isFinite(v));
      throw new TritpackError(`${w.name}: row ${r0 + i} holds ${bad}, which has no int8 form (an int8 LM head needs finite weights)`);
    }
  }
  return { kind: 'int8', name: w.name, rows, cols, q, scales };
}
