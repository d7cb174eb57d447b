/** Paths to the bundled fixtures and their transformers-computed references (the tests' oracle). */
import { readFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const FIXTURES = path.join(REPO_ROOT, 'fixtures');

export type FixtureName = 'tinystories-656K' | 'bitnet-tiny' | 'bitnet-tiny-packed' | 'llama-256';

export function fixtureDir(name: FixtureName): string {
  return path.join(FIXTURES, name);
}

export function textFixture(name: 'tinystories_sample.txt' | 'tinyshakespeare.txt'): string {
  return path.join(FIXTURES, 'text', name);
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function loadReference(name: FixtureName): any {
  return JSON.parse(readFileSync(path.join(fixtureDir(name), 'reference.json'), 'utf8'));
}

/** A fresh temporary directory, removed by the returned cleanup function. */
export function makeTempDir(prefix = 'tritpack-test-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}
