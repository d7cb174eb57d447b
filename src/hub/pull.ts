/**
 * `pullModel`: fetches a repo's config, tokenizer and safetensors weights into the standard hub
 * cache (see cache.ts) and returns the snapshot directory. All blobs are downloaded and verified
 * first; only then are the snapshot links and the ref written, so a failed pull adds nothing to the
 * snapshot while the verified blobs stay for the next attempt to reuse.
 */
import { existsSync } from 'node:fs';
import { listFiles, modelInfo, type ListFileEntry } from '@huggingface/hub';
import { TritpackError } from '../errors.js';
import { cachedCommit, isCommitId, linkIntoSnapshot, repoFolder, snapshotDir, snapshotFiles, writeRef } from './cache.js';
import { fetchBlob } from './download.js';
import { hubError } from './errors.js';
import { requireRepoSpec } from './repo-id.js';
import { selectFiles, type RemoteFile } from './select.js';
import { hubSettings } from './settings.js';

export interface PullOptions {
  /** `owner/name`, optionally `@revision` (then `revision` must not contradict it). */
  repo: string;
  revision?: string;
  /** Globs over repo paths; default: config, generation config, tokenizer files, safetensors (+ index), .tpk. */
  include?: string[];
  cacheDir?: string;
  token?: string;
  endpoint?: string;
  /** Never contact the hub; answer from the cache or fail (also HF_HUB_OFFLINE=1). */
  offline?: boolean;
  onProgress?: (event: PullProgress) => void;
  retries?: number;
  stallTimeoutMs?: number;
  fetch?: typeof fetch;
}

export type PullProgress =
  | { kind: 'plan'; files: { path: string; size: number }[]; totalBytes: number }
  | { kind: 'file'; path: string; bytes: number; size: number; totalDone: number; totalBytes: number; done: boolean; cached: boolean };

export interface PullResult {
  repo: string;
  revision: string;
  commit: string;
  snapshotPath: string;
  files: { path: string; size: number; cached: boolean }[];
  /** Sum of the files' sizes, and how many bytes this pull actually transferred. */
  bytes: number;
  downloadedBytes: number;
  offline: boolean;
}

export async function pullModel(options: PullOptions): Promise<PullResult> {
  const spec = requireRepoSpec(options.repo);
  if (spec.revision && options.revision && spec.revision !== options.revision) {
    throw new TritpackError(`${options.repo} names revision ${spec.revision} but --revision says ${options.revision}`);
  }
  const revision = options.revision ?? spec.revision ?? 'main';
  const settings = hubSettings(options);
  const storage = repoFolder(settings.cacheDir, spec.repo);
  if (settings.offline) return fromCache(spec.repo, revision, storage, options.include);

  const ctx = { repo: spec.repo, endpoint: settings.endpoint, token: settings.token, action: 'read' as const };
  const client = { hubUrl: settings.endpoint, accessToken: settings.token, fetch: options.fetch };
  let commit: string;
  let entries: ListFileEntry[];
  try {
    const info = await modelInfo({ ...client, name: spec.repo, revision, additionalFields: ['sha'] });
    commit = String((info as { sha?: unknown }).sha ?? '');
    if (!isCommitId(commit)) throw new TritpackError(`${settings.endpoint} gave no commit id for ${spec.repo}@${revision}`);
    entries = [];
    for await (const entry of listFiles({ ...client, repo: { type: 'model', name: spec.repo }, revision: commit, recursive: true })) entries.push(entry);
  } catch (err) {
    throw hubError(err, ctx);
  }

  const where = `${spec.repo}@${revision}`;
  const files = selectFiles(entries, where, options.include);
  const totalBytes = files.reduce((sum, f) => sum + f.size, 0);
  options.onProgress?.({ kind: 'plan', files: files.map((f) => ({ path: f.path, size: f.size })), totalBytes });

  let totalDone = 0;
  let downloadedBytes = 0;
  const results: PullResult['files'] = [];
  for (const file of files) {
    const progress = (bytes: number, done: boolean, cached: boolean) =>
      options.onProgress?.({ kind: 'file', path: file.path, bytes, size: file.size, totalDone, totalBytes, done, cached });
    let fileBytes = 0;
    progress(0, false, false);
    const result = await fetchOne(file, {
      storage, repo: spec.repo, commit, endpoint: settings.endpoint, token: settings.token, retries: options.retries,
      stallTimeoutMs: options.stallTimeoutMs, fetch: options.fetch,
      onBytes: (n) => { fileBytes += n; totalDone += n; progress(fileBytes, false, false); },
    }, ctx);
    // Progress counts what was on disk before this pull too, so the total always ends at totalBytes.
    totalDone += file.size - fileBytes;
    downloadedBytes += result.downloadedBytes;
    results.push({ path: file.path, size: file.size, cached: result.cached });
    progress(file.size, true, result.cached);
  }

  for (const file of files) linkIntoSnapshot(storage, commit, file.path, file.etag);
  if (revision !== commit) writeRef(storage, revision, commit);
  return { repo: spec.repo, revision, commit, snapshotPath: snapshotDir(storage, commit), files: results, bytes: totalBytes, downloadedBytes, offline: false };
}

async function fetchOne(file: RemoteFile, request: Omit<Parameters<typeof fetchBlob>[0], 'file'>, ctx: Parameters<typeof hubError>[1]) {
  try {
    return await fetchBlob({ ...request, file });
  } catch (err) {
    throw hubError(err, ctx);
  }
}

/** Offline: the snapshot the cache has for this revision, or a clear refusal. */
function fromCache(repo: string, revision: string, storage: string, include?: string[]): PullResult {
  const commit = cachedCommit(storage, revision);
  const dir = commit ? snapshotDir(storage, commit) : undefined;
  if (!commit || !dir || !existsSync(dir)) {
    throw new TritpackError(`${repo}@${revision} is not in the hub cache (${storage}) and offline mode is on (--offline or HF_HUB_OFFLINE); pull it once while online`);
  }
  const present = snapshotFiles(dir);
  if (include && include.length > 0) {
    // Asked for specific files: say so if the cache lacks them rather than returning a partial model quietly.
    const entries = present.map((f) => ({ type: 'file' as const, path: f.path, size: f.size, oid: '0'.repeat(40) }));
    selectFiles(entries, `${repo}@${revision} (cached)`, include);
  }
  return {
    repo, revision, commit, snapshotPath: dir, files: present.map((f) => ({ ...f, cached: true })),
    bytes: present.reduce((sum, f) => sum + f.size, 0), downloadedBytes: 0, offline: true,
  };
}
