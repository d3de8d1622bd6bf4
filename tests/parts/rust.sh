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
# the README's command: the example program
CARGO_TARGET_DIR="$target" cargo run --offline -q --manifest-path "$manifest" --example basic || exit 1
# the shared library: tests must run without LD_LIBRARY_PATH (rpath from build.rs)
KVC_LINK=dylib CARGO_TARGET_DIR="$target/dylib" cargo test --offline -q --manifest-path "$manifest" -p kvc --test api || exit 1
for t in "$target"/dylib/debug/deps/api-*; do
    case "$t" in *.d) continue ;; esac
    if ! readelf -d "$t" 2>/dev/null | grep -q 'NEEDED.*libkvc\.so'; then
        echo "$t does not link libkvc.so"
        exit 1
    fi
done

# a user's program (a crate outside the workspace, no build.rs of its own)
# linked with KVC_LINK=dylib: runs with the documented one-line rpath and no
# LD_LIBRARY_PATH (examples/rust/README.md)
user=$(mktemp -d)
trap 'rm -rf "$user"' EXIT
mkdir -p "$user/app/src"
cat >"$user/app/Cargo.toml" <<EOF2
[package]
name = "kvc-user-app"
version = "0.1.0"
edition = "2021"

[dependencies]
kvc = { path = "$(pwd)/examples/rust/kvc" }

[workspace]
EOF2
cat >"$user/app/src/main.rs" <<'EOF2'
fn main() {
    let mut cache = kvc::Cache::from_spec(1, 1, 4, 8, kvc::DType::F32, kvc::Mode::Store, "window").unwrap();
    for pos in 0..12 {
        cache.append(pos, &[0.5; 4], &[0.25; 4]).unwrap();
    }
    println!("libkvc {} from rust: {} resident", kvc::version(), cache.len());
}
EOF2
rpath="$(PKG_CONFIG_PATH="$libdir" pkg-config --variable=libdir kvc)"
KVC_LINK=dylib RUSTFLAGS="-C link-arg=-Wl,-rpath,$rpath" CARGO_TARGET_DIR="$user/target" \
    cargo build --offline -q --manifest-path "$user/app/Cargo.toml" || exit 1
app="$user/target/debug/kvc-user-app"
readelf -d "$app" | grep -q 'NEEDED.*libkvc\.so' || { echo "$app does not link libkvc.so"; exit 1; }
env -u LD_LIBRARY_PATH "$app" || { echo "the user's dylib program does not run with the documented rpath"; exit 1; }
