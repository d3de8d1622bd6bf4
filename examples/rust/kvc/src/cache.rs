//! [`Cache`]: one sequence x one attention layer (or any unit the engine picks).

use std::ffi::{CStr, CString};
use std::panic::resume_unwind;
use std::ptr::{self, NonNull};

use kvc_sys as sys;

use crate::policy::{with_current, UserSlot};
use crate::{Error, Policy, Result, UserPolicy};

/// Storage element type of K and V (STORE mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32 = 0,
    F16 = 1,
    Bf16 = 2,
    /// int8 with one f32 scale per row, quantised at append (see `KVC_DTYPE_Q8`).
    Q8 = 3,
}

/// Who holds the K/V tensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// The cache stores K/V and runs attention (`append`, `attend`).
    Store = 0,
    /// The engine stores K/V; the cache decides slots (`reserve`, `observe`).
    Index = 1,
}

/// Eviction groups: per kv head, or one for all heads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    Head = 0,
    Shared = 1,
}

/// Cache options (`kvc_option`), set before the first append.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Opt {
    Scope = 0,
    Sink = 1,
    Recent = 2,
    Chunk = 3,
    Block = 4,
    Seed = 5,
    QueryWindow = 6,
    /// Positions below this are never evicted (e.g. a system prompt).
    Protect = 7,
    /// Longest prompt `prefill` / `prefill_index` accept (their scratch is sized at prepare).
    PrefillMax = 8,
}

/// One row copy of a compaction plan: the engine copies slot `from` into slot `to`.
pub type Move = sys::kvc_move;

/// Cumulative counters of a cache.
pub type Stats = sys::kvc_stats;

/// Where `reserve` put a token: one slot per group, and the positions each
/// group evicted to make room.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reservation {
    pub slots: Vec<u32>,
    pub evicted: Vec<Vec<i64>>,
}

enum Setting {
    Opt(Opt, i64),
    Param(String, f64),
    Scale(f32),
    Spec(String),
}

enum Chosen {
    Builtin(Policy),
    User(Box<dyn UserPolicy>),
}

/// Builds a [`Cache`]: shape first, then dtype, mode, policy and options.
pub struct Builder {
    n_kv: u32,
    n_q: u32,
    d: u32,
    cap: u32,
    dtype: DType,
    mode: Mode,
    policy: Chosen,
    settings: Vec<Setting>,
}

impl Builder {
    pub fn dtype(mut self, dtype: DType) -> Self {
        self.dtype = dtype;
        self
    }
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }
    /// A built-in policy (default: `full`).
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = Chosen::Builtin(policy);
        self
    }
    /// A policy written in Rust; the cache owns it.
    pub fn user_policy(mut self, policy: impl UserPolicy) -> Self {
        self.policy = Chosen::User(Box::new(policy));
        self
    }
    /// Set an option.
    pub fn option(mut self, key: Opt, value: i64) -> Self {
        self.settings.push(Setting::Opt(key, value));
        self
    }
    /// Set a policy parameter.
    pub fn param(mut self, name: &str, value: f64) -> Self {
        self.settings.push(Setting::Param(name.to_string(), value));
        self
    }
    /// Attention scale (default 1/sqrt(head_dim)).
    pub fn scale(mut self, scale: f32) -> Self {
        self.settings.push(Setting::Scale(scale));
        self
    }
    /// `key=value` options, e.g. `"recent=64 sink=4 norm=lifetime"`.
    pub fn options(mut self, spec: &str) -> Self {
        self.settings.push(Setting::Spec(spec.to_string()));
        self
    }

    pub fn build(self) -> Result<Cache> {
        let (user, raw_policy) = match self.policy {
            Chosen::Builtin(p) => (None, p.raw()),
            Chosen::User(p) => {
                let slot = UserSlot::new(p)?;
                let raw = &slot.vtable as *const sys::kvc_policy;
                (Some(slot), raw)
            }
        };
        if self.n_kv == 0 || self.n_q == 0 || self.d == 0 || self.cap == 0 {
            return Err(Error::inval(format!(
                "n_kv_heads={}, n_q_heads={}, head_dim={}, capacity={}: all must be >= 1",
                self.n_kv, self.n_q, self.d, self.cap
            )));
        }
        if self.n_q % self.n_kv != 0 {
            return Err(Error::inval(format!(
                "n_q_heads={} is not a multiple of n_kv_heads={} (GQA)",
                self.n_q, self.n_kv
            )));
        }
        let mut raw = ptr::null_mut();
        // SAFETY: raw_policy points to a static built-in or to the boxed vtable,
        // which the Cache keeps until kvc_cache_destroy.
        let rc = unsafe {
            sys::kvc_cache_create(
                &mut raw,
                self.n_kv,
                self.n_q,
                self.d,
                self.cap,
                self.dtype as u32,
                self.mode as u32,
                raw_policy,
                ptr::null(),
            )
        };
        if rc != 0 {
            return Err(Error::new(
                rc,
                format!(
                    "kvc_cache_create(n_kv_heads={}, n_q_heads={}, head_dim={}, capacity={})",
                    self.n_kv, self.n_q, self.d, self.cap
                ),
            ));
        }
        let mut cache = Cache {
            raw: NonNull::new(raw).expect("kvc_cache_create returned OK and NULL"),
            n_kv: self.n_kv,
            n_q: self.n_q,
            d: self.d,
            dtype: self.dtype,
            mode: self.mode,
            user,
        };
        for s in self.settings {
            match s {
                Setting::Opt(k, v) => cache.set(k, v)?,
                Setting::Param(n, v) => cache.set_param(&n, v)?,
                Setting::Scale(x) => cache.set_scale(x)?,
                Setting::Spec(sp) => cache.apply_spec(&sp)?,
            }
        }
        Ok(cache)
    }
}

