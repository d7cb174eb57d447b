import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pack, unpack } from 'msgpackr';
import { FormatError, TritpackError } from '../../src/errors.js';
import {
  TpkFile, TpkWriter, updateTpkHeader, type TpkHeader, type TpkPlannedTensor,
} from '../../src/formats/tpk.js';
import { packTernary } from '../../src/formats/ternary.js';
import { makeTempDir, REPO_ROOT } from '../support/fixtures.js';
import { decodePlainMsgpack } from '../support/tpk-msgpack.js';

const BASE: Omit<TpkHeader, 'tensors'> = {
  formatVersion: 1,
  producer: { name: 'tritpack', version: '0.1.0-test' },
  createdAt: '2026-11-25T15:00:00.000Z',
  source: { repo: 'org/model', revision: 'abc123', files: [{ name: 'model.safetensors', size: 1234, sha256: 'ab'.repeat(32) }] },
  files: { 'config.json': '{"model_type":"llama","hidden_size":8}\n', 'tokenizer.json': '{"version":"1.0"}' },
  conversion: { packing: 't158', scale: 'tensor', formula: 'reference', include: ['*.weight'] },
};

interface Fake { plan: TpkPlannedTensor; data: Uint8Array; scales?: Float32Array; stats?: Record<string, number> }

/** Deterministic pseudo-random bytes so each blob is distinct. */
function bytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed * 2654435761 >>> 0;
  for (let i = 0; i < n; i++) { x = (x * 1103515245 + 12345) >>> 0; out[i] = x >>> 24; }
  return out;
}

function scales(n: number, seed: number): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => 0.01 * (i + 1) + seed);
}

/** One tensor of each kind: lengths here are worked out by hand (t158: ceil(n/5), t2: ceil(n/4)). */
function sampleTensors(): Fake[] {
  return [
    { plan: { name: 'layers.0.q.weight', shape: [4, 10], encoding: 't158', sourceDType: 'F32', scale: { granularity: 'tensor', count: 1 }, dataLength: 8 },
      data: bytes(8, 1), scales: scales(1, 0.5), stats: { gamma: 0.0123, zeroFraction: 0.31, relativeError: 0.52 } },
    { plan: { name: 'layers.0.k.weight', shape: [3, 7], encoding: 't2', sourceDType: 'BF16', scale: { granularity: 'channel', count: 3 }, dataLength: 6 },
      data: bytes(6, 2), scales: scales(3, 1.5), stats: { gamma: 0.5 } },
    { plan: { name: 'layers.0.v.weight', shape: [2, 10], encoding: 't158', sourceDType: 'F16', scale: { granularity: 'group', groupSize: 4, count: 6 }, dataLength: 4 },
      data: bytes(4, 3), scales: scales(6, 2.5) },
    { plan: { name: 'embed.weight', shape: [5, 3], encoding: 'F16', dataLength: 30 }, data: bytes(30, 4) },
    { plan: { name: 'empty', shape: [0, 4], encoding: 'I8', dataLength: 0 }, data: new Uint8Array(0) },
    { plan: { name: 'norm.weight', shape: [3], encoding: 'BF16', dataLength: 6 }, data: bytes(6, 5) },
    { plan: { name: 'lm_head.weight', shape: [2, 33], encoding: 'F32', dataLength: 264 }, data: bytes(264, 6) },
    { plan: { name: 'mask', shape: [7], encoding: 'U8', dataLength: 7 }, data: bytes(7, 7) },
  ];
}

function writeTpk(file: string, tensors: Fake[], options: { force?: boolean } = {}): void {
  const writer = TpkWriter.create(file, BASE, tensors.map((t) => t.plan), options);
  for (const t of tensors) writer.writeTensor(t.plan.name, t.data, t.scales, t.stats);
  writer.finish();
}

function flipByte(file: string, offset: number): void {
  const buf = readFileSync(file);
  buf[offset] ^= 0x10;
  writeFileSync(file, buf);
}

