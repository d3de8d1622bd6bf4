#!/bin/sh
# The NEON attention kernel: cross-compile the library for AArch64, link the
# attention tests (tests/test_attn.c with the unit runner) statically, and run
# them under qemu-aarch64. There the tests force "scalar" and "neon" in turn.
BUILD=${BUILD:-build}
CROSS=${CROSS_CC:-aarch64-linux-gnu-gcc}
QEMU=${QEMU_AARCH64:-qemu-aarch64}
command -v "$CROSS" >/dev/null 2>&1 || { echo "skip: $CROSS not found (Debian: gcc-aarch64-linux-gnu libc6-dev-arm64-cross)"; exit 77; }
command -v "$QEMU" >/dev/null 2>&1 || { echo "skip: $QEMU not found (Debian: qemu-user)"; exit 77; }

dir=$BUILD/aarch64
log=$(mktemp)
trap 'rm -f "$log"' EXIT
make -s CC="$CROSS" BUILD="$dir" OUT="$dir/lib" "$dir/lib/libkvc.a" >"$log" 2>&1 || {
    cat "$log"
    echo "FAIL: cross build of the library"
    exit 1
}
mkdir -p "$dir/tests"
"$CROSS" -std=c11 -Wall -Wextra -Wpedantic -Werror -Iinclude -Ilib -Itests -O2 -static \
    -o "$dir/tests/kvc-test-attn" tests/runner.c tests/test_attn.c "$dir/lib/libkvc.a" -lm >"$log" 2>&1 || {
    cat "$log"
    echo "FAIL: cross build of the attention tests"
    exit 1
}
# the static binary needs no sysroot; -L serves a dynamic build too
"$QEMU" -L /usr/aarch64-linux-gnu "$dir/tests/kvc-test-attn" attn >"$log" 2>&1
rc=$?
cat "$log"
grep -q "attention ISAs available here: scalar neon" "$log" || { echo "FAIL: the NEON kernel was not available"; exit 1; }
grep -q "^unit: [0-9]* passed, 0 failed, 0 skipped" "$log" && [ $rc -eq 0 ] || { echo "FAIL: attention tests under qemu"; exit 1; }
