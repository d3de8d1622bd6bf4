#!/bin/sh
# The user-written policy of docs/policies.md: checked against its reference
# model in INDEX mode and against `window` in STORE mode.
BUILD=${BUILD:-build}
bin=$BUILD/examples/custom_policy/custom_policy
[ -x "$bin" ] || { echo "FAIL: $bin missing (make custom_policy)"; exit 1; }
"$bin"
