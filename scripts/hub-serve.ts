/**
 * Runs the local test hub by hand:
 *   npm run hub:serve -- --root <dir> [--port 8080] [--token hf_xxx=alice …] [--page-size N] [--quiet]
 * Repos are the folders <root>/<owner>/<name>/. Point the tools at it with HF_ENDPOINT=http://127.0.0.1:<port>.
 * It listens on 127.0.0.1 only and stops cleanly on Ctrl-C / SIGTERM.
 */
import { parseArgs } from 'node:util';
import { HubServer } from '../test/support/hub-server.js';

const { values } = parseArgs({
  options: {
    root: { type: 'string' },
    port: { type: 'string', default: '8080' },
    token: { type: 'string', multiple: true, default: [] },
    'page-size': { type: 'string' },
    quiet: { type: 'boolean', default: false },
  },
});
if (!values.root) {
  process.stderr.write('usage: npm run hub:serve -- --root <dir> [--port 8080] [--token hf_xxx=user …] [--page-size N] [--quiet]\n');
  process.exit(2);
}
const tokens: Record<string, string> = {};
for (const pair of values.token ?? []) {
  const [token, user] = pair.split('=');
  if (!token || !user) { process.stderr.write(`--token takes hf_xxx=user, got ${pair.replace(/=.*/, '=…')}\n`); process.exit(2); }
  tokens[token] = user;
}
const hub = await HubServer.start({
  root: values.root, port: Number(values.port), tokens,
  ...(values['page-size'] ? { pageSize: Number(values['page-size']) } : {}),
  log: values.quiet ? undefined : (line) => process.stdout.write(`${line}\n`),
});
process.stdout.write(`local hub serving ${hub.root} at ${hub.url} (users: ${Object.values(tokens).join(', ') || 'none'})\n`);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => { void hub.close().then(() => process.exit(0)); });
}
