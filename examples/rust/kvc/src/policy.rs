//! Eviction policies: the built-in ones ([`Policy`]) and your own
//! ([`UserPolicy`]), served to the C core through its vtable.

use std::any::Any;
use std::cell::Cell;
use std::ffi::{CStr, CString};
use std::marker::PhantomData;
use std::os::raw::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::slice;

use kvc_sys as sys;

use crate::{Error, Mode, Result, Scope, Status};

/// A built-in policy of the library (`full`, `window`, `sink`, `random`,
/// `h2o`, `tova`, `knorm`, `vatp`, `vase`, `vase_dkv`, `rkv`, `keydiff`,
/// `scissorhands`, `keyformer`).
#[derive(Clone, Copy)]
pub struct Policy(&'static sys::kvc_policy);

// SAFETY: built-in policies are immutable statics of the library.
unsafe impl Send for Policy {}
unsafe impl Sync for Policy {}

/// A numeric parameter of a built-in policy.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamInfo {
    pub name: String,
    pub default: f64,
    pub min: f64,
    pub max: f64,
    /// Names of the values 0, 1, 2, ... usable in spec strings.
    pub choices: Vec<String>,
    pub help: String,
}

fn cstr(p: *const std::os::raw::c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: non-NULL strings of the library are NUL-terminated and static.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

impl Policy {
    fn from_raw(p: *const sys::kvc_policy) -> Option<Policy> {
        // SAFETY: the library returns NULL or a pointer to a static policy.
        unsafe { p.as_ref() }.map(Policy)
    }
    /// Look a built-in policy up by name.
    pub fn by_name(name: &str) -> Result<Policy> {
        let c = CString::new(name).map_err(|_| Error::inval("policy name contains NUL"))?;
        // SAFETY: c is a valid C string.
        Policy::from_raw(unsafe { sys::kvc_policy_by_name(c.as_ptr()) }).ok_or_else(|| {
            let names: Vec<&str> = Policy::builtins().iter().map(|p| p.name()).collect();
            Error::new(
                sys::KVC_EUNKNOWN,
                format!("unknown policy '{}'; built-in policies: {}", name, names.join(", ")),
            )
        })
    }
    /// All built-in policies, in the library's order.
    pub fn builtins() -> Vec<Policy> {
        // SAFETY: kvc_policy_at accepts any index.
        (0..)
            .map_while(|i| Policy::from_raw(unsafe { sys::kvc_policy_at(i) }))
            .collect()
    }
    pub fn full() -> Policy {
        Policy::from_raw(unsafe { sys::kvc_policy_full() }).unwrap()
    }
    pub fn window() -> Policy {
        Policy::from_raw(unsafe { sys::kvc_policy_window() }).unwrap()
    }
    pub fn sink() -> Policy {
        Policy::from_raw(unsafe { sys::kvc_policy_sink() }).unwrap()
    }
    pub fn random() -> Policy {
        Policy::from_raw(unsafe { sys::kvc_policy_random() }).unwrap()
    }
    pub fn h2o() -> Policy {
        Policy::from_raw(unsafe { sys::kvc_policy_h2o() }).unwrap()
    }
    pub fn tova() -> Policy {
        Policy::from_raw(unsafe { sys::kvc_policy_tova() }).unwrap()
    }
    pub fn knorm() -> Policy {
        Policy::from_raw(unsafe { sys::kvc_policy_knorm() }).unwrap()
    }
    pub fn vatp() -> Policy {
        Policy::from_raw(unsafe { sys::kvc_policy_vatp() }).unwrap()
    }
    pub fn vase() -> Policy {
        Policy::from_raw(unsafe { sys::kvc_policy_vase() }).unwrap()
    }
    pub fn vase_dkv() -> Policy {
        Policy::from_raw(unsafe { sys::kvc_policy_vase_dkv() }).unwrap()
    }
    pub fn rkv() -> Policy {
        Policy::from_raw(unsafe { sys::kvc_policy_rkv() }).unwrap()
    }
    pub fn keydiff() -> Policy {
        Policy::from_raw(unsafe { sys::kvc_policy_keydiff() }).unwrap()
    }
    pub fn scissorhands() -> Policy {
        Policy::from_raw(unsafe { sys::kvc_policy_scissorhands() }).unwrap()
    }
    pub fn keyformer() -> Policy {
        Policy::from_raw(unsafe { sys::kvc_policy_keyformer() }).unwrap()
    }
    /// SnapKV: prompt compression by the observation window; the same rule at each eviction.
    pub fn snapkv() -> Policy {
        Policy::from_raw(unsafe { sys::kvc_policy_snapkv() }).unwrap()
    }
    pub fn name(&self) -> &'static str {
        // SAFETY: built-in names are static NUL-terminated ASCII.
        unsafe { CStr::from_ptr(self.0.name) }.to_str().unwrap_or("?")
    }
    /// `KVC_NEED_*` flags.
    pub fn needs(&self) -> u32 {
        self.0.needs
    }
    pub fn default_sink(&self) -> u32 {
        self.0.default_sink
    }
    /// Default recent window; `kvc_sys::KVC_RECENT_HALF` means half the capacity.
    pub fn default_recent(&self) -> u32 {
        self.0.default_recent
    }
    pub fn default_chunk(&self) -> u32 {
        self.0.default_chunk.max(1)
    }
    pub fn default_scope(&self) -> Scope {
        if self.0.default_scope == sys::KVC_SCOPE_SHARED {
            Scope::Shared
        } else {
            Scope::Head
        }
    }
    pub fn params(&self) -> Vec<ParamInfo> {
        (0..self.0.n_params as usize)
            .map(|i| {
                // SAFETY: params has n_params entries.
                let p = unsafe { &*self.0.params.add(i) };
                let mut choices = Vec::new();
                if !p.choices.is_null() {
                    let mut j = 0;
                    // SAFETY: choices is NULL-terminated.
                    while let Some(c) = unsafe { (*p.choices.add(j)).as_ref() } {
                        choices.push(cstr(c));
                        j += 1;
                    }
                }
                ParamInfo {
                    name: cstr(p.name),
                    default: p.def,
                    min: p.min,
                    max: p.max,
                    choices,
                    help: cstr(p.help),
                }
            })
            .collect()
    }
    pub(crate) fn raw(&self) -> *const sys::kvc_policy {
        self.0
    }
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Policy({})", self.name())
    }
}

