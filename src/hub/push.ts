/**
 * `pushModel`: uploads a packed model (.tpk, or a directory of model files) and its generated model
 * card to a hub repo in one commit, with `@huggingface/hub`'s commit API over the plain LFS
 * transfer (the client's xet path is switched off: it needs the hub's CAS service, and basic LFS is
 * what every hub-compatible server speaks).
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { commitIter, createBranch, createRepo, HubApiError, type CommitOperation } from '@huggingface/hub';
import { TritpackError } from '../errors.js';
import { TpkFile, type TpkHeader } from '../formats/tpk.js';
import { renderDirectoryCard, renderModelCard } from './card.js';
import { hubError } from './errors.js';
import { isValidRevision, requireRepoSpec } from './repo-id.js';
import { hubSettings } from './settings.js';

export interface PushOptions {
  /** A .tpk file, or a directory whose files are uploaded as they are. */
  path: string;
  /** `owner/name`. */
  repo: string;
  private?: boolean;
  /** Create the repo when it does not exist (an existing one is fine). */
  create?: boolean;
  /** Branch to commit to (created from main when missing); default main. */
  branch?: string;
  message?: string;
  token?: string;
  endpoint?: string;
  /** Work out the files and the card, upload nothing, need no token. */
  dryRun?: boolean;
  onProgress?: (event: PushProgress) => void;
  fetch?: typeof fetch;
}

export type PushProgress =
  | { kind: 'phase'; phase: 'creating' | 'preuploading' | 'hashing' | 'uploading' | 'committing' }
  | { kind: 'file'; path: string; state: 'hashing' | 'uploading'; bytes: number; size: number; totalDone: number; totalBytes: number };

export interface PushFile { path: string; size: number }

export interface PushResult {
  repo: string;
  branch: string;
  /** What the commit holds (README.md included), in upload order. */
  files: PushFile[];
  /** The README.md uploaded; `cardGenerated` false when the directory brought its own. */
  card: string;
  cardGenerated: boolean;
  dryRun: boolean;
  created: boolean;
  commit?: { oid: string; url: string };
  bytes: number;
}

interface LocalFile extends PushFile { local?: string; content?: string }

export async function pushModel(options: PushOptions): Promise<PushResult> {
  const { repo, revision } = requireRepoSpec(options.repo);
  if (revision !== undefined) throw new TritpackError(`push takes a repo id without @revision (use --branch): ${options.repo}`);
  if (!repo.includes('/')) throw new TritpackError(`push needs a full repo id with its owner: owner/${repo}`);
  const branch = options.branch ?? 'main';
  if (!isValidRevision(branch)) throw new TritpackError(`invalid branch name: ${branch}`);
  const { files, card, cardGenerated } = collect(options.path, repo);
  const listed = files.map(({ path: p, size }) => ({ path: p, size }));
  const bytes = files.reduce((s, f) => s + f.size, 0);
  const result: PushResult = { repo, branch, files: listed, card, cardGenerated, dryRun: options.dryRun === true, created: false, bytes };
  if (options.dryRun) return result;

  const settings = hubSettings({ endpoint: options.endpoint, token: options.token });
  if (!settings.token) throw new TritpackError('push needs a hub token with write access: pass --token or set HF_TOKEN');
  const ctx = { repo, endpoint: settings.endpoint, token: settings.token, action: 'write' as const };
  const emit = options.onProgress ?? (() => {});
  const client = { hubUrl: settings.endpoint, accessToken: settings.token, fetch: options.fetch };
  try {
    if (options.create) {
      emit({ kind: 'phase', phase: 'creating' });
      result.created = await createIfMissing(repo, options.private === true, client);
    }
    if (branch !== 'main') await createBranchIfMissing(repo, branch, client);
    const counter = uploadCounter(files, bytes, emit, options.fetch ?? fetch);
    const operations: CommitOperation[] = files.map((f) => ({
      operation: 'addOrUpdate', path: f.path,
      content: f.local !== undefined ? pathToFileURL(f.local) : new Blob([f.content ?? '']),
    }));
    const iterator = commitIter({
      ...client, fetch: counter.fetch, repo: { type: 'model', name: repo }, operations, branch, useXet: false,
      title: options.message ?? `Upload ${files.map((f) => f.path).filter((p) => p !== 'README.md').join(', ')} with tritpack`,
    });
    for (;;) {
      const next = await iterator.next();
      if (next.done) {
        if (next.value) result.commit = { oid: next.value.commit.oid, url: next.value.commit.url };
        break;
      }
      const event = next.value;
      if (event.event === 'phase') emit({ kind: 'phase', phase: event.phase === 'uploadingLargeFiles' ? 'uploading' : event.phase });
      else if (event.event === 'fileProgress' && event.state === 'hashing') {
        const size = files.find((f) => f.path === event.path)?.size ?? 0;
        emit({ kind: 'file', path: event.path, state: 'hashing', bytes: Math.round(event.progress * size), size, totalDone: counter.done(), totalBytes: bytes });
      }
    }
  } catch (err) {
    throw hubError(err, ctx);
  }
  return result;
}

