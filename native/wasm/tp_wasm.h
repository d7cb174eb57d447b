/*
 * The WebAssembly module's platform layer (wasm32 + simd128 + threads, no libc): the worker pool
 * (pool.c) and the export macro. The kernels are the addon's own files (native/tp_*.c, their
 * TP_WASM paths), reached through tp.h's API (tp_shim.c).
 *
 * Memory is shared between the calling thread's instance and the workers' instances (one module,
 * one imported shared memory); each chunk of a job runs wholly on one thread.
 */
#ifndef TP_WASM_H
#define TP_WASM_H
#include <stdint.h>

#define EXPORT(name) __attribute__((export_name(#name)))

/* One chunk of a job; `tid` (0 = the calling thread) indexes per-thread scratch. */
typedef void (*task_fn)(const void *ctx, int chunk, int tid);
/* Runs fn(ctx, 0 … chunks−1) on the calling thread and every worker that joins; returns when all are done. */
void pool_run(task_fn fn, const void *ctx, int chunks);
/* Participants, the calling thread included. */
int pool_threads(void);
/* Items per chunk: about `target` items, but enough chunks for the threads to share them. */
int chunk_items(int items, int target);
#endif
