/**
 * What a model file holds, for `tritpack inspect`: a .tpk (header, provenance, tensor table,
 * optionally every blob re-hashed), a .safetensors file or a Hugging Face checkpoint directory.
 * Sizes are reported per tensor in bits per weight, because "1.58-bit" files that are mostly
 * 16-bit embeddings are the commonest surprise.
 */
import { closeSync, existsSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import path from 'node:path';
import { FormatError, TritpackError } from '../errors.js';
import { SafetensorsCheckpoint } from '../formats/safetensors.js';
import type { DType } from '../formats/dtype.js';
import { elementCount, isTernaryEncoding, TPK_MAGIC, TpkFile, type TpkEncoding, type TpkHeader } from '../formats/tpk.js';
import { parseCheckpointConfig } from './import-safetensors.js';

export interface InspectTensor {
  name: string;
  shape: number[];
  /** t158 / t2 for ternary tensors, else the dtype. */
  encoding: TpkEncoding;
  sourceDType?: DType;
  /** Data plus scales. */
  bytes: number;
  bitsPerWeight: number;
  stats?: Record<string, number>;
}

export interface ConfigSummary {
  architecture?: string;
  modelType?: string;
  layers?: number;
  hiddenSize?: number;
  intermediateSize?: number;
  heads?: number;
  kvHeads?: number;
  vocabSize?: number;
  tiedEmbeddings?: boolean;
}

interface Totals { tensors: number; parameters: number; bytes: number; bitsPerWeight: number }

export interface InspectReport {
  kind: 'tpk' | 'safetensors' | 'checkpoint';
  path: string;
  /** Bytes on disk: the .tpk or .safetensors file, or all weight files of a directory. */
  fileBytes: number;
  /** .tpk only: everything in the header but the tensor table and the embedded text files. */
  tpk?: Pick<TpkHeader, 'formatVersion' | 'producer' | 'createdAt' | 'source' | 'conversion'> & { files: string[]; validated: boolean };
  config?: ConfigSummary;
  tensors: InspectTensor[];
  totals: Totals & { ternary: Totals };
  /** With verify: every blob re-hashed against the header. */
  verify?: { ok: boolean; checked: number; failed: { name: string; problem: string }[] };
}

export function inspectModel(target: string, options: { verify?: boolean } = {}): InspectReport {
  if (!existsSync(target)) throw new TritpackError(`${target}: no such file or directory`);
  if (statSync(target).isDirectory()) return withoutVerify(inspectSafetensors(target, 'checkpoint', path.join(target, 'config.json')), options);
  if (hasTpkMagic(target)) return inspectTpk(target, options.verify ?? false);
  if (target.endsWith('.safetensors') || target.endsWith('.index.json')) {
    return withoutVerify(inspectSafetensors(target, 'safetensors', path.join(path.dirname(target), 'config.json')), options);
  }
  throw new FormatError(target, 'is neither a .tpk file (no TRITPACK magic) nor a .safetensors file nor a checkpoint directory');
}

/** safetensors carries no checksums: asking to verify one is a mistake worth telling. */
function withoutVerify(report: InspectReport, options: { verify?: boolean }): InspectReport {
  if (options.verify) throw new TritpackError(`${report.path}: --verify needs a .tpk file (safetensors files carry no hashes; opening them already checks their structure)`);
  return report;
}

function hasTpkMagic(file: string): boolean {
  const fd = openSync(file, 'r');
  try {
    const buf = Buffer.alloc(TPK_MAGIC.length);
    return readSync(fd, buf, 0, buf.length, 0) === buf.length && buf.toString('latin1') === TPK_MAGIC;
  } finally {
    closeSync(fd);
  }
}

function inspectTpk(file: string, verify: boolean): InspectReport {
  const tpk = TpkFile.open(file);
  try {
    const h = tpk.header;
    const tensors = h.tensors.map((t): InspectTensor => {
      const bytes = t.data.length + (t.scales?.length ?? 0);
      return {
        name: t.name, shape: t.shape, encoding: t.encoding, sourceDType: t.sourceDType, bytes,
        bitsPerWeight: bitsPer(bytes, elementCount(t.shape)), stats: t.stats,
      };
    });
    const report: InspectReport = {
      kind: 'tpk', path: file, fileBytes: statSync(file).size,
      tpk: {
        formatVersion: h.formatVersion, producer: h.producer, createdAt: h.createdAt, source: h.source,
        conversion: h.conversion, files: Object.keys(h.files), validated: h.validation !== undefined && h.validation !== null,
      },
      config: h.files['config.json'] === undefined ? undefined : summarizeConfig(parseCheckpointConfig(`${file} (config.json)`, h.files['config.json']).parsed),
      tensors,
      totals: totals(tensors),
    };
    if (verify) {
      const results = tpk.verifyAll();
      const failed = results.filter((r) => !r.ok).map((r) => ({ name: r.name, problem: r.problem ?? 'sha256 mismatch' }));
      report.verify = { ok: failed.length === 0, checked: results.length, failed };
    }
    return report;
  } finally {
    tpk.close();
  }
}

function inspectSafetensors(target: string, kind: 'safetensors' | 'checkpoint', configPath: string): InspectReport {
  const checkpoint = SafetensorsCheckpoint.open(target);
  try {
    const tensors = checkpoint.tensors.map((t): InspectTensor => ({
      name: t.name, shape: t.shape, encoding: t.dtype, bytes: t.byteLength, bitsPerWeight: bitsPer(t.byteLength, elementCount(t.shape)),
    }));
    return {
      kind, path: target,
      fileBytes: checkpoint.files.reduce((s, f) => s + statSync(f).size, 0),
      config: existsSync(configPath) ? summarizeConfig(parseCheckpointConfig(configPath, readFileSync(configPath, 'utf8')).parsed) : undefined,
      tensors,
      totals: totals(tensors),
    };
  } finally {
    checkpoint.close();
  }
}

/** The handful of numbers that identify a decoder's shape (HF Llama/BitNet names, GPT-NeoX/Falcon fallbacks). */
export function summarizeConfig(config: Record<string, unknown>): ConfigSummary {
  const num = (...keys: string[]) => {
    for (const key of keys) if (typeof config[key] === 'number') return config[key] as number;
    return undefined;
  };
  const architectures = config['architectures'];
  return {
    architecture: Array.isArray(architectures) && typeof architectures[0] === 'string' ? architectures[0] : undefined,
    modelType: typeof config['model_type'] === 'string' ? config['model_type'] : undefined,
    layers: num('num_hidden_layers', 'n_layer'),
    hiddenSize: num('hidden_size', 'n_embd'),
    intermediateSize: num('intermediate_size', 'ffn_hidden_size'),
    heads: num('num_attention_heads', 'n_head'),
    kvHeads: num('num_key_value_heads', 'num_kv_heads'),
    vocabSize: num('vocab_size'),
    tiedEmbeddings: typeof config['tie_word_embeddings'] === 'boolean' ? config['tie_word_embeddings'] : undefined,
  };
}

function bitsPer(bytes: number, count: number): number {
  return count === 0 ? 0 : (8 * bytes) / count;
}

function totals(tensors: InspectTensor[]): Totals & { ternary: Totals } {
  const sum = (ts: InspectTensor[]): Totals => {
    const parameters = ts.reduce((s, t) => s + elementCount(t.shape), 0);
    const bytes = ts.reduce((s, t) => s + t.bytes, 0);
    return { tensors: ts.length, parameters, bytes, bitsPerWeight: bitsPer(bytes, parameters) };
  };
  return { ...sum(tensors), ternary: sum(tensors.filter((t) => isTernaryEncoding(t.encoding))) };
}
