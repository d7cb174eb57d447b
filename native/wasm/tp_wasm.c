/*
 * tritpack's WebAssembly SIMD kernels (wasm32 + simd128, no libc): the portable fallback where the
 * native addon is missing. Same compute layout and the same arithmetic contract as native/:
 * ternary × int8 sums are exact and combined in double exactly like the reference backend, so
 * matmulQ8 is bit-identical to it; float matmuls accumulate in float32 lanes.
 *
 * Memory belongs to the JavaScript side (src/runtime-min/backends/wasm.ts): it bump-allocates
 * weights and per-call buffers in linear memory above __heap_base and passes byte offsets here.
 * Built twice: with simd128 only, and with relaxed SIMD (its i8 dot product is about 1.5× faster here).
 */
#include <stdint.h>
#include <wasm_simd128.h>

#define EXPORT(name) __attribute__((export_name(#name)))
#define BLOCK_COLS 128
#define BLOCK_BYTES 32

#ifdef __wasm_relaxed_simd__
/* Activations stay int8: relaxed SIMD multiplies i8 × i7 (the codes 0..2 are valid i7, so the result
 * is deterministic) into i16 pair sums (≤ 2·2·128 each; the eight of a block add up to ≤ 4096, exact),
 * widened to i32 once per block. (The fused "…_add_s_i32x4" form is not used: clang 16 and Node 20's
 * V8 disagree on its encoding and it returns wrong sums there.) */
typedef int8_t act_t;

/* Σ c·x over blocks [b0, b1) of one row. */
static int32_t dot_blocks(const uint8_t *row, const act_t *x, int b0, int b1) {
  const v128_t mask = wasm_i8x16_splat(3);
  v128_t acc = wasm_i32x4_splat(0);
  for (int b = b0; b < b1; b++) {
    const uint8_t *wb = row + b * BLOCK_BYTES;
    const act_t *xb = x + b * BLOCK_COLS;
    v128_t s = wasm_i16x8_splat(0);
    for (int half = 0; half < 2; half++) {
      const v128_t v = wasm_v128_load(wb + 16 * half);
      for (int k = 0; k < 4; k++) {
        const v128_t c = wasm_v128_and(wasm_u8x16_shr(v, 2 * k), mask);
        s = wasm_i16x8_add(s, __builtin_wasm_relaxed_dot_i8x16_i7x16_s_i16x8(wasm_v128_load(xb + k * 32 + 16 * half), c));
      }
    }
    acc = wasm_i32x4_add(acc, wasm_i32x4_extadd_pairwise_i16x8(s));
  }
  return wasm_i32x4_extract_lane(acc, 0) + wasm_i32x4_extract_lane(acc, 1) + wasm_i32x4_extract_lane(acc, 2) + wasm_i32x4_extract_lane(acc, 3);
}
#else
/* simd128 has no u8 × i8 multiply-add: activations come widened to int16, codes are widened per 16
 * columns, and i32x4.dot_i16x8_s does the products. */
typedef int16_t act_t;

/* Σ c·x over blocks [b0, b1) of one row. */
static int32_t dot_blocks(const uint8_t *row, const act_t *x, int b0, int b1) {
  const v128_t mask = wasm_i8x16_splat(3);
  v128_t acc = wasm_i32x4_splat(0);
  for (int b = b0; b < b1; b++) {
    const uint8_t *wb = row + b * BLOCK_BYTES;
    const act_t *xb = x + b * BLOCK_COLS;
    for (int half = 0; half < 2; half++) {
      const v128_t v = wasm_v128_load(wb + 16 * half);
      for (int k = 0; k < 4; k++) {
        /* codes of columns k·32 + 16·half + 0..15 */
        const v128_t c = wasm_v128_and(wasm_u8x16_shr(v, 2 * k), mask);
        const act_t *xk = xb + k * 32 + 16 * half;
        acc = wasm_i32x4_add(acc, wasm_i32x4_dot_i16x8(wasm_u16x8_extend_low_u8x16(c), wasm_v128_load(xk)));
        acc = wasm_i32x4_add(acc, wasm_i32x4_dot_i16x8(wasm_u16x8_extend_high_u8x16(c), wasm_v128_load(xk + 8)));
      }
    }
  }
  return wasm_i32x4_extract_lane(acc, 0) + wasm_i32x4_extract_lane(acc, 1) + wasm_i32x4_extract_lane(acc, 2) + wasm_i32x4_extract_lane(acc, 3);
}
#endif