function throwsFormat(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof FormatError, `expected FormatError, got ${String(err)}`);
    assert.match(err.message, pattern);
    assert.ok(!err.message.includes('\n'), 'error is one line');
    return true;
  });
}

/** Preamble fields read straight from the bytes (independently of the reader). */
function preambleOf(buf: Buffer) {
  return {
    magic: buf.subarray(0, 8).toString('latin1'), version: buf.readUInt32LE(8), flags: buf.readUInt32LE(12),
    headerLength: Number(buf.readBigUInt64LE(16)), dataOffset: Number(buf.readBigUInt64LE(24)), sha: buf.subarray(32, 64),
  };
}

/** A .tpk assembled by the test from a header object, for hostile-header cases the writer refuses to make. */
function craftTpk(file: string, header: unknown, blobRegion: Uint8Array, dataOffset?: number): void {
  const head = Buffer.isBuffer(header) ? header : pack(header); // a Buffer is taken as raw header bytes
  const start = dataOffset ?? Math.ceil((64 + head.length) / 64) * 64;
  const buf = Buffer.alloc(start + blobRegion.length);
  buf.write('TRITPACK', 0, 'latin1');
  buf.writeUInt32LE(1, 8);
  buf.writeBigUInt64LE(BigInt(head.length), 16);
  buf.writeBigUInt64LE(BigInt(start), 24);
  head.copy(buf, 64);
  createHash('sha256').update(buf.subarray(0, 32)).update(head).digest().copy(buf, 32);
  buf.set(blobRegion, start);
  writeFileSync(file, buf);
}

