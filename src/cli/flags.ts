/**
 * Flags that several commands take, defined once so that their names, descriptions and defaults
 * cannot drift apart between commands (the model argument's --offline is in model-input.ts).
 */
import { Flags } from '@oclif/core';
import { TritpackError } from '../errors.js';
import type { FloatDType } from '../formats/dtype.js';
import { AVAILABLE_BACKENDS, LM_HEAD_PRECISIONS, type LmHeadPrecision } from '../runtime-min/index.js';

/** --lm-head: the output layer's precision (validate gives it its own description: it applies to the packed side). */
export function lmHeadFlag(description: string) {
  return Flags.custom<LmHeadPrecision>({ description, options: [...LM_HEAD_PRECISIONS], default: 'float', parse: async (name) => name as LmHeadPrecision })();
}

/** eval, generate, validate: which kernels run the model, on how many threads, with which LM head. */
export const runtimeFlags = {
  backend: Flags.string({ description: `kernel backend (${AVAILABLE_BACKENDS.join(', ')}) [default: the first that loads, in that order]` }),
  threads: Flags.integer({ description: 'kernel threads of the native and wasm backends [default: all cores]', min: 1 }),
  'lm-head': lmHeadFlag('LM head precision: float (as stored) or int8 (weights per row × activations per token in int8: half the bytes of f16, '
    + 'slightly different logits, so opt-in)'),
};

/** eval and validate: the text and the windows it is scored in (checked against the model in validate/windows.ts). */
export const evalTextFlags = {
  text: Flags.string({ description: 'UTF-8 text file to evaluate on', required: true }),
  ctx: Flags.integer({ description: 'window length in tokens [default: 512, or the model\'s maximum if smaller]' }),
  stride: Flags.integer({ description: 'tokens each window advances [default: --ctx, no overlap]' }),
  'max-tokens': Flags.integer({ description: 'use only the first N tokens of the text' }),
};

/** pull and push: where the hub is and who we are on it. The token is read, never printed. */
export const hubFlags = {
  token: Flags.string({ description: 'hub access token (default: HF_TOKEN or the saved login); prefer HF_TOKEN, flags show in process lists' }),
  endpoint: Flags.string({ description: 'hub URL (default: HF_ENDPOINT or https://huggingface.co)' }),
};

/** convert and export: replacing an existing output is never the default. */
export const forceFlag = Flags.boolean({ description: 'overwrite the output if it exists', default: false });

const FLOAT_DTYPES: Record<string, FloatDType> = { f16: 'F16', bf16: 'BF16', f32: 'F32' };

/** A float dtype flag (f16, bf16, f32) that parses to the DType it names. */
export function floatDTypeFlag(description: string) {
  return Flags.custom<FloatDType>({ description, options: Object.keys(FLOAT_DTYPES), parse: async (name) => FLOAT_DTYPES[name]! })();
}

/**
 * The value of a decimal-number flag (oclif has integer flags only): the whole text must parse, and
 * a value out of range is a one-line usage error (exit 2) that says what is allowed.
 */
export function parseNumberFlag(flag: string, text: string, ok: (x: number) => boolean = () => true, allowed = 'a number'): number {
  const x = Number(text);
  if (text.trim() === '' || !Number.isFinite(x) || !ok(x)) throw new TritpackError(`${flag} must be ${allowed}, got ${JSON.stringify(text)}`);
  return x;
}
