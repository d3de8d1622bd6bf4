#!/bin/sh
# The proving ground's PyTorch side (examples/reasoning), with Debian's
# python3-torch:
#  1. the INDEX-mode decoder (engine.py): the model's own function with a full
#     cache, libkvc's slot map mirrored, K/V where libkvc said, empty slots
#     masked, observations only for policies that read attention;
#  2. the differential test (differential.py): PyTorch + INDEX mode and the C
#     runner on STORE mode make the same evictions and greedy tokens on the
#     committed checkpoint, for every deterministic policy (near-ties within
#     the documented tolerance aside).
# The training script's own smoke test (determinism, resume, the C runner
# loading its checkpoint) is tests/parts/reasoning.sh.
BUILD=${BUILD:-build}
PY=/usr/bin/python3
if [ ! -x "$PY" ]; then
    echo "skipped: /usr/bin/python3 not found (apt-get install python3)"
    exit 77
fi
for mod in torch numpy pytest; do
    if ! "$PY" -c "import $mod" 2>/dev/null; then
        echo "skipped: python3 module $mod missing (apt-get install python3-$mod)"
        exit 77
    fi
done
lib="$(pwd)/${OUT:-lib}/libkvc.so"
llama=$BUILD/examples/llama/llama
model=examples/reasoning/model/model.bin
[ -e "$lib" ] || { echo "FAIL: $lib missing: run make first"; exit 1; }
[ -x "$llama" ] || { echo "FAIL: $llama not built (make check builds it)"; exit 1; }
[ -f "$model" ] || { echo "FAIL: the proving-ground checkpoint $model is missing"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# the machine is shared: one BLAS and one torch thread
export KVC_LIBRARY="$lib" OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 PYTHONDONTWRITEBYTECODE=1
fail=0

"$PY" -m pytest -q -p no:cacheprovider examples/reasoning/test_engine.py || fail=1

"$PY" examples/reasoning/differential.py --model "$model" --llama "$llama" --budgets 24 --length 80 \
    >"$tmp/diff" 2>"$tmp/diff.err"
rc=$?
cat "$tmp/diff"
[ $rc -eq 0 ] || { cat "$tmp/diff.err"; echo "FAIL: differential test (exit $rc)"; fail=1; }

[ $fail -eq 0 ] && echo "reasoning (PyTorch): engine tests and the INDEX/STORE differential passed"
exit $fail
