/** The forward pass of `loadModel`, but over a model source the test chose (mapped, read, refused mappings). */
import type { Backend } from '../../src/runtime-min/backend.js';
import { normalizeConfig } from '../../src/runtime-min/config.js';
import { Decoder } from '../../src/runtime-min/model.js';
import type { ModelSource } from '../../src/runtime-min/sources.js';
import { loadWeights } from '../../src/runtime-min/weights.js';

/** Logits of `ids` from a model whose weights come through `src` (closed afterwards). */
export function logitsThrough(backend: Backend, src: ModelSource, ids: number[]): Float32Array {
  try {
    const cfg = normalizeConfig(JSON.parse(src.configText), src.configOrigin);
    const decoder = new Decoder(cfg, loadWeights(src, cfg, backend), backend);
    return decoder.forward(decoder.newState(), ids);
  } finally {
    src.close();
  }
}
