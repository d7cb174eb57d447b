/**
 * Model files mapped by the native addon (native/tp_map.c) instead of read into buffers: the mapped
 * views hold exactly the bytes the readers read, models loaded through them give bit-identical
 * logits, a file that shrank is a one-line error before anything touches the missing bytes, and the
 * mapping lives as long as the weights that use it.
 */
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { convertCheckpoint } from '../../src/converters/convert.js';
import { FormatError, TritpackError } from '../../src/errors.js';
import { SafetensorsCheckpoint, SafetensorsFile } from '../../src/formats/safetensors.js';
import { TpkFile } from '../../src/formats/tpk.js';
import { loadModel } from '../../src/runtime-min/index.js';
import { NativeBackend, loadNativeAddon } from '../../src/runtime-min/backends/native.js';
import { openModelSource, type ModelSource } from '../../src/runtime-min/sources.js';
import { fixtureDir, loadReference, makeTempDir, type FixtureName } from '../support/fixtures.js';
import { craftSafetensors } from '../support/safetensors-craft.js';
import { makeShardedLlama256 } from '../support/sharded-llama.js';
import { sameBits } from '../support/fast-backend-checks.js';
import { logitsThrough } from '../support/logits-through.js';

const addon = loadNativeAddon();

/** Every stored tensor's name (the tests compare all of them, not a sample). */
function tensorNames(src: ModelSource, file: string): string[] {
  if (src.kind === 'tpk') {
    const tpk = TpkFile.open(file);
    try {
      return tpk.header.tensors.map((t) => t.name);
    } finally {
      tpk.close();
    }
  }
  const checkpoint = SafetensorsCheckpoint.open(file);
  checkpoint.close();
  return checkpoint.tensors.map((t) => t.name);
}

/** One-line TritpackError naming `file`, with a message matching `pattern`. */
function assertOneLine(err: unknown, file: string, pattern: RegExp): true {
  assert.ok(err instanceof TritpackError, String(err));
  assert.ok(err.message.startsWith(`${file}: `), err.message);
  assert.match(err.message, pattern);
  assert.ok(!err.message.includes('\n'), err.message);
  return true;
}