describe('formats/tpk', () => {
  let tmp: ReturnType<typeof makeTempDir>;
  beforeEach(() => { tmp = makeTempDir('tritpack-tpk-'); });
  afterEach(() => tmp.cleanup());

  it('round-trips every encoding: data, scales, stats and header', () => {
    const file = path.join(tmp.dir, 'm.tpk');
    const tensors = sampleTensors();
    writeTpk(file, tensors);
    assert.deepEqual(readdirSync(tmp.dir), ['m.tpk'], 'no temp file left behind');
    const tpk = TpkFile.open(file);
    try {
      assert.equal(tpk.header.formatVersion, 1);
      assert.deepEqual(tpk.header.producer, BASE.producer);
      assert.deepEqual(tpk.header.source, BASE.source);
      assert.deepEqual(tpk.header.files, BASE.files);
      assert.deepEqual(tpk.header.conversion, BASE.conversion);
      assert.equal(tpk.header.validation, undefined);
      assert.deepEqual(tpk.header.tensors.map((t) => t.name), tensors.map((t) => t.plan.name));
      for (const t of tensors) {
        const entry = tpk.tensor(t.plan.name)!;
        assert.deepEqual(entry.shape, t.plan.shape);
        assert.equal(entry.encoding, t.plan.encoding);
        assert.equal(entry.sourceDType, t.plan.sourceDType);
        assert.deepEqual(entry.scale, t.plan.scale);
        assert.deepEqual(entry.stats, t.stats);
        assert.equal(entry.data.offset % 64, 0);
        assert.equal(entry.data.sha256, createHash('sha256').update(t.data).digest('hex'));
        assert.deepEqual(tpk.readData(t.plan.name), t.data);
        if (t.scales) {
          assert.equal(entry.scales!.offset % 64, 0);
          assert.deepEqual(tpk.readScales(t.plan.name), t.scales);
        } else {
          assert.equal(entry.scales, undefined);
          throwsFormat(() => tpk.readScales(t.plan.name), /has no scales/);
        }
      }
      assert.equal(tpk.tensor('nope'), undefined);
      throwsFormat(() => tpk.readData('nope'), /no tensor named "nope"$/);
      assert.ok(tpk.verifyAll().every((r) => r.ok));
    } finally {
      tpk.close();
    }
  });

  it('lays out a 2-tensor file exactly as docs/tpk-format.md says (checked from raw bytes)', () => {
    const file = path.join(tmp.dir, 'two.tpk');
    const tensors = sampleTensors().slice(1, 2).concat(sampleTensors().slice(3, 4)); // t2 [3,7] + F16 [5,3]
    writeTpk(file, tensors);
    const buf = readFileSync(file);
    const p = preambleOf(buf);
    assert.equal(p.magic, 'TRITPACK');
    assert.deepEqual([...buf.subarray(0, 8)], [0x54, 0x52, 0x49, 0x54, 0x50, 0x41, 0x43, 0x4b]);
    assert.equal(p.version, 1);
    assert.equal(p.flags, 0);
    assert.deepEqual(p.sha, createHash('sha256').update(buf.subarray(0, 32)).update(buf.subarray(64, 64 + p.headerLength)).digest());
    // The header is exactly headerLength bytes of plain msgpack (the strict decoder rejects trailing bytes and extensions).
    const header = decodePlainMsgpack(buf.subarray(64, 64 + p.headerLength)) as TpkHeader;
    assert.ok(buf.subarray(64 + p.headerLength, p.dataOffset).every((b) => b === 0), 'zero padding after the header');
    // Blob positions worked out by hand: t2 data = ceil(21/4) = 6 bytes at dataOffset, its 3 f32 scales
    // (12 bytes) at the next multiple of 64, then the F16 data (15 × 2 = 30 bytes) at the next one.
    const [k, e] = header.tensors;
    assert.equal(p.dataOffset % 64, 0);
    assert.ok(p.dataOffset >= 64 + p.headerLength);
    assert.deepEqual({ offset: k!.data.offset, length: k!.data.length }, { offset: p.dataOffset, length: 6 });
    assert.deepEqual({ offset: k!.scales!.offset, length: k!.scales!.length }, { offset: p.dataOffset + 64, length: 12 });
    assert.deepEqual({ offset: e!.data.offset, length: e!.data.length }, { offset: p.dataOffset + 128, length: 30 });
    assert.equal(buf.length, p.dataOffset + 128 + 30, 'file ends with the last blob');
    assert.deepEqual(buf.subarray(p.dataOffset, p.dataOffset + 6), Buffer.from(tensors[0]!.data));
    const scaleBytes = buf.subarray(p.dataOffset + 64, p.dataOffset + 76);
    assert.deepEqual([0, 1, 2].map((i) => scaleBytes.readFloatLE(i * 4)), [...tensors[0]!.scales!]);
    assert.ok(buf.subarray(p.dataOffset + 6, p.dataOffset + 64).every((b) => b === 0), 'zero padding between blobs');
    for (const ref of [k!.data, k!.scales!, e!.data]) {
      assert.equal(ref.sha256, createHash('sha256').update(buf.subarray(ref.offset, ref.offset + ref.length)).digest('hex'));
    }
    // …and msgpackr's default decoder agrees with both the strict decoder and the reader.
    assert.deepEqual(unpack(buf.subarray(64, 64 + p.headerLength)), header);
    const tpk = TpkFile.open(file);
    assert.deepEqual(tpk.header, header);
    tpk.close();
  });

  it('stores integers beyond 32 bits as msgpack integers, not floats', () => {
    const file = path.join(tmp.dir, 'big.tpk');
    const writer = TpkWriter.create(file, { ...BASE, source: { files: [{ name: 'huge.safetensors', size: 5_000_000_000 }] } }, []);
    writer.finish();
    const buf = readFileSync(file);
    const head = buf.subarray(64, 64 + preambleOf(buf).headerLength);
    const at = head.indexOf(Buffer.from('size'));
    assert.ok(head[at + 4] === 0xd3 || head[at + 4] === 0xcf, `size is encoded with type byte 0x${head[at + 4]!.toString(16)}`);
    assert.equal(TpkFile.open(file).header.source.files![0]!.size, 5_000_000_000);
  });

  it('flipped byte in a blob: readData and verifyAll name the tensor', () => {
    const file = path.join(tmp.dir, 'm.tpk');
    writeTpk(file, sampleTensors());
    const clean = TpkFile.open(file);
    const target = clean.tensor('embed.weight')!.data;
    const scalesTarget = clean.tensor('layers.0.k.weight')!.scales!;
    clean.close();
    flipByte(file, target.offset + 7);
    flipByte(file, scalesTarget.offset + 2);
    const tpk = TpkFile.open(file);
    throwsFormat(() => tpk.readData('embed.weight'), /m\.tpk: tensor "embed\.weight": sha256 mismatch \(file corrupted\)$/);
    throwsFormat(() => tpk.readScales('layers.0.k.weight'), /tensor "layers\.0\.k\.weight": scales sha256 mismatch/);
    assert.deepEqual(tpk.readData('layers.0.k.weight'), sampleTensors()[1]!.data, 'intact data of the same tensor still reads');
    const report = tpk.verifyAll();
    assert.deepEqual(report.filter((r) => !r.ok).map((r) => [r.name, r.problem]), [
      ['layers.0.k.weight', 'tensor "layers.0.k.weight": scales sha256 mismatch (file corrupted)'],
      ['embed.weight', 'tensor "embed.weight": sha256 mismatch (file corrupted)'],
    ]);
    assert.equal(report.length, sampleTensors().length);
    tpk.close();
  });

  it('rejects a corrupted preamble or header with a clear message', () => {
    const file = path.join(tmp.dir, 'm.tpk');
    writeTpk(file, sampleTensors());
    const original = readFileSync(file);
    const { headerLength, dataOffset } = preambleOf(original);
    const cases: [string, (b: Buffer) => void, RegExp][] = [
      ['flipped header byte', (b) => { b[64 + Math.floor(headerLength / 2)]! ^= 1; }, /header sha256 mismatch/],
      ['flipped header-length byte', (b) => { b[16]! ^= 1; }, /header sha256 mismatch|data offset|header length/],
      ['flipped data-offset byte', (b) => { b[24]! ^= 0x40; }, /header sha256 mismatch|data offset/],
      ['flipped stored hash', (b) => { b[40]! ^= 1; }, /header sha256 mismatch/],
      ['bad magic', (b) => { b.write('GGUF', 0, 'latin1'); }, /not a \.tpk file \(no TRITPACK magic\)/],
      ['newer version', (b) => { b.writeUInt32LE(2, 8); }, /format version 2 is newer than this tritpack reads \(1\); upgrade tritpack/],
      ['version 0', (b) => { b.writeUInt32LE(0, 8); }, /invalid \.tpk format version 0/],
      ['unknown flags', (b) => { b.writeUInt32LE(4, 12); }, /unknown flags 0x4/],
      ['huge header length', (b) => { b.writeBigUInt64LE(2n ** 62n, 16); }, /header length \d+ is out of range/],
      ['header past the end', (b) => { b.writeBigUInt64LE(BigInt(b.length), 16); }, /truncated: header of \d+ bytes extends past the end/],
      ['misaligned data offset', (b) => { b.writeBigUInt64LE(BigInt(dataOffset + 8), 24); }, /data offset \d+ is not a 64-aligned/],
    ];
    for (const [what, mutate, pattern] of cases) {
      const buf = Buffer.from(original);
      mutate(buf);
      writeFileSync(file, buf);
      assert.throws(() => TpkFile.open(file), (err: unknown) => {
        assert.ok(err instanceof FormatError, `${what}: ${String(err)}`);
        assert.match(err.message, pattern, what);
        assert.ok(err.message.startsWith(file), what);
        return true;
      });
    }
  });

  it('rejects truncated files and trailing bytes', () => {
    const file = path.join(tmp.dir, 'm.tpk');
    writeTpk(file, sampleTensors());
    const original = readFileSync(file);
    const cases: [number | Buffer, RegExp][] = [
      [original.length - 10, /truncated: tensor "mask": data ends at byte \d+ but the file has \d+ bytes/],
      [200, /truncated: header of \d+ bytes extends past the end of the file \(200 bytes\)/],
      [40, /truncated: 40 bytes, shorter than the 64-byte preamble/],
      [5, /not a \.tpk file/],
      [0, /not a \.tpk file/],
      [Buffer.concat([original, Buffer.alloc(3)]), /3 unexpected bytes after the last blob/],
    ];
    for (const [cut, pattern] of cases) {
      writeFileSync(file, typeof cut === 'number' ? original.subarray(0, cut) : cut);
      throwsFormat(() => TpkFile.open(file), pattern);
    }
    assert.throws(() => TpkFile.open(path.join(tmp.dir, 'absent.tpk')), /absent\.tpk: no such file/);
  });

  it('rejects hostile headers without crashing', () => {
    const file = path.join(tmp.dir, 'h.tpk');
    const sha = 'a'.repeat(64);
    const t158 = { name: 'w', shape: [2, 5], encoding: 't158', scale: { granularity: 'tensor', count: 1 }, data: { offset: 0, length: 2, sha256: sha }, scales: { offset: 64, length: 4, sha256: sha } };
    const header = (tensors: unknown[], extra: object = {}) => ({ ...BASE, tensors, ...extra });
    const region = new Uint8Array(68);
    const cases: [unknown, RegExp][] = [
      [[1, 2, 3], /header: top level must be a map/],
      [header([], { formatVersion: 2 }), /header: formatVersion is 2 but the preamble says 1/],
      [header([], { producer: 'me' }), /header: producer must be a map/],
      [header([], { files: { 'config.json': 42 } }), /header: files\["config.json"\] must be a string/],
      [header([], { source: { files: [{ name: 'a', size: -1 }] } }), /source\.files\[0\]\.size must be a non-negative integer/],
      [header([{ ...t158, shape: 'big' }]), /tensor "w": shape must be an array of non-negative integers/],
      [header([{ ...t158, shape: [2 ** 40, 2 ** 40] }]), /tensor "w": shape has too many elements/],
      [header([{ ...t158, encoding: 'q4_k' }]), /tensor "w": unknown encoding "q4_k"/],
      [header([{ ...t158, data: { ...t158.data, length: 3 } }]), /tensor "w": data is 3 bytes but t158 × 10 elements needs 2/],
      [header([{ ...t158, scales: undefined }]), /tensor "w": scales are missing bytes but 1 f32 scales need 4/],
      [header([{ ...t158, scale: { granularity: 'group', count: 1 } }]), /groupSize must be a positive integer/],
      [header([{ ...t158, scale: { granularity: 'channel', count: 1 } }]), /scale\.count is 1 but channel scales of shape \[2,5\] are 2/],
      [header([{ ...t158, data: { ...t158.data, sha256: 'xyz' } }]), /tensor "w": data\.sha256 must be 64 lowercase hex digits/],
      [header([{ ...t158, data: { ...t158.data, offset: 1.5 } }]), /tensor "w": data\.offset must be a non-negative integer/],
      [header([{ ...t158, stats: { gamma: 'x' } }]), /tensor "w": stats\["gamma"\] must be a number/],
      [header([t158, t158]), /tensors\[1\]\.name "w" appears twice/],
      [header([{ ...t158, name: 'evil\nname', shape: 'big' }]), /tensor "evil\\nname": shape must be/], // quoted: the message stays on one line
      [header([{ ...t158, data: { ...t158.data, offset: 32 } }]), /tensor "w": data offset \d+ is not a multiple of 64/],
      [header([{ ...t158, scales: { ...t158.scales, offset: 0 } }]), /overlaps the header or another blob/],
      [header([{ ...t158, scales: { ...t158.scales, offset: 2 ** 40 } }]), /truncated: tensor "w": scales ends at byte/],
      [header([{ name: 'f', shape: [2], encoding: 'F32', scale: { granularity: 'tensor', count: 1 }, data: { offset: 0, length: 8, sha256: sha } }]), /encoding F32 takes no scales/],
    ];
    for (const [value, pattern] of cases) {
      // Offsets in the cases are relative to the data start; make them absolute.
      const probe = pack(value);
      const start = Math.ceil((64 + probe.length + 64) / 64) * 64;
      const absolute = JSON.parse(JSON.stringify(value), (key, v) => (key === 'offset' && typeof v === 'number' ? v + start : v));
      craftTpk(file, absolute, region, start);
      throwsFormat(() => TpkFile.open(file), pattern);
    }
    // Not msgpack at all, or 2 MB of nested one-element arrays that exhaust the decoder's stack,
    // behind a valid checksum: still one line, no crash.
    for (const junk of [Buffer.from([0xdd, 0xff, 0xff]), Buffer.alloc(2_000_000, 0x91)]) {
      craftTpk(file, junk, new Uint8Array(0));
      throwsFormat(() => TpkFile.open(file), /header is not valid msgpack/);
    }
    throwsFormat(() => TpkFile.open(tmp.dir), /not a regular file/);
  });

  it('refuses an existing output without force, replaces it with force', () => {
    const file = path.join(tmp.dir, 'm.tpk');
    writeFileSync(file, 'precious');
    assert.throws(() => writeTpk(file, sampleTensors()), (err: unknown) => {
      assert.ok(err instanceof TritpackError);
      assert.equal(err.message, `${file}: output file already exists (use --force to overwrite)`);
      return true;
    });
    assert.equal(readFileSync(file, 'utf8'), 'precious');
    assert.deepEqual(readdirSync(tmp.dir), ['m.tpk']);
    writeTpk(file, sampleTensors(), { force: true });
    const tpk = TpkFile.open(file);
    assert.ok(tpk.verifyAll().every((r) => r.ok));
    tpk.close();
  });

  it('refuses a missing output directory', () => {
    const dir = path.join(tmp.dir, 'no', 'such');
    assert.throws(() => writeTpk(path.join(dir, 'm.tpk'), sampleTensors()), (err: unknown) => {
      assert.ok(err instanceof TritpackError);
      assert.equal(err.message, `${dir}: output directory does not exist`);
      return true;
    });
    assert.deepEqual(readdirSync(tmp.dir), []);
  });

  it('abort and writer misuse leave no file behind', () => {
    const file = path.join(tmp.dir, 'm.tpk');
    const tensors = sampleTensors();
    const writer = TpkWriter.create(file, BASE, tensors.map((t) => t.plan));
    assert.equal(readdirSync(tmp.dir).length, 1, 'only the temp file exists while writing');
    assert.match(readdirSync(tmp.dir)[0]!, /^m\.tpk\.tmp-\d+-[0-9a-f]+$/);
    writer.writeTensor(tensors[0]!.plan.name, tensors[0]!.data, tensors[0]!.scales);
    assert.throws(() => writer.writeTensor('embed.weight', tensors[3]!.data), /tensor embed\.weight: written out of order \(expected layers\.0\.k\.weight\)/);
    assert.throws(() => writer.writeTensor('layers.0.k.weight', new Uint8Array(5), tensors[1]!.scales), /data is 5 bytes, planned 6/);
    assert.throws(() => writer.writeTensor('layers.0.k.weight', tensors[1]!.data), /needs 3 scales, got none/);
    assert.throws(() => writer.finish(), /7 planned tensors were not written \(next: layers\.0\.k\.weight\)/);
    writer.abort();
    assert.deepEqual(readdirSync(tmp.dir), []);
    assert.ok(!existsSync(file));
    assert.throws(() => writer.writeTensor('x', new Uint8Array(0)), /already finished or aborted/);
    writer.abort(); // idempotent
    // Plans the writer cannot honour are refused before any file is created.
    const badPlans: [TpkPlannedTensor, RegExp][] = [
      [{ name: 'w', shape: [2, 5], encoding: 't158', scale: { granularity: 'tensor', count: 1 }, dataLength: 3 }, /data is 3 bytes but t158 × 10 elements needs 2/],
      [{ name: 'w', shape: [2, 5], encoding: 't2', dataLength: 3 }, /encoding t2 needs a scale description/],
      [{ name: 'w', shape: [4], encoding: 'F16', dataLength: 8, scalesLength: 4 }, /encoding F16 takes no scales/],
    ];
    for (const [plan, pattern] of badPlans) assert.throws(() => TpkWriter.create(file, BASE, [plan]), pattern);
    const good = sampleTensors().find((t) => t.plan.name === 'norm.weight')!.plan;
    assert.throws(() => TpkWriter.create(file, BASE, [good, good]), /tensor norm\.weight is planned twice/);
    assert.deepEqual(readdirSync(tmp.dir), []);
  });

  it('falls back to moving the blobs when stats outgrow the reserved header room', () => {
    const file = path.join(tmp.dir, 'm.tpk');
    const tensors = sampleTensors();
    const manyStats = Object.fromEntries(Array.from({ length: 200 }, (_, i) => [`statistic_number_${i}`, i + 0.25]));
    tensors[0]!.stats = manyStats;
    writeTpk(file, tensors);
    assert.deepEqual(readdirSync(tmp.dir), ['m.tpk']);
    const tpk = TpkFile.open(file);
    assert.deepEqual(tpk.tensor(tensors[0]!.plan.name)!.stats, manyStats);
    assert.ok(tpk.verifyAll().every((r) => r.ok));
    for (const t of tensors) assert.deepEqual(tpk.readData(t.plan.name), t.data);
    tpk.close();
  });

  it('updateTpkHeader embeds a validation report and keeps every blob byte-identical', () => {
    const file = path.join(tmp.dir, 'm.tpk');
    const tensors = sampleTensors();
    writeTpk(file, tensors);
    const before = TpkFile.open(file);
    const beforeHeader = before.header;
    before.close();
    const beforeDataOffset = preambleOf(readFileSync(file)).dataOffset;
    const report = { verdict: 'PASS', thresholds: { maxPplRatio: 1.1 }, ppl: { original: 54.2, packed: 55.0 }, perTensor: Array.from({ length: 300 }, (_, i) => ({ name: `t${i}`, err: i / 300 })) };
    updateTpkHeader(file, { validation: report });
    assert.deepEqual(readdirSync(tmp.dir), ['m.tpk']);
    const after = TpkFile.open(file);
    assert.deepEqual(after.header.validation, report);
    assert.ok(preambleOf(readFileSync(file)).dataOffset > beforeDataOffset, 'blobs moved down to make room');
    for (const key of ['producer', 'createdAt', 'source', 'files', 'conversion'] as const) assert.deepEqual(after.header[key], beforeHeader[key]);
    after.header.tensors.forEach((t, i) => {
      const old = beforeHeader.tensors[i]!;
      assert.equal(t.data.sha256, old.data.sha256);
      assert.equal(t.scales?.sha256, old.scales?.sha256);
      assert.equal(t.data.offset % 64, 0);
      assert.deepEqual(after.readData(t.name), tensors[i]!.data);
    });
    assert.ok(after.verifyAll().every((r) => r.ok));
    after.close();
    updateTpkHeader(file, { validation: undefined, conversion: { packing: 't158', note: 'patched' } });
    const last = TpkFile.open(file);
    assert.equal(last.header.validation, undefined);
    assert.deepEqual(last.header.conversion, { packing: 't158', note: 'patched' });
    assert.ok(last.verifyAll().every((r) => r.ok));
    last.close();
  });

  it('blobs larger than the 8 MiB copy chunk verify, survive updates and report corruption in a late chunk', () => {
    const file = path.join(tmp.dir, 'big.tpk');
    const n = 20 * 1024 * 1024 + 3;
    const big = randomBytes(n);
    const tensors: Fake[] = [{ plan: { name: 'big', shape: [n], encoding: 'U8', dataLength: n }, data: big }, sampleTensors()[0]!];
    writeTpk(file, tensors);
    updateTpkHeader(file, { validation: { verdict: 'PASS' } });
    const tpk = TpkFile.open(file);
    assert.ok(tpk.verifyAll().every((r) => r.ok));
    assert.ok(Buffer.from(tpk.readData('big')).equals(Buffer.from(big)));
    const offset = tpk.tensor('big')!.data.offset;
    tpk.close();
    flipByte(file, offset + n - 2);
    const again = TpkFile.open(file);
    assert.deepEqual(again.verifyAll().map((r) => r.ok), [false, true]);
    again.close();
  });

  it('updateTpkHeader refuses to copy a corrupted blob and leaves the file as it was', () => {
    const file = path.join(tmp.dir, 'm.tpk');
    writeTpk(file, sampleTensors());
    const tpk = TpkFile.open(file);
    const ref = tpk.tensor('norm.weight')!.data;
    tpk.close();
    flipByte(file, ref.offset);
    const corrupted = readFileSync(file);
    throwsFormat(() => updateTpkHeader(file, { validation: { verdict: 'PASS' } }), /tensor "norm\.weight": sha256 mismatch/);
    assert.deepEqual(readFileSync(file), corrupted);
    assert.deepEqual(readdirSync(tmp.dir), ['m.tpk']);
  });
});

