#!/bin/sh
# Rebuilds native/wasm/tritpack.wasm (committed, so users need no compiler) from tp_wasm.c.
# Needs clang and wasm-ld 16 or newer (Debian 12: apt-get install clang-16 lld-16).
set -eu
cd "$(dirname "$0")"
PATH=/usr/lib/llvm-16/bin:$PATH   # wasm-ld-16 as wasm-ld
CLANG=${CLANG:-clang-16}
"$CLANG" --target=wasm32 -O3 -msimd128 -nostdlib -ffp-contract=off -fuse-ld=lld \
  -Wl,--no-entry -Wl,--export=__heap_base -Wl,--export-memory -Wl,--strip-all \
  -o tritpack.wasm tp_wasm.c
echo "wrote native/wasm/tritpack.wasm ($(wc -c < tritpack.wasm) bytes)"
