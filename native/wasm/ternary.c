/*
 * Ternary weights (compute layout "i2x128", native/tp.h): the int8 matmul (BitNet W1.58A8, exact
 * integer sums, bit-identical to the reference), float activations on ternary weights, and the
 * export of the repack from tritpack's t2/t158 packings (the addon's C, native/tp_repack.c).
 *
 * Codes are unpacked with 16-bit shifts (i16x8.shr_u): the & 3 that follows keeps only bits that
 * came from the same byte, and V8 emulates 8-bit shifts on x64 with several instructions. Prefill
 * unpacks each code vector once for a tile of tokens.
 */
#include "../tp.h"
#include "tp_wasm.h"

/* Tokens per pass when several share the call. (Several rows per pass, sharing the activation loads of
 * one token, measured slower: interleaved row streams came from DRAM at about 60% of the speed.) */
#define TILE_TOKENS 4
#define ROWS_PER_CHUNK 32

/* The code mask splat(3), read through a volatile load: with a visible constant, clang proves that a
 * 16-bit shift masked per byte equals an 8-bit shift and emits i8x16.shr_u after all (which V8
 * lowers to a shift, a mask built in three instructions and an and, on every use). Fewer
 * instructions, though a decode matvec streaming from DRAM measured the same speed either way. */
static const v128_t code_mask_storage = { 0x03030303, 0x03030303, 0x03030303, 0x03030303 };
INLINE v128_t code_mask(void) { return *(const volatile v128_t *)&code_mask_storage; }

#ifdef __wasm_relaxed_simd__
/* Activations stay int8: relaxed SIMD multiplies i8 × i7 (the codes 0..2 are valid i7, so the result
 * is deterministic) into i16 pair sums (|lane| ≤ 2·128·2 per product pair, ≤ 4096 per block), widened
 * to i32 every 4 blocks at most (≤ 16384 < 2^15, exact). (The fused "…_add_s_i32x4" form is not used:
 * clang 16 and Node 20's V8 disagree on its encoding.) */
typedef int8_t act_t;

/* d[t] = Σ c·x over blocks [b0, b1) of `row` and token xs[t]. */
INLINE void dot_tile(const uint8_t *row, const act_t *const *xs, const int T, int b0, int b1, int32_t *d) {
  const v128_t mask = code_mask();
  v128_t acc[TILE_TOKENS];
  for (int t = 0; t < T; t++) acc[t] = wasm_i32x4_splat(0);
  for (int b = b0; b < b1;) {
    const int end = b + 4 < b1 ? b + 4 : b1;
    v128_t s[TILE_TOKENS];
    for (int t = 0; t < T; t++) s[t] = wasm_i16x8_splat(0);
    for (; b < end; b++) {
      for (int half = 0; half < 2; half++) {
        const v128_t v = wasm_v128_load(row + b * BLOCK_BYTES + 16 * half);
        for (int k = 0; k < 4; k++) {
          const v128_t c = wasm_v128_and(k ? wasm_u16x8_shr(v, 2 * k) : v, mask); /* codes of columns k·32 + 16·half + 0..15 */
          for (int t = 0; t < T; t++)
            s[t] = wasm_i16x8_add(s[t], __builtin_wasm_relaxed_dot_i8x16_i7x16_s_i16x8(wasm_v128_load(xs[t] + b * BLOCK_COLS + k * 32 + 16 * half), c));
        }
      }
    }
    for (int t = 0; t < T; t++) acc[t] = wasm_i32x4_add(acc[t], wasm_i32x4_extadd_pairwise_i16x8(s[t]));
  }
  for (int t = 0; t < T; t++)
    d[t] = wasm_i32x4_extract_lane(acc[t], 0) + wasm_i32x4_extract_lane(acc[t], 1) + wasm_i32x4_extract_lane(acc[t], 2) + wasm_i32x4_extract_lane(acc[t], 3);
}
#else
/* simd128 has no u8 × i8 multiply-add: activations come widened to int16, codes are widened per 16
 * columns, and i32x4.dot_i16x8_s does the products. */
typedef int16_t act_t;

