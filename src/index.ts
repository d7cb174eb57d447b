/**
 * tritpack's library API. Every command is a thin layer over these functions, so everything the
 * CLI does can be done from code:
 *
 *   import { convertCheckpoint, loadModel, runValidation } from 'tritpack';
 */

// Errors every failure a user can cause is reported with.
export { TritpackError, FormatError, EXIT_USAGE, EXIT_FAILED_GATE } from './errors.js';

// formats: bytes only.
export {
  type DType, type FloatDType, dtypeByteSize, isDType, isFloatDType,
  f16BitsToF32, f32ToF16Bits, bf16BitsToF32, f32ToBf16Bits, toFloat32, fromFloat32,
} from './formats/dtype.js';
export {
  SafetensorsFile, SafetensorsCheckpoint, writeSafetensors, writeShardedSafetensors,
  type SafetensorsTensorInfo, type SafetensorsEntry,
} from './formats/safetensors.js';
export {
  type TernaryPacking, type TQType, packedByteLength, packTernary, unpackTernary,
  encodeTQ, decodeTQ, quantizeTQReference, dequantizeTQ, tqByteLength,
} from './formats/ternary.js';
export {
  TpkWriter, TpkFile, updateTpkHeader, TPK_FORMAT_VERSION, tpkDataLength, tpkScaleCount, isTernaryEncoding,
  type TpkHeader, type TpkTensorEntry, type TpkBlobRef, type TpkPlannedTensor, type TpkEncoding, type TpkScale,
} from './formats/tpk.js';
export { GgufFile, GgufWriter, GgmlType, GgufValueType } from './formats/gguf.js';

// converters: model-level transforms.
export {
  type ScaleGranularity, type AbsmeanFormula, type TernarizedTensor, type PackedTernarizedTensor,
  ternarizeAbsmean, ternarizeAbsmeanPacked, parseScaleGranularity,
} from './converters/ternarize.js';
export { planConversion, isLinearProjection, type TensorPlan, type PlanOptions } from './converters/plan.js';
export {
  convertCheckpoint, NOT_TERNARY_TRAINED_WARNING,
  type ConvertOptions, type ConvertEvent, type ConversionSummary, type TernaryTrainingVerdict,
} from './converters/convert.js';
export { inspectModel, type InspectReport } from './converters/inspect.js';
export { exportGguf, type GgufExportOptions, type GgufExportSummary } from './converters/export-gguf.js';
export { exportHfBitnet, packHfBitnet, unpackHfBitnet, type HfBitnetExportOptions, type HfBitnetExportSummary } from './converters/export-hf-bitnet.js';
export { exportSafetensors, type SafetensorsExportOptions, type SafetensorsExportSummary } from './converters/export-safetensors.js';
export { openTensorSource, type TensorSource, type SourceTensor, type SourceTernary } from './converters/import-source.js';

// runtime-min: the bundled minimal runtime.
export {
  loadModel, AVAILABLE_BACKENDS, LM_HEAD_PRECISIONS, normalizeConfig, SUPPORTED_MODEL_TYPES, ReferenceBackend, createSampler,
  type LoadedModel, type LoadOptions, type LmHeadPrecision, type GenerateOptions, type DecodingSession, type ModelConfig, type RuntimeTokenizer,
  type Backend, type WeightSource, type SamplingOptions,
} from './runtime-min/index.js';
export { defaultBackendName } from './runtime-min/backends/choose.js';
export { NativeBackend, loadNativeAddon, nativeUnavailableReason, type NativeBackendOptions } from './runtime-min/backends/native.js';
export { WasmBackend, loadWasmModule, wasmUnavailableReason, type WasmVariant } from './runtime-min/backends/wasm.js';

// validate: metrics, verdict, report.
export {
  validateModels, compareModels, checkThresholds, verdictOf, DEFAULT_THRESHOLDS,
  type ValidationReport, type Thresholds, type ComparisonMetrics,
} from './validate/validate.js';
export { evaluatePerplexity, evaluateTextFile, type PerplexityResult } from './validate/evaluate.js';
export { runValidation, type RunValidationOptions, type RunValidationResult, type EmbeddedValidation } from './validate/run.js';
export { renderReportMarkdown } from './validate/report.js';
export { buildTensorTable } from './validate/tensors.js';
export { planWindows, readEvalText, tokenizeText } from './validate/windows.js';
export { logSoftmax, nll, klDivergence, percentile, perplexity } from './validate/metrics.js';

// hub: pull and push over @huggingface/hub.
export { pullModel, type PullOptions, type PullResult, type PullProgress } from './hub/pull.js';
export { pushModel, type PushOptions, type PushResult, type PushProgress } from './hub/push.js';
export { resolveModelPath, resolveModel, looksLikeRepoId, type ResolveOptions, type ResolvedModel } from './hub/resolve.js';
export { renderModelCard, type ModelCardInput } from './hub/card.js';
export { hubSettings, hubCacheDir, type HubSettings } from './hub/settings.js';
