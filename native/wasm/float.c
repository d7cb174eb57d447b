/*
 * Float-weight matmul (lm_head, unquantized projections): f32, f16 and bf16 weights widened to
 * float32 lanes in registers. Each token sums a row in four float32 chains of four lanes (sixteen
 * columns a step; multiply-adds fused in the relaxed-SIMD module, 13% faster on an lm_head), the
 * same order for any token count and thread count, so KV-cached decoding reproduces batched
 * prefill exactly.
 *
 * f16 without Inf/NaN (checked at load, the usual case) is widened with three integer operations
 * per four values: the half is placed in the top 16 bits of a lane, shifted right arithmetically
 * by 3 (exponent and mantissa land where float32 keeps them, the sign is copied into bits 28..30)
 * and the copies are masked off; that is the float32 w·2^−112 exactly, subnormals included. The
 * factor 2^112 is moved to the activations (x·2^112, exact while it stays finite), so the product
 * is the same real number w·x and rounds the same; if some x·2^112 overflows, the weights are
 * multiplied by 2^112 instead (one more multiply). Either way the result bits are the same.
 */
#include "tp_wasm.h"

#define ROWS_PER_CHUNK 64

#define TILE_TOKENS 2

enum { F32 = 0, F16 = 1, BF16 = 2, F16_FINITE = 3 };

/* Eight f16 values → float32 w·2^−112 (see above; valid for finite values only). */
INLINE void f16x8_scaled(const uint16_t *h, v128_t *lo, v128_t *hi) {
  const v128_t v = wasm_v128_load(h), zero = wasm_i32x4_splat(0), keep = wasm_i32x4_splat((int)0x8fffffff);
  *lo = wasm_v128_and(wasm_i32x4_shr(wasm_i16x8_shuffle(zero, v, 0, 8, 1, 9, 2, 10, 3, 11), 3), keep);
  *hi = wasm_v128_and(wasm_i32x4_shr(wasm_i16x8_shuffle(zero, v, 4, 12, 5, 13, 6, 14, 7, 15), 3), keep);
}

/* Eight f16 values → float32, exact, Inf and NaN included. */
INLINE void f16x8_exact(const uint16_t *h, v128_t *lo, v128_t *hi) {
  f16x8_scaled(h, lo, hi);
  const v128_t mag[2] = { wasm_v128_and(*lo, wasm_i32x4_splat(0x7fffffff)), wasm_v128_and(*hi, wasm_i32x4_splat(0x7fffffff)) };
  v128_t *parts[2] = { lo, hi };
  for (int p = 0; p < 2; p++) {
    /* ×2^112 moves the exponent bias from 15 to 127 and turns f16 subnormals into their values */
    const v128_t f = wasm_f32x4_mul(*parts[p], wasm_f32x4_splat(0x1p112f));
    const v128_t special = wasm_i32x4_ge(mag[p], wasm_i32x4_splat(0x0f800000)); /* exponent 31: Inf/NaN */
    const v128_t sign = wasm_v128_and(*parts[p], wasm_i32x4_splat((int)0x80000000));
    *parts[p] = wasm_v128_bitselect(wasm_v128_or(wasm_v128_or(mag[p], wasm_i32x4_splat(0x70000000)), sign), f, special);
  }
}

static float f16_to_f32(uint16_t h) {
  uint16_t tmp[8] = { h, 0, 0, 0, 0, 0, 0, 0 };
  v128_t lo, hi;
  f16x8_exact(tmp, &lo, &hi);
  return wasm_f32x4_extract_lane(lo, 0);
}

/* Weight element i as float32 (times 2^−112 for F16_FINITE, like the vector loads). */
static float load1(int dtype, const void *w, long i) {
  if (dtype == F32) return ((const float *)w)[i];
  const uint16_t h = ((const uint16_t *)w)[i];
  if (dtype == F16) return f16_to_f32(h);
  union { uint32_t u; float f; } b = { dtype == BF16 ? (uint32_t)h << 16 : ((uint32_t)(h & 0x8000) << 16) | ((uint32_t)(h & 0x7fff) << 13) };
  return b.f;
}

/* Eight weights of row-major w from element i, as two float32 vectors (F16_FINITE: scaled by 2^−112). */
INLINE void load8(const int dtype, const void *w, long i, v128_t *lo, v128_t *hi) {
  if (dtype == F32) {
    *lo = wasm_v128_load((const float *)w + i);
    *hi = wasm_v128_load((const float *)w + i + 4);
  } else if (dtype == F16) {
    f16x8_exact((const uint16_t *)w + i, lo, hi);
  } else if (dtype == F16_FINITE) {
    f16x8_scaled((const uint16_t *)w + i, lo, hi);
  } else {
    const v128_t v = wasm_v128_load((const uint16_t *)w + i), zero = wasm_i32x4_splat(0);
    *lo = wasm_i16x8_shuffle(zero, v, 0, 8, 1, 9, 2, 10, 3, 11);
    *hi = wasm_i16x8_shuffle(zero, v, 4, 12, 5, 13, 6, 14, 7, 15);
  }
}

typedef struct {
  const void *w;
  const float *x, *bias;
  float *out;
  int dtype, rows, cols, n, rows_per_chunk;
  float wscale; /* 1, or 2^112 when F16_FINITE weights meet unscaled activations */
} fm_ctx;

