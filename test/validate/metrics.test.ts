import assert from 'node:assert/strict';
import { logSoftmax, nll, klDivergence, argmax, percentile, mean, perplexity, ComparisonAccumulator } from '../../src/validate/metrics.js';

const row = (values: number[]) => ({ logits: Float32Array.from(values), offset: 0, vocab: values.length });

describe('validate/metrics', () => {
  it('NLL of a uniform distribution is ln V, perplexity V', () => {
    for (const v of [2, 7, 2048]) {
      const r = row(new Array(v).fill(3.25));
      assert.ok(Math.abs(nll(r, v - 1) - Math.log(v)) < 1e-12);
      assert.ok(Math.abs(perplexity(nll(r, 0)) - v) < 1e-9 * v);
    }
  });

  it('log-softmax matches a hand-computed case and survives huge logits', () => {
    // logits [0, ln 2, ln 5]: probabilities 1/8, 2/8, 5/8
    const lp = logSoftmax(row([0, Math.log(2), Math.log(5)]));
    assert.ok(Math.abs(lp[0]! - Math.log(1 / 8)) < 1e-7);
    assert.ok(Math.abs(lp[2]! - Math.log(5 / 8)) < 1e-7);
    const big = logSoftmax(row([1000, 1000]));
    assert.ok(Math.abs(big[0]! - Math.log(0.5)) < 1e-12);
    // A row inside a larger [positions × vocab] array.
    const two = { logits: Float32Array.from([9, 9, 0, Math.log(3)]), offset: 2, vocab: 2 };
    assert.ok(Math.abs(nll(two, 1) - Math.log(4 / 3)) < 1e-7);
  });

  it('KL of known distributions', () => {
    // KL([1/2,1/2] ‖ [1/4,3/4]) = ½ ln 2 + ½ ln(2/3)
    const p = Float64Array.from([Math.log(0.5), Math.log(0.5)]);
    const q = Float64Array.from([Math.log(0.25), Math.log(0.75)]);
    assert.ok(Math.abs(klDivergence(p, q) - (0.5 * Math.log(2) + 0.5 * Math.log(2 / 3))) < 1e-15);
    assert.equal(klDivergence(p, p), 0);
    // p has a zero: that term adds nothing; KL([1,0] ‖ [1/2,1/2]) = ln 2
    const point = Float64Array.from([0, -Infinity]);
    assert.ok(Math.abs(klDivergence(point, p) - Math.log(2)) < 1e-15);
  });

  it('p99 on a known list follows numpy linear interpolation', () => {
    const values = Array.from({ length: 100 }, (_, i) => i + 1); // np.percentile(1..100, 99) = 99.01
    assert.ok(Math.abs(percentile(values, 99) - 99.01) < 1e-12);
    assert.equal(percentile([5, 1, 3], 50), 3);
    assert.equal(percentile([4], 99), 4);
    assert.equal(mean([1, 2, 3, 6]), 3);
  });

  it('argmax picks the lowest id on a tie, like torch.argmax', () => {
    assert.equal(argmax(row([1, 3, 3, 2])), 1);
  });

  it('comparison: identical models agree fully with zero KL; NLL only on positions with a target', () => {
    const acc = new ComparisonAccumulator();
    const a = row([0, Math.log(3)]);
    acc.addPosition(a, a, 1);
    acc.addPosition(a, row([Math.log(3), 0]));
    assert.equal(acc.positions, 2);
    assert.equal(acc.top1Agreement, 0.5);
    assert.equal(acc.original.scoredTokens, 1);
    assert.ok(Math.abs(acc.original.meanNll - Math.log(4 / 3)) < 1e-7);
    // KL([1/4,3/4] ‖ [3/4,1/4]) = ½ ln 3 (two symmetric terms: ¼ ln(1/3) + ¾ ln 3)
    assert.ok(Math.abs(acc.klMax - 0.5 * Math.log(3)) < 1e-7);
    assert.ok(Math.abs(acc.klMean - 0.25 * Math.log(3)) < 1e-7);
  });
});
