/**
 * Fixture weights for the ternary tests. A minimal safetensors read (header JSON + raw slice) kept
 * here so these tests do not depend on the safetensors module; it trusts the bundled fixtures.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { type DType, toFloat32 } from '../../src/formats/dtype.js';
import { fixtureDir, type FixtureName } from './fixtures.js';

export interface FixtureTensor { shape: number[]; values: Float32Array }

export function readFixtureTensors(name: FixtureName, names: string[]): Map<string, FixtureTensor> {
  const buf = readFileSync(path.join(fixtureDir(name), 'model.safetensors'));
  const headerLength = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + headerLength).toString('utf8')) as Record<string, { dtype: DType; shape: number[]; data_offsets: [number, number] }>;
  const out = new Map<string, FixtureTensor>();
  for (const tensorName of names) {
    const info = header[tensorName];
    if (!info) throw new Error(`${name}: no tensor ${tensorName}`);
    const [from, to] = info.data_offsets;
    const bytes = new Uint8Array(buf.buffer, buf.byteOffset + 8 + headerLength + from, to - from);
    out.set(tensorName, { shape: info.shape, values: toFloat32(bytes, info.dtype) });
  }
  return out;
}

export function sha256Hex(bytes: ArrayBufferView): string {
  return createHash('sha256').update(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength)).digest('hex');
}

/** The float32 bits of a number, as the references write them ("0x3c824a2d"). */
export function f32Hex(value: number): string {
  const b = Buffer.alloc(4);
  b.writeFloatLE(value);
  return `0x${b.readUInt32LE(0).toString(16).padStart(8, '0')}`;
}
