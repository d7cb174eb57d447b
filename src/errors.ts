/**
 * Errors that tritpack reports to users. Every failure a user can cause (bad input, bad flags,
 * unreadable files, network trouble) is one of these: the CLI prints its message on one line and
 * exits with its exit code; anything else is a bug and keeps its stack trace.
 */

/** Exit codes shared by every command (validate adds 1 = quality gate failed). */
export const EXIT_FAILED_GATE = 1;
export const EXIT_USAGE = 2;

export class TritpackError extends Error {
  readonly exitCode: number;
  constructor(message: string, options: { exitCode?: number; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'TritpackError';
    this.exitCode = options.exitCode ?? EXIT_USAGE;
  }
}

/** A file that is not what it claims to be. The message always starts with the file's path. */
export class FormatError extends TritpackError {
  readonly file: string;
  readonly problem: string;
  constructor(file: string, problem: string, options: { cause?: unknown } = {}) {
    super(`${file}: ${problem}`, options);
    this.name = 'FormatError';
    this.file = file;
    this.problem = problem;
  }
}