/// A libkvc cache. Freed on drop. It may move to another thread (`Send`)
/// but not be shared (`!Sync`): calls on one cache must be serialised.
pub struct Cache {
    raw: NonNull<sys::kvc_cache>,
    n_kv: u32,
    n_q: u32,
    d: u32,
    dtype: DType,
    mode: Mode,
    user: Option<Box<UserSlot>>,
}

// SAFETY: the C contract allows a cache to be used from any thread as long as
// calls are serialised, which &mut self guarantees; a user policy is Send.
unsafe impl Send for Cache {}

fn cstring(what: &str, s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::inval(format!("{} contains a NUL byte", what)))
}

fn check_len(what: &str, got: usize, want: usize) -> Result<()> {
    if got != want {
        return Err(Error::inval(format!("{}: expected {} floats, got {}", what, want, got)));
    }
    Ok(())
}

impl Cache {
    /// Start building a cache of this shape (`full` policy, f32, STORE mode).
    pub fn builder(n_kv_heads: u32, n_q_heads: u32, head_dim: u32, capacity: u32) -> Builder {
        Builder {
            n_kv: n_kv_heads,
            n_q: n_q_heads,
            d: head_dim,
            cap: capacity,
            dtype: DType::F32,
            mode: Mode::Store,
            policy: Chosen::Builtin(Policy::full()),
            settings: Vec::new(),
        }
    }

    /// A cache from a spec string: a built-in policy name then `key=value`
    /// options, e.g. `"h2o recent=64 sink=4"`. On failure the error carries
    /// the library's detail (`kvc_cache_create_spec_err`), e.g. "unknown key
    /// 'recnet' for policy 'h2o' (did you mean 'recent'?): ...".
    pub fn from_spec(
        n_kv_heads: u32,
        n_q_heads: u32,
        head_dim: u32,
        capacity: u32,
        dtype: DType,
        mode: Mode,
        spec: &str,
    ) -> Result<Cache> {
        let cspec = CString::new(spec).map_err(|_| Error::new(sys::KVC_ESYNTAX, "spec contains NUL"))?;
        let mut raw = ptr::null_mut();
        let mut err = [0 as std::os::raw::c_char; 256];
        // SAFETY: valid pointers; err has err.len() bytes and comes back NUL-terminated.
        let rc = unsafe {
            sys::kvc_cache_create_spec_err(
                &mut raw,
                n_kv_heads,
                n_q_heads,
                head_dim,
                capacity,
                dtype as u32,
                mode as u32,
                cspec.as_ptr(),
                ptr::null(),
                err.as_mut_ptr(),
                err.len(),
            )
        };
        if rc != 0 {
            // SAFETY: the library wrote a NUL-terminated message into err.
            let detail = unsafe { CStr::from_ptr(err.as_ptr()) }.to_string_lossy().into_owned();
            return Err(Error::new(rc, format!("from_spec(\"{}\"): {}", spec, detail)));
        }
        Ok(Cache {
            raw: NonNull::new(raw).expect("kvc_cache_create_spec_err returned OK and NULL"),
            n_kv: n_kv_heads,
            n_q: n_q_heads,
            d: head_dim,
            dtype,
            mode,
            user: None,
        })
    }

