/*
 * Cross-check of the native kernels' SIMD paths against their portable C path, linked straight to
 * the kernel sources (no Node-API layer), so it runs wherever the sources compile: natively on x86
 * (AVX2, AVX-512, AVX-512 VNNI) and under qemu-aarch64 (NEON, NEON with dotprod). The feature
 * probes the kernels call (tp_has_*) are defined here and answer for the level under test, so one
 * binary runs the portable path and then every SIMD level the CPU offers.
 *
 * Contracts checked, on random inputs with edge cases (columns not a multiple of 128, group scales,
 * several tokens around the 4-token and 64-token tiles, extreme int8 activations):
 * - ternary × int8 (tp_ternary_q8), activation quantization, RMSNorm, relu² gating: bit-identical;
 * - float paths (ternary × float, f32/f16/bf16 matmul): |simd − portable| ≤ 2e-6 · (Σ|w·x| + |bias|),
 *   the bound the TypeScript suite holds the native backend to against the reference backend;
 * - attention: |simd − portable| ≤ 2e-6 · max|v| (the SIMD exp is within 2 ulp of expf; the largest
 *   difference seen is about a quarter of that);
 * - a token's result does not depend on how many tokens share the call (float matmul, ternary ×
 *   float, attention): bit-identical, the property KV-cached decoding relies on.
 *
 * Usage: kernel-check [--expect-level N]   (N: the highest level the CPU must offer; the run fails
 * otherwise, so an emulator that silently lacks a feature cannot pass as having tested it).
 */
#define _GNU_SOURCE
#include "../tp.h"
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(TP_ARM64) && defined(__linux__)
#include <sys/auxv.h>
#endif

/* ---- the feature probes, answering for the level under test ---- */

static int level; /* 0: portable; x86 1 AVX2, 2 AVX-512, 3 AVX-512 VNNI; AArch64 1 NEON, 2 NEON + dotprod */

int tp_has_avx2(void) {
#if defined(TP_X86)
  return level >= 1;
#else
  return 0;
#endif
}
int tp_has_avx512(void) {
#if defined(TP_X86)
  return level >= 2;
#else
  return 0;
#endif
}
int tp_has_avx512vnni(void) {
#if defined(TP_X86)
  return level >= 3;
#else
  return 0;
#endif
}
int tp_has_neon(void) {
#if defined(TP_ARM64)
  return level >= 1;
#else
  return 0;
#endif
}
int tp_has_dotprod(void) {
#if defined(TP_ARM64)
  return level >= 2;
#else
  return 0;
#endif
}

/* The highest level this CPU runs, and its name. */
static int cpu_level(void) {
#if defined(TP_X86)
  __builtin_cpu_init();
  if (!(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))) return 0;
  if (!(__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))) return 1;
  return __builtin_cpu_supports("avx512vnni") ? 3 : 2;
#elif defined(TP_ARM64) && defined(__linux__)
  return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) ? 2 : 1;
#elif defined(TP_ARM64)
  return 1;
#else
  return 0;
#endif
}

static const char *level_name(int l) {
#if defined(TP_X86)
  static const char *names[] = { "portable", "avx2", "avx512", "avx512vnni" };
#elif defined(TP_ARM64)
  static const char *names[] = { "portable", "neon", "neon+dotprod" };
#else
  static const char *names[] = { "portable" };
#endif
  return names[l];
}

/* ---- inputs ---- */

static uint32_t rng_state = 0x2545f491u;
static uint32_t next_u32(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 17;
  rng_state ^= rng_state << 5;
  return rng_state;
}
static float uniform(float lo, float hi) { return lo + (hi - lo) * (float)(next_u32() >> 8) * 0x1p-24f; }

static void *xalloc(size_t bytes) {
  void *p = calloc(bytes ? bytes : 1, 1);
  if (!p) { fprintf(stderr, "kernel-check: out of memory\n"); exit(2); }
  return p;
}

static int failures;
static char current[160]; /* the case under test, for messages */

static void fail(const char *fmt, double got, double want, size_t at) {
  if (++failures <= 20) fprintf(stderr, "FAIL %s [%s]: %s at %zu: %.9g vs %.9g\n", current, level_name(level), fmt, at, got, want);
}

