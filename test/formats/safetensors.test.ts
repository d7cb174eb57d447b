import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { closeSync, copyFileSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, rmSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import path from 'node:path';
import { FormatError } from '../../src/errors.js';
import { dtypeByteSize, f32ToBf16Bits, bf16BitsToF32, toFloat32Portable } from '../../src/formats/dtype.js';
import { SafetensorsCheckpoint, SafetensorsFile, type SafetensorsEntry, writeSafetensors, writeShardedSafetensors } from '../../src/formats/safetensors.js';
import { type FixtureName, fixtureDir, loadReference, makeTempDir } from '../support/fixtures.js';
import { craftSafetensors, f32Bytes } from '../support/safetensors-craft.js';
import { writeLlamaShards } from '../support/sharded-llama.js';

const ALL_FIXTURES: FixtureName[] = ['tinystories-656K', 'bitnet-tiny', 'llama-256', 'bitnet-tiny-packed'];
const modelFile = (name: FixtureName) => path.join(fixtureDir(name), 'model.safetensors');
const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

/** `| \`file\` | bytes | \`sha256\` |` rows of a fixture's SOURCE.md: hashes recorded when the official tools wrote the files. */
function recordedSha256(sourceMd: string, file: string): string {
  const row = readFileSync(sourceMd, 'utf8').split('\n').find((l) => l.startsWith(`| \`${file}\` |`));
  const hash = row?.match(/`([0-9a-f]{64})`/)?.[1];
  assert.ok(hash, `${sourceMd} records no sha256 for ${file}`);
  return hash;
}

/** Every tensor of an open file as writer entries whose data is read only when the writer asks. */
function entriesOf(file: SafetensorsFile): SafetensorsEntry[] {
  return file.tensors.map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape, data: () => file.readBytes(t.name) }));
}

function meanAbs(values: Float32Array): number {
  let sum = 0;
  for (const v of values) sum += Math.abs(v);
  return sum / values.length;
}

/** Asserts `fn` throws a one-line FormatError whose message starts with `file` and matches `problem`. */
function assertFormatError(fn: () => unknown, file: string, problem: RegExp): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof FormatError, `expected FormatError, got ${String(error)}`);
    assert.ok(error.message.startsWith(`${file}: `), `message does not start with the file: ${error.message}`);
    assert.ok(!error.message.includes('\n'), `message is not one line: ${JSON.stringify(error.message)}`);
    assert.match(error.problem, problem);
    return true;
  });
}

/** llama-256's state-dict order (module registration order), the order save_pretrained shards in. */

