/*
 * Ternary kernels over the i2x128 compute layout (see tp.h): int8-activation matmul (BitLinear) with
 * exact integer sums, and float-activation matmul. (Repacking into the layout: tp_repack.c.)
 *
 * The int8 kernel uses Σ t·x = Σ c·x − Σ x with c = t + 1 ∈ {0,1,2}: codes are unsigned, so AVX2's
 * `maddubs` (u8 × s8 → s16 pairs, |pair| ≤ 2·2·128 = 512, never saturating) does the products, and
 * Σ x is computed once per token and group. Sums are int32 and exact; the float combination
 * afterwards repeats the reference backend's double-precision steps in the same order.
 * AArch64 does the same sums with NEON: SDOT where the CPU has it, widening multiplies otherwise.
 * WebAssembly (TP_WASM) with SIMD128: codes widened to int16 meet int16 activations in i32x4.dot_i16x8;
 * with relaxed SIMD, the i8 × i7 dot on int8 activations.
 */
#include "tp.h"
#include <stdlib.h>
#include <string.h>

#define TOKEN_TILE 64   /* tokens whose activations stay in L2 while a chunk of rows passes over them */

/* Activations as the integer kernels read them: int8, except plain SIMD128, which has no 8-bit
 * multiply-add and takes them widened to int16 (i32x4.dot_i16x8_s does the products). */
#if defined(TP_WASM) && !defined(__wasm_relaxed_simd__)
typedef int16_t act_t;
#else
typedef int8_t act_t;
#endif

static inline int code_at(const uint8_t *row, int c) {
  return (row[(c >> 7) * TP_BLOCK_BYTES + (c & 31)] >> (2 * ((c >> 5) & 3))) & 3;
}

/* ---------------------------------------------------------------------------------------------- */
/* int8 activations */

typedef struct {
  const tp_ternary *w;
  const act_t *x;       /* n × xcols, zero padded */
  const int8_t *xp;     /* the same permuted for dot_vnni, or NULL when it is not used */
  int xcols, n, groups, blocks_per_group, simd, dotprod;
  const int32_t *xsum;  /* n × groups: Σ q over each group's real columns */
  const float *sx, *bias;
  float *out;
  int chunk_rows;
} q8_ctx;

static inline float scale_of(const tp_ternary *w, int r, int g, int groups) {
  return w->scales[w->scale_mode == 0 ? 0 : w->scale_mode == 1 ? (size_t)r : (size_t)r * groups + g];
}

#if defined(TP_X86)
/* Σ c·x of the 128 columns of one block for one token: four maddubs, 16-bit sums ≤ 4·512. */
__attribute__((target("avx2"), always_inline))
static inline __m256i block_sum16(__m256i c0, __m256i c1, __m256i c2, __m256i c3, const int8_t *xb) {
  __m256i p0 = _mm256_maddubs_epi16(c0, _mm256_loadu_si256((const __m256i *)xb));
  __m256i p1 = _mm256_maddubs_epi16(c1, _mm256_loadu_si256((const __m256i *)(xb + 32)));
  __m256i p2 = _mm256_maddubs_epi16(c2, _mm256_loadu_si256((const __m256i *)(xb + 64)));
  __m256i p3 = _mm256_maddubs_epi16(c3, _mm256_loadu_si256((const __m256i *)(xb + 96)));
  return _mm256_add_epi16(_mm256_add_epi16(p0, p1), _mm256_add_epi16(p2, p3));
}

/* Blocks [b0, b1) for N tokens, two blocks per step (16-bit partial sums ≤ 8·512 = 4096, exact)
 * so the widening to 32 bits and the prefetch happen once per 64 bytes of weights. */
__attribute__((target("avx2"), always_inline))
static inline void dot_avx2(const uint8_t *w, const int8_t *x, size_t xs, int b0, int b1, int32_t *out, const int N) {
  const __m256i mask = _mm256_set1_epi8(3), ones = _mm256_set1_epi16(1);
  __m256i acc[4];
  for (int j = 0; j < N; j++) acc[j] = _mm256_setzero_si256();
  int b = b0;
  for (; b + 2 <= b1; b += 2) {
    const uint8_t *wb = w + (size_t)b * TP_BLOCK_BYTES;
    TP_PREFETCH(wb);
    const __m256i v = _mm256_loadu_si256((const __m256i *)wb), u = _mm256_loadu_si256((const __m256i *)(wb + 32));
    const __m256i v0 = _mm256_and_si256(v, mask), v1 = _mm256_and_si256(_mm256_srli_epi16(v, 2), mask);
    const __m256i v2 = _mm256_and_si256(_mm256_srli_epi16(v, 4), mask), v3 = _mm256_and_si256(_mm256_srli_epi16(v, 6), mask);
    const __m256i u0 = _mm256_and_si256(u, mask), u1 = _mm256_and_si256(_mm256_srli_epi16(u, 2), mask);
    const __m256i u2 = _mm256_and_si256(_mm256_srli_epi16(u, 4), mask), u3 = _mm256_and_si256(_mm256_srli_epi16(u, 6), mask);
    for (int j = 0; j < N; j++) {
      const int8_t *xb = x + j * xs + (size_t)b * TP_BLOCK_COLS;
      const __m256i s = _mm256_add_epi16(block_sum16(v0, v1, v2, v3, xb), block_sum16(u0, u1, u2, u3, xb + TP_BLOCK_COLS));
      acc[j] = _mm256_add_epi32(acc[j], _mm256_madd_epi16(s, ones));
    }
  }
  if (b < b1) {
    const __m256i v = _mm256_loadu_si256((const __m256i *)(w + (size_t)b * TP_BLOCK_BYTES));
    const __m256i v0 = _mm256_and_si256(v, mask), v1 = _mm256_and_si256(_mm256_srli_epi16(v, 2), mask);
    const __m256i v2 = _mm256_and_si256(_mm256_srli_epi16(v, 4), mask), v3 = _mm256_and_si256(_mm256_srli_epi16(v, 6), mask);
    for (int j = 0; j < N; j++) acc[j] = _mm256_add_epi32(acc[j], _mm256_madd_epi16(block_sum16(v0, v1, v2, v3, x + j * xs + (size_t)b * TP_BLOCK_COLS), ones));
  }
  for (int j = 0; j < N; j++) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(acc[j]), _mm256_extracti128_si256(acc[j], 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    out[j] = _mm_cvtsi128_si32(s);
  }
}

