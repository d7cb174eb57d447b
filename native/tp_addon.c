/*
 * Node-API glue (plain C, node_api.h). Every entry point is a whole operation (one matmul, one
 * repack of many rows): N-API calls cost about a microsecond, so nothing finer is exposed.
 * Buffers are the caller's typed arrays, used in place; every length is checked here so a wrong
 * call from JavaScript throws instead of touching memory it does not own.
 */
#define _GNU_SOURCE
#include <node_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <sys/mman.h>
#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#endif
#include "tp.h"

static int force_portable = 0;
static int force_no_vnni = 0;

int tp_has_avx2(void) {
#if defined(__x86_64__) || defined(__i386__)
  static int cached = -1;
  if (cached < 0) {
    __builtin_cpu_init();
    cached = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  }
  return cached && !force_portable;
#else
  return 0;
#endif
}

int tp_has_avx512(void) {
#if defined(__x86_64__) || defined(__i386__)
  static int cached = -1;
  if (cached < 0) {
    __builtin_cpu_init();
    cached = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
  }
  return cached && tp_has_avx2();
#else
  return 0;
#endif
}

int tp_has_avx512vnni(void) {
#if defined(__x86_64__) || defined(__i386__)
  static int cached = -1;
  if (cached < 0) {
    __builtin_cpu_init();
    cached = __builtin_cpu_supports("avx512vnni");
  }
  return cached && tp_has_avx512() && !force_no_vnni;
#else
  return 0;
#endif
}

int tp_has_neon(void) {
#if defined(__aarch64__)
  return !force_portable; /* Advanced SIMD is part of the AArch64 base ISA */
#else
  return 0;
#endif
}

int tp_has_dotprod(void) {
#if defined(__aarch64__) && defined(__linux__)
  static int cached = -1;
  if (cached < 0) cached = (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
  return cached && tp_has_neon();
#else
  return 0;
#endif
}

#define CHECK(call) do { if ((call) != napi_ok) { napi_throw_error(env, NULL, "tritpack native: N-API call failed: " #call); return NULL; } } while (0)
#define FAIL(...) do { char m_[256]; snprintf(m_, sizeof m_, __VA_ARGS__); napi_throw_range_error(env, NULL, m_); return NULL; } while (0)
#define MAX_ARGS 12

typedef struct { void *data; size_t bytes; int present; } view;

/* A typed array argument of the given element type (null/undefined allowed when `optional`). */
static int get_view(napi_env env, napi_value v, napi_typedarray_type want, int optional, view *out, const char *what) {
  napi_valuetype t;
  out->data = NULL; out->bytes = 0; out->present = 0;
  if (napi_typeof(env, v, &t) != napi_ok) return 0;
  if (optional && (t == napi_null || t == napi_undefined)) return 1;
  bool is;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is) { napi_throw_type_error(env, NULL, what); return 0; }
  napi_typedarray_type type;
  size_t length;
  if (napi_get_typedarray_info(env, v, &type, &length, &out->data, NULL, NULL) != napi_ok || type != want) {
    napi_throw_type_error(env, NULL, what);
    return 0;
  }
  static const size_t sizes[] = { [napi_int8_array] = 1, [napi_uint8_array] = 1, [napi_float32_array] = 4, [napi_int32_array] = 4 };
  out->bytes = length * sizes[want];
  out->present = 1;
  return 1;
}

static int get_int(napi_env env, napi_value v, int *out, const char *what) {
  if (napi_get_value_int32(env, v, out) != napi_ok || *out < 0) { napi_throw_type_error(env, NULL, what); return 0; }
  return 1;
}

static napi_value number(napi_env env, double d) { napi_value v; return napi_create_double(env, d, &v) == napi_ok ? v : NULL; }

