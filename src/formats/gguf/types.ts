/**
 * GGUF v3 (llama.cpp / ggml) vocabulary shared by the reader and the writer: magic, versions,
 * value types, ggml tensor types with their block sizes, and tensor byte sizes.
 */

export const GGUF_MAGIC = 'GGUF';
export const GGUF_VERSION = 3;
export const GGUF_DEFAULT_ALIGNMENT = 32;
/** ggml's GGML_MAX_NAME is 64 including the NUL terminator. */
export const GGUF_MAX_NAME_BYTES = 63;
export const GGML_MAX_DIMS = 4;
/** GGML_QNT_VERSION, required in `general.quantization_version` when any tensor is quantized. */
export const GGML_QUANTIZATION_VERSION = 2;

export enum GgufValueType {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
}


export enum GgmlType {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9, Q2_K = 10, Q3_K = 11,
  Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15, IQ2_XXS = 16, IQ2_XS = 17, IQ3_XXS = 18, IQ1_S = 19,
  IQ4_NL = 20, IQ3_S = 21, IQ2_S = 22, IQ4_XS = 23, I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28,
  IQ1_M = 29, BF16 = 30, TQ1_0 = 34, TQ2_0 = 35, MXFP4 = 39,
}

/** Elements per block and bytes per block of every ggml type (ggml.c type_traits). */
export const GGML_TYPE_TRAITS: Readonly<Record<GgmlType, { name: string; blockSize: number; typeSize: number }>> = {
  [GgmlType.F32]: { name: 'F32', blockSize: 1, typeSize: 4 },
  [GgmlType.F16]: { name: 'F16', blockSize: 1, typeSize: 2 },
  [GgmlType.Q4_0]: { name: 'Q4_0', blockSize: 32, typeSize: 18 },
  [GgmlType.Q4_1]: { name: 'Q4_1', blockSize: 32, typeSize: 20 },
  [GgmlType.Q5_0]: { name: 'Q5_0', blockSize: 32, typeSize: 22 },
  [GgmlType.Q5_1]: { name: 'Q5_1', blockSize: 32, typeSize: 24 },
  [GgmlType.Q8_0]: { name: 'Q8_0', blockSize: 32, typeSize: 34 },
  [GgmlType.Q8_1]: { name: 'Q8_1', blockSize: 32, typeSize: 36 },
  [GgmlType.Q2_K]: { name: 'Q2_K', blockSize: 256, typeSize: 84 },
  [GgmlType.Q3_K]: { name: 'Q3_K', blockSize: 256, typeSize: 110 },
  [GgmlType.Q4_K]: { name: 'Q4_K', blockSize: 256, typeSize: 144 },
  [GgmlType.Q5_K]: { name: 'Q5_K', blockSize: 256, typeSize: 176 },
  [GgmlType.Q6_K]: { name: 'Q6_K', blockSize: 256, typeSize: 210 },
  [GgmlType.Q8_K]: { name: 'Q8_K', blockSize: 256, typeSize: 292 },
  [GgmlType.IQ2_XXS]: { name: 'IQ2_XXS', blockSize: 256, typeSize: 66 },
  [GgmlType.IQ2_XS]: { name: 'IQ2_XS', blockSize: 256, typeSize: 74 },
  [GgmlType.IQ3_XXS]: { name: 'IQ3_XXS', blockSize: 256, typeSize: 98 },
  [GgmlType.IQ1_S]: { name: 'IQ1_S', blockSize: 256, typeSize: 50 },
  [GgmlType.IQ4_NL]: { name: 'IQ4_NL', blockSize: 32, typeSize: 18 },
  [GgmlType.IQ3_S]: { name: 'IQ3_S', blockSize: 256, typeSize: 110 },
  [GgmlType.IQ2_S]: { name: 'IQ2_S', blockSize: 256, typeSize: 82 },
  [GgmlType.IQ4_XS]: { name: 'IQ4_XS', blockSize: 256, typeSize: 136 },
  [GgmlType.I8]: { name: 'I8', blockSize: 1, typeSize: 1 },
  [GgmlType.I16]: { name: 'I16', blockSize: 1, typeSize: 2 },
  [GgmlType.I32]: { name: 'I32', blockSize: 1, typeSize: 4 },
  [GgmlType.I64]: { name: 'I64', blockSize: 1, typeSize: 8 },
  [GgmlType.F64]: { name: 'F64', blockSize: 1, typeSize: 8 },
  [GgmlType.IQ1_M]: { name: 'IQ1_M', blockSize: 256, typeSize: 56 },
  [GgmlType.BF16]: { name: 'BF16', blockSize: 1, typeSize: 2 },
  [GgmlType.TQ1_0]: { name: 'TQ1_0', blockSize: 256, typeSize: 54 },
  [GgmlType.TQ2_0]: { name: 'TQ2_0', blockSize: 256, typeSize: 66 },
  [GgmlType.MXFP4]: { name: 'MXFP4', blockSize: 32, typeSize: 17 },
};

/** llama.cpp's LlamaFileType, the value of `general.file_type`. */
export const LlamaFileType = {
  ALL_F32: 0, MOSTLY_F16: 1, MOSTLY_Q8_0: 7, MOSTLY_BF16: 32, MOSTLY_TQ1_0: 36, MOSTLY_TQ2_0: 37,
} as const;

/** ggml token types (`tokenizer.ggml.token_type`). */
export const GgufTokenType = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;

export type GgufScalarType = Exclude<GgufValueType, GgufValueType.ARRAY>;
export type GgufScalar = number | bigint | boolean | string;
/** A typed KV value: the type is part of the value because llama.cpp checks it exactly. */
export type GgufValue =
  | { type: GgufScalarType; value: GgufScalar }
  | { type: GgufValueType.ARRAY; elemType: GgufScalarType; value: GgufScalar[] };

export interface GgufTensorInfo {
  name: string;
  /** ggml order: dims[0] = ne[0], the contiguous (innermost) dimension — the reverse of a PyTorch shape. */
  dims: number[];
  type: GgmlType;
  /** offset relative to the start of the data section, as stored */
  offset: number;
  /** absolute offset in the file */
  dataOffset: number;
  byteLength: number;
}

export function isGgmlType(id: number): id is GgmlType {
  return Object.prototype.hasOwnProperty.call(GGML_TYPE_TRAITS, id);
}

export function ggmlTypeName(type: GgmlType): string {
  return GGML_TYPE_TRAITS[type].name;
}

/** Bytes of a tensor of this type and ggml dims; null when ne[0] is not a whole number of blocks. */
export function ggmlTensorBytes(type: GgmlType, dims: readonly number[]): number | null {
  const { blockSize, typeSize } = GGML_TYPE_TRAITS[type];
  const ne0 = dims[0] ?? 1;
  if (ne0 % blockSize !== 0) return null;
  let bytes = (ne0 / blockSize) * typeSize;
  for (let i = 1; i < dims.length; i++) bytes *= dims[i]!;
  return bytes;
}

export function alignUp(n: number, alignment: number): number {
  return Math.ceil(n / alignment) * alignment;
}