/*
 * One token, AVX-512 VNNI: a 64-byte load holds two blocks (256 columns). Plane k is isolated with
 * a mask alone, v & (3 << 2k) = c·4^k, without shifting it down: `vpdpbusd` (u8 × s8 → int32, exact)
 * then sums 4^k·c·x, and the plane's total is divided by 4^k exactly at the end (every lane is a
 * multiple of 4^k; |4^3 · Σ c·x| ≤ 64·2·128·cols stays in int32 up to 131072 columns). The
 * activations are pre-permuted per call (`xp`, see permute_pairs) so that lanes 0–31 and 32–63 of a
 * plane line up with the columns of the first and second block. Blocks [b0, b1), b0 even; an odd
 * last block is done with the 256-bit form on the unpermuted activations. One and + one dot per
 * 16 bytes of weights keeps a core streaming near DRAM speed.
 */
/* Σ c·x from the four plane accumulators: plane k's lanes are multiples of 4^k, divided exactly. */
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"), always_inline))
static inline int32_t planes_total(__m512i a0, __m512i a1, __m512i a2, __m512i a3) {
  return _mm512_reduce_add_epi32(_mm512_add_epi32(_mm512_add_epi32(a0, _mm512_srai_epi32(a1, 2)), _mm512_add_epi32(_mm512_srai_epi32(a2, 4), _mm512_srai_epi32(a3, 6))));
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))
static int32_t dot_vnni(const uint8_t *w, const int8_t *xp, const int8_t *x, int b0, int b1) {
  const __m512i m0 = _mm512_set1_epi8(3), m1 = _mm512_set1_epi8(12), m2 = _mm512_set1_epi8(48), m3 = _mm512_set1_epi8((char)192);
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0, e0 = a0, e1 = a0, e2 = a0, e3 = a0;
  int b = b0;
  for (; b + 4 <= b1; b += 4) {
    const uint8_t *wb = w + (size_t)b * TP_BLOCK_BYTES;
    const int8_t *xb = xp + (size_t)b * TP_BLOCK_COLS;
    TP_PREFETCH(wb);
    TP_PREFETCH(wb + 64);
    const __m512i v = _mm512_loadu_si512(wb), u = _mm512_loadu_si512(wb + 64);
    a0 = _mm512_dpbusd_epi32(a0, _mm512_and_si512(v, m0), _mm512_load_si512(xb));
    a1 = _mm512_dpbusd_epi32(a1, _mm512_and_si512(v, m1), _mm512_load_si512(xb + 64));
    a2 = _mm512_dpbusd_epi32(a2, _mm512_and_si512(v, m2), _mm512_load_si512(xb + 128));
    a3 = _mm512_dpbusd_epi32(a3, _mm512_and_si512(v, m3), _mm512_load_si512(xb + 192));
    e0 = _mm512_dpbusd_epi32(e0, _mm512_and_si512(u, m0), _mm512_load_si512(xb + 256));
    e1 = _mm512_dpbusd_epi32(e1, _mm512_and_si512(u, m1), _mm512_load_si512(xb + 320));
    e2 = _mm512_dpbusd_epi32(e2, _mm512_and_si512(u, m2), _mm512_load_si512(xb + 384));
    e3 = _mm512_dpbusd_epi32(e3, _mm512_and_si512(u, m3), _mm512_load_si512(xb + 448));
  }
  if (b + 2 <= b1) {
    const __m512i v = _mm512_loadu_si512(w + (size_t)b * TP_BLOCK_BYTES);
    const int8_t *xb = xp + (size_t)b * TP_BLOCK_COLS;
    a0 = _mm512_dpbusd_epi32(a0, _mm512_and_si512(v, m0), _mm512_load_si512(xb));
    a1 = _mm512_dpbusd_epi32(a1, _mm512_and_si512(v, m1), _mm512_load_si512(xb + 64));
    a2 = _mm512_dpbusd_epi32(a2, _mm512_and_si512(v, m2), _mm512_load_si512(xb + 128));
    a3 = _mm512_dpbusd_epi32(a3, _mm512_and_si512(v, m3), _mm512_load_si512(xb + 192));
    b += 2;
  }
  int32_t s = planes_total(_mm512_add_epi32(a0, e0), _mm512_add_epi32(a1, e1), _mm512_add_epi32(a2, e2), _mm512_add_epi32(a3, e3));
  if (b < b1) {
    const __m256i m = _mm256_set1_epi8(3), v = _mm256_loadu_si256((const __m256i *)(w + (size_t)b * TP_BLOCK_BYTES));
    const int8_t *xb = x + (size_t)b * TP_BLOCK_COLS;
    __m256i t = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_and_si256(v, m), _mm256_loadu_si256((const __m256i *)xb));
    t = _mm256_dpbusd_epi32(t, _mm256_and_si256(_mm256_srli_epi16(v, 2), m), _mm256_loadu_si256((const __m256i *)(xb + 32)));
    t = _mm256_dpbusd_epi32(t, _mm256_and_si256(_mm256_srli_epi16(v, 4), m), _mm256_loadu_si256((const __m256i *)(xb + 64)));
    t = _mm256_dpbusd_epi32(t, _mm256_and_si256(_mm256_srli_epi16(v, 6), m), _mm256_loadu_si256((const __m256i *)(xb + 96)));
    __m128i h = _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
    h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4e));
    h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xb1));
    s += _mm_cvtsi128_si32(h);
  }
  return s;
}

