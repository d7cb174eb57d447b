/*
 * Causal GQA attention over the KV cache, one (query token, head) pair per work item. Scores,
 * softmax weights (a vectorised exp) and the value sum use float32 lanes (AVX2, NEON or SIMD128
 * where available); the softmax normaliser is a double.
 * A pair's arithmetic does not depend on how many tokens share the call, so KV-cached decoding
 * reproduces batched prefill exactly.
 */
#include "tp.h"
#include <math.h>
#include <stdlib.h>

typedef struct {
  const float *q, *keys, *values;
  float *out, *scores; /* scores: `length` floats of scratch per chunk */
  int n, length, heads, kv_heads, head_dim, window, pairs_per_chunk;
} att_ctx;

#if defined(TP_X86)
__attribute__((target("avx2,fma")))
static float dot_simd(const float *a, const float *b, int d) {
  __m256 acc = _mm256_setzero_ps();
  int i = 0;
  for (; i + 8 <= d; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc);
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_movehdup_ps(h));
  float s = _mm_cvtss_f32(h);
  for (; i < d; i++) s += a[i] * b[i];
  return s;
}

/* Four keys at once: the same FMA sequence per key as dot_simd (so the same scores), but four
 * independent chains, so a 64-wide head is not bound by one chain's FMA latency. */
__attribute__((target("avx2,fma")))
static void dot4_simd(const float *a, const float *k0, size_t stride, int d, float *out) {
  __m256 acc[4] = { _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps() };
  int i = 0;
  for (; i + 8 <= d; i += 8) {
    const __m256 av = _mm256_loadu_ps(a + i);
    for (int j = 0; j < 4; j++) acc[j] = _mm256_fmadd_ps(av, _mm256_loadu_ps(k0 + j * stride + i), acc[j]);
  }
  for (int j = 0; j < 4; j++) {
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(acc[j]), _mm256_extractf128_ps(acc[j], 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    float s = _mm_cvtss_f32(h);
    for (int e = i; e < d; e++) s += a[e] * k0[j * stride + e];
    out[j] = s;
  }
}

__attribute__((target("avx2,fma")))
static void axpy_simd(float *y, float a, const float *x, int d) {
  const __m256 av = _mm256_set1_ps(a);
  int i = 0;
  for (; i + 8 <= d; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  for (; i < d; i++) y[i] += a * x[i];
}

#endif

static float dot_portable(const float *a, const float *b, int d) {
  float s = 0;
  for (int i = 0; i < d; i++) s += a[i] * b[i];
  return s;
}

static void axpy_portable(float *y, float a, const float *x, int d) {
  for (int i = 0; i < d; i++) y[i] += a * x[i];
}

/*
 * exp(x) for x ≤ 0 in eight float lanes (softmax weights exp(s − max)): x = n·ln2 + r with |r| ≤ ln2/2
 * (ln2 in two parts, so r is exact enough), e^r by a degree-6 polynomial, 2^n into the exponent.
 * Within 2 ulp of expf; below −87 (2^n no longer normal) the result is 0, where expf gives at most
 * 1.7e-38; NaN stays NaN. Every lane computes the same function, so a score's weight does not
 * depend on its position in the vector.
 */
#if defined(TP_X86)
__attribute__((target("avx2,fma")))
static __m256 exp_nonpos_avx2(__m256 x) {
  const __m256 tiny = _mm256_cmp_ps(x, _mm256_set1_ps(-87.0f), _CMP_LT_OQ);
  x = _mm256_max_ps(_mm256_set1_ps(-87.0f), x); /* second operand wins for NaN: NaN stays */
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_andnot_ps(tiny, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
}

/* scores[from..pos] ← exp(scores − max) in place; returns their sum, in eight double lanes (the
 * lanes and their order depend only on from and pos). A partial last vector goes through a padded
 * copy, so every weight comes from the same vector code. */
__attribute__((target("avx2,fma")))
static double softmax_weights_simd(float *scores, float max, int from, int pos) {
  const __m256 mv = _mm256_set1_ps(max);
  __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
  int j = from;
  for (; j + 8 <= pos + 1; j += 8) {
    const __m256 w = exp_nonpos_avx2(_mm256_sub_ps(_mm256_loadu_ps(scores + j), mv));
    _mm256_storeu_ps(scores + j, w);
    lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(w)));
    hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(w, 1)));
  }
  if (j <= pos) {
    float tail[8] = { 0 };
    for (int e = j; e <= pos; e++) tail[e - j] = scores[e];
    _mm256_storeu_ps(tail, exp_nonpos_avx2(_mm256_sub_ps(_mm256_loadu_ps(tail), mv)));
    for (int e = j; e <= pos; e++) scores[e] = tail[e - j];
    for (int e = pos + 1 - j; e < 8; e++) tail[e] = 0; /* padding lanes are not weights */
    lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm_loadu_ps(tail)));
    hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm_loadu_ps(tail + 4)));
  }
  double lanes[4];
  _mm256_storeu_pd(lanes, _mm256_add_pd(lo, hi));
  return (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
}

