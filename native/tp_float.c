/*
 * Float-weight kernels (embeddings, lm_head, projections kept in f32/f16/bf16) and the streaming
 * read-bandwidth probe the benchmark uses for its roofline. Weights are read in place from the
 * caller's buffer (no copy); f16 is widened with F16C (x86) or FCVTL (AArch64 base ISA), bf16
 * with a 16-bit shift.
 */
#include "tp.h"
#include <stdlib.h>
#include <string.h>
#if !defined(TP_WASM)
#include <time.h>
#endif

float tp_f16_to_f32(uint16_t h) {
  const uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
  uint32_t bits;
  if (exp == 0x1f) bits = sign | 0x7f800000u | (man << 13);
  else if (exp != 0) bits = sign | ((exp + 112) << 23) | (man << 13);
  else if (man == 0) bits = sign;
  else { /* subnormal: normalise */
    int e = -1;
    uint32_t m = man;
    do { e++; m <<= 1; } while ((m & 0x400) == 0);
    bits = sign | ((uint32_t)(112 - e) << 23) | ((m & 0x3ff) << 13);
  }
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

static inline float load1(int dtype, const void *w, size_t i) {
  if (dtype == TP_F32) return ((const float *)w)[i];
  const uint16_t h = ((const uint16_t *)w)[i];
  if (dtype == TP_F16) return tp_f16_to_f32(h);
  const uint32_t bits = (uint32_t)h << 16;
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

#if defined(TP_X86)
__attribute__((target("avx2,fma,f16c"), always_inline))
static inline __m256 load8(int dtype, const void *w, size_t i) {
  if (dtype == TP_F32) return _mm256_loadu_ps((const float *)w + i);
  const __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)w + i));
  if (dtype == TP_F16) return _mm256_cvtph_ps(h);
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

__attribute__((target("avx2,fma,f16c"), always_inline))
static inline float hsum8(__m256 s) {
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_movehdup_ps(h));
  return _mm_cvtss_f32(h);
}

/*
 * Σ w·x of one row for N tokens (N = 1 decode, 4 prefill). Each token keeps two accumulator chains
 * (even and odd 8-column steps), so the FMA latency does not cap a single token's stream, and the
 * summation order is the same for every N: a token's result does not depend on how many tokens
 * share the call (KV-cached decoding reproduces batched prefill exactly).
 */
__attribute__((target("avx2,fma,f16c"), always_inline))
static inline void fdot_avx2(int dtype, const void *w, size_t base, const float *x, size_t xs, int cols, float *out, const int N) {
  const size_t esz = dtype == TP_F32 ? 4 : 2;
  __m256 a[4][2];
  for (int j = 0; j < N; j++) a[j][0] = a[j][1] = _mm256_setzero_ps();
  int c = 0;
  for (; c + 16 <= cols; c += 16) {
    if (N == 1) TP_PREFETCH((const char *)w + (base + c) * esz);
    const __m256 w0 = load8(dtype, w, base + c), w1 = load8(dtype, w, base + c + 8);
    for (int j = 0; j < N; j++) {
      a[j][0] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + j * xs + c), a[j][0]);
      a[j][1] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + j * xs + c + 8), a[j][1]);
    }
  }
  if (c + 8 <= cols) {
    const __m256 w0 = load8(dtype, w, base + c);
    for (int j = 0; j < N; j++) a[j][0] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + j * xs + c), a[j][0]);
    c += 8;
  }
  for (int j = 0; j < N; j++) out[j] = hsum8(_mm256_add_ps(a[j][0], a[j][1]));
  for (; c < cols; c++) {
    const float v = load1(dtype, w, base + c);
    for (int j = 0; j < N; j++) out[j] += v * x[j * xs + c];
  }
}

