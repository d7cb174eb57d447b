/**
 * The minimal runtime's public face: `loadModel` opens an HF checkpoint directory or a .tpk and
 * returns a LoadedModel (config, tokenizer, batched `logits`, KV-cached `generate`).
 */
import { FormatError, TritpackError } from '../errors.js';
import type { Backend, LmHeadPrecision } from './backend.js';
import { normalizeConfig, type ModelConfig } from './config.js';
import { Decoder, type DecoderState } from './model.js';
import { ReferenceBackend } from './reference-backend.js';
import { defaultBackendName } from './backends/choose.js';
import { NativeBackend } from './backends/native.js';
import { WasmBackend } from './backends/wasm.js';
import { createSampler } from './sampling.js';
import { openModelSource, type ModelSource } from './sources.js';
import { tokenizerFromJson, type RuntimeTokenizer } from './tokenizer.js';
import { loadWeights } from './weights.js';

export type { ModelConfig, RopeScaling, BitNetQuantization, GenerationDefaults } from './config.js';
export { SUPPORTED_MODEL_TYPES, normalizeConfig } from './config.js';
export type { RuntimeTokenizer } from './tokenizer.js';
export type {
  Backend, WeightSource, FloatWeightSource, TernaryWeightSource, Int8WeightSource, LmHeadPrecision, PreparedWeight, QuantizedActivations, KvCache, AttentionShape,
} from './backend.js';
export { ReferenceBackend } from './reference-backend.js';
export { createSampler, argmax, type SamplingOptions } from './sampling.js';

export interface GenerateOptions {
  maxNewTokens: number;
  /** 0 = greedy. Omitted: the model's generation_config.json (greedy unless it sets do_sample). */
  temperature?: number;
  topK?: number;
  topP?: number;
  seed?: number;
  /** Stop after emitting one of config.eosTokenIds (the EOS token is included in the result). */
  stopAtEos?: boolean;
}

/** Incremental decoding over one KV cache: feed tokens, get their logits. */
export interface DecodingSession {
  /** Positions consumed so far. */
  readonly position: number;
  /** Run `ids` at the next positions; logits [ids.length × vocab], or [vocab] of the last when `lastOnly`. */
  feed(ids: ArrayLike<number>, options?: { lastOnly?: boolean }): Float32Array;
}

export interface LoadedModel {
  config: ModelConfig;
  tokenizer: RuntimeTokenizer;
  source: { kind: 'hf-dir' | 'tpk'; path: string };
  /** Name of the backend running the kernels. */
  backend: string;
  /** Bytes of weights the backend holds (packed ternary stays packed). */
  weightBytes: number;
  /** The LM head's precision: 'float' as stored, or 'int8' when loaded with lmHead: 'int8'. */
  lmHead: LmHeadPrecision;
  /** Logits [ids.length × vocab] of one causal window (batched prefill from position 0). */
  logits(ids: ArrayLike<number>): Float32Array;
  generate(promptIds: number[], options: GenerateOptions, onToken?: (id: number) => void): number[];
  /** A fresh KV-cached session (for streaming or side-by-side decoding). */
  createSession(): DecodingSession;
  close(): void;
}

/**
 * backend: 'native' | 'wasm' | 'reference' (default: the first that loads, in that order); threads: kernel
 * threads of the native and wasm backends (default: one per CPU); lmHead: 'int8' runs the output layer on int8 weights and activations (half the bytes of
 * f16, different numerics, so never the default; backend.ts's Int8WeightSource and matmulQ8 define it).
 */
export interface LoadOptions { backend?: string; threads?: number; lmHead?: LmHeadPrecision }
export const LM_HEAD_PRECISIONS: readonly LmHeadPrecision[] = ['float', 'int8'];

const BACKENDS: Record<string, (options: LoadOptions) => Backend> = {
  reference: () => new ReferenceBackend(),
  native: (o) => new NativeBackend({ threads: o.threads }),
  wasm: (o) => new WasmBackend({ threads: o.threads }),
};
export const AVAILABLE_BACKENDS = Object.keys(BACKENDS);

function createBackend(name: string, options: LoadOptions): Backend {
  const make = BACKENDS[name];
  if (!make) throw new TritpackError(`unknown backend "${name}"; available: ${AVAILABLE_BACKENDS.join(', ')}`);
  return make(options);
}

function parseJson(text: string, origin: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new FormatError(origin, `invalid JSON (${(err as Error).message})`);
  }
}