// ---------------------------------------------------------------- user policies

/// Facts about a token, computed once at insertion.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Token {
    pub pos: i64,
    /// Insertion index in the cache (0 for the first token).
    pub seq: u64,
    /// L2 norm of the key; 0 unless the policy needs `KVC_NEED_KEY_STATS`.
    pub key_norm: f32,
    /// max - min of the value; 0 unless `KVC_NEED_VALUE_STATS`.
    pub value_range: f32,
    /// L1 norm of the value; 0 unless `KVC_NEED_VALUE_STATS`.
    pub value_l1: f32,
}

/// What a policy learns when it is (re)initialised for a cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolicyContext {
    pub n_groups: u32,
    pub capacity: u32,
    pub head_dim: u32,
    pub q_per_group: u32,
    pub block: u32,
    pub chunk: u32,
    pub sink: u32,
    pub recent: u32,
    pub mode: Mode,
}

/// The cache's seeded generator, lent to `select`.
pub struct Rng<'a> {
    raw: *mut sys::kvc_rng,
    _borrow: PhantomData<&'a mut ()>,
}

impl Rng<'_> {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        // SAFETY: raw is the cache's generator, valid during the callback.
        unsafe { sys::kvc_rng_next(self.raw) }
    }
    /// A uniform f64 in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        unsafe { sys::kvc_rng_uniform(self.raw) }
    }
    /// A uniform integer in [0, bound) without modulo bias (0 when bound is 0).
    pub fn below(&mut self, bound: u32) -> u32 {
        unsafe { sys::kvc_rng_below(self.raw, bound) }
    }
}

