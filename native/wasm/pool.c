/*
 * tp.h's thread pool for the module (tp_pool_run, tp_pool_threads, tp_chunk_rows; the addon's is
 * tp_pool.c), all in linear memory: no message per call. Workers (node:worker_threads, each
 * with its own instance of this module on the shared memory and its own stack) sit in worker_loop.
 * A job is published by bumping `gen`; its chunks are handed out by one 64-bit ticket
 * (generation << 32 | next chunk) advanced by compare-and-swap, so a worker that arrives late, or
 * is still looking at an older job, can never take a chunk of the wrong job: its CAS fails.
 * Workers spin on `gen` briefly after a job (the next kernel call usually follows within
 * microseconds), then sleep in memory.atomic.wait32; the caller wakes them only when one sleeps.
 * The caller takes chunks itself and does not wait for workers to arrive: a worker still starting
 * up (or descheduled) just finds no chunk left, so no call can hang on a missing worker.
 */
#include "../tp.h"
#include "tp_wasm.h"

#define SEQ __ATOMIC_SEQ_CST
/* Polls (of `gen` by idle workers, of `done` by the caller) before sleeping in atomic.wait: a few µs,
 * enough for the back-to-back kernel calls of a layer. Longer spins measured slower with 2 threads
 * on a busy machine: wasm has no yield, so a spinning thread holds a core the other one needs. */
#define SPIN_POLLS 5000

static struct {
  int64_t ticket;      /* generation << 32 | next chunk */
  int gen;             /* generation of the newest job (workers wait on it) */
  int done;            /* chunks finished in the newest job */
  int chunks;
  int sleepers;        /* workers inside (or about to enter) atomic.wait on gen */
  int threads;         /* participants, caller included */
  int quit;
  tp_task_fn fn;
  void *ctx;
} pool = { .threads = 1 };

/* Participants from now on, the calling thread included (workers with a higher id stay idle). */
EXPORT(set_threads)
void set_threads(int threads) { __atomic_store_n(&pool.threads, threads < 1 ? 1 : threads, SEQ); }

int tp_pool_threads(void) { return __atomic_load_n(&pool.threads, SEQ); }

/* About 1 MiB of rows per chunk, as the addon, but fewer where the threads need more chunks to share. */
int tp_chunk_rows(int rows, size_t row_bytes) {
  const size_t bytes_target = row_bytes > 0 ? (1024 * 1024) / row_bytes : (size_t)rows;
  int target = bytes_target < 1 ? 1 : bytes_target > (size_t)rows ? rows : (int)bytes_target;
  const int threads = tp_pool_threads();
  if (threads > 1 && rows < target * threads * 4) target = (rows + threads * 4 - 1) / (threads * 4);
  return target < 1 ? 1 : target;
}

/* Takes chunks of job `gen` until none is left. fn/ctx/chunks are read after a successful CAS: the job
 * cannot have finished then (this thread holds one of its chunks), so they are that job's. */
static void take_chunks(int gen) {
  for (;;) {
    int64_t t = __atomic_load_n(&pool.ticket, SEQ);
    if ((int)(t >> 32) != gen) return;
    if ((int)(uint32_t)t >= __atomic_load_n(&pool.chunks, SEQ)) return; /* (a stale count only makes the CAS below fail) */
    if (!__atomic_compare_exchange_n(&pool.ticket, &t, t + 1, 0, SEQ, SEQ)) continue;
    const int chunks = pool.chunks;
    pool.fn(pool.ctx, (int)(uint32_t)t);
    if (__atomic_add_fetch(&pool.done, 1, SEQ) == chunks) __builtin_wasm_memory_atomic_notify(&pool.done, 1);
  }
}

void tp_pool_run(tp_task_fn fn, void *ctx, int chunks) {
  if (chunks <= 0) return;
  if (__atomic_load_n(&pool.threads, SEQ) <= 1 || chunks == 1) {
    for (int c = 0; c < chunks; c++) fn(ctx, c);
    return;
  }
  const int gen = pool.gen + 1;
  /* Close the previous job's ticket before anything of the new job is stored. A worker still in the
   * previous job may have loaded the finished ticket (old gen, old chunk count): if it read the new
   * `chunks` (larger) before its CAS, that CAS would succeed and run a chunk of the new job under the
   * old ticket, adding one `done` too many (the caller then waits for a count it has passed: a hang).
   * Closed first, its CAS fails; and any read of `chunks` before its CAS sees the old count. */
  __atomic_store_n(&pool.ticket, (int64_t)gen << 32 | 0x7fffffff, SEQ);
  pool.fn = fn;
  pool.ctx = ctx;
  __atomic_store_n(&pool.chunks, chunks, SEQ);
  __atomic_store_n(&pool.done, 0, SEQ);
  __atomic_store_n(&pool.ticket, (int64_t)gen << 32, SEQ);
  __atomic_store_n(&pool.gen, gen, SEQ);
  /* A worker increments sleepers before its wait checks gen (both seq_cst): either it sees the new gen or we see it. */
  if (__atomic_load_n(&pool.sleepers, SEQ) > 0) __builtin_wasm_memory_atomic_notify(&pool.gen, -1);
  take_chunks(gen);
  for (int spin = 0; __atomic_load_n(&pool.done, SEQ) != chunks; spin++) {
    if (spin < SPIN_POLLS) continue;
    const int d = __atomic_load_n(&pool.done, SEQ);
    if (d != chunks) __builtin_wasm_memory_atomic_wait32(&pool.done, d, -1);
  }
}

/* A worker's life: `tid` ≥ 1; returns when pool_quit is called (its instance's stack must be set first). */
EXPORT(worker_loop)
void worker_loop(int tid) {
  int seen = 0; /* generation 0 is no job */
  for (;;) {
    int gen;
    for (int spin = 0; (gen = __atomic_load_n(&pool.gen, SEQ)) == seen && spin < SPIN_POLLS; spin++) {}
    if (gen == seen) {
      __atomic_add_fetch(&pool.sleepers, 1, SEQ);
      while ((gen = __atomic_load_n(&pool.gen, SEQ)) == seen) __builtin_wasm_memory_atomic_wait32(&pool.gen, seen, -1);
      __atomic_sub_fetch(&pool.sleepers, 1, SEQ);
    }
    if (__atomic_load_n(&pool.quit, SEQ)) return;
    seen = gen;
    if (tid < __atomic_load_n(&pool.threads, SEQ)) take_chunks(gen);
  }
}

/* Makes every worker return from worker_loop. */
EXPORT(pool_quit)
void pool_quit(void) {
  __atomic_store_n(&pool.quit, 1, SEQ);
  __atomic_add_fetch(&pool.gen, 1, SEQ);
  __builtin_wasm_memory_atomic_notify(&pool.gen, -1);
}
