//! Safe Rust wrapper of libkvc: KV-cache eviction policies and SIMD decode
//! attention.
//!
//! ```no_run
//! use kvc::{Cache, DType, Mode};
//! let mut cache = Cache::from_spec(2, 4, 64, 1024, DType::F16, Mode::Store, "h2o recent=64")?;
//! let (k, v, q) = (vec![0.1f32; 2 * 64], vec![0.2f32; 2 * 64], vec![0.3f32; 4 * 64]);
//! let mut out = vec![0f32; 4 * 64];
//! for pos in 0..2000 {
//!     cache.append(pos, &k, &v)?;
//!     cache.attend(&q, &mut out)?;
//! }
//! # Ok::<(), kvc::Error>(())
//! ```
//!
//! Every failure is an [`Error`] carrying the C status and message. Slices
//! are checked against the cache's shape before C sees them.

mod attention;
mod cache;
mod error;
mod policy;

use std::ffi::{CStr, CString};

pub use kvc_sys as sys;

pub use attention::{attention, attention_heads, Bf16, Element, Layout, F16};
pub use cache::{Builder, Cache, DType, Mode, Opt, Reservation, Scope, Stats};
pub use error::{strerror, Error, Result, Status};
pub use policy::{Eviction, ParamInfo, Policy, PolicyContext, PolicyDefaults, Rng, SelectRequest, Token, UserPolicy};

pub use sys::{
    KVC_NEED_ATTN, KVC_NEED_KEYS, KVC_NEED_KEY_STATS, KVC_NEED_QUERIES, KVC_NEED_QUERY_WINDOW, KVC_NEED_RNG,
    KVC_NEED_VALUES, KVC_NEED_VALUE_STATS, KVC_RECENT_HALF,
};

/// Version of the linked library, e.g. "0.1.0".
pub fn version() -> &'static str {
    // SAFETY: a static NUL-terminated string.
    unsafe { CStr::from_ptr(sys::kvc_version_string()) }
        .to_str()
        .unwrap_or("?")
}

/// Version of the linked library as MAJOR*10000 + MINOR*100 + PATCH.
pub fn version_number() -> u32 {
    unsafe { sys::kvc_version_number() }
}

/// The instruction set the attention kernel runs on.
pub fn active_isa() -> &'static str {
    unsafe { CStr::from_ptr(sys::kvc_active_isa()) }.to_str().unwrap_or("?")
}

/// Force the kernel ISA for this process (`None`: the CPU's best). Like the
/// C function, it is thread-safe: it may be called while other threads run
/// attention; a call in progress keeps the kernel it started with, later
/// calls use the new one. On error nothing changes.
pub fn set_isa(isa: Option<&str>) -> Result<()> {
    let c = match isa {
        Some(s) => Some(CString::new(s).map_err(|_| Error::inval("ISA name contains NUL"))?),
        None => None,
    };
    let rc = unsafe { sys::kvc_set_isa(c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr())) };
    if rc != 0 {
        return Err(Error::new(rc, format!("set_isa({:?})", isa)));
    }
    Ok(())
}