static void expect_same_bits(const void *got, const void *want, size_t count, size_t esz, const char *what) {
  for (size_t i = 0; i < count; i++) {
    if (memcmp((const char *)got + i * esz, (const char *)want + i * esz, esz) != 0) {
      double g = 0, w = 0;
      if (esz == 4) { float a, b; memcpy(&a, (const char *)got + i * 4, 4); memcpy(&b, (const char *)want + i * 4, 4); g = a; w = b; }
      else { g = ((const int8_t *)got)[i]; w = ((const int8_t *)want)[i]; }
      fail(what, g, w, i);
      return;
    }
  }
}

static void expect_close(const float *got, const float *want, const double *bound, size_t count, const char *what) {
  for (size_t i = 0; i < count; i++) {
    if (!(fabs((double)got[i] - want[i]) <= bound[i])) { fail(what, got[i], want[i], i); return; }
  }
}

/* ---- ternary weights ---- */

typedef struct {
  tp_ternary w;
  uint8_t *codes;
  float *scales, *dense; /* dense: t · scale, for the error bounds */
} ternary_case;

/* Random codes 0..2 (or all 2 with `saturate`), packed as t2 and repacked by the kernel's own tp_repack. */
static ternary_case make_ternary(int rows, int cols, int scale_mode, int group_size, int saturate) {
  ternary_case t;
  const size_t count = (size_t)rows * cols;
  uint8_t *packed = xalloc((count + 3) / 4);
  for (size_t e = 0; e < count; e++) {
    const int code = saturate ? 2 : (int)(next_u32() % 3);
    packed[e >> 2] |= (uint8_t)(code << (2 * (e & 3)));
  }
  t.w.rows = rows;
  t.w.cols = cols;
  t.w.row_bytes = tp_row_bytes(cols);
  t.w.scale_mode = scale_mode;
  t.w.group_size = scale_mode == 2 ? group_size : cols;
  const int groups = (cols + t.w.group_size - 1) / t.w.group_size;
  const size_t nscales = scale_mode == 0 ? 1 : scale_mode == 1 ? (size_t)rows : (size_t)rows * groups;
  t.codes = xalloc((size_t)rows * t.w.row_bytes);
  if (tp_repack(0, packed, (count + 3) / 4, 0, rows, cols, t.codes) != -1) { fprintf(stderr, "kernel-check: tp_repack rejected valid codes\n"); exit(2); }
  t.scales = xalloc(nscales * sizeof(float));
  for (size_t i = 0; i < nscales; i++) t.scales[i] = uniform(1e-3f, 0.05f);
  t.w.codes = t.codes;
  t.w.scales = t.scales;
  t.dense = xalloc(count * sizeof(float));
  for (int r = 0; r < rows; r++) tp_ternary_row(&t.w, r, t.dense + (size_t)r * cols);
  free(packed);
  return t;
}

static void free_ternary(ternary_case *t) { free(t->codes); free(t->scales); free(t->dense); }

/* bound[i·rows + r] = tol · (Σ_c |w[r,c] · x[i,c]| + |bias[r]|) */
static double *error_bounds(const float *w, int rows, int cols, const float *x, int n, const float *bias, double tol) {
  double *b = xalloc((size_t)n * rows * sizeof(double));
  for (int i = 0; i < n; i++)
    for (int r = 0; r < rows; r++) {
      double s = bias ? fabs((double)bias[r]) : 0;
      for (int c = 0; c < cols; c++) s += fabs((double)w[(size_t)r * cols + c] * x[(size_t)i * cols + c]);
      b[(size_t)i * rows + r] = tol * s + 1e-30;
    }
  return b;
}

#define FLOAT_TOL 2e-6

static const int shapes[][3] = { /* rows, cols, tokens */
  { 1, 1, 1 }, { 3, 5, 2 }, { 7, 127, 4 }, { 9, 128, 5 }, { 5, 129, 3 }, { 17, 300, 9 }, { 33, 513, 1 },
  { 12, 640, 70 }, { 64, 256, 8 }, { 40, 1024, 1 }, { 24, 2048, 6 }, { 6, 1000, 13 },
};
#define NSHAPES (int)(sizeof shapes / sizeof shapes[0])
static const int scale_kinds[][2] = { { 0, 0 }, { 1, 0 }, { 2, 128 }, { 2, 256 }, { 2, 512 }, { 2, 64 }, { 2, 50 } }; /* mode, group size */
#define NSCALES (int)(sizeof scale_kinds / sizeof scale_kinds[0])

