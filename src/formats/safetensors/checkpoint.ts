/**
 * A whole safetensors checkpoint: one file, or shards tied together by
 * model.safetensors.index.json, checked so that the index and the shards agree exactly.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { ioProblem } from '../io.js';
import { SafetensorsFile } from './file.js';
import { type SafetensorsTensorInfo, INDEX_FILE_NAME, SINGLE_FILE_NAME, fail, isPlainObject, preview, quote } from './shared.js';

/** A shard name from an index must stay inside the checkpoint directory. */
function isPlainFileName(name: string): boolean {
  return name !== '' && name !== '.' && name !== '..' && !name.includes('/') && !name.includes('\\') && !name.includes('\0');
}

/** Reads model.safetensors.index.json: tensor name → shard file name. */
function readIndex(indexPath: string): Map<string, string> {
  let text: string;
  try {
    text = readFileSync(indexPath, 'utf8');
  } catch (error) {
    fail(indexPath, ioProblem('read', error));
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    fail(indexPath, `not valid JSON (${String((error as Error).message).replace(/\s+/g, ' ').slice(0, 100)})`);
  }
  const weightMap = isPlainObject(json) ? json['weight_map'] : undefined;
  if (!isPlainObject(weightMap)) fail(indexPath, 'has no "weight_map" object');
  const map = new Map<string, string>();
  for (const [name, shard] of Object.entries(weightMap)) {
    if (typeof shard !== 'string' || !isPlainFileName(shard)) {
      fail(indexPath, `weight_map entry for ${quote(name)} must be a file name in the same directory, got ${preview(shard)}`);
    }
    map.set(name, shard);
  }
  return map;
}

/**
 * A whole checkpoint: a directory holding model.safetensors or a sharded set described by
 * model.safetensors.index.json, an index file itself, or a single .safetensors file.
 */
export class SafetensorsCheckpoint {
  /** Paths of the .safetensors files, in shard order. */
  readonly files: string[];
  /** Every tensor, file by file in shard order, each file's in data-offset order. */
  readonly tensors: SafetensorsTensorInfo[];
  private readonly owner: Map<string, SafetensorsFile>;
  private readonly opened: SafetensorsFile[];
  /** The path the checkpoint was opened from, named in its errors. */
  private readonly source: string;

  private constructor(source: string, opened: SafetensorsFile[]) {
    this.source = source;
    this.opened = opened;
    this.files = opened.map((f) => f.path);
    this.tensors = opened.flatMap((f) => f.tensors);
    this.owner = new Map(opened.flatMap((f) => f.tensors.map((t) => [t.name, f] as const)));
  }

  static open(pathOrDir: string): SafetensorsCheckpoint {
    let isDir: boolean;
    try {
      isDir = statSync(pathOrDir).isDirectory();
    } catch (error) {
      fail(pathOrDir, ioProblem('open', error));
    }
    if (isDir) {
      // The same precedence as transformers' from_pretrained: a single file wins over an index.
      const single = path.join(pathOrDir, SINGLE_FILE_NAME);
      if (existsSync(single)) return new SafetensorsCheckpoint(pathOrDir, [SafetensorsFile.open(single)]);
      const index = path.join(pathOrDir, INDEX_FILE_NAME);
      if (existsSync(index)) return SafetensorsCheckpoint.openSharded(index);
      fail(pathOrDir, `directory has neither ${SINGLE_FILE_NAME} nor ${INDEX_FILE_NAME}`);
    }
    if (pathOrDir.endsWith('.index.json')) return SafetensorsCheckpoint.openSharded(pathOrDir);
    return new SafetensorsCheckpoint(pathOrDir, [SafetensorsFile.open(pathOrDir)]);
  }

  /** Opens every shard named in the index and checks that the index and the shards agree exactly. */
  private static openSharded(indexPath: string): SafetensorsCheckpoint {
    const weightMap = readIndex(indexPath);
    const indexName = path.basename(indexPath);
    const dir = path.dirname(indexPath);
    const shardNames = [...new Set(weightMap.values())].sort();
    const opened: SafetensorsFile[] = [];
    try {
      for (const shardName of shardNames) {
        const shardPath = path.join(dir, shardName);
        if (!existsSync(shardPath)) fail(shardPath, `shard listed in ${indexName} does not exist`);
        const shard = SafetensorsFile.open(shardPath);
        opened.push(shard);
        for (const t of shard.tensors) {
          const listed = weightMap.get(t.name);
          if (listed !== shardName) {
            fail(shardPath, listed === undefined
              ? `tensor ${quote(t.name)} is not listed in ${indexName}`
              : `tensor ${quote(t.name)} is listed in ${indexName} under ${listed}`);
          }
        }
      }
      for (const [name, shardName] of weightMap) {
        const shard = opened.find((f) => path.basename(f.path) === shardName)!;
        if (!shard.get(name)) fail(shard.path, `tensor ${quote(name)} is listed in ${indexName} but missing from this shard`);
      }
    } catch (error) {
      for (const f of opened) f.close();
      throw error;
    }
    return new SafetensorsCheckpoint(indexPath, opened);
  }

  get(name: string): SafetensorsTensorInfo | undefined {
    return this.owner.get(name)?.get(name);
  }

  private fileOf(name: string): SafetensorsFile {
    const file = this.owner.get(name);
    if (!file) fail(this.source, `no tensor named ${quote(name)}`);
    return file;
  }

  /** The descriptor of the open file holding tensor `name` (SafetensorsFile.descriptor). */
  descriptorOf(name: string): number {
    return this.fileOf(name).descriptor;
  }

  readBytes(name: string): Uint8Array {
    return this.fileOf(name).readBytes(name);
  }

  readFloat32(name: string): Float32Array {
    return this.fileOf(name).readFloat32(name);
  }

  close(): void {
    for (const f of this.opened) f.close();
  }
}
