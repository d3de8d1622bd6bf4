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
TSAN_OPTIONS="halt_on_error=1 exitcode=66 $TSAN_OPTIONS" "$bin"