/* Reads (codes, rows, cols, scales, scaleMode, groupSize) starting at argv[0]. */
static int get_ternary(napi_env env, napi_value *argv, tp_ternary *w) {
  view codes, scales;
  int mode, gs;
  if (!get_view(env, argv[0], napi_uint8_array, 0, &codes, "codes must be a Uint8Array")) return 0;
  if (!get_int(env, argv[1], &w->rows, "rows must be a non-negative int") || !get_int(env, argv[2], &w->cols, "cols must be a non-negative int")) return 0;
  if (!get_view(env, argv[3], napi_float32_array, 0, &scales, "scales must be a Float32Array")) return 0;
  if (!get_int(env, argv[4], &mode, "scaleMode must be 0, 1 or 2") || !get_int(env, argv[5], &gs, "groupSize must be a positive int")) return 0;
  w->row_bytes = tp_row_bytes(w->cols);
  w->codes = codes.data;
  w->scales = scales.data;
  w->scale_mode = mode;
  w->group_size = mode == 2 ? gs : w->cols;
  const size_t groups = w->group_size > 0 ? (size_t)(w->cols + w->group_size - 1) / w->group_size : 0;
  const size_t need_scales = mode == 0 ? 1 : mode == 1 ? (size_t)w->rows : (size_t)w->rows * groups;
  if (mode > 2 || w->cols == 0 || w->group_size == 0 || codes.bytes < (size_t)w->rows * w->row_bytes || scales.bytes < need_scales * 4) {
    napi_throw_range_error(env, NULL, "ternary weight: codes or scales shorter than its shape needs");
    return 0;
  }
  return 1;
}

static napi_value args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = MAX_ARGS;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < want) { napi_throw_type_error(env, NULL, "tritpack native: too few arguments"); return NULL; }
  return argv[0];
}

static napi_value js_features(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value obj, v;
  CHECK(napi_create_object(env, &obj));
  CHECK(napi_get_boolean(env, tp_has_avx2(), &v));
  CHECK(napi_set_named_property(env, obj, "avx2", v));
  CHECK(napi_create_int32(env, tp_pool_threads(), &v));
  CHECK(napi_set_named_property(env, obj, "threads", v));
  return obj;
}

/* setPortable(bool): use the portable C kernels even where AVX2 is available (tests, comparisons). */
static napi_value js_set_portable(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS];
  bool on;
  if (!args(env, info, 1, argv)) return NULL;
  CHECK(napi_get_value_bool(env, argv[0], &on));
  force_portable = on;
  return NULL;
}

/* setVnni(bool): off = the AVX2 kernels even where AVX-512 VNNI is available (tests reach them on VNNI machines). */
static napi_value js_set_vnni(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS];
  bool on;
  if (!args(env, info, 1, argv)) return NULL;
  CHECK(napi_get_value_bool(env, argv[0], &on));
  force_no_vnni = !on;
  return NULL;
}

/* setThreads(n): n participants including the caller; 0 = one per online CPU. */
static napi_value js_set_threads(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS];
  int n;
  if (!args(env, info, 1, argv) || !get_int(env, argv[0], &n, "threads must be a non-negative int")) return NULL;
  return number(env, tp_pool_set_threads(n));
}

/* repack(packing 0=t2|1=t158, packed, row0, nrows, cols, out) → -1, or the flat index of an invalid t2 code */
static napi_value js_repack(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS];
  int packing, row0, nrows, cols;
  view packed, out;
  if (!args(env, info, 6, argv) || !get_int(env, argv[0], &packing, "packing") ||
      !get_view(env, argv[1], napi_uint8_array, 0, &packed, "packed must be a Uint8Array") ||
      !get_int(env, argv[2], &row0, "row0") || !get_int(env, argv[3], &nrows, "nrows") || !get_int(env, argv[4], &cols, "cols") ||
      !get_view(env, argv[5], napi_uint8_array, 0, &out, "out must be a Uint8Array")) return NULL;
  const unsigned long long end = (unsigned long long)(row0 + (unsigned long long)nrows) * cols, per = packing == 0 ? 4 : 5;
  if (packing > 1 || packed.bytes < (end + per - 1) / per || out.bytes < (size_t)nrows * tp_row_bytes(cols)) FAIL("repack: buffers shorter than rows %d..%d × %d need", row0, row0 + nrows, cols);
  return number(env, (double)tp_repack(packing, packed.data, packed.bytes, row0, nrows, cols, out.data));
}

