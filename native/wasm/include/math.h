/* The module's libc subset: wasm instructions where wasm has them (f32.nearest rounds half to even,
 * as rintf does in the default rounding mode); exp is V8's Math.exp, imported (the function the
 * reference backend calls, so SiLU matches it bit for bit). */
#ifndef TP_WASM_MATH_H
#define TP_WASM_MATH_H
#define INFINITY __builtin_inff()
#define sqrt(x) __builtin_sqrt(x)
#define sqrtf(x) __builtin_sqrtf(x)
#define fabs(x) __builtin_fabs(x)
#define fabsf(x) __builtin_fabsf(x)
#define rintf(x) __builtin_rintf(x)
/* (under its own name: declared as `exp`, the library builtin loses the import attributes) */
__attribute__((import_module("env"), import_name("exp"))) double tp_import_exp(double x);
#define exp(x) tp_import_exp(x)
#define expf(x) ((float)tp_import_exp((double)(x)))
#endif
