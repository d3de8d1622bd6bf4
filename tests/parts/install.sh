#!/bin/sh
# make install / uninstall into a DESTDIR, then build examples/minimal.c with
# nothing but the flags pkg-config gives, shared and static, against:
#   1. the relocatable kvc.pc of a standard layout (PREFIX=/usr/local),
#      also after moving the whole staged tree elsewhere;
#   2. the absolute kvc.pc of a layout whose pkgconfig dir is outside prefix,
#      found through PKG_CONFIG_SYSROOT_DIR;
#   3. the in-tree kvc-uninstalled.pc.
# Every uninstall must leave no file behind.
BUILD=${BUILD:-build}
OUT=${OUT:-lib}
CC=${CC:-cc}
command -v pkg-config >/dev/null 2>&1 || { echo "skip: pkg-config not found"; exit 77; }
command -v readelf >/dev/null 2>&1 || { echo "skip: readelf not found"; exit 77; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
# Run quietly; show the output only when the command fails.
quiet() { "$@" >"$tmp/log" 2>&1 || { cat "$tmp/log"; fail "$*"; }; }

version=$(sed -n 's/^#define KVC_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\).*/\2/p' include/kvc.h | paste -sd. -)
[ -n "$version" ] || fail "cannot read the version from include/kvc.h"

# pkg-config restricted to one directory (never the system's own .pc files)
pc() { PKG_CONFIG_PATH= PKG_CONFIG_LIBDIR="$pcdir" pkg-config "$@"; }

# build and run minimal.c shared (libkvc found through LD_LIBRARY_PATH=$1) and static
build_and_run() {
    libpath=$1 tag=$2
    flags=$(pc --cflags --libs kvc) || fail "$tag: pkg-config --cflags --libs kvc"
    echo "$tag: $flags"
    quiet "$CC" -std=c11 -Wall -Werror examples/minimal.c $flags -o "$tmp/min-shared"
    readelf -d "$tmp/min-shared" | grep -q 'NEEDED.*\[libkvc\.so\.0\]' || fail "$tag: binary does not need libkvc.so.0"
    LD_LIBRARY_PATH=$libpath "$tmp/min-shared" >"$tmp/out" 2>&1 || { cat "$tmp/out"; fail "$tag: shared run"; }
    grep -q "^libkvc $version:" "$tmp/out" || { cat "$tmp/out"; fail "$tag: unexpected output"; }
    if command -v ldd >/dev/null 2>&1; then
        lib=$(LD_LIBRARY_PATH=$libpath ldd "$tmp/min-shared" | sed -n 's/.*libkvc\.so\.0 => \([^ ]*\).*/\1/p')
        case "$lib" in "$libpath"/*) ;; *) fail "$tag: libkvc.so.0 resolved to '$lib', not under $libpath" ;; esac
    fi

    sflags=$(pc --static --libs kvc) || fail "$tag: pkg-config --static --libs kvc"
    case " $sflags " in *" -lm "*) ;; *) fail "$tag: --static libs lack -lm: $sflags" ;; esac
    quiet "$CC" -std=c11 -Wall -Werror examples/minimal.c $(pc --cflags kvc) -static $sflags -o "$tmp/min-static"
    ! readelf -d "$tmp/min-static" 2>/dev/null | grep -q NEEDED || fail "$tag: static binary has dynamic dependencies"
    env -u LD_LIBRARY_PATH "$tmp/min-static" >"$tmp/out" 2>&1 || { cat "$tmp/out"; fail "$tag: static run"; }
    grep -q "^libkvc $version:" "$tmp/out" || { cat "$tmp/out"; fail "$tag: unexpected static output"; }
    [ "$(pc --modversion kvc)" = "$version" ] || fail "$tag: modversion $(pc --modversion kvc) != $version"
}

# no file may remain after uninstall (empty directories may)
check_empty() {
    left=$(find "$1" ! -type d | sort)
    [ -z "$left" ] || { echo "left behind by make uninstall:"; echo "$left"; fail "uninstall ($2)"; }
}

# 1. standard layout: relocatable kvc.pc
root=$tmp/root
quiet make --no-print-directory install DESTDIR="$root" PREFIX=/usr/local BUILD="$BUILD"
for f in include/kvc.h lib/libkvc.a "lib/libkvc.so.$version" lib/libkvc.so.0 lib/libkvc.so lib/pkgconfig/kvc.pc; do
    [ -e "$root/usr/local/$f" ] || fail "make install did not install /usr/local/$f"
done
[ "$(readlink "$root/usr/local/lib/libkvc.so.0")" = "libkvc.so.$version" ] || fail "libkvc.so.0 symlink"
[ "$(readlink "$root/usr/local/lib/libkvc.so")" = "libkvc.so.0" ] || fail "libkvc.so symlink"
grep -q '^prefix=${pcfiledir}/../..$' "$root/usr/local/lib/pkgconfig/kvc.pc" ||
    { cat "$root/usr/local/lib/pkgconfig/kvc.pc"; fail "installed kvc.pc is not relocatable"; }
pcdir=$root/usr/local/lib/pkgconfig
build_and_run "$root/usr/local/lib" relocatable

# the same files, moved: still usable
mkdir -p "$tmp/moved"
mv "$root/usr/local" "$tmp/moved/kvc"
pcdir=$tmp/moved/kvc/lib/pkgconfig
build_and_run "$tmp/moved/kvc/lib" moved
mv "$tmp/moved/kvc" "$root/usr/local"

quiet make --no-print-directory uninstall DESTDIR="$root" PREFIX=/usr/local BUILD="$BUILD"
check_empty "$root" "PREFIX=/usr/local"

# 2. pkgconfig dir outside prefix: absolute paths, used through a sysroot.
# A separate build dir, so the main build is not touched (-O0: only quicker).
root=$tmp/root2
alt="BUILD=$tmp/build OUT=$tmp/build/lib CFLAGS=-O0 DESTDIR=$root prefix=/opt/kvc PKGCONFIGDIR=/usr/share/pkgconfig"
quiet make --no-print-directory -j2 install $alt
grep -q '^libdir=/opt/kvc/lib$' "$root/usr/share/pkgconfig/kvc.pc" ||
    { cat "$root/usr/share/pkgconfig/kvc.pc"; fail "kvc.pc outside prefix must use absolute paths"; }
pcdir=$root/usr/share/pkgconfig
export PKG_CONFIG_SYSROOT_DIR=$root
build_and_run "$root/opt/kvc/lib" sysroot
unset PKG_CONFIG_SYSROOT_DIR
quiet make --no-print-directory uninstall $alt
check_empty "$root" "prefix=/opt/kvc"

# 3. in-tree builds through kvc-uninstalled.pc
[ -f "$OUT/kvc-uninstalled.pc" ] || fail "$OUT/kvc-uninstalled.pc missing (make builds it)"
pcdir=$OUT
build_and_run "$(cd "$OUT" && pwd)" uninstalled
echo "install, pkg-config (relocatable, moved, sysroot, uninstalled), shared and static, uninstall: ok"
