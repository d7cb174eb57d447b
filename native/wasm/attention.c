/*
 * Causal GQA attention over the KV cache, one (query token, head) pair per work item, spread over
 * the pool. Float32 scores and value sums, a double softmax normaliser, as native/tp_attention.c.
 * A pair's arithmetic depends only on its key range, never on the token or thread count, so
 * KV-cached decoding reproduces batched prefill exactly.
 */
#include "tp_wasm.h"

/* e^x for the softmax (x ≤ 0 here): 2^k · e^r with |r| ≤ ln2/2, degree-6 polynomial, ~1 ulp. */
static float exp_f32(float x) {
  if (x < -87.0f) return 0.0f;
  const float k = __builtin_rintf(x * 1.44269504f);
  const float r = (x - k * 0.693145752f) - k * 1.42860677e-6f; /* ln2 split in two for an exact k·ln2 */
  const float p = 1.0f + r * (1.0f + r * (0.5f + r * (0.166666672f + r * (0.0416666679f + r * (0.00833333377f + r * 0.00138888892f)))));
  union { uint32_t u; float f; } s = { (uint32_t)((int)k + 127) << 23 };
  return p * s.f;
}

static float dot_f32(const float *a, const float *b, int d) {
  v128_t acc = wasm_f32x4_splat(0);
  int i = 0;
  for (; i + 4 <= d; i += 4) acc = wasm_f32x4_add(acc, wasm_f32x4_mul(wasm_v128_load(a + i), wasm_v128_load(b + i)));
  float s = (wasm_f32x4_extract_lane(acc, 0) + wasm_f32x4_extract_lane(acc, 1)) + (wasm_f32x4_extract_lane(acc, 2) + wasm_f32x4_extract_lane(acc, 3));
  for (; i < d; i++) s += a[i] * b[i];
  return s;
}

typedef struct {
  const float *q, *keys, *values;
  float *scores, *out;
  int n, length, heads, kv_heads, d, window;
} att_ctx;

static void att_pair(const void *p, int pair, int tid) {
  const att_ctx *k = p;
  const int group = k->heads / k->kv_heads, kv_stride = k->kv_heads * k->d, d = k->d;
  const float scale = 1.0f / __builtin_sqrtf((float)d);
  const int i = pair / k->heads, h = pair % k->heads, pos = k->length - k->n + i;
  const int from = k->window > 0 && pos - k->window + 1 > 0 ? pos - k->window + 1 : 0;
  const float *qv = k->q + (long)pair * d;
  const long ko = (long)(h / group) * d;
  float *scores = k->scores + (long)tid * k->length;
  float max = -__builtin_inff();
  for (int j = from; j <= pos; j++) {
    const float s = dot_f32(qv, k->keys + (long)j * kv_stride + ko, d) * scale;
    scores[j] = s;
    if (s > max) max = s;
  }
  float *o = k->out + (long)pair * d;
  for (int e = 0; e < d; e++) o[e] = 0;
  double sum = 0;
  for (int j = from; j <= pos; j++) {
    const float w = exp_f32(scores[j] - max);
    sum += w;
    const float *v = k->values + (long)j * kv_stride + ko;
    const v128_t pv = wasm_f32x4_splat(w);
    int e = 0;
    for (; e + 4 <= d; e += 4) wasm_v128_store(o + e, wasm_f32x4_add(wasm_v128_load(o + e), wasm_f32x4_mul(pv, wasm_v128_load(v + e))));
    for (; e < d; e++) o[e] += w * v[e];
  }
  const float inv = (float)(1.0 / sum);
  for (int e = 0; e < d; e++) o[e] *= inv;
}

/*
 * n queries [n × heads × d] at positions length−n … length−1 over keys and values [length × kv_heads × d];
 * window ≤ 0 means the whole prefix. scores: `length` floats of scratch per thread (thread id × length).
 */
EXPORT(attention)
void attention(const float *q, int n, const float *keys, const float *values, int length, int heads, int kv_heads, int d, int window, float *scores, float *out) {
  const att_ctx k = { q, keys, values, scores, out, n, length, heads, kv_heads, d, window };
  pool_run(att_pair, &k, n * heads);
}
