#!/bin/sh
# The proving ground's pipeline (examples/reasoning), end to end on a model the
# test trains itself for a few steps: the trainer is deterministic and resumes
# exactly where it stopped; its checkpoint loads in the C runner; `reason`
# decodes the committed instances through libkvc caches for several policies
# and writes its table, CSV and plot; two runs give the same bytes (stochastic
# policies included, whatever the thread count); bad input fails clearly.
# Needs python3-torch (Debian); skipped without it.
BUILD=${BUILD:-build}
PY=/usr/bin/python3
bin=$BUILD/examples/reasoning/reason
[ -x "$bin" ] || { echo "FAIL: $bin not built (make check builds it)"; exit 1; }
if [ ! -x "$PY" ] || ! "$PY" -c "import torch" 2>/dev/null; then
    echo "skipped: python3-torch missing (apt-get install python3-torch): the proving-ground trainer needs it"
    exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }
train() { OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 "$PY" examples/reasoning/train.py --steps-scale 0.004 \
    --eval-every 0 --final-eval 0 "$@" >/dev/null 2>"$tmp/train.err"; }

# 1. the evaluation instances are the committed ones
(cd examples/reasoning/data && sha256sum -c --quiet tasks.sha256) || bad "tasks.bin does not match tasks.sha256"

# 2. training: straight through, and stopped then resumed, give the same checkpoint
train --out "$tmp/a" || bad "training failed: $(cat "$tmp/train.err")"
train --out "$tmp/b" --save-every 3 || bad "training failed: $(cat "$tmp/train.err")"
"$PY" - "$tmp/b/state.pt" <<'EOF' || bad "the saved training state is not from before the last steps"
import sys, torch
s = torch.load(sys.argv[1])
assert s["step"] == 12, s["step"]
EOF
# the last state saved is from step 12 of 14 (inside the last phase): a rerun replays steps 13-14 from it
cp "$tmp/b/model.bin" "$tmp/b-first.bin"
train --out "$tmp/b" --save-every 3 || bad "resumed training failed: $(cat "$tmp/train.err")"
grep -q "resumed at step" "$tmp/b/train.log" || bad "the second run did not resume: $(tail -3 "$tmp/b/train.log")"
cmp -s "$tmp/a/model.bin" "$tmp/b/model.bin" || bad "a resumed run differs from an uninterrupted one"
cmp -s "$tmp/a/model.bin" "$tmp/b-first.bin" || bad "two runs with the same seed differ"
(cd "$tmp/a" && sha256sum -c --quiet model.sha256) || bad "model.sha256 does not match the checkpoint it names"

# 3. the C runner evaluates that checkpoint through libkvc caches, with every output
m="$tmp/a/model.bin"
"$bin" --model "$m" --policies "window,h2o,vase,vrange_max" --budgets 64,256 --chase-budget 128 --n 2 \
    --csv "$tmp/r.csv" --md "$tmp/r.md" --svg "$tmp/r.svg" --quiet 2>"$tmp/err" || bad "reason failed: $(cat "$tmp/err")"
# rows: 4 tasks x 4 policies x 2 budgets, 4 full-cache rows, 5 hop counts x (4 policies + full)
rows=$(($(wc -l <"$tmp/r.csv") - 1))
[ "$rows" -eq $((32 + 4 + 25)) ] || bad "expected 61 CSV rows, got $rows"
grep -q '^| `vrange_max` |' "$tmp/r.md" || bad "the adversarial control is missing from the table"
grep -q 'paper, oblivious' "$tmp/r.md" || bad "the pointer-chasing table lacks the paper's predictions"
grep -q 'viewBox=' "$tmp/r.svg" && grep -q '</svg>' "$tmp/r.svg" || bad "the plot is not a complete scalable SVG"
awk -F, 'NR > 1 && ($6 < 0 || $6 > 1 || $7 > $6 + 1e-9 || $8 < $6 - 1e-9) { exit 1 }' "$tmp/r.csv" ||
    bad "an accuracy or interval is out of order in the CSV"

# 4. reproducible: the same run twice, on 2 threads then 1, gives the same bytes
args="--model $m --policies random,vase,h2o --budgets 128 --chase-budget 128 --n 3 --only needle,chase --quiet"
"$bin" $args --csv "$tmp/d1.csv" >/dev/null 2>&1 || bad "determinism run 1 failed"
"$bin" $args --csv "$tmp/d2.csv" --threads 1 >/dev/null 2>&1 || bad "determinism run 2 failed"
cmp -s "$tmp/d1.csv" "$tmp/d2.csv" || bad "two identical runs (2 threads, then 1) gave different results"

# 5. clear failures
"$bin" --model "$tmp/none.bin" >/dev/null 2>"$tmp/err" && bad "missing checkpoint accepted"
grep -q 'cannot open' "$tmp/err" || bad "no clear message for a missing checkpoint: $(cat "$tmp/err")"
"$bin" --model "$m" --only nosuch >/dev/null 2>"$tmp/err" && bad "unknown task accepted"
grep -q "unknown task 'nosuch'" "$tmp/err" || bad "no clear message for an unknown task: $(cat "$tmp/err")"
"$bin" --model "$m" --policies nosuch --n 1 >/dev/null 2>"$tmp/err" && bad "unknown policy accepted"
grep -qi 'unknown' "$tmp/err" || bad "no clear message for an unknown policy: $(cat "$tmp/err")"
"$bin" --model "$m" --budgets 0 >/dev/null 2>"$tmp/err" && bad "budget 0 accepted"
grep -q "budget '0'" "$tmp/err" || bad "no clear message for budget 0: $(cat "$tmp/err")"
head -c 100 examples/reasoning/data/tasks.bin >"$tmp/short.bin"
"$bin" --model "$m" --tasks "$tmp/short.bin" >/dev/null 2>"$tmp/err" && bad "truncated task file accepted"
grep -q 'truncated' "$tmp/err" || bad "no clear message for a truncated task file: $(cat "$tmp/err")"

[ $fail -eq 0 ] && echo "reasoning: trainer deterministic and resumable, checkpoint runs in C, tables and plot written, runs reproducible"
exit $fail