    fn ptr(&self) -> *mut sys::kvc_cache {
        self.raw.as_ptr()
    }

    fn last_error_string(&self) -> String {
        // SAFETY: the cache is valid; the message is NUL-terminated and owned by it.
        unsafe { CStr::from_ptr(sys::kvc_cache_last_error(self.ptr())) }
            .to_string_lossy()
            .into_owned()
    }

    /// Run a C call that may invoke the policy; turn its status (and the
    /// policy's own error or panic) into a Result.
    fn call(&mut self, what: &str, f: impl FnOnce(*mut sys::kvc_cache) -> i32) -> Result<()> {
        let p = self.ptr();
        let slot: *mut UserSlot = match self.user.as_mut() {
            Some(b) => &mut **b,
            None => ptr::null_mut(),
        };
        let rc = with_current(slot, || f(p));
        let (panic, perr) = match self.user.as_mut() {
            Some(u) => (u.panic.take(), u.error.take()),
            None => (None, None),
        };
        if let Some(payload) = panic {
            resume_unwind(payload); // the cache is consistent: the C call finished
        }
        if rc == 0 {
            return Ok(());
        }
        let mut detail = format!("{}: {}", what, self.last_error_string());
        if let Some(e) = perr {
            detail.push_str(&format!(" ({})", e));
        }
        Err(Error::new(rc, detail))
    }

    // ----------------------------------------------------------- options
    /// Set an option before the first append.
    pub fn set(&mut self, key: Opt, value: i64) -> Result<()> {
        self.call("set", |c| unsafe { sys::kvc_cache_set(c, key as u32, value) })
    }
    /// Read an option.
    pub fn get(&self, key: Opt) -> Result<i64> {
        let mut v = 0i64;
        // SAFETY: valid cache and out pointer.
        let rc = unsafe { sys::kvc_cache_get(self.ptr(), key as u32, &mut v) };
        if rc != 0 {
            return Err(Error::new(rc, format!("get {:?}", key)));
        }
        Ok(v)
    }
    /// Set the attention scale before the first append.
    pub fn set_scale(&mut self, scale: f32) -> Result<()> {
        self.call("set_scale", |c| unsafe { sys::kvc_cache_set_scale(c, scale) })
    }
    /// Set a policy parameter before the first append.
    pub fn set_param(&mut self, name: &str, value: f64) -> Result<()> {
        let n = cstring("parameter name", name)?;
        self.call("set_param", |c| unsafe {
            sys::kvc_cache_set_param(c, n.as_ptr(), value)
        })
    }
    /// Read a policy parameter.
    pub fn get_param(&self, name: &str) -> Result<f64> {
        let n = cstring("parameter name", name)?;
        let mut v = 0f64;
        let rc = unsafe { sys::kvc_cache_get_param(self.ptr(), n.as_ptr(), &mut v) };
        if rc != 0 {
            return Err(Error::new(
                rc,
                format!("policy '{}' has no parameter '{}'", self.policy_name(), name),
            ));
        }
        Ok(v)
    }
    /// Apply `key=value` options, all or nothing.
    pub fn apply_spec(&mut self, options: &str) -> Result<()> {
        let s = cstring("spec", options)?;
        self.call("apply_spec", |c| unsafe { sys::kvc_cache_apply_spec(c, s.as_ptr()) })
    }
    /// Freeze options and allocate now (the first append does it otherwise).
    pub fn prepare(&mut self) -> Result<()> {
        self.call("prepare", |c| unsafe { sys::kvc_cache_prepare(c) })
    }
    /// Forget all tokens and policy state; keep options and memory.
    pub fn reset(&mut self) -> Result<()> {
        self.call("reset", |c| unsafe { sys::kvc_cache_reset(c) })
    }

