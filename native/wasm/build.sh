#!/bin/sh
# Rebuilds native/wasm/tritpack.wasm and tritpack-relaxed.wasm (committed, so users need no compiler)
# from the addon's kernel files (native/tp_*.c, which carry a SIMD128 path beside AVX2 and NEON) and
# the module's platform layer here: pool.c (tp.h's pool over worker instances, in linear memory),
# features.c (tp.h's CPU-feature API), libc.c + include/ (the libc subset the kernels use), exports.c.
# Needs clang and wasm-ld 16 or newer (Debian 12: apt-get install clang-16 lld-16).
# Threads: the memory is imported and shared (--shared-memory: data segments are passive and copied
# once, by the first instance, in __wasm_init_memory). Stacks are 256 KiB (the caller's here, the workers'
# in wasm-workers.ts): q8_rows_simd stages 24 KiB on it, and wasm has no guard page, so an overflow
# would silently write over data. __stack_pointer is exported so that each
# worker's instance gets its own stack.
set -eu
cd "$(dirname "$0")"
PATH=/usr/lib/llvm-16/bin:$PATH   # wasm-ld-16 as wasm-ld
CLANG=${CLANG:-clang-16}
build() { # output, extra flags
  "$CLANG" --target=wasm32 -O3 -msimd128 -mbulk-memory -matomics -nostdlib -ffp-contract=off -fuse-ld=lld "$2" \
    -Wl,--no-entry -Wl,--import-memory -Wl,--shared-memory -Wl,--max-memory=4294967296 -Wl,--initial-memory=524288 \
    -Wl,-z,stack-size=262144 -Wl,--export=__stack_pointer -Wl,--strip-all \
    -Iinclude \
    -o "$1" pool.c features.c libc.c exports.c \
    ../tp_repack.c ../tp_ternary.c ../tp_int8.c ../tp_float.c ../tp_attention.c ../tp_elementwise.c
  echo "wrote native/wasm/$1 ($(wc -c < "$1") bytes)"
}
build tritpack.wasm -msimd128
build tritpack-relaxed.wasm -mrelaxed-simd
