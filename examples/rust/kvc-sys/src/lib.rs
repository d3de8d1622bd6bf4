//! Raw declarations of the libkvc C API (`include/kvc.h`), written by hand.
//!
//! Everything here is `unsafe` to call and follows the C contract documented
//! in the header; the `kvc` crate is the safe wrapper. C enums are plain
//! integer constants, structs are `#[repr(C)]` mirrors (their layout is
//! checked against the C compiler by this crate's tests).
#![allow(non_camel_case_types)]

use std::marker::{PhantomData, PhantomPinned};
pub use std::os::raw::{c_char, c_int, c_uint, c_void};

// ------------------------------------------------------------------ version
pub const KVC_VERSION_MAJOR: u32 = 0;
pub const KVC_VERSION_MINOR: u32 = 1;
pub const KVC_VERSION_PATCH: u32 = 0;
pub const KVC_VERSION_NUMBER: u32 = KVC_VERSION_MAJOR * 10000 + KVC_VERSION_MINOR * 100 + KVC_VERSION_PATCH;

// ------------------------------------------------------------------- status
/// `kvc_status`: every fallible call returns one of these.
pub type kvc_status = c_int;
pub const KVC_OK: kvc_status = 0;
pub const KVC_EINVAL: kvc_status = -1;
pub const KVC_ENOMEM: kvc_status = -2;
pub const KVC_EOVERFLOW: kvc_status = -3;
pub const KVC_EFULL: kvc_status = -4;
pub const KVC_ESTATE: kvc_status = -5;
pub const KVC_ERANGE: kvc_status = -6;
pub const KVC_EUNKNOWN: kvc_status = -7;
pub const KVC_EORDER: kvc_status = -8;
pub const KVC_ENONFINITE: kvc_status = -9;
pub const KVC_EMODE: kvc_status = -10;
pub const KVC_EPOLICY: kvc_status = -11;
pub const KVC_EABI: kvc_status = -12;
pub const KVC_EEMPTY: kvc_status = -13;
pub const KVC_ENOTSUP: kvc_status = -14;
pub const KVC_ESYNTAX: kvc_status = -15;

// -------------------------------------------------------------------- enums
pub type kvc_dtype = c_uint;
pub const KVC_DTYPE_F32: kvc_dtype = 0;
pub const KVC_DTYPE_F16: kvc_dtype = 1;
pub const KVC_DTYPE_BF16: kvc_dtype = 2;
pub const KVC_DTYPE_Q8: kvc_dtype = 3;

pub type kvc_mode = c_uint;
pub const KVC_MODE_STORE: kvc_mode = 0;
pub const KVC_MODE_INDEX: kvc_mode = 1;

pub type kvc_scope = c_uint;
pub const KVC_SCOPE_HEAD: kvc_scope = 0;
pub const KVC_SCOPE_SHARED: kvc_scope = 1;

pub type kvc_option = c_uint;
pub const KVC_OPT_SCOPE: kvc_option = 0;
pub const KVC_OPT_SINK: kvc_option = 1;
pub const KVC_OPT_RECENT: kvc_option = 2;
pub const KVC_OPT_CHUNK: kvc_option = 3;
pub const KVC_OPT_BLOCK: kvc_option = 4;
pub const KVC_OPT_SEED: kvc_option = 5;
pub const KVC_OPT_QUERY_WINDOW: kvc_option = 6;
pub const KVC_OPT_PROTECT: kvc_option = 7;
pub const KVC_OPT_PREFILL_MAX: kvc_option = 8;

pub const KVC_POLICY_ABI: u32 = 1;
pub const KVC_NEED_ATTN: u32 = 0x1;
pub const KVC_NEED_QUERY_WINDOW: u32 = 0x2;
pub const KVC_NEED_VALUE_STATS: u32 = 0x4;
pub const KVC_NEED_KEY_STATS: u32 = 0x8;
pub const KVC_NEED_RNG: u32 = 0x10;
pub const KVC_NEED_KEYS: u32 = 0x20;
pub const KVC_NEED_VALUES: u32 = 0x40;
pub const KVC_NEED_QUERIES: u32 = 0x80;
pub const KVC_RECENT_HALF: u32 = u32::MAX;
/// `KVC_RECENT_PERCENT(p)`: a default recent window of `p` percent of the capacity.
pub const fn kvc_recent_percent(p: u32) -> u32 {
    0xFFFF_FF00 + p
}

