/**
 * Runs the local test hub by hand:
 *   npm run hub:serve -- --root <dir> [--port 8080] [--token hf_xxx=alice …] [--page-size N] [--quiet]
 * Repos are the folders <root>/<owner>/<name>/. Point the tools at it with HF_ENDPOINT=http://127.0.0.1:<port>.
 * It listens on 127.0.0.1 only and stops cleanly on Ctrl-C / SIGTERM. Bad arguments, or a port that
 * is taken, are one line on stderr and exit 2.
 */
import { parseArgs } from 'node:util';
import { HubServer } from '../test/support/hub-server.js';

const USAGE = 'usage: npm run hub:serve -- --root <dir> [--port 8080] [--token hf_xxx=user …] [--page-size N] [--quiet]';

function fail(message: string): never {
  process.stderr.write(`${message}\n`);
  process.exit(2);
}

/** A whole number in [min, max], or a one-line refusal naming the flag. */
function integer(flag: string, text: string, min: number, max: number): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < min || n > max) fail(`--${flag} must be an integer in ${min}..${max}, got ${JSON.stringify(text)}`);
  return n;
}

let values;
try {
  ({ values } = parseArgs({
    options: {
      root: { type: 'string' },
      port: { type: 'string', default: '8080' },
      token: { type: 'string', multiple: true, default: [] },
      'page-size': { type: 'string' },
      quiet: { type: 'boolean', default: false },
    },
  }));
} catch (err) {
  fail(`${(err as Error).message}\n${USAGE}`);
}
if (!values.root) fail(USAGE);
const tokens: Record<string, string> = {};
for (const pair of values.token ?? []) {
  const [token, user] = pair.split('=');
  // The value is a secret: the refusal shows only its shape.
  if (!token || !user) fail(`--token takes hf_xxx=user, got ${pair.replace(/=.*/, '=…').replace(/^(.{3}).+?(=|$)/, '$1…$2')}`);
  tokens[token] = user;
}
const port = integer('port', values.port!, 0, 65535);
const pageSize = values['page-size'] === undefined ? undefined : integer('page-size', values['page-size'], 1, 10_000);

let hub: HubServer;
try {
  hub = await HubServer.start({
    root: values.root, port, tokens, ...(pageSize ? { pageSize } : {}),
    log: values.quiet ? undefined : (line) => process.stdout.write(`${line}\n`),
  });
} catch (err) {
  fail(`cannot serve on 127.0.0.1:${port}: ${(err as Error).message}`);
}
process.stdout.write(`local hub serving ${hub.root} at ${hub.url} (users: ${Object.values(tokens).join(', ') || 'none'})\n`);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => { void hub.close().then(() => process.exit(0)); });
}