export async function loadModel(pathOrDir: string, options: LoadOptions = {}): Promise<LoadedModel> {
  const lmHead = options.lmHead ?? 'float';
  if (!LM_HEAD_PRECISIONS.includes(lmHead)) throw new TritpackError(`unknown LM head precision "${lmHead}"; available: ${LM_HEAD_PRECISIONS.join(', ')}`);
  const backend = createBackend(options.backend ?? defaultBackendName(), options);
  // The native backend uses stored bytes in place: its tensors are views into mappings of the files.
  const src = openModelSource(pathOrDir, backend instanceof NativeBackend ? { mapper: backend } : {});
  try {
    const config = normalizeConfig(
      parseJson(src.configText, src.configOrigin), src.configOrigin,
      src.generationConfigText === undefined ? undefined : parseJson(src.generationConfigText, `${src.path}: generation_config.json`),
    );
    const tokenizer = openTokenizer(src);
    const weights = loadWeights(src, config, backend, { lmHead });
    const decoder = new Decoder(config, weights, backend);
    const prepared = new Set([weights.embed, weights.lmHead, ...weights.layers.flatMap((l) => [l.q, l.k, l.v, l.o, l.gate, l.up, l.down])]);
    return new Model(config, tokenizer, { kind: src.kind, path: src.path }, decoder, [...prepared].reduce((s, w) => s + w.byteLength, 0), lmHead);
  } finally {
    src.close(); // everything the model needs is in memory now, or in mappings its weights hold
  }
}

function openTokenizer(src: ModelSource): RuntimeTokenizer {
  if (src.tokenizerJson === undefined) {
    throw new TritpackError(src.kind === 'tpk'
      ? `${src.path}: the .tpk embeds no tokenizer.json`
      : `${src.path}: no tokenizer.json in the model directory (the runtime needs the model's tokenizer.json)`);
  }
  return tokenizerFromJson(src.tokenizerJson, src.tokenizerConfigJson, src.path);
}

class Model implements LoadedModel {
  readonly backend: string;

  constructor(
    readonly config: ModelConfig,
    readonly tokenizer: RuntimeTokenizer,
    readonly source: { kind: 'hf-dir' | 'tpk'; path: string },
    private readonly decoder: Decoder,
    readonly weightBytes: number,
    readonly lmHead: LmHeadPrecision,
  ) {
    this.backend = decoder.backend.name;
  }

  logits(ids: ArrayLike<number>): Float32Array {
    this.checkIds(ids, 0);
    return this.decoder.forward(this.decoder.newState(), ids);
  }

  generate(promptIds: number[], options: GenerateOptions, onToken?: (id: number) => void): number[] {
    const { maxNewTokens } = options;
    if (!Number.isInteger(maxNewTokens) || maxNewTokens < 0) throw new TritpackError(`maxNewTokens must be a non-negative integer, got ${maxNewTokens}`);
    this.checkIds(promptIds, maxNewTokens);
    const defaults = this.config.generation;
    const sample = createSampler({
      temperature: options.temperature ?? (defaults.doSample ? defaults.temperature ?? 1 : 0),
      topK: options.topK ?? (defaults.doSample ? defaults.topK : undefined),
      topP: options.topP ?? (defaults.doSample ? defaults.topP : undefined),
      seed: options.seed,
    });
    const state = this.decoder.newState();
    const out: number[] = [];
    if (maxNewTokens === 0) return out;
    let logits = this.decoder.forward(state, promptIds, true);
    for (;;) {
      const id = sample(logits);
      out.push(id);
      onToken?.(id);
      if (out.length === maxNewTokens || (options.stopAtEos && this.config.eosTokenIds.includes(id))) return out;
      logits = this.decoder.forward(state, [id], true);
    }
  }

  createSession(): DecodingSession {
    const state: DecoderState = this.decoder.newState();
    const model = this;
    return {
      get position() { return state.position; },
      feed(ids, options = {}) {
        model.checkIds(ids, 0, state.position);
        return model.decoder.forward(state, ids, options.lastOnly ?? false);
      },
    };
  }

  close(): void {
    this.decoder.backend.dispose?.();
  }

  /** Ids must be non-empty, valid vocabulary indices, and fit the model's positions with `extra` more. */
  private checkIds(ids: ArrayLike<number>, extra: number, start = 0): void {
    const { vocabSize, maxPositions } = this.config;
    if (ids.length === 0) throw new TritpackError('no input tokens: at least one token id is needed');
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      if (!Number.isInteger(id) || id < 0 || id >= vocabSize) throw new TritpackError(`token id ${id} at index ${i} is outside the vocabulary (0…${vocabSize - 1})`);
    }
    const total = start + ids.length + extra;
    if (total > maxPositions) {
      throw new TritpackError(`${total} positions exceed the model's max_position_embeddings (${maxPositions})`);
    }
  }
}