/*
 * The value pass, weights already computed, for a head width known at compile time: the output row
 * stays in registers across keys. Per lane the same FMAs in the same order as axpy_simd.
 */
__attribute__((target("avx2,fma"), always_inline))
static inline void values_avx2(float *o, const float *weights, const float *v0, size_t stride, int from, int pos, const int D) {
  __m256 acc[16];
  for (int e = 0; e < D / 8; e++) acc[e] = _mm256_setzero_ps();
  for (int j = from; j <= pos; j++) {
    const __m256 pv = _mm256_set1_ps(weights[j]);
    const float *v = v0 + (size_t)j * stride;
    for (int e = 0; e < D / 8; e++) acc[e] = _mm256_fmadd_ps(pv, _mm256_loadu_ps(v + 8 * e), acc[e]);
  }
  for (int e = 0; e < D / 8; e++) _mm256_storeu_ps(o + 8 * e, acc[e]);
}

__attribute__((target("avx2,fma")))
static void values64_simd(float *o, const float *weights, const float *v0, size_t stride, int from, int pos) { values_avx2(o, weights, v0, stride, from, pos, 64); }
__attribute__((target("avx2,fma")))
static void values128_simd(float *o, const float *weights, const float *v0, size_t stride, int from, int pos) { values_avx2(o, weights, v0, stride, from, pos, 128); }

#elif defined(TP_ARM64)
/* The NEON twins of the kernels above: a key's score is two 4-lane chains (8 columns a step) then a
 * scalar tail, whether it is computed alone or with three other keys. */
static float dot_simd(const float *a, const float *b, int d) {
  float32x4_t acc0 = vdupq_n_f32(0), acc1 = acc0;
  int i = 0;
  for (; i + 8 <= d; i += 8) {
    acc0 = vfmaq_f32(acc0, vld1q_f32(a + i), vld1q_f32(b + i));
    acc1 = vfmaq_f32(acc1, vld1q_f32(a + i + 4), vld1q_f32(b + i + 4));
  }
  float s = vaddvq_f32(vaddq_f32(acc0, acc1));
  for (; i < d; i++) s += a[i] * b[i];
  return s;
}

static void dot4_simd(const float *a, const float *k0, size_t stride, int d, float *out) {
  float32x4_t acc[4][2];
  for (int j = 0; j < 4; j++) acc[j][0] = acc[j][1] = vdupq_n_f32(0);
  int i = 0;
  for (; i + 8 <= d; i += 8) {
    const float32x4_t a0 = vld1q_f32(a + i), a1 = vld1q_f32(a + i + 4);
    for (int j = 0; j < 4; j++) {
      acc[j][0] = vfmaq_f32(acc[j][0], a0, vld1q_f32(k0 + j * stride + i));
      acc[j][1] = vfmaq_f32(acc[j][1], a1, vld1q_f32(k0 + j * stride + i + 4));
    }
  }
  for (int j = 0; j < 4; j++) {
    float s = vaddvq_f32(vaddq_f32(acc[j][0], acc[j][1]));
    for (int e = i; e < d; e++) s += a[e] * k0[j * stride + e];
    out[j] = s;
  }
}

static void axpy_simd(float *y, float a, const float *x, int d) {
  const float32x4_t av = vdupq_n_f32(a);
  int i = 0;
  for (; i + 4 <= d; i += 4) vst1q_f32(y + i, vfmaq_f32(vld1q_f32(y + i), av, vld1q_f32(x + i)));
  for (; i < d; i++) y[i] += a * x[i];
}

/* exp(x) for x ≤ 0 in four lanes: the same reduction, polynomial and limits as exp_nonpos_avx2
 * (FRINTN rounds n to nearest even like vroundps; FMAX keeps NaN, and NaN < −87 is false). */
