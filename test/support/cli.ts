/**
 * Runs the built CLI (`bin/run.js`, so `npm run build` first — `npm test` does it) as a user
 * would, capturing stdout, stderr and the exit code.
 */
import { spawn, spawnSync } from 'node:child_process';
import path from 'node:path';
import { REPO_ROOT } from './fixtures.js';

export interface CliResult { code: number; stdout: string; stderr: string }

/** Node running bin/run.js, without colours, with the test's extra environment on top of this one. */
function invocation(args: string[], env: Record<string, string> = {}) {
  return {
    command: process.execPath,
    argv: [path.join(REPO_ROOT, 'bin', 'run.js'), ...args],
    env: { ...process.env, NO_COLOR: '1', ...env },
  };
}

export function runCli(args: string[], options: { env?: Record<string, string>; cwd?: string; input?: string } = {}): CliResult {
  const run = invocation(args, options.env);
  const result = spawnSync(run.command, run.argv, {
    cwd: options.cwd ?? REPO_ROOT,
    env: run.env,
    input: options.input ?? '',
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  return { code: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
}

/**
 * The same without blocking this process: for commands that talk to a server running in the test's
 * own event loop (the local hub), which a synchronous spawn would freeze.
 */
export function runCliAsync(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  const run = invocation(args, env);
  return new Promise((resolve, reject) => {
    const child = spawn(run.command, run.argv, { cwd: REPO_ROOT, env: run.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}