__attribute__((target("avx2,fma,f16c")))
static void fdot4_avx2(int dtype, const void *w, size_t base, const float *x, size_t xs, int cols, float *out) { fdot_avx2(dtype, w, base, x, xs, cols, out, 4); }
__attribute__((target("avx2,fma,f16c")))
static void fdot1_avx2(int dtype, const void *w, size_t base, const float *x, int cols, float *out) { fdot_avx2(dtype, w, base, x, 0, cols, out, 1); }

#define AVX512 "avx512f,avx512bw,avx512vl,avx2,fma,f16c"

__attribute__((target(AVX512), always_inline))
static inline __m512 load16(int dtype, const void *w, size_t i) {
  if (dtype == TP_F32) return _mm512_loadu_ps((const float *)w + i);
  const __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)w + i));
  if (dtype == TP_F16) return _mm512_cvtph_ps(h);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* The last cols % 16 elements, zero-filled. */
__attribute__((target(AVX512), always_inline))
static inline __m512 load_tail(int dtype, const void *w, size_t i, int count) {
  const __mmask16 m = (__mmask16)((1u << count) - 1);
  if (dtype == TP_F32) return _mm512_maskz_loadu_ps(m, (const float *)w + i);
  const __m256i h = _mm256_maskz_loadu_epi16(m, (const uint16_t *)w + i);
  if (dtype == TP_F16) return _mm512_cvtph_ps(h);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/*
 * AVX-512 form of fdot: four accumulator chains of 16 lanes per token (64 columns per step), so a
 * single token's stream is no longer capped by the FMA latency (two 8-lane chains held the f16
 * LM head to ~21 GB/s on one core). As in fdot_avx2 the order of the additions depends only on
 * the column, never on N, so KV-cached decoding still reproduces batched prefill exactly.
 */
__attribute__((target(AVX512), always_inline))
static inline void fdot_avx512(int dtype, const void *w, size_t base, const float *x, size_t xs, int cols, float *out, const int N) {
  const size_t esz = dtype == TP_F32 ? 4 : 2;
  __m512 a[4][4];
  for (int j = 0; j < N; j++) a[j][0] = a[j][1] = a[j][2] = a[j][3] = _mm512_setzero_ps();
  int c = 0;
  for (; c + 64 <= cols; c += 64) {
    if (N == 1) {
      for (size_t o = 0; o < 64 * esz; o += 64) TP_PREFETCH((const char *)w + (base + c) * esz + o);
    }
    const __m512 w0 = load16(dtype, w, base + c), w1 = load16(dtype, w, base + c + 16);
    const __m512 w2 = load16(dtype, w, base + c + 32), w3 = load16(dtype, w, base + c + 48);
    for (int j = 0; j < N; j++) {
      const float *xj = x + j * xs + c;
      a[j][0] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(xj), a[j][0]);
      a[j][1] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(xj + 16), a[j][1]);
      a[j][2] = _mm512_fmadd_ps(w2, _mm512_loadu_ps(xj + 32), a[j][2]);
      a[j][3] = _mm512_fmadd_ps(w3, _mm512_loadu_ps(xj + 48), a[j][3]);
    }
  }
  for (int k = 0; c + 16 <= cols; c += 16, k++) {
    const __m512 w0 = load16(dtype, w, base + c);
    for (int j = 0; j < N; j++) a[j][k] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x + j * xs + c), a[j][k]);
  }
  if (c < cols) {
    const __m512 w0 = load_tail(dtype, w, base + c, cols - c);
    const __mmask16 m = (__mmask16)((1u << (cols - c)) - 1);
    for (int j = 0; j < N; j++) a[j][3] = _mm512_fmadd_ps(w0, _mm512_maskz_loadu_ps(m, x + j * xs + c), a[j][3]);
  }
  for (int j = 0; j < N; j++) out[j] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a[j][0], a[j][1]), _mm512_add_ps(a[j][2], a[j][3])));
}