static void check_ternary_q8(int maxlevel) {
  for (int s = 0; s < NSHAPES; s++)
    for (int k = 0; k < NSCALES; k++)
      for (int saturate = 0; saturate < 2; saturate++) {
        const int rows = shapes[s][0], cols = shapes[s][1], n = shapes[s][2], mode = scale_kinds[k][0], gs = scale_kinds[k][1];
        if (mode == 2 && gs > cols) continue;
        if (saturate && s % 3) continue; /* the overflow edge on a few shapes is enough */
        ternary_case t = make_ternary(rows, cols, mode, gs, saturate);
        int8_t *q = xalloc((size_t)n * cols);
        float *sx = xalloc(n * sizeof(float)), *bias = xalloc(rows * sizeof(float));
        /* saturate: codes 2 against −128, the largest |Σ c·x| a row can have */
        for (size_t i = 0; i < (size_t)n * cols; i++) q[i] = saturate ? -128 : (int8_t)(next_u32() & 255);
        for (int i = 0; i < n; i++) sx[i] = uniform(0.5f, 200.0f);
        for (int r = 0; r < rows; r++) bias[r] = uniform(-1, 1);
        float *want = xalloc((size_t)n * rows * sizeof(float)), *got = xalloc((size_t)n * rows * sizeof(float));
        for (int with_bias = 0; with_bias < 2; with_bias++) {
          snprintf(current, sizeof current, "ternary_q8 %dx%d n=%d scale mode %d group %d%s%s", rows, cols, n, mode, gs, with_bias ? " bias" : "", saturate ? " saturated" : "");
          level = 0;
          tp_ternary_q8(&t.w, q, n, sx, with_bias ? bias : NULL, want);
          for (level = 1; level <= maxlevel; level++) {
            tp_ternary_q8(&t.w, q, n, sx, with_bias ? bias : NULL, got);
            expect_same_bits(got, want, (size_t)n * rows, 4, "output differs");
          }
        }
        free(q); free(sx); free(bias); free(want); free(got);
        free_ternary(&t);
      }
}

/* The int8 LM head: weights across ±127, activations across −128..127, rows padded to TP_INT8_ALIGN. */
static void check_int8_q8(int maxlevel) {
  static const int int8_shapes[][3] = { { 7, 1, 1 }, { 9, 63, 5 }, { 33, 64, 4 }, { 17, 200, 9 }, { 64, 2048, 1 }, { 40, 2049, 6 } };
  for (size_t s = 0; s < sizeof int8_shapes / sizeof int8_shapes[0]; s++) {
    const int rows = int8_shapes[s][0], cols = int8_shapes[s][1], n = int8_shapes[s][2];
    const int stride = (cols + TP_INT8_ALIGN - 1) / TP_INT8_ALIGN * TP_INT8_ALIGN;
    int8_t *wq = xalloc((size_t)rows * stride), *q = xalloc((size_t)n * cols);
    float *ws = xalloc(rows * sizeof(float)), *sx = xalloc(n * sizeof(float)), *bias = xalloc(rows * sizeof(float));
    memset(wq, 0, (size_t)rows * stride);
    for (int r = 0; r < rows; r++) {
      /* row 0 the extreme ±127, the others random in [−127, 127] */
      for (int c = 0; c < cols; c++) wq[(size_t)r * stride + c] = (int8_t)(r == 0 ? (c & 1 ? 127 : -127) : (int)(next_u32() % 255) - 127);
      ws[r] = uniform(1.0f, 500.0f);
      bias[r] = uniform(-1, 1);
    }
    for (size_t i = 0; i < (size_t)n * cols; i++) q[i] = s == 0 ? -128 : (int8_t)(next_u32() & 255);
    for (int i = 0; i < n; i++) sx[i] = uniform(0.5f, 200.0f);
    const tp_int8 w = { wq, rows, cols, stride, ws };
    float *want = xalloc((size_t)n * rows * sizeof(float)), *got = xalloc((size_t)n * rows * sizeof(float));
    for (int with_bias = 0; with_bias < 2; with_bias++) {
      snprintf(current, sizeof current, "int8_q8 %dx%d n=%d%s", rows, cols, n, with_bias ? " bias" : "");
      level = 0;
      tp_int8_q8(&w, q, n, sx, with_bias ? bias : NULL, want);
      for (level = 1; level <= maxlevel; level++) {
        tp_int8_q8(&w, q, n, sx, with_bias ? bias : NULL, got);
        expect_same_bits(got, want, (size_t)n * rows, 4, "output differs");
      }
    }
    free(wq); free(q); free(ws); free(sx); free(bias); free(want); free(got);
  }
}

/* Token i of an n-token call must equal the same token alone (the first and the last token are checked). */
typedef void (*matmul_fn)(const void *w, const float *x, int n, const float *bias, float *out);

