/*
 * tritpack native kernels: shared declarations.
 *
 * Ternary compute layout ("i2x128"): each row is padded to a multiple of 128 columns and stored as
 * 32-byte blocks; byte j of block b holds the codes c = t + 1 of columns b·128 + k·32 + j at bits
 * 2k..2k+1 (k = 0..3). One 32-byte load and three shifts give four runs of 32 codes whose columns
 * are contiguous, so each run meets 32 contiguous int8 activations in one `maddubs`. Padding
 * columns hold code 0, which contributes nothing whatever the activation.
 */
#ifndef TP_H
#define TP_H
#include <stddef.h>
#include <stdint.h>

/* Storage of per-calling-thread state (scratch kept between calls): the addon may be loaded by several
 * JS threads at once; the wasm module is called from one thread only (its workers run chunks, never
 * entry points), so static storage serves there and no per-worker TLS has to be set up. */
#if defined(__wasm__)
#define TP_CALLER_LOCAL static
#else
#define TP_CALLER_LOCAL static _Thread_local
#endif

#define TP_BLOCK_COLS 128
#define TP_BLOCK_BYTES 32

/*
 * Weight streams are prefetched 8 KiB ahead into L2 (T2 hint), not into L1: prefetches to L1 hold
 * the core's few L1 miss buffers, which capped a streaming matvec at ~12 GB/s per core; into L2
 * the same kernel streams at ~20 GB/s on one core and near the DRAM limit on two (190 MB of codes).
 */
#define TP_PREFETCH_AHEAD 8192
#if defined(__x86_64__) || defined(__i386__)
#define TP_X86 1
#include <immintrin.h>
#define TP_PREFETCH(p) _mm_prefetch((const char *)(p) + TP_PREFETCH_AHEAD, _MM_HINT_T2)
#elif defined(__aarch64__)
#define TP_ARM64 1
#include <arm_neon.h>
/* PRFM PLDL2KEEP (read, locality 2 = L2 on GCC and clang for AArch64), the same L2 target as on x86. */
#define TP_PREFETCH(p) __builtin_prefetch((const char *)(p) + TP_PREFETCH_AHEAD, 0, 2)
#elif defined(__wasm_simd128__)
/* The WebAssembly module (native/wasm/build.sh): SIMD128, or relaxed SIMD where __wasm_relaxed_simd__
 * is defined, fixed when the module is built; wasm has no prefetch. */
#define TP_WASM 1
#include <wasm_simd128.h>
#define TP_PREFETCH(p) ((void)(p))
/* a + w·x in float32 lanes: fused where relaxed SIMD offers it (one rounding; the same choice for
 * every call of one module), a multiply and an add otherwise. */
#ifdef __wasm_relaxed_simd__
#define TP_WASM_MADD(a, w, x) __builtin_wasm_relaxed_madd_f32x4(w, x, a)
#else
#define TP_WASM_MADD(a, w, x) wasm_f32x4_add(a, wasm_f32x4_mul(w, x))
#endif
#else
#define TP_PREFETCH(p) ((void)(p))
#endif

static inline int tp_row_bytes(int cols) { return (cols + TP_BLOCK_COLS - 1) / TP_BLOCK_COLS * TP_BLOCK_BYTES; }

/* ---- thread pool (tp_pool.c) ---- */
typedef void (*tp_task_fn)(void *ctx, int chunk);
int tp_pool_set_threads(int threads); /* total participants, calling thread included; returns the count in effect */
void tp_pool_init(void);             /* one per online CPU, unless threads were set already (addon loaded again by a worker) */
int tp_pool_threads(void);
void tp_pool_run(tp_task_fn fn, void *ctx, int chunks);
/* Rows per chunk so that chunks stay small (a busy core does not stall the others) yet not tiny. */
int tp_chunk_rows(int rows, size_t row_bytes);

/* ---- CPU features ---- */
int tp_has_avx2(void);
int tp_has_avx512(void);     /* AVX-512 F/BW/VL, and not forced portable */
int tp_has_avx512vnni(void); /* the same and VNNI */
int tp_has_neon(void);       /* AArch64 Advanced SIMD (base ISA), and not forced portable */
int tp_has_dotprod(void);    /* the same and SDOT (Armv8.2 dotprod, HWCAP_ASIMDDP) */
/* The SIMD baseline every kernel file has a path for: AVX2/FMA/F16C on x86, NEON on AArch64. */
static inline int tp_has_simd(void) {
#if defined(TP_X86)
  return tp_has_avx2();
#elif defined(TP_ARM64)
  return tp_has_neon();
#elif defined(TP_WASM)
  return 1;
#else
  return 0;
#endif
}

