import { Args, Flags } from '@oclif/core';
import { TritpackCommand } from '../cli/base-command.js';
import { hubFlags } from '../cli/flags.js';
import { pushModel, type PushProgress, type PushResult } from '../hub/push.js';
import { TransferDisplay } from '../cli/transfer-progress.js';
import { formatBytes } from '../units.js';

export default class Push extends TritpackCommand {
  static override summary = 'Upload a packed model and its generated model card to the Hugging Face hub.';
  static override description = `Uploads a .tpk (or a directory, e.g. an export) to a hub repo in one commit, with a README.md \
model card generated from the .tpk header: licence, base model, tags (ternary, bitnet, 1.58-bit, tritpack), how the \
model was made, sizes and bits per weight, the validation report when the file carries one, and how to run it. \
A directory with its own README.md keeps it. --dry-run shows the files and the card and uploads nothing. The \
token comes from --token, HF_TOKEN or the saved login, and is never printed.`;

  static override examples = [
    '<%= config.bin %> push tiny.tpk my-name/TinyStories-656K-ternary --create',
    '<%= config.bin %> push llama.tpk my-org/llama-ternary --create --private --message "First ternary version"',
    '<%= config.bin %> push llama.tpk my-org/llama-ternary --branch t2-channel',
    '<%= config.bin %> push tiny.tpk my-name/tiny-ternary --dry-run',
  ];

  static override args = {
    path: Args.string({ description: 'a .tpk file, or a directory to upload as it is', required: true }),
    repo: Args.string({ description: 'hub repo id: owner/name', required: true }),
  };

  static override flags = {
    private: Flags.boolean({ description: 'create the repo private (with --create)', default: false }),
    create: Flags.boolean({ description: 'create the repo if it does not exist', default: false }),
    branch: Flags.string({ description: 'commit to this branch, created from main if missing (default: main)' }),
    message: Flags.string({ char: 'm', description: 'commit message' }),
    ...hubFlags,
    'dry-run': Flags.boolean({ description: 'list what would be uploaded and print the card; upload nothing', default: false }),
  };

  async run(): Promise<PushResult> {
    const { args, flags } = await this.parse(Push);
    const display = new TransferDisplay(this.jsonEnabled() ? undefined : process.stderr);
    const onProgress = (event: PushProgress) => {
      if (event.kind === 'phase') { display.print(`${event.phase}…`); return; }
      if (event.state !== 'uploading') return;
      display.update(event.path, event.bytes, event.size, event.totalDone, event.totalBytes);
      if (event.bytes === event.size) display.finish(event.path, event.size);
    };
    if (flags.private && !flags.create) this.logToStderr('Warning: --private only applies when --create makes the repo');
    const result = await pushModel({
      path: args.path, repo: args.repo, private: flags.private, create: flags.create, branch: flags.branch,
      message: flags.message, token: flags.token, endpoint: flags.endpoint, dryRun: flags['dry-run'], onProgress,
    });
    if (result.dryRun) {
      this.log(`Would upload to ${result.repo} (${result.branch}):`);
      for (const f of result.files) this.log(`  ${f.path}  ${formatBytes(f.size)}`);
      this.log(`\n${result.cardGenerated ? 'Generated' : 'Its own'} README.md:\n`);
      this.log(result.card);
    } else {
      display.print(`${result.created ? 'created and pushed to' : 'pushed to'} ${result.repo} (${result.branch}): ${result.files.length} files, ${formatBytes(result.bytes)}`);
      this.log(result.commit?.url ?? result.repo);
    }
    return result;
  }
}
