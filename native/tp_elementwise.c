/*
 * The per-token element-wise steps of the forward pass, in C because in JavaScript they cost
 * about a fifth of a TinyLlama-sized decode step. Each one repeats the reference backend's
 * arithmetic step for step (float32 roundings where it rounds, double where it keeps double), so
 * the results are bit-identical to it; only silu's exp comes from libm rather than V8.
 * Build flags keep the compiler from fusing or reordering (-ffp-contract=off, no fast-math).
 */
#include "tp.h"
#include <math.h>

void tp_quantize(const float *x, int n, int cols, int8_t *q, float *scales) {
  const double eps = (double)1e-5f; /* the reference's fround(1e-5) */
  for (int i = 0; i < n; i++) {
    const float *xi = x + (size_t)i * cols;
    double max = 0;
    for (int c = 0; c < cols; c++) { const double a = fabs((double)xi[c]); if (a > max || a != a) max = a; }
    const float s = (float)(127.0 / (max > eps || max != max ? max : eps));
    scales[i] = s;
    for (int c = 0; c < cols; c++) {
      const float v = rintf(xi[c] * s); /* float32 product, then round half to even */
      q[(size_t)i * cols + c] = v != v ? 0 : v < -128 ? -128 : v > 127 ? 127 : (int8_t)v;
    }
  }
}

void tp_rmsnorm(const float *x, int n, int cols, const float *w, double eps, float *out) {
  for (int i = 0; i < n; i++) {
    const float *xi = x + (size_t)i * cols;
    double sum = 0;
    for (int c = 0; c < cols; c++) sum += (double)xi[c] * xi[c];
    const float mean = (float)(sum / cols);
    const float inv = (float)(1.0 / sqrt((double)(float)((double)mean + eps)));
    for (int c = 0; c < cols; c++) out[(size_t)i * cols + c] = w[c] * (xi[c] * inv);
  }
}

void tp_gated(const float *gate, const float *up, size_t count, int relu2, float *out) {
  for (size_t i = 0; i < count; i++) {
    const float g = gate[i];
    const float a = relu2 ? (g > 0 ? g * g : 0.0f) : (float)((double)g / (1.0 + exp(-(double)g)));
    out[i] = a * up[i];
  }
}

void tp_add(float *x, const float *y, size_t count) {
  for (size_t i = 0; i < count; i++) x[i] += y[i];
}
