/* The module's libc subset (see libc.c): memcpy and memset are the compiler's builtins (memory.copy /
 * memory.fill with bulk memory, or inline loads and stores for small constant sizes). */
#ifndef TP_WASM_STRING_H
#define TP_WASM_STRING_H
#include <stddef.h>
#define memcpy(dst, src, n) __builtin_memcpy(dst, src, n)
#define memset(dst, c, n) __builtin_memset(dst, c, n)
#endif