/* Activations x (Int8Array or Float32Array) of n tokens × cols, bias (rows or null) and out (n × rows). */
static int get_io(napi_env env, napi_value *argv, napi_typedarray_type xtype, int rows, int cols, view *x, int *n, view *bias, view *out) {
  if (!get_view(env, argv[0], xtype, 0, x, "activations have the wrong typed-array type") || !get_int(env, argv[1], n, "n must be a non-negative int")) return 0;
  if (!get_view(env, argv[2], napi_float32_array, 1, bias, "bias must be a Float32Array or null") ||
      !get_view(env, argv[3], napi_float32_array, 0, out, "out must be a Float32Array")) return 0;
  const size_t esz = xtype == napi_int8_array ? 1 : 4;
  if (x->bytes < (size_t)*n * cols * esz || (bias->present && bias->bytes < (size_t)rows * 4) || out->bytes < (size_t)*n * rows * 4) {
    napi_throw_range_error(env, NULL, "matmul: activations, bias or output shorter than the shapes need");
    return 0;
  }
  return 1;
}

/* ternaryQ8(codes, rows, cols, scales, scaleMode, groupSize, q, n, bias, out, sx) */
static napi_value js_ternary_q8(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS];
  tp_ternary w;
  view x, bias, out, sx;
  int n;
  if (!args(env, info, 11, argv) || !get_ternary(env, argv, &w) || !get_io(env, argv + 6, napi_int8_array, w.rows, w.cols, &x, &n, &bias, &out) ||
      !get_view(env, argv[10], napi_float32_array, 0, &sx, "sx must be a Float32Array")) return NULL;
  if (sx.bytes < (size_t)n * 4) FAIL("matmulQ8: %d activation scales needed", n);
  tp_ternary_q8(&w, x.data, n, sx.data, bias.present ? bias.data : NULL, out.data);
  return NULL;
}

/* int8Q8(q, rows, cols, scales, x, n, bias, out, sx): q is rows × stride bytes, stride = cols rounded up to TP_INT8_ALIGN */
static napi_value js_int8_q8(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS];
  tp_int8 w;
  view q, scales, x, bias, out, sx;
  int n;
  if (!args(env, info, 9, argv) || !get_view(env, argv[0], napi_uint8_array, 0, &q, "q must be a Uint8Array") ||
      !get_int(env, argv[1], &w.rows, "rows must be a non-negative int") || !get_int(env, argv[2], &w.cols, "cols must be a non-negative int") ||
      !get_view(env, argv[3], napi_float32_array, 0, &scales, "scales must be a Float32Array") ||
      !get_io(env, argv + 4, napi_int8_array, w.rows, w.cols, &x, &n, &bias, &out) ||
      !get_view(env, argv[8], napi_float32_array, 0, &sx, "sx must be a Float32Array")) return NULL;
  if (w.cols < 1 || w.cols > TP_INT8_MAX_COLS) FAIL("int8Q8: %d columns; 1 to %d supported", w.cols, TP_INT8_MAX_COLS);
  w.stride = (w.cols + TP_INT8_ALIGN - 1) / TP_INT8_ALIGN * TP_INT8_ALIGN;
  if (q.bytes < (size_t)w.rows * w.stride || scales.bytes < (size_t)w.rows * 4 || sx.bytes < (size_t)n * 4) FAIL("int8Q8: weights, scales or activation scales shorter than %d × %d needs", w.rows, w.cols);
  w.q = q.data;
  w.scales = scales.data;
  tp_int8_q8(&w, x.data, n, sx.data, bias.present ? bias.data : NULL, out.data);
  return NULL;
}

/* ternaryF32(codes, rows, cols, scales, scaleMode, groupSize, x, n, bias, out) */
static napi_value js_ternary_f32(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS];
  tp_ternary w;
  view x, bias, out;
  int n;
  if (!args(env, info, 10, argv) || !get_ternary(env, argv, &w) || !get_io(env, argv + 6, napi_float32_array, w.rows, w.cols, &x, &n, &bias, &out)) return NULL;
  tp_ternary_f32(&w, x.data, n, bias.present ? bias.data : NULL, out.data);
  return NULL;
}