/*
 * Decode, two adjacent rows at once: the same per-row sums as dot_vnni (so the same bits), but each
 * permuted activation vector is loaded once for both rows and one pass's fixed costs (accumulator set-up,
 * the final reductions overlapping the next rows' loads) are shared. On 512-byte rows (2048 columns)
 * those costs rival the streaming itself: one thread streamed the synthetic TinyLlama's ternary weights
 * at 25.2 GB/s against 22.9 row by row (two threads: the same, 34.5; 5 alternating runs of a C harness).
 * The two rows are contiguous, one stream for the hardware prefetcher.
 */
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))
static void dot_vnni2(const uint8_t *w0, const uint8_t *w1, const int8_t *xp, const int8_t *x, int b0, int b1, int32_t out[2]) {
  const __m512i m0 = _mm512_set1_epi8(3), m1 = _mm512_set1_epi8(12), m2 = _mm512_set1_epi8(48), m3 = _mm512_set1_epi8((char)192);
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0, c0 = a0, c1 = a0, c2 = a0, c3 = a0;
  int b = b0;
  for (; b + 2 <= b1; b += 2) {
    const uint8_t *wa = w0 + (size_t)b * TP_BLOCK_BYTES, *wb = w1 + (size_t)b * TP_BLOCK_BYTES;
    const int8_t *xb = xp + (size_t)b * TP_BLOCK_COLS;
    TP_PREFETCH(wa);
    TP_PREFETCH(wb);
    const __m512i v = _mm512_loadu_si512(wa), u = _mm512_loadu_si512(wb);
    const __m512i x0 = _mm512_load_si512(xb), x1 = _mm512_load_si512(xb + 64), x2 = _mm512_load_si512(xb + 128), x3 = _mm512_load_si512(xb + 192);
    a0 = _mm512_dpbusd_epi32(a0, _mm512_and_si512(v, m0), x0);
    a1 = _mm512_dpbusd_epi32(a1, _mm512_and_si512(v, m1), x1);
    a2 = _mm512_dpbusd_epi32(a2, _mm512_and_si512(v, m2), x2);
    a3 = _mm512_dpbusd_epi32(a3, _mm512_and_si512(v, m3), x3);
    c0 = _mm512_dpbusd_epi32(c0, _mm512_and_si512(u, m0), x0);
    c1 = _mm512_dpbusd_epi32(c1, _mm512_and_si512(u, m1), x1);
    c2 = _mm512_dpbusd_epi32(c2, _mm512_and_si512(u, m2), x2);
    c3 = _mm512_dpbusd_epi32(c3, _mm512_and_si512(u, m3), x3);
  }
  out[0] = planes_total(a0, a1, a2, a3);
  out[1] = planes_total(c0, c1, c2, c3);
  if (b < b1) { /* an odd last block */
    out[0] += dot_vnni(w0, xp, x, b, b1);
    out[1] += dot_vnni(w1, xp, x, b, b1);
  }
}

/* xp for dot_vnni: for each pair of blocks (b, b+1) and plane k, the 32 activations of block b's
 * plane k followed by block b+1's. An odd last block is left out (dot_vnni reads it from x). */
static void permute_pairs(const int8_t *x, int nblocks, int8_t *xp) {
  for (int b = 0; b + 2 <= nblocks; b += 2)
    for (int k = 0; k < 4; k++)
      for (int h = 0; h < 2; h++) memcpy(xp + (size_t)b * TP_BLOCK_COLS + k * 64 + h * 32, x + (size_t)(b + h) * TP_BLOCK_COLS + k * 32, 32);
}

#define SIMD_ROWS __attribute__((target("avx2"))) /* q8_rows_simd's target */

/* Σ c·x of N tokens (4, or 1) starting at `token`, blocks [b0, b1): VNNI for a lone token where the
 * activations were permuted for it, the AVX2 kernel otherwise. */
__attribute__((target("avx2"), always_inline))
static inline void dot_simd(const q8_ctx *k, const uint8_t *row, int token, int b0, int b1, int32_t *out, const int N) {
  const size_t xo = (size_t)token * k->xcols;
  if (N == 1 && k->xp) *out = dot_vnni(row, k->xp + xo, k->x + xo, b0, b1);
  else dot_avx2(row, k->x + xo, N == 1 ? 0 : k->xcols, b0, b1, out, N);
}

#elif defined(TP_ARM64)
/*
 * NEON. A block is two 16-byte loads (bytes 0–15 and 16–31); plane k of each, (v >> 2k) & 3, holds
 * the codes of columns 32k..32k+15 and 32k+16..32k+31 of the block, so plane vector i = 2k + h
 * meets the 16 activations at xb + 16·i. Codes 0..2 read as int8 are the same values.
 */
static inline void block_planes(const uint8_t *wb, int8x16_t c[8]) {
  const uint8x16_t m = vdupq_n_u8(3), lo = vld1q_u8(wb), hi = vld1q_u8(wb + 16);
  c[0] = vreinterpretq_s8_u8(vandq_u8(lo, m));
  c[1] = vreinterpretq_s8_u8(vandq_u8(hi, m));
  c[2] = vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(lo, 2), m));
  c[3] = vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(hi, 2), m));
  c[4] = vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(lo, 4), m));
  c[5] = vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(hi, 4), m));
  c[6] = vreinterpretq_s8_u8(vshrq_n_u8(lo, 6));
  c[7] = vreinterpretq_s8_u8(vshrq_n_u8(hi, 6));
}

/*
 * Without dotprod: widening multiplies (s8 × s8 → s16). Every product c·x lies in [−256, 254];
 * each of the four int16 chains takes four products per lane and block, and their sum (16 products,
 * within [−4096, 4064]) is formed in int16 before one pairwise widening add into int32: exact.
 * Four chains per token keep a lone token's stream off one multiply-accumulate latency chain.
 */
__attribute__((always_inline))
static inline void dot_neon(const uint8_t *w, const int8_t *x, size_t xs, int b0, int b1, int32_t *out, const int N) {
  int32x4_t acc[4];
  for (int j = 0; j < N; j++) acc[j] = vdupq_n_s32(0);
  for (int b = b0; b < b1; b++) {
    const uint8_t *wb = w + (size_t)b * TP_BLOCK_BYTES;
    TP_PREFETCH(wb);
    int8x16_t c[8];
    block_planes(wb, c);
    for (int j = 0; j < N; j++) {
      const int8_t *xb = x + j * xs + (size_t)b * TP_BLOCK_COLS;
      int16x8_t p[4];
      for (int q = 0; q < 4; q++) {
        const int8x16_t xa = vld1q_s8(xb + 16 * q), xc = vld1q_s8(xb + 16 * (q + 4));
        p[q] = vmull_s8(vget_low_s8(c[q]), vget_low_s8(xa));
        p[q] = vmlal_high_s8(p[q], c[q], xa);
        p[q] = vmlal_s8(p[q], vget_low_s8(c[q + 4]), vget_low_s8(xc));
        p[q] = vmlal_high_s8(p[q], c[q + 4], xc);
      }
      acc[j] = vpadalq_s16(acc[j], vaddq_s16(vaddq_s16(p[0], p[1]), vaddq_s16(p[2], p[3])));
    }
  }
  for (int j = 0; j < N; j++) out[j] = vaddvq_s32(acc[j]);
}