static void expect_token_independent(matmul_fn f, const void *w, int rows, int cols, const float *x, int n, const float *bias, const float *all) {
  float *one = xalloc(rows * sizeof(float));
  const int tokens[2] = { 0, n - 1 };
  for (int t = 0; t < 2; t++) {
    f(w, x + (size_t)tokens[t] * cols, 1, bias, one);
    expect_same_bits(one, all + (size_t)tokens[t] * rows, rows, 4, "a token alone differs from the same token in a batch");
  }
  free(one);
}

static void ternary_f32_call(const void *w, const float *x, int n, const float *bias, float *out) { tp_ternary_f32(w, x, n, bias, out); }

static void check_ternary_f32(int maxlevel) {
  for (int s = 0; s < NSHAPES; s++)
    for (int k = 0; k < NSCALES; k++) {
      const int rows = shapes[s][0], cols = shapes[s][1], n = shapes[s][2], mode = scale_kinds[k][0], gs = scale_kinds[k][1];
      if (mode == 2 && gs > cols) continue;
      ternary_case t = make_ternary(rows, cols, mode, gs, 0);
      float *x = xalloc((size_t)n * cols * sizeof(float)), *bias = xalloc(rows * sizeof(float));
      for (size_t i = 0; i < (size_t)n * cols; i++) x[i] = uniform(-3, 3);
      for (int r = 0; r < rows; r++) bias[r] = uniform(-1, 1);
      double *bound = error_bounds(t.dense, rows, cols, x, n, bias, FLOAT_TOL);
      float *want = xalloc((size_t)n * rows * sizeof(float)), *got = xalloc((size_t)n * rows * sizeof(float));
      snprintf(current, sizeof current, "ternary_f32 %dx%d n=%d scale mode %d group %d", rows, cols, n, mode, gs);
      level = 0;
      tp_ternary_f32(&t.w, x, n, bias, want);
      for (level = 1; level <= maxlevel; level++) {
        tp_ternary_f32(&t.w, x, n, bias, got);
        expect_close(got, want, bound, (size_t)n * rows, "beyond the float tolerance");
        expect_token_independent(ternary_f32_call, &t.w, rows, cols, x, n, bias, got);
      }
      free(x); free(bias); free(bound); free(want); free(got);
      free_ternary(&t);
    }
}

/* f16 bits: normal values of either sign over a wide exponent range, some subnormals and zeros. */
static uint16_t random_f16(void) {
  const uint32_t r = next_u32();
  const uint16_t sign = (uint16_t)((r & 1) << 15), man = (uint16_t)((r >> 1) & 0x3ff);
  switch ((r >> 11) % 16) {
    case 0: return sign | man;  /* subnormal */
    case 1: return sign;        /* ±0 */
    default: return sign | (uint16_t)((8 + (r >> 16) % 14) << 10) | man; /* 2^-7 .. 2^6 */
  }
}

static int float_dtype;
static int float_rows, float_cols;
static void float_call(const void *w, const float *x, int n, const float *bias, float *out) { tp_float_matmul(float_dtype, w, float_rows, float_cols, x, n, bias, out); }

static void check_float_matmul(int maxlevel) {
  static const char *names[] = { "f32", "f16", "bf16" };
  for (int dtype = TP_F32; dtype <= TP_BF16; dtype++)
    for (int s = 0; s < NSHAPES; s++) {
      const int rows = shapes[s][0], cols = shapes[s][1], n = shapes[s][2];
      const size_t count = (size_t)rows * cols, esz = dtype == TP_F32 ? 4 : 2;
      void *w = xalloc(count * esz);
      float *dense = xalloc(count * sizeof(float));
      for (size_t i = 0; i < count; i++) {
        if (dtype == TP_F32) ((float *)w)[i] = dense[i] = uniform(-1, 1);
        else if (dtype == TP_F16) dense[i] = tp_f16_to_f32(((uint16_t *)w)[i] = random_f16());
        else {
          const float f = uniform(-1, 1);
          uint32_t bits;
          memcpy(&bits, &f, 4);
          bits &= 0xffff0000u;
          ((uint16_t *)w)[i] = (uint16_t)(bits >> 16);
          memcpy(&dense[i], &bits, 4);
        }
      }
      float *x = xalloc((size_t)n * cols * sizeof(float)), *bias = xalloc(rows * sizeof(float));
      for (size_t i = 0; i < (size_t)n * cols; i++) x[i] = uniform(-2, 2);
      for (int r = 0; r < rows; r++) bias[r] = uniform(-1, 1);
      double *bound = error_bounds(dense, rows, cols, x, n, bias, FLOAT_TOL);
      float *want = xalloc((size_t)n * rows * sizeof(float)), *got = xalloc((size_t)n * rows * sizeof(float));
      snprintf(current, sizeof current, "float_matmul %s %dx%d n=%d", names[dtype], rows, cols, n);
      float_dtype = dtype; float_rows = rows; float_cols = cols;
      level = 0;
      tp_float_matmul(dtype, w, rows, cols, x, n, bias, want);
      for (level = 1; level <= maxlevel; level++) {
        tp_float_matmul(dtype, w, rows, cols, x, n, bias, got);
        expect_close(got, want, bound, (size_t)n * rows, "beyond the float tolerance");
        expect_token_independent(float_call, w, rows, cols, x, n, bias, got);
      }
      free(w); free(dense); free(x); free(bias); free(bound); free(want); free(got);
    }
}

