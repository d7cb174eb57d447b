/**
 * A tiny stand-in for runtime-min's LoadedModel: a bigram model whose next-token logits depend
 * only on the current id, so every metric of a window can be computed by hand in a test.
 */
import type { ValidateModel } from '../../src/validate/validate.js';

export function bigramModel(table: number[][], path = 'fake-model', maxPositions = 64): ValidateModel {
  const vocab = table.length;
  const letters = 'abcdefghijklmnopqrstuvwxyz';
  return {
    config: { vocabSize: vocab, maxPositions, architecture: 'llama', modelType: 'llama', bitnetQuantization: null },
    source: { kind: 'hf-dir', path },
    tokenizer: {
      // One letter per id (a..), BOS = 0 first; other characters are dropped.
      encode: (text) => [0, ...[...text].map((ch) => letters.indexOf(ch) + 1).filter((id) => id > 0 && id < vocab)],
      decode: (ids) => ids.filter((id) => id > 0).map((id) => letters[id - 1]).join(''),
    },
    logits(ids) {
      const out = new Float32Array(ids.length * vocab);
      for (let i = 0; i < ids.length; i++) out.set(table[ids[i]!]!, i * vocab);
      return out;
    },
    generate(promptIds, options) {
      const generated: number[] = [];
      let last = promptIds[promptIds.length - 1]!;
      for (let k = 0; k < options.maxNewTokens; k++) {
        const row = table[last]!;
        last = row.indexOf(Math.max(...row));
        generated.push(last);
      }
      return generated;
    },
  };
}
