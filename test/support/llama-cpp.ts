/**
 * Real llama.cpp for the interop tests: node-llama-cpp's prebuilt binaries, installed on demand into
 * .cache/llama-cpp by scripts/install-llama-cpp.js (a development tool, never a dependency).
 */
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ENTRY = fileURLToPath(new URL('../../.cache/llama-cpp/node_modules/node-llama-cpp/dist/index.js', import.meta.url));

/** The members of node-llama-cpp's API used here (its own types live in the cache, outside the project). */
interface LlamaCppModule {
  getLlama(options: { gpu: false; build: 'never'; logLevel: string }): Promise<Llama>;
}
interface Llama { loadModel(options: { modelPath: string }): Promise<LlamaModel> }
interface LlamaModel {
  createContext(options: { contextSize: number; batchSize: number; threads: number }): Promise<LlamaContext>;
  dispose(): Promise<void>;
}
interface LlamaContext {
  getSequence(): { controlledEvaluate(input: [number, { generateNext: { logits: true } }][]): Promise<({ next: { logits?: Map<number, number> } } | undefined)[]> };
  dispose(): Promise<void>;
}

export const LLAMA_CPP_MISSING = 'llama.cpp is not installed here (npm run llama-cpp:install puts it in .cache/llama-cpp)';

let llama: Promise<Llama | null> | undefined;

export function llamaCppInstalled(): boolean { return existsSync(ENTRY); }

/** llama.cpp on the CPU, or null where it is not installed. */
export function loadLlamaCpp(): Promise<Llama | null> {
  llama ??= llamaCppInstalled()
    ? (import(pathToFileURL(ENTRY).href) as Promise<LlamaCppModule>).then((m) => m.getLlama({ gpu: false, build: 'never', logLevel: 'error' }))
    : Promise.resolve(null);
  return llama;
}

/** Logits [ids.length × vocab] of one causal window, computed by llama.cpp from a GGUF file. */
export async function llamaCppLogits(llamaCpp: Llama, gguf: string, ids: number[], vocab: number): Promise<Float32Array> {
  const model = await llamaCpp.loadModel({ modelPath: gguf });
  try {
    const context = await model.createContext({ contextSize: Math.max(ids.length, 64), batchSize: Math.max(ids.length, 64), threads: 1 });
    try {
      const results = await context.getSequence().controlledEvaluate(ids.map((id) => [id, { generateNext: { logits: true } }]));
      const out = new Float32Array(ids.length * vocab);
      results.forEach((r, i) => {
        const logits = r?.next.logits;
        if (!logits || logits.size !== vocab) throw new Error(`llama.cpp gave ${logits?.size ?? 'no'} logits at position ${i}, expected ${vocab}`);
        for (const [id, v] of logits) out[i * vocab + id] = v;
      });
      return out;
    } finally {
      await context.dispose();
    }
  } finally {
    await model.dispose();
  }
}