/*
 * With dotprod: SDOT sums four int8 products into each int32 lane (|sum| ≤ 4·256), exact, and the
 * int32 lanes stay exact (|Σ c·x| ≤ 256·cols). Four accumulators per token, as above.
 * The target is spelled "arch=armv8.2-a+dotprod" because GCC 12's arm_neon.h declares vdotq_s32 for
 * that arch (a bare "+dotprod" fails to inline it; clang accepts both); dotprod is an Armv8.2
 * extension, so a CPU reporting HWCAP_ASIMDDP implements the rest of Armv8.2-A too.
 */
#define DOTPROD "arch=armv8.2-a+dotprod"
__attribute__((target(DOTPROD), always_inline))
static inline void dot_sdot(const uint8_t *w, const int8_t *x, size_t xs, int b0, int b1, int32_t *out, const int N) {
  int32x4_t acc[4][4];
  for (int j = 0; j < N; j++) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = vdupq_n_s32(0);
  for (int b = b0; b < b1; b++) {
    const uint8_t *wb = w + (size_t)b * TP_BLOCK_BYTES;
    TP_PREFETCH(wb);
    int8x16_t c[8];
    block_planes(wb, c);
    for (int j = 0; j < N; j++) {
      const int8_t *xb = x + j * xs + (size_t)b * TP_BLOCK_COLS;
      for (int i = 0; i < 8; i++) acc[j][i & 3] = vdotq_s32(acc[j][i & 3], c[i], vld1q_s8(xb + 16 * i));
    }
  }
  for (int j = 0; j < N; j++) out[j] = vaddvq_s32(vaddq_s32(vaddq_s32(acc[j][0], acc[j][1]), vaddq_s32(acc[j][2], acc[j][3])));
}

__attribute__((target(DOTPROD)))
static void dot4_sdot(const uint8_t *w, const int8_t *x, size_t xs, int b0, int b1, int32_t *out) { dot_sdot(w, x, xs, b0, b1, out, 4); }
__attribute__((target(DOTPROD)))
static void dot1_sdot(const uint8_t *w, const int8_t *x, int b0, int b1, int32_t *out) { dot_sdot(w, x, 0, b0, b1, out, 1); }

#define SIMD_ROWS /* NEON is in the AArch64 baseline */

/* Σ c·x of N tokens (4, or 1) starting at `token`, blocks [b0, b1): SDOT where the CPU has it. */
__attribute__((always_inline))
static inline void dot_simd(const q8_ctx *k, const uint8_t *row, int token, int b0, int b1, int32_t *out, const int N) {
  const int8_t *x = k->x + (size_t)token * k->xcols;
  if (!k->dotprod) dot_neon(row, x, k->xcols, b0, b1, out, N);
  else if (N == 4) dot4_sdot(row, x, k->xcols, b0, b1, out);
  else dot1_sdot(row, x, b0, b1, out);
}

#elif defined(TP_WASM)
/*
 * SIMD128. A block is two 16-byte halves; plane k of half h, (v >> 2k) & 3, holds the codes of
 * columns 32k + 16h + 0..15 of the block. The shift is a 16-bit one (i16x8.shr_u): the & 3 keeps only
 * bits of the same byte, and V8 emulates 8-bit shifts on x64 with several instructions.
 * The mask splat(3) is read through a volatile load: with a visible constant, clang proves the masked
 * 16-bit shift equal to an 8-bit shift and emits i8x16.shr_u after all (V8 lowers it to a shift, a
 * mask built in three instructions and an and, on every use).
 */
static const v128_t code_mask_storage = { 0x03030303, 0x03030303, 0x03030303, 0x03030303 };
static inline v128_t code_mask(void) { return *(const volatile v128_t *)&code_mask_storage; }

#ifdef __wasm_relaxed_simd__
/*
 * Relaxed SIMD multiplies i8 activations by i7 codes (0..2 are valid i7, so the result is
 * deterministic) into i16 pair sums: |lane| ≤ 2·128·2 per product pair, ≤ 4096 per block; they are
 * widened to i32 every 4 blocks at most (≤ 16384 < 2^15, exact). (The fused "…_add_s_i32x4" form is
 * not used: clang 16 and Node 20's V8 disagree on its encoding.)
 */
__attribute__((always_inline))
static inline void dot_wasm(const uint8_t *w, const act_t *x, size_t xs, int b0, int b1, int32_t *out, const int N) {
  const v128_t mask = code_mask();
  const act_t *xt[4];
  v128_t acc[4];
  for (int j = 0; j < N; j++) {
    xt[j] = x + j * xs;
    acc[j] = wasm_i32x4_splat(0);
  }
  for (int b = b0; b < b1;) {
    const int end = b + 4 < b1 ? b + 4 : b1;
    v128_t s[4];
    for (int j = 0; j < N; j++) s[j] = wasm_i16x8_splat(0);
    for (; b < end; b++) {
      for (int h = 0; h < 2; h++) {
        const v128_t v = wasm_v128_load(w + (size_t)b * TP_BLOCK_BYTES + 16 * h);
        for (int p = 0; p < 4; p++) {
          const v128_t c = wasm_v128_and(p ? wasm_u16x8_shr(v, 2 * p) : v, mask);
          for (int j = 0; j < N; j++) {
            const act_t *xb = xt[j] + (size_t)b * TP_BLOCK_COLS + 32 * p + 16 * h;
            s[j] = wasm_i16x8_add(s[j], __builtin_wasm_relaxed_dot_i8x16_i7x16_s_i16x8(wasm_v128_load(xb), c));
          }
        }
      }
    }
    for (int j = 0; j < N; j++) acc[j] = wasm_i32x4_add(acc[j], wasm_i32x4_extadd_pairwise_i16x8(s[j]));
  }
  for (int j = 0; j < N; j++)
    out[j] = wasm_i32x4_extract_lane(acc[j], 0) + wasm_i32x4_extract_lane(acc[j], 1) + wasm_i32x4_extract_lane(acc[j], 2) + wasm_i32x4_extract_lane(acc[j], 3);
}
#else
/* Plain SIMD128: the codes of each plane are widened to int16 and i32x4.dot_i16x8_s takes them
 * against the int16 activations (products ≤ 256, pair sums exact in int32). */
