import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { validateModels, checkThresholds, DEFAULT_THRESHOLDS, promptsFromText } from '../../src/validate/validate.js';
import { renderReportMarkdown } from '../../src/validate/report.js';
import { evaluatePerplexity } from '../../src/validate/evaluate.js';
import { TritpackError } from '../../src/errors.js';
import { bigramModel } from '../support/validate-fake-model.js';
import { makeTempDir } from '../support/fixtures.js';

// 4-token vocabulary (0 = BOS, 1 = a, 2 = b, 3 = c). Logits are logs of known probabilities.
const P = [[0.1, 0.6, 0.2, 0.1], [0.1, 0.1, 0.7, 0.1], [0.1, 0.2, 0.1, 0.6], [0.1, 0.6, 0.2, 0.1]];
const Q = [[0.1, 0.2, 0.6, 0.1], [0.1, 0.1, 0.7, 0.1], [0.1, 0.2, 0.1, 0.6], [0.1, 0.6, 0.2, 0.1]];
const logs = (rows: number[][]) => rows.map((r) => r.map(Math.log));

describe('validate/validate (bigram stand-in models)', () => {
  it('identical models: ratio 1, top-1 1, KL 0, PASS', () => {
    const m = bigramModel(logs(P));
    const report = validateModels({ original: m, packed: m, text: { ids: [0, 1, 2, 3, 1, 2, 3, 1], label: 'ids' }, ctx: 8 });
    assert.equal(report.verdict, 'PASS');
    assert.equal(report.metrics.pplRatio, 1);
    assert.equal(report.metrics.top1Agreement, 1);
    assert.ok(report.metrics.klMean < 1e-12);
    assert.equal(report.metrics.positions, 8);
    assert.equal(report.metrics.scoredTokens, 7);
  });

  it('hand-computed NLL, KL and top-1 when the packed model differs after BOS', () => {
    const ids = [0, 1, 2, 3, 1, 2, 3, 1];
    const report = validateModels({ original: bigramModel(logs(P)), packed: bigramModel(logs(Q)), text: { ids, label: 'ids' }, ctx: 8 });
    // Rows used: P0 P1 P2 P3 P1 P2 P3 (P1 at the last position has no target); targets 1 2 3 1 2 3 1.
    // Only the row after BOS differs between P and Q: 0.6 vs 0.2 for the target, argmax 1 vs 2.
    const expectedP = -(Math.log(0.6) + Math.log(0.7) + Math.log(0.6) + Math.log(0.6) + Math.log(0.7) + Math.log(0.6) + Math.log(0.6)) / 7;
    assert.ok(Math.abs(report.metrics.original.meanNll - expectedP) < 1e-6, `${report.metrics.original.meanNll} vs ${expectedP}`);
    assert.ok(Math.abs(report.metrics.packed.meanNll - (expectedP + (Math.log(0.6) - Math.log(0.2)) / 7)) < 1e-6);
    const kl0 = 0.6 * Math.log(0.6 / 0.2) + 0.2 * Math.log(0.2 / 0.6);
    assert.ok(Math.abs(report.metrics.klMean - kl0 / 8) < 1e-6);
    assert.ok(Math.abs(report.metrics.klMax - kl0) < 1e-6);
    assert.equal(report.metrics.top1Agreement, 7 / 8);
    assert.ok(Math.abs(report.metrics.pplRatio - 3 ** (1 / 7)) < 1e-5);
    assert.equal(report.verdict, 'FAIL');
    assert.equal(report.reasons.length, 3);
    assert.equal(report.ternaryTraining.ternaryTrained, false);
    // A looser gate passes the same measurements.
    const loose = validateModels({ original: bigramModel(logs(P)), packed: bigramModel(logs(Q)), text: { ids, label: 'ids' }, ctx: 8, thresholds: { maxPplRatio: 1.2, minTop1: 0.8, maxKl: 0.1 } });
    assert.equal(loose.verdict, 'PASS');
  });

  it('continuations side by side with the first divergence, and a Markdown report', () => {
    const { dir, cleanup } = makeTempDir();
    try {
      const text = path.join(dir, 'text.txt');
      writeFileSync(text, 'abcabcabcabc\n<|endoftext|>\nbca\n');
      const report = validateModels({ original: bigramModel(logs(P)), packed: bigramModel(logs(Q)), text: { path: text }, ctx: 8, prompts: ['', 'c'], newTokens: 4, thresholds: { maxKl: 0.01 } });
      assert.equal(report.text.tokens, 16);
      assert.equal(report.text.windows, 2);
      const [fromBos, fromC] = report.continuations;
      assert.deepEqual(fromBos!.original.ids, [1, 2, 3, 1]);
      assert.deepEqual(fromBos!.packed.ids, [2, 3, 1, 2]);
      assert.equal(fromBos!.divergence, 0);
      assert.equal(fromC!.divergence, null);
      const md = renderReportMarkdown(report);
      assert.match(md, /^## Validation: ❌ FAIL/);
      assert.match(md, /\| perplexity ratio \(packed \/ original\) \| 1\.082 \| ≤ 1\.1 \| ✅ pass \|/);
      assert.match(md, /\| mean KL\(original ‖ packed\), nats\/token \| 0\.0293 \| ≤ 0\.01 \| ❌ fail \|/);
      assert.match(md, /\*\*Verdict: FAIL\*\* — mean KL 0\.0293 nats exceeds --max-kl 0\.01\./);
      assert.match(md, /\| original \| ‖\*abca\*/);
      assert.match(md, /Identical for all 4 generated tokens/);
      assert.match(md, /- Text: `text\.txt` \(sha256 `[0-9a-f]{16}…`\), all 16 tokens, read as 2 windows of up to 8 tokens, sliding by 8;/);
      assert.match(md, /> \*\*Ternary-trained\?\*\* No\./);
      assert.ok(!md.includes(dir), 'the card shows base names, not local directories');
      assert.deepEqual(promptsFromText('\nOnce upon a time there was a cat.\n<|endoftext|>\nBen ran.\n'), ['Once upon a time there was', 'Ben ran.']);
      // --new-tokens 0: no continuations at all (not a table of empty ones).
      const none = validateModels({ original: bigramModel(logs(P)), packed: bigramModel(logs(Q)), text: { path: text }, ctx: 8, newTokens: 0 });
      assert.deepEqual(none.continuations, []);
      assert.doesNotMatch(renderReportMarkdown(none), /Greedy continuations/);
    } finally { cleanup(); }
  });

  it('evaluatePerplexity: a uniform model scores ln V per token whatever the windows; sliding windows score every token once', () => {
    const uniform = bigramModel(Array.from({ length: 4 }, () => [0, 0, 0, 0]));
    const ids = [0, 1, 2, 3, 1, 2, 3, 1, 2, 3];
    const r = evaluatePerplexity(uniform, ids, { ctx: 4, stride: 2 });
    assert.equal(r.scoredTokens, 9);
    assert.equal(r.windows, 4);
    assert.ok(Math.abs(r.meanNll - Math.log(4)) < 1e-12);
    assert.ok(Math.abs(r.perplexity - 4) < 1e-9);
    // The bigram P: the same figures as a hand sum over the 9 targets.
    const p = evaluatePerplexity(bigramModel(logs(P)), ids, { ctx: 4, stride: 2 });
    const want = -(Math.log(0.6) + 3 * Math.log(0.7) + 3 * Math.log(0.6) + 2 * Math.log(0.6)) / 9;
    assert.ok(Math.abs(p.meanNll - want) < 1e-6, `${p.meanNll} vs ${want}`);
  });

  it('thresholds out of range are usage errors (exit 2)', () => {
    assert.deepEqual(checkThresholds(DEFAULT_THRESHOLDS), { maxPplRatio: 1.1, minTop1: 0.9, maxKl: 0.05 });
    for (const bad of [{ maxPplRatio: 0.99 }, { minTop1: 1.5 }, { minTop1: -0.1 }, { maxKl: -1 }, { maxKl: NaN }]) {
      assert.throws(() => checkThresholds({ ...DEFAULT_THRESHOLDS, ...bad }), (e: Error) => e instanceof TritpackError && e.exitCode === 2);
    }
  });
});
