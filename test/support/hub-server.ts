/**
 * A local stand-in for the Hugging Face hub: the subset of its HTTP API that `@huggingface/hub` (and
 * tritpack's pull/push) use, served on 127.0.0.1 only, with repos kept as plain directories and
 * faults that tests can inject. The hub itself is unreachable from our machines, so every hub test
 * runs against this.
 *
 * On disk, under `root`:
 *   <owner>/<name>/…                  the `main` branch's files, as they are (drop a checkpoint in)
 *   <owner>/<name>/.hub/repo.json     {"private": true} for private repos (absent: public)
 *   <owner>/<name>/.hub/branches/<b>/ other branches' files
 *   .hub-lfs/<sha256>                 LFS objects uploaded and not yet (or already) committed
 *
 * Commit ids are the sha1 of a branch's tree (paths and blob ids), so they are deterministic and a
 * 40-hex revision resolves to whichever branch currently has that tree; older commits are not kept.
 * Whether a file is stored in LFS follows the hub's defaults: the usual binary extensions, any file
 * of 10 MB or more, or a NUL byte in its first 512 bytes (what the client's pre-upload sample shows).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import {
  closeSync, copyFileSync, createWriteStream, existsSync, mkdirSync, openSync, readdirSync, readFileSync, readSync,
  renameSync, rmSync, statSync, writeFileSync,
} from 'node:fs';
import path from 'node:path';

export type HubFault =
  /** Send this many body bytes, then cut the connection. */
  | { kind: 'drop'; afterBytes: number }
  /** Flip the bits of the byte at this offset of the file (default: the middle byte). */
  | { kind: 'corrupt'; offset?: number }
  /** Answer with this status and a JSON error instead of the real response. */
  | { kind: 'status'; status: number; message?: string }
  /** Wait before answering. */
  | { kind: 'delay'; ms: number }
  /** Send the body at about this rate. */
  | { kind: 'throttle'; bytesPerSecond: number };

export interface FaultRule {
  fault: HubFault;
  method?: string;
  /** Matched against the decoded request path (no query), e.g. '/resolve/' or /model-00002/. */
  path?: string | RegExp;
  /** How many matching requests it applies to (default: all). */
  times?: number;
}

export interface HubServerOptions {
  root: string;
  /** 0 (default) picks a free port. */
  port?: number;
  /** Valid tokens → the user they belong to. A user may write to repos under its own name. */
  tokens?: Record<string, string>;
  /** Tree listing page size (the hub uses 1000); small values exercise pagination. */
  pageSize?: number;
  log?: (line: string) => void;
}

/** One answered request. The Authorization header is never recorded. */
export interface RequestRecord { method: string; path: string; status: number; bodyBytes: number; range?: string; authenticated: boolean }

interface FileEntry { path: string; abs: string; size: number; oid: string; lfs?: { oid: string; size: number; pointerSize: number } }
interface Head { repoDir: string; branch: string; dir: string }
interface Caller { user?: string; tokenGiven: boolean }

const LFS_EXTENSIONS = /\.(safetensors|bin|pt|pth|ckpt|pkl|pickle|h5|msgpack|onnx|gguf|ggml|tpk|model|npy|npz|tflite|ot|zip|gz|tar|zst|arrow|parquet|wasm)$/i;
const LFS_MIN_SIZE = 10 * 1024 * 1024;
const MAX_JSON_BODY = 256 * 1024 * 1024;
const MAX_RECORDS = 10_000;
const SAFE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

class HttpError extends Error {
  constructor(readonly status: number, message: string, readonly code?: string) { super(message); }
}

export class HubServer {
  readonly root: string;
  readonly requests: RequestRecord[] = [];
  private readonly faults: (FaultRule & { left: number })[] = [];
  private readonly tokens: Record<string, string>;
  private readonly pageSize: number;
  private readonly log: (line: string) => void;
  private readonly hashCache = new Map<string, { key: string; sha256: string; gitOid: string; lfs: boolean }>();
  private readonly uploadTickets = new Map<string, { oid: string; size: number }>();
  private server: http.Server;
  private baseUrl = '';
  /** Requests whose response has not closed yet, and who waits for there to be none. */
  private inFlight = 0;
  private idleWaiters: (() => void)[] = [];

