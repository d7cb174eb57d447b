/**
 * Hand-made safetensors files for tests: the header text and the data are given literally, so the
 * tests can build valid files independently of the writer and every kind of malformed one.
 */
import { writeFileSync } from 'node:fs';

/** 8-byte little-endian length (the header's byte length unless `declaredLength` overrides it), header, data. */
export function craftSafetensors(file: string, header: string | object, data: Uint8Array = new Uint8Array(0), declaredLength?: number | bigint): void {
  const headerBytes = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(declaredLength ?? headerBytes.length));
  writeFileSync(file, Buffer.concat([prefix, headerBytes, data]));
}

/** Little-endian float32 bytes of `values`. */
export function f32Bytes(values: number[]): Uint8Array {
  const out = Buffer.alloc(values.length * 4);
  values.forEach((v, i) => out.writeFloatLE(v, i * 4));
  return out;
}
