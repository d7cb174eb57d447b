/**
 * Fetches one file of a repo into the cache's blobs/, resumably and verified: bytes go to
 * `blobs/<etag>.incomplete`, an interrupted transfer continues from where it stopped with a Range
 * request, and the blob only gets its final name once its hash matches the hub's listing (sha256 for
 * LFS files, the git blob id otherwise). A mismatch deletes the partial file.
 */
import { closeSync, createReadStream, createWriteStream, existsSync, mkdirSync, openSync, renameSync, rmSync, statSync, truncateSync } from 'node:fs';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { downloadFile, HubApiError } from '@huggingface/hub';
import { TritpackError } from '../errors.js';
import { blobPath } from './cache.js';
import { describeNetworkError } from './errors.js';
import type { RemoteFile } from './select.js';

export interface BlobRequest {
  storage: string; repo: string; commit: string; file: RemoteFile; endpoint: string; token?: string;
  /** Automatic resumes after a dropped connection, a stall or a 5xx (default 2). */
  retries?: number;
  /** Abort and resume a transfer that sends nothing for this long (default 60 s). */
  stallTimeoutMs?: number;
  onBytes?: (bytes: number) => void;
  fetch?: typeof fetch;
}

export interface BlobResult { blob: string; downloadedBytes: number; cached: boolean }

export async function fetchBlob(request: BlobRequest): Promise<BlobResult> {
  const { file } = request;
  const blob = blobPath(request.storage, file.etag);
  if (existsSync(blob) && statSync(blob).size === file.size) return { blob, downloadedBytes: 0, cached: true };
  mkdirSync(path.dirname(blob), { recursive: true });
  const incomplete = `${blob}.incomplete`;
  // Created up front, so that an empty file (nothing to transfer) is hashed and kept like any other.
  closeSync(openSync(incomplete, 'a'));
  const retries = request.retries ?? 2;
  let downloadedBytes = 0;
  for (let attempt = 0; ; attempt++) {
    let have = statSync(incomplete).size;
    if (have > file.size) { truncateSync(incomplete, 0); have = 0; }
    if (have === file.size) break;
    try {
      downloadedBytes += await appendFrom(request, incomplete, have);
    } catch (err) {
      if (err instanceof TritpackError) throw err;
      const got = statSync(incomplete).size;
      if (isRetriable(err) && attempt < retries) { await sleep(250 * 2 ** attempt); continue; }
      if (err instanceof HubApiError) throw err;
      throw new TritpackError(`download of ${file.path} was interrupted after ${got} of ${file.size} bytes (${describeNetworkError(err)}); run the same command again to resume`, { cause: err });
    }
  }
  const actual = await hashFile(incomplete, file.hash);
  if (actual !== file.etag) {
    rmSync(incomplete, { force: true });
    throw new TritpackError(`checksum mismatch for ${file.path} from ${request.repo}@${request.commit}: the hub lists ${file.hash} ${file.etag}, `
      + `the bytes received hash to ${actual}; the download was deleted and nothing was added to the snapshot`);
  }
  renameSync(incomplete, blob);
  return { blob, downloadedBytes, cached: false };
}

/** Streams bytes [have, size) onto the end of `incomplete`; returns how many arrived. */
async function appendFrom(request: BlobRequest, incomplete: string, have: number): Promise<number> {
  const { file } = request;
  const controller = new AbortController();
  const stallMs = request.stallTimeoutMs ?? 60_000;
  let stall = setTimeout(() => controller.abort(new Error(`no data for ${stallMs / 1000} s`)), stallMs);
  let response: Response | undefined;
  // The client's WebBlob reports HTTP failures as a bare message; keep the response to know its status.
  const tracked: typeof fetch = async (input, init) => {
    response = await (request.fetch ?? fetch)(input, { ...init, signal: controller.signal });
    return response;
  };
  const url = `${request.endpoint}/${request.repo}/resolve/${request.commit}/${file.path.split('/').map(encodeURIComponent).join('/')}`;
  const web = await downloadFile({
    repo: { type: 'model', name: request.repo }, path: file.path, revision: request.commit, hubUrl: request.endpoint,
    accessToken: request.token, fetch: tracked, downloadInfo: { etag: file.etag, size: file.size, url },
  });
  if (!web) throw new TritpackError(`${file.path} is listed in ${request.repo}@${request.commit} but the hub does not serve it`);
  let out = createWriteStream(incomplete, { flags: 'a' });
  let received = 0;
  let checked = false;
  try {
    for await (const chunk of web.slice(have).stream() as unknown as AsyncIterable<Uint8Array>) {
      if (!checked) {
        checked = true;
        // A server that ignores Range sends the whole file again: start the file over rather than append it.
        if (have > 0 && response?.status !== 206) { await close(out); truncateSync(incomplete, 0); out = createWriteStream(incomplete, { flags: 'a' }); }
      }
      clearTimeout(stall);
      stall = setTimeout(() => controller.abort(new Error(`no data for ${stallMs / 1000} s`)), stallMs);
      received += chunk.length;
      request.onBytes?.(chunk.length);
      if (!out.write(chunk)) await new Promise<void>((resolve) => out.once('drain', () => resolve()));
    }
  } catch (err) {
    if (response && !response.ok) throw new HubApiError(response.url, response.status, undefined, typeof err === 'string' ? err : describeNetworkError(err));
    throw err;
  } finally {
    clearTimeout(stall);
    await close(out);
  }
  return received;
}

function isRetriable(err: unknown): boolean {
  if (err instanceof HubApiError) return err.statusCode >= 500 || err.statusCode === 429;
  return true; // dropped connections, stalls, resets
}

async function hashFile(file: string, kind: RemoteFile['hash']): Promise<string> {
  const hash = createHash(kind === 'sha256' ? 'sha256' : 'sha1');
  if (kind === 'git-sha1') hash.update(`blob ${statSync(file).size}\0`);
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

function close(out: ReturnType<typeof createWriteStream>): Promise<void> {
  return new Promise((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
}

function sleep(ms: number): Promise<void> { return new Promise((resolve) => setTimeout(resolve, ms)); }
