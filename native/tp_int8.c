/*
 * Int8 weights × int8 activations: the opt-in int8 LM head. out[i·rows + r] = float(S / (s_r·s_x[i])
 * + bias[r]) with S = Σ_c w[r][c]·x[i][c] exact in int32 and the float steps in double, in the order
 * Backend.matmulQ8's contract fixes (src/runtime-min/backend.ts), so results are bit-identical to the
 * reference backend. Weight rows are zero padded to a multiple of 64 columns (TP_INT8_ALIGN) and the
 * activations are copied into a zero-padded buffer, so no kernel has a column tail.
 *
 * Exactness of the SIMD products (w ∈ [−127, 127], x ∈ [−128, 127]):
 *  - AVX2 `maddubs` multiplies u8 × s8 and adds pairs into saturating int16. The sign of x moves onto
 *    w: |x| as u8 (abs(−128) is 0x80, which reads as 128 unsigned) times sign(x)·w as s8 (|w| ≤ 127,
 *    so negating it cannot overflow; x = 0 zeroes both). Each product is x·w exactly, and a pair sum
 *    is at most 2·128·127 = 32512 < 2^15: maddubs never saturates. `madd` with ones widens the pairs
 *    to int32 before anything else is added to them.
 *  - AVX-512 VNNI `vpdpbusd` multiplies u8 × s8 and adds four products into int32 exactly. The
 *    weight byte is flipped to w + 128 ∈ [1, 255] (xor 0x80, as u8) and 128·Σx is taken off once per
 *    token: Σ(w + 128)·x − 128·Σx = Σ w·x.
 *  - NEON: SDOT (dotprod) sums four s8 × s8 products into int32 exactly; without it, vmull/vmlal_high
 *    put two products (each |w·x| ≤ 127·128 = 16256) into an int16 lane, ≤ 32512 < 2^15, widened
 *    pairwise into int32 by vpadal before the next two.
 *  - WebAssembly SIMD128: the weights are sign-extended to int16 in registers and the activations are
 *    widened to int16 once per call (the layout below); i32x4.dot_i16x8_s multiplies and adds pairs
 *    exactly (a pair ≤ 2·127·128 = 32512). Relaxed SIMD's i8 × i7 dot needs one operand in 0..127,
 *    which neither w nor x is; splitting w into max(w, 0) and max(−w, 0) costs no fewer steps than
 *    the two int16 dots (measured on the old wasm kernel: 149 vs 146 ms for 64 tokens on a 32000 ×
 *    2048 head, one thread), so the relaxed module runs this same code.
 * Int32 lanes wrap modulo 2^32, and the true S fits int32 (|S| ≤ 127·128·cols < 2^31 for cols ≤
 * TP_INT8_MAX_COLS), so even when an intermediate lane or the VNNI offset sum wraps, the final
 * two's-complement result is S exactly.
 *
 * VNNI serves groups of four tokens (prefill), where the work is compute-bound and one vpdpbusd per
 * 64 columns beats AVX2's four steps (47–51 vs 84 ms for 64 tokens on a 32000 × 2048 head, one
 * thread). A single token (decoding, memory-bound) takes the AVX2 kernel even where VNNI exists: in
 * alternating runs it streamed that head as fast or faster (1.8–2.0 vs 1.9–2.6 ms); why was not
 * pinned down (four accumulator chains instead of two, or 256-bit vpdpbusd, did not change it).
 */
#include "tp.h"
#include <stdlib.h>
#include <string.h>

#define TOKEN_TILE 64 /* tokens whose activations stay in L2 while a chunk of rows passes over them */

typedef struct {
  const tp_int8 *w;
  const int8_t *x;     /* n × stride, zero padded */
  const void *xk;      /* the activations as the SIMD kernel reads them: |x| (uint8) for AVX2, x widened to int16 for wasm */
  const int32_t *xsum; /* Σ x per token (the VNNI offset's correction) */
  int n, simd, vnni, dotprod; /* simd: AVX2 on x86, NEON on AArch64 */
  const float *sx, *bias;
  float *out;
  int chunk_rows;
} i8_ctx;

