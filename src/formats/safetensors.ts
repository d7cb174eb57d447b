/**
 * safetensors reader and writer (layout: shared docs/formats.md §6). The reader validates headers
 * as strictly as the official crate and reads one tensor at a time; the writer reproduces the
 * official serializer byte for byte. The parts live in ./safetensors/.
 */
export type { SafetensorsEntry, SafetensorsTensorInfo } from './safetensors/shared.js';
export { SafetensorsFile } from './safetensors/file.js';
export { SafetensorsCheckpoint } from './safetensors/checkpoint.js';
export { writeSafetensors, writeShardedSafetensors } from './safetensors/writer.js';