/* ternaryRow(codes, rows, cols, scales, scaleMode, groupSize, row, out) */
static napi_value js_ternary_row(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS];
  tp_ternary w;
  view out;
  int r;
  if (!args(env, info, 8, argv) || !get_ternary(env, argv, &w) || !get_int(env, argv[6], &r, "row") ||
      !get_view(env, argv[7], napi_float32_array, 0, &out, "out must be a Float32Array")) return NULL;
  if (r >= w.rows || out.bytes < (size_t)w.cols * 4) FAIL("ternaryRow: row %d of %d, or output too short", r, w.rows);
  tp_ternary_row(&w, r, out.data);
  return NULL;
}

/* floatMatmul(dtype 0=f32|1=f16|2=bf16, bytes, rows, cols, x, n, bias, out) */
static napi_value js_float_matmul(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS];
  int dtype, rows, cols, n;
  view w, x, bias, out;
  if (!args(env, info, 8, argv) || !get_int(env, argv[0], &dtype, "dtype") || !get_view(env, argv[1], napi_uint8_array, 0, &w, "weights must be a Uint8Array") ||
      !get_int(env, argv[2], &rows, "rows") || !get_int(env, argv[3], &cols, "cols") || !get_io(env, argv + 4, napi_float32_array, rows, cols, &x, &n, &bias, &out)) return NULL;
  if (dtype > 2 || w.bytes < (size_t)rows * cols * (dtype == TP_F32 ? 4 : 2)) FAIL("floatMatmul: weight bytes shorter than %d × %d", rows, cols);
  tp_float_matmul(dtype, w.data, rows, cols, x.data, n, bias.present ? bias.data : NULL, out.data);
  return NULL;
}

/* attention(q, n, keys, values, length, heads, kvHeads, headDim, window (0 = none), out) */
static napi_value js_attention(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS];
  view q, keys, values, out;
  int n, length, heads, kv, d, window;
  if (!args(env, info, 10, argv) || !get_view(env, argv[0], napi_float32_array, 0, &q, "q must be a Float32Array") || !get_int(env, argv[1], &n, "n") ||
      !get_view(env, argv[2], napi_float32_array, 0, &keys, "keys must be a Float32Array") ||
      !get_view(env, argv[3], napi_float32_array, 0, &values, "values must be a Float32Array") || !get_int(env, argv[4], &length, "length") ||
      !get_int(env, argv[5], &heads, "heads") || !get_int(env, argv[6], &kv, "kvHeads") || !get_int(env, argv[7], &d, "headDim") ||
      !get_int(env, argv[8], &window, "window") || !get_view(env, argv[9], napi_float32_array, 0, &out, "out must be a Float32Array")) return NULL;
  const size_t qbytes = (size_t)n * heads * d * 4, kvbytes = (size_t)length * kv * d * 4;
  if (kv == 0 || heads % kv != 0 || n > length || q.bytes < qbytes || out.bytes < qbytes || keys.bytes < kvbytes || values.bytes < kvbytes) FAIL("attention: shapes do not fit the buffers");
  tp_attention(q.data, n, keys.data, values.data, length, heads, kv, d, window, out.data);
  return NULL;
}

/* quantize(x, n, cols, q, scales) */
static napi_value js_quantize(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS];
  view x, q, sc;
  int n, cols;
  if (!args(env, info, 5, argv) || !get_view(env, argv[0], napi_float32_array, 0, &x, "x must be a Float32Array") || !get_int(env, argv[1], &n, "n") ||
      !get_int(env, argv[2], &cols, "cols") || !get_view(env, argv[3], napi_int8_array, 0, &q, "q must be an Int8Array") ||
      !get_view(env, argv[4], napi_float32_array, 0, &sc, "scales must be a Float32Array")) return NULL;
  const size_t count = (size_t)n * cols;
  if (x.bytes < count * 4 || q.bytes < count || sc.bytes < (size_t)n * 4) FAIL("quantize: buffers shorter than %d × %d", n, cols);
  tp_quantize(x.data, n, cols, q.data, sc.data);
  return NULL;
}

