/**
 * The terminal summary of a validation (what `tritpack validate` and `convert --validate` print):
 * the figures against their thresholds, the continuations side by side, the ternary-training note
 * and the verdict last, where a reader of a CI log looks first. The full report is the Markdown.
 */
import type { ValidationReport } from '../validate/validate.js';
import { renderPairs } from './table.js';
import { formatCount, formatSignificant } from '../units.js';

export function renderValidationSummary(r: ValidationReport): string {
  const m = r.metrics;
  const t = r.thresholds;
  const g = (x: number, digits = 5) => formatSignificant(x, digits);
  const lines = [renderPairs([
    ['perplexity', `original ${g(m.original.perplexity, 6)}, packed ${g(m.packed.perplexity, 6)}`],
    ['mean NLL', `original ${m.original.meanNll.toFixed(6)}, packed ${m.packed.meanNll.toFixed(6)} nats/token`],
    ['ppl ratio', `${g(m.pplRatio)} (max ${t.maxPplRatio})`],
    ['top-1 agreement', `${g(m.top1Agreement)} (min ${t.minTop1})`],
    ['KL mean / p99', `${g(m.klMean)} / ${g(m.klP99)} nats/token (max mean ${t.maxKl})`],
    ['tokens', `${formatCount(m.scoredTokens)} scored, ${formatCount(m.positions)} positions compared, ${r.text.windows} window(s) of ${r.text.ctx}, stride ${r.text.stride}`],
    ['speed', `${Math.round(r.tokensPerSecond)} tokens/s (both models, prefill), ${r.seconds.toFixed(1)} s in all`],
    ...(r.original.lmHead === 'int8' || r.packed.lmHead === 'int8'
      ? [['LM head', `original ${r.original.lmHead}, packed ${r.packed.lmHead} (--lm-head)`] as [string, string]] : []),
  ])];
  for (const [i, c] of r.continuations.entries()) {
    lines.push('', `prompt ${i + 1}: ${JSON.stringify(c.prompt)}${c.divergence === null ? ' (identical)' : ` (first difference at generated token ${c.divergence})`}`);
    lines.push(`  original: ${JSON.stringify(c.original.text)}`, `  packed:   ${JSON.stringify(c.packed.text)}`);
  }
  const bad = r.tensors.rows.filter((row) => row.mismatch);
  if (bad.length > 0) lines.push('', `warning: the .tpk header's relative error disagrees with the recomputed one for ${bad.map((b) => b.name).join(', ')}`);
  lines.push('', `ternary-trained: ${r.ternaryTraining.ternaryTrained ? 'yes' : 'no'}. ${r.ternaryTraining.note}`);
  lines.push('', r.verdict === 'PASS' ? 'PASS' : `FAIL: ${r.reasons.join('; ')}`);
  return lines.join('\n');
}
