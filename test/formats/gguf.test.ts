import { strict as assert } from 'node:assert';
import { existsSync, readFileSync, readdirSync, truncateSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { gguf as parseIndependently } from '@huggingface/gguf';
import { FormatError } from '../../src/errors.js';
import {
  GGUF_MAX_ARRAY_ELEMENTS, GGUF_MAX_STRING_BYTES, GGUF_MAX_TENSORS, GgufFile, GgufWriter, GgmlType, GgufValueType, encodeGgufHeader, gguf,
} from '../../src/formats/gguf.js';
import { makeTempDir } from '../support/fixtures.js';

/** formats.md §2.6: the worked byte example, written out by hand. */
function workedExampleHeader(): Uint8Array {
  const hex = [
    '47 47 55 46', '03 00 00 00', '01 00 00 00 00 00 00 00', '01 00 00 00 00 00 00 00',
    '14 00 00 00 00 00 00 00', Buffer.from('general.architecture').toString('hex'), '08 00 00 00', '05 00 00 00 00 00 00 00', Buffer.from('llama').toString('hex'),
    '01 00 00 00 00 00 00 00', Buffer.from('t').toString('hex'), '01 00 00 00', '04 00 00 00 00 00 00 00', '00 00 00 00', '00 00 00 00 00 00 00 00',
  ].join('').replace(/\s+/g, '');
  return Uint8Array.from(Buffer.from(hex, 'hex'));
}

describe('formats/gguf', () => {
  let tmp: ReturnType<typeof makeTempDir>;
  beforeEach(() => { tmp = makeTempDir(); });
  afterEach(() => tmp.cleanup());

  it('writes the formats.md §2.6 worked example byte for byte (102-byte header, data at 128, 160 bytes)', () => {
    const file = path.join(tmp.dir, 'ex.gguf');
    const w = GgufWriter.create(file, [['general.architecture', gguf.str('llama')]], [{ name: 't', dims: [4], type: GgmlType.F32 }]);
    w.writeTensor('t', new Uint8Array(new Float32Array([1, 2, 3, 4]).buffer));
    w.finish();
    const bytes = readFileSync(file);
    const expectedHeader = workedExampleHeader();
    assert.equal(expectedHeader.length, 102);
    assert.equal(bytes.length, 160);
    assert.deepEqual([...bytes.subarray(0, 102)], [...expectedHeader]);
    assert.ok(bytes.subarray(102, 128).every((b) => b === 0));
    assert.deepEqual([...new Float32Array(bytes.buffer.slice(bytes.byteOffset + 128, bytes.byteOffset + 144))], [1, 2, 3, 4]);
    assert.ok(bytes.subarray(144, 160).every((b) => b === 0));
    assert.deepEqual(readdirSync(tmp.dir), ['ex.gguf'], 'no temp file left behind');
  });

  it('round-trips every KV type through its own reader and through @huggingface/gguf', async () => {
    const file = path.join(tmp.dir, 'kv.gguf');
    const kv: [string, ReturnType<typeof gguf.u32>][] = [
      ['general.architecture', gguf.str('llama')],
      ['a.u8', { type: GgufValueType.UINT8, value: 200 }],
      ['a.i8', { type: GgufValueType.INT8, value: -5 }],
      ['a.u16', { type: GgufValueType.UINT16, value: 65000 }],
      ['a.i16', { type: GgufValueType.INT16, value: -30000 }],
      ['a.u32', gguf.u32(4000000000)],
      ['a.i32', gguf.i32(-2000000000)],
      ['a.f32', gguf.f32(1e-5)],
      ['a.bool', gguf.bool(true)],
      ['a.u64', { type: GgufValueType.UINT64, value: 2n ** 40n }],
      ['a.i64', { type: GgufValueType.INT64, value: -(2n ** 40n) }],
      ['a.f64', { type: GgufValueType.FLOAT64, value: Math.PI }],
      ['a.strs', gguf.array(GgufValueType.STRING, ['▁the', '<0x0A>', ''])],
      ['a.f32s', gguf.array(GgufValueType.FLOAT32, [0, -1000, 1.5])],
      ['a.i32s', gguf.array(GgufValueType.INT32, [1, 3, 6])],
    ];
    const w = GgufWriter.create(file, kv, [{ name: 'x', dims: [256, 2], type: GgmlType.TQ2_0 }, { name: 'y', dims: [3], type: GgmlType.F32 }]);
    w.writeTensor('x', new Uint8Array(132).fill(0x55));
    w.writeTensor('y', new Uint8Array(12));
    w.finish();

    const mine = GgufFile.open(file);
    for (const [key, value] of kv) {
      const got = mine.kv.get(key)!;
      assert.equal(got.type, value.type, key);
      if (key === 'a.f32') assert.equal(got.value, Math.fround(1e-5));
      else if (key === 'a.f32s') assert.deepEqual(got.value, [0, -1000, 1.5]);
      else assert.deepEqual(got.value, value.value, key);
    }
    assert.deepEqual(mine.tensors.map((t) => [t.name, t.dims, t.type, t.offset, t.byteLength]), [['x', [256, 2], GgmlType.TQ2_0, 0, 132], ['y', [3], GgmlType.F32, 160, 12]]);
    assert.deepEqual([...mine.readBytes('x').subarray(0, 4)], [0x55, 0x55, 0x55, 0x55]);
    mine.close();

    const other = await parseIndependently(file, { allowLocalFile: true, typedMetadata: true });
    const typed = other.typedMetadata as Record<string, { value: unknown; type: number; subType?: number }>;
    for (const [key, value] of kv) {
      assert.equal(typed[key]!.type, value.type, key);
      if (value.type === GgufValueType.ARRAY) assert.equal(typed[key]!.subType, value.elemType, key);
    }
    assert.equal(typed['a.u64']!.value, 2n ** 40n);
    assert.deepEqual(typed['a.strs']!.value, ['▁the', '<0x0A>', '']);
    assert.deepEqual(other.tensorInfos.map((t) => [t.name, t.shape.map(Number), t.dtype, Number(t.offset)]), [['x', [256, 2], 35, 0], ['y', [3], 0, 160]]);
  });

  it('writes a header far beyond its first 64 KiB buffer (a 32000-token vocabulary), every value intact', async () => {
    const file = path.join(tmp.dir, 'big-header.gguf');
    const kinds = [
      (i: number) => ({ type: GgufValueType.UINT8, value: i % 256 }), (i: number) => ({ type: GgufValueType.INT16, value: -(i % 30000) }),
      (i: number) => gguf.u32(i * 7), (i: number) => gguf.f32(i / 4), (i: number) => ({ type: GgufValueType.UINT64, value: BigInt(i) << 20n }),
      (i: number) => ({ type: GgufValueType.FLOAT64, value: i / 3 }), (i: number) => gguf.bool(i % 2 === 0), (i: number) => gguf.str(`value ${i}`),
    ];
    const kv: [string, ReturnType<typeof gguf.u32>][] = [['general.architecture', gguf.str('llama')]];
    kv.push(['tokenizer.ggml.tokens', gguf.array(GgufValueType.STRING, Array.from({ length: 32000 }, (_, i) => `token-${i}`))]);
    for (let i = 0; i < 5000; i++) kv.push([`k.${i}`, kinds[i % kinds.length]!(i) as ReturnType<typeof gguf.u32>]);
    const w = GgufWriter.create(file, kv, [{ name: 'y', dims: [3], type: GgmlType.F32 }]);
    w.writeTensor('y', new Uint8Array(12));
    w.finish();
    const mine = GgufFile.open(file);
    for (const [key, value] of kv) assert.deepEqual(mine.kv.get(key)!.value, value.value, key);
    mine.close();
    const other = (await parseIndependently(file, { allowLocalFile: true })).metadata as unknown as Record<string, unknown>;
    assert.equal((other['tokenizer.ggml.tokens'] as string[])[31999], 'token-31999');
    assert.equal(other['k.4999'], 'value 4999');
  });

  describe('rejects malformed files with a FormatError naming the file and the problem', () => {
    function valid(): Uint8Array {
      const { header } = encodeGgufHeader([['general.architecture', gguf.str('llama')]], [{ name: 't', dims: [4], type: GgmlType.F32 }]);
      const out = new Uint8Array(header.length + 32);
      out.set(header);
      return out;
    }
    function expectOpenError(file: string, pattern: RegExp): void {
      assert.throws(() => GgufFile.open(file), (err: unknown) => {
        assert.ok(err instanceof FormatError, String(err));
        assert.ok(err.message.startsWith(file), err.message);
        assert.ok(!err.message.includes('\n'), `one line: ${JSON.stringify(err.message)}`);
        assert.match(err.message, pattern);
        return true;
      });
    }
    function expectError(bytes: Uint8Array, pattern: RegExp): void {
      const file = path.join(tmp.dir, 'bad.gguf');
      writeFileSync(file, bytes);
      expectOpenError(file, pattern);
    }
    const set64 = (b: Uint8Array, at: number, v: bigint): Uint8Array => { new DataView(b.buffer).setBigUint64(at, v, true); return b; };
    const set32 = (b: Uint8Array, at: number, v: number): Uint8Array => { new DataView(b.buffer).setUint32(at, v, true); return b; };

    it('accepts the untouched file', () => {
      const file = path.join(tmp.dir, 'ok.gguf');
      writeFileSync(file, valid());
      GgufFile.open(file).close();
    });
    it('bad magic', () => expectError(Object.assign(valid(), { 0: 0x47, 1: 0x47, 2: 0x4d, 3: 0x4c }), /not a GGUF file/));
    it('too short for a magic', () => expectError(new Uint8Array(2), /not a GGUF file/));
    it('unknown version', () => expectError(set32(valid(), 4, 4), /unsupported GGUF version 4/));
    it('version 1', () => expectError(set32(valid(), 4, 1), /unsupported GGUF version 1/));
    it('big-endian version', () => expectError(set32(valid(), 4, 0x03000000), /byte-swapped/));
    it('tensor count beyond the file', () => expectError(set64(valid(), 8, 2n ** 62n), /tensor count .* larger than the rest of the file/));
    it('KV count beyond the file', () => expectError(set64(valid(), 16, 1000000n), /KV count .* larger than the rest of the file/));
    it('key length beyond the file', () => expectError(set64(valid(), 24, 2n ** 63n), /key of KV 0 length .* larger than the rest of the file/));
    it('string value length beyond the file', () => expectError(set64(valid(), 24 + 8 + 20 + 4, 1n << 40n), /"general\.architecture" length .* larger than the rest of the file/));
    it('truncated inside the tensor infos', () => expectError(valid().subarray(0, 90), /truncated/));
    it('unknown value type', () => expectError(set32(valid(), 24 + 8 + 20, 13), /unknown value type 13/));
    it('unknown tensor type', () => expectError(set32(valid(), 102 - 12, 31), /unknown ggml type 31/));
    it('misaligned offset', () => expectError(set64(valid(), 102 - 8, 4n), /offset 4 is not a multiple of the alignment 32/));
    it('data beyond the file', () => expectError(valid().subarray(0, 130), /beyond the end of the file/));
    it('bad alignment type', () => {
      // written as UINT32 32, then the type id patched to UINT64 (the next 4 bytes are zero padding)
      const { header } = encodeGgufHeader([['general.alignment', gguf.u32(32)]], []);
      expectError(set32(header, 24 + 8 + 17, GgufValueType.UINT64), /general\.alignment must be UINT32/);
    });
    it('huge array count', () => {
      const { header } = encodeGgufHeader([['tokenizer.ggml.tokens', gguf.array(GgufValueType.STRING, ['a'])]], []);
      // element count sits after: counts (24) + key (8+21) + type (4) + elem type (4)
      expectError(set64(header, 24 + 8 + 21 + 8, 2n ** 50n), /element count of "tokenizer\.ggml\.tokens" .* larger than the rest/);
    });
  });

  describe('bounds what a JS reader would choke on, even in a file large enough to back the counts', () => {
    const set64 = (b: Uint8Array, at: number, v: number): Uint8Array => { new DataView(b.buffer).setBigUint64(at, BigInt(v), true); return b; };
    function expectOpenError(file: string, pattern: RegExp): void {
      assert.throws(() => GgufFile.open(file), (err: unknown) => err instanceof FormatError && err.message.startsWith(file) && !err.message.includes('\n') && pattern.test(err.message));
    }
    /** `head` followed by zeros up to `size` bytes, as a sparse file (no disk space used). */
    function sparse(head: Uint8Array, size: number): string {
      const file = path.join(tmp.dir, 'big.gguf');
      writeFileSync(file, head);
      truncateSync(file, size);
      return file;
    }

    it(`a string longer than ${GGUF_MAX_STRING_BYTES} bytes`, () => {
      const { header } = encodeGgufHeader([['general.name', gguf.str('x')]], []);
      const file = sparse(set64(header, 24 + 8 + 12 + 4, GGUF_MAX_STRING_BYTES + 1), GGUF_MAX_STRING_BYTES + 1024);
      expectOpenError(file, /"general\.name" length 268435457 at offset 48 exceeds the limit of 268435456/);
    });
    it(`an array of more than ${GGUF_MAX_ARRAY_ELEMENTS} elements`, () => {
      const { header } = encodeGgufHeader([['a', gguf.array(GgufValueType.UINT8, [1])]], []);
      const file = sparse(set64(header, 24 + 8 + 1 + 8, GGUF_MAX_ARRAY_ELEMENTS + 1), GGUF_MAX_ARRAY_ELEMENTS + 1024);
      expectOpenError(file, /element count of "a" 16777217 .* exceeds the limit of 16777216/);
    });
    it(`more than ${GGUF_MAX_TENSORS} tensors`, () => {
      const { header } = encodeGgufHeader([], []);
      const file = sparse(set64(header, 8, GGUF_MAX_TENSORS + 1), (GGUF_MAX_TENSORS + 1) * 32 + 64);
      expectOpenError(file, /tensor count 1048577 .* exceeds the limit of 1048576/);
    });
    it('a tensor name longer than ggml allows, counted in bytes before decoding', () => {
      const name = 'é'.repeat(32); // 64 UTF-8 bytes, 32 characters
      const { header } = encodeGgufHeader([], [{ name: 'n'.repeat(63), dims: [1], type: GgmlType.F32 }]);
      const bytes = new Uint8Array(header.length + 64);
      bytes.set(header.subarray(0, 24));
      set64(bytes, 24, 64);
      bytes.set(Buffer.from(name), 32);
      bytes.set(header.subarray(24 + 8 + 63), 32 + 64);
      expectOpenError(sparse(bytes, bytes.length), /name of tensor 0 length 64 at offset 24 exceeds the limit of 63/);
    });
    it('keys and tensor names with newlines stay on one line in messages', () => {
      const { header } = encodeGgufHeader([['a\nb', gguf.u32(1)], ['a\nc', gguf.u32(2)]], []);
      const second = 24 + 8 + 3 + 4 + 4 + 8 + 2; // the 'c' of the second key
      assert.equal(header[second], 'c'.charCodeAt(0));
      header[second] = 'b'.charCodeAt(0);
      expectOpenError(sparse(header, header.length), /duplicate key "a\\nb"$/);
    });
    it('a missing file and a directory are FormatErrors too', () => {
      expectOpenError(path.join(tmp.dir, 'absent.gguf'), /cannot open: no such file or directory/);
      expectOpenError(tmp.dir, /cannot read: is a directory/);
    });
  });

  it('refuses to overwrite without force and leaves no partial file when aborted', () => {
    const file = path.join(tmp.dir, 'x.gguf');
    writeFileSync(file, 'keep');
    assert.throws(() => GgufWriter.create(file, [], []), /already exists/);
    const w = GgufWriter.create(file, [], [{ name: 'a', dims: [2], type: GgmlType.F32 }], { force: true });
    assert.throws(() => w.writeTensor('a', new Uint8Array(4)), /has 4 bytes, expected 8/);
    assert.equal(readFileSync(file, 'utf8'), 'keep');
    assert.deepEqual(readdirSync(tmp.dir), ['x.gguf']);
    assert.ok(existsSync(file));
  });
});
