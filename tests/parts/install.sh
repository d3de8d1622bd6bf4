#!/bin/sh
# make install / uninstall into a DESTDIR, then build examples/minimal.c with
# nothing but the flags pkg-config gives, shared and static, against:
#   1. the relocatable kvc.pc of a standard layout (PREFIX=/usr/local),
#      also after moving the whole staged tree elsewhere;
#   2. the absolute kvc.pc of a layout whose pkgconfig dir is outside prefix,
#      found through PKG_CONFIG_SYSROOT_DIR;
#   3. a real custom prefix, run through -Wl,-rpath or LD_LIBRARY_PATH;
#   4. the in-tree kvc-uninstalled.pc.
# Each: shared; libkvc static with libc shared (-l:libkvc.a, as documented);
# fully static.
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

    # libkvc static, libc shared: the documented line (README, docs/README.md)
    quiet "$CC" -std=c11 -Wall -Werror examples/minimal.c $(pc --cflags kvc) $(pc --libs-only-L kvc) -l:libkvc.a -lm \
        -o "$tmp/min-kvc-static"
    ! readelf -d "$tmp/min-kvc-static" | grep -q 'NEEDED.*libkvc' || fail "$tag: -l:libkvc.a still needs libkvc.so"
    readelf -d "$tmp/min-kvc-static" | grep -q 'NEEDED.*libc\.so' || fail "$tag: -l:libkvc.a: libc not shared"
    env -u LD_LIBRARY_PATH "$tmp/min-kvc-static" >"$tmp/out" 2>&1 || { cat "$tmp/out"; fail "$tag: libkvc-static run"; }
    grep -q "^libkvc $version:" "$tmp/out" || { cat "$tmp/out"; fail "$tag: unexpected libkvc-static output"; }
    # plain --static --libs alone still picks libkvc.so when both exist: the docs say so
    quiet "$CC" -std=c11 examples/minimal.c $(pc --cflags kvc) $(pc --static --libs kvc) -o "$tmp/min-pcstatic"
    readelf -d "$tmp/min-pcstatic" | grep -q 'NEEDED.*libkvc\.so' ||
        fail "$tag: pkg-config --static --libs alone linked libkvc statically: update the docs"

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

# 3. a shared build in a custom prefix (a real one, not staged): the binary
#    finds libkvc through the rpath the docs give, with no LD_LIBRARY_PATH
pre=$tmp/prefix
quiet make --no-print-directory -j2 install BUILD="$tmp/build3" OUT="$tmp/build3/lib" CFLAGS=-O0 PREFIX="$pre"
pcdir=$pre/lib/pkgconfig
libdir=$(pc --variable=libdir kvc)
[ "$(cd "$libdir" && pwd -P)" = "$(cd "$pre/lib" && pwd -P)" ] || fail "custom prefix: libdir '$libdir', expected $pre/lib"
quiet "$CC" -std=c11 -Wall -Werror examples/minimal.c $(pc --cflags --libs kvc) -Wl,-rpath,"$libdir" -o "$tmp/min-rpath"
env -u LD_LIBRARY_PATH "$tmp/min-rpath" >"$tmp/out" 2>&1 || { cat "$tmp/out"; fail "custom prefix: rpath run"; }
grep -q "^libkvc $version:" "$tmp/out" || { cat "$tmp/out"; fail "custom prefix: unexpected output"; }
lib=$(env -u LD_LIBRARY_PATH ldd "$tmp/min-rpath" | sed -n 's/.*libkvc\.so\.0 => \([^ ]*\).*/\1/p')
[ -n "$lib" ] && [ "$(readlink -f "$lib")" = "$(readlink -f "$pre/lib/libkvc.so.0")" ] ||
    fail "custom prefix: libkvc.so.0 resolved to '$lib'"
# without the rpath, LD_LIBRARY_PATH does it (and nothing else would)
quiet "$CC" -std=c11 -Wall -Werror examples/minimal.c $(pc --cflags --libs kvc) -o "$tmp/min-norpath"
LD_LIBRARY_PATH="$libdir" "$tmp/min-norpath" >"$tmp/out" 2>&1 || { cat "$tmp/out"; fail "custom prefix: LD_LIBRARY_PATH run"; }
quiet make --no-print-directory uninstall BUILD="$tmp/build3" OUT="$tmp/build3/lib" PREFIX="$pre"
check_empty "$pre" "PREFIX=$pre"

# 4. in-tree builds through kvc-uninstalled.pc
[ -f "$OUT/kvc-uninstalled.pc" ] || fail "$OUT/kvc-uninstalled.pc missing (make builds it)"
pcdir=$OUT
build_and_run "$(cd "$OUT" && pwd)" uninstalled
echo "install, pkg-config (relocatable, moved, sysroot, custom prefix + rpath, uninstalled), shared, libkvc static"\
    "(-l:libkvc.a) and fully static, uninstall: ok"
