/**
 * The model card (README.md) pushed with a packed model: YAML front matter the hub indexes
 * (license, base_model, tags, pipeline_tag) and a body that says how the model was made, what it
 * weighs, how it validated (when the .tpk carries a report) and how to run it. Everything comes
 * from the .tpk header (and the source's own card for its licence); nothing local (paths, tokens)
 * is written into it.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { TpkHeader } from '../formats/tpk.js';
import { sourceFromCachePath } from './cache.js';
import { formatBytes, formatCount, formatSignificant } from '../units.js';

export const CARD_TAGS = ['ternary', 'bitnet', '1.58-bit', 'tritpack'];

export interface ModelCardInput {
  header: TpkHeader;
  /** The .tpk's name in the repo and its size in bytes. */
  fileName: string;
  fileSize: number;
  /** The repo it is pushed to. */
  repo: string;
}

export interface ModelCardFacts {
  license?: string;
  baseModel?: string;
  baseRevision?: string;
  parameters: { total: number; ternarized: number; kept: number };
  bytes: { ternarized: number; kept: number; sourceWeights?: number };
  bitsPerWeight: { ternarized: number; overall: number; file: number };
}

export function modelCardFacts(input: ModelCardInput): ModelCardFacts {
  const { header } = input;
  const parameters = { total: 0, ternarized: 0, kept: 0 };
  const bytes: ModelCardFacts['bytes'] = { ternarized: 0, kept: 0 };
  for (const t of header.tensors) {
    const count = t.shape.reduce((a, b) => a * b, 1);
    const stored = t.data.length + (t.scales?.length ?? 0);
    const ternary = t.encoding === 't158' || t.encoding === 't2';
    parameters.total += count;
    parameters[ternary ? 'ternarized' : 'kept'] += count;
    bytes[ternary ? 'ternarized' : 'kept'] += stored;
  }
  const weights = header.source.files?.filter((f) => f.name.endsWith('.safetensors'));
  if (weights && weights.length > 0) bytes.sourceWeights = weights.reduce((s, f) => s + f.size, 0);
  const fromPath = header.source.path ? sourceFromCachePath(header.source.path) : undefined;
  const baseModel = header.source.repo ?? fromPath?.repo;
  const baseRevision = header.source.revision ?? (header.source.repo ? undefined : fromPath?.commit);
  return {
    license: findLicense(header),
    ...(baseModel ? { baseModel } : {}),
    ...(baseRevision ? { baseRevision } : {}),
    parameters,
    bytes,
    bitsPerWeight: {
      ternarized: ratio(8 * bytes.ternarized, parameters.ternarized),
      overall: ratio(8 * (bytes.ternarized + bytes.kept), parameters.total),
      file: ratio(8 * input.fileSize, parameters.total),
    },
  };
}