#if defined(TP_X86)
/* Σ w·x over a whole padded row for N tokens (N = 1 decode, 4 prefill), sign trick (see top). */
__attribute__((target("avx2"), always_inline))
static inline void dot_avx2(const int8_t *w, const int8_t *x, const uint8_t *ax, size_t xs, int stride, int32_t *out, const int N) {
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i acc[4];
  for (int j = 0; j < N; j++) acc[j] = _mm256_setzero_si256();
  for (int c = 0; c < stride; c += 64) {
    if (N == 1) TP_PREFETCH(w + c);
    const __m256i w0 = _mm256_loadu_si256((const __m256i *)(w + c)), w1 = _mm256_loadu_si256((const __m256i *)(w + c + 32));
    for (int j = 0; j < N; j++) {
      const int8_t *xj = x + j * xs + c;
      const uint8_t *aj = ax + j * xs + c;
      const __m256i p0 = _mm256_maddubs_epi16(_mm256_loadu_si256((const __m256i *)aj), _mm256_sign_epi8(w0, _mm256_loadu_si256((const __m256i *)xj)));
      const __m256i p1 = _mm256_maddubs_epi16(_mm256_loadu_si256((const __m256i *)(aj + 32)), _mm256_sign_epi8(w1, _mm256_loadu_si256((const __m256i *)(xj + 32))));
      acc[j] = _mm256_add_epi32(acc[j], _mm256_add_epi32(_mm256_madd_epi16(p0, ones), _mm256_madd_epi16(p1, ones)));
    }
  }
  for (int j = 0; j < N; j++) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(acc[j]), _mm256_extracti128_si256(acc[j], 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    out[j] = _mm_cvtsi128_si32(s);
  }
}

__attribute__((target("avx2")))
static void dot4_avx2(const int8_t *w, const int8_t *x, const uint8_t *ax, size_t xs, int stride, int32_t *out) { dot_avx2(w, x, ax, xs, stride, out, 4); }
__attribute__((target("avx2")))
static void dot1_avx2(const int8_t *w, const int8_t *x, const uint8_t *ax, int stride, int32_t *out) { dot_avx2(w, x, ax, 0, stride, out, 1); }

#define VNNI_TARGET "avx512f,avx512bw,avx512vl,avx512vnni"

/* Σ (w + 128)·x over a whole padded row for four tokens, two accumulator chains per token. The
 * caller takes 128·Σx off. */
__attribute__((target(VNNI_TARGET)))
static void dot4_vnni(const int8_t *w, const int8_t *x, size_t xs, int stride, int32_t *out) {
  const __m512i flip = _mm512_set1_epi8((char)0x80);
  __m512i a[4][2];
  for (int j = 0; j < 4; j++) a[j][0] = a[j][1] = _mm512_setzero_si512();
  int c = 0;
  for (; c + 128 <= stride; c += 128) {
    const __m512i w0 = _mm512_xor_si512(_mm512_loadu_si512(w + c), flip), w1 = _mm512_xor_si512(_mm512_loadu_si512(w + c + 64), flip);
    for (int j = 0; j < 4; j++) {
      a[j][0] = _mm512_dpbusd_epi32(a[j][0], w0, _mm512_loadu_si512(x + j * xs + c));
      a[j][1] = _mm512_dpbusd_epi32(a[j][1], w1, _mm512_loadu_si512(x + j * xs + c + 64));
    }
  }
  if (c < stride) { /* one 64-column step left (stride is a multiple of 64) */
    const __m512i w0 = _mm512_xor_si512(_mm512_loadu_si512(w + c), flip);
    for (int j = 0; j < 4; j++) a[j][0] = _mm512_dpbusd_epi32(a[j][0], w0, _mm512_loadu_si512(x + j * xs + c));
  }
  for (int j = 0; j < 4; j++) out[j] = _mm512_reduce_add_epi32(_mm512_add_epi32(a[j][0], a[j][1]));
}

/* Σ w·x of row r for tokens [i, i + N) into d (N = 4 or 1); the VNNI offset is undone here (modulo 2^32, see top). */
static inline void simd_dots(const i8_ctx *k, const int8_t *row, const int8_t *x, int i, int N, int32_t *d) {
  const size_t xs = (size_t)k->w->stride;
  if (N == 4 && k->vnni) {
    dot4_vnni(row, x, xs, k->w->stride, d);
    for (int j = 0; j < 4; j++) d[j] = (int32_t)((uint32_t)d[j] - 128u * (uint32_t)k->xsum[i + j]);
    return;
  }
  const uint8_t *ax = (const uint8_t *)k->xk + (size_t)i * xs;
  if (N == 4) dot4_avx2(row, x, ax, xs, k->w->stride, d);
  else dot1_avx2(row, x, ax, k->w->stride, d);
}
#elif defined(TP_ARM64)
/* Σ w·x over a whole padded row for N tokens, widening multiplies (see top). */
__attribute__((always_inline))
static inline void dot_neon(const int8_t *w, const int8_t *x, size_t xs, int stride, int32_t *out, const int N) {
  int32x4_t acc[4];
  for (int j = 0; j < N; j++) acc[j] = vdupq_n_s32(0);
  for (int c = 0; c < stride; c += 16) {
    if (N == 1) TP_PREFETCH(w + c);
    const int8x16_t wv = vld1q_s8(w + c);
    for (int j = 0; j < N; j++) {
      const int8x16_t xv = vld1q_s8(x + j * xs + c);
      acc[j] = vpadalq_s16(acc[j], vmlal_high_s8(vmull_s8(vget_low_s8(wv), vget_low_s8(xv)), wv, xv));
    }
  }
  for (int j = 0; j < N; j++) out[j] = vaddvq_s32(acc[j]);
}

