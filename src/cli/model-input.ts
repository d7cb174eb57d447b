/**
 * The model argument every command shares: a local path (checkpoint directory, .tpk, .gguf) or a
 * hub repo id (`owner/name[@revision]`), resolved from the hub cache first and the network only
 * when needed — never with --offline.
 */
import { Flags } from '@oclif/core';
import { resolveModel, type ResolvedModel } from '../hub/resolve.js';
import { loadModel, type LmHeadPrecision, type LoadedModel } from '../runtime-min/index.js';

export const offlineFlag = Flags.boolean({
  description: 'resolve hub repo ids from the local cache only, never the network (also HF_HUB_OFFLINE=1)',
  default: false,
});

export function resolveModelInput(spec: string, offline: boolean, want?: 'model' | 'tpk'): Promise<ResolvedModel> {
  // `undefined` rather than false, so HF_HUB_OFFLINE=1 still applies when the flag is not given.
  return resolveModel(spec, { offline: offline || undefined, want });
}

/** Resolves the model argument and loads it with the chosen kernel backend and LM head precision. */
export async function loadModelInput(spec: string, flags: { offline: boolean; backend?: string; threads?: number; 'lm-head'?: LmHeadPrecision }): Promise<LoadedModel> {
  return loadModel((await resolveModelInput(spec, flags.offline)).path, { backend: flags.backend, threads: flags.threads, lmHead: flags['lm-head'] });
}
