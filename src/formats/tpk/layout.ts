/**
 * Where everything sits in a .tpk file: the 64-byte preamble with its header checksum, and blobs
 * placed one after another at 64-byte-aligned offsets after the header.
 */
import { createHash } from 'node:crypto';
import { writeExactly } from '../io.js';
import { TPK_ALIGNMENT, TPK_FORMAT_VERSION, TPK_MAGIC, TPK_PREAMBLE_SIZE } from './table.js';

export const MAGIC_BYTES = Buffer.from(TPK_MAGIC, 'latin1');
export const HASHED_PREAMBLE_BYTES = 32; // magic, version, flags, header length, data offset

function alignUp(n: number): number {
  return Math.ceil(n / TPK_ALIGNMENT) * TPK_ALIGNMENT;
}

export interface BlobSizes { dataLength: number; scalesLength?: number }
export interface BlobPlace { data: { offset: number; length: number }; scales?: { offset: number; length: number } }
export interface Layout { dataOffset: number; fileSize: number; blobs: BlobPlace[]; header: Buffer }

/** Blobs one after another from `dataOffset`, each at the next 64-byte boundary, in table order. */
function placeBlobs(sizes: BlobSizes[], dataOffset: number): { blobs: BlobPlace[]; fileSize: number } {
  let cursor = dataOffset;
  let fileSize = dataOffset;
  const place = (length: number) => {
    const offset = alignUp(cursor);
    cursor = offset + length;
    fileSize = cursor;
    return { offset, length };
  };
  const blobs = sizes.map((s) => {
    const data = place(s.dataLength);
    return s.scalesLength === undefined ? { data } : { data, scales: place(s.scalesLength) };
  });
  return { blobs, fileSize };
}

/**
 * The header holds the blob offsets and the blob offsets depend on the header's size, so iterate
 * to a fixed point: the data offset only grows and the header's size is bounded, so it settles.
 */
export function fitLayout(sizes: BlobSizes[], encode: (blobs: BlobPlace[]) => Buffer, reserve: number): Layout {
  let dataOffset = alignUp(TPK_PREAMBLE_SIZE + reserve);
  for (;;) {
    const { blobs, fileSize } = placeBlobs(sizes, dataOffset);
    const header = encode(blobs);
    const needed = alignUp(TPK_PREAMBLE_SIZE + header.length + reserve);
    if (needed <= dataOffset) return { dataOffset, fileSize, blobs, header };
    dataOffset = needed;
  }
}

function preamble(header: Buffer, dataOffset: number, withHash: boolean): Buffer {
  const out = Buffer.alloc(TPK_PREAMBLE_SIZE);
  MAGIC_BYTES.copy(out, 0);
  out.writeUInt32LE(TPK_FORMAT_VERSION, 8);
  out.writeUInt32LE(0, 12); // flags: none defined in version 1
  out.writeBigUInt64LE(BigInt(header.length), 16);
  out.writeBigUInt64LE(BigInt(dataOffset), 24);
  if (withHash) headerHash(out, header).copy(out, HASHED_PREAMBLE_BYTES);
  return out;
}

export function headerHash(pre: Buffer, header: Uint8Array): Buffer {
  return createHash('sha256').update(pre.subarray(0, HASHED_PREAMBLE_BYTES)).update(header).digest();
}

/** Writes the preamble, the header and zeros up to the data offset (the header may have shrunk). */
export function writeHeaderRegion(fd: number, file: string, header: Buffer, dataOffset: number, withHash: boolean): void {
  writeExactly(fd, file, preamble(header, dataOffset, withHash), 0);
  writeExactly(fd, file, header, TPK_PREAMBLE_SIZE);
  const end = TPK_PREAMBLE_SIZE + header.length;
  if (dataOffset > end) writeExactly(fd, file, Buffer.alloc(dataOffset - end), end);
}
