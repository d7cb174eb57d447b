/*
 * tp.h's platform API for the native C files the module compiles (native/tp_*.c): the pool
 * (tp_pool_run, tp_chunk_rows) over this module's pool, and the CPU feature queries, answered at
 * build time (tp_has_simd() is SIMD128 itself, in tp.h). Native chunk functions take no thread id;
 * chunks hold about 64 KiB of rows, split further by this pool's rule (chunk_items) when threads
 * need more.
 */
#include "../tp.h"
#include "tp_wasm.h"

typedef struct {
  tp_task_fn fn;
  void *ctx;
} tp_job;

static void run_tp_chunk(const void *p, int chunk, int tid) {
  (void)tid;
  const tp_job *job = p;
  job->fn(job->ctx, chunk);
}

void tp_pool_run(tp_task_fn fn, void *ctx, int chunks) {
  const tp_job job = { fn, ctx };
  pool_run(run_tp_chunk, &job, chunks);
}

int tp_pool_threads(void) { return pool_threads(); }

int tp_chunk_rows(int rows, size_t row_bytes) {
  const size_t target = row_bytes > 0 ? (64 * 1024) / row_bytes : (size_t)rows;
  return chunk_items(rows, target < 1 ? 1 : target > (size_t)rows ? rows : (int)target);
}

int tp_has_avx2(void) { return 0; }
int tp_has_avx512(void) { return 0; }
int tp_has_avx512vnni(void) { return 0; }
int tp_has_neon(void) { return 0; }
int tp_has_dotprod(void) { return 0; }
