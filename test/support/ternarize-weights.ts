/** Fixture weights and hashing helpers for the ternary tests. */
import path from 'node:path';
import { createHash } from 'node:crypto';
import { SafetensorsFile } from '../../src/formats/safetensors.js';
import { fixtureDir, type FixtureName } from './fixtures.js';

export interface FixtureTensor { shape: number[]; values: Float32Array }

export function readFixtureTensors(name: FixtureName, names: string[]): Map<string, FixtureTensor> {
  const file = SafetensorsFile.open(path.join(fixtureDir(name), 'model.safetensors'));
  try {
    const out = new Map<string, FixtureTensor>();
    for (const tensorName of names) {
      const info = file.get(tensorName);
      if (!info) throw new Error(`${name}: no tensor ${tensorName}`);
      out.set(tensorName, { shape: info.shape, values: file.readFloat32(tensorName) });
    }
    return out;
  } finally {
    file.close();
  }
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