/* The same with SDOT; the target spelling is explained in tp_ternary.c. */
#define DOTPROD "arch=armv8.2-a+dotprod"
__attribute__((target(DOTPROD), always_inline))
static inline void dot_sdot(const int8_t *w, const int8_t *x, size_t xs, int stride, int32_t *out, const int N) {
  int32x4_t acc[4][2];
  for (int j = 0; j < N; j++) acc[j][0] = acc[j][1] = vdupq_n_s32(0);
  for (int c = 0; c < stride; c += 32) { /* stride is a multiple of 64 */
    if (N == 1) TP_PREFETCH(w + c);
    const int8x16_t w0 = vld1q_s8(w + c), w1 = vld1q_s8(w + c + 16);
    for (int j = 0; j < N; j++) {
      acc[j][0] = vdotq_s32(acc[j][0], w0, vld1q_s8(x + j * xs + c));
      acc[j][1] = vdotq_s32(acc[j][1], w1, vld1q_s8(x + j * xs + c + 16));
    }
  }
  for (int j = 0; j < N; j++) out[j] = vaddvq_s32(vaddq_s32(acc[j][0], acc[j][1]));
}
__attribute__((target(DOTPROD)))
static void dot4_sdot(const int8_t *w, const int8_t *x, size_t xs, int stride, int32_t *out) { dot_sdot(w, x, xs, stride, out, 4); }
__attribute__((target(DOTPROD)))
static void dot1_sdot(const int8_t *w, const int8_t *x, int stride, int32_t *out) { dot_sdot(w, x, 0, stride, out, 1); }

static inline void simd_dots(const i8_ctx *k, const int8_t *row, const int8_t *x, int i, int N, int32_t *d) {
  (void)i;
  const size_t xs = (size_t)k->w->stride;
  if (!k->dotprod) {
    if (N == 4) dot_neon(row, x, xs, k->w->stride, d, 4);
    else dot_neon(row, x, 0, k->w->stride, d, 1);
  } else if (N == 4) dot4_sdot(row, x, xs, k->w->stride, d);
  else dot1_sdot(row, x, k->w->stride, d);
}
#elif defined(TP_WASM)
/*
 * Σ w·x over a whole padded row for N tokens, int16 dots (see top). A single token (decode, streaming
 * the row from memory) runs two accumulator chains, 32 columns a step (about 7% faster); a 4-token
 * tile keeps one per token, as a second set spilled registers and made prefill about 30% slower
 * (both measured on the old wasm kernel).
 */
__attribute__((always_inline))
static inline void dot_wasm(const int8_t *w, const int16_t *x, size_t xs, int stride, int32_t *out, const int N) {
  const int chains = N == 1 ? 2 : 1;
  v128_t acc[4][2];
  for (int j = 0; j < N; j++) acc[j][0] = acc[j][1] = wasm_i32x4_splat(0);
  for (int c = 0; c < stride; c += 16 * chains) { /* stride is a multiple of 64 */
    for (int h = 0; h < chains; h++) {
      const v128_t v = wasm_v128_load(w + c + 16 * h);
      const v128_t lo = wasm_i16x8_extend_low_i8x16(v), hi = wasm_i16x8_extend_high_i8x16(v);
      for (int j = 0; j < N; j++) {
        const int16_t *xj = x + j * xs + c + 16 * h;
        acc[j][h] = wasm_i32x4_add(acc[j][h], wasm_i32x4_add(wasm_i32x4_dot_i16x8(lo, wasm_v128_load(xj)), wasm_i32x4_dot_i16x8(hi, wasm_v128_load(xj + 8))));
      }
    }
  }
  for (int j = 0; j < N; j++) {
    const v128_t a = chains == 2 ? wasm_i32x4_add(acc[j][0], acc[j][1]) : acc[j][0];
    out[j] = wasm_i32x4_extract_lane(a, 0) + wasm_i32x4_extract_lane(a, 1) + wasm_i32x4_extract_lane(a, 2) + wasm_i32x4_extract_lane(a, 3);
  }
}