__attribute__((target(AVX512)))
static void fdot4_avx512(int dtype, const void *w, size_t base, const float *x, size_t xs, int cols, float *out) { fdot_avx512(dtype, w, base, x, xs, cols, out, 4); }
__attribute__((target(AVX512)))
static void fdot1_avx512(int dtype, const void *w, size_t base, const float *x, int cols, float *out) { fdot_avx512(dtype, w, base, x, 0, cols, out, 1); }
#endif

typedef struct {
  int dtype, rows, cols, n, simd, avx512, chunk_rows;
  const void *w;
  const float *x, *bias;
  float *out;
#if defined(TP_WASM)
  int f16_finite;    /* TP_F16_FINITE given */
  const float *x112; /* then x·2^112 (see f16x8_wasm), or 0 where some x·2^112 overflows */
#endif
} fm_ctx;

#if defined(TP_X86)
/* Σ w·x of one row for 4 tokens (x: 4 rows of cols) or for 1, with the widest kernel the CPU has. */
static void fdot4_simd(const fm_ctx *k, size_t base, const float *x, float *out) {
  if (k->avx512) fdot4_avx512(k->dtype, k->w, base, x, (size_t)k->cols, k->cols, out);
  else fdot4_avx2(k->dtype, k->w, base, x, (size_t)k->cols, k->cols, out);
}
static void fdot1_simd(const fm_ctx *k, size_t base, const float *x, float *out) {
  if (k->avx512) fdot1_avx512(k->dtype, k->w, base, x, k->cols, out);
  else fdot1_avx2(k->dtype, k->w, base, x, k->cols, out);
}

#elif defined(TP_ARM64)
static inline float32x4_t load4(int dtype, const void *w, size_t i) {
  if (dtype == TP_F32) return vld1q_f32((const float *)w + i);
  const uint16x4_t h = vld1_u16((const uint16_t *)w + i);
  if (dtype == TP_F16) return vcvt_f32_f16(vreinterpret_f16_u16(h));
  return vreinterpretq_f32_u32(vshll_n_u16(h, 16));
}

/*
 * NEON form of fdot: four accumulator chains of 4 lanes per token (16 columns per step), then 4-column
 * steps into chains 0, 1, 2, and the last cols % 4 columns one by one after the lane sum. As on x86
 * the order of the additions depends only on the column, never on N (KV-cached decoding reproduces
 * batched prefill exactly).
 */
__attribute__((always_inline))
static inline void fdot_neon(int dtype, const void *w, size_t base, const float *x, size_t xs, int cols, float *out, const int N) {
  const size_t esz = dtype == TP_F32 ? 4 : 2;
  float32x4_t a[4][4];
  for (int j = 0; j < N; j++) a[j][0] = a[j][1] = a[j][2] = a[j][3] = vdupq_n_f32(0);
  int c = 0;
  for (; c + 16 <= cols; c += 16) {
    if (N == 1) TP_PREFETCH((const char *)w + (base + c) * esz);
    const float32x4_t w0 = load4(dtype, w, base + c), w1 = load4(dtype, w, base + c + 4);
    const float32x4_t w2 = load4(dtype, w, base + c + 8), w3 = load4(dtype, w, base + c + 12);
    for (int j = 0; j < N; j++) {
      const float *xj = x + j * xs + c;
      a[j][0] = vfmaq_f32(a[j][0], w0, vld1q_f32(xj));
      a[j][1] = vfmaq_f32(a[j][1], w1, vld1q_f32(xj + 4));
      a[j][2] = vfmaq_f32(a[j][2], w2, vld1q_f32(xj + 8));
      a[j][3] = vfmaq_f32(a[j][3], w3, vld1q_f32(xj + 12));
    }
  }
  for (int q = 0; c + 4 <= cols; c += 4, q++) {
    const float32x4_t w0 = load4(dtype, w, base + c);
    for (int j = 0; j < N; j++) a[j][q] = vfmaq_f32(a[j][q], w0, vld1q_f32(x + j * xs + c));
  }
  for (int j = 0; j < N; j++) out[j] = vaddvq_f32(vaddq_f32(vaddq_f32(a[j][0], a[j][1]), vaddq_f32(a[j][2], a[j][3])));
  for (; c < cols; c++) {
    const float v = load1(dtype, w, base + c);
    for (int j = 0; j < N; j++) out[j] += v * x[j * xs + c];
  }
}