describe('formats/safetensors', () => {
  let tmp: { dir: string; cleanup: () => void };
  beforeEach(() => {
    tmp = makeTempDir('tritpack-safetensors-');
  });
  afterEach(() => tmp.cleanup());

  describe('reading the fixtures', () => {
    it('llama-256: names, shapes and dtypes equal reference.json, in data-offset order', () => {
      const expected = loadReference('llama-256').tensors as Record<string, { dtype: string; shape: number[] }>;
      const f = SafetensorsFile.open(modelFile('llama-256'));
      try {
        assert.deepEqual(Object.fromEntries(f.tensors.map((t) => [t.name, { dtype: t.dtype, shape: t.shape }])), expected);
        assert.deepEqual(f.metadata, { format: 'pt' });
        for (let i = 1; i < f.tensors.length; i++) {
          assert.equal(f.tensors[i]!.dataOffset, f.tensors[i - 1]!.dataOffset + f.tensors[i - 1]!.byteLength);
        }
        assert.equal(f.get('lm_head.weight')!.byteLength, 2048 * 256 * 2);
        assert.equal(f.get('nope'), undefined);
      } finally {
        f.close();
      }
    });

    it('bitnet-tiny-packed: U8 codes and BF16 tensors equal reference.json format.tensors', () => {
      const expected = loadReference('bitnet-tiny-packed').format.tensors as Record<string, { dtype: string; shape: number[] }>;
      const f = SafetensorsFile.open(modelFile('bitnet-tiny-packed'));
      try {
        assert.deepEqual(Object.fromEntries(f.tensors.map((t) => [t.name, { dtype: t.dtype, shape: t.shape }])), expected);
        // U8 is read raw; packed codes 0..2 in 2-bit fields never use the pattern 3.
        const packed = f.readBytes('model.layers.0.self_attn.q_proj.weight');
        assert.equal(packed.length, 64 * 256);
        for (const byte of packed) for (let s = 0; s < 8; s += 2) assert.notEqual((byte >> s) & 3, 3);
        assertFormatError(() => f.readFloat32('model.layers.0.self_attn.q_proj.weight'), f.path, /is U8; only F32, F16, BF16 and F64/);
      } finally {
        f.close();
      }
    });

    it('bitnet-tiny: BF16 tensors equal SOURCE.md; mean|W| equals the recorded effective scale; packed weight_scale is its bf16', () => {
      const source = readFileSync(path.join(fixtureDir('bitnet-tiny'), 'SOURCE.md'), 'utf8');
      const rows = [...source.matchAll(/^\| `([^`]+)` \| \[([\d, ]+)\] \| bfloat16 \| [^|]+\|\s*([\d.]*)\s*\|/gm)];
      assert.equal(rows.length, 24);
      const f = SafetensorsFile.open(modelFile('bitnet-tiny'));
      const packed = SafetensorsFile.open(modelFile('bitnet-tiny-packed'));
      try {
        assert.deepEqual(f.tensors.map((t) => t.name).sort(), rows.map((r) => r[1]).sort());
        let ternarized = 0;
        for (const [, name, shape, scale] of rows) {
          const info = f.get(name!)!;
          assert.equal(info.dtype, 'BF16');
          assert.deepEqual(info.shape, shape!.split(', ').map(Number));
          if (!scale) continue;
          ternarized++;
          // The effective scale is 1/(1/mean|W|) in float32, printed with 9 digits.
          const gamma = meanAbs(f.readFloat32(name!));
          assert.ok(Math.abs(gamma - Number(scale)) < 2e-6 * gamma, `${name}: mean|W| ${gamma} vs ${scale}`);
          assert.equal(packed.readFloat32(`${name!}_scale`)[0], bf16BitsToF32(f32ToBf16Bits(Number(scale))));
        }
        assert.equal(ternarized, 14);
        // bitnet-tiny-packed keeps the embedding byte-identical to bitnet-tiny (its SOURCE says so).
        assert.deepEqual(packed.readBytes('model.embed_tokens.weight'), f.readBytes('model.embed_tokens.weight'));
      } finally {
        f.close();
        packed.close();
      }
    });

    it('tinystories-656K: 20 F32 tensors, the tied-embedding alias in __metadata__, gammas as reference.json records', () => {
      const reference = loadReference('tinystories-656K').ternary_absmean.tensors as Record<string, { shape: number[]; gamma_from_float64_mean_rounded_to_f32: number }>;
      const f = SafetensorsFile.open(modelFile('tinystories-656K'));
      try {
        assert.equal(f.tensors.length, 20);
        assert.ok(f.tensors.every((t) => t.dtype === 'F32'));
        assert.deepEqual(f.metadata, { format: 'pt', 'model.embed_tokens.weight': 'lm_head.weight' });
        assert.deepEqual(f.get('lm_head.weight')!.shape, [2048, 128]);
        assert.equal(f.get('model.embed_tokens.weight'), undefined);
        assert.equal(Object.keys(reference).length, 14);
        for (const [name, ref] of Object.entries(reference)) {
          assert.deepEqual(f.get(name)!.shape, ref.shape);
          const values = f.readFloat32(name);
          let sum = 0;
          for (const v of values) sum += Math.abs(v);
          assert.equal(Math.fround(sum / values.length), ref.gamma_from_float64_mean_rounded_to_f32, name);
        }
        // SOURCE.md: every value is an exact bf16 upcast, so the low 16 bits of every float are zero.
        for (const t of f.tensors) {
          const bits = new Uint32Array(f.readFloat32(t.name).buffer);
          assert.ok(bits.every((b) => (b & 0xffff) === 0), t.name);
        }
      } finally {
        f.close();
      }
    });

    it('readFloat32 (read in place into its result) equals the byte-order-independent decoder for every fixture tensor', () => {
      for (const name of ['tinystories-656K', 'bitnet-tiny', 'llama-256'] as const) {
        const f = SafetensorsFile.open(modelFile(name));
        try {
          for (const t of f.tensors) {
            const portable = toFloat32Portable(f.readBytes(t.name), t.dtype, new Float32Array(t.byteLength / dtypeByteSize(t.dtype)));
            assert.deepEqual(f.readFloat32(t.name), portable, `${name} ${t.name}`);
          }
        } finally {
          f.close();
        }
      }
    });

    it('llama-256 F16 values: linears have std ≈ 0.02 and norms mean ≈ 1, as generated', () => {
      const ckpt = SafetensorsCheckpoint.open(fixtureDir('llama-256'));
      try {
        assert.deepEqual(ckpt.files, [modelFile('llama-256')]);
        const q = ckpt.readFloat32('model.layers.0.self_attn.q_proj.weight');
        const std = Math.sqrt(q.reduce((s, v) => s + v * v, 0) / q.length);
        assert.ok(Math.abs(std - 0.02) < 0.001, `std ${std}`);
        const norm = ckpt.readFloat32('model.layers.1.input_layernorm.weight');
        const mean = norm.reduce((s, v) => s + v, 0) / norm.length;
        assert.ok(Math.abs(mean - 1) < 0.03, `mean ${mean}`);
      } finally {
        ckpt.close();
      }
    });

    it('reads one tensor at an offset past 4 GiB of a sparse file without touching the rest', () => {
      const file = path.join(tmp.dir, 'sparse.safetensors');
      const big = 5 * 2 ** 30;
      const header = JSON.stringify({ big: { dtype: 'U8', shape: [big], data_offsets: [0, big] }, small: { dtype: 'F32', shape: [3], data_offsets: [big, big + 12] } });
      craftSafetensors(file, header);
      truncateSync(file, 8 + header.length + big + 12);
      const fd = openSync(file, 'r+');
      writeSync(fd, f32Bytes([1.5, -2, 3.25]), 0, 12, 8 + header.length + big);
      closeSync(fd);
      const f = SafetensorsFile.open(file);
      try {
        assert.deepEqual([...f.readFloat32('small')], [1.5, -2, 3.25]);
        assert.equal(f.get('big')!.byteLength, big);
      } finally {
        f.close();
      }
    });
  });

  describe('writing', () => {
    it('re-serializes every fixture byte for byte (the files were written by the official safetensors)', () => {
      for (const name of ALL_FIXTURES) {
        const f = SafetensorsFile.open(modelFile(name));
        const out = path.join(tmp.dir, `${name}.safetensors`);
        try {
          // Reversed input: the writer must impose the official order itself.
          writeSafetensors(out, entriesOf(f).reverse(), f.metadata);
        } finally {
          f.close();
        }
        const bytes = readFileSync(out);
        assert.equal(sha256(bytes), recordedSha256(path.join(fixtureDir(name), 'SOURCE.md'), 'model.safetensors'), name);
        assert.ok(bytes.equals(readFileSync(modelFile(name))), name);
        assert.deepEqual(readdirSync(tmp.dir).filter((n) => n.includes('.tmp-')), []);
      }
    });

    it("reproduces the official crate's serializer test vectors", () => {
      // From huggingface/safetensors safetensors/src/tensor.rs tests (test_serialization,
      // test_serialization_forced_alignement, test_empty), written out as text.
      const data = f32Bytes([0, 1, 2, 3, 4, 5]);
      const cases: [SafetensorsEntry[], Record<string, string> | undefined, string][] = [
        [[{ name: 'attn.0', dtype: 'F32', shape: [1, 2, 3], data }], undefined, '{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}'],
        [[{ name: 'attn0', dtype: 'F32', shape: [1, 1, 2, 3], data }], undefined, '{"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}}       '],
        [[], undefined, '{}      '],
        [[], { framework: 'pt' }, '{"__metadata__":{"framework":"pt"}}     '],
      ];
      for (const [entries, metadata, header] of cases) {
        const out = path.join(tmp.dir, 'v.safetensors');
        writeSafetensors(out, entries, metadata);
        const expected = Buffer.alloc(8);
        expected.writeBigUInt64LE(BigInt(header.length));
        assert.deepEqual(readFileSync(out), Buffer.concat([expected, Buffer.from(header), entries.length ? data : Buffer.alloc(0)]));
      }
    });

    it('orders tensors by dtype as formats.md §6.2 lists, then by name in code-point (UTF-8 byte) order', () => {
      const dtypes = ['BOOL', 'U8', 'I8', 'I16', 'F16', 'BF16', 'I32', 'F32', 'F64', 'I64'] as const;
      const entries: SafetensorsEntry[] = dtypes.map((dtype) => ({ name: dtype.toLowerCase(), dtype, shape: [0], data: new Uint8Array(0) }));
      // U+1F600 is after U+FFFD in code-point order although its UTF-16 surrogate sorts first.
      entries.push({ name: 'z\u{1F600}', dtype: 'U8', shape: [1], data: new Uint8Array([7]) }, { name: 'z\uFFFD', dtype: 'U8', shape: [1], data: new Uint8Array([9]) });
      const out = path.join(tmp.dir, 'order.safetensors');
      writeSafetensors(out, entries);
      const f = SafetensorsFile.open(out);
      try {
        const headerBytes = readFileSync(out).subarray(8, f.tensors[0]!.dataOffset);
        assert.equal(headerBytes.length % 8, 0);
        const header = headerBytes.toString('utf8');
        const order = [...header.matchAll(/"([^"]+)":\{"dtype"/g)].map((m) => m[1]);
        assert.deepEqual(order, ['i64', 'f64', 'f32', 'i32', 'bf16', 'f16', 'i16', 'i8', 'u8', 'z\uFFFD', 'z\u{1F600}', 'bool']);
        assert.deepEqual(f.readBytes('z\uFFFD'), new Uint8Array([9]));
      } finally {
        f.close();
      }
    });

    it('round-trips F64 and integer tensors; F64 reads as float32 rounded to nearest', () => {
      const f64 = Buffer.alloc(16);
      f64.writeDoubleLE(1 / 3, 0);
      f64.writeDoubleLE(-1e300, 8);
      const out = path.join(tmp.dir, 'f64.safetensors');
      writeSafetensors(out, [{ name: 'x', dtype: 'F64', shape: [2], data: f64 }, { name: 'i', dtype: 'I32', shape: [1, 1], data: new Uint8Array([1, 0, 0, 128]) }]);
      const f = SafetensorsFile.open(out);
      try {
        assert.deepEqual([...f.readFloat32('x')], [Math.fround(1 / 3), -Infinity]);
        assert.deepEqual(f.readBytes('i'), new Uint8Array([1, 0, 0, 128]));
      } finally {
        f.close();
      }
    });

    it('narrows a multi-chunk F64 tensor exactly like a float32 cast', () => {
      const count = (1 << 20) + 3;
      const values = Float64Array.from({ length: count }, (_, i) => (i - 5e5) / 3);
      const out = path.join(tmp.dir, 'f64big.safetensors');
      writeSafetensors(out, [{ name: 'x', dtype: 'F64', shape: [count], data: new Uint8Array(values.buffer) }]);
      const f = SafetensorsFile.open(out);
      try {
        assert.deepEqual(f.readFloat32('x'), Float32Array.from(values));
      } finally {
        f.close();
      }
    });

    it('calls data thunks one at a time, in data order, only after the header is planned', () => {
      const calls: string[] = [];
      const thunk = (name: string, bytes: number[]) => () => {
        calls.push(name);
        return new Uint8Array(bytes);
      };
      const out = path.join(tmp.dir, 'lazy.safetensors');
      writeSafetensors(out, [{ name: 'b', dtype: 'U8', shape: [1], data: thunk('b', [2]) }, { name: 'a', dtype: 'I16', shape: [1], data: thunk('a', [1, 0]) }]);
      assert.deepEqual(calls, ['a', 'b']);
    });

    it('leaves no file and no temporary file when it fails, and keeps an existing file intact', () => {
      const out = path.join(tmp.dir, 'out.safetensors');
      const leftovers = () => readdirSync(tmp.dir).filter((n) => n.includes('.tmp-'));
      const good: SafetensorsEntry = { name: 'a', dtype: 'F32', shape: [1], data: f32Bytes([1]) };
      assertFormatError(() => writeSafetensors(out, [good, { name: 'b', dtype: 'F32', shape: [2], data: () => f32Bytes([1]) }]), out, /tensor "b": got 4 bytes of data but shape \[2\] of F32 needs 8/);
      assert.equal(existsSync(out), false);
      assert.throws(() => writeSafetensors(out, [good, { name: 'b', dtype: 'F32', shape: [1], data: () => { throw new Error('source went away'); } }]), /source went away/);
      assert.equal(existsSync(out), false);
      assert.deepEqual(leftovers(), []);

      writeFileSync(out, 'previous');
      assertFormatError(() => writeSafetensors(out, [good, { ...good }]), out, /tensor "a" is given twice/);
      assertFormatError(() => writeSafetensors(out, [{ ...good, name: '__metadata__' }]), out, /cannot be named "__metadata__"/);
      assertFormatError(() => writeSafetensors(out, [{ ...good, shape: [-1] }]), out, /shape must be an array of non-negative integers/);
      assert.equal(readFileSync(out, 'utf8'), 'previous');
      assert.deepEqual(leftovers(), []);

      const missing = path.join(tmp.dir, 'no-such-dir', 'x.safetensors');
      assertFormatError(() => writeSafetensors(missing, [good]), missing, /cannot create the output file: no such file or directory/);
    });
  });

  describe('sharded checkpoints', () => {
    // Recorded in shared/fixtures/llama-256-sharded/SOURCE.md: save_pretrained(max_shard_size="2MB") output.
    const OFFICIAL_SHARDS: Record<string, string> = {
      'model-00001-of-00003.safetensors': '61378a38e6e5e2b1c1d69171fc0d94a757594f891e80b73f4713dbd51d24eb22',
      'model-00002-of-00003.safetensors': '403f8046038a65b19eb12166ca39c20d06541f47a0946b4c5d7117cec8b458c3',
      'model-00003-of-00003.safetensors': '158ed4416d6a3374fb59ddfec58b73dcd6a350e85224d3fe12a5cb2d541ea6ec',
      'model.safetensors.index.json': '5b3294e03951da4ce9138c0913d60223a89d63e7a9f8c7d8d3269149590777d4',
    };


    it("writes llama-256 exactly as save_pretrained(max_shard_size='2MB') did: same shards, same index, byte for byte", () => {
      const written = writeLlamaShards(tmp.dir, 2_000_000);
      assert.deepEqual(written.map((p) => path.basename(p)), Object.keys(OFFICIAL_SHARDS));
      for (const [name, hash] of Object.entries(OFFICIAL_SHARDS)) assert.equal(sha256(readFileSync(path.join(tmp.dir, name))), hash, name);
      assert.deepEqual(readdirSync(tmp.dir).sort(), Object.keys(OFFICIAL_SHARDS).sort());
    });

    it('reads the sharded checkpoint through its index: same tensors and bytes as the single file', () => {
      writeLlamaShards(tmp.dir, 2_000_000);
      const sharded = SafetensorsCheckpoint.open(tmp.dir);
      const single = SafetensorsFile.open(modelFile('llama-256'));
      try {
        assert.deepEqual(sharded.files.map((p) => path.basename(p)), Object.keys(OFFICIAL_SHARDS).slice(0, 3));
        assert.deepEqual(sharded.tensors.map((t) => t.name).sort(), single.tensors.map((t) => t.name).sort());
        assert.equal(path.basename(sharded.get('lm_head.weight')!.file), 'model-00003-of-00003.safetensors');
        for (const t of single.tensors) {
          assert.deepEqual(sharded.readBytes(t.name), single.readBytes(t.name));
          assert.deepEqual(sharded.readFloat32(t.name), single.readFloat32(t.name));
        }
        assertFormatError(() => sharded.readBytes('nope'), path.join(tmp.dir, 'model.safetensors.index.json'), /no tensor named "nope"/);
      } finally {
        sharded.close();
        single.close();
      }
      // The index file itself is also accepted as the path.
      const viaIndex = SafetensorsCheckpoint.open(path.join(tmp.dir, 'model.safetensors.index.json'));
      assert.equal(viaIndex.tensors.length, 21);
      viaIndex.close();
      // As in transformers, a model.safetensors next to an index takes precedence.
      copyFileSync(modelFile('llama-256'), path.join(tmp.dir, 'model.safetensors'));
      const preferred = SafetensorsCheckpoint.open(tmp.dir);
      assert.deepEqual(preferred.files, [path.join(tmp.dir, 'model.safetensors')]);
      preferred.close();
    });

    it('writes a single model.safetensors without an index when everything fits, identical to the fixture', () => {
      const written = writeLlamaShards(tmp.dir, 10_000_000);
      assert.deepEqual(written, [path.join(tmp.dir, 'model.safetensors')]);
      assert.ok(readFileSync(written[0]!).equals(readFileSync(modelFile('llama-256'))));
    });

    it("splits greedily like huggingface_hub: sizes [6,6,2,6,2,2] under 10 give [6], [6,2], [6,2,2]; an oversized tensor gets its own shard at once", () => {
      const u8 = (name: string, n: number): SafetensorsEntry => ({ name, dtype: 'U8', shape: [n], data: new Uint8Array(n) });
      const entries = [u8('a', 6), u8('b', 6), u8('c', 2), u8('d', 6), u8('e', 2), u8('f', 2)];
      writeShardedSafetensors(tmp.dir, entries, 10);
      const index = JSON.parse(readFileSync(path.join(tmp.dir, 'model.safetensors.index.json'), 'utf8'));
      assert.deepEqual(index.metadata, { total_parameters: 24, total_size: 24 });
      const shard = (i: number) => `model-0000${i}-of-00003.safetensors`;
      assert.deepEqual(index.weight_map, { a: shard(1), b: shard(2), c: shard(2), d: shard(3), e: shard(3), f: shard(3) });

      const second = path.join(tmp.dir, 'oversized');
      mkdirSync(second);
      writeShardedSafetensors(second, [u8('a', 4), u8('huge', 30), u8('b', 4), u8('c', 4)], 10);
      const map2 = JSON.parse(readFileSync(path.join(second, 'model.safetensors.index.json'), 'utf8')).weight_map;
      const of3 = (i: number) => `model-0000${i}-of-00003.safetensors`;
      assert.deepEqual(map2, { a: of3(2), huge: of3(1), b: of3(2), c: of3(3) });
    });

    it('rejects an index that disagrees with its shards, naming the file', () => {
      writeLlamaShards(tmp.dir, 2_000_000);
      const indexPath = path.join(tmp.dir, 'model.safetensors.index.json');
      const index = JSON.parse(readFileSync(indexPath, 'utf8'));
      const shard1 = path.join(tmp.dir, 'model-00001-of-00003.safetensors');
      const withIndex = (edit: (i: typeof index) => void) => {
        const copy = structuredClone(index);
        edit(copy);
        writeFileSync(indexPath, JSON.stringify(copy));
      };

      withIndex((i) => (i.weight_map['model.extra.weight'] = 'model-00001-of-00003.safetensors'));
      assertFormatError(() => SafetensorsCheckpoint.open(tmp.dir), shard1, /tensor "model.extra.weight" is listed in model.safetensors.index.json but missing from this shard/);
      withIndex((i) => delete i.weight_map['model.embed_tokens.weight']);
      assertFormatError(() => SafetensorsCheckpoint.open(tmp.dir), shard1, /tensor "model.embed_tokens.weight" is not listed in model.safetensors.index.json/);
      withIndex((i) => (i.weight_map['model.embed_tokens.weight'] = 'model-00002-of-00003.safetensors'));
      assertFormatError(() => SafetensorsCheckpoint.open(tmp.dir), shard1, /is listed in model.safetensors.index.json under model-00002-of-00003.safetensors/);
      withIndex((i) => (i.weight_map['model.norm.weight'] = '../model.safetensors'));
      assertFormatError(() => SafetensorsCheckpoint.open(tmp.dir), indexPath, /must be a file name in the same directory/);
      withIndex((i) => delete i.weight_map);
      assertFormatError(() => SafetensorsCheckpoint.open(tmp.dir), indexPath, /has no "weight_map" object/);
      writeFileSync(indexPath, '{"weight_map": ');
      assertFormatError(() => SafetensorsCheckpoint.open(tmp.dir), indexPath, /not valid JSON/);

      withIndex(() => undefined);
      rmSync(path.join(tmp.dir, 'model-00002-of-00003.safetensors'));
      assertFormatError(() => SafetensorsCheckpoint.open(tmp.dir), path.join(tmp.dir, 'model-00002-of-00003.safetensors'), /shard listed in model.safetensors.index.json does not exist/);

      const empty = path.join(tmp.dir, 'empty');
      mkdirSync(empty);
      assertFormatError(() => SafetensorsCheckpoint.open(empty), empty, /neither model.safetensors nor model.safetensors.index.json/);
      const absent = path.join(tmp.dir, 'absent');
      assertFormatError(() => SafetensorsCheckpoint.open(absent), absent, /cannot open: no such file or directory/);
    });
  });

  describe('bad input (issue 2): one-line FormatError naming the file', () => {
    const tensorHeader = (fields: object) => ({ t: { dtype: 'F32', shape: [2], data_offsets: [0, 8], ...fields } });
    const data8 = f32Bytes([1, 2]);
    let file: string;
    beforeEach(() => {
      file = path.join(tmp.dir, 'bad.safetensors');
    });
    const rejects = (problem: RegExp) => assertFormatError(() => SafetensorsFile.open(file), file, problem);

    it('truncated files', () => {
      writeFileSync(file, Buffer.from([1, 2, 3, 4, 5]));
      rejects(/file is 5 bytes, too short for the 8-byte header length/);
      copyFileSync(modelFile('tinystories-656K'), file);
      truncateSync(file, 1000);
      rejects(/header length 2160 runs past the end of the file \(1000 bytes\)/);
      copyFileSync(modelFile('llama-256'), file);
      truncateSync(file, 3_000_000);
      rejects(/tensor "[^"]+": data_offsets \[\d+, \d+\] run past the end of the 2997776-byte data section/);
    });

    it('header length beyond the file or above the 100 MB maximum', () => {
      craftSafetensors(file, tensorHeader({}), data8, 1_000_000);
      rejects(/header length 1000000 runs past the end of the file/);
      craftSafetensors(file, tensorHeader({}), data8, 2n ** 64n - 1n);
      rejects(/header length 18446744073709551615 runs past the end of the file/);
      craftSafetensors(file, '{}', undefined, 100_000_001);
      truncateSync(file, 8 + 100_000_001); // sparse: the length is in bounds, only the maximum is exceeded
      rejects(/header length 100000001 exceeds the 100000000-byte maximum/);
    });

    it('header that is not UTF-8, not an object, not JSON, or has a key twice', () => {
      writeFileSync(file, Buffer.concat([Buffer.from([3, 0, 0, 0, 0, 0, 0, 0]), Buffer.from([0x7b, 0xff, 0x7d])]));
      rejects(/header is not valid UTF-8/);
      craftSafetensors(file, '[1, 2]');
      rejects(/header does not start with '\{'/);
      craftSafetensors(file, '\uFEFF{}');
      rejects(/header does not start with '\{'/);
      craftSafetensors(file, '{"t": {"dtype": "F32",\n "shape": [2]');
      rejects(/header is not valid JSON \(.+\)/);
      craftSafetensors(file, '{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}, "t" : {"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', data8);
      rejects(/header has the key "t" twice/);
    });

    it('unknown or unsupported dtype', () => {
      craftSafetensors(file, tensorHeader({ dtype: 'F12' }), data8);
      rejects(/tensor "t": unknown dtype "F12"/);
      craftSafetensors(file, tensorHeader({ dtype: 'U16', shape: [4] }), data8);
      rejects(/tensor "t": dtype U16 is valid safetensors but not supported by tritpack/);
      craftSafetensors(file, tensorHeader({ dtype: 5 }), data8);
      rejects(/tensor "t": dtype must be a string/);
    });

    it('malformed shape or data_offsets', () => {
      for (const shape of [[-2], [2.5], '2', [null], [2 ** 60]]) {
        craftSafetensors(file, tensorHeader({ shape }), data8);
        rejects(/tensor "t": shape must be an array of non-negative integers/);
      }
      for (const offsets of [[0], [0, 8, 8], [-8, 0], ['0', '8'], null]) {
        craftSafetensors(file, tensorHeader({ data_offsets: offsets }), data8);
        rejects(/tensor "t": data_offsets must be \[begin, end\]/);
      }
      craftSafetensors(file, tensorHeader({ data_offsets: [8, 0] }), data8);
      rejects(/data_offsets \[8, 0\] end before they begin/);
      craftSafetensors(file, { t: 'F32' }, data8);
      rejects(/tensor "t": entry must be an object/);
    });

    it('offsets out of bounds', () => {
      craftSafetensors(file, tensorHeader({ data_offsets: [4, 12] }), data8);
      rejects(/tensor "t": data_offsets \[4, 12\] run past the end of the 8-byte data section/);
    });

    it('bytes not matching shape × dtype', () => {
      craftSafetensors(file, tensorHeader({ shape: [3] }), data8);
      rejects(/tensor "t": shape \[3\] of F32 needs 12 bytes but data_offsets \[0, 8\] hold 8/);
      craftSafetensors(file, tensorHeader({ dtype: 'BF16' }), data8);
      rejects(/shape \[2\] of BF16 needs 4 bytes but data_offsets \[0, 8\] hold 8/);
    });

    it('overlapping tensors, gaps and trailing bytes (data must be tiled exactly)', () => {
      const header = (a: number[], b: number[]) => ({ a: { dtype: 'F32', shape: [1], data_offsets: a }, b: { dtype: 'F32', shape: [1], data_offsets: b } });
      craftSafetensors(file, header([0, 4], [2, 6]), data8);
      rejects(/tensors "a" and "b" overlap \(data bytes 2 to 4\)/);
      craftSafetensors(file, header([0, 4], [0, 4]), data8);
      rejects(/tensors "a" and "b" overlap/);
      craftSafetensors(file, header([0, 4], [4, 8]), f32Bytes([1, 2, 3]));
      rejects(/4 bytes after the last tensor belong to no tensor/);
      craftSafetensors(file, { b: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, data8);
      rejects(/4 data bytes before tensor "b" belong to no tensor/);
    });

    it('__metadata__ must map strings to strings; names with newlines stay on one line', () => {
      craftSafetensors(file, { __metadata__: { format: 'pt', n: 1 } });
      rejects(/__metadata__ value of "n" must be a string, got 1/);
      craftSafetensors(file, { __metadata__: ['pt'] });
      rejects(/__metadata__ must be an object/);
      craftSafetensors(file, { 'bad\nname': { dtype: 'F32', shape: [5], data_offsets: [0, 8] } }, data8);
      rejects(/tensor "bad\\nname": shape \[5\]/);
    });

    it('accepts what the official reader accepts: empty and 0-rank tensors, no metadata, unpadded header', () => {
      craftSafetensors(file, { e: { dtype: 'F16', shape: [0, 3], data_offsets: [0, 0] }, s: { dtype: 'F32', shape: [], data_offsets: [0, 4] } }, f32Bytes([7]));
      const f = SafetensorsFile.open(file);
      try {
        assert.deepEqual(f.metadata, {});
        assert.deepEqual([...f.readFloat32('s')], [7]);
        assert.equal(f.readFloat32('e').length, 0);
        assertFormatError(() => f.readBytes('x'), file, /no tensor named "x"/);
      } finally {
        f.close();
      }
    });
  });
});
