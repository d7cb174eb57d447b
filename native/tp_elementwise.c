/*
 * The per-token element-wise steps of the forward pass, in C because in JavaScript they cost
 * about a fifth of a TinyLlama-sized decode step. Each one repeats the reference backend's
 * arithmetic step for step (float32 roundings where it rounds, double where it keeps double), so
 * the results are bit-identical to it; only silu's exp comes from libm rather than V8.
 * Build flags keep the compiler from fusing or reordering (-ffp-contract=off, no fast-math).
 * The residual add, RoPE and RMSNorm's scaling stay plain loops: they need no reordering, and the
 * compiler vectorizes them (for wasm32 too: f32x4 loops behind an aliasing check).
 */
#include "tp.h"
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

#if defined(TP_X86)
/* The same with AVX2: max over |x| in eight lanes, vroundps as rint. Rows holding NaN or ±Inf
 * (where s·x gives NaN, which the reference maps to 0) take the portable path. */
__attribute__((target("avx2")))
static void quantize_row_simd(const float *x, int cols, int8_t *q, float *scale) {
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

#elif defined(TP_ARM64)
/* The same with NEON: max over |x| in four lanes, FRINTN (ties to even, as rint in the default
 * rounding mode), saturating narrows after the clamp. NaN or ±Inf rows take the portable path. */
static void quantize_row_simd(const float *x, int cols, int8_t *q, float *scale) {
  float32x4_t m = vdupq_n_f32(0);
  uint32x4_t bad = vdupq_n_u32(0);
  int c = 0;
  for (; c + 4 <= cols; c += 4) {
    const float32x4_t a = vabsq_f32(vld1q_f32(x + c));
    m = vmaxq_f32(m, a);
    bad = vorrq_u32(bad, vmvnq_u32(vcltq_f32(a, vdupq_n_f32(INFINITY)))); /* NaN or ±Inf */
  }
  double max = vmaxvq_f32(m);
  int has_nan = vmaxvq_u32(bad) != 0;
  for (; c < cols; c++) { const double a = fabs((double)x[c]); if (!(a < INFINITY)) has_nan = 1; else if (a > max) max = a; }
  if (has_nan) { quantize_row(x, cols, q, scale); return; }
  const double eps = (double)1e-5f;
  const float s = (float)(127.0 / (max > eps ? max : eps));
  *scale = s;
  const float32x4_t sv = vdupq_n_f32(s), lo = vdupq_n_f32(-128.0f), hi = vdupq_n_f32(127.0f);
  for (c = 0; c + 8 <= cols; c += 8) {
    const float32x4_t r0 = vrndnq_f32(vmulq_f32(vld1q_f32(x + c), sv)), r1 = vrndnq_f32(vmulq_f32(vld1q_f32(x + c + 4), sv));
    const int32x4_t i0 = vcvtq_s32_f32(vminq_f32(vmaxq_f32(r0, lo), hi)), i1 = vcvtq_s32_f32(vminq_f32(vmaxq_f32(r1, lo), hi));
    vst1_s8(q + c, vqmovn_s16(vcombine_s16(vqmovn_s32(i0), vqmovn_s32(i1))));
  }
  for (; c < cols; c++) {
    const float v = rintf(x[c] * s);
    q[c] = v < -128 ? -128 : v > 127 ? 127 : (int8_t)v;
  }
}

#elif defined(TP_WASM)
/* The same with SIMD128. |x| as int32 bits orders like the float and puts NaN above +Inf, so
 * i32x4.max_s is the reference's "NaN wins" max in one instruction (f32x4.max costs V8 several);
 * rows holding NaN or ±Inf take the portable path. Otherwise |x·s| ≤ 127 and x·s + 1.5·2^23 rounds
 * to the integer half to even (rint) in the low mantissa bits, read out by one integer subtraction. */
static void quantize_row_simd(const float *x, int cols, int8_t *q, float *scale) {
  const v128_t absmask = wasm_i32x4_splat(0x7fffffff);
  v128_t m0 = wasm_i32x4_splat(0), m1 = m0, m2 = m0, m3 = m0;
  int c = 0;
  for (; c + 16 <= cols; c += 16) {
    m0 = wasm_i32x4_max(m0, wasm_v128_and(wasm_v128_load(x + c), absmask));
    m1 = wasm_i32x4_max(m1, wasm_v128_and(wasm_v128_load(x + c + 4), absmask));
    m2 = wasm_i32x4_max(m2, wasm_v128_and(wasm_v128_load(x + c + 8), absmask));
    m3 = wasm_i32x4_max(m3, wasm_v128_and(wasm_v128_load(x + c + 12), absmask));
  }
  for (; c + 4 <= cols; c += 4) m0 = wasm_i32x4_max(m0, wasm_v128_and(wasm_v128_load(x + c), absmask));
  v128_t m = wasm_i32x4_max(wasm_i32x4_max(m0, m1), wasm_i32x4_max(m2, m3));
  m = wasm_i32x4_max(m, wasm_i32x4_shuffle(m, m, 2, 3, 0, 1));
  m = wasm_i32x4_max(m, wasm_i32x4_shuffle(m, m, 1, 0, 3, 2));
  double max = wasm_f32x4_extract_lane(m, 0);
  for (; c < cols; c++) { const double a = fabs((double)x[c]); if (a > max || a != a) max = a; }
  if (!(max < INFINITY)) { quantize_row(x, cols, q, scale); return; }
  const double eps = (double)1e-5f;
  const float s = (float)(127.0 / (max > eps ? max : eps));
  *scale = s;
  const v128_t sv = wasm_f32x4_splat(s), magic = wasm_f32x4_splat(12582912.0f);
  for (c = 0; c + 16 <= cols; c += 16) {
    v128_t v[4];
    for (int j = 0; j < 4; j++) v[j] = wasm_i32x4_sub(wasm_f32x4_add(wasm_f32x4_mul(wasm_v128_load(x + c + 4 * j), sv), magic), magic);
    wasm_v128_store(q + c, wasm_i8x16_narrow_i16x8(wasm_i16x8_narrow_i32x4(v[0], v[1]), wasm_i16x8_narrow_i32x4(v[2], v[3])));
  }
  for (; c < cols; c++) {
    const float v = rintf(x[c] * s);
    q[c] = v < -128 ? -128 : v > 127 ? 127 : (int8_t)v;
  }
}
#endif

/* Rows are independent, so a window of several tokens (prefill) spreads them over the pool; each
 * row's arithmetic is the same whichever thread runs it. */
typedef struct { const float *x, *w; int cols; double eps; int8_t *q; float *f; } rows_ctx;

static void quantize_chunk(void *p, int i) {
  const rows_ctx *k = p;
  const size_t o = (size_t)i * k->cols;
#if defined(TP_X86) || defined(TP_ARM64) || defined(TP_WASM)
  if (tp_has_simd()) quantize_row_simd(k->x + o, k->cols, k->q + o, k->f + i);
  else
#endif
  quantize_row(k->x + o, k->cols, k->q + o, k->f + i);
}

void tp_quantize(const float *x, int n, int cols, int8_t *q, float *scales) {
  rows_ctx k = { x, NULL, cols, 0, q, scales };
  tp_pool_run(quantize_chunk, &k, n);
}

/* Σ x² in the reference's order: one double add per column, each waiting on the last (~4 cycles a column). */
static double sum_squares_sequential(const float *x, int cols) {
  double sum = 0;
  for (int c = 0; c < cols; c++) sum += (double)x[c] * x[c];
  return sum;
}

#if defined(TP_X86)
/* Σ x² in sixteen double lanes (products of floats are exact in double, so an FMA rounds once, like the add). */
__attribute__((target("avx2,fma")))
static double sum_squares_simd(const float *x, int cols) {
  __m256d acc[4] = { _mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd() };
  int c = 0;
  for (; c + 16 <= cols; c += 16) {
    for (int j = 0; j < 4; j++) {
      const __m256d v = _mm256_cvtps_pd(_mm_loadu_ps(x + c + 4 * j));
      acc[j] = _mm256_fmadd_pd(v, v, acc[j]);
    }
  }
  const __m256d a = _mm256_add_pd(_mm256_add_pd(acc[0], acc[1]), _mm256_add_pd(acc[2], acc[3]));
  double lanes[4];
  _mm256_storeu_pd(lanes, a);
  double sum = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
  for (; c < cols; c++) sum += (double)x[c] * x[c];
  return sum;
}

#elif defined(TP_ARM64)
/* Σ x² in eight double lanes (four chains of two), exact products as above. */
static double sum_squares_simd(const float *x, int cols) {
  float64x2_t acc[4] = { vdupq_n_f64(0), vdupq_n_f64(0), vdupq_n_f64(0), vdupq_n_f64(0) };
  int c = 0;
  for (; c + 8 <= cols; c += 8) {
    const float32x4_t v0 = vld1q_f32(x + c), v1 = vld1q_f32(x + c + 4);
    const float64x2_t d0 = vcvt_f64_f32(vget_low_f32(v0)), d1 = vcvt_high_f64_f32(v0);
    const float64x2_t d2 = vcvt_f64_f32(vget_low_f32(v1)), d3 = vcvt_high_f64_f32(v1);
    acc[0] = vfmaq_f64(acc[0], d0, d0);
    acc[1] = vfmaq_f64(acc[1], d1, d1);
    acc[2] = vfmaq_f64(acc[2], d2, d2);
    acc[3] = vfmaq_f64(acc[3], d3, d3);
  }
  double sum = vaddvq_f64(vaddq_f64(vaddq_f64(acc[0], acc[1]), vaddq_f64(acc[2], acc[3])));
  for (; c < cols; c++) sum += (double)x[c] * x[c];
  return sum;
}

#elif defined(TP_WASM)
/* Σ x² in eight double lanes (four chains of two); the products are exact, so mul then add rounds once, as the FMAs do. */
static double sum_squares_simd(const float *x, int cols) {
  v128_t acc[4] = { wasm_f64x2_splat(0), wasm_f64x2_splat(0), wasm_f64x2_splat(0), wasm_f64x2_splat(0) };
  int c = 0;
  for (; c + 8 <= cols; c += 8) {
    for (int j = 0; j < 2; j++) {
      const v128_t v = wasm_v128_load(x + c + 4 * j);
      const v128_t lo = wasm_f64x2_promote_low_f32x4(v), hi = wasm_f64x2_promote_low_f32x4(wasm_i32x4_shuffle(v, v, 2, 3, 2, 3));
      acc[2 * j] = wasm_f64x2_add(acc[2 * j], wasm_f64x2_mul(lo, lo));
      acc[2 * j + 1] = wasm_f64x2_add(acc[2 * j + 1], wasm_f64x2_mul(hi, hi));
    }
  }
  const v128_t a = wasm_f64x2_add(wasm_f64x2_add(acc[0], acc[1]), wasm_f64x2_add(acc[2], acc[3]));
  double sum = wasm_f64x2_extract_lane(a, 0) + wasm_f64x2_extract_lane(a, 1);
  for (; c < cols; c++) sum += (double)x[c] * x[c];
  return sum;
}
#endif

/*
 * float(Σx² / cols) exactly as the reference rounds it (sequential double sum), without its serial
 * dependency chain when that is provably unnecessary. The terms are exact non-negative doubles, so
 * any summation order lands within (cols−1)·u·Σ of the exact sum (u = 2⁻⁵³), hence the reference's
 * sum lies within 2·(cols−1)·u·Σ of the lane sum; 4·cols·u·sum bounds that with room for the
 * rounding of the bounds themselves. Division and float conversion are monotonic, so when both
 * ends of that interval give the same float, the reference's sum gives it too. Otherwise (about
 * one row in 10⁵ at 5632 columns) or for non-finite sums, the sequential sum decides.
 */
static float mean_square(const float *x, int cols) {
  if (!tp_has_simd()) return (float)(sum_squares_sequential(x, cols) / cols);
#if defined(TP_X86) || defined(TP_ARM64) || defined(TP_WASM)
  const double sum = sum_squares_simd(x, cols);
  if (sum < INFINITY) {
    const double slack = 4.0 * cols * 0x1p-53 * sum;
    const float lo = (float)((sum - slack) / cols), hi = (float)((sum + slack) / cols);
    if (lo == hi) return lo;
  }
#endif
  return (float)(sum_squares_sequential(x, cols) / cols);
}

static void rmsnorm_chunk(void *p, int i) {
  const rows_ctx *k = p;
  const int cols = k->cols;
  const float *xi = k->x + (size_t)i * cols;
  float *oi = k->f + (size_t)i * cols;
  const float mean = mean_square(xi, cols);
  const float inv = (float)(1.0 / sqrt((double)(float)((double)mean + k->eps)));
  for (int c = 0; c < cols; c++) oi[c] = k->w[c] * (xi[c] * inv);
}

void tp_rmsnorm(const float *x, int n, int cols, const float *w, double eps, float *out) {
  rows_ctx k = { x, w, cols, eps, NULL, out };
  tp_pool_run(rmsnorm_chunk, &k, n);
}

#if defined(TP_X86)
/* relu²(g)·up with AVX2: maxps(g, 0) returns its second operand for NaN and for −0, which is what
 * the reference's `g > 0 ? g·g : 0` gives (0·0 = 0). */
__attribute__((target("avx2")))
static size_t relu2_simd(const float *gate, const float *up, size_t count, float *out) {
  size_t i = 0;
  for (; i + 8 <= count; i += 8) {
    const __m256 r = _mm256_max_ps(_mm256_loadu_ps(gate + i), _mm256_setzero_ps());
    _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_mul_ps(r, r), _mm256_loadu_ps(up + i)));
  }
  return i;
}

