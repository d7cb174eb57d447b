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
#endif

#define TOKEN_TILE 64

static void fm_chunk(void *p, int chunk) {
  const fm_ctx *k = p;
  const int r0 = chunk * k->chunk_rows, r1 = r0 + k->chunk_rows < k->rows ? r0 + k->chunk_rows : k->rows;
  for (int t0 = 0; t0 < k->n; t0 += TOKEN_TILE) {
    const int t1 = t0 + TOKEN_TILE < k->n ? t0 + TOKEN_TILE : k->n;
    for (int r = r0; r < r1; r++) {
      const size_t base = (size_t)r * k->cols;
      const float b = k->bias ? k->bias[r] : 0.0f;
      int i = t0;
#if defined(TP_X86) || defined(TP_ARM64)
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
  fm_ctx k = { dtype, rows, cols, n, tp_has_simd(), tp_has_avx512(), 0, w, x, bias, out };
  const size_t row_bytes = (size_t)cols * (dtype == TP_F32 ? 4 : 2);
  k.chunk_rows = tp_chunk_rows(rows, row_bytes * (n < 4 ? 1 : 4));
  tp_pool_run(fm_chunk, &k, (rows + k.chunk_rows - 1) / k.chunk_rows);
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