static float32x4_t exp_nonpos_neon(float32x4_t x) {
  const uint32x4_t tiny = vcltq_f32(x, vdupq_n_f32(-87.0f));
  x = vmaxq_f32(vdupq_n_f32(-87.0f), x);
  const float32x4_t n = vrndnq_f32(vmulq_f32(x, vdupq_n_f32(1.44269504088896341f)));
  float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(0.693359375f));
  r = vfmsq_f32(r, n, vdupq_n_f32(-2.12194440e-4f));
  float32x4_t p = vdupq_n_f32(1.9875691500e-4f);
  p = vfmaq_f32(vdupq_n_f32(1.3981999507e-3f), p, r);
  p = vfmaq_f32(vdupq_n_f32(8.3334519073e-3f), p, r);
  p = vfmaq_f32(vdupq_n_f32(4.1665795894e-2f), p, r);
  p = vfmaq_f32(vdupq_n_f32(1.6666665459e-1f), p, r);
  p = vfmaq_f32(vdupq_n_f32(5.0000001201e-1f), p, r);
  p = vfmaq_f32(vaddq_f32(r, vdupq_n_f32(1.0f)), p, vmulq_f32(r, r));
  const int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);
  return vreinterpretq_f32_u32(vbicq_u32(vreinterpretq_u32_f32(vmulq_f32(p, vreinterpretq_f32_s32(e))), tiny));
}

/* As softmax_weights_avx2 in four float lanes and four double lanes; a partial last vector goes
 * through a padded copy. */
static double softmax_weights_simd(float *scores, float max, int from, int pos) {
  const float32x4_t mv = vdupq_n_f32(max);
  float64x2_t lo = vdupq_n_f64(0), hi = lo;
  int j = from;
  for (; j + 4 <= pos + 1; j += 4) {
    const float32x4_t w = exp_nonpos_neon(vsubq_f32(vld1q_f32(scores + j), mv));
    vst1q_f32(scores + j, w);
    lo = vaddq_f64(lo, vcvt_f64_f32(vget_low_f32(w)));
    hi = vaddq_f64(hi, vcvt_high_f64_f32(w));
  }
  if (j <= pos) {
    float tail[4] = { 0 };
    for (int e = j; e <= pos; e++) tail[e - j] = scores[e];
    vst1q_f32(tail, exp_nonpos_neon(vsubq_f32(vld1q_f32(tail), mv)));
    for (int e = j; e <= pos; e++) scores[e] = tail[e - j];
    for (int e = pos + 1 - j; e < 4; e++) tail[e] = 0; /* padding lanes are not weights */
    const float32x4_t w = vld1q_f32(tail);
    lo = vaddq_f64(lo, vcvt_f64_f32(vget_low_f32(w)));
    hi = vaddq_f64(hi, vcvt_high_f64_f32(w));
  }
  return vaddvq_f64(vaddq_f64(lo, hi));
}

/* The value pass in slabs of 64 columns (sixteen 4-lane accumulators stay in registers); per lane the
 * same FMAs in the same order as axpy_simd. */
__attribute__((always_inline))
static inline void values_neon(float *o, const float *weights, const float *v0, size_t stride, int from, int pos, const int D) {
  for (int e0 = 0; e0 < D; e0 += 64) {
    float32x4_t acc[16];
    for (int e = 0; e < 16; e++) acc[e] = vdupq_n_f32(0);
    for (int j = from; j <= pos; j++) {
      const float32x4_t pv = vdupq_n_f32(weights[j]);
      const float *v = v0 + (size_t)j * stride + e0;
      for (int e = 0; e < 16; e++) acc[e] = vfmaq_f32(acc[e], pv, vld1q_f32(v + 4 * e));
    }
    for (int e = 0; e < 16; e++) vst1q_f32(o + e0 + 4 * e, acc[e]);
  }
}

static void values64_simd(float *o, const float *weights, const float *v0, size_t stride, int from, int pos) { values_neon(o, weights, v0, stride, from, pos, 64); }
static void values128_simd(float *o, const float *weights, const float *v0, size_t stride, int from, int pos) { values_neon(o, weights, v0, stride, from, pos, 128); }

