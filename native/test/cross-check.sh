#!/bin/sh
# Cross-checks the native kernels' SIMD paths against their portable C path (native/test/kernel-check.c):
#  1. natively with the host's cc (on x86-64: AVX2, AVX-512, AVX-512 VNNI as far as the CPU has them);
#  2. for aarch64, under qemu-aarch64: a baseline Armv8-A build on a CPU model without dotprod
#     (cortex-a72: the widening-multiply kernel) and on one with it (max: SDOT), and an
#     armv8.2-a+dotprod build on max; each run must find exactly the features it is meant to test;
#  3. every native/*.c, the Node-API layer included, compiled for aarch64 (-Wall -Werror), with clang
#     as well where one is installed: the addon builds on arm64.
# Needs: cc, aarch64-linux-gnu-gcc, qemu-aarch64 and an aarch64 sysroot (Debian: apt-get install
# gcc-aarch64-linux-gnu qemu-user). Env: NODE_INCLUDE (the directory holding node_api.h; default
# derived from `node`), AARCH64_SYSROOT (default /usr/aarch64-linux-gnu).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
native=$(dirname "$here")
sysroot=${AARCH64_SYSROOT:-/usr/aarch64-linux-gnu}
node_include=${NODE_INCLUDE:-$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")/include/node}
kernels="tp_pool.c tp_ternary.c tp_repack.c tp_int8.c tp_float.c tp_attention.c tp_elementwise.c"
cflags="-std=gnu11 -O3 -ffp-contract=off -pthread -Wall -Werror"

for tool in cc aarch64-linux-gnu-gcc qemu-aarch64; do
  command -v "$tool" >/dev/null || { echo "cross-check: $tool not found (apt-get install gcc-aarch64-linux-gnu qemu-user)" >&2; exit 2; }
done
[ -f "$node_include/node_api.h" ] || { echo "cross-check: node_api.h not found in $node_include (set NODE_INCLUDE)" >&2; exit 2; }

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cd "$native"

echo "== native ($(uname -m))"
cc $cflags test/kernel-check.c $kernels -lm -o "$out/kernel-check"
"$out/kernel-check"

echo "== aarch64, Armv8-A baseline, cortex-a72 (no dotprod)"
aarch64-linux-gnu-gcc $cflags test/kernel-check.c $kernels -lm -o "$out/kernel-check-arm64"
qemu-aarch64 -L "$sysroot" -cpu cortex-a72 "$out/kernel-check-arm64" --expect-level 1
echo "== aarch64, Armv8-A baseline, qemu max (dotprod)"
qemu-aarch64 -L "$sysroot" -cpu max "$out/kernel-check-arm64" --expect-level 2
echo "== aarch64, -march=armv8.2-a+dotprod, qemu max"
aarch64-linux-gnu-gcc $cflags -march=armv8.2-a+dotprod test/kernel-check.c $kernels -lm -o "$out/kernel-check-arm64-dotprod"
qemu-aarch64 -L "$sysroot" -cpu max "$out/kernel-check-arm64-dotprod" --expect-level 2

echo "== the addon's sources compile for aarch64"
for f in *.c; do
  aarch64-linux-gnu-gcc $cflags -fPIC -I"$node_include" -c "$f" -o "$out/${f%.c}.o"
done
echo "gcc: $(ls *.c | tr '\n' ' ')"
clang=$(command -v clang || command -v clang-16 || true)
if [ -n "$clang" ]; then
  for f in *.c; do
    "$clang" --target=aarch64-linux-gnu $cflags -fPIC -I"$node_include" -c "$f" -o "$out/${f%.c}.clang.o"
  done
  echo "$(basename "$clang"): $(ls *.c | tr '\n' ' ')"
else
  echo "(no clang installed: the clang compile is skipped)"
fi
echo "cross-check: all passed"
