/**
 * Hub repo ids as users type them: `owner/name` or `name`, optionally `@revision`. The rules are the
 * hub's (letters, digits, `-`, `_`, `.`; no `--` or `..`; at most 96 characters), which also keeps
 * an id from naming anything outside its cache folder.
 */
import { TritpackError } from '../errors.js';

export interface RepoSpec { repo: string; revision?: string }

const NAME = /^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$/;
const REVISION = /^[A-Za-z0-9._/-]+$/;

export function isValidRepoId(repo: string): boolean {
  const parts = repo.split('/');
  return parts.length >= 1 && parts.length <= 2 && repo.length <= 96 && !repo.includes('--') && !repo.includes('..')
    && parts.every((p) => NAME.test(p));
}

/** Parses `owner/name[@revision]`; undefined when the text is not a repo id. */
export function parseRepoSpec(text: string): RepoSpec | undefined {
  const at = text.indexOf('@');
  const repo = at < 0 ? text : text.slice(0, at);
  const revision = at < 0 ? undefined : text.slice(at + 1);
  if (!isValidRepoId(repo)) return undefined;
  if (revision !== undefined && !isValidRevision(revision)) return undefined;
  return revision === undefined ? { repo } : { repo, revision };
}

export function isValidRevision(revision: string): boolean {
  return REVISION.test(revision) && !revision.split('/').some((s) => s === '' || s === '.' || s === '..');
}

export function requireRepoSpec(text: string): RepoSpec {
  const spec = parseRepoSpec(text);
  if (!spec) throw new TritpackError(`"${text}" is not a hub repo id (expected owner/name or owner/name@revision)`);
  return spec;
}
