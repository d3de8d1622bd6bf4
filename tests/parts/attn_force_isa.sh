#!/bin/sh
# KVC_FORCE_ISA decides the attention kernel a process starts with: each name
# (and an unusable one, which falls back to the CPU's best) checked by the
# attn_isa_selection unit test in a fresh process.
BUILD=${BUILD:-build}
bin=$BUILD/tests/kvc-test
[ -x "$bin" ] || { echo "FAIL: $bin not built"; exit 1; }
for isa in scalar avx2 avx512 avx512_vnni avx512_bf16 neon auto bogus ""; do
    out=$(KVC_FORCE_ISA=$isa "$bin" attn_isa_selection 2>&1)
    echo "$out" | grep -q "^unit: 1 passed, 0 failed" || {
        echo "$out"
        echo "FAIL: KVC_FORCE_ISA=$isa"
        exit 1
    }
done
echo "KVC_FORCE_ISA honoured for every name"
