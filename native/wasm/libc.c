/*
 * The module's libc subset: an allocator over linear memory (headers in include/). Written here because no libc
 * fits the module: it runs on a shared memory, and a shared-memory module links only objects built
 * with atomics; Debian 12's wasi-libc (2022) predates the wasm32-wasi-threads build that has them.
 *
 * The allocator serves the kernels (per-call scratch) and the JavaScript side alike (weights, KV
 * mirrors, worker stacks: tp_alloc / tp_free, used by src/runtime-min/backends/wasm-heap.ts), so one
 * allocator owns the memory above __heap_base and grows it. First fit over a free list kept in
 * address order; a freed block merges with free neighbours, and one that reaches the top lowers it.
 * Every block starts with a 64-byte header, so payloads are 64-byte aligned (a cache line: rows and
 * activation vectors never straddle one needlessly). A spin lock makes it safe from any thread;
 * in practice the calling thread allocates and workers only take chunks.
 */
#include <stdint.h>
#include "include/stdlib.h"
#include "include/string.h"
#include "tp_wasm.h"

#define ALIGN 64
#define HEADER ALIGN
#define PAGE 65536

typedef struct block {
  size_t size;            /* bytes, header included; a multiple of ALIGN */
  struct block *next;     /* next free block in address order (free blocks only) */
} block;

extern unsigned char __heap_base;

static struct {
  int lock;
  uintptr_t top;          /* end of the highest block; 0 until first use */
  block *free;
} heap;

static void lock(void) { while (__atomic_exchange_n(&heap.lock, 1, __ATOMIC_ACQUIRE)) {} }
static void unlock(void) { __atomic_store_n(&heap.lock, 0, __ATOMIC_RELEASE); }

/* Makes [0, end) addressable, growing the memory; 0 when the memory cannot grow that far. */
static int reach(uintptr_t end) {
  const uintptr_t have = __builtin_wasm_memory_size(0) * (uintptr_t)PAGE;
  if (end <= have) return 1;
  return __builtin_wasm_memory_grow(0, (end - have + PAGE - 1) / PAGE) != (size_t)-1;
}

static void *alloc_locked(size_t bytes) {
  if (heap.top == 0) heap.top = ((uintptr_t)&__heap_base + ALIGN - 1) / ALIGN * ALIGN;
  if (bytes > SIZE_MAX - 2 * HEADER) return NULL;
  const size_t size = (bytes + HEADER + ALIGN - 1) / ALIGN * ALIGN;
  for (block **link = &heap.free; *link; link = &(*link)->next) {
    block *b = *link;
    if (b->size < size) continue;
    if (b->size - size >= 2 * ALIGN) { /* split: the rest stays free, in b's place in the list */
      block *rest = (block *)((uint8_t *)b + size);
      rest->size = b->size - size;
      rest->next = b->next;
      *link = rest;
      b->size = size;
    } else {
      *link = b->next;
    }
    return (uint8_t *)b + HEADER;
  }
  const uintptr_t at = heap.top;
  if (size > UINTPTR_MAX - at || !reach(at + size)) return NULL;
  heap.top = at + size;
  block *b = (block *)at;
  b->size = size;
  return (uint8_t *)b + HEADER;
}

static void free_locked(void *p) {
  block *b = (block *)((uint8_t *)p - HEADER);
  block **link = &heap.free, *prev = NULL;
  while (*link && *link < b) { prev = *link; link = &(*link)->next; }
  b->next = *link;
  *link = b;
  if (b->next && (uint8_t *)b + b->size == (uint8_t *)b->next) { b->size += b->next->size; b->next = b->next->next; }
  if (prev && (uint8_t *)prev + prev->size == (uint8_t *)b) { prev->size += b->size; prev->next = b->next; b = prev; }
  if ((uintptr_t)b + b->size == heap.top) { /* the highest block, so the last in the list: back to the top */
    heap.top = (uintptr_t)b;
    block **l = &heap.free;
    while (*l != b) l = &(*l)->next;
    *l = NULL;
  }
}

void *malloc(size_t size) {
  lock();
  void *p = alloc_locked(size);
  unlock();
  return p;
}

void *aligned_alloc(size_t alignment, size_t size) { return alignment <= ALIGN ? malloc(size) : NULL; }

void *calloc(size_t count, size_t size) {
  if (size != 0 && count > SIZE_MAX / size) return NULL;
  void *p = malloc(count * size);
  if (p) memset(p, 0, count * size);
  return p;
}

void free(void *p) {
  if (!p) return;
  lock();
  free_locked(p);
  unlock();
}

/* For JavaScript: `bytes` fresh bytes, 64-byte aligned (contents undefined), or 0 when the memory cannot grow. */
EXPORT(tp_alloc)
void *tp_alloc(size_t bytes) { return malloc(bytes); }

EXPORT(tp_free)
void tp_free(void *p) { free(p); }
