/**
 * Rotary embedding tables, computed as transformers does in float32: inv_freq = 1 / θ^(2j/d),
 * optionally rescaled (linear, llama3), then cos/sin of (inv_freq · position) rounded to float32.
 * Tables cover the positions of one forward call, [count × headDim/2]; rotate-half uses the same
 * value for j and j + d/2.
 */
import type { ModelConfig } from './config.js';

const fround = Math.fround;

export function ropeInverseFrequencies(config: Pick<ModelConfig, 'headDim' | 'ropeTheta' | 'ropeScaling'>): Float32Array {
  const { headDim: dim, ropeTheta: base, ropeScaling: scaling } = config;
  const half = dim / 2;
  const inv = new Float32Array(half);
  for (let j = 0; j < half; j++) inv[j] = fround(1 / fround(Math.pow(base, fround((2 * j) / dim))));
  if (scaling.type === 'linear') {
    for (let j = 0; j < half; j++) inv[j] = inv[j]! / scaling.factor;
  } else if (scaling.type === 'llama3') {
    // transformers' _compute_llama3_parameters: long wavelengths are slowed by `factor`, short ones
    // kept, the band between interpolated smoothly.
    const { factor, lowFreqFactor, highFreqFactor, originalMaxPositions } = scaling;
    const lowFreqWavelen = originalMaxPositions / lowFreqFactor;
    const highFreqWavelen = originalMaxPositions / highFreqFactor;
    for (let j = 0; j < half; j++) {
      const f = inv[j]!;
      const wavelen = fround((2 * Math.PI) / f);
      const scaled = wavelen > lowFreqWavelen ? fround(f / factor) : f;
      if (wavelen < highFreqWavelen || wavelen > lowFreqWavelen) {
        inv[j] = scaled;
      } else {
        const smooth = fround(fround(originalMaxPositions / wavelen - lowFreqFactor) / (highFreqFactor - lowFreqFactor));
        inv[j] = fround(fround(fround(1 - smooth) * scaled) / factor) + fround(smooth * scaled);
      }
    }
  }
  return inv;
}

/** cos/sin for positions start … start + count − 1. */
export function ropeTables(inv: Float32Array, start: number, count: number): { cos: Float32Array; sin: Float32Array } {
  const half = inv.length;
  const cos = new Float32Array(count * half);
  const sin = new Float32Array(count * half);
  for (let p = 0; p < count; p++) {
    for (let j = 0; j < half; j++) {
      const angle = fround(inv[j]! * (start + p));
      cos[p * half + j] = Math.cos(angle);
      sin[p * half + j] = Math.sin(angle);
    }
  }
  return { cos, sin };
}