INLINE void dot_tile(const uint8_t *row, const act_t *const *xs, const int T, int b0, int b1, int32_t *d) {
  const v128_t mask = code_mask();
  v128_t acc[TILE_TOKENS];
  for (int t = 0; t < T; t++) acc[t] = wasm_i32x4_splat(0);
  for (int b = b0; b < b1; b++) {
    for (int half = 0; half < 2; half++) {
      const v128_t v = wasm_v128_load(row + b * BLOCK_BYTES + 16 * half);
      for (int k = 0; k < 4; k++) {
        const v128_t c = wasm_v128_and(k ? wasm_u16x8_shr(v, 2 * k) : v, mask); /* codes of columns k·32 + 16·half + 0..15 */
        const v128_t lo = wasm_u16x8_extend_low_u8x16(c), hi = wasm_u16x8_extend_high_u8x16(c);
        for (int t = 0; t < T; t++) {
          const act_t *x = xs[t] + b * BLOCK_COLS + k * 32 + 16 * half;
          acc[t] = wasm_i32x4_add(acc[t], wasm_i32x4_add(wasm_i32x4_dot_i16x8(lo, wasm_v128_load(x)), wasm_i32x4_dot_i16x8(hi, wasm_v128_load(x + 8))));
        }
      }
    }
  }
  for (int t = 0; t < T; t++)
    d[t] = wasm_i32x4_extract_lane(acc[t], 0) + wasm_i32x4_extract_lane(acc[t], 1) + wasm_i32x4_extract_lane(acc[t], 2) + wasm_i32x4_extract_lane(acc[t], 3);
}
#endif

/* Bytes per activation that ternary_q8 expects (1 with relaxed SIMD, else 2). */
EXPORT(activation_bytes)
int activation_bytes(void) { return sizeof(act_t); }

static int32_t code_at(const uint8_t *row, int c) {
  return (row[(c >> 7) * BLOCK_BYTES + (c & 31)] >> (2 * ((c >> 5) & 3))) & 3;
}

/*
 * int8 activations q [n × cols] → x [n × xcols] of activation_bytes() each, zero padded to whole
 * blocks, and xsum [n × groups] = Σ q per group (the −Σx of Σt·x = Σc·x − Σx).
 */
EXPORT(layout_q8)
void layout_q8(const int8_t *q, int n, int cols, int group_size, int xcols, act_t *x, int32_t *xsum) {
  const int groups = (cols + group_size - 1) / group_size;
  for (int i = 0; i < n; i++) {
    const int8_t *qi = q + (long)i * cols;
    act_t *xi = x + (long)i * xcols;
    for (int c = 0; c < cols; c++) xi[c] = qi[c];
    for (int c = cols; c < xcols; c++) xi[c] = 0;
    for (int g = 0; g < groups; g++) {
      const int c1 = (g + 1) * group_size < cols ? (g + 1) * group_size : cols;
      int32_t s = 0;
      for (int c = g * group_size; c < c1; c++) s += qi[c];
      xsum[i * groups + g] = s;
    }
  }
}

typedef struct {
  const uint8_t *codes;
  const float *scales;
  const act_t *x;
  const int32_t *xsum;
  const float *sx, *bias;
  float *out;
  int rows, cols, scale_mode, group_size, xcols, n, rows_per_chunk;
} q8_ctx;

/* Row r × tokens [i0, i0+T): integer sums per scale group, then the reference's double steps. */
INLINE void q8_tile(const q8_ctx *k, int r, int i0, const int T) {
  const int nblocks = k->xcols / BLOCK_COLS;
  const int groups = (k->cols + k->group_size - 1) / k->group_size;
  const int simd = groups == 1 || k->group_size % BLOCK_COLS == 0;
  const int bpg = groups == 1 ? nblocks : k->group_size / BLOCK_COLS;
  const uint8_t *row = k->codes + (long)r * nblocks * BLOCK_BYTES;
  const act_t *xs[TILE_TOKENS];
  for (int t = 0; t < T; t++) xs[t] = k->x + (long)(i0 + t) * k->xcols;
  double tot[TILE_TOKENS];
  for (int t = 0; t < T; t++) tot[t] = 0;
  for (int g = 0; g < groups; g++) {
    int32_t d[TILE_TOKENS];
    if (simd) {
      const int b0 = g * bpg, b1 = b0 + bpg < nblocks ? b0 + bpg : nblocks;
      dot_tile(row, xs, T, b0, b1, d);
    } else {
      const int c0 = g * k->group_size, c1 = c0 + k->group_size < k->cols ? c0 + k->group_size : k->cols;
      for (int t = 0; t < T; t++) {
        int32_t s = 0;
        for (int c = c0; c < c1; c++) s += code_at(row, c) * xs[t][c];
        d[t] = s;
      }
    }
    const float s = k->scales[k->scale_mode == 0 ? 0 : k->scale_mode == 1 ? r : r * groups + g];
    for (int t = 0; t < T; t++) tot[t] += (double)(d[t] - k->xsum[(i0 + t) * groups + g]) * (double)s;
  }
  const double b = k->bias ? (double)k->bias[r] : 0.0;
  for (int t = 0; t < T; t++) k->out[(long)(i0 + t) * k->rows + r] = (float)(tot[t] / (double)k->sx[i0 + t] + b);
}

