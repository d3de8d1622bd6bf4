//! Policies written in Rust through the C vtable: equal to the built-ins
//! they mirror, and errors or panics never crossing into C.
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

use kvc::{
    Cache, Error, Eviction, Mode, Opt, Policy, PolicyContext, PolicyDefaults, SelectRequest, Status, Token, UserPolicy,
};

struct Lcg(u64);
impl Lcg {
    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| {
                self.0 = self
                    .0
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }
}

/// Keep-score = insertion index: the built-in `window`.
#[derive(Default)]
struct Oldest {
    seq: Vec<Vec<u64>>,
}

impl UserPolicy for Oldest {
    fn name(&self) -> &str {
        "oldest"
    }
    fn init(&mut self, ctx: &PolicyContext) -> kvc::Result<()> {
        self.seq = vec![vec![0; ctx.capacity as usize]; ctx.n_groups as usize];
        Ok(())
    }
    fn on_insert(&mut self, group: u32, slot: u32, token: &Token) {
        self.seq[group as usize][slot as usize] = token.seq;
    }
    fn on_move(&mut self, group: u32, from: u32, to: u32) {
        let g = &mut self.seq[group as usize];
        g[to as usize] = g[from as usize];
    }
    fn score(&mut self, group: u32, slots: &[u32], keep: &mut [f32]) {
        for (k, &s) in keep.iter_mut().zip(slots) {
            *k = self.seq[group as usize][s as usize] as f32;
        }
    }
}

/// H2O as the library implements it.
#[derive(Default)]
struct Heavy {
    acc: Vec<Vec<f32>>,
}

impl UserPolicy for Heavy {
    fn name(&self) -> &str {
        "heavy"
    }
    fn needs(&self) -> u32 {
        kvc::KVC_NEED_ATTN
    }
    fn defaults(&self) -> PolicyDefaults {
        PolicyDefaults {
            recent: kvc::KVC_RECENT_HALF,
            ..PolicyDefaults::default()
        }
    }
    fn init(&mut self, ctx: &PolicyContext) -> kvc::Result<()> {
        self.acc = vec![vec![0.0; ctx.capacity as usize]; ctx.n_groups as usize];
        Ok(())
    }
    fn on_insert(&mut self, group: u32, slot: u32, _t: &Token) {
        self.acc[group as usize][slot as usize] = 0.0;
    }
    fn on_attend(&mut self, group: u32, mass: &[f32]) {
        for (a, m) in self.acc[group as usize].iter_mut().zip(mass) {
            *a += m;
        }
    }
    fn on_move(&mut self, group: u32, from: u32, to: u32) {
        let g = &mut self.acc[group as usize];
        g[to as usize] = g[from as usize];
    }
    fn score(&mut self, group: u32, slots: &[u32], keep: &mut [f32]) {
        for (k, &s) in keep.iter_mut().zip(slots) {
            *k = self.acc[group as usize][s as usize];
        }
    }
}

/// The built-in `random`: partial Fisher-Yates with the cache's generator.
struct Shuffle;

impl UserPolicy for Shuffle {
    fn name(&self) -> &str {
        "shuffle"
    }
    fn needs(&self) -> u32 {
        kvc::KVC_NEED_RNG
    }
    fn eviction(&self) -> Eviction {
        Eviction::Select
    }
    fn select(&mut self, req: &mut SelectRequest<'_>, victims: &mut [u32]) -> kvc::Result<()> {
        let mut pool = req.candidates.to_vec();
        for i in 0..victims.len() {
            let j = i + req.rng.below((pool.len() - i) as u32) as usize;
            pool.swap(i, j);
            victims[i] = pool[i];
        }
        Ok(())
    }
}

fn run_pair(builtin: Policy, mine: impl UserPolicy, mode: Mode, options: &str) {
    let build = |b: kvc::Builder| b.mode(mode).options(options).build().unwrap();
    let mut a = build(Cache::builder(2, 4, 8, 16).policy(builtin));
    let mut b = build(Cache::builder(2, 4, 8, 16).user_policy(mine));
    let mut rng = Lcg(42);
    let (mut oa, mut ob) = (vec![0f32; 32], vec![0f32; 32]);
    for t in 0..150 {
        let (k, v, q) = (rng.vec(16), rng.vec(16), rng.vec(32));
        if mode == Mode::Store {
            a.append(t, &k, &v).unwrap();
            b.append(t, &k, &v).unwrap();
            a.attend(&q, &mut oa).unwrap();
            b.attend(&q, &mut ob).unwrap();
            assert_eq!(oa, ob);
        } else {
            assert_eq!(a.reserve(t, None).unwrap(), b.reserve(t, None).unwrap(), "step {}", t);
            for g in 0..a.groups() {
                let m: Vec<f32> = rng.vec(16).iter().map(|x| x.abs()).collect();
                a.observe(g, &m).unwrap();
                b.observe(g, &m).unwrap();
            }
        }
        for g in 0..a.groups() {
            assert_eq!(
                a.positions(g).unwrap(),
                b.positions(g).unwrap(),
                "step {} group {}",
                t,
                g
            );
        }
    }
    assert_eq!(a.stats(), b.stats());
    assert!(b.stats().evictions > 0);
}