static void fdot4_simd(const fm_ctx *k, size_t base, const float *x, float *out) { fdot_neon(k->dtype, k->w, base, x, (size_t)k->cols, k->cols, out, 4); }
static void fdot1_simd(const fm_ctx *k, size_t base, const float *x, float *out) { fdot_neon(k->dtype, k->w, base, x, 0, k->cols, out, 1); }
#elif defined(TP_WASM)
/*
 * Eight f16 values → float32. The half in the top 16 bits of a lane, shifted right arithmetically by
 * 3 (exponent and mantissa land where float32 keeps them, the sign is copied into bits 28..30 and
 * masked off), is the float32 w·2^−112 exactly for finite w, subnormals included: three operations
 * per four values. For weights the caller found free of Inf and NaN (TP_F16_FINITE) the factor
 * 2^112 goes onto the activations once per call (F16_XSCALED: x·2^112, exact while it stays finite),
 * so each product is the same real number w·x and rounds the same; if some x·2^112 overflows, the
 * weights are multiplied by 2^112 instead (F16_WSCALED). Other f16 weights (F16_EXACT) also get
 * exponent 31 (Inf/NaN) rebuilt by hand, 13 more operations per eight values. Measured on the f16
 * LM head (32000 × 2048, relaxed module, one thread, decoding): F16_EXACT 3.1x and F16_WSCALED 1.25x
 * the time of F16_XSCALED (6.8 ms), and checking the exponents inside the loop instead of once per
 * weight (two operations per eight values) 1.1x: the wasm kernel is bound by its instruction count.
 */
enum { F16_XSCALED = 16, F16_WSCALED, F16_EXACT }; /* the wasm loops' f16 forms */
__attribute__((always_inline))
static inline void f16x8_wasm(const int form, const uint16_t *h, v128_t *lo, v128_t *hi) {
  const v128_t v = wasm_v128_load(h), zero = wasm_i32x4_splat(0), keep = wasm_i32x4_splat((int)0x8fffffff);
  v128_t p[2] = { wasm_v128_and(wasm_i32x4_shr(wasm_i16x8_shuffle(zero, v, 0, 8, 1, 9, 2, 10, 3, 11), 3), keep),
                  wasm_v128_and(wasm_i32x4_shr(wasm_i16x8_shuffle(zero, v, 4, 12, 5, 13, 6, 14, 7, 15), 3), keep) };
  for (int j = 0; j < 2 && form != F16_XSCALED; j++) {
    const v128_t f = wasm_f32x4_mul(p[j], wasm_f32x4_splat(0x1p112f));
    if (form == F16_EXACT) {
      const v128_t mag = wasm_v128_and(p[j], wasm_i32x4_splat(0x7fffffff));
      const v128_t special = wasm_i32x4_ge(mag, wasm_i32x4_splat(0x0f800000));
      const v128_t sign = wasm_v128_and(p[j], wasm_i32x4_splat((int)0x80000000));
      p[j] = wasm_v128_bitselect(wasm_v128_or(wasm_v128_or(mag, wasm_i32x4_splat(0x70000000)), sign), f, special);
    } else {
      p[j] = f;
    }
  }
  *lo = p[0];
  *hi = p[1];
}

