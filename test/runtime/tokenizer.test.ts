/**
 * The tokenizer (tokenizer.json via @huggingface/tokenizers) against the ids transformers' stack
 * recorded: tokenizer.json's own ids for the sample, the Shakespeare ids, and the prompt both ways.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { tokenizerFromJson, type RuntimeTokenizer } from '../../src/runtime-min/tokenizer.js';
import { fixtureDir, loadReference, textFixture } from '../support/fixtures.js';

describe('runtime: tokenizer (tokenizer.json)', () => {
  const ref = loadReference('tinystories-656K').tokenizer;
  const dir = fixtureDir('tinystories-656K');
  let tok: RuntimeTokenizer;

  before(() => {
    tok = tokenizerFromJson(readFileSync(path.join(dir, 'tokenizer.json'), 'utf8'), readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8'), dir);
  });

  it('reproduces the tokenizer.json ids of the TinyStories sample exactly (curly quotes → <unk>)', () => {
    const ids = tok.encode(readFileSync(textFixture('tinystories_sample.txt'), 'utf8'));
    assert.equal(ids.length, ref.tokenizer_json_vs_autotokenizer.sample_total_ids_tokenizer_json);
    assert.deepEqual(ids.slice(0, 512), ref.tokenizer_json_vs_autotokenizer.sample_ids_first512_tokenizer_json);
    // …and differs from AutoTokenizer exactly where the reference says it does.
    assert.equal(ids.findIndex((id, i) => id !== ref.sample_ids_first512[i]), ref.tokenizer_json_vs_autotokenizer.first_difference_index);
  });

  it('reproduces the first 512 Shakespeare ids', () => {
    // Tokenizing all 1.1 MB takes seconds; the first 512 ids come from the first ~2,000 characters, and a
    // 6,000-character prefix leaves every piece boundary before id 512 untouched.
    const text = readFileSync(textFixture('tinyshakespeare.txt'), 'utf8').slice(0, 6000);
    assert.deepEqual(tok.encode(text).slice(0, 512), ref.shakespeare_ids_first512);
  });

  it('encodes the prompt with and without special tokens like the reference', () => {
    assert.deepEqual(tok.encode(ref.prompt), ref.prompt_ids_default_call);
    assert.deepEqual(tok.encode(ref.prompt, { addSpecialTokens: false }), ref.prompt_ids_add_special_tokens_false);
  });

  it('decodes ids back to text, keeping or skipping special tokens', () => {
    const ids = tok.encode('<|start_story|>Once upon a time, there was a little girl.', { addSpecialTokens: false });
    assert.equal(tok.decode(ids), '<|start_story|>Once upon a time, there was a little girl.');
    assert.equal(tok.decode(ids, { skipSpecialTokens: true }), 'Once upon a time, there was a little girl.');
    assert.equal(tok.tokenToId('<|end_story|>'), 2);
  });

  it('rejects a tokenizer.json that is not JSON, naming it', () => {
    assert.throws(() => tokenizerFromJson('{oops', undefined, '/some/model'), /\/some\/model\/tokenizer.json: invalid JSON/);
  });
});
