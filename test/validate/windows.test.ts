import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { planWindows, readEvalText, resolveEvalInput, tokenizeText } from '../../src/validate/windows.js';
import { tokenizerFromJson } from '../../src/runtime-min/tokenizer.js';
import { TritpackError } from '../../src/errors.js';
import { fixtureDir, loadReference, makeTempDir, textFixture } from '../support/fixtures.js';

/** Targets scored (p + 1 for scored positions p with a next token) and positions compared. */
function coverage(n: number, ctx: number, stride: number) {
  const targets: number[] = [];
  const positions: number[] = [];
  for (const w of planWindows(n, { ctx, stride })) {
    assert.ok(w.end - w.start <= ctx && w.start <= w.from && w.to <= w.end);
    for (let p = w.from; p < w.to; p++) { positions.push(p); if (p + 1 < n) targets.push(p + 1); }
  }
  return { targets, positions };
}

describe('validate/windows', () => {
  it('one window of exactly ctx tokens: 511 targets, 512 compared positions (the reference convention)', () => {
    assert.deepEqual(planWindows(512, { ctx: 512, stride: 512 }), [{ start: 0, end: 512, from: 0, to: 512 }]);
    const { targets, positions } = coverage(512, 512, 512);
    assert.equal(targets.length, 511);
    assert.equal(positions.length, 512);
  });

  it('sliding windows score every token once (HF perplexity guide)', () => {
    // HF: for begin in range(0, 10, 2): end = min(begin+4, 10); targets [prev_end, end) less the unshiftable first.
    assert.deepEqual(planWindows(10, { ctx: 4, stride: 2 }).map((w) => [w.start, w.end, w.from, w.to]),
      [[0, 4, 0, 3], [2, 6, 3, 5], [4, 8, 5, 7], [6, 10, 7, 10]]);
    const { targets, positions } = coverage(1000, 64, 16);
    assert.deepEqual(targets, Array.from({ length: 999 }, (_, i) => i + 1));
    assert.deepEqual(positions, Array.from({ length: 1000 }, (_, i) => i));
  });

  it('stride = ctx: non-overlapping windows; each later window’s first token has no context and is not scored', () => {
    const { targets } = coverage(10, 4, 4);
    assert.deepEqual(targets, [1, 2, 3, 5, 6, 7, 9]);
  });

  it('reads UTF-8 texts and refuses empty, whitespace-only and non-UTF-8 files, naming them', () => {
    const { dir, cleanup } = makeTempDir();
    try {
      const ok = path.join(dir, 'ok.txt');
      writeFileSync(ok, 'Tiny “story”\n');
      assert.equal(readEvalText(ok), 'Tiny “story”\n');
      const cases: [string, Uint8Array | string, RegExp][] = [
        ['empty.txt', '', /empty\.txt: the text file is empty/],
        ['blank.txt', ' \n\n', /blank\.txt: .*only whitespace/],
        ['latin1.txt', Uint8Array.from([0x41, 0x42, 0xe9, 0x43]), /latin1\.txt: is not valid UTF-8 \(first bad byte at offset 2\)/],
        ['after-e-acute.txt', Uint8Array.from([0xc3, 0xa9, 0xff]), /after-e-acute\.txt: is not valid UTF-8 \(first bad byte at offset 2\)/],
        ['missing.txt', '', /missing\.txt: cannot read the text file \(ENOENT\)/],
      ];
      for (const [name, content, re] of cases) {
        const file = path.join(dir, name);
        if (name !== 'missing.txt') writeFileSync(file, content);
        assert.throws(() => readEvalText(file), (err: Error) => err instanceof TritpackError && err.exitCode === 2 && re.test(err.message) && !err.message.includes('\n'));
      }
    } finally { cleanup(); }
  });

  it('resolves window options against the model and the text', () => {
    const ids = Array.from({ length: 300 }, (_, i) => i);
    const model = { maxPositions: 256, path: 'm.tpk' };
    const r = resolveEvalInput(ids, {}, model, 't.txt');
    assert.equal(r.ctx, 256);
    assert.equal(r.stride, 256);
    assert.equal(resolveEvalInput(ids, { ctx: 64, maxTokens: 128 }, model, 't.txt').ids.length, 128);
    const bad: [Parameters<typeof resolveEvalInput>[1], RegExp][] = [
      [{ ctx: 512 }, /--ctx 512 is beyond the 256 positions m\.tpk supports/],
      [{ ctx: 1 }, /--ctx must be an integer ≥ 2/],
      [{ ctx: 64, stride: 65 }, /--stride must be an integer in 1\.\.64/],
      [{ ctx: 64, maxTokens: 32 }, /--max-tokens 32 is less than one window/],
    ];
    for (const [options, re] of bad) assert.throws(() => resolveEvalInput(ids, options, model, 't.txt'), re);
    assert.throws(() => resolveEvalInput(ids.slice(0, 50), { ctx: 64 }, model, 't.txt'), (err: Error) => /^t\.txt: is 50 tokens long, shorter than one window of 64/.test(err.message));
  });

  it('--max-tokens tokenizes only a prefix, and its ids are those of the whole text (reference: first 512 Shakespeare ids)', () => {
    const dir = fixtureDir('tinystories-656K');
    const tokenizer = tokenizerFromJson(readFileSync(path.join(dir, 'tokenizer.json'), 'utf8'), readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8'), dir);
    const text = readEvalText(textFixture('tinyshakespeare.txt'));
    let encodedChars = 0;
    const encode = (t: string) => { encodedChars += t.length; return tokenizer.encode(t); };
    const r = tokenizeText(encode, text, 512);
    assert.deepEqual(r.ids, loadReference('tinystories-656K').tokenizer.shakespeare_ids_first512);
    assert.equal(r.totalTokens, null);
    assert.ok(encodedChars < 20_000, `tokenized ${encodedChars} of ${text.length} characters`);
    assert.ok(r.textUsed.endsWith('\n'));
    // Without a cap (or when the text is short) the whole text is tokenized.
    const whole = tokenizeText(encode, 'Once upon a time\n', 512);
    assert.deepEqual(whole.ids, tokenizer.encode('Once upon a time\n'));
    assert.equal(whole.totalTokens, whole.ids.length);
  });
});