__attribute__((always_inline))
static inline void dot_wasm(const uint8_t *w, const act_t *x, size_t xs, int b0, int b1, int32_t *out, const int N) {
  const v128_t mask = code_mask();
  const act_t *xt[4];
  v128_t acc[4];
  for (int j = 0; j < N; j++) {
    xt[j] = x + j * xs;
    acc[j] = wasm_i32x4_splat(0);
  }
  for (int b = b0; b < b1; b++) {
    for (int h = 0; h < 2; h++) {
      const v128_t v = wasm_v128_load(w + (size_t)b * TP_BLOCK_BYTES + 16 * h);
      for (int p = 0; p < 4; p++) {
        const v128_t c = wasm_v128_and(p ? wasm_u16x8_shr(v, 2 * p) : v, mask);
        const v128_t lo = wasm_u16x8_extend_low_u8x16(c), hi = wasm_u16x8_extend_high_u8x16(c);
        for (int j = 0; j < N; j++) {
          const act_t *xb = xt[j] + (size_t)b * TP_BLOCK_COLS + 32 * p + 16 * h;
          acc[j] = wasm_i32x4_add(acc[j], wasm_i32x4_add(wasm_i32x4_dot_i16x8(lo, wasm_v128_load(xb)), wasm_i32x4_dot_i16x8(hi, wasm_v128_load(xb + 8))));
        }
      }
    }
  }
  for (int j = 0; j < N; j++)
    out[j] = wasm_i32x4_extract_lane(acc[j], 0) + wasm_i32x4_extract_lane(acc[j], 1) + wasm_i32x4_extract_lane(acc[j], 2) + wasm_i32x4_extract_lane(acc[j], 3);
}
#endif

#define SIMD_ROWS /* SIMD128 is fixed when the module is built */

/* The four-token dot: plain SIMD128's as a function of its own (inlined into q8_rows_simd, V8's code
 * for it ran 64 tokens 20% slower, 16 vs 13 ms on 2048 × 2048), relaxed SIMD's inlined (3–8% faster
 * than called). */
#ifdef __wasm_relaxed_simd__
#define DOT4_INLINE inline __attribute__((always_inline))
#else
#define DOT4_INLINE __attribute__((noinline))
#endif
static DOT4_INLINE void dot4_wasm(const uint8_t *w, const act_t *x, size_t xs, int b0, int b1, int32_t *out) { dot_wasm(w, x, xs, b0, b1, out, 4); }

/* Σ c·x of N tokens (4, or 1) starting at `token`, blocks [b0, b1). */
__attribute__((always_inline))
static inline void dot_simd(const q8_ctx *k, const uint8_t *row, int token, int b0, int b1, int32_t *out, const int N) {
  if (N == 4) dot4_wasm(row, k->x + (size_t)token * k->xcols, k->xcols, b0, b1, out);
  else dot_wasm(row, k->x + (size_t)token * k->xcols, k->xcols, b0, b1, out, N);
}
#endif

/* Portable: Σ c·x over columns [c0, c1) of one row. */
static int32_t dot_scalar(const uint8_t *row, const act_t *x, int c0, int c1) {
  int32_t acc = 0;
  for (int c = c0; c < c1; c++) acc += code_at(row, c) * x[c];
  return acc;
}

/* Σ t·q of one row and one group (exact), from the Σ c·q the kernels compute. */
static inline double group_term(const q8_ctx *k, int r, int g, int token, int32_t dot) {
  return (double)(dot - k->xsum[(size_t)token * k->groups + g]) * (double)scale_of(k->w, r, g, k->groups);
}

#if defined(TP_X86) || defined(TP_ARM64) || defined(TP_WASM)
#define ROW_BLOCK 32

/*
 * Rows [r0, r1) for tokens [t0, t1), at most TOKEN_TILE of them. The integer dots of a block of rows
 * go to a small buffer first and the float epilogue (the reference's double steps: Σ_g term, / s_x,
 * + bias, to float) runs afterwards, so its division latency never stalls the streaming loop.
 */
SIMD_ROWS
static void q8_rows_simd(const q8_ctx *k, int r0, int r1, int t0, int t1) {
  const tp_ternary *w = k->w;
  const int nblocks = w->row_bytes / TP_BLOCK_BYTES, nt = t1 - t0;
  int32_t dots[ROW_BLOCK * TOKEN_TILE];
  double tot[ROW_BLOCK * TOKEN_TILE];
  for (int rb = r0; rb < r1; rb += ROW_BLOCK) {
    const int re = rb + ROW_BLOCK < r1 ? rb + ROW_BLOCK : r1;
    for (int g = 0; g < k->groups; g++) {
      const int b0 = g * k->blocks_per_group, b1 = b0 + k->blocks_per_group < nblocks ? b0 + k->blocks_per_group : nblocks;
      for (int r = rb; r < re; r++) {
        const uint8_t *row = w->codes + (size_t)r * w->row_bytes;
        int32_t *d = dots + (size_t)(r - rb) * TOKEN_TILE;
        int i = 0;
        for (; i + 4 <= nt; i += 4) dot_simd(k, row, t0 + i, b0, b1, d + i, 4);
        for (; i < nt; i++) dot_simd(k, row, t0 + i, b0, b1, d + i, 1);
      }
      for (int r = rb; r < re; r++) {
        for (int i = 0; i < nt; i++) {
          const size_t at = (size_t)(r - rb) * TOKEN_TILE + i;
          const double term = group_term(k, r, g, t0 + i, dots[at]);
          tot[at] = g == 0 ? 0.0 + term : tot[at] + term;
        }
      }
    }
    for (int r = rb; r < re; r++) {
      const double b = k->bias ? (double)k->bias[r] : 0.0;
      for (int i = 0; i < nt; i++) k->out[(size_t)(t0 + i) * w->rows + r] = (float)(tot[(size_t)(r - rb) * TOKEN_TILE + i] / (double)k->sx[t0 + i] + b);
    }
  }
}
#endif