/* rmsnorm(x, n, cols, weight, eps, out) */
static napi_value js_rmsnorm(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS];
  view x, w, out;
  int n, cols;
  double eps;
  if (!args(env, info, 6, argv) || !get_view(env, argv[0], napi_float32_array, 0, &x, "x must be a Float32Array") || !get_int(env, argv[1], &n, "n") ||
      !get_int(env, argv[2], &cols, "cols") || !get_view(env, argv[3], napi_float32_array, 0, &w, "weight must be a Float32Array")) return NULL;
  CHECK(napi_get_value_double(env, argv[4], &eps));
  if (!get_view(env, argv[5], napi_float32_array, 0, &out, "out must be a Float32Array")) return NULL;
  const size_t count = (size_t)n * cols;
  if (x.bytes < count * 4 || out.bytes < count * 4 || w.bytes < (size_t)cols * 4) FAIL("rmsnorm: buffers shorter than %d × %d", n, cols);
  tp_rmsnorm(x.data, n, cols, w.data, eps, out.data);
  return NULL;
}

/* gated(gate, up, relu2 0|1, out) */
static napi_value js_gated(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS];
  view g, u, out;
  int relu2;
  if (!args(env, info, 4, argv) || !get_view(env, argv[0], napi_float32_array, 0, &g, "gate must be a Float32Array") ||
      !get_view(env, argv[1], napi_float32_array, 0, &u, "up must be a Float32Array") || !get_int(env, argv[2], &relu2, "relu2") ||
      !get_view(env, argv[3], napi_float32_array, 0, &out, "out must be a Float32Array")) return NULL;
  if (u.bytes < g.bytes || out.bytes < g.bytes) FAIL("gated: up/out shorter than gate");
  tp_gated(g.data, u.data, g.bytes / 4, relu2, out.data);
  return NULL;
}

/* add(x, y): x += y */
static napi_value js_add(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS];
  view x, y;
  if (!args(env, info, 2, argv) || !get_view(env, argv[0], napi_float32_array, 0, &x, "x must be a Float32Array") ||
      !get_view(env, argv[1], napi_float32_array, 0, &y, "y must be a Float32Array")) return NULL;
  if (y.bytes < x.bytes) FAIL("add: y shorter than x");
  tp_add(x.data, y.data, x.bytes / 4);
  return NULL;
}

/* rope(x, n, heads, headDim, cos, sin): in place */
static napi_value js_rope(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS];
  view x, c, s;
  int n, heads, d;
  if (!args(env, info, 6, argv) || !get_view(env, argv[0], napi_float32_array, 0, &x, "x must be a Float32Array") || !get_int(env, argv[1], &n, "n") ||
      !get_int(env, argv[2], &heads, "heads") || !get_int(env, argv[3], &d, "headDim") ||
      !get_view(env, argv[4], napi_float32_array, 0, &c, "cos must be a Float32Array") || !get_view(env, argv[5], napi_float32_array, 0, &s, "sin must be a Float32Array")) return NULL;
  const size_t table = (size_t)n * (d / 2) * 4;
  if (d % 2 != 0 || x.bytes < (size_t)n * heads * d * 4 || c.bytes < table || s.bytes < table) FAIL("rope: buffers shorter than %d × %d × %d needs", n, heads, d);
  tp_rope(x.data, n, heads, d, c.data, s.data);
  return NULL;
}

/* readBandwidth(bytes, reps) → GB/s of a streaming read with the pool's threads */
static napi_value js_read_bandwidth(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS];
  double bytes;
  int reps;
  if (!args(env, info, 2, argv)) return NULL;
  CHECK(napi_get_value_double(env, argv[0], &bytes));
  if (!get_int(env, argv[1], &reps, "reps")) return NULL;
  return number(env, tp_read_bandwidth((size_t)bytes, reps < 1 ? 1 : reps));
}

#define HUGE_PAGE (2u << 20)

typedef struct { void *base; size_t length; } mapping;

static void unmap_pages(napi_env env, void *data, void *hint) {
  (void)env; (void)data;
  mapping *m = hint;
  munmap(m->base, m->length);
  free(m);
}

/*
 * allocWeights(bytes) → a zero-filled Uint8Array outside the JS heap: an anonymous mapping aligned to
 * 2 MiB with transparent huge pages requested (madvise; the machine's THP mode is "madvise"). Pages
 * are faulted in on first write, so a slab's unused tail costs no memory. Decoding streams every
 * weight once per token: with 4 KiB pages that is a TLB miss every 4 KiB, and the kernels lose ~10%
 * of the streaming rate to page walks (measured 17.8 → 20.2 GB/s at 2 threads on 190 MB of codes).
 * The backend carves its weights out of a few large slabs, so small tensors share huge pages.
 */