/* Bytes per activation that ternary_q8 expects (1 with relaxed SIMD, else 2). */
EXPORT(activation_bytes)
int activation_bytes(void) { return sizeof(act_t); }

static int32_t code_at(const uint8_t *row, int c) {
  return (row[(c >> 7) * BLOCK_BYTES + (c & 31)] >> (2 * ((c >> 5) & 3))) & 3;
}

/*
 * out[i·rows + r] = (Σ_g (Σ_c t·q) · scale_g) / sx[i] + bias[r]. x: n × xcols activations of
 * activation_bytes() each (zero padded to whole blocks); xsum: n × groups Σ q per group. scale_mode 0 tensor, 1 channel,
 * 2 group. bias may be 0 (none).
 */
EXPORT(ternary_q8)
void ternary_q8(const uint8_t *codes, int rows, int cols, const float *scales, int scale_mode, int group_size,
                const act_t *xs, int xcols, const int32_t *xsum, int n, const float *sx, const float *bias, float *out) {
  const int row_bytes = xcols / BLOCK_COLS * BLOCK_BYTES, nblocks = xcols / BLOCK_COLS;
  const int groups = (cols + group_size - 1) / group_size;
  const int simd = groups == 1 || group_size % BLOCK_COLS == 0;
  const int bpg = groups == 1 ? nblocks : group_size / BLOCK_COLS;
  for (int r = 0; r < rows; r++) {
    const uint8_t *row = codes + (long)r * row_bytes;
    const double b = bias ? (double)bias[r] : 0.0;
    for (int i = 0; i < n; i++) {
      const act_t *x = xs + (long)i * xcols;
      double tot = 0;
      for (int g = 0; g < groups; g++) {
        int32_t d;
        if (simd) {
          const int b0 = g * bpg, b1 = b0 + bpg < nblocks ? b0 + bpg : nblocks;
          d = dot_blocks(row, x, b0, b1);
        } else {
          const int c0 = g * group_size, c1 = c0 + group_size < cols ? c0 + group_size : cols;
          d = 0;
          for (int c = c0; c < c1; c++) d += code_at(row, c) * x[c];
        }
        const float s = scales[scale_mode == 0 ? 0 : scale_mode == 1 ? r : r * groups + g];
        tot += (double)(d - xsum[i * groups + g]) * (double)s;
      }
      out[(long)i * rows + r] = (float)(tot / (double)sx[i] + b);
    }
  }
}

/* Eight f16 values → float32 lanes (exact, subnormals included; Inf/NaN kept unless `finite`, which
 * the caller promises when the tensor has none: it saves the fix-up). */
static inline __attribute__((always_inline)) void f16x8_convert(const uint16_t *h, v128_t *lo, v128_t *hi, const int finite) {
  const v128_t v = wasm_v128_load(h);
  const v128_t parts[2] = { wasm_u32x4_extend_low_u16x8(v), wasm_u32x4_extend_high_u16x8(v) };
  for (int p = 0; p < 2; p++) {
    const v128_t sign = wasm_i32x4_shl(wasm_v128_and(parts[p], wasm_i32x4_splat(0x8000)), 16);
    const v128_t mag = wasm_i32x4_shl(wasm_v128_and(parts[p], wasm_i32x4_splat(0x7fff)), 13);
    /* ×2^112 moves the exponent bias from 15 to 127 and turns f16 subnormals into their values */
    v128_t f = wasm_f32x4_mul(mag, wasm_f32x4_splat(0x1p112f));
    if (!finite) {
      const v128_t special = wasm_i32x4_ge(mag, wasm_i32x4_splat(0x0f800000)); /* exponent 31: Inf/NaN */
      f = wasm_v128_bitselect(wasm_v128_or(mag, wasm_i32x4_splat(0x70000000)), f, special);
    }
    const v128_t r = wasm_v128_or(f, sign);
    if (p == 0) *lo = r; else *hi = r;
  }
}