static void q8_chunk(const void *p, int chunk, int tid) {
  (void)tid;
  const q8_ctx *k = p;
  const int r0 = chunk * k->rows_per_chunk, r1 = r0 + k->rows_per_chunk < k->rows ? r0 + k->rows_per_chunk : k->rows;
  for (int r = r0; r < r1; r++) {
    int i = 0;
    for (; i + TILE_TOKENS <= k->n; i += TILE_TOKENS) q8_tile(k, r, i, TILE_TOKENS);
    for (; i < k->n; i++) q8_tile(k, r, i, 1);
  }
}

/*
 * out[i·rows + r] = (Σ_g (Σ_c t·q) · scale_g) / sx[i] + bias[r], x and xsum from layout_q8.
 * scale_mode 0 tensor, 1 channel, 2 group. bias may be 0 (none).
 */
EXPORT(ternary_q8)
void ternary_q8(const uint8_t *codes, int rows, int cols, const float *scales, int scale_mode, int group_size,
                const act_t *x, int xcols, const int32_t *xsum, int n, const float *sx, const float *bias, float *out) {
  const int per = chunk_items(rows, ROWS_PER_CHUNK);
  const q8_ctx k = { codes, scales, x, xsum, sx, bias, out, rows, cols, scale_mode, group_size, xcols, n, per };
  pool_run(q8_chunk, &k, (rows + per - 1) / per);
}

/* Float activations: four float32 chains of four lanes per token, fed one 16-column unit (unit u =
 * columns 16u … 16u+15, as one 16-byte load holds them) at a time in column order; the columns of a
 * scale group outside whole units (group sizes not a multiple of 16) are added one by one afterwards.
 * The order depends only on the columns, never on the token count or the thread. */

/* t = c − 1 of unit u's sixteen columns as four f32x4 (columns 4j … 4j+3 in f[j]). */
INLINE void unit_weights(const uint8_t *row, int u, v128_t f[4]) {
  const v128_t v = wasm_v128_load(row + (u >> 3) * BLOCK_BYTES + 16 * (u & 1));
  const v128_t t = wasm_i8x16_sub(wasm_v128_and(wasm_u16x8_shr(v, 2 * ((u >> 1) & 3)), code_mask()), wasm_i8x16_splat(1));
  const v128_t lo = wasm_i16x8_extend_low_i8x16(t), hi = wasm_i16x8_extend_high_i8x16(t);
  f[0] = wasm_f32x4_convert_i32x4(wasm_i32x4_extend_low_i16x8(lo));
  f[1] = wasm_f32x4_convert_i32x4(wasm_i32x4_extend_high_i16x8(lo));
  f[2] = wasm_f32x4_convert_i32x4(wasm_i32x4_extend_low_i16x8(hi));
  f[3] = wasm_f32x4_convert_i32x4(wasm_i32x4_extend_high_i16x8(hi));
}

/* d[t] = Σ (c − 1)·x over columns [c0, c1) of `row` for token xs[t], in float32. Each unpacked unit
 * serves all T tokens. */
