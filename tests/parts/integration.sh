#!/bin/sh
# The integration examples of docs/integration.md: each checks its own wiring
# (threaded vs. serial STORE caches, cell map vs. INDEX cache, pages vs. block
# eviction, pages vs. prefill and compaction plans) and exits 1 when something disagrees.
BUILD=${BUILD:-build}
rc=0
for ex in store_engine index_cells paged_blocks paged_compact; do
    bin=$BUILD/examples/integration/$ex
    if [ ! -x "$bin" ]; then
        echo "FAIL: $bin missing (make integration)"
        rc=1
        continue
    fi
    "$bin" || { echo "FAIL: $ex (exit $?)"; rc=1; }
done
exit $rc
