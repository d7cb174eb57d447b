/*
 * The WebAssembly module's platform layer (wasm32 + simd128 + threads, no libc): pool.c (tp.h's pool
 * over worker instances), features.c, libc.c + include/, exports.c. The kernels are the addon's own
 * files (native/tp_*.c, their TP_WASM paths).
 */
#ifndef TP_WASM_H
#define TP_WASM_H

#define EXPORT(name) __attribute__((export_name(#name)))
#endif