    // ----------------------------------------------------------- STORE
    /// Append one token at `pos`; `k` and `v` hold `n_kv_heads * head_dim` floats.
    pub fn append(&mut self, pos: i64, k: &[f32], v: &[f32]) -> Result<()> {
        let n = (self.n_kv * self.d) as usize;
        check_len("k", k.len(), n)?;
        check_len("v", v.len(), n)?;
        self.call("append", |c| unsafe {
            sys::kvc_cache_append(c, pos, k.as_ptr(), v.as_ptr())
        })
    }
    /// Decode attention of `q` (`n_q_heads * head_dim`) into `out` (same size).
    pub fn attend(&mut self, q: &[f32], out: &mut [f32]) -> Result<()> {
        let n = (self.n_q * self.d) as usize;
        check_len("q", q.len(), n)?;
        check_len("out", out.len(), n)?;
        self.call("attend", |c| unsafe {
            sys::kvc_cache_attend(c, q.as_ptr(), out.as_mut_ptr())
        })
    }
    /// Take a whole prompt into the empty cache in one call (`kvc_cache_prefill`):
    /// `k` and `v` hold `n` tokens of `n_kv_heads * head_dim` floats each, token
    /// after token, at positions `pos .. pos + n`; `q` the queries of the last
    /// `n_window` tokens (`n_window * n_q_heads * head_dim` floats, possibly
    /// empty). Needs `Opt::PrefillMax >= n`.
    pub fn prefill(&mut self, pos: i64, k: &[f32], v: &[f32], q: &[f32]) -> Result<()> {
        let row = (self.n_kv * self.d) as usize;
        if k.is_empty() || k.len() % row != 0 || v.len() != k.len() {
            return Err(Error::inval(format!(
                "prefill: k and v must hold the same whole number of tokens of {} floats (got {} and {})",
                row,
                k.len(),
                v.len()
            )));
        }
        let qrow = (self.n_q * self.d) as usize;
        if q.len() % qrow != 0 {
            return Err(Error::inval(format!(
                "prefill: q holds {} floats, not a whole number of {}-float queries",
                q.len(),
                qrow
            )));
        }
        let n = u32::try_from(k.len() / row).map_err(|_| Error::inval("prefill: prompt too long"))?;
        let w = (q.len() / qrow) as u32;
        let qp = if w == 0 { ptr::null() } else { q.as_ptr() };
        self.call("prefill", |c| unsafe {
            sys::kvc_cache_prefill(c, pos, n, k.as_ptr(), v.as_ptr(), qp, w)
        })
    }
    /// INDEX-mode prefill (`kvc_cache_prefill_index`): `n` prompt tokens, the
    /// engine's `scores` (`groups * n` floats, or None), the last `n_window`
    /// kept; `kv` when the policy needs key or value statistics. Returns, per
    /// group, the prompt index now in each slot `0..len`.
    pub fn prefill_index(
        &mut self,
        pos: i64,
        n: u32,
        scores: Option<&[f32]>,
        n_window: u32,
        kv: Option<(&[f32], &[f32])>,
    ) -> Result<Vec<Vec<u32>>> {
        let groups = self.groups() as usize;
        let cap = self.capacity() as usize;
        let sp = match scores {
            Some(s) => {
                check_len("scores", s.len(), groups * n as usize)?;
                s.as_ptr()
            }
            None => ptr::null(),
        };
        let (kp, vp) = match kv {
            Some((k, v)) => {
                let want = n as usize * (self.n_kv * self.d) as usize;
                check_len("k", k.len(), want)?;
                check_len("v", v.len(), want)?;
                (k.as_ptr(), v.as_ptr())
            }
            None => (ptr::null(), ptr::null()),
        };
        let mut keep = vec![u32::MAX; groups * cap];
        self.call("prefill_index", |c| unsafe {
            sys::kvc_cache_prefill_index(c, pos, n, kp, vp, sp, n_window, keep.as_mut_ptr())
        })?;
        let len = self.len();
        Ok((0..groups).map(|g| keep[g * cap..g * cap + len].to_vec()).collect())
    }
    /// Compaction plan for one group (`kvc_cache_compact`, INDEX mode): the
    /// moves the engine copies (already applied to the cache's slot map) and
    /// the number of pages of `page` slots it can return to its pool.
    pub fn compact(&mut self, group: u32, page: u32) -> Result<(Vec<Move>, u32)> {
        let mut moves = vec![Move::default(); self.capacity() as usize];
        let (mut n, mut freed) = (0u32, 0u32);
        self.call("compact", |c| unsafe {
            sys::kvc_cache_compact(c, group, page, moves.as_mut_ptr(), &mut n, &mut freed)
        })?;
        moves.truncate(n as usize);
        Ok((moves, freed))
    }
    /// Copy a resident token's K and V rows (each `head_dim` floats, either optional).
    pub fn read(&self, kv_head: u32, slot: u32, k: Option<&mut [f32]>, v: Option<&mut [f32]>) -> Result<()> {
        let d = self.d as usize;
        let kp = match k {
            Some(k) => {
                check_len("k", k.len(), d)?;
                k.as_mut_ptr()
            }
            None => ptr::null_mut(),
        };
        let vp = match v {
            Some(v) => {
                check_len("v", v.len(), d)?;
                v.as_mut_ptr()
            }
            None => ptr::null_mut(),
        };
        let rc = unsafe { sys::kvc_cache_read(self.ptr(), kv_head, slot, kp, vp) };
        if rc != 0 {
            return Err(Error::new(
                rc,
                format!(
                    "read(kv_head={}, slot={}): {} kv heads, {} resident",
                    kv_head,
                    slot,
                    self.n_kv,
                    self.len()
                ),
            ));
        }
        Ok(())
    }

