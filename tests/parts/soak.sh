#!/bin/sh
# The load test in short (make soak runs the long one): no allocation after
# warm-up, flat RSS, hashes reproduced across runs and ISAs.
BUILD=${BUILD:-build}
SOAK_BIN=$BUILD/tests/soak SOAK_STEPS=${SOAK_STEPS:-100000} exec sh tests/soak/run.sh
