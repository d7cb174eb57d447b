/**
 * Where a model comes from: an HF checkpoint directory or a .tpk. Both give the same thing — the
 * config/tokenizer texts and uniform access to stored tensors (name → shape, encoding, bytes) —
 * so weight loading does not care which one it reads.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { FormatError, TritpackError } from '../errors.js';
import { isFloatDType, toFloat32 } from '../formats/dtype.js';
import { SafetensorsCheckpoint } from '../formats/safetensors.js';
import { isTernaryEncoding, TpkFile, type TpkEncoding, type TpkScale } from '../formats/tpk.js';

export interface StoredTensor {
  shape: number[];
  /** A dtype (safetensors, or a kept .tpk tensor) or a ternary packing (.tpk). */
  encoding: TpkEncoding;
  scale?: TpkScale;
}

export interface ModelSource {
  kind: 'hf-dir' | 'tpk';
  path: string;
  /** The file that tensor errors name (the weights file, index or .tpk). */
  tensorOrigin: string;
  configText: string;
  /** Where the config came from, for error messages. */
  configOrigin: string;
  generationConfigText?: string;
  tokenizerJson?: string;
  tokenizerConfigJson?: string;
  tensor(name: string): StoredTensor | undefined;
  readBytes(name: string): Uint8Array;
  readScales(name: string): Float32Array;
  /** A float tensor (norm weight, bias, weight_scale) as float32. */
  readVector(name: string): Float32Array;
  close(): void;
}

export function openModelSource(pathOrDir: string): ModelSource {
  let isDir: boolean;
  try {
    isDir = statSync(pathOrDir).isDirectory();
  } catch {
    throw new TritpackError(`${pathOrDir}: no such model file or directory`);
  }
  return isDir ? openHfDir(pathOrDir) : openTpk(pathOrDir);
}

function readOptional(file: string): string | undefined {
  return existsSync(file) ? readFileSync(file, 'utf8') : undefined;
}

function openHfDir(dir: string): ModelSource {
  const configFile = path.join(dir, 'config.json');
  if (!existsSync(configFile)) throw new FormatError(dir, 'no config.json (a Hugging Face checkpoint directory needs one)');
  const checkpoint = SafetensorsCheckpoint.open(dir);
  const info = (name: string) => {
    const t = checkpoint.get(name);
    if (!t) throw new FormatError(checkpoint.files[0] ?? dir, `no tensor named ${name}`);
    return t;
  };
  return {
    kind: 'hf-dir',
    path: dir,
    tensorOrigin: checkpoint.files.length === 1 ? checkpoint.files[0]! : path.join(dir, 'model.safetensors.index.json'),
    configText: readFileSync(configFile, 'utf8'),
    configOrigin: configFile,
    generationConfigText: readOptional(path.join(dir, 'generation_config.json')),
    tokenizerJson: readOptional(path.join(dir, 'tokenizer.json')),
    tokenizerConfigJson: readOptional(path.join(dir, 'tokenizer_config.json')),
    tensor: (name) => {
      const t = checkpoint.get(name);
      return t && { shape: t.shape, encoding: t.dtype };
    },
    readBytes: (name) => checkpoint.readBytes(name),
    readScales: (name) => { throw new FormatError(info(name).file, `tensor ${name} is not a packed ternary tensor`); },
    readVector: (name) => checkpoint.readFloat32(name),
    close: () => checkpoint.close(),
  };
}

function openTpk(file: string): ModelSource {
  const tpk = TpkFile.open(file);
  const files = tpk.header.files ?? {};
  const configText = files['config.json'];
  if (configText === undefined) {
    tpk.close();
    throw new FormatError(file, 'the .tpk header embeds no config.json');
  }
  const entry = (name: string) => {
    const t = tpk.tensor(name);
    if (!t) throw new FormatError(file, `no tensor named ${name}`);
    return t;
  };
  return {
    kind: 'tpk',
    path: file,
    tensorOrigin: file,
    configText,
    configOrigin: `${file} (embedded config.json)`,
    generationConfigText: files['generation_config.json'],
    tokenizerJson: files['tokenizer.json'],
    tokenizerConfigJson: files['tokenizer_config.json'],
    tensor: (name) => {
      const t = tpk.tensor(name);
      if (!t) return undefined;
      return t.scale ? { shape: t.shape, encoding: t.encoding, scale: t.scale } : { shape: t.shape, encoding: t.encoding };
    },
    readBytes: (name) => tpk.readData(name),
    readScales: (name) => tpk.readScales(name),
    readVector: (name) => {
      const t = entry(name);
      const encoding = t.encoding;
      if (isTernaryEncoding(encoding) || (!isFloatDType(encoding) && encoding !== 'F64')) throw new FormatError(file, `tensor ${name} is stored as ${encoding}, expected a float dtype`);
      return toFloat32(tpk.readData(name), encoding);
    },
    close: () => tpk.close(),
  };
}