    // ----------------------------------------------------------- INDEX
    /// Make room for a token at `pos`, writing one slot per group into `slots`
    /// and, if given, `groups() * max_evictions()` evicted positions (-1 padded).
    /// `kv` is needed when the policy uses key or value statistics.
    pub fn reserve_into(
        &mut self,
        pos: i64,
        kv: Option<(&[f32], &[f32])>,
        slots: &mut [u32],
        evicted: Option<&mut [i64]>,
    ) -> Result<()> {
        let groups = self.groups() as usize;
        if slots.len() < groups {
            return Err(Error::inval(format!(
                "slots: {} entries for {} groups",
                slots.len(),
                groups
            )));
        }
        let (kp, vp) = match kv {
            Some((k, v)) => {
                let n = (self.n_kv * self.d) as usize;
                check_len("k", k.len(), n)?;
                check_len("v", v.len(), n)?;
                (k.as_ptr(), v.as_ptr())
            }
            None => (ptr::null(), ptr::null()),
        };
        let ep = match evicted {
            Some(e) => {
                let want = groups * self.max_evictions() as usize;
                if e.len() < want {
                    return Err(Error::inval(format!("evicted: {} entries, needs {}", e.len(), want)));
                }
                e.as_mut_ptr()
            }
            None => ptr::null_mut(),
        };
        let sp = slots.as_mut_ptr();
        self.call("reserve", |c| unsafe { sys::kvc_cache_reserve(c, pos, kp, vp, sp, ep) })
    }

    /// [`reserve_into`](Cache::reserve_into) returning a [`Reservation`].
    pub fn reserve(&mut self, pos: i64, kv: Option<(&[f32], &[f32])>) -> Result<Reservation> {
        let groups = self.groups() as usize;
        let maxev = self.max_evictions() as usize;
        let mut slots = vec![0u32; groups];
        let mut ev = vec![-1i64; groups * maxev];
        self.reserve_into(pos, kv, &mut slots, Some(&mut ev))?;
        let evicted = (0..groups)
            .map(|g| {
                ev[g * maxev..(g + 1) * maxev]
                    .iter()
                    .copied()
                    .filter(|&p| p >= 0)
                    .collect()
            })
            .collect();
        Ok(Reservation { slots, evicted })
    }

