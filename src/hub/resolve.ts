/**
 * Lets every command that takes a model directory or file take a hub repo id too: a path that
 * exists stays a path; `owner/name[@revision]` resolves to its snapshot in the hub cache when one is
 * complete there (no network), and is pulled otherwise — never in offline mode.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { TritpackError } from '../errors.js';
import { cachedCommit, repoFolder, snapshotDir, snapshotFiles } from './cache.js';
import { pullModel, type PullOptions } from './pull.js';
import { parseRepoSpec } from './repo-id.js';
import { hubSettings } from './settings.js';

export interface ResolveOptions extends Omit<PullOptions, 'repo'> {
  /** 'tpk': the repo's .tpk even when it also holds a checkpoint (validate's packed model). */
  want?: 'model' | 'tpk';
}

export interface ResolvedModel {
  /** The directory (HF checkpoint) or file (.tpk) to load. */
  path: string;
  /** Set when `spec` was a repo id: where it came from (for a .tpk header's `source`). */
  repo?: string;
  revision?: string;
  commit?: string;
  /** True when this call downloaded something. */
  pulled: boolean;
}

/** The local path for a model given as a path or a repo id. */
export async function resolveModelPath(spec: string, options: ResolveOptions = {}): Promise<string> {
  return (await resolveModel(spec, options)).path;
}

export async function resolveModel(spec: string, options: ResolveOptions = {}): Promise<ResolvedModel> {
  if (existsSync(spec) || !looksLikeRepoId(spec)) return { path: spec, pulled: false };
  const parsed = parseRepoSpec(spec)!;
  const revision = options.revision ?? parsed.revision ?? 'main';
  const settings = hubSettings(options);
  const storage = repoFolder(settings.cacheDir, parsed.repo);
  const commit = cachedCommit(storage, revision);
  const want = options.want ?? 'model';
  if (commit && isComplete(snapshotDir(storage, commit))) {
    return { path: modelIn(snapshotDir(storage, commit), want), repo: parsed.repo, revision, commit, pulled: false };
  }
  try {
    const pulled = await pullModel({ ...options, repo: parsed.repo, revision });
    return { path: modelIn(pulled.snapshotPath, want), repo: parsed.repo, revision, commit: pulled.commit, pulled: pulled.downloadedBytes > 0 };
  } catch (err) {
    // Not a local path either: say both, so a mistyped path does not read as a network problem.
    if (err instanceof TritpackError) {
      throw new TritpackError(`${spec}: no such local file or directory, and as a hub repo id: ${err.message}`, { cause: err });
    }
    throw err;
  }
}

/** `owner/name` or `owner/name@rev` that is not written like a path (./x, /x, x/, ~/x, x/y.tpk). */
export function looksLikeRepoId(spec: string): boolean {
  if (/^(\.{1,2}|~)?[/\\]/.test(spec) || spec.endsWith('/') || spec.includes('\\')) return false;
  if (/\.(tpk|safetensors|gguf|json|bin)$/i.test(spec)) return false;
  const parsed = parseRepoSpec(spec);
  return parsed !== undefined && parsed.repo.includes('/');
}

/** A snapshot holds a loadable model: a .tpk, or config.json with its safetensors (every shard of an index). */
function isComplete(dir: string): boolean {
  if (!existsSync(dir)) return false;
  const names = new Set(snapshotFiles(dir).map((f) => f.path));
  if ([...names].some((n) => n.endsWith('.tpk'))) return true;
  if (!names.has('config.json')) return false;
  if (names.has('model.safetensors')) return true;
  if (!names.has('model.safetensors.index.json')) return false;
  try {
    const index = JSON.parse(readFileSync(path.join(dir, 'model.safetensors.index.json'), 'utf8')) as { weight_map?: Record<string, string> };
    const shards = new Set(Object.values(index.weight_map ?? {}));
    return shards.size > 0 && [...shards].every((s) => names.has(s));
  } catch {
    return false;
  }
}

/** What to load from a snapshot: the checkpoint directory, or its .tpk when that is all it holds (or is wanted). */
function modelIn(dir: string, want: 'model' | 'tpk'): string {
  const files = snapshotFiles(dir).map((f) => f.path);
  const tpks = files.filter((f) => f.endsWith('.tpk'));
  const checkpoint = files.includes('config.json') && files.some((f) => f.endsWith('.safetensors'));
  return tpks.length === 1 && (want === 'tpk' || !checkpoint) ? path.join(dir, tpks[0]!) : dir;
}