static napi_value js_alloc_weights(napi_env env, napi_callback_info info) {
  napi_value argv[MAX_ARGS], ab, arr;
  double want;
  if (!args(env, info, 1, argv)) return NULL;
  CHECK(napi_get_value_double(env, argv[0], &want));
  if (!(want >= 0 && want <= 1e15)) FAIL("allocWeights: %g bytes", want);
  const size_t bytes = (size_t)want, length = (bytes + 2 * (size_t)HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
  mapping *m = malloc(sizeof *m);
  void *base = m ? mmap(NULL, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) : MAP_FAILED;
  if (base == MAP_FAILED) { free(m); FAIL("allocWeights: out of memory for %zu bytes", bytes); }
  m->base = base;
  m->length = length;
  uint8_t *p = (uint8_t *)(((uintptr_t)base + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE);
#ifdef MADV_HUGEPAGE
  madvise(p, length - (size_t)(p - (uint8_t *)base), MADV_HUGEPAGE); /* advice only: without THP it is plain pages */
#endif
  if (napi_create_external_arraybuffer(env, p, bytes, unmap_pages, m, &ab) != napi_ok) {
    munmap(base, length);
    free(m);
    napi_throw_error(env, NULL, "allocWeights: external buffers unavailable");
    return NULL;
  }
  CHECK(napi_create_typedarray(env, napi_uint8_array, bytes, ab, 0, &arr));
  return arr;
}

/* File mappings (tp_map.c): mapFile(path) → ArrayBuffer, dropPages(view) → boolean. */
napi_value tp_js_map_file(napi_env env, napi_callback_info info);
napi_value tp_js_drop_pages(napi_env env, napi_callback_info info);

static napi_value init(napi_env env, napi_value exports) {
  const napi_property_descriptor props[] = {
    { "features", NULL, js_features, NULL, NULL, NULL, napi_default, NULL },
    { "setPortable", NULL, js_set_portable, NULL, NULL, NULL, napi_default, NULL },
    { "setThreads", NULL, js_set_threads, NULL, NULL, NULL, napi_default, NULL },
    { "setVnni", NULL, js_set_vnni, NULL, NULL, NULL, napi_default, NULL },
    { "repack", NULL, js_repack, NULL, NULL, NULL, napi_default, NULL },
    { "ternaryQ8", NULL, js_ternary_q8, NULL, NULL, NULL, napi_default, NULL },
    { "ternaryF32", NULL, js_ternary_f32, NULL, NULL, NULL, napi_default, NULL },
    { "int8Q8", NULL, js_int8_q8, NULL, NULL, NULL, napi_default, NULL },
    { "ternaryRow", NULL, js_ternary_row, NULL, NULL, NULL, napi_default, NULL },
    { "floatMatmul", NULL, js_float_matmul, NULL, NULL, NULL, napi_default, NULL },
    { "attention", NULL, js_attention, NULL, NULL, NULL, napi_default, NULL },
    { "quantize", NULL, js_quantize, NULL, NULL, NULL, napi_default, NULL },
    { "rmsnorm", NULL, js_rmsnorm, NULL, NULL, NULL, napi_default, NULL },
    { "gated", NULL, js_gated, NULL, NULL, NULL, napi_default, NULL },
    { "add", NULL, js_add, NULL, NULL, NULL, napi_default, NULL },
    { "rope", NULL, js_rope, NULL, NULL, NULL, napi_default, NULL },
    { "readBandwidth", NULL, js_read_bandwidth, NULL, NULL, NULL, napi_default, NULL },
    { "allocWeights", NULL, js_alloc_weights, NULL, NULL, NULL, napi_default, NULL },
    { "mapFile", NULL, tp_js_map_file, NULL, NULL, NULL, napi_default, NULL },
    { "dropPages", NULL, tp_js_drop_pages, NULL, NULL, NULL, napi_default, NULL },
  };
  CHECK(napi_define_properties(env, exports, sizeof props / sizeof props[0], props));
  tp_pool_init();
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
