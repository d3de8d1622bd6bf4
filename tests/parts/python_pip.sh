#!/bin/sh
# check: start early (one of the longest parts; check.sh starts these first)
# `pip install examples/python` as a new user types it, in a fresh venv and
# without network (--no-build-isolation --no-index: the venv's own
# setuptools): the package builds its own libkvc from the tree's sources,
# imports it ("bundled"), passes the binding's tests from outside the tree,
# and leaves no untracked file in the repository. A package built without
# the sources (KVC_PYTHON_BUNDLE=0) finds an installed libkvc through
# pkg-config or KVC_LIBRARY, and otherwise fails with an ImportError that
# says what to do.
PY=/usr/bin/python3
OUT=${OUT:-lib}
fail() { echo "FAIL: $*"; exit 1; }
[ -x "$PY" ] || { echo "skipped: /usr/bin/python3 not found (apt-get install python3)"; exit 77; }
"$PY" -c "import ensurepip, venv" 2>/dev/null || { echo "skipped: python3 venv missing (apt-get install python3-venv)"; exit 77; }
"$PY" -c "import setuptools, wheel" 2>/dev/null ||
    { echo "skipped: setuptools or wheel missing (apt-get install python3-setuptools python3-wheel)"; exit 77; }
for mod in pytest numpy; do
    "$PY" -c "import $mod" 2>/dev/null || { echo "skipped: python3 module $mod missing (apt-get install python3-$mod)"; exit 77; }
done
command -v pkg-config >/dev/null 2>&1 || { echo "skipped: pkg-config not found"; exit 77; }
[ -e "$OUT/kvc-uninstalled.pc" ] || fail "$OUT/kvc-uninstalled.pc missing: run make first"
repo=$(pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
untracked() { git -C "$repo" status --porcelain --untracked-files=all -- examples/python 2>/dev/null | grep '^??'; }
before=$(untracked)
clean_env() { env -u KVC_LIBRARY -u PKG_CONFIG_PATH -u PKG_CONFIG_LIBDIR -u PYTHONPATH -u LD_LIBRARY_PATH "$@"; }

# 1. the package with its own libkvc
"$PY" -m venv --system-site-packages "$tmp/venv" || fail "python3 -m venv"
clean_env "$tmp/venv/bin/pip" install -q --no-build-isolation --no-index --no-cache-dir "$repo/examples/python" \
    >"$tmp/pip.log" 2>&1 || { cat "$tmp/pip.log"; fail "pip install examples/python"; }
after=$(untracked)
[ "$before" = "$after" ] || { echo "$after"; fail "pip install left untracked files in examples/python (.gitignore)"; }
cd "$tmp" || exit 1
clean_env "$tmp/venv/bin/python" -c '
import os, kvc
assert kvc.library_source == "bundled", (kvc.library_source, kvc.library_path)
assert kvc.library_path.startswith(os.path.dirname(kvc.__file__)), kvc.library_path
assert os.path.exists(os.path.join(os.path.dirname(kvc.__file__), "py.typed"))
print("pip install: kvc", kvc.__version__, "with its own libkvc", kvc.version(), "(%s)" % kvc.active_isa())
' || fail "the installed package does not use its own libkvc"
clean_env KVC_TEST_INSTALLED=1 PYTHONDONTWRITEBYTECODE=1 "$tmp/venv/bin/python" -m pytest -q -p no:cacheprovider \
    "$repo/examples/python/tests" >"$tmp/pytest.log" 2>&1 || { tail -n 30 "$tmp/pytest.log"; fail "tests against the installed package"; }
tail -n 1 "$tmp/pytest.log"

# 2. a package without the sources: an installed libkvc, or a clear ImportError
"$PY" -m venv --system-site-packages "$tmp/bare" || fail "python3 -m venv"
clean_env KVC_PYTHON_BUNDLE=0 "$tmp/bare/bin/pip" install -q --no-build-isolation --no-index --no-cache-dir \
    "$repo/examples/python" >"$tmp/pip.log" 2>&1 || { cat "$tmp/pip.log"; fail "pip install (KVC_PYTHON_BUNDLE=0)"; }
[ "$before" = "$(untracked)" ] || fail "pip install (KVC_PYTHON_BUNDLE=0) left untracked files"
if clean_env "$tmp/bare/bin/python" -c 'import kvc' >"$tmp/err" 2>&1; then
    echo "note: a system libkvc was found by the loader; ImportError not checked"
else
    for w in ImportError KVC_LIBRARY pkg-config "pip install"; do
        grep -q "$w" "$tmp/err" || { cat "$tmp/err"; fail "the ImportError does not mention $w"; }
    done
fi
how() { "$tmp/bare/bin/python" -c 'import kvc; print(kvc.library_source)'; }
[ "$(clean_env PKG_CONFIG_PATH="$repo/$OUT" sh -c "$(printf '%s' "$tmp/bare/bin/python -c 'import kvc; print(kvc.library_source)'")")" = pkg-config ] ||
    fail "an installed libkvc is not found through pkg-config"
[ "$(clean_env KVC_LIBRARY="$repo/$OUT/libkvc.so" "$tmp/bare/bin/python" -c 'import kvc; print(kvc.library_source)')" = KVC_LIBRARY ] ||
    fail "KVC_LIBRARY is not used"
echo "without its own copy: pkg-config and KVC_LIBRARY found, otherwise an ImportError that says what to do"