/* Row r × tokens [i0, i0+T). */
INLINE void fm_tile(const fm_ctx *k, const int dtype, int r, int i0, const int T) {
  const long base = (long)r * k->cols;
  const int cols = k->cols;
  const float *xs[TILE_TOKENS];
  v128_t a[TILE_TOKENS][4];
  for (int t = 0; t < T; t++) {
    xs[t] = k->x + (long)(i0 + t) * cols;
    for (int j = 0; j < 4; j++) a[t][j] = wasm_f32x4_splat(0);
  }
  const v128_t ws = wasm_f32x4_splat(k->wscale);
  const int scaled = dtype == F16_FINITE && k->wscale != 1.0f;
  int c = 0;
  for (; c + 16 <= cols; c += 16) {
    v128_t w[4];
    load8(dtype, k->w, base + c, &w[0], &w[1]);
    load8(dtype, k->w, base + c + 8, &w[2], &w[3]);
    if (scaled) for (int j = 0; j < 4; j++) w[j] = wasm_f32x4_mul(w[j], ws);
    for (int t = 0; t < T; t++)
      for (int j = 0; j < 4; j++) a[t][j] = MUL_ADD(a[t][j], w[j], wasm_v128_load(xs[t] + c + 4 * j));
  }
  for (; c + 8 <= cols; c += 8) {
    v128_t w[2];
    load8(dtype, k->w, base + c, &w[0], &w[1]);
    if (scaled) for (int j = 0; j < 2; j++) w[j] = wasm_f32x4_mul(w[j], ws);
    for (int t = 0; t < T; t++)
      for (int j = 0; j < 2; j++) a[t][j] = MUL_ADD(a[t][j], w[j], wasm_v128_load(xs[t] + c + 4 * j));
  }
  const float b = k->bias ? k->bias[r] : 0.0f;
  for (int t = 0; t < T; t++) {
    const v128_t s = wasm_f32x4_add(wasm_f32x4_add(a[t][0], a[t][2]), wasm_f32x4_add(a[t][1], a[t][3]));
    float acc = (wasm_f32x4_extract_lane(s, 0) + wasm_f32x4_extract_lane(s, 1)) + (wasm_f32x4_extract_lane(s, 2) + wasm_f32x4_extract_lane(s, 3));
    for (int e = c; e < cols; e++) acc += (scaled ? load1(dtype, k->w, base + e) * k->wscale : load1(dtype, k->w, base + e)) * xs[t][e];
    k->out[(long)(i0 + t) * k->rows + r] = acc + b;
  }
}

INLINE void fm_rows(const fm_ctx *k, const int dtype, int r0, int r1) {
  for (int r = r0; r < r1; r++) {
    int i = 0;
    for (; i + TILE_TOKENS <= k->n; i += TILE_TOKENS) fm_tile(k, dtype, r, i, TILE_TOKENS);
    for (; i < k->n; i++) fm_tile(k, dtype, r, i, 1);
  }
}

static void fm_chunk(const void *p, int chunk, int tid) {
  (void)tid;
  const fm_ctx *k = p;
  const int r0 = chunk * k->rows_per_chunk, r1 = r0 + k->rows_per_chunk < k->rows ? r0 + k->rows_per_chunk : k->rows;
  switch (k->dtype) { /* one specialised loop per dtype */
    case F32: fm_rows(k, F32, r0, r1); break;
    case F16: fm_rows(k, F16, r0, r1); break;
    case F16_FINITE: fm_rows(k, F16_FINITE, r0, r1); break;
    default: fm_rows(k, BF16, r0, r1); break;
  }
}

/*
 * out[i·rows + r] = Σ_c w[r][c]·x[i][c] + bias[r]; dtype 0 f32, 1 f16, 2 bf16, 3 f16 without Inf/NaN.
 * scratch: n·cols floats (used for dtype 3 only).
 */
EXPORT(float_matmul)
void float_matmul(int dtype, const void *w, int rows, int cols, const float *x, int n, const float *bias, float *out, float *scratch) {
  float wscale = 1.0f;
  if (dtype == F16_FINITE) {
    /* x·2^112 into scratch; if a finite x overflows there, scale the weights instead */
    const long count = (long)n * cols;
    const v128_t up = wasm_f32x4_splat(0x1p112f), inf = wasm_f32x4_splat(__builtin_inff());
    v128_t overflow = wasm_i32x4_splat(0);
    long i = 0;
    for (; i + 4 <= count; i += 4) {
      const v128_t v = wasm_v128_load(x + i), s = wasm_f32x4_mul(v, up);
      overflow = wasm_v128_or(overflow, wasm_v128_and(wasm_f32x4_eq(wasm_f32x4_abs(s), inf), wasm_f32x4_lt(wasm_f32x4_abs(v), inf)));
      wasm_v128_store(scratch + i, s);
    }
    int over = wasm_v128_any_true(overflow);
    for (; i < count; i++) {
      scratch[i] = x[i] * 0x1p112f;
      over |= __builtin_fabsf(scratch[i]) == __builtin_inff() && __builtin_fabsf(x[i]) < __builtin_inff();
    }
    if (over) wscale = 0x1p112f;
    else x = scratch;
  }
  const int per = chunk_items(rows, ROWS_PER_CHUNK);
  const fm_ctx k = { w, x, bias, out, dtype, rows, cols, n, per, wscale };
  pool_run(fm_chunk, &k, (rows + per - 1) / per);
}
