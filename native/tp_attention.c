/*
 * Causal GQA attention over the KV cache, one (query token, head) pair per work item. Scores and
 * the value sum use float32 lanes (AVX2 where available); the softmax normaliser is a double.
 * A pair's arithmetic does not depend on how many tokens share the call, so KV-cached decoding
 * reproduces batched prefill exactly.
 */
#include "tp.h"
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>

typedef struct {
  const float *q, *keys, *values;
  float *out;
  int n, length, heads, kv_heads, head_dim, window, pairs_per_chunk;
} att_ctx;

__attribute__((target("avx2,fma")))
static float dot_avx2(const float *a, const float *b, int d) {
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

/* Four keys at once: the same FMA sequence per key as dot_avx2 (so the same scores), but four
 * independent chains, so a 64-wide head is not bound by one chain's FMA latency. */
__attribute__((target("avx2,fma")))
static void dot4_avx2(const float *a, const float *k0, size_t stride, int d, float *out) {
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
static void axpy_avx2(float *y, float a, const float *x, int d) {
  const __m256 av = _mm256_set1_ps(a);
  int i = 0;
  for (; i + 8 <= d; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  for (; i < d; i++) y[i] += a * x[i];
}

static float dot_portable(const float *a, const float *b, int d) {
  float s = 0;
  for (int i = 0; i < d; i++) s += a[i] * b[i];
  return s;
}

static void axpy_portable(float *y, float a, const float *x, int d) {
  for (int i = 0; i < d; i++) y[i] += a * x[i];
}

/*
 * The value pass for a head width known at compile time: the output row stays in registers across
 * keys (through memory, each key's update waited on the previous key's store). Per lane the same
 * FMAs in the same order as axpy_avx2, so the results are unchanged.
 */
__attribute__((target("avx2,fma"), always_inline))
static inline double values_avx2(float *o, const float *scores, float max, const float *v0, size_t stride, int from, int pos, const int D) {
  __m256 acc[16];
  for (int e = 0; e < D / 8; e++) acc[e] = _mm256_setzero_ps();
  double sum = 0;
  for (int j = from; j <= pos; j++) {
    const float pj = expf(scores[j] - max);
    sum += pj;
    const __m256 pv = _mm256_set1_ps(pj);
    const float *v = v0 + (size_t)j * stride;
    for (int e = 0; e < D / 8; e++) acc[e] = _mm256_fmadd_ps(pv, _mm256_loadu_ps(v + 8 * e), acc[e]);
  }
  for (int e = 0; e < D / 8; e++) _mm256_storeu_ps(o + 8 * e, acc[e]);
  return sum;
}

__attribute__((target("avx2,fma")))
static double values64_avx2(float *o, const float *scores, float max, const float *v0, size_t stride, int from, int pos) { return values_avx2(o, scores, max, v0, stride, from, pos, 64); }
__attribute__((target("avx2,fma")))
static double values128_avx2(float *o, const float *scores, float max, const float *v0, size_t stride, int from, int pos) { return values_avx2(o, scores, max, v0, stride, from, pos, 128); }

static void att_chunk(void *p, int chunk) {
  const att_ctx *k = p;
  const int avx2 = tp_has_avx2(), d = k->head_dim, group = k->heads / k->kv_heads, kv_stride = k->kv_heads * d;
  const float scale = (float)(1.0 / sqrt((double)d));
  float *scores = malloc(sizeof(float) * (size_t)k->length);
  const int total = k->n * k->heads;
  for (int pair = chunk * k->pairs_per_chunk; pair < total && pair < (chunk + 1) * k->pairs_per_chunk; pair++) {
    const int i = pair / k->heads, h = pair % k->heads;
    const int pos = k->length - k->n + i;
    const int from = k->window > 0 && pos - k->window + 1 > 0 ? pos - k->window + 1 : 0;
    const float *q = k->q + (size_t)pair * d;
    const size_t ko = (size_t)(h / group) * d;
    float max = -INFINITY;
    int j = from;
    if (avx2) {
      for (; j + 4 <= pos + 1; j += 4) {
        dot4_avx2(q, k->keys + (size_t)j * kv_stride + ko, (size_t)kv_stride, d, scores + j);
        for (int e = j; e < j + 4; e++) { scores[e] *= scale; if (scores[e] > max) max = scores[e]; }
      }
    }
    for (; j <= pos; j++) {
      const float *key = k->keys + (size_t)j * kv_stride + ko;
      const float s = (avx2 ? dot_avx2(q, key, d) : dot_portable(q, key, d)) * scale;
      scores[j] = s;
      if (s > max) max = s;
    }
    float *o = k->out + (size_t)pair * d;
    double sum = 0;
    if (avx2 && d == 64) sum = values64_avx2(o, scores, max, k->values + ko, (size_t)kv_stride, from, pos);
    else if (avx2 && d == 128) sum = values128_avx2(o, scores, max, k->values + ko, (size_t)kv_stride, from, pos);
    else {
      for (int e = 0; e < d; e++) o[e] = 0;
      for (int j = from; j <= pos; j++) {
        const float pj = expf(scores[j] - max);
        sum += pj;
        const float *v = k->values + (size_t)j * kv_stride + ko;
        if (avx2) axpy_avx2(o, pj, v, d);
        else axpy_portable(o, pj, v, d);
      }
    }
    const float inv = (float)(1.0 / sum);
    for (int e = 0; e < d; e++) o[e] *= inv;
  }
  free(scores);
}

void tp_attention(const float *q, int n, const float *keys, const float *values, int length, int heads, int kv_heads, int head_dim, int window, float *out) {
  att_ctx k = { q, keys, values, out, n, length, heads, kv_heads, head_dim, window, 1 };
  const int pairs = n * heads, threads = tp_pool_threads();
  k.pairs_per_chunk = pairs / (4 * threads) > 1 ? pairs / (4 * threads) : 1;
  tp_pool_run(att_chunk, &k, (pairs + k.pairs_per_chunk - 1) / k.pairs_per_chunk);
}
