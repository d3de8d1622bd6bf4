#!/bin/sh
# The whole test suite: the C unit runner, then every tests/parts/*.sh.
# A part exits 0 (passed), 77 (skipped: it prints why) or anything else (failed).
# Under KVC_REQUIRE_ALL=1 a skip is a failure. Ends with "total: N passed, N failed, N skipped".
BUILD=${BUILD:-build}
export BUILD
passed=0 failed=0 skipped=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT

echo "== unit tests"
"$BUILD/tests/kvc-test" | tee "$log"
line=$(grep '^unit: ' "$log" | tail -n 1)
if [ -z "$line" ]; then
    echo "not ok unit runner (crashed or printed no summary)"
    failed=$((failed + 1))
else
    set -- $(echo "$line" | tr -cs '0-9' ' ')
    passed=$((passed + $1)) failed=$((failed + $2)) skipped=$((skipped + $3))
fi

for part in tests/parts/*.sh; do
    [ -e "$part" ] || continue
    name=$(basename "$part" .sh)
    echo "== $name"
    t0=$(date +%s)
    sh "$part"
    rc=$?
    secs=$(($(date +%s) - t0))
    if [ $rc -eq 0 ]; then
        echo "ok $name (${secs} s)"
        passed=$((passed + 1))
    elif [ $rc -eq 77 ]; then
        if [ "${KVC_REQUIRE_ALL:-0}" = 1 ]; then
            echo "not ok $name (skipped, but KVC_REQUIRE_ALL=1; ${secs} s)"
            failed=$((failed + 1))
        else
            echo "skipped $name (${secs} s)"
            skipped=$((skipped + 1))
        fi
    else
        echo "not ok $name (exit $rc, ${secs} s)"
        failed=$((failed + 1))
    fi
done
echo "total: $passed passed, $failed failed, $skipped skipped"
[ $failed -eq 0 ]
