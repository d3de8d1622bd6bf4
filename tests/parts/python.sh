#!/bin/sh
# Python binding (examples/python): pytest with Debian's python3, numpy and
# pytest, against the library just built in the tree.
PY=/usr/bin/python3
if [ ! -x "$PY" ]; then
    echo "skipped: /usr/bin/python3 not found (apt-get install python3)"
    exit 77
fi
for mod in pytest numpy; do
    if ! "$PY" -c "import $mod" 2>/dev/null; then
        echo "skipped: python3 module $mod missing (apt-get install python3-$mod)"
        exit 77
    fi
done
lib="$(pwd)/${OUT:-lib}/libkvc.so"
if [ ! -e "$lib" ]; then
    echo "$lib missing: run make first"
    exit 1
fi
cd examples/python || exit 1
KVC_LIBRARY="$lib" PYTHONDONTWRITEBYTECODE=1 "$PY" -m pytest -q -p no:cacheprovider tests
rc=$?
if [ $rc -eq 5 ]; then
    echo "pytest collected no tests"
    exit 1
fi
exit $rc
