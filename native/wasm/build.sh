#!/bin/sh
# Rebuilds native/wasm/tritpack.wasm and tritpack-relaxed.wasm (committed, so users need no compiler)
# from tp_wasm.c.
# Needs clang and wasm-ld 16 or newer (Debian 12: apt-get install clang-16 lld-16).
set -eu
cd "$(dirname "$0")"
PATH=/usr/lib/llvm-16/bin:$PATH   # wasm-ld-16 as wasm-ld
CLANG=${CLANG:-clang-16}
build() { # output, extra flags
  "$CLANG" --target=wasm32 -O3 -msimd128 -mbulk-memory -nostdlib -ffp-contract=off -fuse-ld=lld "$2" \
    -Wl,--no-entry -Wl,--export=__heap_base -Wl,--export-memory -Wl,--strip-all -o "$1" tp_wasm.c
  echo "wrote native/wasm/$1 ($(wc -c < "$1") bytes)"
}
build tritpack.wasm -msimd128
build tritpack-relaxed.wasm -mrelaxed-simd
