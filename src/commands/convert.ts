import { Args, Flags } from '@oclif/core';
import path from 'node:path';
import { TritpackCommand } from '../cli/base-command.js';
import { ConvertSpinner } from '../cli/convert-progress.js';
import { floatDTypeFlag, forceFlag } from '../cli/flags.js';
import { offlineFlag, resolveModelInput } from '../cli/model-input.js';
import { renderPairs } from '../cli/table.js';
import { formatBytes, formatCount } from '../units.js';
import { renderValidationSummary } from '../cli/validation-summary.js';
import { windowProgress } from '../cli/window-progress.js';
import { convertCheckpoint, type ConversionSummary } from '../converters/convert.js';
import { parseScaleGranularity } from '../converters/ternarize.js';
import { runValidation } from '../validate/run.js';
import type { ValidationReport } from '../validate/validate.js';

export default class Convert extends TritpackCommand {
  static override summary = 'Convert a Hugging Face checkpoint directory to a packed ternary .tpk file.';
  static override description = `Ternarizes the attention and MLP projection weights with absmean (BitNet b1.58) and packs them; \
embeddings, the LM head, norms and biases are kept. The conversion streams one tensor at a time, so \
memory stays flat whatever the model's size. A model that was not trained for ternary weights is \
usually ruined by plain absmean: the command says so, and \`tritpack validate\` measures it.`;

  static override examples = [
    '<%= config.bin %> convert fixtures/tinystories-656K -o tiny.tpk',
    '<%= config.bin %> convert ./Llama-3.2-1B -o llama.tpk --packing t2 --scale channel --keep-dtype f16',
    '<%= config.bin %> convert fixtures/bitnet-tiny -o bitnet.tpk --validate --text fixtures/text/tinystories_sample.txt',
    "<%= config.bin %> convert ./model -o model.tpk --exclude 'model.layers.0.*' --json",
  ];

  static override args = {
    dir: Args.string({ description: 'checkpoint directory (config.json + model.safetensors or a sharded index; float master weights or HF offline-packed BitNet), a .gguf file, or a hub repo id', required: true }),
  };

  static override flags = {
    output: Flags.string({ char: 'o', description: 'output .tpk file', required: true }),
    packing: Flags.string({ description: 'ternary packing: t158 = 5 codes/byte (1.6 bits), t2 = 4 codes/byte (2 bits)', options: ['t158', 't2'], default: 't158' }),
    scale: Flags.string({ description: 'absmean scale granularity: tensor | channel | group:N', default: 'tensor' }),
    formula: Flags.string({ description: 'reference: round(W·(1/max(γ,1e-5))) as transformers; paper: round(W/(γ+1e-5))', options: ['reference', 'paper'], default: 'reference' }),
    include: Flags.string({ description: 'also ternarize tensors matching this glob (repeatable)', multiple: true }),
    exclude: Flags.string({ description: 'never ternarize tensors matching this glob (repeatable; beats --include)', multiple: true }),
    'keep-dtype': floatDTypeFlag('store kept float tensors in this dtype (default: their source dtype, bit-identical)'),
    force: forceFlag,
    offline: offlineFlag,
    'allow-nonfinite': Flags.boolean({ description: 'convert weights holding NaN/Inf anyway (they count as 0 when ternarizing)', default: false }),
    validate: Flags.boolean({ description: 'then compare the .tpk with the original on --text (as `tritpack validate`, default thresholds) and embed the report in the .tpk; exit 1 on FAIL', dependsOn: ['text'] }),
    text: Flags.string({ description: 'UTF-8 evaluation text for --validate', dependsOn: ['validate'] }),
  };

  async run(): Promise<ConversionSummary | (ConversionSummary & { validation: ValidationReport })> {
    const { args, flags } = await this.parse(Convert);
    const progress = new ConvertSpinner(this.jsonEnabled() ? undefined : process.stderr);
    const resolved = await resolveModelInput(args.dir, flags.offline);
    try {
      const summary = await convertCheckpoint({
        input: resolved.path,
        ...(resolved.repo ? { sourceRepo: { repo: resolved.repo, revision: resolved.commit ?? resolved.revision } } : {}),
        output: flags.output,
        packing: flags.packing as 't158' | 't2',
        scale: parseScaleGranularity(flags.scale),
        formula: flags.formula as 'reference' | 'paper',
        include: flags.include,
        exclude: flags.exclude,
        keepDType: flags['keep-dtype'],
        force: flags.force,
        allowNonFinite: flags['allow-nonfinite'],
        onProgress: (event) => progress.update(event, (message) => this.logToStderr(`Warning: ${message}`)),
      });
      const shown = path.relative(process.cwd(), summary.output);
      progress.done(`wrote ${shown === '' || shown.startsWith('..') ? summary.output : shown}`);
      this.log(renderSummary(summary));
      if (!flags.validate) return summary;
      return { ...summary, validation: await this.validate(resolved.path, summary.output, flags.text!) };
    } catch (err) {
      progress.fail();
      throw err;
    }
  }

  /** The `tritpack validate` run on the fresh file; exit 1 on FAIL without throwing, so --json still prints. */
  private async validate(original: string, packed: string, text: string): Promise<ValidationReport> {
    const progress = windowProgress('validate', this.jsonEnabled() ? undefined : process.stderr);
    const result = await runValidation({ original, packed, text, embed: true, onProgress: progress.update, onStage: progress.stage });
    progress.done();
    this.log(`\n${renderValidationSummary(result.report)}\n(the report is embedded in ${packed}; tritpack push puts it on the model card)`);
    process.exitCode = result.exitCode;
    return result.report;
  }
}

function renderSummary(s: ConversionSummary): string {
  const pct = (x: number) => `${(100 * x).toFixed(1)} %`;
  return renderPairs([
    ['output', s.output],
    ['packing', `${s.packing}, scale ${s.scale}, formula ${s.formula}`],
    ['tensors', `${s.tensors.ternarized} ternarized${s.imported > 0 ? ` (${s.imported} imported as stored)` : ''}, ${s.tensors.kept} kept (${s.tensors.total} in all)`],
    ['parameters', `${formatCount(s.parameters.ternarized)} ternarized, ${formatCount(s.parameters.kept)} kept (${formatCount(s.parameters.total)} in all)`],
    ['input', formatBytes(s.inputBytes)],
    ['output size', `${formatBytes(s.outputBytes)} (${pct(s.inputBytes === 0 ? 0 : s.outputBytes / s.inputBytes)} of the input)`],
    ['bits/weight', `${s.bitsPerWeight.ternarized.toFixed(3)} over ternarized tensors (scales included), ${s.bitsPerWeight.overall.toFixed(3)} overall`],
    ['zeros', `${pct(s.zeroFraction)} of ternary codes`],
    ['time', `${s.seconds.toFixed(2)} s, ${s.megabytesPerSecond.toFixed(1)} MB/s of input`],
    ['ternary-trained', s.ternaryTraining === 'declared' ? 'yes (config declares BitNet)' : s.ternaryTraining === 'ternary-valued' ? 'yes (weights already ternary)' : 'no: run `tritpack validate` before using this model'],
    ...Object.entries(s.aliases).map(([name, target]): [string, string] => ['tied', `${name} = ${target} (stored once)`]),
  ]);
}
