/**
 * What every exporter needs from a .tpk: the parsed config, tied-weight aliases, each tensor as
 * ternary codes + scales or as float32, and an all-or-nothing output directory. The exporters
 * read one tensor at a time through this view, so memory stays at a few tensors.
 */
import { existsSync, mkdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { FormatError, TritpackError } from '../errors.js';
import { toFloat32, isFloatDType } from '../formats/dtype.js';
import { writeShardedSafetensors, type SafetensorsEntry } from '../formats/safetensors.js';
import { unpackTernary } from '../formats/ternary.js';
import { TpkFile, isTernaryEncoding, elementCount, tpkScaleIndex, type TpkHeader, type TpkScale, type TpkTensorEntry } from '../formats/tpk.js';

export interface TernaryTensor {
  codes: Int8Array;
  /** f32 scales: 1 (tensor), rows (channel) or rows·ceil(cols/groupSize) (group) */
  scales: Float32Array;
  scale: TpkScale;
  rows: number;
  cols: number;
}

export class TpkModel {
  readonly tpk: TpkFile;
  readonly header: TpkHeader;
  readonly config: Record<string, unknown>;
  /** missing tensor name → the stored tensor it is tied to (from the conversion record) */
  readonly aliases: Record<string, string>;

  private constructor(tpk: TpkFile) {
    this.tpk = tpk;
    this.header = tpk.header;
    const text = tpk.header.files['config.json'];
    if (text === undefined) throw new FormatError(tpk.path, 'the header holds no config.json');
    try {
      this.config = JSON.parse(text) as Record<string, unknown>;
    } catch (err) {
      throw new FormatError(tpk.path, `its config.json is not valid JSON (${(err as Error).message})`);
    }
    const aliases = tpk.header.conversion['aliases'];
    this.aliases = aliases !== null && typeof aliases === 'object' ? { ...(aliases as Record<string, string>) } : {};
  }

  static open(file: string): TpkModel {
    const tpk = TpkFile.open(file);
    try {
      return new TpkModel(tpk);
    } catch (err) {
      tpk.close();
      throw err;
    }
  }

  get path(): string { return this.tpk.path; }
  get tensors(): TpkTensorEntry[] { return this.header.tensors; }

  /** The stored entry for a name, following a tied-weight alias. */
  entry(name: string): TpkTensorEntry | undefined {
    return this.tpk.tensor(name) ?? (this.aliases[name] !== undefined ? this.tpk.tensor(this.aliases[name]!) : undefined);
  }

  isTernary(name: string): boolean {
    const e = this.entry(name);
    return e !== undefined && isTernaryEncoding(e.encoding);
  }

  ternary(name: string): TernaryTensor {
    const e = this.mustEntry(name);
    if (!isTernaryEncoding(e.encoding) || e.scale === undefined) throw new TritpackError(`${this.path}: tensor ${name} is ${e.encoding}, not ternary`);
    const rows = e.shape[0] ?? 1;
    const count = elementCount(e.shape);
    return {
      codes: unpackTernary(e.encoding, this.tpk.readData(e.name), count),
      scales: this.tpk.readScales(e.name),
      scale: e.scale,
      rows,
      cols: count / rows,
    };
  }

  /** The tensor's values as the .tpk defines them: float tensors widened, ternary ones t·scale in f32. */
  float32(name: string): Float32Array {
    const e = this.mustEntry(name);
    if (isTernaryEncoding(e.encoding)) return dequantizeTernary(this.ternary(name));
    if (!isFloatDType(e.encoding) && e.encoding !== 'F64') throw new TritpackError(`${this.path}: tensor ${name} is ${e.encoding}, not a float tensor`);
    return toFloat32(this.tpk.readData(e.name), e.encoding);
  }

  /**
   * The name a stored tensor gets in an HF checkpoint. A tied pair stored as lm_head only is
   * written under the input-embedding name, which transformers loads and ties the head to.
   */
  hfName(entry: TpkTensorEntry): string {
    const tied = this.config['tie_word_embeddings'] !== false;
    return tied && entry.name === 'lm_head.weight' && this.aliases['model.embed_tokens.weight'] === 'lm_head.weight'
      ? 'model.embed_tokens.weight' : entry.name;
  }

  close(): void { this.tpk.close(); }

  private mustEntry(name: string): TpkTensorEntry {
    const e = this.entry(name);
    if (e === undefined) throw new FormatError(this.path, `no tensor ${name}`);
    return e;
  }
}

export function dequantizeTernary(t: TernaryTensor): Float32Array {
  const out = new Float32Array(t.codes.length);
  for (let r = 0; r < t.rows; r++) {
    for (let c = 0; c < t.cols; c++) {
      const i = r * t.cols + c;
      out[i] = t.codes[i]! * t.scales[tpkScaleIndex(t.scale, t.cols, r, c)]!;
    }
  }
  return out;
}

/**
 * Builds an output directory next to its final place and renames it in when `fill` succeeds, so
 * a failed export never leaves a half-written directory. An existing target needs `force`.
 */
function writeDirectoryAtomically(target: string, force: boolean, fill: (dir: string) => void): void {
  const resolved = path.resolve(target);
  const parent = path.dirname(resolved);
  if (!existsSync(parent)) throw new TritpackError(`${target}: parent directory ${parent} does not exist`);
  if (existsSync(resolved)) {
    if (!statSync(resolved).isDirectory()) throw new TritpackError(`${target}: exists and is not a directory`);
    if (!force) throw new TritpackError(`${target}: already exists (use --force to overwrite)`);
  }
  const tmp = path.join(parent, `.${path.basename(resolved)}.tmp-${process.pid}-${Date.now()}`);
  mkdirSync(tmp);
  try {
    fill(tmp);
    if (existsSync(resolved)) rmSync(resolved, { recursive: true, force: true });
    renameSync(tmp, resolved);
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
}

/**
 * A Hugging Face checkpoint directory, all or nothing: the weights (sharded like save_pretrained),
 * config.json, and the tokenizer / generation files carried in the .tpk. Returns the file names.
 */
export function writeHfCheckpoint(
  output: string, force: boolean, entries: SafetensorsEntry[], config: Record<string, unknown>, sideFiles: Record<string, string>,
): string[] {
  let files: string[] = [];
  writeDirectoryAtomically(output, force, (dir) => {
    const weights = writeShardedSafetensors(dir, entries, MAX_SHARD_BYTES, { format: 'pt' });
    writeFileSync(path.join(dir, 'config.json'), jsonText(config));
    files = [...weights.map((f) => path.basename(f)), 'config.json', ...writeSideFiles(dir, sideFiles)];
  });
  return files;
}

/** Tokenizer and generation files carried verbatim from the .tpk header (config.json is written by the caller). */
function writeSideFiles(dir: string, files: Record<string, string>): string[] {
  const written: string[] = [];
  for (const [name, text] of Object.entries(files)) {
    if (name === 'config.json' || name.includes('/') || name.includes('\\')) continue;
    writeFileSync(path.join(dir, name), text);
    written.push(name);
  }
  return written;
}

/** save_pretrained's default max_shard_size ("5GB"). */
const MAX_SHARD_BYTES = 5_000_000_000;

/** JSON as transformers' save_pretrained writes it: 2-space indent, final newline. */
export function jsonText(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}
