/**
 * The hub cache layout Python's huggingface_hub uses, so either tool finds what the other fetched:
 *
 *   <cacheDir>/models--<owner>--<name>/
 *     blobs/<etag>                      file contents, named by the hub's ETag (sha256 for LFS files,
 *                                       the git blob id otherwise); `<etag>.incomplete` while downloading
 *     snapshots/<commit>/<path>         relative symlinks → ../../blobs/<etag>
 *     refs/<revision>                   the commit id a branch or tag pointed at (no newline)
 */
import { copyFileSync, existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { TritpackError } from '../errors.js';

const COMMIT = /^[0-9a-f]{40}$/;

export function isCommitId(revision: string): boolean {
  return COMMIT.test(revision);
}

export function repoFolder(cacheDir: string, repo: string): string {
  return path.join(cacheDir, ['models', ...repo.split('/')].join('--'));
}

/** Joins a hub-supplied relative name onto `base`, refusing names that would land outside it. */
export function safeJoin(base: string, name: string, what: string): string {
  const segments = name.split(/[/\\]/);
  if (name === '' || path.isAbsolute(name) || /^[A-Za-z]:/.test(name) || name.startsWith('\\')
    || segments.some((s) => s === '..' || s === '.' || s === '')) {
    throw new TritpackError(`refusing ${what} "${name}": it is absolute or contains "..", "." or empty segments and could escape the cache directory`);
  }
  const joined = path.join(base, ...segments);
  if (!joined.startsWith(base + path.sep)) throw new TritpackError(`refusing ${what} "${name}": it escapes ${base}`);
  return joined;
}

export function blobPath(storage: string, etag: string): string {
  if (!/^[0-9a-f]{40}$|^[0-9a-f]{64}$/.test(etag)) throw new TritpackError(`refusing hub object id "${etag}": not a sha1 or sha256`);
  return path.join(storage, 'blobs', etag);
}

export function snapshotDir(storage: string, commit: string): string {
  if (!isCommitId(commit)) throw new TritpackError(`refusing commit id "${commit}" from the hub: not 40 hex digits`);
  return path.join(storage, 'snapshots', commit);
}

export function readRef(storage: string, revision: string): string | undefined {
  const file = safeJoin(path.join(storage, 'refs'), revision, 'revision');
  if (!existsSync(file)) return undefined;
  const commit = readFileSync(file, 'utf8').trim();
  return isCommitId(commit) ? commit : undefined;
}

export function writeRef(storage: string, revision: string, commit: string): void {
  const file = safeJoin(path.join(storage, 'refs'), revision, 'revision');
  mkdirSync(path.dirname(file), { recursive: true });
  const temp = `${file}.${process.pid}.tmp`;
  writeFileSync(temp, commit);
  renameSync(temp, file);
}

/** Points snapshots/<commit>/<name> at blobs/<etag> with a relative symlink (a copy where links are not allowed). */
export function linkIntoSnapshot(storage: string, commit: string, name: string, etag: string): string {
  const pointer = safeJoin(snapshotDir(storage, commit), name, 'file name');
  const blob = blobPath(storage, etag);
  mkdirSync(path.dirname(pointer), { recursive: true });
  if (isPresent(pointer)) rmSync(pointer, { force: true });
  try {
    symlinkSync(path.relative(path.dirname(pointer), blob), pointer);
  } catch {
    copyFileSync(blob, pointer);
  }
  return pointer;
}

/** The commit a revision names in this cache: itself when it is a commit id, else what refs/ says. */
export function cachedCommit(storage: string, revision: string): string | undefined {
  return isCommitId(revision) ? revision : readRef(storage, revision);
}

/** Every file of a snapshot (links followed), as hub-style relative paths. */
export function snapshotFiles(dir: string): { path: string; size: number }[] {
  const out: { path: string; size: number }[] = [];
  const walk = (abs: string, rel: string) => {
    for (const name of readdirSync(abs).sort()) {
      const childAbs = path.join(abs, name);
      const childRel = rel ? `${rel}/${name}` : name;
      let stat;
      try { stat = statSync(childAbs); } catch { continue; } // a dangling link: its blob was pruned
      if (stat.isDirectory()) walk(childAbs, childRel);
      else if (stat.isFile()) out.push({ path: childRel, size: stat.size });
    }
  };
  if (existsSync(dir)) walk(dir, '');
  return out;
}

function isPresent(p: string): boolean {
  try { lstatSync(p); return true; } catch { return false; }
}

/** The repo and commit a path inside a hub cache snapshot came from (…/models--o--n/snapshots/<commit>/…). */
export function sourceFromCachePath(p: string): { repo: string; commit: string } | undefined {
  const m = /(?:^|[/\\])models--([^/\\]+?)[/\\]snapshots[/\\]([0-9a-f]{40})(?:[/\\]|$)/.exec(p);
  if (!m) return undefined;
  const repo = m[1]!.split('--').join('/');
  return { repo, commit: m[2]! };
}
