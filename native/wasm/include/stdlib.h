/* The module's libc subset: the allocator in libc.c. */
#ifndef TP_WASM_STDLIB_H
#define TP_WASM_STDLIB_H
#include <stddef.h>
void *malloc(size_t size);
void *calloc(size_t count, size_t size);
void *aligned_alloc(size_t alignment, size_t size);
void free(void *p);
#endif
