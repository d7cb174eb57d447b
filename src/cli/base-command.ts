/**
 * What every tritpack command shares: a `--json` flag (oclif prints the value `run()` returns),
 * and one-line errors with the right exit code for the failures a user can cause.
 */
import { Command } from '@oclif/core';
import { TritpackError, EXIT_USAGE } from '../errors.js';

export abstract class TritpackCommand extends Command {
  static override enableJsonFlag = true;

  protected override async catch(err: Error): Promise<unknown> {
    // Failures the user caused: one line, no stack. (oclif's own flag/argument errors already exit 2.)
    if (err instanceof TritpackError || isNodeSystemError(err)) {
      this.logToStderr(`Error: ${err.message}`);
      this.exit(err instanceof TritpackError ? err.exitCode : EXIT_USAGE);
    }
    return super.catch(err);
  }
}

function isNodeSystemError(err: Error): err is NodeJS.ErrnoException {
  return typeof (err as NodeJS.ErrnoException).code === 'string' && typeof (err as NodeJS.ErrnoException).syscall === 'string';
}