  private constructor(options: HubServerOptions) {
    this.root = path.resolve(options.root);
    this.tokens = options.tokens ?? {};
    this.pageSize = Math.max(1, options.pageSize ?? 1000);
    this.log = options.log ?? (() => {});
    this.server = http.createServer((req, res) => { void this.handle(req, res); });
    // Bounded: a stalled client cannot hold a request open forever.
    this.server.requestTimeout = 120_000;
    this.server.headersTimeout = 30_000;
  }

  static async start(options: HubServerOptions): Promise<HubServer> {
    const hub = new HubServer(options);
    mkdirSync(hub.root, { recursive: true });
    await new Promise<void>((resolve, reject) => {
      hub.server.once('error', reject);
      hub.server.listen(options.port ?? 0, '127.0.0.1', () => resolve());
    });
    hub.baseUrl = `http://127.0.0.1:${(hub.server.address() as AddressInfo).port}`;
    return hub;
  }

  /** The endpoint to give the client (`hubUrl`, HF_ENDPOINT). */
  get url(): string { return this.baseUrl; }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  injectFault(rule: FaultRule): void { this.faults.push({ ...rule, left: rule.times ?? Infinity }); }
  clearFaults(): void { this.faults.length = 0; }

  /**
   * Forgets the requests recorded so far, once every request in flight has closed: the server side of
   * a dropped download closes after the client has already given up on it, and would otherwise be
   * recorded after the clear and counted against what comes next.
   */
  async clearRequests(): Promise<void> {
    while (this.inFlight > 0) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    this.requests.length = 0;
  }

  /** Body bytes sent for file downloads (`resolve`), optionally only for paths matching `filter`. */
  bytesServed(filter?: string | RegExp): number {
    return this.requests
      .filter((r) => r.path.includes('/resolve/') && (filter === undefined || matches(r.path, filter)))
      .reduce((sum, r) => sum + r.bodyBytes, 0);
  }

  /** Creates a repo directly on disk (test setup), copying `files` (name → source path) into `main`. */
  createRepoOnDisk(repo: string, files: Record<string, string>, options: { private?: boolean } = {}): string {
    const dir = this.repoDir(repo);
    mkdirSync(dir, { recursive: true });
    for (const [name, source] of Object.entries(files)) {
      const target = path.join(dir, name);
      mkdirSync(path.dirname(target), { recursive: true });
      copyFileSync(source, target);
    }
    if (options.private) this.writeRepoMeta(dir, { private: true });
    return dir;
  }

  /** The commit id `main` (or `branch`) has now. */
  commitOf(repo: string, branch = 'main'): string {
    const head = this.head(repo, branch);
    if (!head) throw new Error(`no branch ${branch} in ${repo}`);
    return this.commitId(this.scan(head.dir));
  }

