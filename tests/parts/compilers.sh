#!/bin/sh
# check: start early (one of the longest parts; check.sh starts these first)
# The build is warning-free (WERROR=1: -Werror) with both gcc and clang: the
# library, the unit tests and the examples, each compiler in its own build
# dir ($BUILD/gcc, $BUILD/clang) so the main build is left alone.
BUILD=${BUILD:-build}
fail=0
ran=0
for cc in gcc clang; do
    if ! command -v $cc >/dev/null 2>&1; then
        echo "$cc not found"
        continue
    fi
    ran=$((ran + 1))
    log=$BUILD/$cc/build.log
    mkdir -p "$BUILD/$cc"
    # -O2 as the default build (some warnings need the optimiser); no -g: not needed here
    if make --no-print-directory -j2 CC=$cc CFLAGS=-O2 WERROR=1 BUILD="$BUILD/$cc" OUT="$BUILD/$cc/lib" \
        all tests examples integration custom_policy >"$log" 2>&1; then
        # compiler and linker warnings; not make's own (e.g. about the jobserver)
        if grep -i 'warning:' "$log" | grep -v '^make'; then
            echo "FAIL: $cc build printed warnings (full log: $log)"
            fail=1
        else
            echo "$cc: clean ($($cc --version | head -n 1))"
        fi
    else
        tail -n 30 "$log"
        echo "FAIL: $cc build failed (full log: $log)"
        fail=1
    fi
done
if [ $ran -lt 2 ]; then
    echo "skip: needs both gcc and clang"
    [ $fail -eq 0 ] && exit 77
fi
exit $fail
