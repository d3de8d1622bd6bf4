#!/bin/sh
# Threads under ThreadSanitizer (tests/threads/threads.c, built by make
# check when clang is there): the dispatcher's first use from several
# threads, many caches on several threads, and kvc_cache_attend_heads() from
# two threads on one cache. Any report fails.
BUILD=${BUILD:-build}
bin=$BUILD/tsan/threads
if [ ! -x "$bin" ]; then
    command -v "${TSAN_CC:-clang}" >/dev/null 2>&1 || { echo "skip: clang not found (needed for -fsanitize=thread)"; exit 77; }
    echo "FAIL: $bin missing (make check builds it when clang is present)"
    exit 1
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
export TSAN_OPTIONS="halt_on_error=1 exitcode=66 $TSAN_OPTIONS"
"$bin" >"$log" 2>&1
rc=$?
if [ $rc -ne 0 ] && grep -q "unexpected memory mapping" "$log" && command -v setarch >/dev/null 2>&1; then
    # kernels with high mmap randomisation break older TSan runtimes: run without ASLR
    echo "TSan runtime refused this address layout; rerunning with ASLR off"
    setarch "$(uname -m)" -R "$bin" >"$log" 2>&1
    rc=$?
fi
cat "$log"
exit $rc