  // ---- request handling -------------------------------------------------------------------

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.baseUrl);
    const record: RequestRecord = { method: req.method ?? 'GET', path: safeDecode(url.pathname), status: 0, bodyBytes: 0, authenticated: false };
    if (req.headers.range) record.range = req.headers.range;
    this.inFlight++;
    res.on('close', () => {
      record.status = res.statusCode;
      if (this.requests.length >= MAX_RECORDS) this.requests.shift();
      this.requests.push(record);
      this.log(`${record.method} ${url.pathname}${url.search} → ${record.status} (${record.bodyBytes} B)`);
      if (--this.inFlight === 0) for (const wake of this.idleWaiters.splice(0)) wake();
    });
    try {
      const faults = this.takeFaults(record.method, record.path);
      for (const fault of faults) if (fault.kind === 'delay') await sleep(fault.ms);
      const statusFault = faults.find((f): f is Extract<HubFault, { kind: 'status' }> => f.kind === 'status');
      if (statusFault) throw new HttpError(statusFault.status, statusFault.message ?? `injected fault: HTTP ${statusFault.status}`);
      const caller = this.caller(req);
      record.authenticated = caller.user !== undefined;
      await this.route(req, res, url, caller, record, faults);
    } catch (err) {
      if (res.headersSent) { res.destroy(); return; }
      const status = err instanceof HttpError ? err.status : 500;
      const message = err instanceof Error ? err.message : String(err);
      const headers: http.OutgoingHttpHeaders = { 'Content-Type': 'application/json' };
      if (err instanceof HttpError && err.code) headers['X-Error-Code'] = err.code;
      if (!(err instanceof HttpError)) this.log(`internal error: ${message}`);
      res.writeHead(status, headers);
      res.end(JSON.stringify({ error: message }));
      req.resume();
    }
  }

  private takeFaults(method: string, requestPath: string): HubFault[] {
    const taken: HubFault[] = [];
    for (const rule of this.faults) {
      if (rule.left <= 0) continue;
      if (rule.method && rule.method.toUpperCase() !== method) continue;
      if (rule.path !== undefined && !matches(requestPath, rule.path)) continue;
      rule.left--;
      taken.push(rule.fault);
    }
    return taken;
  }

  private caller(req: http.IncomingMessage): Caller {
    const header = req.headers.authorization;
    if (!header) return { tokenGiven: false };
    const token = /^Bearer\s+(.+)$/i.exec(header)?.[1]?.trim();
    const user = token !== undefined ? this.tokens[token] : undefined;
    // Like the hub: a token it does not know is refused outright, even for public repos.
    if (user === undefined) throw new HttpError(401, 'Invalid credentials in Authorization header', 'InvalidCredentials');
    return { user, tokenGiven: true };
  }

  private async route(req: http.IncomingMessage, res: http.ServerResponse, url: URL, caller: Caller, record: RequestRecord, faults: HubFault[]): Promise<void> {
    const parts = url.pathname.split('/').slice(1).map(safeDecode);
    const method = req.method ?? 'GET';
    const json = (status: number, body: unknown, headers: http.OutgoingHttpHeaders = {}) =>
      this.sendBuffer(res, record, faults, status, { 'Content-Type': 'application/json', ...headers }, Buffer.from(JSON.stringify(body)));

    if (parts[0] === 'api') {
      if (parts[1] === 'whoami-v2' && method === 'GET') {
        if (!caller.user) throw new HttpError(401, 'Invalid user token');
        return json(200, { type: 'user', name: caller.user });
      }
      if (parts[1] === 'repos' && parts[2] === 'create' && method === 'POST') return json(200, this.createRepo(caller, await readJson(req)));
      if (parts[1] !== 'models' || parts.length < 4) throw new HttpError(404, 'Not found');
      const repo = `${parts[2]}/${parts[3]}`;
      const action = parts[4];
      const rest = parts.slice(5);
      if (action === undefined && method === 'GET') return json(200, this.modelInfo(repo, 'main', caller));
      if (action === 'revision' && method === 'GET' && rest.length >= 1) return json(200, this.modelInfo(repo, rest.join('/'), caller));
      if (action === 'tree' && method === 'GET' && rest.length >= 1) return this.tree(res, url, repo, rest[0]!, rest.slice(1).join('/'), caller, record, faults);
      if (action === 'paths-info' && method === 'POST' && rest.length >= 1) return json(200, this.pathsInfo(repo, rest.join('/'), caller, await readJson(req)));
      if (action === 'preupload' && method === 'POST') return json(200, this.preupload(repo, caller, await readJson(req)));
      if (action === 'commit' && method === 'POST' && rest.length >= 1) return json(200, this.commit(repo, rest.join('/'), caller, await readBody(req, MAX_JSON_BODY)));
      if (action === 'branch' && method === 'POST' && rest.length >= 1) return json(200, this.createBranch(repo, rest.join('/'), caller, await readJson(req)));
      throw new HttpError(404, 'Not found');
    }
    if (parts[0] === '__lfs' && parts[1] === 'upload' && method === 'PUT' && parts[2]) return json(200, await this.receiveLfs(req, parts[2]));
    if (parts.length === 6 && parts[1]!.endsWith('.git') && parts.slice(2).join('/') === 'info/lfs/objects/batch' && method === 'POST') {
      return json(200, this.lfsBatch(`${parts[0]}/${parts[1]!.slice(0, -4)}`, caller, await readJson(req)));
    }
    if (parts.length >= 5 && parts[2] === 'resolve' && (method === 'GET' || method === 'HEAD')) {
      return this.resolve(req, res, `${parts[0]}/${parts[1]}`, parts[3]!, parts.slice(4).join('/'), caller, record, faults);
    }
    throw new HttpError(404, 'Not found');
  }

  // ---- repos, revisions and access ------------------------------------------------------------

  private repoDir(repo: string): string {
    const [owner, name, extra] = repo.split('/');
    if (!owner || !name || extra !== undefined || !SAFE_NAME.test(owner) || !SAFE_NAME.test(name) || name.includes('..')) {
      throw new HttpError(400, `Invalid repo id: ${repo}`);
    }
    return path.join(this.root, owner, name);
  }

  private repoMeta(dir: string): { private?: boolean } {
    const file = path.join(dir, '.hub', 'repo.json');
    return existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')) : {};
  }

  private writeRepoMeta(dir: string, meta: { private?: boolean }): void {
    mkdirSync(path.join(dir, '.hub'), { recursive: true });
    writeFileSync(path.join(dir, '.hub', 'repo.json'), JSON.stringify(meta));
  }

  /** The repo's directory after the read-access check (hub semantics: 401 without a token, 404 otherwise). */
  private readable(repo: string, caller: Caller): string {
    const dir = this.repoDir(repo);
    const exists = existsSync(dir) && statSync(dir).isDirectory();
    if (exists && !this.repoMeta(dir).private) return dir;
    if (exists && caller.user === repo.split('/')[0]) return dir;
    if (!caller.tokenGiven) throw new HttpError(401, 'Repository not found or private: authentication required', 'RepoNotFound');
    throw new HttpError(404, 'Repository not found', 'RepoNotFound');
  }

  private writable(repo: string, caller: Caller): string {
    if (!caller.user) throw new HttpError(401, 'Authentication required to write to a repo');
    const dir = this.readable(repo, caller);
    if (caller.user !== repo.split('/')[0]) throw new HttpError(403, `You don't have the rights to write to ${repo}`);
    return dir;
  }

  private head(repo: string, branch: string): Head | undefined {
    const repoDir = this.repoDir(repo);
    if (branch === 'main') return existsSync(repoDir) ? { repoDir, branch, dir: repoDir } : undefined;
    if (!SAFE_NAME.test(branch)) return undefined;
    const dir = path.join(repoDir, '.hub', 'branches', branch);
    return existsSync(dir) ? { repoDir, branch, dir } : undefined;
  }

  private branches(repoDir: string): string[] {
    const dir = path.join(repoDir, '.hub', 'branches');
    return ['main', ...(existsSync(dir) ? readdirSync(dir).sort() : [])];
  }

  /** A branch name or a 40-hex commit id → the files it holds and its commit id. */
  private revision(repo: string, revision: string): { head: Head; files: FileEntry[]; commit: string } {
    const repoDir = this.repoDir(repo);
    const isCommit = /^[0-9a-f]{40}$/.test(revision);
    // modelInfo without a revision asks for HEAD, which is the default branch.
    for (const branch of isCommit ? this.branches(repoDir) : [revision === 'HEAD' ? 'main' : revision]) {
      const head = this.head(repo, branch);
      if (!head) continue;
      const files = this.scan(head.dir);
      const commit = this.commitId(files);
      if (!isCommit || commit === revision) return { head, files, commit };
    }
    throw new HttpError(404, `Invalid rev id: ${revision}`, 'RevisionNotFound');
  }

  private commitId(files: FileEntry[]): string {
    const hash = createHash('sha1');
    for (const f of files) hash.update(`${f.path}\0${f.lfs?.oid ?? f.oid}\n`);
    return hash.digest('hex');
  }

  // ---- file scanning and hashing ------------------------------------------------------------

  private scan(dir: string): FileEntry[] {
    const out: FileEntry[] = [];
    const walk = (abs: string, rel: string) => {
      for (const dirent of readdirSync(abs, { withFileTypes: true })) {
        if (rel === '' && (dirent.name === '.hub' || dirent.name === '.git')) continue;
        const childAbs = path.join(abs, dirent.name);
        const childRel = rel ? `${rel}/${dirent.name}` : dirent.name;
        if (dirent.isDirectory()) walk(childAbs, childRel);
        else if (dirent.isFile()) out.push(this.entry(childAbs, childRel));
      }
    };
    walk(dir, '');
    return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  }

  private entry(abs: string, rel: string): FileEntry {
    const stat = statSync(abs);
    const key = `${stat.size}:${stat.mtimeMs}`;
    let cached = this.hashCache.get(abs);
    if (!cached || cached.key !== key) {
      const data = readFileSync(abs);
      cached = { key, sha256: sha256(data), gitOid: gitBlobOid(data), lfs: isLfs(rel, data.length, data.subarray(0, 512)) };
      this.hashCache.set(abs, cached);
    }
    if (!cached.lfs) return { path: rel, abs, size: stat.size, oid: cached.gitOid };
    const pointer = lfsPointer(cached.sha256, stat.size);
    return { path: rel, abs, size: stat.size, oid: gitBlobOid(pointer), lfs: { oid: cached.sha256, size: stat.size, pointerSize: pointer.length } };
  }

  // ---- read endpoints -------------------------------------------------------------------------

  private modelInfo(repo: string, revision: string, caller: Caller): unknown {
    const dir = this.readable(repo, caller);
    const { files, commit } = this.revision(repo, revision);
    const lastModified = new Date(Math.max(0, ...files.map((f) => statSync(f.abs).mtimeMs))).toISOString();
    return {
      _id: sha256(Buffer.from(repo)).slice(0, 24), id: repo, modelId: repo, author: repo.split('/')[0], sha: commit,
      private: Boolean(this.repoMeta(dir).private), gated: false, disabled: false, downloads: 0, likes: 0, tags: [],
      lastModified, createdAt: lastModified, siblings: files.map((f) => ({ rfilename: f.path })),
    };
  }

  private listing(f: FileEntry): Record<string, unknown> {
    return { type: 'file', oid: f.oid, size: f.size, path: f.path, ...(f.lfs ? { lfs: f.lfs } : {}) };
  }

  private tree(res: http.ServerResponse, url: URL, repo: string, revision: string, prefix: string, caller: Caller, record: RequestRecord, faults: HubFault[]): void {
    this.readable(repo, caller);
    const { files } = this.revision(repo, revision);
    const recursive = url.searchParams.get('recursive') === 'true';
    const base = prefix.replace(/\/+$/, '');
    const under = base ? files.filter((f) => f.path.startsWith(`${base}/`)) : files;
    if (base && under.length === 0 && !files.some((f) => f.path === base)) throw new HttpError(404, `Entry not found: ${base}`, 'EntryNotFound');
    const items: Record<string, unknown>[] = [];
    const dirs = new Set<string>();
    for (const f of under) {
      const rel = base ? f.path.slice(base.length + 1) : f.path;
      const segments = rel.split('/');
      for (let i = 1; i < segments.length && (recursive || i === 1); i++) {
        const d = [base, ...segments.slice(0, i)].filter(Boolean).join('/');
        if (!dirs.has(d)) { dirs.add(d); items.push({ type: 'directory', oid: sha1(Buffer.from(d)), size: 0, path: d }); }
      }
      if (recursive || segments.length === 1) items.push(this.listing(f));
    }
    const start = Number(url.searchParams.get('cursor') ?? '0') || 0;
    const page = items.slice(start, start + this.pageSize);
    const headers: http.OutgoingHttpHeaders = { 'Content-Type': 'application/json' };
    if (start + this.pageSize < items.length) {
      const next = new URL(url.href);
      next.searchParams.set('cursor', String(start + this.pageSize));
      headers.Link = `<${next.href}>; rel="next"`;
    }
    this.sendBuffer(res, record, faults, 200, headers, Buffer.from(JSON.stringify(page)));
  }

  private pathsInfo(repo: string, revision: string, caller: Caller, body: { paths?: string[] }): unknown {
    this.readable(repo, caller);
    const { files, commit } = this.revision(repo, revision);
    const wanted = new Set(body.paths ?? []);
    return files.filter((f) => wanted.has(f.path))
      .map((f) => ({ ...this.listing(f), lastCommit: { id: commit, title: 'commit', date: new Date().toISOString() } }));
  }

  private resolve(req: http.IncomingMessage, res: http.ServerResponse, repo: string, revision: string, filePath: string, caller: Caller, record: RequestRecord, faults: HubFault[]): Promise<void> {
    this.readable(repo, caller);
    const { files, commit } = this.revision(repo, revision);
    const file = files.find((f) => f.path === filePath);
    if (!file) throw new HttpError(404, `Entry not found: ${filePath}`, 'EntryNotFound');
    const etag = `"${file.lfs?.oid ?? file.oid}"`;
    const headers: http.OutgoingHttpHeaders = {
      'Content-Type': 'application/octet-stream', ETag: etag, 'X-Repo-Commit': commit, 'Accept-Ranges': 'bytes',
      ...(file.lfs ? { 'X-Linked-ETag': etag, 'X-Linked-Size': String(file.size) } : {}),
    };
    let start = 0;
    let end = file.size; // exclusive
    let status = 200;
    const range = req.headers.range;
    if (range) {
      const m = /^bytes=(\d*)-(\d*)$/.exec(range.trim());
      if (!m || (m[1] === '' && m[2] === '')) throw new HttpError(416, `Unsupported range: ${range}`);
      if (m[1] === '') { start = Math.max(0, file.size - Number(m[2])); } else {
        start = Number(m[1]);
        if (m[2] !== '') end = Math.min(file.size, Number(m[2]) + 1);
      }
      if (start >= file.size || start >= end) {
        res.writeHead(416, { 'Content-Range': `bytes */${file.size}` }).end();
        return Promise.resolve();
      }
      status = 206;
      headers['Content-Range'] = `bytes ${start}-${end - 1}/${file.size}`;
    }
    headers['Content-Length'] = String(end - start);
    if (req.method === 'HEAD') { res.writeHead(status, headers).end(); return Promise.resolve(); }
    return this.sendFile(res, record, faults, status, headers, file, start, end);
  }

  // ---- body sending, with faults ---------------------------------------------------------------

  private sendBuffer(res: http.ServerResponse, record: RequestRecord, faults: HubFault[], status: number, headers: http.OutgoingHttpHeaders, body: Buffer): Promise<void> {
    headers['Content-Length'] = String(body.length);
    return this.stream(res, record, faults, status, headers, body.length, (offset, length) => body.subarray(offset, offset + length));
  }

  private sendFile(res: http.ServerResponse, record: RequestRecord, faults: HubFault[], status: number, headers: http.OutgoingHttpHeaders, file: FileEntry, start: number, end: number): Promise<void> {
    const fd = openSync(file.abs, 'r');
    const read = (offset: number, length: number) => {
      const buf = Buffer.alloc(length);
      const n = readSync(fd, buf, 0, length, start + offset);
      return buf.subarray(0, n);
    };
    const corrupt = faults.find((f): f is Extract<HubFault, { kind: 'corrupt' }> => f.kind === 'corrupt');
    const at = corrupt ? (corrupt.offset ?? Math.floor(file.size / 2)) - start : -1;
    const readCorrupted = (offset: number, length: number) => {
      const chunk = read(offset, length);
      if (at >= offset && at < offset + chunk.length) chunk[at - offset] ^= 0xff;
      return chunk;
    };
    return this.stream(res, record, faults, status, headers, end - start, readCorrupted).finally(() => closeSync(fd));
  }

  private async stream(res: http.ServerResponse, record: RequestRecord, faults: HubFault[], status: number, headers: http.OutgoingHttpHeaders,
    length: number, read: (offset: number, length: number) => Buffer): Promise<void> {
    const drop = faults.find((f): f is Extract<HubFault, { kind: 'drop' }> => f.kind === 'drop');
    const throttle = faults.find((f): f is Extract<HubFault, { kind: 'throttle' }> => f.kind === 'throttle');
    const limit = drop ? Math.min(drop.afterBytes, length) : length;
    const chunkSize = throttle ? Math.max(1, Math.min(64 * 1024, Math.floor(throttle.bytesPerSecond / 10))) : 64 * 1024;
    res.writeHead(status, headers);
    let offset = 0;
    while (offset < limit) {
      if (res.destroyed) return;
      const chunk = read(offset, Math.min(chunkSize, limit - offset));
      if (chunk.length === 0) break;
      offset += chunk.length;
      record.bodyBytes += chunk.length;
      if (!res.write(chunk)) await drained(res);
      if (throttle) await sleep((chunk.length / throttle.bytesPerSecond) * 1000);
    }
    if (drop && limit < length) {
      // Cut the connection mid-body with a FIN after what was written (a reset could discard bytes
      // the client has not read yet, and tests count them).
      res.socket?.end();
      return;
    }
    res.end();
  }

  // ---- write endpoints ------------------------------------------------------------------------

  private createRepo(caller: Caller, body: { name?: string; organization?: string; type?: string; private?: boolean; visibility?: string }): unknown {
    if (!caller.user) throw new HttpError(401, 'Authentication required to create a repo');
    if (body.type && body.type !== 'model') throw new HttpError(400, 'Only model repos are supported by this test hub');
    const owner = body.organization ?? caller.user;
    const repo = `${owner}/${body.name ?? ''}`;
    const dir = this.repoDir(repo);
    if (owner !== caller.user) throw new HttpError(403, `You don't have the rights to create a repo under ${owner}`);
    if (existsSync(dir)) throw new HttpError(409, 'You already created this model repo', 'RepoExists');
    mkdirSync(dir, { recursive: true });
    this.writeRepoMeta(dir, { private: body.visibility === 'private' || body.private === true });
    return { url: `${this.baseUrl}/${repo}`, name: repo, id: sha256(Buffer.from(repo)).slice(0, 24) };
  }

  private createBranch(repo: string, branch: string, caller: Caller, body: { startingPoint?: string; emptyBranch?: boolean }): unknown {
    const dir = this.writable(repo, caller);
    if (!SAFE_NAME.test(branch) || branch === 'main') throw new HttpError(400, `Invalid branch name: ${branch}`);
    if (this.head(repo, branch)) throw new HttpError(409, `Reference already exists: refs/heads/${branch}`);
    const target = path.join(dir, '.hub', 'branches', branch);
    mkdirSync(target, { recursive: true });
    if (!body.emptyBranch) {
      for (const f of this.revision(repo, body.startingPoint ?? 'main').files) {
        mkdirSync(path.dirname(path.join(target, f.path)), { recursive: true });
        copyFileSync(f.abs, path.join(target, f.path));
      }
    }
    return {};
  }

  private preupload(repo: string, caller: Caller, body: { files?: { path: string; size: number; sample: string }[] }): unknown {
    this.writable(repo, caller);
    return {
      files: (body.files ?? []).map((f) => ({
        path: f.path, shouldIgnore: false,
        uploadMode: isLfs(f.path, f.size, Buffer.from(f.sample ?? '', 'base64')) ? 'lfs' : 'regular',
      })),
    };
  }

  private lfsStore(oid: string): string {
    if (!/^[0-9a-f]{64}$/.test(oid)) throw new HttpError(422, `Invalid LFS oid: ${oid}`);
    return path.join(this.root, '.hub-lfs', oid);
  }

  private lfsBatch(repo: string, caller: Caller, body: { operation?: string; transfers?: string[]; objects?: { oid: string; size: number }[] }): unknown {
    this.writable(repo, caller);
    if (body.operation !== 'upload') throw new HttpError(400, 'Only LFS uploads are supported by this test hub');
    // Xet is the hub's other transfer; this hub speaks the basic LFS one, which the client falls back to.
    if (!body.transfers?.includes('basic')) throw new HttpError(422, 'This hub only supports the basic LFS transfer');
    return {
      transfer: 'basic',
      objects: (body.objects ?? []).map((o) => {
        if (existsSync(this.lfsStore(o.oid))) return { oid: o.oid, size: o.size, authenticated: true };
        const ticket = randomBytes(16).toString('hex');
        this.uploadTickets.set(ticket, { oid: o.oid, size: o.size });
        return { oid: o.oid, size: o.size, authenticated: true, actions: { upload: { href: `${this.baseUrl}/__lfs/upload/${ticket}`, expires_in: 3600 } } };
      }),
    };
  }

  /** The upload URL carries a one-time ticket (like a pre-signed URL): no Authorization header is sent here. */
  private async receiveLfs(req: http.IncomingMessage, ticket: string): Promise<unknown> {
    const expected = this.uploadTickets.get(ticket);
    if (!expected) throw new HttpError(403, 'Unknown or used upload ticket');
    this.uploadTickets.delete(ticket);
    const target = this.lfsStore(expected.oid);
    mkdirSync(path.dirname(target), { recursive: true });
    const temp = `${target}.${randomBytes(4).toString('hex')}.tmp`;
    const hash = createHash('sha256');
    let size = 0;
    const out = createWriteStream(temp);
    try {
      for await (const chunk of req) {
        size += (chunk as Buffer).length;
        if (size > expected.size) throw new HttpError(400, `Upload is larger than the ${expected.size} bytes announced`);
        hash.update(chunk as Buffer);
        if (!out.write(chunk)) await new Promise<void>((resolve) => out.once("drain", () => resolve()));
      }
      await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
      const oid = hash.digest('hex');
      if (size !== expected.size || oid !== expected.oid) throw new HttpError(400, `Uploaded bytes do not match oid ${expected.oid} (got ${size} bytes, sha256 ${oid})`);
      renameSync(temp, target);
      return {};
    } catch (err) {
      out.destroy();
      rmSync(temp, { force: true });
      throw err;
    }
  }

  private commit(repo: string, branch: string, caller: Caller, body: Buffer): unknown {
    const dir = this.writable(repo, caller);
    const head = this.head(repo, branch);
    if (!head) throw new HttpError(404, `Invalid rev id: ${branch}`, 'RevisionNotFound');
    const lines = body.toString('utf8').split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as { key: string; value: Record<string, unknown> });
    const header = lines.find((l) => l.key === 'header')?.value ?? {};
    if (!header.summary) throw new HttpError(400, 'Commit summary is required');
    if (header.parentCommit && header.parentCommit !== this.commitId(this.scan(head.dir))) throw new HttpError(412, 'A commit has happened since. Please refresh and try again.');
    // Validate everything before touching the tree, so a bad commit changes nothing.
    const writes: { path: string; data?: Buffer; lfs?: string; remove?: boolean }[] = [];
    for (const { key, value } of lines) {
      if (key === 'header') continue;
      const filePath = String(value.path ?? '');
      checkRepoPath(filePath);
      if (key === 'file') writes.push({ path: filePath, data: Buffer.from(String(value.content ?? ''), value.encoding === 'base64' ? 'base64' : 'utf8') });
      else if (key === 'lfsFile') {
        const store = this.lfsStore(String(value.oid));
        if (!existsSync(store) || statSync(store).size !== Number(value.size)) throw new HttpError(422, `LFS object ${String(value.oid)} for ${filePath} was not uploaded`);
        writes.push({ path: filePath, lfs: store });
      } else if (key === 'deletedFile') writes.push({ path: filePath, remove: true });
      else throw new HttpError(400, `Unknown commit operation: ${key}`);
    }
    for (const w of writes) {
      const target = path.join(head.dir, w.path);
      if (w.remove) { rmSync(target, { force: true }); continue; }
      mkdirSync(path.dirname(target), { recursive: true });
      const temp = path.join(dir, '.hub', `write-${randomBytes(4).toString('hex')}.tmp`);
      mkdirSync(path.dirname(temp), { recursive: true });
      if (w.data) writeFileSync(temp, w.data); else copyFileSync(w.lfs!, temp);
      renameSync(temp, target);
    }
    const commitOid = this.commitId(this.scan(head.dir));
    return { success: true, commitOid, commitUrl: `${this.baseUrl}/${repo}/commit/${commitOid}` };
  }
}

