#!/bin/sh
# The shared library's ABI surface: SONAME libkvc.so.0 with its symlinks, only
# kvc_ symbols exported, every KVC_API function of the header exported, and no
# global symbol of the static library outside the kvc_ / kvc__ namespace.
OUT=${OUT:-lib}
command -v nm >/dev/null 2>&1 || { echo "skip: nm not found"; exit 77; }
command -v readelf >/dev/null 2>&1 || { echo "skip: readelf not found"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

major=$(sed -n 's/^#define KVC_VERSION_MAJOR \([0-9]*\).*/\1/p' include/kvc.h)
so=$OUT/libkvc.so
[ -f "$so" ] || fail "$so missing (run make)"

soname=$(readelf -d "$so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = "libkvc.so.$major" ] || fail "SONAME is '$soname', expected libkvc.so.$major"
[ "$soname" = libkvc.so.0 ] || fail "SONAME is '$soname', expected libkvc.so.0 for ABI version 0"
[ "$(readlink "$OUT/libkvc.so")" = "$soname" ] || fail "$OUT/libkvc.so does not link to $soname"
[ -e "$OUT/$soname" ] || fail "$OUT/$soname missing"
echo "SONAME $soname"

# exported (dynamic, defined) symbols: only kvc_ names
nm -D --defined-only "$so" | awk '{print $NF}' | sort -u >"$tmp/exported"
[ -s "$tmp/exported" ] || fail "no exported symbols in $so"
bad=$(grep -v '^kvc_' "$tmp/exported" || true)
internal=$(grep '^kvc__' "$tmp/exported" || true)
[ -z "$bad$internal" ] || { echo "$bad$internal"; fail "symbols outside the public kvc_ namespace exported"; }
echo "$(wc -l <"$tmp/exported") exported symbols, all kvc_"

# every function the header declares with KVC_API is exported
sed -n 's/^KVC_API .*[ *]\(kvc_[a-z0-9_]*\)(.*/\1/p' include/kvc.h | sort -u >"$tmp/declared"
[ -s "$tmp/declared" ] || fail "no KVC_API declarations found in include/kvc.h"
missing=$(comm -23 "$tmp/declared" "$tmp/exported")
[ -z "$missing" ] || { echo "$missing"; fail "declared in kvc.h but not exported"; }
extra=$(comm -13 "$tmp/declared" "$tmp/exported")
[ -z "$extra" ] || { echo "$extra"; fail "exported but not declared in kvc.h"; }
echo "$(wc -l <"$tmp/declared") KVC_API functions, all exported"

# static library: global symbols stay in the library's namespace (kvc_, kvc__)
nm --defined-only -g "$OUT/libkvc.a" 2>/dev/null | awk 'NF == 3 {print $3}' | sort -u >"$tmp/global"
[ -s "$tmp/global" ] || fail "no global symbols in $OUT/libkvc.a"
bad=$(grep -v '^kvc_' "$tmp/global" || true)
[ -z "$bad" ] || { echo "$bad"; fail "libkvc.a defines global symbols outside kvc_"; }
echo "libkvc.a: $(wc -l <"$tmp/global") global symbols, all kvc_ / kvc__"
