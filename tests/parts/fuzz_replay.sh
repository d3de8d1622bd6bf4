#!/bin/sh
# Replays the committed fuzz corpus (tests/fuzz/corpus/<target>/) through the
# fuzz targets built as plain programs (no clang, no libFuzzer): every input
# must pass the targets' reference-model checks.
BUILD=${BUILD:-build}
for t in api spec; do
    bin=$BUILD/tests/fuzz-replay-$t
    [ -x "$bin" ] || { echo "FAIL: $bin missing (make check builds it)"; exit 1; }
    n=$(ls tests/fuzz/corpus/$t | wc -l)
    [ "$n" -gt 0 ] || { echo "FAIL: tests/fuzz/corpus/$t is empty"; exit 1; }
    "$bin" tests/fuzz/corpus/$t || { echo "FAIL: fuzz-$t regression (see the check message above)"; exit 1; }
done