// ---- helpers ----------------------------------------------------------------------------------

function sha256(data: Buffer): string { return createHash('sha256').update(data).digest('hex'); }
function sha1(data: Buffer): string { return createHash('sha1').update(data).digest('hex'); }

/** git's blob id: sha1 of "blob <size>\0" + content (the hub's oid for non-LFS files). */
function gitBlobOid(data: Buffer): string {
  return createHash('sha1').update(`blob ${data.length}\0`).update(data).digest('hex');
}

function lfsPointer(oid: string, size: number): Buffer {
  return Buffer.from(`version https://git-lfs.github.com/spec/v1\noid sha256:${oid}\nsize ${size}\n`);
}

function isLfs(filePath: string, size: number, sample: Buffer): boolean {
  return LFS_EXTENSIONS.test(filePath) || size >= LFS_MIN_SIZE || sample.includes(0);
}

function checkRepoPath(p: string): void {
  const segments = p.split('/');
  if (!p || p.startsWith('/') || p.includes('\\') || segments.some((s) => s === '' || s === '.' || s === '..') || segments[0] === '.hub' || segments[0] === '.git') {
    throw new HttpError(400, `Invalid path in commit: ${p}`);
  }
}

function matches(value: string, pattern: string | RegExp): boolean {
  return typeof pattern === 'string' ? value.includes(pattern) : pattern.test(value);
}

function safeDecode(s: string): string {
  try { return decodeURIComponent(s); } catch { return s; }
}

/** Resolves when the response can take more data, or is gone. */
function drained(res: http.ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => { res.off('drain', done); res.off('close', done); resolve(); };
    res.on('drain', done);
    res.on('close', done);
  });
}

function sleep(ms: number): Promise<void> { return new Promise((resolve) => setTimeout(resolve, ms)); }

async function readBody(req: http.IncomingMessage, max: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > max) throw new HttpError(413, 'Request body too large');
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- each endpoint declares the shape it reads
async function readJson(req: http.IncomingMessage): Promise<any> {
  const body = await readBody(req, MAX_JSON_BODY);
  try { return body.length ? JSON.parse(body.toString('utf8')) : {}; } catch { throw new HttpError(400, 'Request body is not JSON'); }
}
