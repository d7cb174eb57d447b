import assert from 'node:assert/strict';
import { runCli } from '../support/cli.js';
import { fixtureDir, loadReference } from '../support/fixtures.js';
import { assertUsageError } from '../support/validate-cli.js';

describe('cli: generate', () => {
  const model = fixtureDir('tinystories-656K');
  const ref = loadReference('tinystories-656K').float32.greedy64_from_prompt;
  const prompt = '<|start_story|>Once upon a time, ';

  it('greedy ids from the model-card prompt equal the transformers reference (--json)', () => {
    // Compare below the near-tie at step 55 (SOURCE.md): 32 tokens.
    const r = runCli(['generate', model, '--prompt', prompt, '--no-special-tokens', '-n', '32', '--ignore-eos', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.deepEqual(out.promptIds, ref.prompt_ids);
    assert.deepEqual(out.ids, ref.generated_ids.slice(0, 32));
    assert.ok(out.tokensPerSecond > 0);
    assert.match(out.text, /^there was/);
  });

  it('streams the same text to stdout, and tokens/s to stderr', () => {
    const json = JSON.parse(runCli(['generate', model, '--prompt', prompt, '--no-special-tokens', '-n', '24', '--json']).stdout);
    const r = runCli(['generate', model, '--prompt', prompt, '--no-special-tokens', '-n', '24']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `${json.text}\n`);
    assert.match(r.stderr, /^24 tokens in [\d.]+ s: [\d.]+ tokens\/s/);
  });

  it('sampling with a seed is repeatable', () => {
    const args = ['generate', model, '--prompt', 'Once upon a time', '-n', '16', '--temperature', '0.9', '--top-k', '40', '--top-p', '0.95', '--seed', '7', '--json'];
    const a = JSON.parse(runCli(args).stdout);
    const b = JSON.parse(runCli(args).stdout);
    assert.deepEqual(a.ids, b.ids);
  });

  it('bad sampling flags are one-line usage errors', () => {
    assertUsageError(runCli(['generate', model, '--prompt', 'x', '--temperature', '-1']), /--temperature must be a number ≥ 0/);
    assertUsageError(runCli(['generate', model, '--prompt', 'x', '--top-p', '1.5']), /--top-p must be a number in \(0, 1\]/);
    assertUsageError(runCli(['generate', model, '--prompt', 'x', '-n', '0']), /--max-new-tokens must be a positive integer/);
  });
});
