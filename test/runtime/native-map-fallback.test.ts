/**
 * Model files on a file system that does not map files: the native addon reports such an mmap
 * failure with its own code, the backend's mapper turns it into "read this file", and the source
 * reads that file (only that one) without a word, giving the same bytes and logits. Real failures
 * stay one-line errors.
 */
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, readdirSync, statSync, truncateSync } from 'node:fs';
import path from 'node:path';
import { convertCheckpoint } from '../../src/converters/convert.js';
import { FormatError, TritpackError } from '../../src/errors.js';
import { SafetensorsCheckpoint } from '../../src/formats/safetensors.js';
import { NativeBackend, loadNativeAddon } from '../../src/runtime-min/backends/native.js';
import { openModelSource, type FileMapper } from '../../src/runtime-min/sources.js';
import { fixtureDir, makeTempDir } from '../support/fixtures.js';
import { makeShardedLlama256 } from '../support/sharded-llama.js';
import { sameBits } from '../support/fast-backend-checks.js';
import { logitsThrough } from '../support/logits-through.js';

const addon = loadNativeAddon();

/** A sysfs attribute: a regular file whose mmap the kernel refuses (ENODEV), as a file system without mmap does. */
const UNMAPPABLE = '/sys/kernel/mm/transparent_hugepage/enabled';

/** The backend's mapper, except that the file system "does not map" `refused` (what NativeBackend.mapFile answers there). */
function refusing(be: NativeBackend, refused: (file: string) => boolean): FileMapper & { asked: string[] } {
  const asked: string[] = [];
  return {
    asked,
    mapFile: (file, fd) => {
      asked.push(file);
      return refused(file) ? null : be.mapFile(file, fd);
    },
    dropPages: (view) => be.dropPages(view),
  };
}

/** What `body` writes to stderr (warnings included) while it runs. */
function stderrOf(body: () => void): string {
  const write = process.stderr.write;
  let text = '';
  process.stderr.write = ((chunk: string | Uint8Array) => {
    text += String(chunk);
    return true;
  }) as typeof process.stderr.write;
  try {
    body();
  } finally {
    process.stderr.write = write;
  }
  return text;
}

describe('runtime: model files that cannot be mapped are read', function () {
  let be: NativeBackend;
  let tmp: { dir: string; cleanup: () => void };
  let tpk: string;
  let sharded: string;

  before(async function () {
    if (!addon) this.skip(); // the native backend suite prints why
    be = new NativeBackend();
    tmp = makeTempDir('tritpack-map-fallback-');
    tpk = path.join(tmp.dir, 'tinystories-t2.tpk');
    await convertCheckpoint({ input: fixtureDir('tinystories-656K'), output: tpk, packing: 't2' });
    sharded = makeShardedLlama256(path.join(tmp.dir, 'llama-256-sharded'));
  });
  after(() => tmp?.cleanup());

  it('an mmap the file system refuses: the addon says so by its code, the backend answers null', function () {
    if (!existsSync(UNMAPPABLE)) this.skip();
    assert.throws(() => addon!.mapFile(UNMAPPABLE), (err: NodeJS.ErrnoException) => err.code === 'TP_MMAP_UNSUPPORTED' && err.message === `${UNMAPPABLE}: cannot map (No such device)`);
    assert.equal(be.mapFile(UNMAPPABLE), null);
  });

  it('failures that are real errors keep their one-line message and no such code', () => {
    const missing = path.join(tmp.dir, 'missing.tpk');
    assert.throws(() => addon!.mapFile(missing), (err: NodeJS.ErrnoException) => err.code === undefined);
    assert.throws(() => be.mapFile(missing), (err) => err instanceof TritpackError && err.message === `${missing}: cannot open (No such file or directory)`);
    assert.throws(() => be.mapFile(tmp.dir), (err) => err instanceof TritpackError && err.message === `${tmp.dir}: cannot map (is a directory)`);
  });

  it('.tpk refused: every tensor read, logits bit-identical to the mapped load, nothing printed', () => {
    const ids = [1, 5, 9, 200, 3];
    const mapper = refusing(be, () => true);
    let logits: Float32Array | undefined;
    assert.equal(stderrOf(() => { logits = logitsThrough(be, openModelSource(tpk, { mapper }), ids); }), '');
    assert.deepEqual(mapper.asked, [tpk], 'the refusal is remembered: the file is not offered to the mapper again');
    assert.ok(sameBits(logits!, logitsThrough(be, openModelSource(tpk, { mapper: be }), ids)));
  });

  it('one shard of a checkpoint refused: that shard read, the others mapped, same logits', () => {
    const shards = readdirSync(sharded).filter((f) => f.endsWith('.safetensors')).map((f) => path.join(sharded, f)).sort();
    assert.ok(shards.length >= 2);
    const mapper = refusing(be, (file) => file === shards[1]);
    const src = openModelSource(sharded, { mapper });
    const checkpoint = SafetensorsCheckpoint.open(sharded);
    checkpoint.close();
    const inRefused = checkpoint.tensors.filter((t) => t.file === shards[1]);
    assert.ok(inRefused.length > 0 && inRefused.length < checkpoint.tensors.length);
    for (const t of checkpoint.tensors) {
      const bytes = src.readBytes(t.name);
      const mappedView = bytes.buffer.byteLength === statSync(t.file).size && bytes.byteLength < bytes.buffer.byteLength;
      assert.equal(mappedView, t.file !== shards[1], `${t.name} (${path.basename(t.file)})`);
    }
    src.close();
    const ids = [1, 2, 3, 4];
    let logits: Float32Array | undefined;
    assert.equal(stderrOf(() => { logits = logitsThrough(be, openModelSource(sharded, { mapper: refusing(be, (file) => file === shards[1]) }), ids); }), '');
    assert.ok(sameBits(logits!, logitsThrough(be, openModelSource(sharded, { mapper: be }), ids)));
  });

  it('a truncated .tpk that cannot be mapped: the read path\'s one-line FormatError', () => {
    const file = path.join(tmp.dir, 'truncated.tpk');
    copyFileSync(tpk, file);
    truncateSync(file, statSync(file).size - 1000);
    const load = () => logitsThrough(be, openModelSource(file, { mapper: refusing(be, () => true) }), [1]);
    assert.throws(load, (err) => err instanceof FormatError && err.message.startsWith(`${file}: `) && /truncated/.test(err.message) && !err.message.includes('\n'));
  });
});
