/**
 * Where a model comes from: an HF checkpoint directory or a .tpk. Both give the same thing — the
 * config/tokenizer texts and uniform access to stored tensors (name → shape, encoding, bytes) —
 * so weight loading does not care which one it reads.
 *
 * Tensor bytes are read into buffers of their own, or, given a `mapper` (a backend that uses stored
 * bytes in place), handed out as views into a memory mapping of each file: nothing is copied, and
 * the integrity checks are the same (.tpk blobs are hashed the first time they are used either way).
 * A file on a file system that does not map files is read instead, silently: only the saved copy is lost.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { FormatError, TritpackError } from '../errors.js';
import { dtypeByteSize, isFloatDType, toFloat32, type DType } from '../formats/dtype.js';
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
  /**
   * The stored bytes: a buffer of their own, or with a `mapper` a view into the file's mapping, which must
   * never be written (the pages are read-only). Views of float tensors are element-aligned.
   */
  readBytes(name: string): Uint8Array;
  /** The caller made its own copy of bytes from readBytes: a mapped view's pages may leave the resident set (no-op for read copies). */
  releaseBytes(bytes: Uint8Array): void;
  readScales(name: string): Float32Array;
  /** A float tensor (norm weight, bias, weight_scale) as float32. */
  readVector(name: string): Float32Array;
  close(): void;
}

/** Memory mappings of model files (NativeBackend). */
export interface FileMapper {
  /**
   * The whole file mapped read-only through `fd`, the descriptor its reader opened and checked (so a
   * path replaced since cannot swap the file); `file` names it in errors. It stays mapped while a view
   * into it lives. Null where the file system does not map the file: its tensors are read instead.
   */
  mapFile(file: string, fd: number): ArrayBuffer | null;
  /** Lets the pages of a mapped view leave the resident set (they re-fault from the file if read again). */
  dropPages(view: Uint8Array): void;
}

export interface SourceOptions {
  /** Hand out tensor bytes as views into mappings of the files instead of reading copies. */
  mapper?: FileMapper;
}

export function openModelSource(pathOrDir: string, options: SourceOptions = {}): ModelSource {
  let isDir: boolean;
  try {
    isDir = statSync(pathOrDir).isDirectory();
  } catch {
    throw new TritpackError(`${pathOrDir}: no such model file or directory`);
  }
  const mapped = options.mapper && mappingCache(options.mapper);
  return isDir ? openHfDir(pathOrDir, mapped) : openTpk(pathOrDir, mapped);
}

/**
 * Each file mapped once, when its first tensor is used (or found unmappable once: null, read it);
 * `clear` lets go (views keep their mapping alive); `copiedOut` drops the pages of a view whose values
 * were converted into an array of their own.
 */
interface Mappings { get(file: string, fd: () => number): ArrayBuffer | null; copiedOut(view: Uint8Array): void; clear(): void }

function mappingCache(mapper: FileMapper): Mappings {
  const byFile = new Map<string, ArrayBuffer | null>();
  return {
    get: (file, fd) => {
      let bytes = byFile.get(file);
      if (bytes === undefined) byFile.set(file, (bytes = mapper.mapFile(file, fd())));
      return bytes;
    },
    copiedOut: (view) => mapper.dropPages(view),
    clear: () => byFile.clear(),
  };
}

/**
 * A float tensor as float32, converted from its stored bytes into an array of its own. A mapped view is
 * not needed after that: its pages leave the resident set (online-quantized float matrices of a BitNet
 * checkpoint would otherwise stay resident after load, next to their ternary repack).
 */
function floatValues(origin: string, name: string, encoding: TpkEncoding, bytes: () => Uint8Array, mapped: Mappings | undefined): Float32Array {
  if (isTernaryEncoding(encoding) || (!isFloatDType(encoding) && encoding !== 'F64')) throw new FormatError(origin, `tensor ${name} is stored as ${encoding}, expected a float dtype`);
  const stored = bytes();
  const values = toFloat32(stored, encoding);
  mapped?.copiedOut(stored);
  return values;
}

/**
 * A safetensors tensor as a view into its file's mapping. The header's offsets were checked against
 * the file's size at open; a mapping shorter than that (the file shrank since) is refused here, before
 * anything reads it. A file that shrinks while mapped makes later reads fault (SIGBUS), as with any
 * mmap. The official writer keeps every tensor aligned to 8 bytes; one placed off its element size's
 * alignment (another writer) is copied, since the kernels read whole elements.
 */
function mappedTensor(file: string, fileBytes: ArrayBuffer, name: string, dtype: DType, offset: number, length: number): Uint8Array {
  if (offset + length > fileBytes.byteLength) {
    throw new FormatError(file, `truncated: tensor ${name} ends at byte ${offset + length} but the file has ${fileBytes.byteLength} bytes`);
  }
  const view = new Uint8Array(fileBytes, offset, length);
  return offset % dtypeByteSize(dtype) === 0 ? view : view.slice();
}

function readOptional(file: string): string | undefined {
  return existsSync(file) ? readFileSync(file, 'utf8') : undefined;
}

function openHfDir(dir: string, mapped: Mappings | undefined): ModelSource {
  const configFile = path.join(dir, 'config.json');
  if (!existsSync(configFile)) throw new FormatError(dir, 'no config.json (a Hugging Face checkpoint directory needs one)');
  const checkpoint = SafetensorsCheckpoint.open(dir);
  const info = (name: string) => {
    const t = checkpoint.get(name);
    if (!t) throw new FormatError(checkpoint.files[0] ?? dir, `no tensor named ${name}`);
    return t;
  };
  const mappedBytes = (name: string): Uint8Array => {
    const t = info(name);
    const fileBytes = mapped!.get(t.file, () => checkpoint.descriptorOf(name));
    return fileBytes ? mappedTensor(t.file, fileBytes, name, t.dtype, t.dataOffset, t.byteLength) : checkpoint.readBytes(name);
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
    readBytes: mapped ? mappedBytes : (name) => checkpoint.readBytes(name),
    releaseBytes: (bytes) => mapped?.copiedOut(bytes),
    readScales: (name) => { throw new FormatError(info(name).file, `tensor ${name} is not a packed ternary tensor`); },
    readVector: mapped ? (name) => floatValues(info(name).file, name, info(name).dtype, () => mappedBytes(name), mapped) : (name) => checkpoint.readFloat32(name),
    close: () => {
      checkpoint.close();
      mapped?.clear();
    },
  };
}

function openTpk(file: string, mapped: Mappings | undefined): ModelSource {
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
  // Blobs sit at 64-byte-aligned offsets and mappings start on a page: views are always element-aligned.
  const readData = (name: string) => {
    const fileBytes = mapped?.get(file, () => tpk.descriptor);
    return fileBytes ? tpk.dataView(name, fileBytes) : tpk.readData(name);
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
    readBytes: readData,
    releaseBytes: (bytes) => mapped?.copiedOut(bytes),
    readScales: (name) => tpk.readScales(name),
    readVector: (name) => floatValues(file, name, entry(name).encoding, () => readData(name), mapped),
    close: () => {
      tpk.close();
      mapped?.clear();
    },
  };
}
