#!/bin/sh
# Runs the load test (tests/soak/soak.c) on the CPU's best ISA twice, then
# forced onto every other usable ISA (KVC_FORCE_ISA), and compares: the
# full hash must repeat across the two runs, the hash of kernel-independent
# decisions must be the same on every ISA. SOAK_BIN, SOAK_STEPS, SOAK_ARGS.
bin=${SOAK_BIN:-build/tests/soak}
steps=${SOAK_STEPS:-2000000}
[ -x "$bin" ] || { echo "FAIL: $bin missing (make $bin)"; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
field() { sed -n "s/^$1: //p" "$2"; }

run() { # name, KVC_FORCE_ISA value
    if ! KVC_FORCE_ISA=$2 "$bin" --steps "$steps" $SOAK_ARGS >"$dir/$1" 2>"$dir/$1.err"; then
        cat "$dir/$1" "$dir/$1.err"
        echo "FAIL: soak run '$1' (KVC_FORCE_ISA=$2)"
        exit 1
    fi
}
run best1 auto
cat "$dir/best1"
run best2 auto
best=$(field isa "$dir/best1")
fail=0
if [ "$(field 'hash all' "$dir/best1")" != "$(field 'hash all' "$dir/best2")" ]; then
    echo "FAIL: two runs on $best differ: hash all $(field 'hash all' "$dir/best1") vs $(field 'hash all' "$dir/best2")"
    fail=1
fi
printf '%-8s  %-18s  %-18s  %s\n' isa "kernel-independent" "all" "allocs after warm-up, RSS KiB first/last"
for f in best1 best2; do
    printf '%-8s  %-18s  %-18s  %s, %s/%s\n' "$best" "$(field 'hash kernel-independent' "$dir/$f")" \
        "$(field 'hash all' "$dir/$f")" "$(field 'allocations after warm-up' "$dir/$f")" \
        "$(sed -n 's/^RSS KiB: first \([0-9]*\), last \([0-9]*\).*/\1/p' "$dir/$f")" \
        "$(sed -n 's/^RSS KiB: first \([0-9]*\), last \([0-9]*\).*/\2/p' "$dir/$f")"
done
ref=$(field 'hash kernel-independent' "$dir/best1")
for isa in scalar avx2 avx512 avx512_vnni avx512_bf16 neon; do
    [ "$isa" = "$best" ] && continue
    run "$isa" "$isa"
    got=$(field isa "$dir/$isa")
    [ "$got" = "$isa" ] || continue # not usable here: the run fell back to the best ISA
    h=$(field 'hash kernel-independent' "$dir/$isa")
    printf '%-8s  %-18s  %-18s  %s\n' "$isa" "$h" "$(field 'hash all' "$dir/$isa")" \
        "$(field 'allocations after warm-up' "$dir/$isa")"
    if [ "$h" != "$ref" ]; then
        echo "FAIL: kernel-independent decisions differ between $best ($ref) and $isa ($h)"
        fail=1
    fi
done
[ $fail -eq 0 ] && echo "soak: $steps steps per run; hashes reproduced across runs and ISAs"
exit $fail
