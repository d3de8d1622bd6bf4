#!/bin/sh
# The whole test suite: the C unit runner, then every tests/parts/*.sh.
# A part exits 0 (passed), 77 (skipped: it prints why) or anything else (failed).
# Under KVC_REQUIRE_ALL=1 a skip is a failure. Ends with "total: N passed, N failed, N skipped".
BUILD=${BUILD:-build}
export BUILD
# The parts' own makes choose their jobs (the Makefile's default): the top
# make's jobserver is not passed to this script (a '+' recipe would also run
# under make -n), so its -j and jobserver arguments are dropped, the rest kept
MAKEFLAGS=$(printf '%s\n' "${MAKEFLAGS:-}" | sed -e 's/--jobserver-[a-z]*=[^ ]*//g' -e 's/\(^\| \)-j[0-9]*//g')
export MAKEFLAGS
unset MAKELEVEL # each part's make is a top-level one
passed=0 failed=0 skipped=0
log=$(mktemp)
dir=$(mktemp -d)
trap 'rm -f "$log"; rm -rf "$dir"' EXIT

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

# Parts run KVC_CHECK_JOBS at a time (default: one per online CPU; each is
# a separate process tree writing only its own dirs), their output is kept
# and printed whole, in name order, as soon as every earlier part is done.
jobs=${KVC_CHECK_JOBS:-$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)}
case $jobs in '' | *[!0-9]* | 0) jobs=1 ;; esac
names=
for part in tests/parts/*.sh; do
    [ -e "$part" ] && names="$names $(basename "$part" .sh)"
done
# start(name): run it in the background; its .rc file appears when it ends
start() {
    (
        t0=$(date +%s)
        sh "tests/parts/$1.sh" >"$dir/$1.out" 2>&1
        rc=$?
        echo "$rc $(($(date +%s) - t0))" >"$dir/$1.tmp" && mv "$dir/$1.tmp" "$dir/$1.rc"
    ) &
}
report() {
    read -r rc secs <"$dir/$1.rc"
    echo "== $1"
    cat "$dir/$1.out"
    if [ "$rc" -eq 0 ]; then
        echo "ok $1 (${secs} s)"
        passed=$((passed + 1))
    elif [ "$rc" -eq 77 ]; then
        if [ "${KVC_REQUIRE_ALL:-0}" = 1 ]; then
            echo "not ok $1 (skipped, but KVC_REQUIRE_ALL=1; ${secs} s)"
            failed=$((failed + 1))
        else
            echo "skipped $1 (${secs} s)"
            skipped=$((skipped + 1))
        fi
    else
        echo "not ok $1 (exit $rc, ${secs} s)"
        failed=$((failed + 1))
    fi
}
pending=$names # not yet reported (in name order)
# not yet started: the parts marked "# check: start early" first
waiting="$(for n in $names; do grep -q '^# check: start early' "tests/parts/$n.sh" && echo "$n"; done)"
waiting="$waiting $(for n in $names; do grep -q '^# check: start early' "tests/parts/$n.sh" || echo "$n"; done)"
started=0
while [ -n "$pending" ]; do
    finished=$(find "$dir" -name '*.rc' | wc -l) # a part's slot is free once its .rc exists
    while [ $((started - finished)) -lt "$jobs" ] && [ -n "$waiting" ]; do
        set -- $waiting
        start "$1"
        shift
        waiting="$*"
        started=$((started + 1))
    done
    set -- $pending
    while [ $# -gt 0 ] && [ -e "$dir/$1.rc" ]; do # report the finished head of the list
        report "$1"
        shift
    done
    [ "$pending" != "$*" ] || sleep 0.2 2>/dev/null || sleep 1
    pending="$*"
done
wait
echo "total: $passed passed, $failed failed, $skipped skipped"
[ $failed -eq 0 ]
