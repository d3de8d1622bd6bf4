#!/bin/sh
# check: start early (one of the longest parts; check.sh starts these first)
# The unit suite under clang's UBSan (`make ubsan`): clang reports pointer
# arithmetic past an array and wrapping offsets, which gcc's UBSan (the asan
# part) does not. Skipped without clang.
command -v "${UBSAN_CC:-clang}" >/dev/null 2>&1 || { echo "skip: ${UBSAN_CC:-clang} not found"; exit 77; }
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! make --no-print-directory -s ubsan >"$log" 2>&1; then
    grep -v '^ok ' "$log" | tail -n 60
    echo "FAIL: make ubsan"
    exit 1
fi
grep '^unit: ' "$log"