    /// Report attention mass per slot (at most `capacity` values) for a group.
    pub fn observe(&mut self, group: u32, mass: &[f32]) -> Result<()> {
        if mass.len() > self.capacity() as usize {
            return Err(Error::inval(format!(
                "mass: {} values for capacity {}",
                mass.len(),
                self.capacity()
            )));
        }
        let n = mass.len() as u32;
        self.call("observe", |c| unsafe {
            sys::kvc_cache_observe(c, group, mass.as_ptr(), n)
        })
    }

    // ----------------------------------------------------------- introspection
    /// Resident tokens per group.
    pub fn len(&self) -> usize {
        unsafe { sys::kvc_cache_len(self.ptr()) as usize }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn capacity(&self) -> u32 {
        unsafe { sys::kvc_cache_capacity(self.ptr()) }
    }
    /// Eviction groups: n_kv_heads in head scope, 1 in shared scope.
    pub fn groups(&self) -> u32 {
        unsafe { sys::kvc_cache_groups(self.ptr()) }
    }
    /// Positions one append or reserve may evict per group (chunk * block).
    pub fn max_evictions(&self) -> u32 {
        unsafe { sys::kvc_cache_max_evictions(self.ptr()) }
    }
    pub fn n_kv_heads(&self) -> u32 {
        self.n_kv
    }
    pub fn n_q_heads(&self) -> u32 {
        self.n_q
    }
    pub fn head_dim(&self) -> u32 {
        self.d
    }
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    pub fn mode(&self) -> Mode {
        self.mode
    }
    /// Slot -> position map of a group into `out` (`capacity` entries; -1 empty).
    pub fn positions_into(&self, group: u32, out: &mut [i64]) -> Result<()> {
        let cap = self.capacity() as usize;
        if out.len() < cap {
            return Err(Error::inval(format!(
                "positions: {} entries for capacity {}",
                out.len(),
                cap
            )));
        }
        let rc = unsafe { sys::kvc_cache_positions(self.ptr(), group, out.as_mut_ptr()) };
        if rc != 0 {
            return Err(Error::new(
                rc,
                format!("positions(group={}): {} groups", group, self.groups()),
            ));
        }
        Ok(())
    }
    /// Slot -> position map of a group (-1 for empty slots).
    pub fn positions(&self, group: u32) -> Result<Vec<i64>> {
        let mut v = vec![-1; self.capacity() as usize];
        self.positions_into(group, &mut v)?;
        Ok(v)
    }
    pub fn stats(&self) -> Stats {
        let mut s = Stats::default();
        unsafe { sys::kvc_cache_stats(self.ptr(), &mut s) };
        s
    }
    pub fn policy_name(&self) -> String {
        unsafe { CStr::from_ptr(sys::kvc_cache_policy_name(self.ptr())) }
            .to_string_lossy()
            .into_owned()
    }
    /// `kvc_cache_last_error`.
    pub fn last_error(&self) -> String {
        self.last_error_string()
    }
    /// The raw handle, for calls this wrapper does not cover. It stays owned by `self`.
    pub fn as_raw(&mut self) -> *mut sys::kvc_cache {
        self.ptr()
    }
}

impl Drop for Cache {
    fn drop(&mut self) {
        let p = self.ptr();
        // SAFETY: the cache is valid and dropped once; the user slot outlives this call.
        unsafe { sys::kvc_cache_destroy(p) };
        if let Some(u) = self.user.as_mut() {
            if let Some(payload) = u.panic.take() {
                if !std::thread::panicking() {
                    resume_unwind(payload); // fini panicked
                }
            }
        }
    }
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("policy", &self.policy_name())
            .field("mode", &self.mode)
            .field("dtype", &self.dtype)
            .field("n_kv_heads", &self.n_kv)
            .field("n_q_heads", &self.n_q)
            .field("head_dim", &self.d)
            .field("len", &self.len())
            .field("capacity", &self.capacity())
            .finish()
    }
}