/// One eviction: choose `victims.len()` distinct units among `candidates`.
pub struct SelectRequest<'a> {
    pub group: u32,
    /// First slot of each candidate unit, oldest first.
    pub candidates: &'a [u32],
    /// Slots per unit.
    pub block: u32,
    /// Slot -> position of the group (-1 for empty).
    pub positions: &'a [i64],
    /// Per candidate: mean softmax weight of the recent queries (only with
    /// `KVC_NEED_QUERY_WINDOW` in STORE mode).
    pub window_score: Option<&'a [f32]>,
    pub rng: Rng<'a>,
}

/// How a user policy evicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Eviction {
    /// [`UserPolicy::score`]: the lowest-scoring units go, ties to the older.
    Score,
    /// [`UserPolicy::select`] picks the victims.
    Select,
    /// Never evicts: appending to a full cache fails with `KVC_EFULL`.
    Never,
}

/// Defaults of the options a policy suggests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolicyDefaults {
    pub sink: u32,
    /// Or `kvc_sys::KVC_RECENT_HALF`.
    pub recent: u32,
    pub chunk: u32,
    pub scope: Scope,
}

impl Default for PolicyDefaults {
    fn default() -> Self {
        PolicyDefaults {
            sink: 0,
            recent: 0,
            chunk: 1,
            scope: Scope::Head,
        }
    }
}

/// An eviction policy written in Rust. One value serves one cache (it is
/// moved into it); its methods run inside the cache's calls, serialised.
///
/// Errors and panics never cross into C: `init` and `select` turn an `Err`
/// into its status code (the call fails and the cache is unchanged); a panic
/// in any method is caught, the C call finishes (with every keep-score 0 if
/// `score` panicked, so the oldest candidate goes, and `select` failing with
/// `KVC_EPOLICY`), and the panic is resumed once control is back in Rust.
pub trait UserPolicy: Send + 'static {
    /// Short name, `[a-z0-9_]+`.
    fn name(&self) -> &str;
    /// `KVC_NEED_*` flags.
    fn needs(&self) -> u32 {
        0
    }
    fn defaults(&self) -> PolicyDefaults {
        PolicyDefaults::default()
    }
    fn eviction(&self) -> Eviction {
        Eviction::Score
    }
    /// (Re)initialise: called when the cache freezes and on reset.
    fn init(&mut self, ctx: &PolicyContext) -> Result<()> {
        let _ = ctx;
        Ok(())
    }
    fn on_insert(&mut self, group: u32, slot: u32, token: &Token) {
        let _ = (group, slot, token);
    }
    /// Attention mass of one step, indexed by slot.
    fn on_attend(&mut self, group: u32, mass: &[f32]) {
        let _ = (group, mass);
    }
    /// Keep-score (higher = keep) of each slot into `keep`.
    fn score(&mut self, group: u32, slots: &[u32], keep: &mut [f32]) {
        let _ = (group, slots);
        keep.iter_mut().for_each(|k| *k = 0.0);
    }
    /// Fill `victims` with distinct entries of `req.candidates` (the core checks).
    fn select(&mut self, req: &mut SelectRequest<'_>, victims: &mut [u32]) -> Result<()> {
        let _ = (req, victims);
        Err(Error::new(sys::KVC_ENOTSUP, "select is not implemented"))
    }
    /// STORE mode: the resident of slot `from` moved to slot `to`.
    fn on_move(&mut self, group: u32, from: u32, to: u32) {
        let _ = (group, from, to);
    }
    /// The cache is dropped or reset.
    fn fini(&mut self) {}
}

