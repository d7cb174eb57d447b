/*
 * Repacking tritpack's stored ternary packings (t2, t158) into the i2x128 compute layout (see tp.h).
 * Plain C over tp.h's pool, without SIMD intrinsics or a libc beyond memcpy/memset: the WebAssembly
 * module compiles this same file (native/wasm/build.sh; its pool provides tp_pool_run and
 * tp_chunk_rows, native/wasm/pool.c).
 */
#include "tp.h"
#include <limits.h>
#include <stdatomic.h>
#include <string.h>

/* Columns decoded at a time: whole blocks, and a multiple of 4 and 5 (codes per t2 and t158 byte), so
 * every segment of a row starts at the same slot of its byte as the row does. */
#define REPACK_SEG 640

typedef struct {
  const uint8_t *packed;
  int per; /* codes per stored byte: 4 (t2) or 5 (t158) */
  int row0, cols, nrows, row_bytes, chunk_rows;
  uint8_t *out;
  atomic_llong first_bad; /* lowest flat index of an invalid t2 code any chunk found; LLONG_MAX: none */
  uint64_t codes_of[256];  /* the codes of each byte value, one per byte in element order (5 or 4, then zeros) */
} repack_ctx;

/* Codes of elements e … e+n−1 into t[0 … n), one per byte, without a division per element: each stored
 * byte's codes go out as one 8-byte store where its first element belongs, and the next store overwrites
 * the spare bytes. Writes from t − 4 to t + n + 7. */
static void decode_codes(const repack_ctx *k, long long e, int n, uint8_t *t) {
  const long long first = e / k->per, last = (e + n - 1) / k->per;
  uint8_t *at = t - (e - first * k->per);
  for (long long i = first; i <= last; i++, at += k->per) memcpy(at, &k->codes_of[k->packed[i]], 8);
}

/* Index of the first code 3 in t[0 … n), or −1; the test over all of them is branch-free (vectorized). */
static int first_code3(const uint8_t *t, int n) {
  uint8_t any = 0;
  for (int i = 0; i < n; i++) any |= t[i] & t[i] >> 1;
  if (!(any & 1)) return -1;
  int i = 0;
  while (t[i] != 3) i++;
  return i;
}

/* Codes t[0 … 128·blocks) into that many blocks of the compute layout (vectorized: byte shifts and ors). */
static void pack_blocks(const uint8_t *t, int blocks, uint8_t *dst) {
  for (int b = 0; b < blocks; b++, t += TP_BLOCK_COLS, dst += TP_BLOCK_BYTES)
    for (int j = 0; j < TP_BLOCK_BYTES; j++) dst[j] = (uint8_t)(t[j] | t[32 + j] << 2 | t[64 + j] << 4 | t[96 + j] << 6);
}

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define T2_TRANSPOSE 1
/* Swaps the 2-bit cells selected by mask with those d bits above them. */
static inline uint64_t delta_swap(uint64_t x, uint64_t mask, int d) {
  const uint64_t t = ((x >> d) ^ x) & mask;
  return x ^ t ^ (t << d);
}

/*
 * t2 blocks stored whole (a row of whole blocks starts on a byte): the 32 stored bytes of 128 columns
 * are the layout's 32 bytes with the 2-bit cells permuted, done without decoding. Read as four 64-bit
 * words k (bytes 8k … 8k+7), cell 4m + s of word k holds column 32k + 4m + s; the layout puts it in
 * word m >> 1, cell 16(m & 1) + 4s + k. Index bits: (word k1 k0 | cell m2 m1 m0 s1 s0) → (m2 m1 |
 * m0 s1 s0 k1 k0). Exchanging 32-bit halves and 16-bit quarters between words swaps k0 ↔ m2 and
 * k1 ↔ m1 (words then stored in the order 0, 2, 1, 3); three delta swaps within each word turn the
 * cell bits (k0 k1 m0 s1 s0) into (m0 s1 s0 k1 k0). Returns whether any code is 3 (then nothing is known).
 */
