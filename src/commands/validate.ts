import { Args, Flags } from '@oclif/core';
import { TritpackCommand } from '../cli/base-command.js';
import { runtimeFlags, evalTextFlags, lmHeadFlag, parseNumberFlag } from '../cli/flags.js';
import { offlineFlag, resolveModelInput } from '../cli/model-input.js';
import { renderValidationSummary } from '../cli/validation-summary.js';
import { windowProgress } from '../cli/window-progress.js';
import { runValidation } from '../validate/run.js';
import { checkThresholds, DEFAULT_THRESHOLDS } from '../validate/thresholds.js';
import type { ValidationReport } from '../validate/validate.js';

export default class Validate extends TritpackCommand {
  static override summary = 'Compare a packed model with its original on the same text: perplexity, KL, top-1 agreement, continuations; PASS/FAIL.';
  static override description = `Runs both models on the same token windows and reports the perplexity of each and their \
ratio, mean and p99 KL(original‖packed) per token, top-1 agreement, greedy continuations side by side \
(first divergence marked) and a per-tensor table (relative Frobenius error, zero codes, γ) recomputed \
from the original weights and the packed codes. Exit code 0 = PASS, 1 = FAIL (a threshold missed), \
2 = usage or input error.

Default thresholds: --max-ppl-ratio ${DEFAULT_THRESHOLDS.maxPplRatio}, --min-top1 ${DEFAULT_THRESHOLDS.minTop1}, \
--max-kl ${DEFAULT_THRESHOLDS.maxKl} (a packed model that behaves like its original). A ternary-trained \
BitNet packs losslessly and passes; post-training ternarization of an ordinary float model fails them \
by orders of magnitude, and the report says why.`;

  static override examples = [
    '<%= config.bin %> validate fixtures/bitnet-tiny bitnet-tiny.tpk --text fixtures/text/tinystories_sample.txt --ctx 256',
    '<%= config.bin %> validate ./Llama-3.2-1B llama.tpk --text wiki.txt --max-tokens 4096 --report report.md --embed',
    '<%= config.bin %> validate ./model model.tpk --text eval.txt --max-ppl-ratio 1.05 --min-top1 0.95 --max-kl 0.02 --json',
  ];

  static override args = {
    original: Args.string({ description: 'the original: HF checkpoint directory or hub repo id (owner/name[@revision])', required: true }),
    packed: Args.string({ description: 'the packed model: .tpk file (or a hub repo id holding one)', required: true }),
  };

  static override flags = {
    ...evalTextFlags,
    prompts: Flags.string({ description: 'file of continuation prompts, one per line [default: the opening words of the text\'s first 3 lines]' }),
    'new-tokens': Flags.integer({ description: 'tokens generated per continuation (0: no continuations)', default: 32 }),
    'max-ppl-ratio': Flags.string({ description: 'largest allowed perplexity(packed) / perplexity(original), ≥ 1', default: String(DEFAULT_THRESHOLDS.maxPplRatio) }),
    'min-top1': Flags.string({ description: 'smallest allowed top-1 agreement, 0..1', default: String(DEFAULT_THRESHOLDS.minTop1) }),
    'max-kl': Flags.string({ description: 'largest allowed mean KL(original‖packed) in nats/token, ≥ 0', default: String(DEFAULT_THRESHOLDS.maxKl) }),
    report: Flags.string({ description: 'write the Markdown report (model-card ready) to this file' }),
    embed: Flags.boolean({ description: 'store the report in the .tpk header, where `tritpack push` puts it on the model card', default: false }),
    ...runtimeFlags,
    'lm-head': lmHeadFlag('LM head precision of the packed model: float (as stored) or int8 (weights per row × activations per token; '
      + 'measures what an int8 head costs); the original always keeps its float head, and the report records the choice'),
    offline: offlineFlag,
  };

  async run(): Promise<ValidationReport> {
    const { args, flags } = await this.parse(Validate);
    // Range-checked before any repo id is pulled or model loaded.
    const thresholds = checkThresholds({
      maxPplRatio: parseNumberFlag('--max-ppl-ratio', flags['max-ppl-ratio']),
      minTop1: parseNumberFlag('--min-top1', flags['min-top1']),
      maxKl: parseNumberFlag('--max-kl', flags['max-kl']),
    });
    const progress = windowProgress('validate', this.jsonEnabled() ? undefined : process.stderr);
    const resolve = async (spec: string, want?: 'tpk') => (await resolveModelInput(spec, flags.offline, want)).path;
    const result = await runValidation({
      // A repo that holds both the original checkpoint and its .tpk: the packed side is the .tpk.
      original: await resolve(args.original), packed: await resolve(args.packed, 'tpk'), text: flags.text,
      ctx: flags.ctx, stride: flags.stride, maxTokens: flags['max-tokens'],
      promptsFile: flags.prompts, newTokens: flags['new-tokens'], thresholds,
      reportPath: flags.report, embed: flags.embed, backend: flags.backend, threads: flags.threads, packedLmHead: flags['lm-head'],
      onProgress: progress.update, onStage: progress.stage,
    });
    progress.done();
    this.log(renderValidationSummary(result.report));
    if (result.reportPath) this.logToStderr(`report written to ${result.reportPath}`);
    if (result.embedded) this.logToStderr(`report embedded in ${args.packed}`);
    // Exit 1 on FAIL without throwing, so --json still prints the report.
    process.exitCode = result.exitCode;
    return result.report;
  }
}