export function renderModelCard(input: ModelCardInput): string {
  const facts = modelCardFacts(input);
  const { header } = input;
  const conversion = header.conversion ?? {};
  const front = frontMatter(facts.license, facts.baseModel);

  const title = input.repo.split('/').pop() ?? input.repo;
  const source = facts.baseModel ? `[${facts.baseModel}](https://huggingface.co/${facts.baseModel})` : 'a local checkpoint';
  const body: string[] = [`# ${title}`, ''];
  body.push(`A ternary (BitNet b1.58 style, weights in {−1, 0, +1} times a scale) version of ${source}, packed by `
    + `${header.producer.name} ${header.producer.version} into one \`.tpk\` file that holds the weights, config and tokenizer.`, '');
  if (!facts.license) body.push('> The source model\'s licence was not recorded in the .tpk; the source model\'s own licence applies to this version.', '');

  body.push('## How it was made', '', '| | |', '|---|---|');
  body.push(`| Source | ${source}${facts.baseRevision ? ` at \`${facts.baseRevision}\`` : ''} |`);
  body.push(`| Packing | ${describePacking(conversion.packing)} |`);
  // 'imported': every ternary tensor came ternary from the source, so no absmean setting applies
  const imported = Array.isArray(conversion.imported) ? conversion.imported.length : 0;
  if (conversion.scale !== 'imported') body.push(`| Scale granularity | ${text(conversion.scale) ?? 'tensor'} (absmean γ = mean\\|W\\| per scale group) |`);
  if (conversion.formula !== undefined && conversion.formula !== 'imported') body.push(`| Rounding formula | ${text(conversion.formula)} |`);
  if (imported > 0) body.push(`| Imported ternary tensors | ${imported}: codes and scales taken from the already-ternary source, not recomputed |`);
  const include = list(conversion.include);
  const exclude = list(conversion.exclude);
  if (include) body.push(`| Include | ${include} |`);
  if (exclude) body.push(`| Exclude | ${exclude} |`);
  if (conversion.keepDType) body.push(`| Kept tensors stored as | ${text(conversion.keepDType)} |`);
  body.push(`| Created | ${header.createdAt} |`, '');

  const p = facts.parameters;
  body.push('## Size', '', '| | |', '|---|---|');
  body.push(`| File | \`${input.fileName}\`, ${formatBytes(input.fileSize)} |`);
  if (facts.bytes.sourceWeights !== undefined) body.push(`| Source weights | ${formatBytes(facts.bytes.sourceWeights)} (safetensors) |`);
  body.push(`| Parameters | ${formatCount(p.total)}: ${formatCount(p.ternarized)} ternarized, ${formatCount(p.kept)} kept in higher precision (embeddings, norms, …) |`);
  body.push(`| Bits per weight, ternarized tensors | ${fixed(facts.bitsPerWeight.ternarized)} (codes + scales) |`);
  body.push(`| Bits per weight, all tensors | ${fixed(facts.bitsPerWeight.overall)} |`);
  body.push(`| Bits per weight, whole file | ${fixed(facts.bitsPerWeight.file)} (header, config and tokenizer included) |`, '');

  body.push(...renderValidation(header.validation));

  body.push('## How to run it', '', 'With [tritpack](https://www.npmjs.com/package/tritpack) (Node ≥ 20):', '', '```sh');
  body.push(`dir=$(tritpack pull ${input.repo})   # prints the local snapshot directory`);
  body.push(`tritpack generate "$dir/${input.fileName}" --prompt "Once upon a time" -n 64`);
  body.push(`tritpack eval "$dir/${input.fileName}" --text your-text.txt`);
  body.push('```', '');
  body.push('For llama.cpp, export it to GGUF '
    + `(\`tritpack export "$dir/${input.fileName}" --to gguf -o ${ggufName(input.fileName)}\`) and load that with llama.cpp's tools.`, '');
  return [...front, ...body].join('\n');
}

/** The card for a directory pushed without a .tpk (e.g. an HF BitNet or GGUF export): its files and how to get them. */
export function renderDirectoryCard(input: { repo: string; files: { path: string; size: number }[]; config?: Record<string, unknown> }): string {
  const license = typeof input.config?.license === 'string' ? input.config.license : undefined;
  const title = input.repo.split('/').pop() ?? input.repo;
  const body = [`# ${title}`, '', `A ternary (BitNet b1.58 style) model uploaded with tritpack.`
    + (input.config?.model_type ? ` Architecture: \`${String(input.config.model_type)}\`.` : ''), ''];
  body.push('## Files', '', '| file | size |', '|---|---:|', ...input.files.map((f) => `| \`${f.path}\` | ${formatBytes(f.size)} |`), '');
  body.push('## How to get it', '', '```sh', `tritpack pull ${input.repo} --include '*'`, '```', '');
  if (input.files.some((f) => f.path.endsWith('.gguf'))) body.push('The `.gguf` file loads in llama.cpp.', '');
  return [...frontMatter(license, undefined), ...body].join('\n');
}

function frontMatter(license: string | undefined, baseModel: string | undefined): string[] {
  const front = ['---'];
  if (license) front.push(`license: ${yamlString(license)}`);
  if (baseModel) front.push(`base_model: ${yamlString(baseModel)}`, 'base_model_relation: quantized');
  front.push('tags:', ...CARD_TAGS.map((t) => `- ${yamlString(t)}`), 'pipeline_tag: text-generation', '---', '');
  return front;
}

/**
 * The validation section. The report is validate's (F's) object; when it carries its own Markdown
 * rendering that is used as is, otherwise the verdict, thresholds and metrics that are present are
 * tabulated, so a report of another shape still shows rather than breaking the card.
 */