/* Portable: any group size, one column at a time. */
static void q8_rows_portable(const q8_ctx *k, int r0, int r1, int t0, int t1) {
  const tp_ternary *w = k->w;
  for (int r = r0; r < r1; r++) {
    const uint8_t *row = w->codes + (size_t)r * w->row_bytes;
    const double b = k->bias ? (double)k->bias[r] : 0.0;
    for (int i = t0; i < t1; i++) {
      double tot = 0;
      for (int g = 0; g < k->groups; g++) {
        const int c0 = g * w->group_size, c1 = c0 + w->group_size < w->cols ? c0 + w->group_size : w->cols;
        tot += group_term(k, r, g, i, dot_scalar(row, k->x + (size_t)i * k->xcols, c0, c1));
      }
      k->out[(size_t)i * w->rows + r] = (float)(tot / (double)k->sx[i] + b);
    }
  }
}

#if defined(TP_X86) || defined(TP_WASM)
/* Decode (one token: VNNI on x86, any wasm module): each row's dot and its epilogue straight away, no
 * staging buffers. The same double steps in the same order as q8_rows_simd, so the same bits. */
static void q8_rows_decode(const q8_ctx *k, int r0, int r1) {
  const tp_ternary *w = k->w;
  const int nblocks = w->row_bytes / TP_BLOCK_BYTES;
  const double sx = (double)k->sx[0];
  int r = r0;
#if defined(TP_X86)
  for (; r + 2 <= r1; r += 2) {
    const uint8_t *row = w->codes + (size_t)r * w->row_bytes;
    double tot[2] = { 0, 0 };
    for (int g = 0; g < k->groups; g++) {
      const int b0 = g * k->blocks_per_group, b1 = b0 + k->blocks_per_group < nblocks ? b0 + k->blocks_per_group : nblocks;
      int32_t d[2];
      dot_vnni2(row, row + w->row_bytes, k->xp, k->x, b0, b1, d);
      for (int j = 0; j < 2; j++) {
        const double term = group_term(k, r + j, g, 0, d[j]);
        tot[j] = g == 0 ? 0.0 + term : tot[j] + term;
      }
    }
    for (int j = 0; j < 2; j++) k->out[r + j] = (float)(tot[j] / sx + (k->bias ? (double)k->bias[r + j] : 0.0));
  }
#endif
  for (; r < r1; r++) { /* the last row of an odd count; every row on wasm */
    const uint8_t *row = w->codes + (size_t)r * w->row_bytes;
    double tot = 0;
    for (int g = 0; g < k->groups; g++) {
      const int b0 = g * k->blocks_per_group, b1 = b0 + k->blocks_per_group < nblocks ? b0 + k->blocks_per_group : nblocks;
#if defined(TP_X86)
      const int32_t dot = dot_vnni(row, k->xp, k->x, b0, b1);
#else
      int32_t dot;
      dot_wasm(row, k->x, 0, b0, b1, &dot, 1);
#endif
      const double term = group_term(k, r, g, 0, dot);
      tot = g == 0 ? 0.0 + term : tot + term;
    }
    k->out[r] = (float)(tot / sx + (k->bias ? (double)k->bias[r] : 0.0));
  }
}
#endif

static void q8_chunk(void *p, int chunk) {
  const q8_ctx *k = p;
  const int r0 = chunk * k->chunk_rows, r1 = r0 + k->chunk_rows < k->w->rows ? r0 + k->chunk_rows : k->w->rows;
#if defined(TP_X86)
  if (k->n == 1 && k->xp) { q8_rows_decode(k, r0, r1); return; }
#elif defined(TP_WASM)
  if (k->n == 1 && k->simd) { q8_rows_decode(k, r0, r1); return; }
#endif
  for (int t0 = 0; t0 < k->n; t0 += TOKEN_TILE) {
    const int t1 = t0 + TOKEN_TILE < k->n ? t0 + TOKEN_TILE : k->n;
#if defined(TP_X86) || defined(TP_ARM64) || defined(TP_WASM)
    if (k->simd) { q8_rows_simd(k, r0, r1, t0, t1); continue; }
#endif
    q8_rows_portable(k, r0, r1, t0, t1);
  }
}

/* Per-call activation scratch, kept between calls (a decode step makes ~150 of them); one per JS
 * thread that calls in, since the addon may be loaded by worker threads. */
TP_CALLER_LOCAL struct { void *p; size_t cap; } scratch;

static void *scratch_get(size_t bytes) {
  if (bytes > scratch.cap) {
    free(scratch.p);
    scratch.cap = bytes > 2 * scratch.cap ? bytes : 2 * scratch.cap;
    scratch.p = aligned_alloc(64, scratch.cap);
  }
  return scratch.p;
}

void tp_ternary_q8(const tp_ternary *w, const int8_t *q, int n, const float *sx, const float *bias, float *out) {
  const int groups = (w->cols + w->group_size - 1) / w->group_size;
  const int simd = tp_has_simd() && (groups == 1 || w->group_size % TP_BLOCK_COLS == 0);
  const int nblocks = w->row_bytes / TP_BLOCK_BYTES, bpg = groups == 1 ? nblocks : w->group_size / TP_BLOCK_COLS;
  const int vnni = simd && tp_has_avx512vnni() && (groups == 1 || bpg % 2 == 0);
  const int xcols = nblocks * TP_BLOCK_COLS;
  /* 64-byte aligned: an activation load must never straddle two cache lines */
  const size_t xbytes = ((size_t)n * xcols * sizeof(act_t) + 63) / 64 * 64, sumbytes = (size_t)n * groups * sizeof(int32_t);
  uint8_t *buf = scratch_get(xbytes * (vnni ? 2 : 1) + sumbytes);
  act_t *x = (act_t *)buf;
  int8_t *xp = vnni ? (int8_t *)buf + xbytes : NULL;
  int32_t *xsum = (int32_t *)(buf + xbytes * (vnni ? 2 : 1));
  for (int i = 0; i < n; i++) {
    const int8_t *qi = q + (size_t)i * w->cols;
    act_t *xi = x + (size_t)i * xcols;
    if (sizeof(act_t) == 1) memcpy(xi, qi, (size_t)w->cols); /* gcc leaves the loop a loop */
    else for (int c = 0; c < w->cols; c++) xi[c] = qi[c];
    memset(xi + w->cols, 0, (size_t)(xcols - w->cols) * sizeof(act_t));
    for (int g = 0; g < groups; g++) {
      const int c1 = (g + 1) * w->group_size < w->cols ? (g + 1) * w->group_size : w->cols;
      int32_t sum = 0;
      for (int c = g * w->group_size; c < c1; c++) sum += qi[c];
      xsum[(size_t)i * groups + g] = sum;
    }
#if defined(TP_X86)
    if (xp) permute_pairs(xi, nblocks, xp + (size_t)i * xcols);
#endif
  }
  q8_ctx k = { w, x, xp, xcols, n, groups, bpg, simd, simd && tp_has_dotprod(), xsum, sx, bias, out, 0 };
  k.chunk_rows = tp_chunk_rows(w->rows, (size_t)w->row_bytes * (n < 4 ? 1 : 4));
  tp_pool_run(q8_chunk, &k, (w->rows + k.chunk_rows - 1) / k.chunk_rows);
}

