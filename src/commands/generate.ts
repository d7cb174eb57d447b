import { Args, Flags } from '@oclif/core';
import { TritpackCommand } from '../cli/base-command.js';
import { runtimeFlags, parseNumberFlag } from '../cli/flags.js';
import { loadModelInput, offlineFlag } from '../cli/model-input.js';
import { TritpackError } from '../errors.js';
import { TextStreamer } from '../validate/text-stream.js';
import type { LmHeadPrecision } from '../runtime-min/index.js';

export interface GenerateOutput {
  model: string;
  prompt: string;
  promptIds: number[];
  ids: number[];
  text: string;
  /** Seconds to the first generated token (prompt prefill included), and for the whole run. */
  firstTokenSeconds: number;
  seconds: number;
  /** Generated tokens per second after the first (the decode rate). */
  tokensPerSecond: number;
  backend: string;
  lmHead: LmHeadPrecision;
}

export default class Generate extends TritpackCommand {
  static override summary = 'Generate text from a prompt with a model (HF directory or .tpk), streaming it as it comes.';
  static override description = `Greedy at --temperature 0 (the default); otherwise samples with optional top-k / top-p \
and a --seed for repeatable output. Stops at the model's EOS token unless --ignore-eos. Text goes to \
stdout as tokens arrive (characters split across tokens are printed once complete); tokens/s goes to stderr.`;

  static override examples = [
    '<%= config.bin %> generate fixtures/tinystories-656K --prompt "<|start_story|>Once upon a time, " --no-special-tokens -n 64',
    '<%= config.bin %> generate model.tpk --prompt "The capital of France is" --temperature 0.8 --top-p 0.95 --seed 1',
    '<%= config.bin %> generate model.tpk --prompt "Hello" --json',
  ];

  static override args = {
    model: Args.string({ description: 'HF checkpoint directory, .tpk file, or hub repo id (owner/name[@revision])', required: true }),
  };

  static override flags = {
    prompt: Flags.string({ char: 'p', description: 'prompt text', required: true }),
    'max-new-tokens': Flags.integer({ char: 'n', description: 'tokens to generate', default: 64 }),
    temperature: Flags.string({ description: 'sampling temperature; 0 = greedy', default: '0' }),
    'top-k': Flags.integer({ description: 'sample only among the k most likely tokens' }),
    'top-p': Flags.string({ description: 'sample only within the smallest set of tokens with this total probability' }),
    seed: Flags.integer({ description: 'random seed for sampling' }),
    'special-tokens': Flags.boolean({ description: 'add the tokenizer\'s special tokens (BOS) to the prompt', default: true, allowNo: true }),
    'ignore-eos': Flags.boolean({ description: 'keep generating past the EOS token', default: false }),
    ...runtimeFlags,
    offline: offlineFlag,
  };

  async run(): Promise<GenerateOutput> {
    const { args, flags } = await this.parse(Generate);
    const temperature = parseNumberFlag('--temperature', flags.temperature, (x) => x >= 0, 'a number ≥ 0');
    const topP = flags['top-p'] === undefined ? undefined : parseNumberFlag('--top-p', flags['top-p'], (x) => x > 0 && x <= 1, 'a number in (0, 1]');
    const topK = flags['top-k'];
    if (topK !== undefined && topK < 1) throw new TritpackError(`--top-k must be a positive integer, got ${topK}`);
    const maxNewTokens = flags['max-new-tokens'];
    if (maxNewTokens < 1) throw new TritpackError(`--max-new-tokens must be a positive integer, got ${maxNewTokens}`);

    const model = await loadModelInput(args.model, flags);
    try {
      const promptIds = model.tokenizer.encode(flags.prompt, { addSpecialTokens: flags['special-tokens'] });
      if (promptIds.length === 0) throw new TritpackError('the prompt encodes to no tokens: give some text, or keep special tokens (BOS) on');
      const streaming = !this.jsonEnabled();
      const streamer = new TextStreamer((ids) => model.tokenizer.decode(ids), promptIds);
      const started = performance.now();
      let firstTokenAt = started;
      const ids = model.generate(promptIds, { maxNewTokens, temperature, topK, topP, seed: flags.seed, stopAtEos: !flags['ignore-eos'] }, (id) => {
        if (firstTokenAt === started) firstTokenAt = performance.now();
        const delta = streamer.push(id);
        if (streaming && delta) process.stdout.write(delta);
      });
      const tail = streamer.flush();
      const seconds = (performance.now() - started) / 1000;
      if (streaming) process.stdout.write(`${tail}\n`);
      const firstTokenSeconds = (firstTokenAt - started) / 1000;
      const tokensPerSecond = ids.length > 1 ? (ids.length - 1) / Math.max(seconds - firstTokenSeconds, 1e-9) : 0;
      this.logToStderr(`${ids.length} tokens in ${seconds.toFixed(2)} s: ${tokensPerSecond.toFixed(1)} tokens/s after a first token at ${(firstTokenSeconds * 1000).toFixed(0)} ms (prompt ${promptIds.length} tokens, ${model.backend} backend${model.lmHead === 'int8' ? ', int8 LM head' : ''})`);
      return {
        model: args.model, prompt: flags.prompt, promptIds, ids, text: streamer.text,
        firstTokenSeconds, seconds, tokensPerSecond, backend: model.backend, lmHead: model.lmHead,
      };
    } finally {
      model.close();
    }
  }
}
