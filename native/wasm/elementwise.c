/*
 * The per-token element-wise steps of the forward pass, bit-identical to the reference backend
 * (src/runtime-min/reference-backend.ts), as native/tp_elementwise.c is: float32 roundings where it
 * rounds, double where it keeps double. Build flags keep clang from fusing or reordering
 * (-ffp-contract=off, no fast-math), and wasm has no FMA in simd128. SiLU stays in JavaScript
 * (its exp must be V8's Math.exp).
 */
#include "tp_wasm.h"

typedef struct { const float *x, *w; int cols; double eps; int8_t *q; float *f; } rows_ctx;

/* One token: s = 127 / max(max|x|, 1e-5) rounded to float (NaN wins), q = rint(x·s) clamped, NaN → 0. */
static void quantize_row(const void *p, int i, int tid) {
  (void)tid;
  const rows_ctx *k = p;
  const int cols = k->cols;
  const float *x = k->x + (long)i * cols;
  int8_t *q = k->q + (long)i * cols;
  v128_t m = wasm_f32x4_splat(0); /* f32x4.max propagates NaN, like Math.max */
  int c = 0;
  for (; c + 4 <= cols; c += 4) m = wasm_f32x4_max(m, wasm_f32x4_abs(wasm_v128_load(x + c)));
  m = wasm_f32x4_max(m, wasm_i32x4_shuffle(m, m, 2, 3, 0, 1));
  m = wasm_f32x4_max(m, wasm_i32x4_shuffle(m, m, 1, 0, 3, 2));
  float max = wasm_f32x4_extract_lane(m, 0);
  for (; c < cols; c++) {
    const float a = __builtin_fabsf(x[c]);
    if (a > max || a != a) max = a;
  }
  const double eps = (double)1e-5f; /* the reference's fround(1e-5) */
  const float s = (float)(127.0 / (max > eps || max != max ? (double)max : eps));
  k->f[i] = s;
  /* float32 product, round half to even, then trunc_sat (NaN → 0) and two saturating narrows (clamp to int8) */
  const v128_t sv = wasm_f32x4_splat(s);
  c = 0;
  for (; c + 16 <= cols; c += 16) {
    v128_t v[4];
    for (int j = 0; j < 4; j++) v[j] = wasm_i32x4_trunc_sat_f32x4(wasm_f32x4_nearest(wasm_f32x4_mul(wasm_v128_load(x + c + 4 * j), sv)));
    wasm_v128_store(q + c, wasm_i8x16_narrow_i16x8(wasm_i16x8_narrow_i32x4(v[0], v[1]), wasm_i16x8_narrow_i32x4(v[2], v[3])));
  }
  for (; c < cols; c++) {
    const float v = __builtin_rintf(x[c] * s);
    q[c] = v != v ? 0 : v < -128 ? -128 : v > 127 ? 127 : (int8_t)v;
  }
}

EXPORT(quantize)
void quantize(const float *x, int n, int cols, int8_t *q, float *scales) {
  const rows_ctx k = { x, 0, cols, 0, q, scales };
  pool_run(quantize_row, &k, n);
}

/* Σ x² in the reference's order: one double add per column. */
static double sum_squares_sequential(const float *x, int cols) {
  double sum = 0;
  for (int c = 0; c < cols; c++) sum += (double)x[c] * x[c];
  return sum;
}

/* Σ x² in eight double lanes (products of floats are exact in double). */
static double sum_squares_lanes(const float *x, int cols) {
  v128_t acc[4] = { wasm_f64x2_splat(0), wasm_f64x2_splat(0), wasm_f64x2_splat(0), wasm_f64x2_splat(0) };
  int c = 0;
  for (; c + 8 <= cols; c += 8) {
    for (int j = 0; j < 2; j++) {
      const v128_t v = wasm_v128_load(x + c + 4 * j);
      const v128_t lo = wasm_f64x2_promote_low_f32x4(v), hi = wasm_f64x2_promote_low_f32x4(wasm_i32x4_shuffle(v, v, 2, 3, 0, 1));
      acc[2 * j] = wasm_f64x2_add(acc[2 * j], wasm_f64x2_mul(lo, lo));
      acc[2 * j + 1] = wasm_f64x2_add(acc[2 * j + 1], wasm_f64x2_mul(hi, hi));
    }
  }
  const v128_t a = wasm_f64x2_add(wasm_f64x2_add(acc[0], acc[1]), wasm_f64x2_add(acc[2], acc[3]));
  double sum = wasm_f64x2_extract_lane(a, 0) + wasm_f64x2_extract_lane(a, 1);
  for (; c < cols; c++) sum += (double)x[c] * x[c];
  return sum;
}