static inline float f16_to_f32(uint16_t h) {
  v128_t lo, hi;
  uint16_t tmp[8] = { h, 0, 0, 0, 0, 0, 0, 0 };
  f16x8_convert(tmp, &lo, &hi, 0);
  return wasm_f32x4_extract_lane(lo, 0);
}

static inline float load1(int dtype, const void *w, long i) {
  if (dtype == 0) return ((const float *)w)[i];
  const uint16_t h = ((const uint16_t *)w)[i];
  if (dtype == 1 || dtype == 3) return f16_to_f32(h);
  union { uint32_t u; float f; } b = { (uint32_t)h << 16 };
  return b.f;
}

/* Eight weights of row-major w from element i, as two float32 vectors. */
static inline __attribute__((always_inline)) void load8(int dtype, const void *w, long i, v128_t *lo, v128_t *hi) {
  if (dtype == 0) {
    *lo = wasm_v128_load((const float *)w + i);
    *hi = wasm_v128_load((const float *)w + i + 4);
  } else if (dtype == 1) {
    f16x8_convert((const uint16_t *)w + i, lo, hi, 0);
  } else if (dtype == 3) {
    f16x8_convert((const uint16_t *)w + i, lo, hi, 1);
  } else {
    const v128_t v = wasm_v128_load((const uint16_t *)w + i);
    *lo = wasm_i32x4_shl(wasm_u32x4_extend_low_u16x8(v), 16);
    *hi = wasm_i32x4_shl(wasm_u32x4_extend_high_u16x8(v), 16);
  }
}

/* out[i·rows + r] = Σ_c w[r][c]·x[i][c] + bias[r]; dtype 0 f32, 1 f16, 2 bf16, 3 f16 without Inf/NaN.
 * Same summation order for every n. */
EXPORT(float_matmul)
void float_matmul(int dtype, const void *w, int rows, int cols, const float *x, int n, const float *bias, float *out) {
  for (int r = 0; r < rows; r++) {
    const long base = (long)r * cols;
    const float b = bias ? bias[r] : 0.0f;
    for (int i = 0; i < n; i++) {
      const float *xi = x + (long)i * cols;
      v128_t a0 = wasm_f32x4_splat(0), a1 = a0;
      int c = 0;
      for (; c + 8 <= cols; c += 8) {
        v128_t lo, hi;
        load8(dtype, w, base + c, &lo, &hi);
        a0 = wasm_f32x4_add(a0, wasm_f32x4_mul(lo, wasm_v128_load(xi + c)));
        a1 = wasm_f32x4_add(a1, wasm_f32x4_mul(hi, wasm_v128_load(xi + c + 4)));
      }
      const v128_t s = wasm_f32x4_add(a0, a1);
      float acc = (wasm_f32x4_extract_lane(s, 0) + wasm_f32x4_extract_lane(s, 1)) + (wasm_f32x4_extract_lane(s, 2) + wasm_f32x4_extract_lane(s, 3));
      for (; c < cols; c++) acc += load1(dtype, w, base + c) * xi[c];
      out[(long)i * rows + r] = acc + b;
    }
  }
}