#define ATT_TOL 2e-6

static void check_attention(int maxlevel) {
  static const int cases[][7] = { /* heads, kv_heads, head_dim, length, n, window, |q| (40: scores spread past −87, exp's flush to 0) */
    { 4, 2, 64, 37, 5, 0, 2 }, { 2, 2, 128, 70, 3, 0, 2 }, { 4, 1, 48, 20, 20, 0, 2 }, { 8, 4, 64, 100, 9, 16, 2 }, { 2, 1, 64, 1, 1, 0, 2 },
    { 3, 3, 36, 11, 2, 5, 2 }, { 2, 1, 64, 50, 4, 0, 40 },
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    const int heads = cases[c][0], kv = cases[c][1], d = cases[c][2], length = cases[c][3], n = cases[c][4], window = cases[c][5];
    const size_t qn = (size_t)n * heads * d, kn = (size_t)length * kv * d;
    float *q = xalloc(qn * sizeof(float)), *keys = xalloc(kn * sizeof(float)), *values = xalloc(kn * sizeof(float));
    for (size_t i = 0; i < qn; i++) q[i] = uniform(-1, 1) * (float)cases[c][6];
    for (size_t i = 0; i < kn; i++) { keys[i] = uniform(-2, 2); values[i] = uniform(-3, 3); }
    /* A score's rounding depends on the summation order, and e^(s − max) turns an absolute score error
     * into the same relative weight error: beside ATT_TOL·max|v|, each output may differ by a few ulps of
     * its largest score magnitude (scale·Σ|q·k|) times max|v| — negligible for the ordinary cases,
     * the main term for the |q| = 40 case. */
    double *bound = xalloc(qn * sizeof(double));
    for (int i = 0; i < n; i++)
      for (int h = 0; h < heads; h++) {
        const float *qv = q + ((size_t)i * heads + h) * d;
        double smax = 0;
        for (int j = 0; j < length; j++) {
          const float *kv_row = keys + ((size_t)j * kv + h / (heads / kv)) * d;
          double a = 0;
          for (int e = 0; e < d; e++) a += fabs((double)qv[e] * kv_row[e]);
          if (a > smax) smax = a;
        }
        for (int e = 0; e < d; e++) bound[((size_t)i * heads + h) * d + e] = 3 * (ATT_TOL + 4 * FLT_EPSILON * smax / sqrt((double)d));
      }
    float *want = xalloc(qn * sizeof(float)), *got = xalloc(qn * sizeof(float)), *last = xalloc((size_t)heads * d * sizeof(float));
    snprintf(current, sizeof current, "attention heads %d/%d dim %d length %d n=%d window %d", heads, kv, d, length, n, window);
    level = 0;
    tp_attention(q, n, keys, values, length, heads, kv, d, window, want);
    for (level = 1; level <= maxlevel; level++) {
      tp_attention(q, n, keys, values, length, heads, kv, d, window, got);
      expect_close(got, want, bound, qn, "beyond the attention tolerance");
      /* the last query alone (decode) against its row in the batch (prefill) */
      tp_attention(q + (size_t)(n - 1) * heads * d, 1, keys, values, length, heads, kv, d, window, last);
      expect_same_bits(last, got + (size_t)(n - 1) * heads * d, (size_t)heads * d, 4, "decode differs from prefill");
    }
    free(q); free(keys); free(values); free(bound); free(want); free(got); free(last);
  }
}