/// A user policy and its vtable, boxed so its address is stable for the
/// cache's lifetime (the C state holds a pointer to it).
pub(crate) struct UserSlot {
    pub(crate) vtable: sys::kvc_policy,
    _name: CString,
    policy: Box<dyn UserPolicy>,
    capacity: usize,
    pub(crate) panic: Option<Box<dyn Any + Send>>,
    pub(crate) error: Option<Error>,
}

thread_local! {
    // The slot whose cache is being called on this thread: how `init`, which
    // only receives fresh state, learns which policy it serves.
    static CURRENT: Cell<*mut UserSlot> = Cell::new(ptr::null_mut());
}

/// Run `f` with `slot` as this thread's current user policy.
pub(crate) fn with_current<R>(slot: *mut UserSlot, f: impl FnOnce() -> R) -> R {
    struct Restore(*mut UserSlot);
    impl Drop for Restore {
        fn drop(&mut self) {
            CURRENT.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(CURRENT.with(|c| c.replace(slot)));
    f()
}

impl UserSlot {
    pub(crate) fn new(policy: Box<dyn UserPolicy>) -> Result<Box<UserSlot>> {
        let name = policy.name().to_string();
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(Error::inval(format!("policy name '{}' must match [a-z0-9_]+", name)));
        }
        let cname = CString::new(name).unwrap();
        let d = policy.defaults();
        let ev = policy.eviction();
        let vtable = sys::kvc_policy {
            abi_version: sys::KVC_POLICY_ABI,
            struct_size: std::mem::size_of::<sys::kvc_policy>() as u32,
            name: cname.as_ptr(),
            needs: policy.needs(),
            default_sink: d.sink,
            default_recent: d.recent,
            default_chunk: d.chunk,
            default_scope: d.scope as u32,
            n_params: 0,
            params: ptr::null(),
            state_size: Some(tr_state_size),
            init: Some(tr_init),
            on_insert: Some(tr_on_insert),
            on_attend: Some(tr_on_attend),
            score: if ev == Eviction::Score { Some(tr_score) } else { None },
            select: if ev == Eviction::Select { Some(tr_select) } else { None },
            on_move: Some(tr_on_move),
            fini: Some(tr_fini),
            control: None,
            user: ptr::null_mut(),
            default_query_window: 0,
            prefill: None,
        };
        Ok(Box::new(UserSlot {
            vtable,
            _name: cname,
            policy,
            capacity: 0,
            panic: None,
            error: None,
        }))
    }

    /// Run a policy method, catching a panic. After a panic no method runs
    /// again until the wrapper has taken it (end of the C call): the
    /// policy's state may be half-updated.
    fn caught<R>(&mut self, fallback: R, f: impl FnOnce(&mut dyn UserPolicy, usize) -> R) -> R {
        if self.panic.is_some() {
            return fallback;
        }
        let cap = self.capacity;
        let pol = &mut *self.policy;
        match catch_unwind(AssertUnwindSafe(|| f(pol, cap))) {
            Ok(r) => r,
            Err(payload) => {
                self.panic = Some(payload);
                fallback
            }
        }
    }

    fn status(&mut self, r: Result<()>) -> c_int {
        match r {
            Ok(()) => 0,
            Err(e) => {
                let code = if Status::from_code(e.code()).is_some() {
                    e.code()
                } else {
                    sys::KVC_EPOLICY
                };
                self.error.get_or_insert(e);
                code
            }
        }
    }
}

/// The slot a callback's state points to (None if init never stored it).
unsafe fn slot<'a>(state: *mut c_void) -> Option<&'a mut UserSlot> {
    if state.is_null() {
        return None;
    }
    (*(state as *mut *mut UserSlot)).as_mut()
}

unsafe extern "C" fn tr_state_size(_ctx: *const sys::kvc_policy_ctx) -> usize {
    std::mem::size_of::<*mut UserSlot>()
}

unsafe extern "C" fn tr_init(state: *mut c_void, ctx: *const sys::kvc_policy_ctx) -> c_int {
    let s = CURRENT.with(|c| c.get());
    if s.is_null() {
        return sys::KVC_ESTATE; // only reachable by calling the C API directly
    }
    *(state as *mut *mut UserSlot) = s;
    let s = &mut *s;
    let c = &*ctx;
    s.capacity = c.capacity as usize;
    let ctx = PolicyContext {
        n_groups: c.n_groups,
        capacity: c.capacity,
        head_dim: c.head_dim,
        q_per_group: c.q_per_group,
        block: c.block,
        chunk: c.chunk,
        sink: c.sink,
        recent: c.recent,
        mode: if c.mode == sys::KVC_MODE_INDEX {
            Mode::Index
        } else {
            Mode::Store
        },
    };
    match s.caught(None, |p, _| Some(p.init(&ctx))) {
        Some(r) => s.status(r),
        None => sys::KVC_EPOLICY,
    }
}

unsafe extern "C" fn tr_on_insert(state: *mut c_void, group: u32, sl: u32, tok: *const sys::kvc_token) {
    let t = &*tok;
    let token = Token {
        pos: t.pos,
        seq: t.seq,
        key_norm: t.key_norm,
        value_range: t.value_range,
        value_l1: t.value_l1,
    };
    if let Some(s) = slot(state) {
        s.caught((), |p, _| p.on_insert(group, sl, &token));
    }
}

unsafe extern "C" fn tr_on_attend(state: *mut c_void, group: u32, mass: *const f32, n: u32) {
    let m = if n == 0 {
        &[][..]
    } else {
        slice::from_raw_parts(mass, n as usize)
    };
    if let Some(s) = slot(state) {
        s.caught((), |p, _| p.on_attend(group, m));
    }
}

unsafe extern "C" fn tr_score(state: *mut c_void, group: u32, slots: *const u32, n: u32, keep: *mut f32) {
    if n == 0 {
        return;
    }
    let sl = slice::from_raw_parts(slots, n as usize);
    let keep = slice::from_raw_parts_mut(keep, n as usize);
    let ok = match slot(state) {
        Some(s) => s.caught(false, |p, _| {
            p.score(group, sl, keep);
            true
        }),
        None => false,
    };
    if !ok {
        keep.iter_mut().for_each(|k| *k = 0.0); // all equal: the oldest candidate goes
    }
}

unsafe extern "C" fn tr_select(state: *mut c_void, req: *const sys::kvc_select, victims: *mut u32) -> c_int {
    let r = &*req;
    let s = match slot(state) {
        Some(s) => s,
        None => return sys::KVC_ESTATE,
    };
    let cand = slice::from_raw_parts(r.candidates, r.n_candidates as usize);
    let positions = slice::from_raw_parts(r.positions, s.capacity);
    let ws = if r.window_score.is_null() {
        None
    } else {
        Some(slice::from_raw_parts(r.window_score, r.n_candidates as usize))
    };
    let victims = slice::from_raw_parts_mut(victims, r.n_victims as usize);
    let mut request = SelectRequest {
        group: r.group,
        candidates: cand,
        block: r.block,
        positions,
        window_score: ws,
        rng: Rng {
            raw: r.rng,
            _borrow: PhantomData,
        },
    };
    match s.caught(None, |p, _| Some(p.select(&mut request, victims))) {
        Some(res) => s.status(res),
        None => sys::KVC_EPOLICY,
    }
}

unsafe extern "C" fn tr_on_move(state: *mut c_void, group: u32, from: u32, to: u32) {
    if let Some(s) = slot(state) {
        s.caught((), |p, _| p.on_move(group, from, to));
    }
}

unsafe extern "C" fn tr_fini(state: *mut c_void) {
    if let Some(s) = slot(state) {
        s.caught((), |p, _| p.fini());
    }
}