/** The V8 collector, for the lifetime tests (the flag can be set at run time; `gc` appears in new contexts). */
function collector(): () => void {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

describe('runtime: model files mapped by the native addon', function () {
  let be: NativeBackend;
  let tmp: { dir: string; cleanup: () => void };
  const models: Record<string, string> = {};

  before(async function () {
    if (!addon) this.skip(); // the native backend suite prints why
    be = new NativeBackend();
    tmp = makeTempDir('tritpack-mmap-');
    for (const packing of ['t158', 't2'] as const) {
      models[`tinystories-656K ${packing}.tpk`] = path.join(tmp.dir, `tinystories-${packing}.tpk`);
      await convertCheckpoint({ input: fixtureDir('tinystories-656K'), output: models[`tinystories-656K ${packing}.tpk`]!, packing });
    }
    for (const name of ['tinystories-656K', 'llama-256', 'bitnet-tiny', 'bitnet-tiny-packed'] as FixtureName[]) models[name] = fixtureDir(name);
    models['llama-256 sharded'] = makeShardedLlama256(path.join(tmp.dir, 'llama-256-sharded'));
  });
  after(() => tmp?.cleanup());

  const mapped = (file: string) => openModelSource(file, { mapper: be });

  describe('mapped bytes equal read bytes', () => {
    for (const name of ['tinystories-656K t158.tpk', 'tinystories-656K t2.tpk', 'llama-256', 'llama-256 sharded', 'bitnet-tiny-packed']) {
      it(`${name}: every tensor's bytes, float tensors as float32 too`, () => {
        const file = models[name]!;
        const read = openModelSource(file), map = mapped(file);
        try {
          const names = tensorNames(read, file);
          assert.ok(names.length > 10);
          const fileSizes = new Set(statSync(file).isDirectory() ? readdirSync(file).filter((f) => f.endsWith('.safetensors')).map((f) => statSync(path.join(file, f)).size) : [statSync(file).size]);
          for (const n of names) {
            const bytes = map.readBytes(n);
            assert.ok(fileSizes.has(bytes.buffer.byteLength), `${n} is a view into a mapping of its file, not a copy`);
            assert.ok(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).equals(read.readBytes(n)), n);
            const encoding = read.tensor(n)!.encoding;
            if (encoding === 'F32' || encoding === 'F16' || encoding === 'BF16') {
              assert.equal(bytes.byteOffset % (encoding === 'F32' ? 4 : 2), 0, `${n} is element-aligned`);
              assert.ok(sameBits(map.readVector(n), read.readVector(n)), n);
            }
          }
        } finally {
          read.close();
          map.close();
        }
      });
    }

    it('a mapped .tpk tensor\'s sha256 is still checked', () => {
      const file = path.join(tmp.dir, 'corrupt.tpk');
      copyFileSync(models['tinystories-656K t2.tpk']!, file);
      // flip one byte of a blob: the mapped read must refuse it exactly like a read copy
      const tpk = TpkFile.open(file);
      const blob = tpk.tensor('model.layers.0.self_attn.q_proj.weight')!.data;
      tpk.close();
      const contents = readFileSync(file);
      contents[blob.offset + 3] ^= 1;
      writeFileSync(file, contents);
      for (const src2 of [openModelSource(file), mapped(file)]) {
        assert.throws(() => src2.readBytes('model.layers.0.self_attn.q_proj.weight'), (err) => assertOneLine(err, file, /sha256 mismatch/));
        src2.close();
      }
    });

    it('a safetensors float tensor off its element alignment is copied to an aligned buffer', () => {
      const dir = path.join(tmp.dir, 'misaligned');
      mkdirSync(dir);
      // a 1-byte U8 tensor first puts the F16 tensor at an odd data offset (valid safetensors, not what the official writer emits)
      const header = { a: { dtype: 'U8', shape: [1], data_offsets: [0, 1] }, b: { dtype: 'F16', shape: [2], data_offsets: [1, 5] } };
      const text = JSON.stringify(header);
      craftSafetensors(path.join(dir, 'model.safetensors'), text + ' '.repeat((8 - (text.length % 8)) % 8), new Uint8Array([7, 0x00, 0x3c, 0x00, 0xc0]));
      writeFileSync(path.join(dir, 'config.json'), '{}');
      const src = mapped(dir);
      const b = src.readBytes('b');
      assert.equal(b.byteOffset % 2, 0);
      assert.deepEqual([...b], [0x00, 0x3c, 0x00, 0xc0]);
      assert.deepEqual([...src.readVector('b')], [1, -2]);
      assert.deepEqual([...src.readBytes('a')], [7]);
      src.close();
    });
  });

  describe('models loaded through the mapping give bit-identical logits to models loaded through reads', () => {
    // ids inside every fixture's vocabulary (llama-256 has 256 tokens)
    const ids = (loadReference('tinystories-656K').tokenizer.sample_ids_first512 as number[]).slice(0, 48).map((i) => i % 256);
    for (const name of ['tinystories-656K t158.tpk', 'tinystories-656K t2.tpk', 'tinystories-656K', 'llama-256', 'llama-256 sharded', 'bitnet-tiny', 'bitnet-tiny-packed']) {
      it(name, () => {
        const file = models[name]!;
        const viaMap = logitsThrough(be, mapped(file), ids);
        assert.ok(sameBits(viaMap, logitsThrough(be, openModelSource(file), ids)));
      });
    }
  });

  describe('files that changed after opening, and files that cannot be mapped', () => {
    it('.tpk shrunk after opening: the tensor past the new end is a one-line FormatError, earlier tensors still load', () => {
      const file = path.join(tmp.dir, 'shrunk.tpk');
      copyFileSync(models['tinystories-656K t2.tpk']!, file);
      const src = mapped(file); // the file is mapped when the first tensor is used
      const tpk = TpkFile.open(file);
      const last = tpk.header.tensors.reduce((a, b) => (b.data.offset > a.data.offset ? b : a));
      const first = tpk.header.tensors.reduce((a, b) => (b.data.offset < a.data.offset ? b : a));
      tpk.close();
      truncateSync(file, last.data.offset + 10);
      assert.throws(() => src.readBytes(last.name), (err) => err instanceof FormatError && assertOneLine(err, file, /truncated: tensor .* ends at byte \d+ but the file has \d+ bytes/));
      assert.equal(src.readBytes(first.name).byteLength, first.data.length);
      src.close();
    });

    it('safetensors shrunk after opening: the same', () => {
      const dir = path.join(tmp.dir, 'shrunk-st');
      mkdirSync(dir);
      for (const f of ['model.safetensors', 'config.json']) copyFileSync(path.join(fixtureDir('llama-256'), f), path.join(dir, f));
      const file = path.join(dir, 'model.safetensors');
      const st = SafetensorsFile.open(file);
      const last = st.tensors[st.tensors.length - 1]!, first = st.tensors[0]!; // in data-offset order
      st.close();
      const src = mapped(dir);
      truncateSync(file, statSync(file).size - 64);
      assert.throws(() => src.readBytes(last.name), (err) => err instanceof FormatError && assertOneLine(err, file, /truncated: tensor \S+ ends at byte \d+ but the file has \d+ bytes/));
      assert.equal(src.readBytes(first.name).byteLength, first.byteLength);
      src.close();
    });

    it('a path replaced after opening: the mapping is of the file that was opened and checked', () => {
      const dir = path.join(tmp.dir, 'replaced');
      mkdirSync(dir);
      for (const f of ['model.safetensors', 'config.json']) copyFileSync(path.join(fixtureDir('llama-256'), f), path.join(dir, f));
      const tpkFile = path.join(dir, 'model.tpk');
      copyFileSync(models['tinystories-656K t2.tpk']!, tpkFile);
      const original = { st: readFileSync(path.join(dir, 'model.safetensors')), tpk: openModelSource(tpkFile) };
      const want = original.tpk.readBytes('model.layers.1.mlp.up_proj.weight');
      original.tpk.close();
      const srcs = { st: mapped(dir), tpk: mapped(tpkFile) };
      // rename other models over both paths, as a converter writing its output would
      copyFileSync(models['tinystories-656K t158.tpk']!, `${tpkFile}.new`);
      renameSync(`${tpkFile}.new`, tpkFile);
      copyFileSync(path.join(fixtureDir('tinystories-656K'), 'model.safetensors'), path.join(dir, 'new.safetensors'));
      renameSync(path.join(dir, 'new.safetensors'), path.join(dir, 'model.safetensors'));
      assert.deepEqual(srcs.tpk.readBytes('model.layers.1.mlp.up_proj.weight'), want);
      const norm = srcs.st.readBytes('model.norm.weight');
      assert.equal(norm.buffer.byteLength, original.st.length);
      assert.ok(Buffer.from(norm.buffer).equals(original.st));
      srcs.tpk.close();
      srcs.st.close();
    });

    it('loadModel on the native backend with a truncated .tpk: one-line FormatError, no crash', async () => {
      const file = path.join(tmp.dir, 'truncated.tpk');
      copyFileSync(models['tinystories-656K t158.tpk']!, file);
      truncateSync(file, statSync(file).size - 1000);
      await assert.rejects(loadModel(file, { backend: 'native' }), (err) => err instanceof FormatError && assertOneLine(err, file, /truncated/));
    });

    it('mapping a missing file or a directory: one line naming it', () => {
      const missing = path.join(tmp.dir, 'nope.tpk');
      assert.throws(() => be.mapFile(missing), (err) => assertOneLine(err, missing, /cannot open \(No such file or directory\)$/));
      assert.throws(() => be.mapFile(tmp.dir), (err) => assertOneLine(err, tmp.dir, /cannot map \(is a directory\)$/));
    });
  });

  describe('lifetime', () => {
    it('the mapping stays valid while the weights reference it (collected sources, GC runs), and the model computes the same logits', async () => {
      const gc = collector();
      const file = path.join(tmp.dir, 'lifetime.tpk');
      copyFileSync(models['tinystories-656K t158.tpk']!, file);
      const ids = [1, 2, 3, 4, 5, 6, 7, 8];
      const model = await loadModel(file, { backend: 'native' });
      const before = model.logits(ids);
      for (let i = 0; i < 3; i++) {
        gc();
        await new Promise((resolve) => setImmediate(resolve)); // let finalizers that were queued run
      }
      if (existsSync('/proc/self/maps')) assert.ok(readFileSync('/proc/self/maps', 'utf8').includes(file), 'the file is still mapped');
      assert.ok(sameBits(model.logits(ids), before));
      assert.ok(sameBits(before, logitsThrough(be, openModelSource(file), ids)), 'equal to the model loaded through reads');
      model.close();
    });

    it('the mapping is unmapped once the model using it is collected', async function () {
      if (!existsSync('/proc/self/maps')) this.skip();
      const gc = collector();
      const file = path.join(tmp.dir, 'collected.tpk');
      copyFileSync(models['tinystories-656K t2.tpk']!, file);
      const isMapped = () => readFileSync('/proc/self/maps', 'utf8').includes(file);
      await (async () => {
        const model = await loadModel(file, { backend: 'native' });
        model.logits([1, 2, 3]);
        assert.ok(isMapped());
        model.close();
      })();
      // the buffer's finalizer runs after a collection, from the event loop: give it a few turns
      for (let round = 0; round < 10 && isMapped(); round++) {
        gc();
        await new Promise((resolve) => setImmediate(resolve));
      }
      assert.ok(!isMapped());
    });

    it('dropPages leaves a mapping\'s bytes intact and plain buffers alone', () => {
      const file = models['tinystories-656K t2.tpk']!;
      const mappedBytes = be.mapFile(file)!;
      const view = new Uint8Array(mappedBytes, 4096, 3 * 4096 + 100);
      const copy = view.slice();
      assert.equal(addon!.dropPages(view), true);
      assert.deepEqual(view, copy);
      assert.deepEqual(new Uint8Array(mappedBytes), new Uint8Array(readFileSync(file)));
      const plain = new Uint8Array(3 * 4096).fill(5);
      assert.equal(addon!.dropPages(plain), false);
      assert.ok(plain.every((b) => b === 5));
    });
  });
});
