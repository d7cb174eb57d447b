/**
 * .tpk inputs for the interop tests: fixtures converted once per test run by the real convert
 * pipeline (cached per fixture and packing), plus a hand-made .tpk builder for byte-vector tests.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { convertCheckpoint } from '../../src/converters/convert.js';
import { f16BitsToF32, f32ToF16Bits, type DType } from '../../src/formats/dtype.js';
import { packTernary, packedByteLength, type TernaryPacking } from '../../src/formats/ternary.js';
import type { TensorSource } from '../../src/converters/import-source.js';
import { TpkWriter, type TpkPlannedTensor } from '../../src/formats/tpk.js';
import { fixtureDir, makeTempDir, type FixtureName } from './fixtures.js';

const tmp = makeTempDir('tritpack-interop-');
const cache = new Map<string, string>();
process.on('exit', () => tmp.cleanup());

export async function convertedFixture(name: FixtureName, packing: TernaryPacking = 't158'): Promise<string> {
  const key = `${name}-${packing}`;
  if (!cache.has(key)) {
    const output = path.join(tmp.dir, `${key}.tpk`);
    await convertCheckpoint({ input: fixtureDir(name), output, packing });
    cache.set(key, output);
  }
  return cache.get(key)!;
}

export function scratchDir(): string {
  return tmp.dir;
}

/** Rounds a float32 value through IEEE binary16, as a GGUF TQ block stores d. */
export function f16round(x: number): number {
  return f16BitsToF32(f32ToF16Bits(x));
}

export interface HandTensor { name: string; shape: number[]; dtype?: DType; values?: Float32Array; codes?: Int8Array; scales?: Float32Array }

/** A .tpk with the given tensors and the side files of a fixture (config overridable). */
export function writeHandTpk(file: string, fixture: FixtureName, tensors: HandTensor[], config?: Record<string, unknown>): void {
  const dir = fixtureDir(fixture);
  const files: Record<string, string> = {};
  for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json']) files[f] = readFileSync(path.join(dir, f), 'utf8');
  if (config) files['config.json'] = JSON.stringify(config);
  const planned: TpkPlannedTensor[] = tensors.map((t) => t.codes
    ? { name: t.name, shape: t.shape, encoding: 't2', scale: { granularity: t.scales!.length === 1 ? 'tensor' : 'channel', count: t.scales!.length }, dataLength: Math.ceil(t.codes.length / 4), scalesLength: t.scales!.length * 4 }
    : { name: t.name, shape: t.shape, encoding: 'F32', dataLength: t.values!.length * 4 });
  const w = TpkWriter.create(file, {
    formatVersion: 1, producer: { name: 'test', version: '0' }, createdAt: new Date(0).toISOString(),
    source: {}, files, conversion: {},
  }, planned, { force: true });
  for (const t of tensors) {
    if (t.codes) w.writeTensor(t.name, packTernary('t2', t.codes), t.scales!);
    else w.writeTensor(t.name, new Uint8Array(t.values!.buffer, t.values!.byteOffset, t.values!.byteLength));
  }
  w.finish();
}

/**
 * Stand-in for the convert pipeline on a tensor source, until convert.ts takes sources (see the
 * interop report): ternary tensors as the source gives them (codes + scales, packed t158), the
 * rest verbatim in their dtype.
 */
export function tpkFromSource(source: TensorSource, file: string): void {
  const planned: TpkPlannedTensor[] = source.tensors.map((t) => t.ternary
    ? { name: t.name, shape: t.shape, encoding: 't158', sourceDType: t.dtype, scale: t.ternary, dataLength: packedByteLength('t158', t.shape.reduce((a, b) => a * b, 1)), scalesLength: t.ternary.count * 4 }
    : { name: t.name, shape: t.shape, encoding: t.dtype, sourceDType: t.dtype, dataLength: t.byteLength });
  const w = TpkWriter.create(file, {
    formatVersion: 1, producer: { name: 'test', version: '0' }, createdAt: new Date(0).toISOString(),
    source: { path: source.path }, files: source.sideFiles, conversion: { aliases: {} },
  }, planned, { force: true });
  for (const t of source.tensors) {
    if (t.ternary) {
      const r = source.readTernary(t.name);
      w.writeTensor(t.name, packTernary('t158', r.codes), r.scales, r.scales.length === 1 ? { gamma: r.scales[0]! } : {});
    } else {
      w.writeTensor(t.name, source.readBytes(t.name));
    }
  }
  w.finish();
}
