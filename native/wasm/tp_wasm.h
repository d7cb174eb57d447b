/*
 * tritpack's WebAssembly kernels (wasm32 + simd128 + threads, no libc): shared declarations.
 * The same compute layout and arithmetic contract as native/ (see native/tp.h): ternary × int8 sums
 * are exact and combined in double exactly like the reference backend; float sums run in float32
 * lanes in an order that depends only on the column, never on the thread or the token count.
 *
 * Memory is shared between the calling thread's instance and the workers' instances (one module,
 * one imported shared memory); the JavaScript side (src/runtime-min/backends/wasm.ts) allocates
 * every buffer and passes byte offsets. Each output row, token or (token, head) pair is computed
 * wholly by one thread, so results do not depend on the thread count.
 */
#ifndef TP_WASM_H
#define TP_WASM_H
#include <stdint.h>
#include <wasm_simd128.h>

#define EXPORT(name) __attribute__((export_name(#name)))
#define INLINE static inline __attribute__((always_inline))
#define BLOCK_COLS 128
#define BLOCK_BYTES 32

/* a + w·x: fused where relaxed SIMD offers it (one rounding; the same choice for every call on one machine) */
#ifdef __wasm_relaxed_simd__
#define MUL_ADD(a, w, x) __builtin_wasm_relaxed_madd_f32x4(w, x, a)
#else
#define MUL_ADD(a, w, x) wasm_f32x4_add(a, wasm_f32x4_mul(w, x))
#endif

/* One chunk of a job; `tid` (0 = the calling thread) indexes per-thread scratch. */
typedef void (*task_fn)(const void *ctx, int chunk, int tid);
/* Runs fn(ctx, 0 … chunks−1) on the calling thread and every worker that joins; returns when all are done. */
void pool_run(task_fn fn, const void *ctx, int chunks);
/* Items per chunk: about `target` items, but enough chunks for the threads to share them. */
int chunk_items(int items, int target);
#endif
