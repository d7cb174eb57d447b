/**
 * The .tpk file: tritpack's single-file packed model (specified byte by byte in docs/tpk-format.md).
 *
 *   [64-byte preamble][msgpack header][zero padding to 64][blob][pad][blob][pad]…[last blob]
 *
 * The preamble carries magic, version, flags, the header's length, where the blob region starts
 * and a sha256 over itself and the header, so every byte that describes the model is checked.
 * The header is plain msgpack so any language can read it; each blob starts at a 64-byte-aligned
 * offset and has its own sha256 in the header. The parts live in ./tpk/: table (types and the
 * tensor-table rules), codec (msgpack), layout (preamble and blob placement), writer, reader,
 * validate (header checks) and rewrite (header updates).
 */
export {
  TPK_MAGIC, TPK_FORMAT_VERSION, TPK_ALIGNMENT, TPK_PREAMBLE_SIZE, TPK_MAX_HEADER_BYTES,
  type TpkEncoding, type TpkBlobRef, type TpkScale, type TpkTensorEntry, type TpkHeader, type TpkPlannedTensor,
  isTpkEncoding, isTernaryEncoding, elementCount, tpkDataLength, tpkScaleCount, tpkScaleIndex,
} from './tpk/table.js';
export { TpkWriter } from './tpk/writer.js';
export { TpkFile } from './tpk/reader.js';
export { updateTpkHeader } from './tpk/rewrite.js';