/** The files to upload and the card: a .tpk plus a generated README, or a directory as it is. */
function collect(input: string, repo: string): { files: LocalFile[]; card: string; cardGenerated: boolean } {
  let stat;
  try { stat = statSync(input); } catch { throw new TritpackError(`${input}: no such file or directory`); }
  if (stat.isFile()) {
    if (!input.endsWith('.tpk')) throw new TritpackError(`${input}: push takes a .tpk file or a directory`);
    const header = readTpkHeader(input);
    const fileName = path.basename(input);
    const card = renderModelCard({ header, fileName, fileSize: stat.size, repo });
    return { files: [{ path: fileName, size: stat.size, local: path.resolve(input) }, readme(card)], card, cardGenerated: true };
  }
  if (!stat.isDirectory()) throw new TritpackError(`${input}: not a file or directory`);
  const files = walk(path.resolve(input));
  if (files.length === 0) throw new TritpackError(`${input}: the directory has no files to push`);
  const own = files.find((f) => f.path === 'README.md');
  if (own) return { files, card: readFileSync(own.local!, 'utf8'), cardGenerated: false };
  const tpks = files.filter((f) => f.path.endsWith('.tpk'));
  const card = tpks.length === 1
    ? renderModelCard({ header: readTpkHeader(tpks[0]!.local!), fileName: tpks[0]!.path, fileSize: tpks[0]!.size, repo })
    : renderDirectoryCard({ repo, files, config: readJson(files.find((f) => f.path === 'config.json')?.local) });
  return { files: [...files, readme(card)], card, cardGenerated: true };
}

function readTpkHeader(file: string): TpkHeader {
  const tpk = TpkFile.open(file);
  try { return tpk.header; } finally { tpk.close(); }
}

function readme(card: string): LocalFile {
  return { path: 'README.md', size: Buffer.byteLength(card), content: card };
}

/** Every regular file under dir, as repo paths; hidden files and folders (.git, .cache…) stay home. */
function walk(dir: string): LocalFile[] {
  const out: LocalFile[] = [];
  const visit = (abs: string, rel: string) => {
    for (const entry of readdirSync(abs, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      if (entry.name.startsWith('.')) continue;
      const childAbs = path.join(abs, entry.name);
      const childRel = rel ? `${rel}/${entry.name}` : entry.name;
      if (entry.isDirectory()) visit(childAbs, childRel);
      else if (entry.isFile()) out.push({ path: childRel, size: statSync(childAbs).size, local: childAbs });
    }
  };
  visit(dir, '');
  return out;
}

function readJson(file: string | undefined): Record<string, unknown> | undefined {
  if (!file) return undefined;
  try { return JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>; } catch { return undefined; }
}

type Client = { hubUrl: string; accessToken: string; fetch?: typeof fetch };

async function createIfMissing(repo: string, isPrivate: boolean, client: Client): Promise<boolean> {
  try {
    await createRepo({ ...client, repo: { type: 'model', name: repo }, private: isPrivate });
    return true;
  } catch (err) {
    if (err instanceof HubApiError && err.statusCode === 409) return false;
    throw err;
  }
}

async function createBranchIfMissing(repo: string, branch: string, client: Client): Promise<void> {
  try {
    await createBranch({ ...client, repo: { type: 'model', name: repo }, branch });
  } catch (err) {
    if (!(err instanceof HubApiError && err.statusCode === 409)) throw err;
  }
}

/**
 * A fetch for the client that counts the bytes of LFS uploads as they leave (the client itself only
 * reports upload progress through browsers' XMLHttpRequest). The body is streamed with its length
 * set, as storage backends require.
 */
function uploadCounter(files: LocalFile[], totalBytes: number, emit: NonNullable<PushOptions['onProgress']>, base: typeof fetch) {
  const byLocal = new Map(files.filter((f) => f.local).map((f) => [f.local!, f]));
  let done = 0;
  const counted: typeof fetch = (input, init) => {
    const body = init?.body;
    if (init?.method !== 'PUT' || !(body instanceof Blob)) return base(input, init);
    const file = byLocal.get((body as Blob & { path?: string }).path ?? '');
    const name = file?.path ?? 'upload';
    let sent = 0;
    const stream = body.stream().pipeThrough(new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        sent += chunk.length;
        done += chunk.length;
        emit({ kind: 'file', path: name, state: 'uploading', bytes: sent, size: body.size, totalDone: done, totalBytes });
        controller.enqueue(chunk);
      },
    }));
    const headers = new Headers(init.headers);
    headers.set('Content-Length', String(body.size));
    return base(input, { ...init, body: stream, headers, duplex: 'half' } as RequestInit);
  };
  return { fetch: counted, done: () => done };
}