#elif defined(TP_WASM)
/* The SIMD128 twins, in the NEON kernels' shape: two 4-lane chains per key (8 columns a step) then a
 * scalar tail, alone or with three other keys. TP_WASM_MADD fuses only in the relaxed module, so the
 * plain one's scores differ from it by rounding (the same function within one module). */
static float hsum_wasm(v128_t v) {
  return (wasm_f32x4_extract_lane(v, 0) + wasm_f32x4_extract_lane(v, 1)) + (wasm_f32x4_extract_lane(v, 2) + wasm_f32x4_extract_lane(v, 3));
}

static float dot_simd(const float *a, const float *b, int d) {
  v128_t acc0 = wasm_f32x4_splat(0), acc1 = acc0;
  int i = 0;
  for (; i + 8 <= d; i += 8) {
    acc0 = TP_WASM_MADD(acc0, wasm_v128_load(a + i), wasm_v128_load(b + i));
    acc1 = TP_WASM_MADD(acc1, wasm_v128_load(a + i + 4), wasm_v128_load(b + i + 4));
  }
  float s = hsum_wasm(wasm_f32x4_add(acc0, acc1));
  for (; i < d; i++) s += a[i] * b[i];
  return s;
}

static void dot4_simd(const float *a, const float *k0, size_t stride, int d, float *out) {
  v128_t acc[4][2];
  for (int j = 0; j < 4; j++) acc[j][0] = acc[j][1] = wasm_f32x4_splat(0);
  int i = 0;
  for (; i + 8 <= d; i += 8) {
    const v128_t a0 = wasm_v128_load(a + i), a1 = wasm_v128_load(a + i + 4);
    for (int j = 0; j < 4; j++) {
      acc[j][0] = TP_WASM_MADD(acc[j][0], a0, wasm_v128_load(k0 + j * stride + i));
      acc[j][1] = TP_WASM_MADD(acc[j][1], a1, wasm_v128_load(k0 + j * stride + i + 4));
    }
  }
  for (int j = 0; j < 4; j++) {
    float s = hsum_wasm(wasm_f32x4_add(acc[j][0], acc[j][1]));
    for (int e = i; e < d; e++) s += a[e] * k0[j * stride + e];
    out[j] = s;
  }
}

static void axpy_simd(float *y, float a, const float *x, int d) {
  const v128_t av = wasm_f32x4_splat(a);
  int i = 0;
  for (; i + 4 <= d; i += 4) wasm_v128_store(y + i, TP_WASM_MADD(wasm_v128_load(y + i), av, wasm_v128_load(x + i)));
  for (; i < d; i++) y[i] += a * x[i];
}

/* exp(x) for x ≤ 0 in four lanes: the same reduction, polynomial and limits as exp_nonpos_avx2
 * (f32x4.nearest rounds n to nearest even; NaN < −87 is false; n·0.693359375 is exact, so only the
 * second reduction step and the polynomial round differently where they are not fused). r − n·c is
 * written r + n·(−c), the same value fused or not. n is an integer in [−126, 0], so n + 1.5·2^23
 * holds it in its low mantissa bits: one add and one subtract for its int32 (V8's i32x4.trunc_sat is a
 * long sequence); with pmax this made prefill 3–4 % faster, results unchanged. */
static v128_t exp_nonpos_wasm(v128_t x) {
  const v128_t tiny = wasm_f32x4_lt(x, wasm_f32x4_splat(-87.0f));
  x = wasm_f32x4_pmax(x, wasm_f32x4_splat(-87.0f)); /* x < −87 ? −87 : x, so NaN stays; one maxps in V8 */
  const v128_t n = wasm_f32x4_nearest(wasm_f32x4_mul(x, wasm_f32x4_splat(1.44269504088896341f)));
  v128_t r = TP_WASM_MADD(x, n, wasm_f32x4_splat(-0.693359375f));
  r = TP_WASM_MADD(r, n, wasm_f32x4_splat(2.12194440e-4f));
  v128_t p = wasm_f32x4_splat(1.9875691500e-4f);
  p = TP_WASM_MADD(wasm_f32x4_splat(1.3981999507e-3f), p, r);
  p = TP_WASM_MADD(wasm_f32x4_splat(8.3334519073e-3f), p, r);
  p = TP_WASM_MADD(wasm_f32x4_splat(4.1665795894e-2f), p, r);
  p = TP_WASM_MADD(wasm_f32x4_splat(1.6666665459e-1f), p, r);
  p = TP_WASM_MADD(wasm_f32x4_splat(5.0000001201e-1f), p, r);
  p = TP_WASM_MADD(wasm_f32x4_add(r, wasm_f32x4_splat(1.0f)), p, wasm_f32x4_mul(r, r));
  const v128_t e = wasm_i32x4_shl(wasm_i32x4_sub(wasm_f32x4_add(n, wasm_f32x4_splat(12582912.0f)), wasm_i32x4_splat(0x4B400000 - 127)), 23);
  return wasm_v128_andnot(wasm_f32x4_mul(p, e), tiny);
}

