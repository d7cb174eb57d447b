/** Shared by the eval/generate/validate CLI tests: packed fixtures and the one-line-error check. */
import assert from 'node:assert/strict';
import path from 'node:path';
import { convertCheckpoint } from '../../src/converters/convert.js';
import { runCli, type CliResult } from './cli.js';
import { fixtureDir, type FixtureName } from './fixtures.js';

/** Converts a fixture checkpoint to `<dir>/<name>.tpk` with the default options. */
export async function packFixture(name: FixtureName, dir: string): Promise<string> {
  const output = path.join(dir, `${name}.tpk`);
  await convertCheckpoint({ input: fixtureDir(name), output });
  return output;
}

/** A user error: exit 2, nothing on stdout, exactly one line on stderr matching `re`. */
export function assertUsageError(result: CliResult, re: RegExp): void {
  const lines = result.stderr.trim().split('\n');
  assert.equal(result.code, 2, `exit code ${result.code}; stderr: ${result.stderr}`);
  assert.equal(lines.length, 1, `one line expected, got: ${result.stderr}`);
  assert.match(lines[0]!, /^Error: /);
  assert.match(lines[0]!, re);
  assert.equal(result.stdout, '');
}

/** The same user error with and without --json: --json must not turn it into output on stdout. */
export function assertUsageErrorBothWays(args: string[], re: RegExp): void {
  assertUsageError(runCli(args), re);
  assertUsageError(runCli([...args, '--json']), re);
}
