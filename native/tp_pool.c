/*
 * A small pthread pool for whole-matmul calls. Work is split into chunks handed out from one atomic
 * ticket, so a core that another process occupies simply takes fewer chunks instead of stalling a
 * barrier; the calling thread takes chunks too. Idle workers spin briefly (a decode step issues a
 * new matmul every few microseconds) and then sleep on a condition variable.
 *
 * The ticket packs (generation << 32 | next chunk) and is advanced by compare-and-swap, so a worker
 * that is late from an earlier call can never claim a chunk of the current one by mistake. Task
 * descriptions alternate between two slots: the caller writes call G+1 into the slot that call G's
 * stragglers are not reading.
 */
#define _GNU_SOURCE
#include "tp.h"
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <unistd.h>

#define TP_MAX_THREADS 256
/* Idle workers poll with `pause` for a few microseconds, then keep polling with sched_yield, which
 * hands the core to any other runnable thread (on a shared machine, another process) instead of
 * burning it, for up to TP_YIELDS rounds (a few milliseconds), and only then sleep. */
#define TP_SPIN 2000
#define TP_YIELDS 2000

#if defined(__x86_64__) || defined(__i386__)
#define cpu_relax() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ volatile("yield")
#else
#define cpu_relax() ((void)0)
#endif

typedef struct { tp_task_fn fn; void *ctx; int chunks; atomic_int done; } tp_slot;

static struct {
  pthread_t threads[TP_MAX_THREADS];
  int workers;               /* threads besides the caller */
  _Atomic unsigned long long ticket;
  tp_slot slots[2];
  atomic_int quit;
  atomic_int sleepers;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  /* One caller at a time owns the workers: the addon may be loaded by several JS threads (worker_threads). */
  pthread_mutex_t owner;
  int started;
} pool = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER, .owner = PTHREAD_MUTEX_INITIALIZER };

static unsigned generation_of(unsigned long long t) { return (unsigned)(t >> 32); }

/* Claim and run chunks of generation `gen` until none is left. */
static void work(unsigned gen) {
  tp_slot *s = &pool.slots[gen & 1];
  for (;;) {
    unsigned long long t = atomic_load(&pool.ticket);
    if (generation_of(t) != gen || (int)(unsigned)t >= s->chunks) return;
    if (!atomic_compare_exchange_weak(&pool.ticket, &t, t + 1)) continue;
    s->fn(s->ctx, (int)(unsigned)t);
    atomic_fetch_add(&s->done, 1);
  }
}

static void *worker_main(void *arg) {
  (void)arg;
  unsigned seen = generation_of(atomic_load(&pool.ticket));
  while (!atomic_load(&pool.quit)) {
    unsigned gen = seen;
    for (int spin = 0; spin < TP_SPIN + TP_YIELDS && (gen = generation_of(atomic_load(&pool.ticket))) == seen; spin++) {
      if (atomic_load(&pool.quit)) return NULL;
      if (spin < TP_SPIN) cpu_relax();
      else sched_yield();
    }
    if (gen == seen) {
      pthread_mutex_lock(&pool.mu);
      atomic_fetch_add(&pool.sleepers, 1);
      while ((gen = generation_of(atomic_load(&pool.ticket))) == seen && !atomic_load(&pool.quit)) pthread_cond_wait(&pool.cv, &pool.mu);
      atomic_fetch_sub(&pool.sleepers, 1);
      pthread_mutex_unlock(&pool.mu);
      if (gen == seen) return NULL;
    }
    seen = gen;
    work(gen);
  }
  return NULL;
}

static void stop_workers(void) {
  pthread_mutex_lock(&pool.mu);
  atomic_store(&pool.quit, 1);
  pthread_cond_broadcast(&pool.cv);
  pthread_mutex_unlock(&pool.mu);
  for (int i = 0; i < pool.workers; i++) pthread_join(pool.threads[i], NULL);
  pool.workers = 0;
  atomic_store(&pool.quit, 0);
}

int tp_pool_set_threads(int threads) {
  pthread_mutex_lock(&pool.owner);
  pool.started = 1;
  if (threads <= 0) {
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    threads = cpus > 0 ? (int)cpus : 1;
  }
  if (threads > TP_MAX_THREADS) threads = TP_MAX_THREADS;
  if (threads - 1 != pool.workers) {
    stop_workers();
    for (int i = 0; i < threads - 1; i++) {
      if (pthread_create(&pool.threads[i], NULL, worker_main, NULL) != 0) break;
      pool.workers++;
    }
  }
  pthread_mutex_unlock(&pool.owner);
  return pool.workers + 1;
}

void tp_pool_init(void) {
  pthread_mutex_lock(&pool.owner);
  const int started = pool.started;
  pthread_mutex_unlock(&pool.owner);
  if (!started) tp_pool_set_threads(0);
}

int tp_pool_threads(void) { return pool.workers + 1; }

void tp_pool_run(tp_task_fn fn, void *ctx, int chunks) {
  if (chunks <= 0) return;
  /* Workers busy for another JS thread (or none, or nothing to share): run here, alone. */
  if (pool.workers == 0 || chunks == 1 || pthread_mutex_trylock(&pool.owner) != 0) {
    for (int c = 0; c < chunks; c++) fn(ctx, c);
    return;
  }
  unsigned gen = generation_of(atomic_load(&pool.ticket)) + 1;
  tp_slot *s = &pool.slots[gen & 1];
  s->fn = fn;
  s->ctx = ctx;
  s->chunks = chunks;
  atomic_store(&s->done, 0);
  atomic_store(&pool.ticket, (unsigned long long)gen << 32);
  if (atomic_load(&pool.sleepers) > 0) {
    pthread_mutex_lock(&pool.mu);
    pthread_cond_broadcast(&pool.cv);
    pthread_mutex_unlock(&pool.mu);
  }
  work(gen);
  /* Chunks still running elsewhere: wait for them (spinning, then yielding the core). */
  for (int spin = 0; atomic_load(&s->done) < chunks; spin++) {
    if (spin < TP_SPIN) cpu_relax();
    else sched_yield();
  }
  pthread_mutex_unlock(&pool.owner);
}

/*
 * Eight chunks per thread keep the split dynamic (a core that another process takes just does fewer);
 * the byte cap only bounds chunks of very large matrices. It was 64 KiB: every chunk start is a fresh
 * stream whose first TP_PREFETCH_AHEAD bytes come unprefetched, and with that many starts two threads
 * streamed the synthetic TinyLlama's ternary weights at 26–30 GB/s; with 1 MiB, 31–34 (1 thread: the
 * same; native/test harness, 5 alternating runs each).
 */
int tp_chunk_rows(int rows, size_t row_bytes) {
  int threads = tp_pool_threads();
  size_t by_bytes = row_bytes > 0 ? (1024 * 1024) / row_bytes : (size_t)rows;
  int by_balance = rows / (8 * threads);
  int r = (int)(by_bytes < (size_t)by_balance ? by_bytes : (size_t)by_balance);
  return r < 1 ? 1 : r;
}
