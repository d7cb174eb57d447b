import { Args } from '@oclif/core';
import { TritpackCommand } from '../cli/base-command.js';
import { runtimeFlags, evalTextFlags } from '../cli/flags.js';
import { loadModelInput, offlineFlag } from '../cli/model-input.js';
import { renderPairs } from '../cli/table.js';
import { formatCount } from '../units.js';
import { windowProgress } from '../cli/window-progress.js';
import { evaluateTextFile, type TextEvalResult } from '../validate/evaluate.js';
import type { LmHeadPrecision } from '../runtime-min/index.js';

export type EvalOutput = TextEvalResult & { model: string; backend: string; lmHead: LmHeadPrecision };

export default class Eval extends TritpackCommand {
  static override summary = 'Perplexity and mean NLL of a model (HF directory or .tpk) on a UTF-8 text file.';
  static override description = `Tokenizes the whole text (BOS first, as transformers does), optionally keeps the first \
--max-tokens ids, and scores it in causal windows of --ctx tokens that slide by --stride (Hugging Face's \
perplexity recipe: each token is scored once, with up to ctx − stride tokens of context). The \
log-softmax is taken in float64. A text shorter than one window is an error: lower --ctx.`;

  static override examples = [
    '<%= config.bin %> eval fixtures/tinystories-656K --text fixtures/text/tinystories_sample.txt --max-tokens 512',
    '<%= config.bin %> eval model.tpk --text wiki.txt --ctx 1024 --stride 512 --json',
  ];

  static override args = {
    model: Args.string({ description: 'HF checkpoint directory, .tpk file, or hub repo id (owner/name[@revision])', required: true }),
  };

  static override flags = {
    ...evalTextFlags,
    ...runtimeFlags,
    offline: offlineFlag,
  };

  async run(): Promise<EvalOutput> {
    const { args, flags } = await this.parse(Eval);
    const model = await loadModelInput(args.model, flags);
    const progress = windowProgress('eval', this.jsonEnabled() ? undefined : process.stderr);
    try {
      const result = evaluateTextFile(model, flags.text, { ctx: flags.ctx, stride: flags.stride, maxTokens: flags['max-tokens'] }, progress.update);
      progress.done();
      this.log(renderPairs([
        ['perplexity', result.perplexity.toPrecision(6)],
        ['mean NLL', `${result.meanNll.toFixed(6)} nats/token`],
        ['tokens', `${formatCount(result.scoredTokens)} scored of ${formatCount(result.tokens)} used (${result.totalTokens === null ? 'from the start of' : `${formatCount(result.totalTokens)} in`} ${result.text})`],
        ['windows', `${result.windows} × ${result.ctx} tokens, stride ${result.stride}`],
        ...(model.lmHead === 'int8' ? [['LM head', 'int8 (--lm-head int8), not the stored float weights'] as [string, string]] : []),
      ]));
      this.logToStderr(`${Math.round(result.tokensPerSecond)} tokens/s (prefill, ${model.backend} backend${model.lmHead === 'int8' ? ', int8 LM head' : ''}, ${result.seconds.toFixed(2)} s)`);
      return { ...result, model: args.model, backend: model.backend, lmHead: model.lmHead };
    } finally {
      model.close();
    }
  }
}
