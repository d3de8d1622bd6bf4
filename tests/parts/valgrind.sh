#!/bin/sh
# check: start early (one of the longest parts; check.sh starts these first)
# The unit runner under valgrind memcheck: 0 errors and 0 bytes definitely
# lost. KVC_TEST_SHORT=1 asks long tests for shorter traces (valgrind is
# ~30x slower); every test still runs.
BUILD=${BUILD:-build}
command -v valgrind >/dev/null 2>&1 || { echo "skip: valgrind not found"; exit 77; }
bin=$BUILD/tests/kvc-test
[ -x "$bin" ] || { echo "FAIL: $bin missing"; exit 1; }
log=$(mktemp)
trap 'rm -f "$log"' EXIT
KVC_TEST_SHORT=1 valgrind --tool=memcheck --error-exitcode=99 --leak-check=full \
    --errors-for-leak-kinds=definite --show-leak-kinds=definite \
    --log-file="$log" "$bin" >"$log.out" 2>&1
rc=$?
grep '^unit: ' "$log.out"
grep -E 'ERROR SUMMARY|definitely lost' "$log"
if [ $rc -ne 0 ]; then
    cat "$log.out" | grep -v '^ok ' | tail -n 30
    grep -B2 -A25 -E '^==[0-9]+== (Invalid|Conditional|Use of|Syscall|Mismatched|Source and|Argument)|definitely lost in' "$log" | head -n 120
    echo "FAIL: valgrind exit $rc"
    rm -f "$log.out"
    exit 1
fi
rm -f "$log.out"