/* Rows of activations with the awkward values: NaN, ±Inf, −0, huge, subnormal, exact halves after scaling. */
static void fill_activations(float *x, int n, int cols) {
  for (int i = 0; i < n; i++)
    for (int c = 0; c < cols; c++) x[(size_t)i * cols + c] = uniform(-4, 4);
  if (n > 1) x[cols + cols / 2] = NAN;
  if (n > 2) x[2 * (size_t)cols] = -INFINITY;
  /* max |x| = 127 makes s = 1, so the halves are ties that rint must round to even; −0 among them */
  if (n > 3) for (int c = 0; c < cols; c++) x[3 * (size_t)cols + c] = c == 0 ? 127.0f : c % 3 == 0 ? -0.0f : (float)(c % 11 - 5) + 0.5f;
  if (n > 4) for (int c = 0; c < cols; c++) x[4 * (size_t)cols + c] = c % 2 ? 1e-41f : -3e38f;
  if (n > 5) for (int c = 0; c < cols; c++) x[5 * (size_t)cols + c] = 0.0f;
}

static void check_elementwise(int maxlevel) {
  static const int widths[] = { 1, 3, 7, 8, 15, 16, 17, 64, 127, 2048, 5632 };
  const int n = 7;
  for (size_t wi = 0; wi < sizeof widths / sizeof widths[0]; wi++) {
    const int cols = widths[wi];
    const size_t count = (size_t)n * cols;
    float *x = xalloc(count * sizeof(float)), *up = xalloc(count * sizeof(float)), *w = xalloc(cols * sizeof(float));
    fill_activations(x, n, cols);
    for (size_t i = 0; i < count; i++) up[i] = uniform(-2, 2);
    for (int c = 0; c < cols; c++) w[c] = uniform(0.5f, 1.5f);
    int8_t *q0 = xalloc(count), *q1 = xalloc(count);
    float *s0 = xalloc(n * sizeof(float)), *s1 = xalloc(n * sizeof(float));
    float *f0 = xalloc(count * sizeof(float)), *f1 = xalloc(count * sizeof(float));

    snprintf(current, sizeof current, "quantize cols %d", cols);
    level = 0;
    tp_quantize(x, n, cols, q0, s0);
    for (level = 1; level <= maxlevel; level++) {
      tp_quantize(x, n, cols, q1, s1);
      expect_same_bits(q1, q0, count, 1, "code differs");
      expect_same_bits(s1, s0, n, 4, "scale differs");
    }
    snprintf(current, sizeof current, "rmsnorm cols %d", cols);
    level = 0;
    tp_rmsnorm(x, n, cols, w, 1e-5, f0);
    for (level = 1; level <= maxlevel; level++) {
      tp_rmsnorm(x, n, cols, w, 1e-5, f1);
      expect_same_bits(f1, f0, count, 4, "output differs");
    }
    snprintf(current, sizeof current, "relu2 gating cols %d", cols);
    level = 0;
    tp_gated(x, up, count, 1, f0);
    for (level = 1; level <= maxlevel; level++) {
      tp_gated(x, up, count, 1, f1);
      expect_same_bits(f1, f0, count, 4, "output differs");
    }
    free(x); free(up); free(w); free(q0); free(q1); free(s0); free(s1); free(f0); free(f1);
  }
}

int main(int argc, char **argv) {
  int expect = -1;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--expect-level") == 0 && i + 1 < argc) expect = atoi(argv[++i]);
    else { fprintf(stderr, "usage: kernel-check [--expect-level N]\n"); return 2; }
  }
  const int maxlevel = cpu_level();
  if (expect >= 0 && maxlevel != expect) {
    fprintf(stderr, "kernel-check: this CPU offers level %d (%s), expected %d\n", maxlevel, level_name(maxlevel), expect);
    return 1;
  }
  tp_pool_set_threads(3); /* the calling thread and two workers: chunks finish out of order */
  printf("kernel-check: portable against");
  for (int l = 1; l <= maxlevel; l++) printf(" %s", level_name(l));
  printf("\n");
  if (maxlevel == 0) { printf("kernel-check: no SIMD level on this CPU, nothing to compare\n"); return 0; }
  check_ternary_q8(maxlevel);
  check_int8_q8(maxlevel);
  check_ternary_f32(maxlevel);
  check_float_matmul(maxlevel);
  check_attention(maxlevel);
  check_elementwise(maxlevel);
  if (failures) { fprintf(stderr, "kernel-check: %d failure(s)\n", failures); return 1; }
  printf("kernel-check: all paths agree\n");
  return 0;
}