/* Float activations on ternary weights: Σ_g scale_g · Σ_c t·x (float32 lanes per group) + bias. */
EXPORT(ternary_f32)
void ternary_f32(const uint8_t *codes, int rows, int cols, const float *scales, int scale_mode, int group_size,
                 const float *x, int n, const float *bias, float *out) {
  const int row_bytes = (cols + BLOCK_COLS - 1) / BLOCK_COLS * BLOCK_BYTES, groups = (cols + group_size - 1) / group_size;
  for (int r = 0; r < rows; r++) {
    const uint8_t *row = codes + (long)r * row_bytes;
    for (int i = 0; i < n; i++) {
      const float *xi = x + (long)i * cols;
      double tot = 0;
      for (int g = 0; g < groups; g++) {
        const int c0 = g * group_size, c1 = c0 + group_size < cols ? c0 + group_size : cols;
        float acc = 0;
        for (int c = c0; c < c1; c++) acc += (float)(code_at(row, c) - 1) * xi[c];
        tot += (double)acc * (double)scales[scale_mode == 0 ? 0 : scale_mode == 1 ? r : r * groups + g];
      }
      out[(long)i * rows + r] = (float)(tot + (bias ? (double)bias[r] : 0.0));
    }
  }
}

/* tritpack t2 (packing 0) or t158 (1) rows [row0, row0+nrows) → compute layout (out zeroed by the caller);
 * returns the flat index of an invalid t2 code 3, or -1. */
EXPORT(repack)
double repack(int packing, const uint8_t *packed, int row0, int nrows, int cols, uint8_t *out) {
  static const uint8_t pow3[5] = { 1, 3, 9, 27, 81 };
  const int row_bytes = (cols + BLOCK_COLS - 1) / BLOCK_COLS * BLOCK_BYTES;
  for (int r = 0; r < nrows; r++) {
    uint8_t *dst = out + (long)r * row_bytes;
    long long e = (long long)(row0 + r) * cols;
    for (int c = 0; c < cols; c++, e++) {
      int code;
      if (packing == 0) {
        code = (packed[e >> 2] >> (2 * (e & 3))) & 3;
        if (code == 3) return (double)e;
      } else {
        code = ((uint8_t)(packed[e / 5] * pow3[e % 5]) * 3) >> 8;
      }
      dst[(c >> 7) * BLOCK_BYTES + (c & 31)] |= (uint8_t)(code << (2 * ((c >> 5) & 3)));
    }
  }
  return -1;
}

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

/*
 * Causal GQA attention of n queries [n × heads × d] at positions length−n … length−1 over keys and
 * values [length × kv_heads × d]; window ≤ 0 means the whole prefix. scores: `length` floats of
 * scratch. Float32 scores and value sums, double softmax normaliser, as in native/tp_attention.c.
 */
EXPORT(attention)
void attention(const float *q, int n, const float *keys, const float *values, int length, int heads, int kv_heads, int d, int window, float *scores, float *out) {
  const int group = heads / kv_heads, kv_stride = kv_heads * d;
  const float scale = 1.0f / __builtin_sqrtf((float)d);
  for (int pair = 0; pair < n * heads; pair++) {
    const int i = pair / heads, h = pair % heads, pos = length - n + i;
    const int from = window > 0 && pos - window + 1 > 0 ? pos - window + 1 : 0;
    const float *qv = q + (long)pair * d;
    const long ko = (long)(h / group) * d;
    float max = -__builtin_inff();
    for (int j = from; j <= pos; j++) {
      const float s = dot_f32(qv, keys + (long)j * kv_stride + ko, d) * scale;
      scores[j] = s;
      if (s > max) max = s;
    }
    float *o = out + (long)pair * d;
    for (int e = 0; e < d; e++) o[e] = 0;
    double sum = 0;
    for (int j = from; j <= pos; j++) {
      const float p = exp_f32(scores[j] - max);
      sum += p;
      const float *v = values + (long)j * kv_stride + ko;
      const v128_t pv = wasm_f32x4_splat(p);
      int e = 0;
      for (; e + 4 <= d; e += 4) wasm_v128_store(o + e, wasm_f32x4_add(wasm_v128_load(o + e), wasm_f32x4_mul(pv, wasm_v128_load(v + e))));
      for (; e < d; e++) o[e] += p * v[e];
    }
    const float inv = (float)(1.0 / sum);
    for (int e = 0; e < d; e++) o[e] *= inv;
  }
}