/* As softmax_weights_neon: four float lanes, four double lanes (lo: lanes 0–1, hi: 2–3); a partial
 * last vector goes through a padded copy. */
static double softmax_weights_simd(float *scores, float max, int from, int pos) {
  const v128_t mv = wasm_f32x4_splat(max);
  v128_t lo = wasm_f64x2_splat(0), hi = lo;
  int j = from;
  for (; j + 4 <= pos + 1; j += 4) {
    const v128_t w = exp_nonpos_wasm(wasm_f32x4_sub(wasm_v128_load(scores + j), mv));
    wasm_v128_store(scores + j, w);
    lo = wasm_f64x2_add(lo, wasm_f64x2_promote_low_f32x4(w));
    hi = wasm_f64x2_add(hi, wasm_f64x2_promote_low_f32x4(wasm_i32x4_shuffle(w, w, 2, 3, 2, 3)));
  }
  if (j <= pos) {
    float tail[4] = { 0 };
    for (int e = j; e <= pos; e++) tail[e - j] = scores[e];
    wasm_v128_store(tail, exp_nonpos_wasm(wasm_f32x4_sub(wasm_v128_load(tail), mv)));
    for (int e = j; e <= pos; e++) scores[e] = tail[e - j];
    for (int e = pos + 1 - j; e < 4; e++) tail[e] = 0; /* padding lanes are not weights */
    const v128_t w = wasm_v128_load(tail);
    lo = wasm_f64x2_add(lo, wasm_f64x2_promote_low_f32x4(w));
    hi = wasm_f64x2_add(hi, wasm_f64x2_promote_low_f32x4(wasm_i32x4_shuffle(w, w, 2, 3, 2, 3)));
  }
  const v128_t s = wasm_f64x2_add(lo, hi);
  return wasm_f64x2_extract_lane(s, 0) + wasm_f64x2_extract_lane(s, 1);
}

/* The value pass in slabs of TP_ATT_SLAB columns whose accumulators stay in registers; per lane the
 * same madds in the same order as axpy_simd. 32 columns (eight accumulators): V8 gives wasm sixteen
 * vector registers on x64, and NEON's 64-column slabs spilled there (decode and prefill 15–20 %
 * slower); 16 columns measured the same as 32. The relaxed module takes two keys a loop step (V8
 * checks for interrupts on every iteration; 2–9 % faster than one key); the plain module, whose
 * multiply and add are separate, ran 11–14 % slower so and keeps one key a step. */
#define TP_ATT_SLAB 32
__attribute__((always_inline))
static inline void values_wasm_key(v128_t *acc, float weight, const float *v) {
  const v128_t pv = wasm_f32x4_splat(weight);
  for (int e = 0; e < TP_ATT_SLAB / 4; e++) acc[e] = TP_WASM_MADD(acc[e], pv, wasm_v128_load(v + 4 * e));
}

__attribute__((always_inline))
static inline void values_wasm(float *o, const float *weights, const float *v0, size_t stride, int from, int pos, const int D) {
  for (int e0 = 0; e0 < D; e0 += TP_ATT_SLAB) {
    v128_t acc[TP_ATT_SLAB / 4];
    for (int e = 0; e < TP_ATT_SLAB / 4; e++) acc[e] = wasm_f32x4_splat(0);
    int j = from;
#ifdef __wasm_relaxed_simd__
    for (; j + 1 <= pos; j += 2) {
      const float *v = v0 + (size_t)j * stride + e0;
      values_wasm_key(acc, weights[j], v);
      values_wasm_key(acc, weights[j + 1], v + stride);
    }
#endif
    for (; j <= pos; j++) values_wasm_key(acc, weights[j], v0 + (size_t)j * stride + e0);
    for (int e = 0; e < TP_ATT_SLAB / 4; e++) wasm_v128_store(o + e0 + 4 * e, acc[e]);
  }
}

