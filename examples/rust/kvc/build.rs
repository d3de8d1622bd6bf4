//! When kvc-sys links the shared libkvc, give this crate's tests and examples
//! an rpath to it, so they run without LD_LIBRARY_PATH. (Static linking, the
//! default when libkvc.a exists, needs nothing.)
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_KVC_LINK");
    println!("cargo:rerun-if-env-changed=DEP_KVC_LIBDIR");
    if std::env::var("DEP_KVC_LINK").as_deref() == Ok("dylib") {
        if let Ok(dir) = std::env::var("DEP_KVC_LIBDIR") {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir);
        }
    }
}
