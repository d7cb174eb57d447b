import { Args, Flags } from '@oclif/core';
import { TritpackCommand } from '../cli/base-command.js';
import { offlineFlag, resolveModelInput } from '../cli/model-input.js';
import { renderPairs, renderTable } from '../cli/table.js';
import { formatBytes, formatCount } from '../units.js';
import { inspectModel, type InspectReport } from '../converters/inspect.js';
import { TritpackError } from '../errors.js';

export default class Inspect extends TritpackCommand {
  static override summary = 'Show what a .tpk, a .safetensors file or a checkpoint directory holds.';
  static override description = `Prints the header and provenance (for .tpk), a config summary, one row per tensor \
(shape, encoding, bytes, bits/weight) and the totals. --verify re-hashes every tensor blob of a .tpk \
and exits non-zero on any mismatch.`;

  static override examples = [
    '<%= config.bin %> inspect model.tpk',
    '<%= config.bin %> inspect model.tpk --verify',
    '<%= config.bin %> inspect fixtures/llama-256 --json',
  ];

  static override args = {
    target: Args.string({ description: '.tpk file, .safetensors file or checkpoint directory', required: true }),
  };

  static override flags = {
    verify: Flags.boolean({ description: 'check every tensor blob against its sha256 (.tpk only)', default: false }),
    offline: offlineFlag,
  };

  async run(): Promise<InspectReport> {
    const { args, flags } = await this.parse(Inspect);
    const report = inspectModel((await resolveModelInput(args.target, flags.offline)).path, { verify: flags.verify });
    this.log(renderReport(report));
    if (report.verify && !report.verify.ok) {
      const names = report.verify.failed.map((f) => f.name);
      throw new TritpackError(`${report.path}: ${names.length} of ${report.verify.checked} tensors fail their sha256 check (${names.slice(0, 5).join(', ')}${names.length > 5 ? ', …' : ''})`);
    }
    return report;
  }
}

function renderReport(r: InspectReport): string {
  const pairs: [string, string][] = [['file', `${r.path} (${r.kind}, ${formatBytes(r.fileBytes)})`]];
  if (r.tpk) {
    pairs.push(['format', `tpk v${r.tpk.formatVersion}, by ${r.tpk.producer.name} ${r.tpk.producer.version}, ${r.tpk.createdAt}`]);
    const src = r.tpk.source;
    const from = [src.repo && `${src.repo}${src.revision ? `@${src.revision}` : ''}`, src.path].filter(Boolean).join(' ');
    if (from) pairs.push(['source', `${from}${src.files ? ` (${src.files.length} files hashed)` : ''}`]);
    const c = r.tpk.conversion;
    if (c['packing'] !== undefined) pairs.push(['conversion', `packing ${String(c['packing'])}, scale ${String(c['scale'])}, formula ${String(c['formula'])}`]);
    const aliases = (c['aliases'] ?? {}) as Record<string, string>;
    for (const [name, target] of Object.entries(aliases)) pairs.push(['tied', `${name} = ${target}`]);
    pairs.push(['embedded files', r.tpk.files.join(', ') || 'none']);
    pairs.push(['validation', r.tpk.validated ? 'report embedded' : 'none']);
  }
  if (r.config) {
    const c = r.config;
    const v = (x: number | undefined) => (x === undefined ? '?' : String(x));
    pairs.push(['model', `${c.architecture ?? c.modelType ?? 'unknown'}: ${v(c.layers)} layers, hidden ${v(c.hiddenSize)}, intermediate ${v(c.intermediateSize)}, heads ${v(c.heads)} (kv ${v(c.kvHeads)}), vocab ${v(c.vocabSize)}${c.tiedEmbeddings ? ', tied embeddings' : ''}`]);
  }
  const table = renderTable(r.tensors, [
    { header: 'tensor', value: (t) => t.name },
    { header: 'shape', value: (t) => t.shape.join('×') },
    { header: 'encoding', value: (t) => t.encoding },
    { header: 'bytes', value: (t) => formatCount(t.bytes), align: 'right' },
    { header: 'bits/w', value: (t) => t.bitsPerWeight.toFixed(3), align: 'right' },
  ]);
  const t = r.totals;
  const totals: [string, string][] = [
    ['tensors', `${t.tensors} (${t.ternary.tensors} ternary)`],
    ['parameters', `${formatCount(t.parameters)} (${formatCount(t.ternary.parameters)} ternary)`],
    ['tensor bytes', `${formatBytes(t.bytes)} (${formatBytes(t.ternary.bytes)} ternary)`],
    ['bits/weight', `${t.bitsPerWeight.toFixed(3)} overall${t.ternary.tensors > 0 ? `, ${t.ternary.bitsPerWeight.toFixed(3)} over ternary tensors` : ''}`],
  ];
  if (r.verify) totals.push(['verify', r.verify.ok ? `all ${r.verify.checked} tensors match their sha256` : `${r.verify.failed.length} of ${r.verify.checked} tensors FAIL`]);
  return [renderPairs(pairs), '', table, '', renderPairs(totals)].join('\n');
}