/* Eight weights from element i as two float32 vectors. */
__attribute__((always_inline))
static inline void load8_wasm(const int dtype, const void *w, size_t i, v128_t *lo, v128_t *hi) {
  if (dtype == TP_F32) {
    *lo = wasm_v128_load((const float *)w + i);
    *hi = wasm_v128_load((const float *)w + i + 4);
  } else if (dtype != TP_BF16) {
    f16x8_wasm(dtype, (const uint16_t *)w + i, lo, hi);
  } else {
    const v128_t v = wasm_v128_load((const uint16_t *)w + i), zero = wasm_i32x4_splat(0);
    *lo = wasm_i16x8_shuffle(zero, v, 0, 8, 1, 9, 2, 10, 3, 11);
    *hi = wasm_i16x8_shuffle(zero, v, 4, 12, 5, 13, 6, 14, 7, 15);
  }
}

/*
 * SIMD128 form of fdot: four accumulator chains of 4 lanes per token (16 columns a step; the
 * multiply-adds fused in the relaxed module, 13% faster on an LM head with the old wasm kernel), then
 * 8-column steps into chains 0 and 1, and the last cols % 8 columns one by one after the lane sum.
 * The order of the additions depends only on the column, never on N, nor on the f16 form.
 * xv: the activations the vector steps read (x·2^112 for F16_XSCALED, else x); the column tail
 * reads x.
 */
__attribute__((always_inline))
static inline void fdot_wasm(const int dtype, const void *w, size_t base, const float *xv, const float *x, size_t xs, int cols, float *out, const int N) {
  v128_t a[4][4];
  for (int j = 0; j < N; j++) a[j][0] = a[j][1] = a[j][2] = a[j][3] = wasm_f32x4_splat(0);
  int c = 0;
  for (; c + 16 <= cols; c += 16) {
    v128_t wv[4];
    load8_wasm(dtype, w, base + c, &wv[0], &wv[1]);
    load8_wasm(dtype, w, base + c + 8, &wv[2], &wv[3]);
    for (int j = 0; j < N; j++)
      for (int q = 0; q < 4; q++) a[j][q] = TP_WASM_MADD(a[j][q], wv[q], wasm_v128_load(xv + j * xs + c + 4 * q));
  }
  if (c + 8 <= cols) {
    v128_t wv[2];
    load8_wasm(dtype, w, base + c, &wv[0], &wv[1]);
    for (int j = 0; j < N; j++)
      for (int q = 0; q < 2; q++) a[j][q] = TP_WASM_MADD(a[j][q], wv[q], wasm_v128_load(xv + j * xs + c + 4 * q));
    c += 8;
  }
  for (int j = 0; j < N; j++) {
    const v128_t s = wasm_f32x4_add(wasm_f32x4_add(a[j][0], a[j][2]), wasm_f32x4_add(a[j][1], a[j][3]));
    out[j] = (wasm_f32x4_extract_lane(s, 0) + wasm_f32x4_extract_lane(s, 1)) + (wasm_f32x4_extract_lane(s, 2) + wasm_f32x4_extract_lane(s, 3));
  }
  for (; c < cols; c++) {
    const float v = load1(dtype == TP_F32 || dtype == TP_BF16 ? dtype : TP_F16, w, base + c);
    for (int j = 0; j < N; j++) out[j] += v * x[j * xs + c];
  }
}

/* Σ w·x of one row for N = 1 or 2 tokens, the dtype's loop chosen once per row. */
__attribute__((always_inline))
static inline void fdot_wasm_any(const fm_ctx *k, size_t base, const float *x, float *out, const int N) {
  const size_t xs = N == 1 ? 0 : (size_t)k->cols;
  if (k->dtype == TP_F32) fdot_wasm(TP_F32, k->w, base, x, x, xs, k->cols, out, N);
  else if (k->dtype == TP_BF16) fdot_wasm(TP_BF16, k->w, base, x, x, xs, k->cols, out, N);
  else if (!k->f16_finite) fdot_wasm(F16_EXACT, k->w, base, x, x, xs, k->cols, out, N);
  else if (k->x112) fdot_wasm(F16_XSCALED, k->w, base, k->x112 + (x - k->x), x, xs, k->cols, out, N);
  else fdot_wasm(F16_WSCALED, k->w, base, x, x, xs, k->cols, out, N);
}