#elif defined(TP_ARM64)
/* relu²(g)·up with NEON: g kept where g > 0 and +0 elsewhere (NaN and −0 included), by a compare
 * mask rather than FMAX, which would propagate NaN. */
static size_t relu2_simd(const float *gate, const float *up, size_t count, float *out) {
  size_t i = 0;
  for (; i + 4 <= count; i += 4) {
    const float32x4_t g = vld1q_f32(gate + i);
    const float32x4_t r = vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(g), vcgtq_f32(g, vdupq_n_f32(0))));
    vst1q_f32(out + i, vmulq_f32(vmulq_f32(r, r), vld1q_f32(up + i)));
  }
  return i;
}

#elif defined(TP_WASM)
/* relu²(g)·up with SIMD128: the same compare mask as NEON (f32x4.max would propagate NaN), four vectors
 * a step: V8 checks for interrupts on every loop iteration, and one vector a step (the old wasm
 * kernel) ran 0.58 µs at 2048 columns against 0.38 here. */
static size_t relu2_simd(const float *gate, const float *up, size_t count, float *out) {
  size_t i = 0;
  for (; i + 16 <= count; i += 16) {
    for (int j = 0; j < 16; j += 4) {
      const v128_t g = wasm_v128_load(gate + i + j);
      const v128_t r = wasm_v128_and(g, wasm_f32x4_gt(g, wasm_f32x4_splat(0)));
      wasm_v128_store(out + i + j, wasm_f32x4_mul(wasm_f32x4_mul(r, r), wasm_v128_load(up + i + j)));
    }
  }
  return i;
}
#endif

void tp_gated(const float *gate, const float *up, size_t count, int relu2, float *out) {
#if defined(TP_X86) || defined(TP_ARM64) || defined(TP_WASM)
  size_t i = relu2 && tp_has_simd() ? relu2_simd(gate, up, count, out) : 0;
#else
  size_t i = 0;
#endif
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
