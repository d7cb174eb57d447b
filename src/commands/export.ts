import { Args, Flags } from '@oclif/core';
import { TritpackCommand } from '../cli/base-command.js';
import { floatDTypeFlag, forceFlag } from '../cli/flags.js';
import { offlineFlag, resolveModelInput } from '../cli/model-input.js';
import { renderPairs } from '../cli/table.js';
import { formatBytes, formatCount } from '../units.js';
import { TritpackError } from '../errors.js';
import { exportGguf, type GgufExportSummary } from '../converters/export-gguf.js';
import { exportHfBitnet, type HfBitnetExportSummary, type LinearClass } from '../converters/export-hf-bitnet.js';
import { exportSafetensors, type SafetensorsExportSummary } from '../converters/export-safetensors.js';

type ExportSummary = ({ to: 'gguf' } & GgufExportSummary) | ({ to: 'hf-bitnet' } & HfBitnetExportSummary) | ({ to: 'safetensors' } & SafetensorsExportSummary);

export default class Export extends TritpackCommand {
  static override summary = 'Export a .tpk to GGUF (llama.cpp), an HF BitNet packed checkpoint, or plain safetensors.';
  static override description = `gguf: GGUF v3 for mainline llama.cpp — arch llama (Q/K rows permuted) or bitnet; ternary \
tensors as TQ1_0/TQ2_0 with d = gamma (codes exact); a tensor whose rows are not a multiple of 256 \
falls back to F16, with a warning naming it. hf-bitnet: transformers' offline packed BitNet format \
(uint8, 4 codes per byte, weight_scale; autobitlinear: weight_scale = gamma, bitlinear: 1/gamma) \
with config and tokenizer files, ready to push. safetensors: every weight dequantized (t·gamma) to \
one float dtype, for tools that know nothing else.`;

  static override examples = [
    '<%= config.bin %> export model.tpk --to gguf -o model.gguf --type tq1_0',
    '<%= config.bin %> export model.tpk --to hf-bitnet -o model-hf/',
    '<%= config.bin %> export model.tpk --to hf-bitnet -o model-hf/ --linear-class bitlinear',
    '<%= config.bin %> export model.tpk --to safetensors -o plain/ --dtype bf16 --json',
  ];

  static override args = {
    model: Args.string({ description: 'the .tpk file to export', required: true }),
  };

  static override flags = {
    to: Flags.string({ description: 'target format', options: ['gguf', 'hf-bitnet', 'safetensors'], required: true }),
    output: Flags.string({ char: 'o', description: 'output file (gguf) or directory (hf-bitnet, safetensors)', required: true }),
    type: Flags.string({ description: 'gguf: ggml ternary type (tq1_0 = 1.69 bits/weight, tq2_0 = 2.06, faster)', options: ['tq1_0', 'tq2_0'], default: 'tq2_0' }),
    dtype: floatDTypeFlag('safetensors: float dtype of every weight (default: the model\'s own); hf-bitnet: dtype of weight_scale (default bf16)'),
    'linear-class': Flags.string({ description: 'hf-bitnet: transformers BitNet layer class, which fixes the weight_scale convention', options: ['autobitlinear', 'bitlinear'], default: 'autobitlinear' }),
    force: forceFlag,
    offline: offlineFlag,
  };

  async run(): Promise<ExportSummary> {
    const { args, flags } = await this.parse(Export);
    const input = (await resolveModelInput(args.model, flags.offline)).path;
    let summary: ExportSummary;
    switch (flags.to) {
      case 'gguf':
        if (flags.dtype !== undefined) throw new TritpackError('--dtype does not apply to --to gguf (embeddings are F16, norms F32, ternary tensors --type)');
        summary = { to: 'gguf', ...exportGguf({ input, output: flags.output, type: flags.type as 'tq1_0' | 'tq2_0', force: flags.force }) };
        break;
      case 'hf-bitnet':
        summary = { to: 'hf-bitnet', ...exportHfBitnet({ input, output: flags.output, linearClass: flags['linear-class'] as LinearClass, ...(flags.dtype ? { scaleDType: flags.dtype } : {}), force: flags.force }) };
        break;
      default:
        summary = { to: 'safetensors', ...exportSafetensors({ input, output: flags.output, ...(flags.dtype ? { dtype: flags.dtype } : {}), force: flags.force }) };
    }
    for (const warning of summary.warnings) this.logToStderr(`Warning: ${warning}`);
    this.log(render(summary));
    return summary;
  }
}

function render(s: ExportSummary): string {
  switch (s.to) {
    case 'gguf': {
      const t = s.ternary;
      const share = t.weights === 0 ? 0 : t.weightsStillTernary / t.weights;
      return renderPairs([
        ['output', s.output],
        ['format', `GGUF v3, arch ${s.arch}, tokenizer ${s.tokenizer.model} (pre ${s.tokenizer.pre})`],
        ['tensors', `${s.tensors.length} (${t.tensors - t.fallback.length} ${s.type.toUpperCase()}, ${t.fallback.length} ternary fell back to F16)`],
        ['still ternary', `${formatCount(t.weightsStillTernary)} of ${formatCount(t.weights)} ternary weights (${(100 * share).toFixed(1)} %)`],
        ['size', formatBytes(s.outputBytes)],
      ]);
    }
    case 'hf-bitnet':
      return renderPairs([
        ['output', s.output],
        ['format', `transformers BitNet, linear_class ${s.linearClass}, offline; weight_scale = ${s.weightScale}`],
        ['packed', `${s.packed.length} tensors (uint8, 4 codes per byte)`],
        ['dequantized', s.unpacked.length === 0 ? 'none' : s.unpacked.map((u) => u.name).join(', ')],
        ['files', s.files.join(', ')],
      ]);
    default:
      return renderPairs([
        ['output', s.output],
        ['format', `plain safetensors, ${s.dtype}`],
        ['tensors', `${s.tensors} (${s.dequantized} ternary dequantized)`],
        ['files', s.files.join(', ')],
      ]);
  }
}
