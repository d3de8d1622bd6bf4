#!/bin/sh
# examples/llama/eval on the real stories260K checkpoint, reduced: the
# ordering that the theory (adaptive beats oblivious) and VaSE predict at
# budget 128, the output formats, determinism across thread counts, the
# repetition-loop detector, and clear failures on bad input.
BUILD=${BUILD:-build}
dir=${KVC_MODEL_DIR:-../shared/models/stories260K}
bin=$BUILD/examples/llama/eval
if [ ! -f "$dir/stories260K.bin" ] || [ ! -f "$dir/tok512.bin" ]; then
    echo "model: stories260K.bin/tok512.bin not found in $dir (set KVC_MODEL_DIR); skipping"
    exit 77
fi
[ -x "$bin" ] || { echo "FAIL: $bin not built (make check builds it)"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }
ev() { "$bin" -m "$dir/stories260K.bin" -z "$dir/tok512.bin" "$@"; }

# 1. teacher-forced KL at budget 128 over 8 reference sequences of 512 tokens
ev -q --seqs 8 --budgets 128 --gens 0 --policies h2o,vase,random,window \
    --policy "h2o norm=lifetime" --policy "vase chunk=32" \
    --csv "$tmp/q.csv" --md "$tmp/q.md" --svg "$tmp/q.svg" 2>"$tmp/err" || bad "eval failed: $(cat "$tmp/err")"
head -n 1 "$tmp/q.csv" | grep -q '^policy,budget,kl,top1,ppl_ratio,loop_rate' || bad "CSV header: $(head -n 1 "$tmp/q.csv")"
kl() { awk -F, -v p="$1" -v b="$2" '$1 == p && $2 == b { print $3 }' "$tmp/q.csv"; }
lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a != "" && b != "" && a + 0 < b + 0) }'; }
for p in h2o vase random window "h2o norm=lifetime" "vase chunk=32"; do
    [ -n "$(kl "$p" 128)" ] || bad "no row for '$p' at budget 128"
done
# the full cache against itself: the pipeline is deterministic
grep -q '^full,512,0,1,1,' "$tmp/q.csv" || bad "full cache is not exactly itself: $(grep '^full' "$tmp/q.csv")"
# adaptive policies beat the oblivious random baseline (library defaults)
for p in h2o vase; do
    lt "$(kl $p 128)" "$(kl random 128)" || bad "$p KL $(kl $p 128) not below random $(kl random 128)"
done
# ... and VaSE (library defaults) beats the sliding window too. H2O with its
# paper's plain sum keeps the old heavy hitters of a finished story and ties
# or loses to the window on this model; dividing by the steps observed
# (norm=lifetime) removes that: docs/quality.md has the measurements.
lt "$(kl vase 128)" "$(kl window 128)" || bad "vase KL $(kl vase 128) not below window $(kl window 128)"
lt "$(kl "h2o norm=lifetime" 128)" "$(kl window 128)" ||
    bad "h2o norm=lifetime KL $(kl "h2o norm=lifetime" 128) not below window $(kl window 128)"
echo "budget 128, KL(full||policy): h2o $(kl h2o 128), vase $(kl vase 128), random $(kl random 128)," \
    "window $(kl window 128), h2o norm=lifetime $(kl "h2o norm=lifetime" 128), vase chunk=32 $(kl "vase chunk=32" 128)"

# 2. the markdown table and the SVG (two panels, one line per policy in each,
#    error bars, a legend; examples/common/svgplot_check.c tests the writer itself)
grep -q '^| policy | budget |' "$tmp/q.md" || bad "markdown table header missing"
[ "$(grep -c '^| ' "$tmp/q.md")" -eq 8 ] || bad "markdown table should have 8 lines, has $(grep -c '^| ' "$tmp/q.md")"
grep -q '^<svg ' "$tmp/q.svg" && grep -q '</svg>' "$tmp/q.svg" || bad "SVG not well formed"
[ "$(grep -c '<polyline' "$tmp/q.svg")" -eq 12 ] || bad "SVG should have 12 policy lines, has $(grep -c '<polyline' "$tmp/q.svg")"
grep -q 'viewBox="0 0 [0-9]* [0-9]*" width="100%"' "$tmp/q.svg" || bad "SVG does not scale (viewBox, width 100%)"
[ "$(grep -c 'class="errbar"' "$tmp/q.svg")" -ge 6 ] || bad "SVG lacks the standard-error bars"
for label in 'budget (tokens per kv head, each layer) (log scale)' 'top-1 agreement' 'KL' 'h2o norm=lifetime' \
    'one standard error'; do
    grep -q "$label" "$tmp/q.svg" || bad "SVG lacks '$label'"
done
if command -v xmllint >/dev/null 2>&1; then xmllint --noout "$tmp/q.svg" || bad "SVG is not valid XML"; fi

# 3. free-running columns, and the same numbers on 1 and 2 threads
for j in 1 2; do
    ev -q -j $j --seqs 3 --len 96 --budgets 16,32 --gens 3 --gen-len 160 --prompt 4 --policies window,vase \
        --csv "$tmp/j$j.csv" 2>"$tmp/err" || bad "small eval -j $j failed: $(cat "$tmp/err")"
done
cmp -s "$tmp/j1.csv" "$tmp/j2.csv" || bad "results depend on the thread count"
awk -F, 'NR > 1 && !($6 >= 0 && $6 <= 1 && $7 > 0 && $7 <= 1 && $10 == 3) { bad = 1 } END { exit bad }' "$tmp/j1.csv" ||
    bad "loop_rate/distinct4/gens out of range: $(cat "$tmp/j1.csv")"
[ "$(wc -l <"$tmp/j1.csv")" -eq 6 ] || bad "expected 1 + 1 + 2x2 CSV lines, got $(wc -l <"$tmp/j1.csv")"

# 4. the loop detector: a 10..40-character phrase 5 times in a row in the last 500 characters
lp() { printf '%s' "$1" | "$bin" --loop-test; }
[ "$(lp 'Once upon a time. abcdefghij abcdefghij abcdefghij abcdefghij abcdefghij ')" = loop ] || bad "5 repeats not a loop"
[ "$(lp 'Once upon a time. abcdefghij abcdefghij abcdefghij abcdefghij ')" = "no loop" ] || bad "4 repeats taken as a loop"
[ "$(lp 'abcdabcdabcdabcdabcd')" = "no loop" ] || bad "20 characters cannot hold 5 repeats of 10"
old="$(printf 'the cat sat. %.0s' 1 2 3 4 5 6)$(seq 1000 1150 | tr '\n' ' ')"
[ "$(lp "$old")" = "no loop" ] || bad "a loop more than 500 characters back still counted"

# 5. clear failures
ev -q --budgets 0 >/dev/null 2>"$tmp/err" && bad "budget 0 accepted"
grep -q 'budget' "$tmp/err" || bad "no clear message for a bad budget: $(cat "$tmp/err")"
ev -q --policy "nosuch" >/dev/null 2>"$tmp/err" && bad "unknown policy accepted"
grep -qi 'unknown' "$tmp/err" || bad "no clear message for an unknown policy: $(cat "$tmp/err")"
ev -q --seqs 2 --gens 3 >/dev/null 2>"$tmp/err" && bad "--gens > --seqs accepted"

exit $fail