#[test]
fn user_policies_equal_the_builtins() {
    run_pair(Policy::window(), Oldest::default(), Mode::Store, "");
    run_pair(Policy::window(), Oldest::default(), Mode::Index, "block=4 chunk=2");
    run_pair(Policy::h2o(), Heavy::default(), Mode::Store, "");
    run_pair(Policy::h2o(), Heavy::default(), Mode::Index, "scope=shared");
    run_pair(Policy::random(), Shuffle, Mode::Store, "seed=1234");
    run_pair(Policy::random(), Shuffle, Mode::Index, "seed=99 chunk=3");
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Fail {
    None,
    Err,
    Panic,
    Duplicate,
}

/// Evicts the oldest, or fails as told; also counts fini calls.
struct Flaky {
    fail: Arc<Mutex<Fail>>,
    where_: &'static str,
    finis: Arc<Mutex<u32>>,
}

impl Flaky {
    fn check(&self, here: &str) -> kvc::Result<()> {
        if self.where_ != here {
            return Ok(());
        }
        let fail = *self.fail.lock().unwrap(); // not held while panicking
        match fail {
            Fail::Err => Err(Error::new(Status::NoMem.code(), "policy memory")),
            Fail::Panic => panic!("{} exploded", here),
            _ => Ok(()),
        }
    }
}

impl UserPolicy for Flaky {
    fn name(&self) -> &str {
        "flaky"
    }
    fn eviction(&self) -> Eviction {
        if self.where_ == "score" {
            Eviction::Score
        } else {
            Eviction::Select
        }
    }
    fn init(&mut self, _ctx: &PolicyContext) -> kvc::Result<()> {
        self.check("init")
    }
    fn on_insert(&mut self, _g: u32, _s: u32, _t: &Token) {
        self.check("on_insert").unwrap();
    }
    fn score(&mut self, _g: u32, slots: &[u32], keep: &mut [f32]) {
        self.check("score").unwrap();
        for (k, &s) in keep.iter_mut().zip(slots) {
            *k = -(s as f32); // keeps low slots, so the fallback (oldest) differs
        }
    }
    fn select(&mut self, req: &mut SelectRequest<'_>, victims: &mut [u32]) -> kvc::Result<()> {
        self.check("select")?;
        let dup = *self.fail.lock().unwrap() == Fail::Duplicate;
        for (i, v) in victims.iter_mut().enumerate() {
            *v = req.candidates[if dup { 0 } else { i }];
        }
        Ok(())
    }
    fn fini(&mut self) {
        *self.finis.lock().unwrap() += 1;
        self.check("fini").unwrap();
    }
}

fn flaky(where_: &'static str, chunk: i64) -> (Cache, Arc<Mutex<Fail>>, Arc<Mutex<u32>>) {
    let fail = Arc::new(Mutex::new(Fail::None));
    let finis = Arc::new(Mutex::new(0));
    let pol = Flaky {
        fail: fail.clone(),
        where_,
        finis: finis.clone(),
    };
    let c = Cache::builder(1, 1, 4, 6)
        .user_policy(pol)
        .option(Opt::Chunk, chunk)
        .build()
        .unwrap();
    (c, fail, finis)
}

fn fill(c: &mut Cache) {
    for t in 0..6 {
        c.append(t, &[t as f32; 4], &[t as f32; 4]).unwrap();
    }
}

#[test]
fn select_errors_become_status_codes_and_change_nothing() {
    let (mut c, fail, _) = flaky("select", 1);
    fill(&mut c);
    let before = (c.positions(0).unwrap(), c.stats());
    *fail.lock().unwrap() = Fail::Err;
    let e = c.append(6, &[0.0; 4], &[0.0; 4]).unwrap_err();
    assert_eq!(e.status(), Some(Status::NoMem));
    assert!(
        e.detail().contains("select failed") && e.detail().contains("policy memory"),
        "{}",
        e
    );
    assert_eq!((c.positions(0).unwrap(), c.stats()), before);

    *fail.lock().unwrap() = Fail::Panic;
    let r = catch_unwind(AssertUnwindSafe(|| c.append(6, &[0.0; 4], &[0.0; 4])));
    let msg = r.unwrap_err();
    assert_eq!(
        msg.downcast_ref::<String>().map(String::as_str),
        Some("select exploded")
    );
    assert_eq!((c.positions(0).unwrap(), c.stats()), before);

    *fail.lock().unwrap() = Fail::None;
    c.append(6, &[0.0; 4], &[0.0; 4]).unwrap();
    assert!(!c.positions(0).unwrap().contains(&0));
}

#[test]
fn invalid_victims_are_caught_by_the_core() {
    let (mut c, fail, _) = flaky("select", 2);
    fill(&mut c);
    *fail.lock().unwrap() = Fail::Duplicate;
    let e = c.append(6, &[0.0; 4], &[0.0; 4]).unwrap_err();
    assert_eq!(e.status(), Some(Status::Policy));
    assert!(e.detail().contains("a duplicate"), "{}", e);
    assert_eq!(c.len(), 6);
}

#[test]
fn score_panic_falls_back_to_oldest_then_resumes() {
    let (mut c, fail, _) = flaky("score", 1);
    fill(&mut c);
    *fail.lock().unwrap() = Fail::Panic;
    let r = catch_unwind(AssertUnwindSafe(|| c.append(6, &[0.0; 4], &[0.0; 4])));
    assert!(r.is_err());
    // the append completed with the fallback: the oldest candidate (0) went
    let mut p = c.positions(0).unwrap();
    p.sort_unstable();
    assert_eq!(p, [1, 2, 3, 4, 5, 6]);
    *fail.lock().unwrap() = Fail::None;
    c.append(7, &[0.0; 4], &[0.0; 4]).unwrap(); // the policy keeps low slots: evicts the highest slot
    assert_eq!(c.len(), 6);
}

#[test]
fn init_error_refuses_the_first_append_and_fini_runs_on_drop() {
    let (mut c, fail, finis) = flaky("init", 1);
    *fail.lock().unwrap() = Fail::Err;
    let e = c.append(0, &[0.0; 4], &[0.0; 4]).unwrap_err();
    assert_eq!(e.status(), Some(Status::NoMem));
    assert!(e.detail().contains("init failed"), "{}", e);
    assert!(c.is_empty());
    *fail.lock().unwrap() = Fail::None;
    c.append(0, &[0.0; 4], &[0.0; 4]).unwrap();
    let before = *finis.lock().unwrap();
    c.reset().unwrap();
    assert_eq!(*finis.lock().unwrap(), before + 1);
    drop(c);
    assert_eq!(*finis.lock().unwrap(), before + 2);
}

#[test]
fn panic_in_a_notification_resumes_after_the_call() {
    let (mut c, fail, _) = flaky("on_insert", 1);
    *fail.lock().unwrap() = Fail::Panic;
    assert!(catch_unwind(AssertUnwindSafe(|| c.append(0, &[0.0; 4], &[0.0; 4]))).is_err());
    assert_eq!(c.len(), 1); // the token is in
    *fail.lock().unwrap() = Fail::None;
    c.append(1, &[0.0; 4], &[0.0; 4]).unwrap();
}

#[test]
fn panic_in_fini_resumes_from_drop() {
    let (mut c, fail, _) = flaky("fini", 1);
    c.prepare().unwrap();
    *fail.lock().unwrap() = Fail::Panic;
    assert!(catch_unwind(AssertUnwindSafe(move || drop(c))).is_err());
}

#[test]
fn bad_user_policy_name() {
    struct Bad;
    impl UserPolicy for Bad {
        fn name(&self) -> &str {
            "Not Valid"
        }
    }
    let e = Cache::builder(1, 1, 4, 4).user_policy(Bad).build().unwrap_err();
    assert!(e.detail().contains("[a-z0-9_]+"), "{}", e);
}

#[test]
fn user_policy_cache_is_send() {
    let mut c = Cache::builder(1, 1, 4, 4)
        .user_policy(Oldest::default())
        .policy(Policy::window())
        .build()
        .unwrap();
    assert_eq!(c.policy_name(), "window");
    c = Cache::builder(1, 1, 4, 4)
        .user_policy(Oldest::default())
        .build()
        .unwrap();
    let c = std::thread::spawn(move || {
        for t in 0..10 {
            c.append(t, &[1.0; 4], &[1.0; 4]).unwrap();
        }
        c
    })
    .join()
    .unwrap();
    let mut p = c.positions(0).unwrap();
    p.sort_unstable();
    assert_eq!(p, [6, 7, 8, 9]);
}