/** Bytes of a `hexdump -C` listing, expanding `*` (the previous line repeated up to the next address). */
function parseHexdump(text: string): Buffer {
  const out: number[] = [];
  let previous: number[] = [];
  let repeating = false;
  for (const line of text.trim().split('\n')) {
    if (line === '*') { repeating = true; continue; }
    const [address, ...rest] = line.split(/\s+/);
    const at = parseInt(address!, 16);
    while (repeating && out.length < at) out.push(...previous);
    repeating = false;
    const bytesOnLine = rest.filter((w) => /^[0-9a-f]{2}$/.test(w)).map((w) => parseInt(w, 16));
    out.push(...bytesOnLine);
    previous = bytesOnLine;
  }
  return Buffer.from(out);
}

describe('formats/tpk: docs/tpk-format.md example', () => {
  it('the writer produces exactly the annotated example file of §9', () => {
    const doc = readFileSync(path.join(REPO_ROOT, 'docs', 'tpk-format.md'), 'utf8');
    const dump = /## 9\. Example[\s\S]*?```\n([\s\S]*?)```/.exec(doc)![1]!;
    const expected = parseHexdump(dump);
    const { dir, cleanup } = makeTempDir('tritpack-tpk-doc-');
    try {
      const file = path.join(dir, 'example.tpk');
      const writer = TpkWriter.create(file, {
        formatVersion: 1, producer: { name: 'tritpack', version: '0.1.0' }, createdAt: '2026-01-01T00:00:00.000Z',
        source: {}, files: {}, conversion: { packing: 't158' },
      }, [
        { name: 'w', shape: [2, 5], encoding: 't158', scale: { granularity: 'tensor', count: 1 }, dataLength: 2 },
        { name: 'b', shape: [2], encoding: 'F16', dataLength: 4 },
      ]);
      writer.writeTensor('w', packTernary('t158', Int8Array.from([1, 0, -1, 0, 1, -1, -1, 0, 0, 1])), Float32Array.from([0.5]), { gamma: 0.5 });
      writer.writeTensor('b', Uint8Array.from([0x00, 0x3c, 0x00, 0xc0]));
      writer.finish();
      assert.equal(expected.length, 2308);
      assert.deepEqual(readFileSync(file), expected);
    } finally {
      cleanup();
    }
  });
});