static void values64_simd(float *o, const float *weights, const float *v0, size_t stride, int from, int pos) { values_wasm(o, weights, v0, stride, from, pos, 64); }
static void values128_simd(float *o, const float *weights, const float *v0, size_t stride, int from, int pos) { values_wasm(o, weights, v0, stride, from, pos, 128); }
#endif

static void att_chunk(void *p, int chunk) {
  const att_ctx *k = p;
  const int simd = tp_has_simd(), d = k->head_dim, group = k->heads / k->kv_heads, kv_stride = k->kv_heads * d;
  const float scale = (float)(1.0 / sqrt((double)d));
  float *scores = k->scores + (size_t)chunk * k->length;
  const int total = k->n * k->heads;
  for (int pair = chunk * k->pairs_per_chunk; pair < total && pair < (chunk + 1) * k->pairs_per_chunk; pair++) {
    const int i = pair / k->heads, h = pair % k->heads;
    const int pos = k->length - k->n + i;
    const int from = k->window > 0 && pos - k->window + 1 > 0 ? pos - k->window + 1 : 0;
    const float *q = k->q + (size_t)pair * d;
    const size_t ko = (size_t)(h / group) * d;
    float max = -INFINITY;
    int j = from;
#if defined(TP_X86) || defined(TP_ARM64) || defined(TP_WASM)
    if (simd) {
      for (; j + 4 <= pos + 1; j += 4) {
        dot4_simd(q, k->keys + (size_t)j * kv_stride + ko, (size_t)kv_stride, d, scores + j);
        for (int e = j; e < j + 4; e++) { scores[e] *= scale; if (scores[e] > max) max = scores[e]; }
      }
    }
#endif
    for (; j <= pos; j++) {
      const float *key = k->keys + (size_t)j * kv_stride + ko;
#if defined(TP_X86) || defined(TP_ARM64) || defined(TP_WASM)
      const float s = (simd ? dot_simd(q, key, d) : dot_portable(q, key, d)) * scale;
#else
      const float s = dot_portable(q, key, d) * scale;
#endif
      scores[j] = s;
      if (s > max) max = s;
    }
    float *o = k->out + (size_t)pair * d;
    const float *v0 = k->values + ko;
    double sum = 0;
#if defined(TP_X86) || defined(TP_ARM64) || defined(TP_WASM)
    if (simd) {
      sum = softmax_weights_simd(scores, max, from, pos);
      if (d == 64) values64_simd(o, scores, v0, (size_t)kv_stride, from, pos);
      else if (d == 128) values128_simd(o, scores, v0, (size_t)kv_stride, from, pos);
      else {
        for (int e = 0; e < d; e++) o[e] = 0;
        for (int j = from; j <= pos; j++) axpy_simd(o, scores[j], v0 + (size_t)j * kv_stride, d);
      }
    } else
#endif
    {
      for (int e = 0; e < d; e++) o[e] = 0;
      for (int j = from; j <= pos; j++) {
        const float pj = expf(scores[j] - max);
        sum += pj;
        axpy_portable(o, pj, v0 + (size_t)j * kv_stride, d);
      }
    }
    const float inv = (float)(1.0 / sum);
    for (int e = 0; e < d; e++) o[e] *= inv;
  }
}

/* The chunks' score rows are one allocation per call (fewer than 8·threads chunks of `length` floats):
 * in the wasm module, decode and prefill ran 7–10 % faster so than with a row allocated by each chunk,
 * on 1 and 2 threads. Not for the allocator's sake (malloc + free measured 4–20 ns, and a row on the
 * chunk's stack was as slow as malloc): the code V8 makes of att_chunk differs; the cause is not
 * pinned down. */
void tp_attention(const float *q, int n, const float *keys, const float *values, int length, int heads, int kv_heads, int head_dim, int window, float *out) {
  att_ctx k = { q, keys, values, out, NULL, n, length, heads, kv_heads, head_dim, window, 1 };
  const int pairs = n * heads, threads = tp_pool_threads();
  k.pairs_per_chunk = pairs / (4 * threads) > 1 ? pairs / (4 * threads) : 1;
  const int chunks = (pairs + k.pairs_per_chunk - 1) / k.pairs_per_chunk;
  k.scores = malloc(sizeof(float) * (size_t)chunks * (size_t)length);
  tp_pool_run(att_chunk, &k, chunks);
  free(k.scores);
}