// ------------------------------------------------------------------ structs
/// Opaque `kvc_cache`.
#[repr(C)]
pub struct kvc_cache {
    _opaque: [u8; 0],
    _marker: PhantomData<(*mut u8, PhantomPinned)>,
}

/// Opaque `kvc_rng`.
#[repr(C)]
pub struct kvc_rng {
    _opaque: [u8; 0],
    _marker: PhantomData<(*mut u8, PhantomPinned)>,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct kvc_allocator {
    pub alloc: Option<unsafe extern "C" fn(opaque: *mut c_void, size: usize, align: usize) -> *mut c_void>,
    pub free: Option<unsafe extern "C" fn(opaque: *mut c_void, ptr: *mut c_void)>,
    pub opaque: *mut c_void,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct kvc_token {
    pub pos: i64,
    pub seq: u64,
    pub key_norm: f32,
    pub value_range: f32,
    pub value_l1: f32,
    pub key: *const f32,
    pub value: *const f32,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct kvc_param {
    pub name: *const c_char,
    pub def: f64,
    pub min: f64,
    pub max: f64,
    pub choices: *const *const c_char,
    pub help: *const c_char,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct kvc_policy_ctx {
    pub n_groups: u32,
    pub capacity: u32,
    pub head_dim: u32,
    pub q_per_group: u32,
    pub block: u32,
    pub chunk: u32,
    pub sink: u32,
    pub recent: u32,
    pub mode: kvc_mode,
    pub rng: *mut kvc_rng,
    pub params: *const f64,
    pub user: *mut c_void,
    pub kv_heads: u32,
    pub scale: f32,
    pub prefill_max: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct kvc_prefill {
    pub group: u32,
    pub n_tokens: u32,
    pub tokens: *const kvc_token,
    pub score: *const f32,
    pub n_window: u32,
    pub n_candidates: u32,
    pub candidates: *const u32,
    pub n_victims: u32,
    pub rng: *mut kvc_rng,
}

/// One row copy of a compaction plan (`kvc_cache_compact`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct kvc_move {
    pub from: u32,
    pub to: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct kvc_select {
    pub group: u32,
    pub n_candidates: u32,
    pub candidates: *const u32,
    pub n_victims: u32,
    pub block: u32,
    pub positions: *const i64,
    pub window_score: *const f32,
    pub rng: *mut kvc_rng,
    pub queries: *const f32,
    pub n_queries: u32,
}

/// The policy vtable; optional members are `None` (NULL).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct kvc_policy {
    pub abi_version: u32,
    pub struct_size: u32,
    pub name: *const c_char,
    pub needs: u32,
    pub default_sink: u32,
    pub default_recent: u32,
    pub default_chunk: u32,
    pub default_scope: u32,
    pub n_params: u32,
    pub params: *const kvc_param,
    pub state_size: Option<unsafe extern "C" fn(ctx: *const kvc_policy_ctx) -> usize>,
    pub init: Option<unsafe extern "C" fn(state: *mut c_void, ctx: *const kvc_policy_ctx) -> c_int>,
    pub on_insert: Option<unsafe extern "C" fn(state: *mut c_void, group: u32, slot: u32, tok: *const kvc_token)>,
    pub on_attend: Option<unsafe extern "C" fn(state: *mut c_void, group: u32, mass: *const f32, n: u32)>,
    pub score: Option<unsafe extern "C" fn(state: *mut c_void, group: u32, slots: *const u32, n: u32, keep: *mut f32)>,
    pub select: Option<unsafe extern "C" fn(state: *mut c_void, req: *const kvc_select, victims: *mut u32) -> c_int>,
    pub on_move: Option<unsafe extern "C" fn(state: *mut c_void, group: u32, from: u32, to: u32)>,
    pub fini: Option<unsafe extern "C" fn(state: *mut c_void)>,
    pub control: Option<unsafe extern "C" fn(state: *mut c_void, op: c_int, arg: *mut c_void) -> c_int>,
    pub user: *mut c_void,
    pub default_query_window: u32,
    pub prefill: Option<unsafe extern "C" fn(state: *mut c_void, req: *const kvc_prefill, victims: *mut u32) -> c_int>,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct kvc_stats {
    pub appends: u64,
    pub evictions: u64,
    pub attends: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct kvc_attn_layout {
    pub n_q_heads: u32,
    pub n_kv_heads: u32,
    pub head_dim: u32,
    pub n_keys: u32,
    pub dtype: kvc_dtype,
    pub row_stride: usize,
    pub head_stride: usize,
    pub scale: f32,
}

// ---------------------------------------------------------------- functions
extern "C" {
    pub fn kvc_version_number() -> c_uint;
    pub fn kvc_version_string() -> *const c_char;
    pub fn kvc_strerror(status: c_int) -> *const c_char;

    pub fn kvc_rng_next(rng: *mut kvc_rng) -> u64;
    pub fn kvc_rng_uniform(rng: *mut kvc_rng) -> f64;
    pub fn kvc_rng_below(rng: *mut kvc_rng, bound: u32) -> u32;

    pub fn kvc_policy_full() -> *const kvc_policy;
    pub fn kvc_policy_window() -> *const kvc_policy;
    pub fn kvc_policy_sink() -> *const kvc_policy;
    pub fn kvc_policy_random() -> *const kvc_policy;
    pub fn kvc_policy_h2o() -> *const kvc_policy;
    pub fn kvc_policy_tova() -> *const kvc_policy;
    pub fn kvc_policy_knorm() -> *const kvc_policy;
    pub fn kvc_policy_vatp() -> *const kvc_policy;
    pub fn kvc_policy_vase() -> *const kvc_policy;
    pub fn kvc_policy_vase_dkv() -> *const kvc_policy;
    pub fn kvc_policy_rkv() -> *const kvc_policy;
    pub fn kvc_policy_keydiff() -> *const kvc_policy;
    pub fn kvc_policy_scissorhands() -> *const kvc_policy;
    pub fn kvc_policy_keyformer() -> *const kvc_policy;
    pub fn kvc_policy_snapkv() -> *const kvc_policy;
    pub fn kvc_policy_by_name(name: *const c_char) -> *const kvc_policy;
    pub fn kvc_policy_at(i: usize) -> *const kvc_policy;

    pub fn kvc_cache_create(
        out: *mut *mut kvc_cache,
        n_kv_heads: u32,
        n_q_heads: u32,
        head_dim: u32,
        capacity: u32,
        dtype: kvc_dtype,
        mode: kvc_mode,
        policy: *const kvc_policy,
        alloc: *const kvc_allocator,
    ) -> c_int;
    pub fn kvc_cache_create_spec(
        out: *mut *mut kvc_cache,
        n_kv_heads: u32,
        n_q_heads: u32,
        head_dim: u32,
        capacity: u32,
        dtype: kvc_dtype,
        mode: kvc_mode,
        spec: *const c_char,
        alloc: *const kvc_allocator,
    ) -> c_int;
    pub fn kvc_cache_create_spec_err(
        out: *mut *mut kvc_cache,
        n_kv_heads: u32,
        n_q_heads: u32,
        head_dim: u32,
        capacity: u32,
        dtype: kvc_dtype,
        mode: kvc_mode,
        spec: *const c_char,
        alloc: *const kvc_allocator,
        err: *mut c_char,
        err_size: usize,
    ) -> c_int;
    pub fn kvc_cache_destroy(cache: *mut kvc_cache);
    pub fn kvc_cache_prepare(cache: *mut kvc_cache) -> c_int;
    pub fn kvc_cache_control(cache: *mut kvc_cache, op: c_int, arg: *mut c_void) -> c_int;
    pub fn kvc_cache_reset(cache: *mut kvc_cache) -> c_int;
    pub fn kvc_cache_set(cache: *mut kvc_cache, key: kvc_option, value: i64) -> c_int;
    pub fn kvc_cache_get(cache: *const kvc_cache, key: kvc_option, value: *mut i64) -> c_int;
    pub fn kvc_cache_set_scale(cache: *mut kvc_cache, scale: f32) -> c_int;
    pub fn kvc_cache_set_param(cache: *mut kvc_cache, name: *const c_char, value: f64) -> c_int;
    pub fn kvc_cache_get_param(cache: *const kvc_cache, name: *const c_char, value: *mut f64) -> c_int;
    pub fn kvc_cache_apply_spec(cache: *mut kvc_cache, options: *const c_char) -> c_int;
    pub fn kvc_cache_last_error(cache: *const kvc_cache) -> *const c_char;

    pub fn kvc_cache_append(cache: *mut kvc_cache, pos: i64, k: *const f32, v: *const f32) -> c_int;
    pub fn kvc_cache_attend(cache: *mut kvc_cache, q: *const f32, out: *mut f32) -> c_int;
    pub fn kvc_cache_attend_heads(
        cache: *mut kvc_cache,
        q: *const f32,
        out: *mut f32,
        kv_begin: u32,
        kv_end: u32,
    ) -> c_int;
    pub fn kvc_cache_attend_finish(cache: *mut kvc_cache, q: *const f32) -> c_int;
    pub fn kvc_cache_read(cache: *const kvc_cache, kv_head: u32, slot: u32, k: *mut f32, v: *mut f32) -> c_int;

    pub fn kvc_cache_reserve(
        cache: *mut kvc_cache,
        pos: i64,
        k: *const f32,
        v: *const f32,
        slots: *mut u32,
        evicted: *mut i64,
    ) -> c_int;
    pub fn kvc_cache_observe(cache: *mut kvc_cache, group: u32, mass: *const f32, n: u32) -> c_int;
    pub fn kvc_cache_max_evictions(cache: *const kvc_cache) -> u32;
    pub fn kvc_cache_prefill(
        cache: *mut kvc_cache,
        pos: i64,
        n: u32,
        k: *const f32,
        v: *const f32,
        q: *const f32,
        n_window: u32,
    ) -> c_int;
    pub fn kvc_cache_prefill_index(
        cache: *mut kvc_cache,
        pos: i64,
        n: u32,
        k: *const f32,
        v: *const f32,
        scores: *const f32,
        n_window: u32,
        keep: *mut u32,
    ) -> c_int;
    pub fn kvc_cache_compact(
        cache: *mut kvc_cache,
        group: u32,
        page: u32,
        moves: *mut kvc_move,
        n_moves: *mut u32,
        freed_pages: *mut u32,
    ) -> c_int;

    pub fn kvc_cache_groups(cache: *const kvc_cache) -> u32;
    pub fn kvc_cache_capacity(cache: *const kvc_cache) -> u32;
    pub fn kvc_cache_len(cache: *const kvc_cache) -> u32;
    pub fn kvc_cache_positions(cache: *const kvc_cache, group: u32, pos: *mut i64) -> c_int;
    pub fn kvc_cache_stats(cache: *const kvc_cache, stats: *mut kvc_stats) -> c_int;
    pub fn kvc_cache_policy_name(cache: *const kvc_cache) -> *const c_char;

    pub fn kvc_attention(
        layout: *const kvc_attn_layout,
        q: *const f32,
        k: *const c_void,
        v: *const c_void,
        out: *mut f32,
        weights: *mut f32,
        weights_stride: usize,
    ) -> c_int;
    pub fn kvc_attention_heads(
        layout: *const kvc_attn_layout,
        kv_begin: u32,
        kv_end: u32,
        q: *const f32,
        k: *const c_void,
        v: *const c_void,
        out: *mut f32,
        weights: *mut f32,
        weights_stride: usize,
    ) -> c_int;
    pub fn kvc_row_bytes(dtype: kvc_dtype, head_dim: u32) -> usize;
    pub fn kvc_quantize_q8(x: *const f32, head_dim: u32, row: *mut c_void) -> c_int;
    pub fn kvc_active_isa() -> *const c_char;
    pub fn kvc_set_isa(isa: *const c_char) -> c_int;
}
