#!/bin/sh
# The committed proving-ground model (examples/reasoning/model): the checkpoint
# is the one its checksum names; with the full cache it solves every task; and
# the policy orderings docs/reasoning.md reports with non-overlapping 95%
# intervals hold again on a fresh sample. No timing assertions.
BUILD=${BUILD:-build}
bin=$BUILD/examples/reasoning/reason
dir=examples/reasoning/model
[ -x "$bin" ] || { echo "FAIL: $bin not built (make check builds it)"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }

(cd "$dir" && sha256sum -c --quiet model.sha256) || bad "model.bin does not match model.sha256"

# full cache: the share solved on the first 50 instances of each task stays
# above the floor written in full_cache_floor.txt (set below what make reasoning measured)
"$bin" --policies full --n 50 --csv "$tmp/full.csv" --quiet >/dev/null 2>"$tmp/err" ||
    bad "full-cache run failed: $(cat "$tmp/err")"
while read -r task floor; do
    [ -n "$task" ] || continue
    acc=$(awk -F, -v t="$task" '$1 == t && $2 == "full" { print $6 }' "$tmp/full.csv")
    if [ -z "$acc" ]; then
        bad "no full-cache row for $task"
    elif awk -v a="$acc" -v f="$floor" 'BEGIN { exit !(a >= f) }'; then
        echo "ok: full cache solves $task: $acc (floor $floor)"
    else
        bad "full-cache accuracy on $task is $acc, below its floor $floor"
    fi
done <examples/reasoning/full_cache_floor.txt

# orderings, "task budget better worse", each checked on instances 200..299
# (the documented figures used 0..199): better's lower bound above worse's upper
while read -r task budget better worse; do
    case "$task" in '' | '#'*) continue ;; esac
    "$bin" --policies "$better,$worse" --budgets "$budget" --chase-budget "$budget" --n 100 --skip 200 \
        --only "$task" --csv "$tmp/o.csv" --quiet >/dev/null 2>"$tmp/err" || {
        bad "ordering run failed: $(cat "$tmp/err")"
        continue
    }
    lo=$(awk -F, -v t="$task" -v p="\"$better\"" -v b="$budget" '$1 == t && $2 == p && $3 == b { print $7 }' "$tmp/o.csv")
    hi=$(awk -F, -v t="$task" -v p="\"$worse\"" -v b="$budget" '$1 == t && $2 == p && $3 == b { print $8 }' "$tmp/o.csv")
    if [ -z "$lo" ] || [ -z "$hi" ]; then
        bad "no rows for $better / $worse on $task at $budget"
    elif awk -v lo="$lo" -v hi="$hi" 'BEGIN { exit !(lo > hi) }'; then
        echo "ok: $task at budget $budget: $better (lower bound $lo) above $worse (upper bound $hi)"
    else
        bad "$task at budget $budget: $better (lower bound $lo) no longer above $worse (upper bound $hi)"
    fi
done <examples/reasoning/orderings.txt

[ $fail -eq 0 ] && echo "reasoning model: checkpoint verified, full cache solves every task, measured orderings hold"
exit $fail