export function renderValidation(validation: unknown): string[] {
  if (validation === undefined || validation === null || typeof validation !== 'object') return [];
  const v = validation as Record<string, unknown>;
  if (typeof v.markdown === 'string' && v.markdown.trim() !== '') return [v.markdown.trim(), ''];
  const out = ['## Validation', ''];
  if (typeof v.verdict === 'string') out.push(`**Verdict: ${v.verdict}**${Array.isArray(v.reasons) && v.reasons.length ? ` — ${v.reasons.map(String).join('; ')}` : ''}`, '');
  const rows = flatten(v.metrics ?? {}, '');
  if (rows.length > 0) out.push('| metric | value |', '|---|---:|', ...rows.map(([k, x]) => `| ${k} | ${x} |`), '');
  const limits = flatten(v.thresholds ?? {}, '');
  if (limits.length > 0) out.push('| threshold | value |', '|---|---:|', ...limits.map(([k, x]) => `| ${k} | ${x} |`), '');
  return out.length > 2 ? out : [];
}

/** The licence the source declared: its model card's front matter, config or tokenizer config. */
function findLicense(header: TpkHeader): string | undefined {
  const readme = header.files?.['README.md'] ?? sourceReadme(header.source.path);
  const candidates = [readme && frontMatterLicense(readme), jsonField(header.files?.['config.json'], 'license'), jsonField(header.files?.['tokenizer_config.json'], 'license'),
    (header.source as Record<string, unknown>).license, header.conversion?.license];
  const found = candidates.find((c): c is string => typeof c === 'string' && c.trim() !== '');
  return found?.trim();
}

/** The `license:` of a card's YAML front matter: only there, since a card's body may quote licences freely. */
function frontMatterLicense(card: string): string | undefined {
  const front = /^---\r?\n([\s\S]*?)\r?\n---\r?(?:\n|$)/.exec(card)?.[1];
  return front === undefined ? undefined : /^license:\s*["']?([^"'\r\n]+?)["']?\s*$/m.exec(front)?.[1];
}

/** The source checkpoint's own model card, when the .tpk was converted from a directory still on this machine. */
function sourceReadme(dir: string | undefined): string | undefined {
  const file = dir ? path.join(dir, 'README.md') : undefined;
  return file && existsSync(file) ? readFileSync(file, 'utf8') : undefined;
}

function jsonField(textValue: string | undefined, key: string): unknown {
  if (!textValue) return undefined;
  try { return (JSON.parse(textValue) as Record<string, unknown>)[key]; } catch { return undefined; }
}

function flatten(value: unknown, prefix: string): [string, string][] {
  if (typeof value === 'number') return [[prefix, Number.isInteger(value) ? String(value) : formatSignificant(value, 5)]];
  if (typeof value === 'string' || typeof value === 'boolean') return [[prefix, String(value)]];
  if (value && typeof value === 'object' && !Array.isArray(value)) {
    return Object.entries(value).flatMap(([k, x]) => flatten(x, prefix ? `${prefix} ${k}` : k));
  }
  return [];
}

function describePacking(packing: unknown): string {
  if (packing === 't158') return 't158: base-3, 5 ternary codes per byte (1.6 bits)';
  if (packing === 't2') return 't2: 2 bits per ternary code';
  return text(packing) ?? 'unknown';
}

function text(value: unknown): string | undefined {
  return typeof value === 'string' || typeof value === 'number' ? String(value) : undefined;
}

function list(value: unknown): string | undefined {
  return Array.isArray(value) && value.length > 0 ? value.map((x) => `\`${String(x)}\``).join(', ') : undefined;
}

/** A YAML double-quoted scalar (JSON string syntax is valid YAML). */
function yamlString(value: string): string {
  return /^[A-Za-z0-9][A-Za-z0-9._/-]*$/.test(value) ? value : JSON.stringify(value);
}

function ggufName(tpkName: string): string {
  return `${tpkName.replace(/\.tpk$/, '')}.gguf`;
}

function ratio(a: number, b: number): number { return b > 0 ? a / b : 0; }
function fixed(x: number): string { return x.toFixed(3); }
