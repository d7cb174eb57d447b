/**
 * What every tritpack command shares: a `--json` flag (oclif prints the value `run()` returns),
 * and one-line errors with the right exit code for the failures a user can cause.
 */
import { Command, Errors } from '@oclif/core';
import { TritpackError, EXIT_USAGE } from '../errors.js';

export abstract class TritpackCommand extends Command {
  static override enableJsonFlag = true;

  protected override async catch(err: Error): Promise<unknown> {
    // Failures the user caused: one line, no stack, also under --json (which silences this.log*).
    if (err instanceof TritpackError || isNodeSystemError(err)) {
      process.stderr.write(`Error: ${err.message}\n`);
      this.exit(err instanceof TritpackError ? err.exitCode : EXIT_USAGE);
    }
    // oclif's own flag and argument errors span several lines ("See more help with --help").
    if (err instanceof Errors.CLIError && err.oclif.exit === EXIT_USAGE) {
      process.stderr.write(`Error: ${oneLine(err.message)} (see --help)\n`);
      this.exit(EXIT_USAGE);
    }
    return super.catch(err);
  }
}

function oneLine(message: string): string {
  return message.split('\n').map((line) => line.trim()).filter((line) => line !== '' && !/^See more help/.test(line)).join(' ');
}

function isNodeSystemError(err: Error): err is NodeJS.ErrnoException {
  return typeof (err as NodeJS.ErrnoException).code === 'string' && typeof (err as NodeJS.ErrnoException).syscall === 'string';
}