/* Four tokens run as two pairs: sixteen accumulators and the weights would not fit the 16 vector
 * registers V8 has on x86-64 (the old wasm kernel measured pairs as the best tile). */
static void fdot4_simd(const fm_ctx *k, size_t base, const float *x, float *out) {
  fdot_wasm_any(k, base, x, out, 2);
  fdot_wasm_any(k, base, x + 2 * (size_t)k->cols, out + 2, 2);
}
static void fdot1_simd(const fm_ctx *k, size_t base, const float *x, float *out) { fdot_wasm_any(k, base, x, out, 1); }
#endif

#define TOKEN_TILE 64

#if defined(TP_WASM)
/* x·2^112 in a new buffer (f16x8_wasm), or 0 where a finite x overflows there (or no memory). */
static float *x112_copy(const float *x, size_t count) {
  float *s = malloc(count * sizeof(float));
  if (!s) return 0;
  const v128_t up = wasm_f32x4_splat(0x1p112f), inf = wasm_f32x4_splat(__builtin_inff());
  v128_t over = wasm_i32x4_splat(0);
  size_t i = 0;
  for (; i + 4 <= count; i += 4) {
    const v128_t v = wasm_v128_load(x + i), u = wasm_f32x4_mul(v, up);
    over = wasm_v128_or(over, wasm_v128_and(wasm_f32x4_eq(wasm_f32x4_abs(u), inf), wasm_f32x4_lt(wasm_f32x4_abs(v), inf)));
    wasm_v128_store(s + i, u);
  }
  int overflow = wasm_v128_any_true(over);
  for (; i < count; i++) {
    s[i] = x[i] * 0x1p112f;
    overflow |= __builtin_fabsf(s[i]) == __builtin_inff() && __builtin_fabsf(x[i]) < __builtin_inff();
  }
  if (overflow) { free(s); return 0; }
  return s;
}
#endif

static void fm_chunk(void *p, int chunk) {
  const fm_ctx *k = p;
  const int r0 = chunk * k->chunk_rows, r1 = r0 + k->chunk_rows < k->rows ? r0 + k->chunk_rows : k->rows;
  for (int t0 = 0; t0 < k->n; t0 += TOKEN_TILE) {
    const int t1 = t0 + TOKEN_TILE < k->n ? t0 + TOKEN_TILE : k->n;
    for (int r = r0; r < r1; r++) {
      const size_t base = (size_t)r * k->cols;
      const float b = k->bias ? k->bias[r] : 0.0f;
      int i = t0;
#if defined(TP_X86) || defined(TP_ARM64) || defined(TP_WASM)
      if (k->simd) {
        for (; i + 4 <= t1; i += 4) {
          float d[4];
          fdot4_simd(k, base, k->x + (size_t)i * k->cols, d);
          for (int j = 0; j < 4; j++) k->out[(size_t)(i + j) * k->rows + r] = d[j] + b;
        }
        for (; i < t1; i++) {
          float d;
          fdot1_simd(k, base, k->x + (size_t)i * k->cols, &d);
          k->out[(size_t)i * k->rows + r] = d + b;
        }
      } else
#endif
      {
        for (; i < t1; i++) {
          const float *x = k->x + (size_t)i * k->cols;
          double s = 0;
          for (int c = 0; c < k->cols; c++) s += (double)load1(k->dtype, k->w, base + c) * x[c];
          k->out[(size_t)i * k->rows + r] = (float)(s + b);
        }
      }
    }
  }
}