INLINE void tdot_tile(const uint8_t *row, const float *const *xs, const int T, int c0, int c1, float *d) {
  const int u0 = (c0 + 15) >> 4, head_end = 16 * u0 < c1 ? 16 * u0 : c1;
  const int u1 = c1 >> 4 > u0 ? c1 >> 4 : u0, tail = 16 * u1 > head_end ? 16 * u1 : head_end;
  v128_t acc[TILE_TOKENS][4];
  for (int t = 0; t < T; t++)
    for (int j = 0; j < 4; j++) acc[t][j] = wasm_f32x4_splat(0);
  for (int u = u0; u < u1; u++) {
    v128_t f[4];
    unit_weights(row, u, f);
    for (int t = 0; t < T; t++)
      for (int j = 0; j < 4; j++) acc[t][j] = MUL_ADD(acc[t][j], f[j], wasm_v128_load(xs[t] + 16 * u + 4 * j));
  }
  for (int t = 0; t < T; t++) {
    const v128_t s = wasm_f32x4_add(wasm_f32x4_add(acc[t][0], acc[t][1]), wasm_f32x4_add(acc[t][2], acc[t][3]));
    float sum = (wasm_f32x4_extract_lane(s, 0) + wasm_f32x4_extract_lane(s, 1)) + (wasm_f32x4_extract_lane(s, 2) + wasm_f32x4_extract_lane(s, 3));
    for (int c = c0; c < head_end; c++) sum += (float)(code_at(row, c) - 1) * xs[t][c];
    for (int c = tail; c < c1; c++) sum += (float)(code_at(row, c) - 1) * xs[t][c];
    d[t] = sum;
  }
}

typedef struct {
  const uint8_t *codes;
  const float *scales, *x, *bias;
  float *out;
  int rows, cols, scale_mode, group_size, n, rows_per_chunk;
} f32_ctx;

/* Row r × tokens [i0, i0+T): float32 sums per scale group, combined in double like the reference. */
INLINE void f32_tile(const f32_ctx *k, int r, int i0, const int T) {
  const int row_bytes = (k->cols + BLOCK_COLS - 1) / BLOCK_COLS * BLOCK_BYTES, groups = (k->cols + k->group_size - 1) / k->group_size;
  const uint8_t *row = k->codes + (long)r * row_bytes;
  const float *xs[TILE_TOKENS];
  for (int t = 0; t < T; t++) xs[t] = k->x + (long)(i0 + t) * k->cols;
  double tot[TILE_TOKENS];
  for (int t = 0; t < T; t++) tot[t] = 0;
  for (int g = 0; g < groups; g++) {
    const int c0 = g * k->group_size, c1 = c0 + k->group_size < k->cols ? c0 + k->group_size : k->cols;
    float d[TILE_TOKENS];
    tdot_tile(row, xs, T, c0, c1, d);
    const double s = k->scales[k->scale_mode == 0 ? 0 : k->scale_mode == 1 ? r : r * groups + g];
    for (int t = 0; t < T; t++) tot[t] += (double)d[t] * s;
  }
  const double b = k->bias ? (double)k->bias[r] : 0.0;
  for (int t = 0; t < T; t++) k->out[(long)(i0 + t) * k->rows + r] = (float)(tot[t] + b);
}

static void f32_chunk(const void *p, int chunk, int tid) {
  (void)tid;
  const f32_ctx *k = p;
  const int r0 = chunk * k->rows_per_chunk, r1 = r0 + k->rows_per_chunk < k->rows ? r0 + k->rows_per_chunk : k->rows;
  for (int r = r0; r < r1; r++) {
    int i = 0;
    for (; i + TILE_TOKENS <= k->n; i += TILE_TOKENS) f32_tile(k, r, i, TILE_TOKENS);
    for (; i < k->n; i++) f32_tile(k, r, i, 1);
  }
}

/* Float activations on ternary weights: Σ_g scale_g · Σ_c t·x (float32 per group, see tdot_tile) + bias. */
EXPORT(ternary_f32)
void ternary_f32(const uint8_t *codes, int rows, int cols, const float *scales, int scale_mode, int group_size,
                 const float *x, int n, const float *bias, float *out) {
  const int per = chunk_items(rows, ROWS_PER_CHUNK);
  const f32_ctx k = { codes, scales, x, bias, out, rows, cols, scale_mode, group_size, n, per };
  pool_run(f32_chunk, &k, (rows + per - 1) / per);
}

/* tritpack t2 (packing 0) or t158 (1) rows [row0, row0+nrows) → compute layout, every byte written: the
 * addon's tp_repack (native/tp_repack.c). Returns the flat index of the lowest invalid t2 code 3, or −1
 * (as a double: an i64 result would reach JavaScript as a BigInt). */
EXPORT(repack)
double repack(int packing, const uint8_t *packed, size_t packed_len, int row0, int nrows, int cols, uint8_t *out) {
  return (double)tp_repack(packing, packed, packed_len, row0, nrows, cols, out);
}
