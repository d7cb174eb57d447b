/*
 * The per-token element-wise steps of the forward pass, in C because in JavaScript they cost
 * about a fifth of a TinyLlama-sized decode step. Each one repeats the reference backend's
 * arithmetic step for step (float32 roundings where it rounds, double where it keeps double), so
 * the results are bit-identical to it; only silu's exp comes from libm rather than V8.
 * Build flags keep the compiler from fusing or reordering (-ffp-contract=off, no fast-math).
 */
#include "tp.h"
#include <immintrin.h>
#include <math.h>

/* One token's row, portable: max |x| (NaN wins), s = 127 / max(max, eps) rounded to float, q = rint(x·s). */
static void quantize_row(const float *x, int cols, int8_t *q, float *scale) {
  const double eps = (double)1e-5f; /* the reference's fround(1e-5) */
  double max = 0;
  for (int c = 0; c < cols; c++) { const double a = fabs((double)x[c]); if (a > max || a != a) max = a; }
  const float s = (float)(127.0 / (max > eps || max != max ? max : eps));
  *scale = s;
  for (int c = 0; c < cols; c++) {
    const float v = rintf(x[c] * s); /* float32 product, then round half to even */
    q[c] = v != v ? 0 : v < -128 ? -128 : v > 127 ? 127 : (int8_t)v;
  }
}

/* The same with AVX2: max over |x| in eight lanes, vroundps as rint. Rows holding NaN or ±Inf
 * (where s·x gives NaN, which the reference maps to 0) take the portable path. */
__attribute__((target("avx2")))
static void quantize_row_avx2(const float *x, int cols, int8_t *q, float *scale) {
  const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  __m256 m = _mm256_setzero_ps(), nan = _mm256_setzero_ps();
  int c = 0;
  for (; c + 8 <= cols; c += 8) {
    const __m256 v = _mm256_loadu_ps(x + c);
    m = _mm256_max_ps(m, _mm256_and_ps(v, absmask));
    nan = _mm256_or_ps(nan, _mm256_cmp_ps(_mm256_and_ps(v, absmask), _mm256_set1_ps(INFINITY), _CMP_NLT_UQ)); /* NaN or ±Inf */
  }
  float lanes[8];
  _mm256_storeu_ps(lanes, m);
  double max = 0;
  for (int j = 0; j < 8; j++) if (lanes[j] > max) max = lanes[j];
  int has_nan = _mm256_movemask_ps(nan) != 0;
  for (; c < cols; c++) { const double a = fabs((double)x[c]); if (!(a < INFINITY)) has_nan = 1; else if (a > max) max = a; }
  if (has_nan) { quantize_row(x, cols, q, scale); return; }
  const double eps = (double)1e-5f;
  const float s = (float)(127.0 / (max > eps ? max : eps));
  *scale = s;
  const __m256 sv = _mm256_set1_ps(s), lo = _mm256_set1_ps(-128.0f), hi = _mm256_set1_ps(127.0f);
  for (c = 0; c + 8 <= cols; c += 8) {
    const __m256 r = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + c), sv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m256i i32 = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(r, lo), hi));
    const __m128i i16 = _mm_packs_epi32(_mm256_castsi256_si128(i32), _mm256_extracti128_si256(i32, 1));
    _mm_storel_epi64((__m128i *)(q + c), _mm_packs_epi16(i16, i16));
  }
  for (; c < cols; c++) {
    const float v = rintf(x[c] * s);
    q[c] = v < -128 ? -128 : v > 127 ? 127 : (int8_t)v;
  }
}

/* Rows are independent, so a window of several tokens (prefill) spreads them over the pool; each
 * row's arithmetic is the same whichever thread runs it. */
typedef struct { const float *x, *w; int cols; double eps; int8_t *q; float *f; } rows_ctx;

static void quantize_chunk(void *p, int i) {
  const rows_ctx *k = p;
  const size_t o = (size_t)i * k->cols;
  if (tp_has_avx2()) quantize_row_avx2(k->x + o, k->cols, k->q + o, k->f + i);
  else quantize_row(k->x + o, k->cols, k->q + o, k->f + i);
}

void tp_quantize(const float *x, int n, int cols, int8_t *q, float *scales) {
  rows_ctx k = { x, NULL, cols, 0, q, scales };
  tp_pool_run(quantize_chunk, &k, n);
}

static void rmsnorm_chunk(void *p, int i) {
  const rows_ctx *k = p;
  const int cols = k->cols;
  const float *xi = k->x + (size_t)i * cols;
  float *oi = k->f + (size_t)i * cols;
  double sum = 0;
  for (int c = 0; c < cols; c++) sum += (double)xi[c] * xi[c];
  const float mean = (float)(sum / cols);
  const float inv = (float)(1.0 / sqrt((double)(float)((double)mean + k->eps)));
  for (int c = 0; c < cols; c++) oi[c] = k->w[c] * (xi[c] * inv);
}

void tp_rmsnorm(const float *x, int n, int cols, const float *w, double eps, float *out) {
  rows_ctx k = { x, w, cols, eps, NULL, out };
  tp_pool_run(rmsnorm_chunk, &k, n);
}

/* relu²(g)·up with AVX2: maxps(g, 0) returns its second operand for NaN and for −0, which is what
 * the reference's `g > 0 ? g·g : 0` gives (0·0 = 0). */
__attribute__((target("avx2")))
static size_t relu2_avx2(const float *gate, const float *up, size_t count, float *out) {
  size_t i = 0;
  for (; i + 8 <= count; i += 8) {
    const __m256 r = _mm256_max_ps(_mm256_loadu_ps(gate + i), _mm256_setzero_ps());
    _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_mul_ps(r, r), _mm256_loadu_ps(up + i)));
  }
  return i;
}

void tp_gated(const float *gate, const float *up, size_t count, int relu2, float *out) {
  size_t i = relu2 && tp_has_avx2() ? relu2_avx2(gate, up, count, out) : 0;
  for (; i < count; i++) {
    const float g = gate[i];
    const float a = relu2 ? (g > 0 ? g * g : 0.0f) : (float)((double)g / (1.0 + exp(-(double)g)));
    out[i] = a * up[i];
  }
}

void tp_add(float *x, const float *y, size_t count) {
  for (size_t i = 0; i < count; i++) x[i] += y[i];
}

void tp_rope(float *x, int n, int heads, int head_dim, const float *cos, const float *sin) {
  const int half = head_dim / 2;
  for (int i = 0; i < n; i++) {
    const float *c = cos + (size_t)i * half, *s = sin + (size_t)i * half;
    for (int h = 0; h < heads; h++) {
      float *o = x + ((size_t)i * heads + h) * head_dim;
      for (int j = 0; j < half; j++) {
        const float x1 = o[j], x2 = o[j + half];
        /* float products, then one float rounding of each sum: the reference's fround(a) ∓ fround(b) stored to float32 */
        o[j] = x1 * c[j] - x2 * s[j];
        o[j + half] = x2 * c[j] + x1 * s[j];
      }
    }
  }
}