/*
 * float(Σx² / cols) exactly as the reference rounds it (sequential double sum): both sums lie within
 * (cols−1)·2^−53·Σ of the exact one (exact non-negative terms), so when both ends of that interval
 * (widened to 4·cols·2^−53·Σ for the bounds' own rounding) give the same float, the reference's sum
 * gives it too; otherwise, or for a non-finite sum, the sequential sum decides. (native/README.md)
 */
static float mean_square(const float *x, int cols) {
  const double sum = sum_squares_lanes(x, cols);
  if (sum < __builtin_inf()) {
    const double slack = 4.0 * cols * 0x1p-53 * sum;
    const float lo = (float)((sum - slack) / cols), hi = (float)((sum + slack) / cols);
    if (lo == hi) return lo;
  }
  return (float)(sum_squares_sequential(x, cols) / cols);
}

static void rmsnorm_row(const void *p, int i, int tid) {
  (void)tid;
  const rows_ctx *k = p;
  const int cols = k->cols;
  const float *x = k->x + (long)i * cols;
  float *o = k->f + (long)i * cols;
  const float inv = (float)(1.0 / __builtin_sqrt((double)(float)((double)mean_square(x, cols) + k->eps)));
  const v128_t iv = wasm_f32x4_splat(inv);
  int c = 0;
  for (; c + 4 <= cols; c += 4) wasm_v128_store(o + c, wasm_f32x4_mul(wasm_v128_load(k->w + c), wasm_f32x4_mul(wasm_v128_load(x + c), iv)));
  for (; c < cols; c++) o[c] = k->w[c] * (x[c] * inv);
}

EXPORT(rmsnorm)
void rmsnorm(const float *x, int n, int cols, const float *w, double eps, float *out) {
  const rows_ctx k = { x, w, cols, eps, 0, out };
  pool_run(rmsnorm_row, &k, n);
}

/* relu²(g)·up: g > 0 ? g·g : +0 (NaN and −0 give +0, as the reference's comparison does), times up. */
EXPORT(relu2_gate)
void relu2_gate(const float *gate, const float *up, int count, float *out) {
  int i = 0;
  for (; i + 4 <= count; i += 4) {
    const v128_t g = wasm_v128_load(gate + i);
    const v128_t r = wasm_v128_and(g, wasm_f32x4_gt(g, wasm_f32x4_splat(0)));
    wasm_v128_store(out + i, wasm_f32x4_mul(wasm_f32x4_mul(r, r), wasm_v128_load(up + i)));
  }
  for (; i < count; i++) out[i] = (gate[i] > 0 ? gate[i] * gate[i] : 0.0f) * up[i];
}

/* x += y (float32 adds). */
EXPORT(add)
void add(float *x, const float *y, int count) {
  int i = 0;
  for (; i + 4 <= count; i += 4) wasm_v128_store(x + i, wasm_f32x4_add(wasm_v128_load(x + i), wasm_v128_load(y + i)));
  for (; i < count; i++) x[i] += y[i];
}

/* Rotate-half RoPE in place on x [n × heads × head_dim]; cos/sin [n × head_dim/2]. Float products, one
 * float rounding of each sum: the reference's fround(a) ∓ fround(b) stored to float32 (a double sum of
 * two floats rounds to float as a float sum does). */
EXPORT(rope)
void rope(float *x, int n, int heads, int head_dim, const float *cos, const float *sin) {
  const int half = head_dim / 2;
  for (int i = 0; i < n; i++) {
    const float *c = cos + (long)i * half, *s = sin + (long)i * half;
    for (int h = 0; h < heads; h++) {
      float *o = x + ((long)i * heads + h) * head_dim;
      int j = 0;
      for (; j + 4 <= half; j += 4) {
        const v128_t x1 = wasm_v128_load(o + j), x2 = wasm_v128_load(o + j + half), cv = wasm_v128_load(c + j), sv = wasm_v128_load(s + j);
        wasm_v128_store(o + j, wasm_f32x4_sub(wasm_f32x4_mul(x1, cv), wasm_f32x4_mul(x2, sv)));
        wasm_v128_store(o + j + half, wasm_f32x4_add(wasm_f32x4_mul(x2, cv), wasm_f32x4_mul(x1, sv)));
      }
      for (; j < half; j++) {
        const float x1 = o[j], x2 = o[j + half];
        o[j] = x1 * c[j] - x2 * s[j];
        o[j + half] = x2 * c[j] + x1 * s[j];
      }
    }
  }
}
