/*
 * The module's kernel exports: thin wrappers over the addon's own entry points (native/tp_*.c,
 * compiled here for wasm32), the wasm counterpart of native/tp_addon.c. Pointers are byte offsets
 * into the shared linear memory, allocated by the JavaScript side through tp_alloc
 * (src/runtime-min/backends/wasm.ts); bias may be 0 (none). The JavaScript side checks shapes and
 * lengths before calling, as it does for the addon.
 */
#include "../tp.h"
#include "tp_wasm.h"

static tp_ternary ternary(const uint8_t *codes, int rows, int cols, const float *scales, int scale_mode, int group_size) {
  const tp_ternary w = { codes, rows, cols, tp_row_bytes(cols), scales, scale_mode, scale_mode == 2 ? group_size : cols };
  return w;
}

/* tritpack t2 (packing 0) or t158 (1) rows [row0, row0+nrows) → compute layout, every byte written.
 * Returns the flat index of the lowest invalid t2 code 3, or −1 (as a double: an i64 result would
 * reach JavaScript as a BigInt). */
EXPORT(repack)
double repack(int packing, const uint8_t *packed, size_t packed_len, int row0, int nrows, int cols, uint8_t *out) {
  return (double)tp_repack(packing, packed, packed_len, row0, nrows, cols, out);
}

/* int8 activations q [n × cols] with scales sx on ternary weights (scale_mode 0 tensor, 1 channel, 2 group). */
EXPORT(ternary_q8)
void ternary_q8(const uint8_t *codes, int rows, int cols, const float *scales, int scale_mode, int group_size,
                const int8_t *q, int n, const float *sx, const float *bias, float *out) {
  const tp_ternary w = ternary(codes, rows, cols, scales, scale_mode, group_size);
  tp_ternary_q8(&w, q, n, sx, bias, out);
}

/* float activations x [n × cols] on ternary weights. */
EXPORT(ternary_f32)
void ternary_f32(const uint8_t *codes, int rows, int cols, const float *scales, int scale_mode, int group_size,
                 const float *x, int n, const float *bias, float *out) {
  const tp_ternary w = ternary(codes, rows, cols, scales, scale_mode, group_size);
  tp_ternary_f32(&w, x, n, bias, out);
}

/* Columns a padded int8 weight row has (TP_INT8_ALIGN). */
EXPORT(int8_stride)
int int8_stride(int cols) { return (cols + TP_INT8_ALIGN - 1) / TP_INT8_ALIGN * TP_INT8_ALIGN; }

/* int8 weights w [rows × int8_stride(cols)], zero padded, × int8 activations q [n × cols]. */
EXPORT(int8_q8)
void int8_q8(const int8_t *q8w, int rows, int cols, const float *scales, const int8_t *q, int n, const float *sx, const float *bias, float *out) {
  const tp_int8 w = { q8w, rows, cols, int8_stride(cols), scales };
  tp_int8_q8(&w, q, n, sx, bias, out);
}

/* dtype 0 f32, 1 f16, 2 bf16, 3 f16 without Inf/NaN (checked by f16_finite once per weight). */
EXPORT(float_matmul)
void float_matmul(int dtype, const void *w, int rows, int cols, const float *x, int n, const float *bias, float *out) {
  tp_float_matmul(dtype, w, rows, cols, x, n, bias, out);
}

/* 1 when none of the count f16 values at h is Inf or NaN (exponent 31). */
EXPORT(f16_finite)
int f16_finite(const uint16_t *h, size_t count) {
  uint16_t top = 0;
  for (size_t i = 0; i < count; i++) top = (uint16_t)(h[i] << 1) > top ? (uint16_t)(h[i] << 1) : top;
  return top < 0xf800; /* 2·|h| below 2·0x7c00 */
}

EXPORT(attention)
void attention(const float *q, int n, const float *keys, const float *values, int length, int heads, int kv_heads, int head_dim, int window, float *out) {
  tp_attention(q, n, keys, values, length, heads, kv_heads, head_dim, window, out);
}

EXPORT(quantize)
void quantize(const float *x, int n, int cols, int8_t *q, float *scales) { tp_quantize(x, n, cols, q, scales); }

EXPORT(rmsnorm)
void rmsnorm(const float *x, int n, int cols, const float *w, double eps, float *out) { tp_rmsnorm(x, n, cols, w, eps, out); }

/* relu2 1: relu(gate)²·up; 0: silu(gate)·up. */
EXPORT(gated)
void gated(const float *gate, const float *up, size_t count, int relu2, float *out) { tp_gated(gate, up, count, relu2, out); }

EXPORT(add)
void add(float *x, const float *y, size_t count) { tp_add(x, y, count); }

EXPORT(rope)
void rope(float *x, int n, int heads, int head_dim, const float *cos, const float *sin) { tp_rope(x, n, heads, head_dim, cos, sin); }
