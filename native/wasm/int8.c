/*
 * Int8 weights × int8 activations: the opt-in int8 LM head. out[i·rows + r] = float(S / (s_r·s_x[i])
 * + bias[r]) with S = Σ_c w[r][c]·x[i][c] exact in int32 and the float steps in double, in the order
 * Backend.matmulQ8's contract fixes (src/runtime-min/backend.ts), so results are bit-identical to the
 * reference backend (native/tp_int8.c is the native twin).
 *
 * Weight rows are zero padded to int8_stride(cols) columns (a multiple of 32: whole steps of the
 * decode loop, so no kernel has a column tail) when the backend copies them in; activations are
 * widened to int16 into a zero-padded buffer of the same stride (int8_layout), once per call rather
 * than once per row. The products: weights are sign-extended
 * to int16 (i16x8.extend_low/high_i8x16_s) and i32x4.dot_i16x8_s multiplies and adds pairs exactly
 * (|w·x| ≤ 127·128, a pair ≤ 32512). Int32 lanes wrap modulo 2^32, and the true S fits int32
 * (|S| ≤ 127·128·cols < 2^31 for cols ≤ 131072, which the backend checks), so the lanes' sum is S.
 *
 * The relaxed module runs this same code: relaxed SIMD's i8 × i7 dot needs one operand in 0..127,
 * which neither the weights (−127..127) nor the activations (−128..127) are. Splitting w into
 * max(w, 0) and max(−w, 0) makes it usable, but then each 16 columns of a token cost a load, two
 * dots, a subtraction, a widening and an add, no fewer steps than the two int16 dots here: tried for
 * 4-token tiles, 64 tokens on a 32000 × 2048 head took 149 ms against 146 ms, one thread. Decoding
 * streams the weights from memory either way.
 */
#include "tp_wasm.h"

#define INT8_ALIGN 32
/* Tokens per pass over a row (prefill): each weight vector is loaded and widened once for all four. */
#define TILE_TOKENS 4
#define ROWS_PER_CHUNK 32

/* Columns a padded weight or activation row has. */
EXPORT(int8_stride)
int int8_stride(int cols) { return (cols + INT8_ALIGN - 1) / INT8_ALIGN * INT8_ALIGN; }

/* int8 activations q [n × cols] → x [n × stride] int16, zero padded. */
EXPORT(int8_layout)
void int8_layout(const int8_t *q, int n, int cols, int16_t *x) {
  const int stride = int8_stride(cols);
  for (int i = 0; i < n; i++) {
    const int8_t *qi = q + (long)i * cols;
    int16_t *xi = x + (long)i * stride;
    for (int c = 0; c < cols; c++) xi[c] = qi[c];
    for (int c = cols; c < stride; c++) xi[c] = 0;
  }
}

/* d[t] = Σ w·x over a padded row for tokens xs[0 … T−1]. A single token (decode, streaming the row
 * from memory) runs two accumulator chains, 32 columns a step (about 7% faster); a 4-token tile keeps
 * one per token, as a second set spilled registers and made prefill about 30% slower. */
INLINE void dot_tile(const int8_t *w, const int16_t *const *xs, const int T, int stride, int32_t *d) {
  const int chains = T == 1 ? 2 : 1;
  v128_t acc[TILE_TOKENS][2];
  for (int t = 0; t < T; t++) acc[t][0] = acc[t][1] = wasm_i32x4_splat(0);
  for (int c = 0; c < stride; c += 16 * chains) {
    for (int h = 0; h < chains; h++) {
      const v128_t v = wasm_v128_load(w + c + 16 * h);
      const v128_t lo = wasm_i16x8_extend_low_i8x16(v), hi = wasm_i16x8_extend_high_i8x16(v);
      for (int t = 0; t < T; t++) {
        const int16_t *x = xs[t] + c + 16 * h;
        acc[t][h] = wasm_i32x4_add(acc[t][h], wasm_i32x4_add(wasm_i32x4_dot_i16x8(lo, wasm_v128_load(x)), wasm_i32x4_dot_i16x8(hi, wasm_v128_load(x + 8))));
      }
    }
  }
  for (int t = 0; t < T; t++) {
    const v128_t a = wasm_i32x4_add(acc[t][0], acc[t][1]);
    d[t] = wasm_i32x4_extract_lane(a, 0) + wasm_i32x4_extract_lane(a, 1) + wasm_i32x4_extract_lane(a, 2) + wasm_i32x4_extract_lane(a, 3);
  }
}

typedef struct {
  const int8_t *w;
  const float *scales;
  const int16_t *x;
  const float *sx, *bias;
  float *out;
  int rows, stride, n, rows_per_chunk;
} i8_ctx;

/* Row r × tokens [i0, i0+T). s_r·s_x is exact in double (two 24-bit significands): one rounding in the division. */
INLINE void i8_tile(const i8_ctx *k, int r, int i0, const int T) {
  const int16_t *xs[TILE_TOKENS];
  for (int t = 0; t < T; t++) xs[t] = k->x + (long)(i0 + t) * k->stride;
  int32_t d[TILE_TOKENS];
  dot_tile(k->w + (long)r * k->stride, xs, T, k->stride, d);
  const double sr = (double)k->scales[r], b = k->bias ? (double)k->bias[r] : 0.0;
  for (int t = 0; t < T; t++) k->out[(long)(i0 + t) * k->rows + r] = (float)((double)d[t] / (sr * (double)k->sx[i0 + t]) + b);
}

static void i8_chunk(const void *p, int chunk, int tid) {
  (void)tid;
  const i8_ctx *k = p;
  const int r0 = chunk * k->rows_per_chunk, r1 = r0 + k->rows_per_chunk < k->rows ? r0 + k->rows_per_chunk : k->rows;
  for (int r = r0; r < r1; r++) {
    int i = 0;
    for (; i + TILE_TOKENS <= k->n; i += TILE_TOKENS) i8_tile(k, r, i, TILE_TOKENS);
    for (; i < k->n; i++) i8_tile(k, r, i, 1);
  }
}

/* out[i·rows + r] = float(Σ w·x / (scales[r]·sx[i]) + bias[r]); w [rows × int8_stride(cols)], x from
 * int8_layout; bias may be 0 (none). */
EXPORT(int8_q8)
void int8_q8(const int8_t *w, int rows, int cols, const float *scales, const int16_t *x, int n, const float *sx, const float *bias, float *out) {
  const int per = chunk_items(rows, ROWS_PER_CHUNK);
  const i8_ctx k = { w, scales, x, sx, bias, out, rows, int8_stride(cols), n, per };
  pool_run(i8_chunk, &k, (rows + per - 1) / per);
}