/* ---------------------------------------------------------------------------------------------- */
/* float activations */

typedef struct {
  const tp_ternary *w;
  const float *x; /* n × xcols, zero padded */
  int xcols, n, groups, simd;
  const float *bias;
  float *out;
  int chunk_rows;
} f32_ctx;

#if defined(TP_X86)
/* Σ t·x over blocks [b0, b1) of one row, float32 lanes. */
__attribute__((target("avx2,fma")))
static float tdot_avx2(const uint8_t *w, const float *x, int b0, int b1) {
  const __m256i mask = _mm256_set1_epi8(3);
  const __m256 one = _mm256_set1_ps(1.0f);
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  for (int b = b0; b < b1; b++) {
    const uint8_t *wb = w + (size_t)b * TP_BLOCK_BYTES;
    TP_PREFETCH(wb);
    const __m256i v = _mm256_loadu_si256((const __m256i *)wb);
    for (int k = 0; k < 4; k++) {
      const __m256i c = _mm256_and_si256(_mm256_srlv_epi32(v, _mm256_set1_epi32(2 * k)), mask);
      const float *xb = x + (size_t)b * TP_BLOCK_COLS + k * 32;
      const __m128i lo = _mm256_castsi256_si128(c), hi = _mm256_extracti128_si256(c, 1);
      const __m128i parts[4] = { lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8) };
      for (int p = 0; p < 4; p++) {
        const __m256 t = _mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(parts[p])), one);
        if (p & 1) acc1 = _mm256_fmadd_ps(t, _mm256_loadu_ps(xb + 8 * p), acc1);
        else acc0 = _mm256_fmadd_ps(t, _mm256_loadu_ps(xb + 8 * p), acc0);
      }
    }
  }
  __m256 s = _mm256_add_ps(acc0, acc1);
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_movehdup_ps(h));
  return _mm_cvtss_f32(h);
}
#define tdot_blocks tdot_avx2

#elif defined(TP_ARM64)
/* Σ t·x over blocks [b0, b1) of one row: t = c − 1 widened to float32, four accumulators of 4 lanes. */
static float tdot_neon(const uint8_t *w, const float *x, int b0, int b1) {
  const int8x16_t one = vdupq_n_s8(1);
  float32x4_t acc[4] = { vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0) };
  for (int b = b0; b < b1; b++) {
    const uint8_t *wb = w + (size_t)b * TP_BLOCK_BYTES;
    TP_PREFETCH(wb);
    int8x16_t c[8];
    block_planes(wb, c);
    for (int i = 0; i < 8; i++) {
      const float *xb = x + (size_t)b * TP_BLOCK_COLS + 16 * i;
      const int8x16_t t = vsubq_s8(c[i], one);
      const int16x8_t lo = vmovl_s8(vget_low_s8(t)), hi = vmovl_high_s8(t);
      acc[0] = vfmaq_f32(acc[0], vcvtq_f32_s32(vmovl_s16(vget_low_s16(lo))), vld1q_f32(xb));
      acc[1] = vfmaq_f32(acc[1], vcvtq_f32_s32(vmovl_high_s16(lo)), vld1q_f32(xb + 4));
      acc[2] = vfmaq_f32(acc[2], vcvtq_f32_s32(vmovl_s16(vget_low_s16(hi))), vld1q_f32(xb + 8));
      acc[3] = vfmaq_f32(acc[3], vcvtq_f32_s32(vmovl_high_s16(hi)), vld1q_f32(xb + 12));
    }
  }
  return vaddvq_f32(vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3])));
}
#define tdot_blocks tdot_neon
#endif

#if defined(TP_X86) || defined(TP_ARM64)
#define F32_TILE 1                    /* tokens per row pass: each token streams the row on its own */
#define F32_GROUP_COLS TP_BLOCK_COLS  /* group sizes tdot_simd takes: whole blocks */

/* d[t] = Σ t·x over columns [c0, c1) (c0 on a block, c1 the group's end) of token x + t·xs, t < T. */
static inline void tdot_simd(const uint8_t *w, const float *x, size_t xs, const int T, int c0, int c1, float *d) {
  for (int t = 0; t < T; t++) d[t] = tdot_blocks(w, x + t * xs, c0 / TP_BLOCK_COLS, (c1 + TP_BLOCK_COLS - 1) / TP_BLOCK_COLS);
}

#elif defined(TP_WASM)
#define F32_TILE 4        /* tokens sharing each unpacked 16-column unit of a row */
#define F32_GROUP_COLS 1  /* any group size: whole units in SIMD, the columns around them one by one */

/*
 * Four float32 chains of four lanes per token, fed one 16-column unit (unit u = columns 16u … 16u+15,
 * which one 16-byte load holds) at a time in column order; a group's columns outside whole units
 * are added one by one afterwards. The order depends only on the columns, never on T or the thread.
 */

/* t = c − 1 of unit u's sixteen columns as four f32x4 (columns 4j … 4j+3 of the unit in f[j]). */
__attribute__((always_inline))
static inline void unit_weights(const uint8_t *row, int u, v128_t f[4]) {
  const v128_t v = wasm_v128_load(row + (size_t)(u >> 3) * TP_BLOCK_BYTES + 16 * (u & 1));
  const v128_t t = wasm_i8x16_sub(wasm_v128_and(wasm_u16x8_shr(v, 2 * ((u >> 1) & 3)), code_mask()), wasm_i8x16_splat(1));
  const v128_t lo = wasm_i16x8_extend_low_i8x16(t), hi = wasm_i16x8_extend_high_i8x16(t);
  f[0] = wasm_f32x4_convert_i32x4(wasm_i32x4_extend_low_i16x8(lo));
  f[1] = wasm_f32x4_convert_i32x4(wasm_i32x4_extend_high_i16x8(lo));
  f[2] = wasm_f32x4_convert_i32x4(wasm_i32x4_extend_low_i16x8(hi));
  f[3] = wasm_f32x4_convert_i32x4(wasm_i32x4_extend_high_i16x8(hi));
}

