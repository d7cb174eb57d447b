import assert from 'node:assert/strict';
import { closeSync, copyFileSync, openSync, readSync, writeFileSync, writeSync } from 'node:fs';
import path from 'node:path';
import { TpkFile } from '../../src/formats/tpk.js';
import { runCli } from '../support/cli.js';
import { fixtureDir, makeTempDir } from '../support/fixtures.js';

describe('cli/inspect', function () {
  let temp: ReturnType<typeof makeTempDir>;
  let tpk: string;
  before(() => {
    temp = makeTempDir();
    tpk = path.join(temp.dir, 'bitnet.tpk');
    const r = runCli(['convert', fixtureDir('bitnet-tiny'), '-o', tpk, '--packing', 't2']);
    assert.equal(r.code, 0, r.stderr);
  });
  after(() => temp.cleanup());

  it('shows a .tpk: provenance, config summary, tensor table and totals', () => {
    const r = runCli(['inspect', tpk]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /tpk v1, by tritpack \d+\.\d+\.\d+/);
    assert.match(r.stdout, /BitNetForCausalLM: 2 layers, hidden 256, intermediate 768, heads 8 \(kv 4\), vocab 2048, tied embeddings/);
    assert.match(r.stdout, /model\.layers\.0\.mlp\.down_proj\.weight\s+256×768\s+t2\s+49,156\s+2\.000/); // 196608/4 codes + 4 bytes of scale
    assert.match(r.stdout, /model\.embed_tokens\.weight\s+2048×256\s+BF16\s+1,048,576\s+16\.000/);
    assert.match(r.stdout, /tied\s+lm_head\.weight = model\.embed_tokens\.weight/);
    const j = JSON.parse(runCli(['inspect', tpk, '--json']).stdout);
    assert.equal(j.kind, 'tpk');
    assert.equal(j.tensors.length, 24);
    assert.deepEqual(j.config, { architecture: 'BitNetForCausalLM', modelType: 'bitnet', layers: 2, hiddenSize: 256, intermediateSize: 768, heads: 8, kvHeads: 4, vocabSize: 2048, tiedEmbeddings: true });
    assert.equal(j.totals.ternary.tensors, 14);
    assert.equal(j.totals.parameters, 2100480);
    assert.ok(j.totals.ternary.bitsPerWeight <= 2.01);
    assert.equal(j.tpk.conversion.packing, 't2');
  });

  it('--verify passes on an intact file and fails, naming the tensor, on a flipped byte', () => {
    const ok = runCli(['inspect', tpk, '--verify']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /all 24 tensors match their sha256/);

    const bad = path.join(temp.dir, 'corrupt.tpk');
    const file = TpkFile.open(tpk);
    const offset = file.tensor('model.layers.1.self_attn.o_proj.weight')!.data.offset + 10;
    file.close();
    copyFileSync(tpk, bad);
    const fd = openSync(bad, 'r+');
    const byte = Buffer.alloc(1);
    readSync(fd, byte, 0, 1, offset);
    byte[0] = byte[0]! ^ 0x01;
    writeSync(fd, byte, 0, 1, offset);
    closeSync(fd);

    assert.equal(runCli(['inspect', bad]).code, 0, 'without --verify only the header is checked');
    const r = runCli(['inspect', bad, '--verify']);
    assert.notEqual(r.code, 0);
    const lines = r.stderr.trimEnd().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0]!, new RegExp(`${bad.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: 1 of 24 tensors fail their sha256 check \\(model\\.layers\\.1\\.self_attn\\.o_proj\\.weight\\)`));
  });

  it('shows a checkpoint directory and a single .safetensors file', () => {
    const dir = JSON.parse(runCli(['inspect', fixtureDir('llama-256'), '--json']).stdout);
    assert.equal(dir.kind, 'checkpoint');
    assert.equal(dir.tensors.length, 21);
    assert.equal(dir.totals.parameters, 2622720);
    assert.equal(dir.totals.bitsPerWeight, 16);
    assert.equal(dir.config.tiedEmbeddings, false);
    const file = JSON.parse(runCli(['inspect', path.join(fixtureDir('tinystories-656K'), 'model.safetensors'), '--json']).stdout);
    assert.equal(file.kind, 'safetensors');
    assert.equal(file.totals.parameters, 656000);
    assert.equal(file.config.layers, 2);
  });

  it('refuses what it cannot read, in one line', () => {
    const junk = path.join(temp.dir, 'notes.txt');
    writeFileSync(junk, 'hello');
    for (const [args, pattern] of [
      [['inspect', junk], /notes\.txt: is neither a \.tpk file/],
      [['inspect', path.join(temp.dir, 'missing.tpk')], /missing\.tpk: no such file/],
      [['inspect', fixtureDir('llama-256'), '--verify'], /--verify needs a \.tpk file/],
    ] as const) {
      const r = runCli([...args]);
      assert.notEqual(r.code, 0);
      assert.equal(r.stderr.trimEnd().split('\n').length, 1, r.stderr);
      assert.match(r.stderr, pattern);
    }
  });
});
