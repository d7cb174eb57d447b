import { Args, Flags } from '@oclif/core';
import { TritpackCommand } from '../cli/base-command.js';
import { hubFlags } from '../cli/flags.js';
import { offlineFlag } from '../cli/model-input.js';
import { pullModel, type PullProgress, type PullResult } from '../hub/pull.js';
import { TransferDisplay } from '../cli/transfer-progress.js';
import { formatBytes } from '../units.js';

export default class Pull extends TritpackCommand {
  static override summary = 'Download a model from the Hugging Face hub into the standard hub cache.';
  static override description = `Fetches config.json, generation_config.json, the tokenizer files, the model card and the \
safetensors weights (single or sharded, with the index) — or the files --include names — into the hub cache \
that Python's huggingface_hub uses (HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub), verifying \
the sha256 of every LFS file. An interrupted pull resumes where it stopped; finished files are never fetched \
again. Pickle weights (*.bin, *.pt, *.ckpt) are refused: loading them runs arbitrary code. Prints the local \
snapshot directory. The token comes from --token, HF_TOKEN or the saved login, and is never printed.`;

  static override examples = [
    '<%= config.bin %> pull raincandy-u/TinyStories-656K',
    '<%= config.bin %> pull microsoft/bitnet-b1.58-2B-4T-bf16 --revision main --json',
    "<%= config.bin %> pull my-org/private-model --include '*.json' --include '*.safetensors'",
    'dir=$(<%= config.bin %> pull my-org/model-ternary) && <%= config.bin %> generate "$dir/model.tpk" --prompt "Hello"',
  ];

  static override args = {
    repo: Args.string({ description: 'hub repo id: owner/name, optionally @revision', required: true }),
  };

  static override flags = {
    revision: Flags.string({ description: 'branch, tag or commit (default: main, or the @revision in the repo id)' }),
    include: Flags.string({ description: 'fetch the files matching this glob instead of the default set (repeatable)', multiple: true }),
    'cache-dir': Flags.string({ description: 'hub cache directory (default: HF_HUB_CACHE, $HF_HOME/hub or ~/.cache/huggingface/hub)' }),
    ...hubFlags,
    offline: offlineFlag,
  };

  async run(): Promise<{ path: string } & Omit<PullResult, 'snapshotPath'>> {
    const { args, flags } = await this.parse(Pull);
    const display = new TransferDisplay(this.jsonEnabled() ? undefined : process.stderr);
    const onProgress = (event: PullProgress) => {
      if (event.kind === 'plan') display.print(`${args.repo}: ${event.files.length} files, ${formatBytes(event.totalBytes)}`);
      else if (event.done) display.finish(event.path, event.size, event.cached ? 'already in the cache' : undefined);
      else display.update(event.path, event.bytes, event.size, event.totalDone, event.totalBytes);
    };
    const result = await pullModel({
      repo: args.repo, revision: flags.revision, include: flags.include, cacheDir: flags['cache-dir'],
      token: flags.token, endpoint: flags.endpoint, offline: flags.offline || undefined, onProgress,
    });
    display.print(`${result.repo}@${result.revision} (${result.commit.slice(0, 12)}): ${result.files.length} files, ${formatBytes(result.bytes)}`
      + (result.offline ? ' from the cache (offline)' : `, ${formatBytes(result.downloadedBytes)} downloaded`));
    this.log(result.snapshotPath);
    const { snapshotPath, ...rest } = result;
    return { path: snapshotPath, ...rest };
  }
}
