#!/bin/sh
# examples/common/svgplot: the plot writer the evaluations share
# (examples/common/svgplot_check.c says what it checks).
BUILD=${BUILD:-build}
bin=$BUILD/examples/common/svgplot_check
[ -x "$bin" ] || { echo "FAIL: $bin not built (make check builds it)"; exit 1; }
"$bin"
