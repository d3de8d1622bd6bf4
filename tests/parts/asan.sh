#!/bin/sh
# check: start early (one of the longest parts; check.sh starts these first)
# The whole unit suite, then the fuzz corpus replay, built with
# ASan + UBSan (-fno-sanitize-recover=all, leak detection on): any finding
# fails. Builds into build/asan with `make asan` and `make fuzz-replay-asan`.
command -v "${CC:-cc}" >/dev/null 2>&1 || { echo "skip: no C compiler"; exit 77; }
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! make --no-print-directory -s asan >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "FAIL: make asan"
    exit 1
fi
grep '^unit: ' "$log"
if ! make --no-print-directory -s fuzz-replay-asan >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "FAIL: make fuzz-replay-asan"
    exit 1
fi
grep '^replayed' "$log"
