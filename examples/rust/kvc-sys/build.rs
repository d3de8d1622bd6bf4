//! Find libkvc and tell rustc how to link it.
//!
//! Order: `KVC_LIB_DIR` (a directory holding libkvc.a and/or libkvc.so), then
//! the `pkg-config` command (`PKG_CONFIG` names another one; for a source tree
//! set `PKG_CONFIG_PATH=<repo>/lib`, where `make` writes kvc-uninstalled.pc,
//! which pkg-config prefers for `kvc`), then the source tree this crate sits
//! in (`<repo>/lib` after `make`).
//!
//! The static library is linked when it is there (no run-time path to set);
//! `KVC_LINK=dylib` or `KVC_LINK=static` forces a choice. With the shared
//! library, `DEP_KVC_LIBDIR` and `DEP_KVC_LINK` tell dependent build scripts
//! where it is, so they can set an rpath (the `kvc` crate does).
use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn pkg_config() -> Option<(PathBuf, Vec<String>)> {
    let exe = env::var("PKG_CONFIG").unwrap_or_else(|_| "pkg-config".to_string());
    let run = |args: &[&str]| -> Option<String> {
        let out = Command::new(&exe).args(args).arg("kvc").output().ok()?;
        if !out.status.success() {
            return None;
        }
        Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let libdir = run(&["--variable=libdir"])?;
    if libdir.is_empty() {
        return None;
    }
    // Libs.private of a static link (-lm), minus kvc itself.
    let libs = run(&["--static", "--libs-only-l"]).unwrap_or_default();
    let extra = libs
        .split_whitespace()
        .filter_map(|f| f.strip_prefix("-l"))
        .filter(|l| *l != "kvc")
        .map(str::to_string)
        .collect();
    Some((PathBuf::from(libdir), extra))
}

fn main() {
    for var in [
        "KVC_LIB_DIR",
        "KVC_LINK",
        "PKG_CONFIG",
        "PKG_CONFIG_PATH",
        "PKG_CONFIG_LIBDIR",
        "PKG_CONFIG_SYSROOT_DIR",
    ] {
        println!("cargo:rerun-if-env-changed={}", var);
    }
    let tree = Path::new(&env::var("CARGO_MANIFEST_DIR").unwrap()).join("../../../lib");
    let (dir, how, extra) = if let Ok(d) = env::var("KVC_LIB_DIR") {
        (PathBuf::from(d), "KVC_LIB_DIR", vec!["m".to_string()])
    } else if let Some((d, extra)) = pkg_config() {
        (d, "pkg-config", extra)
    } else if tree.join("libkvc.a").exists() || tree.join("libkvc.so").exists() {
        (
            tree.canonicalize().unwrap_or(tree),
            "source tree",
            vec!["m".to_string()],
        )
    } else {
        panic!(
            "kvc-sys: cannot find libkvc. Set KVC_LIB_DIR to the directory holding libkvc.a or \
             libkvc.so, install libkvc where `pkg-config kvc` finds it (PKG_CONFIG_PATH), or run \
             `make` in the libkvc source tree"
        );
    };
    let static_lib = dir.join("libkvc.a");
    let shared_lib = dir.join("libkvc.so");
    let link = match env::var("KVC_LINK").as_deref() {
        Ok("static") => "static",
        Ok("dylib") => "dylib",
        Ok(other) => panic!("kvc-sys: KVC_LINK={} (expected static or dylib)", other),
        Err(_) if static_lib.exists() => "static",
        Err(_) => "dylib",
    };
    let file = if link == "static" { &static_lib } else { &shared_lib };
    if !file.exists() {
        panic!("kvc-sys: {} (from {}) does not exist", file.display(), how);
    }
    println!("cargo:rerun-if-changed={}", file.display());
    println!("cargo:rustc-link-search=native={}", dir.display());
    println!("cargo:rustc-link-lib={}=kvc", link);
    if link == "static" {
        for l in &extra {
            println!("cargo:rustc-link-lib={}", l);
        }
    } else {
        // this crate's own tests; dependents read DEP_KVC_LIBDIR
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
    }
    println!("cargo:libdir={}", dir.display());
    println!("cargo:link={}", link);
}
