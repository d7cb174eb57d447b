/*
 * tp.h's CPU feature queries in the module: fixed when it is built (tp_has_simd() is SIMD128 itself,
 * in tp.h; the x86 and Arm levels do not exist here).
 */
#include "../tp.h"

int tp_has_avx2(void) { return 0; }
int tp_has_avx512(void) { return 0; }
int tp_has_avx512vnni(void) { return 0; }
int tp_has_neon(void) { return 0; }
int tp_has_dotprod(void) { return 0; }