/* ---- ternary weights (tp_ternary.c) ---- */
typedef struct {
  const uint8_t *codes; /* rows × row_bytes, compute layout */
  int rows, cols, row_bytes;
  const float *scales;
  int scale_mode; /* 0 tensor, 1 channel, 2 group */
  int group_size; /* columns per scale (cols unless scale_mode == 2) */
} tp_ternary;

/* Repack rows [row0, row0+nrows) of a tritpack t2 (packing 0) or t158 (packing 1) tensor into out
 * (every byte written, padding included), on the pool's threads; returns the flat index of the first
 * invalid t2 code (3) in those rows, whatever the thread count, or -1. */
long long tp_repack(int packing, const uint8_t *packed, size_t packed_len, int row0, int nrows, int cols, uint8_t *out);
/* out[i·rows + r] = (Σ_g (Σ_c t·q exact) · scale_g) / sx[i] + bias[r], combined in double exactly as the
 * reference backend does, so results are bit-identical to it. */
void tp_ternary_q8(const tp_ternary *w, const int8_t *q, int n, const float *sx, const float *bias, float *out);
/* Float activations on ternary weights: out[i·rows + r] = Σ_g scale_g · Σ_c t·x + bias[r]. */
void tp_ternary_f32(const tp_ternary *w, const float *x, int n, const float *bias, float *out);
/* Decode row r to floats t·scale. */
void tp_ternary_row(const tp_ternary *w, int r, float *out);

/* ---- int8 weights (tp_int8.c): the opt-in int8 LM head ---- */
#define TP_INT8_ALIGN 64           /* columns per padded row: one 64-byte load, no column tails */
#define TP_INT8_MAX_COLS 131072    /* |Σ w·x| ≤ 127·128·cols stays below 2^31 */
typedef struct {
  const int8_t *q;     /* rows × stride, row r's columns [cols, stride) zero */
  int rows, cols, stride;
  const float *scales; /* s_r per row: W[r][c] ≈ q / s_r */
} tp_int8;
/* out[i·rows + r] = (float)((double)(Σ_c q·x exact) / ((double)s_r · s_x[i]) + bias[r]), bit-identical to the reference. */
void tp_int8_q8(const tp_int8 *w, const int8_t *x, int n, const float *sx, const float *bias, float *out);

/* ---- float weights (tp_float.c) ---- */
/* TP_F16_FINITE: f16 weights the caller has found free of Inf and NaN; the same results as TP_F16,
 * which only the wasm kernel computes in fewer steps (tp_float.c, f16x8_wasm). */
enum { TP_F32 = 0, TP_F16 = 1, TP_BF16 = 2, TP_F16_FINITE = 3 };
void tp_float_matmul(int dtype, const void *w, int rows, int cols, const float *x, int n, const float *bias, float *out);
/* Streaming read of `bytes` with the pool's threads; returns GB/s (best of `reps`). Not in the wasm
 * module (it has no clock; the benchmark's roofline uses the addon's reading). */
double tp_read_bandwidth(size_t bytes, int reps);

float tp_f16_to_f32(uint16_t h);

/* ---- attention (tp_attention.c) ---- */
/* n new queries [n × heads × head_dim] at positions length−n … length−1; keys/values [length × kv_heads × head_dim];
 * window ≤ 0: the whole causal prefix. */
void tp_attention(const float *q, int n, const float *keys, const float *values, int length, int heads, int kv_heads, int head_dim, int window, float *out);

/* ---- element-wise steps (tp_elementwise.c), bit-identical to the reference backend ---- */
void tp_quantize(const float *x, int n, int cols, int8_t *q, float *scales);
void tp_rmsnorm(const float *x, int n, int cols, const float *w, double eps, float *out);
void tp_gated(const float *gate, const float *up, size_t count, int relu2, float *out);
void tp_add(float *x, const float *y, size_t count);
/* Rotate-half RoPE in place on x [n × heads × head_dim]; cos/sin [n × head_dim/2]. */
void tp_rope(float *x, int n, int heads, int head_dim, const float *cos, const float *sin);
#endif