static inline void simd_dots(const i8_ctx *k, const int8_t *row, const int8_t *x, int i, int N, int32_t *d) {
  (void)x;
  const size_t xs = (size_t)k->w->stride;
  const int16_t *x16 = (const int16_t *)k->xk + (size_t)i * xs;
  if (N == 4) dot_wasm(row, x16, xs, k->w->stride, d, 4);
  else dot_wasm(row, x16, 0, k->w->stride, d, 1);
}
#endif

static int32_t dot_portable(const int8_t *w, const int8_t *x, int cols) {
  int32_t s = 0;
  for (int c = 0; c < cols; c++) s += (int32_t)w[c] * x[c];
  return s;
}

/* Σ w·x of row r for tokens [i, i + N) into d (N = 4 or 1). */
static inline void row_dots(const i8_ctx *k, int r, int i, int N, int32_t *d) {
  const tp_int8 *w = k->w;
  const int8_t *row = w->q + (size_t)r * w->stride, *x = k->x + (size_t)i * w->stride;
#if defined(TP_X86) || defined(TP_ARM64) || defined(TP_WASM)
  if (k->simd) { simd_dots(k, row, x, i, N, d); return; }
#endif
  for (int j = 0; j < N; j++) d[j] = dot_portable(row, x + j * (size_t)w->stride, w->cols);
}

static void i8_chunk(void *p, int chunk) {
  const i8_ctx *k = p;
  const tp_int8 *w = k->w;
  const int r0 = chunk * k->chunk_rows, r1 = r0 + k->chunk_rows < w->rows ? r0 + k->chunk_rows : w->rows;
  for (int t0 = 0; t0 < k->n; t0 += TOKEN_TILE) {
    const int t1 = t0 + TOKEN_TILE < k->n ? t0 + TOKEN_TILE : k->n;
    for (int r = r0; r < r1; r++) {
      const double sr = (double)w->scales[r], b = k->bias ? (double)k->bias[r] : 0.0;
      for (int i = t0; i < t1;) {
        const int N = k->simd && i + 4 <= t1 ? 4 : 1;
        int32_t d[4];
        row_dots(k, r, i, N, d);
        /* s_r·s_x is exact in double (two 24-bit significands): one rounding in the division */
        for (int j = 0; j < N; j++, i++) k->out[(size_t)i * w->rows + r] = (float)((double)d[j] / (sr * (double)k->sx[i]) + b);
      }
    }
  }
}

/* The activations' form for the SIMD kernels besides the padded int8 copy: |x| as uint8 for AVX2,
 * x as int16 for wasm (its dot is i16 × i16: widened here once per call, not once per row). */
#if defined(TP_WASM)
typedef int16_t xk_t;
#define XK(v) (v)
#else
typedef uint8_t xk_t;
#define XK(v) (uint8_t)((v) < 0 ? -(v) : (v)) /* −128 → 128 */
#endif

void tp_int8_q8(const tp_int8 *w, const int8_t *q, int n, const float *sx, const float *bias, float *out) {
  /* 64-byte aligned rows of activations (stride is a multiple of 64), then their kernel form, then Σx */
  const size_t xbytes = (size_t)n * w->stride;
  uint8_t *buf = aligned_alloc(64, xbytes * (1 + sizeof(xk_t)) + ((size_t)n * sizeof(int32_t) + 63) / 64 * 64);
  int8_t *x = (int8_t *)buf;
  xk_t *xk = (xk_t *)(buf + xbytes);
  int32_t *xsum = (int32_t *)(buf + xbytes * (1 + sizeof(xk_t)));
  for (int i = 0; i < n; i++) {
    const int8_t *qi = q + (size_t)i * w->cols;
    int8_t *xi = x + (size_t)i * w->stride;
    memcpy(xi, qi, (size_t)w->cols);
    memset(xi + w->cols, 0, (size_t)(w->stride - w->cols));
    int32_t s = 0;
    for (int c = 0; c < w->stride; c++) {
      s += xi[c];
      xk[(size_t)i * w->stride + c] = XK(xi[c]);
    }
    xsum[i] = s;
  }
  i8_ctx k = { w, x, xk, xsum, n, tp_has_simd(), tp_has_avx512vnni(), tp_has_dotprod(), sx, bias, out, 0 };
  k.chunk_rows = tp_chunk_rows(w->rows, (size_t)w->stride * (n < 4 ? 1 : 4));
  tp_pool_run(i8_chunk, &k, (w->rows + k.chunk_rows - 1) / k.chunk_rows);
  free(buf);
}
