/**
 * The validation report as Markdown, written to read well on a Hugging Face model page: verdict
 * first, a summary table, thresholds, the honest ternary-training note, continuations side by
 * side, the per-tensor table and how it was measured. Paths show as base names: a model card
 * should not leak the converter's local directories.
 */
import path from 'node:path';
import { formatCount, formatSignificant } from '../units.js';
import type { Continuation } from './continuations.js';
import type { ValidationReport } from './validate.js';

export function renderReportMarkdown(r: ValidationReport): string {
  const m = r.metrics;
  const t = r.thresholds;
  const mark = (ok: boolean) => (ok ? '✅ pass' : '❌ fail');
  const out: string[] = [];
  out.push(`## Validation: ${r.verdict === 'PASS' ? '✅ PASS' : '❌ FAIL'}`, '');
  out.push(`\`${name(r.packed.path)}\` (packed${r.packed.lmHead === 'int8' ? ', int8 LM head' : ''}) against \`${name(r.original.path)}\` (original, ${r.original.architecture}), `
    + `on ${formatCount(m.scoredTokens)} tokens of \`${name(r.text.source)}\`, measured by ${r.tool.name} ${r.tool.version}.`, '');
  out.push('| | original | packed |', '|---|---:|---:|');
  out.push(`| perplexity | ${num(m.original.perplexity, 6)} | ${num(m.packed.perplexity, 6)} |`);
  out.push(`| mean NLL (nats/token) | ${num(m.original.meanNll, 5)} | ${num(m.packed.meanNll, 5)} |`, '');
  out.push('| check | value | threshold | result |', '|---|---:|---:|---|');
  out.push(`| perplexity ratio (packed / original) | ${num(m.pplRatio)} | ≤ ${t.maxPplRatio} | ${mark(m.pplRatio <= t.maxPplRatio)} |`);
  out.push(`| top-1 agreement | ${num(m.top1Agreement, 4)} | ≥ ${t.minTop1} | ${mark(m.top1Agreement >= t.minTop1)} |`);
  out.push(`| mean KL(original ‖ packed), nats/token | ${num(m.klMean, 4)} | ≤ ${t.maxKl} | ${mark(m.klMean <= t.maxKl)} |`);
  out.push(`| p99 KL, nats/token | ${num(m.klP99, 4)} | | |`);
  out.push(`| max KL, nats/token | ${num(m.klMax, 4)} | | |`, '');
  out.push(r.verdict === 'PASS'
    ? '**Verdict: PASS** — every check is within its threshold.'
    : `**Verdict: FAIL** — ${r.reasons.join('; ')}.`, '');
  out.push(`> **Ternary-trained?** ${r.ternaryTraining.ternaryTrained ? 'Yes.' : 'No.'} ${r.ternaryTraining.note}`, '');

  if (r.continuations.length > 0) {
    out.push('### Greedy continuations', '');
    out.push('Both models continue each prompt greedily (temperature 0). `‖` marks the first token where they differ; what follows it is in italics.', '');
    r.continuations.forEach((c, i) => out.push(...continuation(c, i + 1)));
  }

  out.push('### Per-tensor ternarization', '');
  if (r.tensors.rows.length > 0) {
    out.push('| tensor | shape | packing | scale | γ (mean \\|W\\|) | zero codes | relative error ‖W−W′‖/‖W‖ |', '|---|---|---|---|---:|---:|---:|');
    for (const row of r.tensors.rows) {
      const err = row.relativeError === null ? '—' : num(row.relativeError, 4) + (row.mismatch ? ` (header says ${num(row.headerRelativeError!, 4)})` : '');
      out.push(`| \`${row.name}\` | ${row.shape.join('×')} | ${row.encoding} | ${row.scale} | ${num(row.gamma, 5)} | ${(row.zeroFraction * 100).toFixed(1)} % | ${err} |`);
    }
    out.push('');
  }
  out.push(r.tensors.note, '');
  if (r.ternaryTraining.ternaryTrained && r.tensors.rows.some((row) => (row.relativeError ?? 0) > 0.01)) {
    out.push('The relative error is measured against the float master weights; for a ternary-trained model it is large by design, '
      + 'because the original\'s own forward pass already uses these ternary codes — the model-level checks above are what count.', '');
  }

  out.push('### How this was measured', '');
  const window = r.text.windows === 1 ? `one window of ${r.text.ctx} tokens` : `${r.text.windows} windows of up to ${r.text.ctx} tokens, sliding by ${r.text.stride}`;
  out.push(`- Text: \`${name(r.text.source)}\`${r.text.sha256 ? ` (sha256 \`${r.text.sha256.slice(0, 16)}…\`)` : ''}, `
    + `${tokensUsed(r.text.tokens, r.text.totalTokens)}, read as ${window}; both models see exactly the same token windows.`);
  out.push(`- NLL over ${formatCount(m.scoredTokens)} next-token predictions (each token scored once); perplexity = exp(mean NLL). `
    + `KL and top-1 agreement over ${formatCount(m.positions)} positions.`);
  out.push('- Log-softmax in float64 of each model\'s float32 logits; KL(p_original ‖ p_packed) = Σ p_original (log p_original − log p_packed) per position, natural log; p99 by linear interpolation (numpy\'s default).');
  out.push('- Per-tensor relative error uses the dequantized weight W′ = code × γ; γ is the absmean scale stored with the codes.');
  out.push(`- Runtime: ${r.tool.name}'s bundled minimal runtime; the packed model runs on its ternary codes directly. Took ${r.seconds.toFixed(1)} s.`);
  out.push(...lmHeadNotes(r));
  out.push(`- Reproduce: \`tritpack validate <original> <packed> --text ${name(r.text.source)} --ctx ${r.text.ctx} --stride ${r.text.stride}`
    + `${r.text.totalTokens === null || r.text.tokens < r.text.totalTokens ? ` --max-tokens ${r.text.tokens}` : ''} --max-ppl-ratio ${t.maxPplRatio} --min-top1 ${t.minTop1} --max-kl ${t.maxKl}`
    + `${r.packed.lmHead === 'int8' ? ' --lm-head int8' : ''}\``, '');
  return `${out.join('\n').trimEnd()}\n`;
}

/** Says which model ran an int8 LM head (--lm-head int8): its figures include that head's quantization error. */
function lmHeadNotes(r: ValidationReport): string[] {
  return (['original', 'packed'] as const).filter((side) => r[side].lmHead === 'int8').map((side) =>
    `- LM head: the ${side} model's output layer ran in int8 (\`--lm-head int8\`: weights quantized per row, activations per token), `
    + 'not in its stored float precision, so its figures include that quantization.');
}

function tokensUsed(used: number, total: number | null): string {
  if (total === null) return `its first ${formatCount(used)} tokens`;
  return used === total ? `all ${formatCount(total)} tokens` : `the first ${formatCount(used)} of its ${formatCount(total)} tokens`;
}

function continuation(c: Continuation, n: number): string[] {
  const show = (text: string, at: number | undefined) => (at === undefined ? cell(text) : `${cell(text.slice(0, at))}‖${emphasis(cell(text.slice(at)))}`);
  const at = c.divergenceChar;
  const lines = [`**Prompt ${n}:** ${cell(c.prompt)}`, '', '| model | continuation |', '|---|---|'];
  lines.push(`| original | ${show(c.original.text, at?.original)} |`);
  lines.push(`| packed | ${show(c.packed.text, at?.packed)} |`, '');
  lines.push(c.divergence === null
    ? `Identical for all ${c.original.ids.length} generated tokens.`
    : `First difference at generated token ${c.divergence} (0-based).`, '');
  return lines;
}

/** Italics that render: Markdown does not open or close emphasis next to whitespace, so it stays outside. */
function emphasis(text: string): string {
  const m = /^(\s*)(.*?)(\s*)$/s.exec(text)!;
  return m[2] ? `${m[1]}*${m[2]}*${m[3]}` : text;
}

/** Text made safe inside a Markdown table cell: no HTML, no table breaks, no stray emphasis. */
function cell(text: string): string {
  return text
    .replace(/[\\`*_[\]|<>#~]/g, (ch) => `\\${ch}`)
    .replace(/\r?\n/g, ' ↵ ');
}

function name(p: string): string {
  return path.basename(p.replace(/[\\/]+$/, '')) || p;
}

function num(x: number, digits = 4): string {
  if (!Number.isFinite(x)) return String(x);
  if (x !== 0 && (Math.abs(x) >= 1e6 || Math.abs(x) < 1e-4)) return x.toExponential(digits - 1);
  return formatSignificant(x, digits);
}
