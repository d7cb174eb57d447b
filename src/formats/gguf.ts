/**
 * GGUF v3 (llama.cpp / ggml): constants, a strict reader and a streaming writer — bytes only.
 * The parts live in ./gguf/: types (value and tensor types), reader (hostile-input-safe) and writer.
 */
export * from './gguf/types.js';
export { GgufFile, GGUF_MAX_STRING_BYTES, GGUF_MAX_ARRAY_ELEMENTS, GGUF_MAX_TENSORS } from './gguf/reader.js';
export { GgufWriter, encodeGgufHeader, gguf, type GgufPlannedTensor } from './gguf/writer.js';