/* d[t] = Σ t·x over columns [c0, c1) of token x + t·xs, t < T; each unpacked unit serves all T tokens. */
__attribute__((always_inline))
static inline void tdot_simd(const uint8_t *row, const float *x, size_t xs, const int T, int c0, int c1, float *d) {
  const int u0 = (c0 + 15) >> 4, head_end = 16 * u0 < c1 ? 16 * u0 : c1;
  const int u1 = c1 >> 4 > u0 ? c1 >> 4 : u0, tail = 16 * u1 > head_end ? 16 * u1 : head_end;
  v128_t acc[F32_TILE][4];
  for (int t = 0; t < T; t++)
    for (int j = 0; j < 4; j++) acc[t][j] = wasm_f32x4_splat(0);
  for (int u = u0; u < u1; u++) {
    v128_t f[4];
    unit_weights(row, u, f);
    for (int t = 0; t < T; t++)
      for (int j = 0; j < 4; j++) acc[t][j] = TP_WASM_MADD(acc[t][j], f[j], wasm_v128_load(x + t * xs + 16 * u + 4 * j));
  }
  for (int t = 0; t < T; t++) {
    const float *xt = x + t * xs;
    const v128_t s = wasm_f32x4_add(wasm_f32x4_add(acc[t][0], acc[t][1]), wasm_f32x4_add(acc[t][2], acc[t][3]));
    float sum = (wasm_f32x4_extract_lane(s, 0) + wasm_f32x4_extract_lane(s, 1)) + (wasm_f32x4_extract_lane(s, 2) + wasm_f32x4_extract_lane(s, 3));
    for (int c = c0; c < head_end; c++) sum += (float)(code_at(row, c) - 1) * xt[c];
    for (int c = tail; c < c1; c++) sum += (float)(code_at(row, c) - 1) * xt[c];
    d[t] = sum;
  }
}
#else
#define F32_TILE 1
#define F32_GROUP_COLS TP_BLOCK_COLS
#endif

/* Row r × tokens [i0, i0 + T): a sum per scale group, combined in double. */
__attribute__((always_inline))
static inline void f32_tile(const f32_ctx *k, int r, int i0, const int T) {
  const tp_ternary *w = k->w;
  const uint8_t *row = w->codes + (size_t)r * w->row_bytes;
  const float *x = k->x + (size_t)i0 * k->xcols;
  double tot[F32_TILE];
  for (int t = 0; t < T; t++) tot[t] = 0;
  for (int g = 0; g < k->groups; g++) {
    const int c0 = g * w->group_size, c1 = c0 + w->group_size < w->cols ? c0 + w->group_size : w->cols;
    double d[F32_TILE];
#if defined(TP_X86) || defined(TP_ARM64) || defined(TP_WASM)
    if (k->simd) {
      float f[F32_TILE];
      tdot_simd(row, x, k->xcols, T, c0, c1, f);
      for (int t = 0; t < T; t++) d[t] = f[t];
    } else
#endif
    {
      for (int t = 0; t < T; t++) {
        d[t] = 0;
        for (int c = c0; c < c1; c++) d[t] += (double)(code_at(row, c) - 1) * x[t * k->xcols + c];
      }
    }
    const double s = (double)scale_of(w, r, g, k->groups);
    for (int t = 0; t < T; t++) tot[t] += d[t] * s;
  }
  const double b = k->bias ? (double)k->bias[r] : 0.0;
  for (int t = 0; t < T; t++) k->out[(size_t)(i0 + t) * w->rows + r] = (float)(tot[t] + b);
}

static void f32_chunk(void *p, int chunk) {
  const f32_ctx *k = p;
  const int r0 = chunk * k->chunk_rows, r1 = r0 + k->chunk_rows < k->w->rows ? r0 + k->chunk_rows : k->w->rows;
  for (int r = r0; r < r1; r++) {
    int i = 0;
    if (F32_TILE > 1 && k->simd)
      for (; i + F32_TILE <= k->n; i += F32_TILE) f32_tile(k, r, i, F32_TILE);
    for (; i < k->n; i++) f32_tile(k, r, i, 1);
  }
}

void tp_ternary_f32(const tp_ternary *w, const float *x, int n, const float *bias, float *out) {
  const int groups = (w->cols + w->group_size - 1) / w->group_size;
  /* Token rows 16 floats more than whole blocks apart: rows a multiple of 4 KiB apart (2048 columns)
   * put a wasm tile's four token streams on the same L1 sets and 4 KiB alias (64 tokens of 2048 × 2048
   * ran at times 1.3× slower, old kernel too); the addon measured the same either way. */
  const int xcols = w->row_bytes / TP_BLOCK_BYTES * TP_BLOCK_COLS + 16;
  const size_t xbytes = ((size_t)n * xcols * sizeof(float) + 63) / 64 * 64;
  float *xp = aligned_alloc(64, xbytes);
  memset(xp, 0, xbytes);
  for (int i = 0; i < n; i++) memcpy(xp + (size_t)i * xcols, x + (size_t)i * w->cols, (size_t)w->cols * sizeof(float));
  f32_ctx k = { w, xp, xcols, n, groups, tp_has_simd() && (groups == 1 || w->group_size % F32_GROUP_COLS == 0), bias, out, 0 };
  k.chunk_rows = tp_chunk_rows(w->rows, (size_t)w->row_bytes);
  tp_pool_run(f32_chunk, &k, (w->rows + k.chunk_rows - 1) / k.chunk_rows);
  free(xp);
}

void tp_ternary_row(const tp_ternary *w, int r, float *out) {
  const int groups = (w->cols + w->group_size - 1) / w->group_size;
  const uint8_t *row = w->codes + (size_t)r * w->row_bytes;
  for (int c = 0; c < w->cols; c++) out[c] = (float)(code_at(row, c) - 1) * scale_of(w, r, c / w->group_size, groups);
}
