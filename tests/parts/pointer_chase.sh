#!/bin/sh
# The pointer-chasing lab on a reduced grid with a fixed seed: every closed-form
# prediction must lie inside its 99.9% Wilson interval, with and without the
# guess on failure; the kvc_cache controllers must give the same lines in
# STORE mode as in INDEX mode. Then the check itself is checked: the same run
# with every prediction 10% off must be caught, and its measured values must
# not change (same seed, same output). Bad arguments must be refused.
BUILD=${BUILD:-build}
BIN=$BUILD/examples/pointer_chase
if [ ! -x "$BIN" ]; then
    echo "not built: $BIN (run make check)"
    exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
GRID=16:8:8,16:4:4,16:8:64,32:8:16,64:16:8

# Count the lines whose prediction is outside the printed interval; fail on
# malformed output or on an ok= field that disagrees with the interval.
outside() {
    awk '
    /^(pc|sep) / {
        pred = ""; lo = ""; hi = ""; ok = ""
        for (i = 2; i <= NF; i++) {
            eq = index($i, "="); if (!eq) continue
            k = substr($i, 1, eq - 1); v = substr($i, eq + 1)
            if (k == "predicted") pred = v
            else if (k == "ok") ok = v
            else if (k ~ /^ci[0-9.]+$/) { gsub(/[\[\]]/, "", v); split(v, b, ","); lo = b[1]; hi = b[2] }
        }
        if (pred == "" || lo == "" || hi == "" || ok == "") { print "malformed: " $0 > "/dev/stderr"; bad = 1; next }
        if (pred == "-") { if (ok != "-") { print "ok without prediction: " $0 > "/dev/stderr"; bad = 1 }; next }
        n++
        if (hi == "inf") hi = 1e308
        inside = (lo + 0 <= pred + 0 && pred + 0 <= hi + 0)
        if (inside != (ok == "yes")) { print "ok= disagrees with the interval: " $0 > "/dev/stderr"; bad = 1 }
        if (!inside) { out++; print "outside: " $0 > "/dev/stderr" }
    }
    END { if (bad) exit 1; if (n < min) { print "only " n " predictions (want >= " min ")" > "/dev/stderr"; exit 1 }
          print out + 0 }' min="$1"
}

"$BIN" --grid "$GRID" --trials 50000 --seed 7 --level 99.9 >"$tmp/plain" 2>"$tmp/err" || { cat "$tmp/err"; exit 1; }
for c in fresh shared follow random window sink; do
    grep -q "cache=$c " "$tmp/plain" || { echo "no line for cache=$c"; exit 1; }
done
n=$(outside 30 <"$tmp/plain") || exit 1
[ "$n" -eq 0 ] || { echo "$n predictions outside their 99.9% interval"; exit 1; }
echo "plain: $(grep -c '^pc ' "$tmp/plain") lines, every prediction inside its 99.9% interval"

# STORE mode must keep the same residents as INDEX mode: the same lines, byte for byte.
"$BIN" --grid 16:8:8,32:8:16 --trials 50000 --seed 7 --level 99.9 --mode store >"$tmp/store" 2>"$tmp/err" || { cat "$tmp/err"; exit 1; }
settings() { grep -E '^(pc|sep) n=(16 s=8 k=8|32 s=8 k=16) ' "$1"; }
[ "$(settings "$tmp/store" | wc -l)" -eq 14 ] && [ "$(settings "$tmp/plain")" = "$(settings "$tmp/store")" ] || {
    echo "STORE mode differs from INDEX mode"
    exit 1
}
echo "store: the same 14 lines as index mode"

"$BIN" --grid 16:8:8,32:8:16 --trials 50000 --seed 7 --level 99.9 --guess >"$tmp/guess" 2>"$tmp/err" || { cat "$tmp/err"; exit 1; }
grep -q 'guess=on' "$tmp/guess" || { echo "guess mode not reported"; exit 1; }
n=$(outside 10 <"$tmp/guess") || exit 1
[ "$n" -eq 0 ] || { echo "guess: $n predictions outside their 99.9% interval"; exit 1; }
echo "guess: every prediction inside its 99.9% interval"

# Wrong predictions must fail; the measurements themselves must be unchanged.
"$BIN" --grid 16:8:8 --trials 50000 --seed 7 --level 99.9 --scale-predicted 1.1 >"$tmp/wrong" 2>"$tmp/err" || { cat "$tmp/err"; exit 1; }
n=$(outside 5 <"$tmp/wrong" 2>/dev/null) || exit 1
[ "$n" -ge 4 ] || { echo "predictions 10% off went unnoticed ($n caught)"; exit 1; }
measured() { grep '^pc n=16 s=8 k=8 ' "$1" | sed 's/ predicted=.*//'; }
[ -n "$(measured "$tmp/plain")" ] && [ "$(measured "$tmp/plain")" = "$(measured "$tmp/wrong")" ] || {
    echo "same seed, different measurements"
    exit 1
}
echo "wrong predictions: $n of $(grep -Ec '^(pc|sep) .*predicted=[0-9]' "$tmp/wrong") caught; same seed, same measurements"

for bad in "--grid 16:15:8" "--grid 16:8:1" "--grid 16:8" "--trials 0" "--level 100" "--seed x" "--mode paged" "--bogus 1"; do
    # shellcheck disable=SC2086
    "$BIN" $bad >/dev/null 2>"$tmp/err"
    rc=$?
    [ $rc -eq 2 ] && [ -s "$tmp/err" ] || { echo "'$bad' gave exit $rc without a message"; exit 1; }
done
echo "bad arguments refused"