void tp_float_matmul(int dtype, const void *w, int rows, int cols, const float *x, int n, const float *bias, float *out) {
  const int f16_finite = dtype == TP_F16_FINITE;
  if (f16_finite) dtype = TP_F16;
  fm_ctx k = { dtype, rows, cols, n, tp_has_simd(), tp_has_avx512(), 0, w, x, bias, out };
  const size_t row_bytes = (size_t)cols * (dtype == TP_F32 ? 4 : 2);
  k.chunk_rows = tp_chunk_rows(rows, row_bytes * (n < 4 ? 1 : 4));
#if defined(TP_WASM)
  float *x112 = f16_finite ? x112_copy(x, (size_t)n * cols) : 0;
  k.f16_finite = f16_finite;
  k.x112 = x112;
#else
  (void)f16_finite;
#endif
  tp_pool_run(fm_chunk, &k, (rows + k.chunk_rows - 1) / k.chunk_rows);
#if defined(TP_WASM)
  free(x112);
#endif
}

/* ---------------------------------------------------------------------------------------------- */
/* read bandwidth */
#if !defined(TP_WASM)

#define BW_CHUNK (1 << 20)

typedef struct { const uint8_t *buf; size_t bytes; uint64_t sums[1024]; } bw_ctx;

#if defined(TP_X86)
__attribute__((target("avx2")))
static uint64_t stream_simd(const uint8_t *p, size_t len) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i + 128 <= len; i += 128) {
    a0 = _mm256_add_epi64(a0, _mm256_load_si256((const __m256i *)(p + i)));
    a1 = _mm256_add_epi64(a1, _mm256_load_si256((const __m256i *)(p + i + 32)));
    a2 = _mm256_add_epi64(a2, _mm256_load_si256((const __m256i *)(p + i + 64)));
    a3 = _mm256_add_epi64(a3, _mm256_load_si256((const __m256i *)(p + i + 96)));
  }
  __m256i s = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
  uint64_t lanes[4];
  _mm256_storeu_si256((__m256i *)lanes, s);
  return lanes[0] + lanes[1] + lanes[2] + lanes[3];
}
#elif defined(TP_ARM64)
static uint64_t stream_simd(const uint8_t *p, size_t len) {
  uint64x2_t a0 = vdupq_n_u64(0), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i + 64 <= len; i += 64) {
    a0 = vaddq_u64(a0, vld1q_u64((const uint64_t *)(p + i)));
    a1 = vaddq_u64(a1, vld1q_u64((const uint64_t *)(p + i + 16)));
    a2 = vaddq_u64(a2, vld1q_u64((const uint64_t *)(p + i + 32)));
    a3 = vaddq_u64(a3, vld1q_u64((const uint64_t *)(p + i + 48)));
  }
  return vaddvq_u64(vaddq_u64(vaddq_u64(a0, a1), vaddq_u64(a2, a3)));
}
#endif

static void bw_chunk(void *p, int chunk) {
  bw_ctx *k = p;
  const uint8_t *q = k->buf + (size_t)chunk * BW_CHUNK;
  uint64_t s = 0;
#if defined(TP_X86) || defined(TP_ARM64)
  if (tp_has_simd()) s = stream_simd(q, BW_CHUNK);
  else
#endif
  for (size_t i = 0; i < BW_CHUNK; i += 8) { uint64_t v; memcpy(&v, q + i, 8); s += v; }
  k->sums[chunk & 1023] += s;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

double tp_read_bandwidth(size_t bytes, int reps) {
  bytes = (bytes + BW_CHUNK - 1) / BW_CHUNK * BW_CHUNK;
  bw_ctx *k = calloc(1, sizeof(bw_ctx));
  uint8_t *buf = aligned_alloc(64, bytes);
  if (!k || !buf) { free(k); free(buf); return 0; }
  memset(buf, 1, bytes); /* fault every page in before timing */
  k->buf = buf;
  k->bytes = bytes;
  double best = 0;
  for (int r = 0; r < reps; r++) {
    const double t = now_s();
    tp_pool_run(bw_chunk, k, (int)(bytes / BW_CHUNK));
    const double gbs = bytes / (now_s() - t) / 1e9;
    if (gbs > best) best = gbs;
  }
  volatile uint64_t sink = k->sums[0];
  (void)sink;
  free(buf);
  free(k);
  return best;
}
#endif
