/**
 * Which files of a repo listing a pull fetches. By default only what tritpack loads: the config,
 * generation config, tokenizer files and safetensors weights (single or sharded, with the index),
 * plus .tpk files and the model card. Pickle weights are never fetched: unpickling runs whatever code the file carries.
 */
import { minimatch } from 'minimatch';
import type { ListFileEntry } from '@huggingface/hub';
import { TritpackError } from '../errors.js';
import { safeJoin } from './cache.js';

export const DEFAULT_INCLUDE = [
  'config.json', 'generation_config.json',
  'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'added_tokens.json',
  'tokenizer.model', 'vocab.json', 'merges.txt', 'chat_template.jinja', 'chat_template.json',
  '*.safetensors', '*.safetensors.index.json', '*.tpk',
  // The model card: small, and where the source's licence is declared.
  'README.md',
];

const PICKLE = /\.(bin|pt|pth|ckpt|pkl|pickle)$/i;
const WEIGHTS = /\.(safetensors|tpk)$/i;

/** A file to fetch: `etag` is what the hub's resolve ETag will be, and what the blob is named. */
export interface RemoteFile { path: string; size: number; etag: string; hash: 'sha256' | 'git-sha1' }

export function selectFiles(entries: ListFileEntry[], where: string, include?: string[]): RemoteFile[] {
  const files = entries.filter((e) => e.type === 'file');
  // Check every name, not just the selected ones: a listing that tries to escape is not to be trusted.
  for (const f of files) safeJoin('/cache', f.path, `file name from ${where}'s listing`);
  const patterns = include && include.length > 0 ? include : DEFAULT_INCLUDE;
  const selected = files.filter((f) => patterns.some((p) => minimatch(f.path, p, { dot: true })));
  const pickles = selected.filter((f) => PICKLE.test(f.path));
  if (pickles.length > 0) throw pickleRefusal(where, pickles.map((f) => f.path), false);
  // The default selection is a model to load, so it needs weights tritpack reads; an explicit --include
  // (say, only config.json of a pickle-only repo) gets exactly the files it names.
  if (!include && !selected.some((f) => WEIGHTS.test(f.path))) {
    const repoPickles = files.filter((f) => PICKLE.test(f.path));
    if (repoPickles.length > 0) throw pickleRefusal(where, repoPickles.map((f) => f.path), true);
    throw new TritpackError(`${where} has no safetensors weights (files: ${preview(files.map((f) => f.path))})`);
  }
  if (selected.length === 0) throw new TritpackError(`no file of ${where} matches --include ${patterns.join(' ')}`);
  return selected.map(remoteFile);
}

function remoteFile(entry: ListFileEntry): RemoteFile {
  if (entry.lfs?.oid) return { path: entry.path, size: entry.lfs.size ?? entry.size, etag: entry.lfs.oid, hash: 'sha256' };
  if (entry.oid) return { path: entry.path, size: entry.size, etag: entry.oid, hash: 'git-sha1' };
  throw new TritpackError(`the hub listing gives no object id for ${entry.path}, so it cannot be verified`);
}

function pickleRefusal(where: string, names: string[], only: boolean): TritpackError {
  return new TritpackError(
    `${where} ${only ? 'has only pickle weights' : 'selects pickle weights'} (${preview(names)}): tritpack does not load pickle files `
    + 'because unpickling runs arbitrary code from the file. Use a safetensors version instead: look for one in the '
    + 'repo\'s other revisions or pull requests, ask the author for one, or convert it yourself in a sandbox you trust '
    + '(e.g. transformers\' save_pretrained(..., safe_serialization=True)).',
  );
}

function preview(names: string[]): string {
  return names.length <= 4 ? names.join(', ') : `${names.slice(0, 4).join(', ')} and ${names.length - 4} more`;
}
