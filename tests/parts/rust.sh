#!/bin/sh
# Rust bindings (examples/rust): cargo test --offline against the library just
# built in the tree, found through pkg-config and lib/kvc-uninstalled.pc.
# Linked statically by default; a second, shared-library run checks the rpath.
if ! command -v cargo >/dev/null 2>&1; then
    if [ -x "$HOME/.cargo/bin/cargo" ]; then
        PATH="$HOME/.cargo/bin:$PATH"
    else
        echo "skipped: cargo not found (apt-get install cargo)"
        exit 77
    fi
fi
libdir="$(pwd)/${OUT:-lib}"
if [ ! -e "$libdir/libkvc.a" ] || [ ! -e "$libdir/kvc-uninstalled.pc" ]; then
    echo "$libdir/libkvc.a or kvc-uninstalled.pc missing: run make first"
    exit 1
fi
export PKG_CONFIG_PATH="$libdir${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
unset KVC_LIB_DIR KVC_LINK
target="$(pwd)/examples/rust/target"
manifest=examples/rust/Cargo.toml
CARGO_TARGET_DIR="$target" cargo test --offline -q --manifest-path "$manifest" || exit 1
# the shared library: tests must run without LD_LIBRARY_PATH (rpath from build.rs)
KVC_LINK=dylib CARGO_TARGET_DIR="$target/dylib" cargo test --offline -q --manifest-path "$manifest" -p kvc --test api || exit 1
for t in "$target"/dylib/debug/deps/api-*; do
    case "$t" in *.d) continue ;; esac
    if ! readelf -d "$t" 2>/dev/null | grep -q 'NEEDED.*libkvc\.so'; then
        echo "$t does not link libkvc.so"
        exit 1
    fi
done