static int transpose_t2_blocks(const uint8_t *in, int blocks, uint8_t *dst) {
  const uint64_t lo32 = 0x00000000ffffffffull, lo16 = 0x0000ffff0000ffffull;
  uint64_t bad = 0;
  for (int b = 0; b < blocks; b++, in += TP_BLOCK_BYTES, dst += TP_BLOCK_BYTES) {
    uint64_t q[4];
    memcpy(q, in, sizeof q);
    for (int i = 0; i < 4; i++) bad |= q[i] & q[i] >> 1;
    for (int a = 0; a < 4; a += 2) {
      const uint64_t x = q[a], y = q[a + 1];
      q[a] = (x & lo32) | y << 32;
      q[a + 1] = x >> 32 | (y & ~lo32);
    }
    for (int a = 0; a < 2; a++) {
      const uint64_t x = q[a], y = q[a + 2];
      q[a] = (x & lo16) | (y << 16 & ~lo16);
      q[a + 2] = (x >> 16 & lo16) | (y & ~lo16);
    }
    /* cell bits 3 ↔ 1, then 4 ↔ 0, then 4 ↔ 2 */
    for (int i = 0; i < 4; i++) q[i] = delta_swap(delta_swap(delta_swap(q[i], 0x0000f0f00000f0f0ull, 12), 0x00000000ccccccccull, 30), 0x00000000ff00ff00ull, 24);
    memcpy(dst, &q[0], 8);
    memcpy(dst + 8, &q[2], 8);
    memcpy(dst + 16, &q[1], 8);
    memcpy(dst + 24, &q[3], 8);
  }
  return (bad & 0x5555555555555555ull) != 0;
}
#endif

/* Rows of one chunk, REPACK_SEG columns at a time through a buffer in L1. A chunk stops at its first
 * invalid code: rows are done in order, so that is the chunk's lowest, and the lowest over all chunks
 * is the tensor's whatever the number of threads. */
static void repack_chunk(void *p, int chunk) {
  repack_ctx *k = p;
  const int r0 = chunk * k->chunk_rows, r1 = r0 + k->chunk_rows < k->nrows ? r0 + k->chunk_rows : k->nrows;
  _Alignas(64) uint8_t buf[64 + REPACK_SEG + 64];
  uint8_t *t = buf + 64;
  for (int r = r0; r < r1; r++) {
    const long long e0 = (long long)(k->row0 + r) * k->cols;
    uint8_t *dst = k->out + (size_t)r * k->row_bytes;
    for (int c = 0; c < k->cols; c += REPACK_SEG) {
      const int n = k->cols - c < REPACK_SEG ? k->cols - c : REPACK_SEG, blocks = (n + TP_BLOCK_COLS - 1) / TP_BLOCK_COLS;
      uint8_t *seg = dst + (size_t)c / TP_BLOCK_COLS * TP_BLOCK_BYTES;
#if defined(T2_TRANSPOSE)
      /* an invalid code makes the decode below find its index */
      if (k->per == 4 && k->cols % TP_BLOCK_COLS == 0 && !transpose_t2_blocks(k->packed + (e0 + c) / 4, blocks, seg)) continue;
#endif
      decode_codes(k, e0 + c, n, t);
      const int bad = k->per == 4 ? first_code3(t, n) : -1;
      if (bad >= 0) {
        long long seen = atomic_load(&k->first_bad);
        while (e0 + c + bad < seen && !atomic_compare_exchange_weak(&k->first_bad, &seen, e0 + c + bad)) {}
        return;
      }
      memset(t + n, 0, (size_t)(blocks * TP_BLOCK_COLS - n)); /* padding columns: code 0 */
      pack_blocks(t, blocks, seg);
    }
  }
}

long long tp_repack(int packing, const uint8_t *packed, size_t packed_len, int row0, int nrows, int cols, uint8_t *out) {
  (void)packed_len; /* bounds are checked by the caller */
  if (nrows <= 0 || cols <= 0) return -1;
  repack_ctx k = { packed, packing == 0 ? 4 : 5, row0, cols, nrows, tp_row_bytes(cols), 0, out, LLONG_MAX, { 0 } };
  for (int v = 0; v < 256; v++) {
    uint8_t c[8] = { 0 };
    for (int s = 0; s < k.per; s++) {
      /* t2: slot s in bits 2s..2s+1; t158: digit s of a base-3 fixed-point byte, ((uint8)(byte·3^s) · 3) >> 8
       * (docs/ternary-packing.md) */
      static const uint8_t pow3[5] = { 1, 3, 9, 27, 81 };
      c[s] = (uint8_t)(packing == 0 ? (v >> (2 * s)) & 3 : ((uint8_t)(v * pow3[s]) * 3) >> 8);
    }
    memcpy(&k.codes_of[v], c, 8);
  }
  k.chunk_rows = tp_chunk_rows(nrows, (size_t)k.row_bytes);
  tp_pool_run(repack_chunk, &k, (nrows + k.chunk_rows - 1) / k.chunk_rows);
  const long long bad = atomic_load(&k.first_bad);
  return bad == LLONG_MAX ? -1 : bad;
}
