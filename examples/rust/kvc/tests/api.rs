//! The safe wrapper: caches in both modes, options, errors, slices, threads,
//! and attention against an f64 reference.
use kvc::{attention, attention_heads, Bf16, Cache, DType, Error, Layout, Mode, Opt, Policy, Scope, Status};

/// Deterministic values in [-1, 1).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.next()).collect()
    }
}

/// f64 reference: q is n_q rows of d; keys[h][j], vals[h][j] rows of d.
fn reference(
    q: &[f32],
    keys: &[Vec<Vec<f32>>],
    vals: &[Vec<Vec<f32>>],
    n_q: usize,
    d: usize,
    scale: f64,
) -> (Vec<f64>, Vec<Vec<f64>>) {
    let n_kv = keys.len();
    let r = n_q / n_kv;
    let mut out = vec![0.0; n_q * d];
    let mut weights = Vec::new();
    for h in 0..n_q {
        let (ks, vs) = (&keys[h / r], &vals[h / r]);
        let s: Vec<f64> = ks
            .iter()
            .map(|k| (0..d).map(|i| q[h * d + i] as f64 * k[i] as f64).sum::<f64>() * scale)
            .collect();
        let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
        let z: f64 = e.iter().sum();
        let w: Vec<f64> = e.iter().map(|x| x / z).collect();
        for (j, v) in vs.iter().enumerate() {
            for i in 0..d {
                out[h * d + i] += w[j] * v[i] as f64;
            }
        }
        weights.push(w);
    }
    (out, weights)
}

fn close(got: &[f32], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (*g as f64 - w).abs() <= tol * (1.0 + w.abs()),
            "element {}: {} vs {}",
            i,
            g,
            w
        );
    }
}

#[test]
fn version_isa_policies() {
    assert_eq!(kvc::version_number(), kvc::sys::KVC_VERSION_NUMBER);
    assert_eq!(kvc::version(), "0.1.0");
    assert!(["scalar", "avx2", "avx512", "avx512_vnni", "avx512_bf16", "neon"].contains(&kvc::active_isa()));
    let names: Vec<&str> = Policy::builtins().iter().map(|p| p.name()).collect();
    assert_eq!(
        names,
        [
            "full",
            "window",
            "sink",
            "random",
            "h2o",
            "tova",
            "knorm",
            "vatp",
            "vase",
            "vase_dkv",
            "rkv",
            "keydiff",
            "scissorhands",
            "keyformer",
            "snapkv"
        ]
    );
    let h2o = Policy::by_name("h2o").unwrap();
    assert_eq!(h2o.default_recent(), kvc::KVC_RECENT_HALF);
    assert_eq!(h2o.params()[0].choices, ["sum", "lifetime"]);
    assert_eq!(Policy::tova().default_scope(), Scope::Shared);
    let e = Policy::by_name("nope").unwrap_err();
    assert_eq!(e.status(), Some(Status::Unknown));
    assert!(e.to_string().contains("built-in policies: full"), "{}", e);
    for s in Status::all() {
        assert_eq!(Status::from_code(s.code()), Some(s));
        assert_ne!(kvc::strerror(s.code()), "unknown status");
    }
}

#[test]
fn store_mode_window() {
    let mut rng = Lcg(1);
    let mut c = Cache::builder(2, 4, 8, 16).policy(Policy::window()).build().unwrap();
    let mut out = vec![0f32; 32];
    for t in 0..40 {
        c.append(t, &rng.vec(16), &rng.vec(16)).unwrap();
        c.attend(&rng.vec(32), &mut out).unwrap();
    }
    assert_eq!((c.len(), c.capacity(), c.groups()), (16, 16, 2));
    for g in 0..2 {
        let mut p = c.positions(g).unwrap();
        p.sort_unstable();
        assert_eq!(p, (24..40).collect::<Vec<i64>>());
    }
    let s = c.stats();
    assert_eq!((s.appends, s.evictions, s.attends), (40, 48, 40));
    assert_eq!(c.policy_name(), "window");
}

#[test]
fn errors_carry_status_and_detail() {
    let mut c = Cache::builder(1, 1, 4, 4).build().unwrap();
    let kv = [1.0f32; 4];
    for t in 0..4 {
        c.append(t, &kv, &kv).unwrap();
    }
    let e = c.append(4, &kv, &kv).unwrap_err();
    assert_eq!(e.status(), Some(Status::Full));
    assert!(e.detail().contains("never evicts"), "{}", e);
    assert!(e
        .to_string()
        .starts_with("KVC_EFULL (cache is full and the policy never evicts): append: "));
    let e = c.append(2, &kv, &kv).unwrap_err();
    assert_eq!(e.status(), Some(Status::Order));
    assert!(e.detail().contains("previous position 3"), "{}", e);
    // the wrapper refuses wrong lengths before C
    let e = c.append(9, &kv[..3], &kv).unwrap_err();
    assert_eq!(
        (e.status(), e.detail()),
        (Some(Status::Inval), "k: expected 4 floats, got 3")
    );
    let mut out = [0f32; 3];
    assert_eq!(c.attend(&kv, &mut out).unwrap_err().status(), Some(Status::Inval));
    let e: Box<dyn std::error::Error> = Box::new(e);
    assert!(e.to_string().contains("KVC_EINVAL"));
    // NaN rejected, nothing stored
    let mut c = Cache::builder(1, 1, 4, 4).policy(Policy::window()).build().unwrap();
    let e = c.append(0, &[f32::NAN, 0.0, 0.0, 0.0], &kv).unwrap_err();
    assert_eq!(e.status(), Some(Status::NonFinite));
    assert!(c.is_empty());
    let e = c.attend(&kv, &mut [0f32; 4]).unwrap_err();
    assert_eq!(e.status(), Some(Status::Empty));
    assert_eq!(c.reserve(0, None).unwrap_err().status(), Some(Status::Mode));
}

#[test]
fn specs_and_options() {
    let c = Cache::from_spec(
        2,
        4,
        8,
        16,
        DType::F16,
        Mode::Store,
        "h2o recent=4 sink=2 norm=lifetime",
    )
    .unwrap();
    assert_eq!((c.get(Opt::Recent).unwrap(), c.get(Opt::Sink).unwrap()), (4, 2));
    assert_eq!(c.get_param("norm").unwrap(), 1.0);
    assert_eq!(c.dtype(), DType::F16);
    for (spec, status) in [
        ("nope", Status::Unknown),
        ("h2o recent=x", Status::Syntax),
        ("h2o bogus=1", Status::Unknown),
        ("h2o recent=99", Status::Range),
        ("recent=4", Status::Syntax),
    ] {
        let e = Cache::from_spec(2, 4, 8, 16, DType::F32, Mode::Store, spec).unwrap_err();
        assert_eq!(e.status(), Some(status), "{}: {}", spec, e);
    }
    let mut c = Cache::builder(2, 4, 8, 16)
        .policy(Policy::h2o())
        .option(Opt::Scope, Scope::Shared as i64)
        .option(Opt::Chunk, 2)
        .param("norm", 1.0)
        .scale(0.5)
        .options("seed=7")
        .build()
        .unwrap();
    assert_eq!((c.groups(), c.max_evictions(), c.get(Opt::Seed).unwrap()), (1, 2, 7));
    c.append(0, &[0.0; 16], &[0.0; 16]).unwrap();
    assert_eq!(c.set(Opt::Recent, 3).unwrap_err().status(), Some(Status::State));
    let e = Cache::builder(2, 3, 8, 16).build().unwrap_err();
    assert!(e.detail().contains("not a multiple"), "{}", e);
    let e = Cache::builder(1, 1, 8, 1 << 31).build().unwrap_err();
    assert_eq!(e.status(), Some(Status::Overflow));
    let e = Cache::builder(1, 1, 4, 16)
        .policy(Policy::h2o())
        .option(Opt::Sink, 8)
        .option(Opt::Recent, 8)
        .build();
    let mut c = e.unwrap();
    let e = c.prepare().unwrap_err();
    assert!(e.detail().contains("no room to evict"), "{}", e);
}

#[test]
fn cache_moves_between_threads() {
    let mut c = Cache::builder(1, 1, 4, 8).policy(Policy::window()).build().unwrap();
    c.append(0, &[1.0; 4], &[1.0; 4]).unwrap();
    let c = std::thread::spawn(move || {
        let mut c = c;
        for t in 1..20 {
            c.append(t, &[1.0; 4], &[1.0; 4]).unwrap();
        }
        c
    })
    .join()
    .unwrap();
    assert_eq!(c.len(), 8);
    // caches on different threads at once are independent
    let hs: Vec<_> = (0..3)
        .map(|i| {
            std::thread::spawn(move || {
                let mut c = Cache::builder(2, 2, 4, 16).policy(Policy::h2o()).build().unwrap();
                let mut rng = Lcg(i);
                let mut out = vec![0f32; 8];
                for t in 0..100 {
                    c.append(t, &rng.vec(8), &rng.vec(8)).unwrap();
                    c.attend(&rng.vec(8), &mut out).unwrap();
                }
                c.stats().evictions
            })
        })
        .collect();
    for h in hs {
        assert_eq!(h.join().unwrap(), 2 * 84);
    }
}

fn bf16(x: f32) -> (Bf16, f32) {
    let b = x.to_bits();
    let r = ((b + 0x7fff + ((b >> 16) & 1)) >> 16) as u16;
    (Bf16(r), f32::from_bits((r as u32) << 16))
}

#[test]
fn attend_matches_reference_all_dtypes() {
    for (dtype, tol) in [(DType::F32, 2e-5), (DType::F16, 2e-5), (DType::Bf16, 2e-5)] {
        let (n_kv, n_q, d, n) = (2usize, 8usize, 33usize, 40usize);
        let mut rng = Lcg(7);
        let mut c = Cache::builder(n_kv as u32, n_q as u32, d as u32, 64)
            .dtype(dtype)
            .build()
            .unwrap();
        for t in 0..n {
            c.append(t as i64, &rng.vec(n_kv * d), &rng.vec(n_kv * d)).unwrap();
        }
        // the reference reads back the stored (rounded) rows; for f32 they are exact
        let mut keys = vec![Vec::new(); n_kv];
        let mut vals = vec![Vec::new(); n_kv];
        for h in 0..n_kv {
            for s in 0..n {
                let (mut k, mut v) = (vec![0f32; d], vec![0f32; d]);
                c.read(h as u32, s as u32, Some(&mut k), Some(&mut v)).unwrap();
                keys[h].push(k);
                vals[h].push(v);
            }
        }
        let q = rng.vec(n_q * d);
        let mut out = vec![0f32; n_q * d];
        c.attend(&q, &mut out).unwrap();
        let (want, _) = reference(&q, &keys, &vals, n_q, d, 1.0 / (d as f64).sqrt());
        close(&out, &want, tol);
        if dtype == DType::F32 {
            let mut rng = Lcg(7);
            let k0 = rng.vec(n_kv * d);
            assert_eq!(keys[0][0], k0[..d].to_vec());
        }
        if dtype == DType::Bf16 {
            let mut rng = Lcg(7);
            let k0 = rng.vec(n_kv * d);
            let rounded: Vec<f32> = k0[..d].iter().map(|&x| bf16(x).1).collect();
            assert_eq!(keys[0][0], rounded);
        }
    }
}

#[test]
fn standalone_attention_with_strides_weights_and_ranges() {
    let (n_kv, n_q, d, n, rs) = (2usize, 6usize, 20usize, 37usize, 24usize);
    let hs = n * rs + 8;
    let mut rng = Lcg(3);
    let mut kf = vec![0f32; n_kv * hs];
    let mut vf = vec![0f32; n_kv * hs];
    let (mut keys, mut vals) = (vec![Vec::new(); n_kv], vec![Vec::new(); n_kv]);
    let (mut kb, mut vb) = (vec![Bf16(0); n_kv * hs], vec![Bf16(0); n_kv * hs]);
    let (mut kbr, mut vbr) = (vec![Vec::new(); n_kv], vec![Vec::new(); n_kv]);
    for h in 0..n_kv {
        for j in 0..n {
            let (k, v) = (rng.vec(d), rng.vec(d));
            let at = h * hs + j * rs;
            kf[at..at + d].copy_from_slice(&k);
            vf[at..at + d].copy_from_slice(&v);
            for i in 0..d {
                kb[at + i] = bf16(k[i]).0;
                vb[at + i] = bf16(v[i]).0;
            }
            kbr[h].push(k.iter().map(|&x| bf16(x).1).collect::<Vec<f32>>());
            vbr[h].push(v.iter().map(|&x| bf16(x).1).collect::<Vec<f32>>());
            keys[h].push(k);
            vals[h].push(v);
        }
    }
    let layout = Layout {
        row_stride: rs,
        head_stride: hs,
        scale: 0.2,
        ..Layout::contiguous(n_q as u32, n_kv as u32, d as u32, n as u32)
    };
    let q = rng.vec(n_q * d);
    let mut out = vec![0f32; n_q * d];
    let mut w = vec![0f32; n_q * n];
    attention(&layout, &q, &kf, &vf, &mut out, Some(&mut w)).unwrap();
    let (want, wref) = reference(&q, &keys, &vals, n_q, d, 0.2);
    close(&out, &want, 2e-5);
    close(&w, &wref.concat(), 2e-5);
    attention(&layout, &q, &kb, &vb, &mut out, None).unwrap();
    let (want_b, _) = reference(&q, &kbr, &vbr, n_q, d, 0.2);
    close(&out, &want_b, 2e-5);
    // one kv head only: the other query heads' rows stay untouched
    let mut part = vec![9f32; n_q * d];
    attention_heads(&layout, 1..2, &q, &kf, &vf, &mut part, None).unwrap();
    close(&part[3 * d..], &want[3 * d..], 2e-5);
    assert!(part[..3 * d].iter().all(|&x| x == 9.0));
    // checks before C
    let e = attention(&layout, &q, &kf[..kf.len() - 21], &vf, &mut out, None).unwrap_err();
    assert!(e.detail().contains("reaches element"), "{}", e);
    let e = attention_heads(&layout, 1..1, &q, &kf, &vf, &mut out, None).unwrap_err();
    assert_eq!(e.status(), Some(Status::Range));
    let e = attention(&layout, &q, &kf, &vf, &mut out, Some(&mut w[..5])).unwrap_err();
    assert_eq!(e.status(), Some(Status::Inval));
}

#[test]
fn index_mode_reserve_observe_blocks() {
    let mut c = Cache::builder(2, 2, 4, 8)
        .mode(Mode::Index)
        .policy(Policy::h2o())
        .option(Opt::Recent, 2)
        .build()
        .unwrap();
    let mut slot_of = std::collections::HashMap::new();
    for t in 0..8 {
        let r = c.reserve(t, None).unwrap();
        assert_eq!(r.evicted, vec![Vec::<i64>::new(); 2]);
        slot_of.insert(t, r.slots[0]);
    }
    let mut mass = vec![0f32; 8];
    mass[slot_of[&5] as usize] = 1.0;
    c.observe(0, &mass).unwrap();
    let mut evicted = Vec::new();
    for t in 8..13 {
        evicted.extend(c.reserve(t, None).unwrap().evicted[0].clone());
    }
    assert_eq!(evicted, [0, 1, 2, 3, 4]);
    let e = c.observe(2, &mass).unwrap_err();
    assert_eq!(e.status(), Some(Status::Range));
    assert!(e.detail().contains("group 2"), "{}", e);
    let e = c.observe(0, &[-1.0]).unwrap_err();
    assert_eq!(e.status(), Some(Status::NonFinite));
    assert_eq!(c.observe(0, &[0.0; 9]).unwrap_err().status(), Some(Status::Inval));
    assert_eq!(
        c.append(99, &[0.0; 8], &[0.0; 8]).unwrap_err().status(),
        Some(Status::Mode)
    );

    let mut c = Cache::builder(1, 1, 4, 16)
        .mode(Mode::Index)
        .policy(Policy::window())
        .options("block=4 scope=shared")
        .build()
        .unwrap();
    let (mut slots, mut ev) = ([0u32; 1], [0i64; 4]);
    for t in 0..16 {
        c.reserve_into(t, None, &mut slots, Some(&mut ev)).unwrap();
    }
    c.reserve_into(16, None, &mut slots, Some(&mut ev)).unwrap();
    let mut e = ev.to_vec();
    e.sort_unstable();
    assert_eq!(e, [0, 1, 2, 3]);
    assert_eq!(
        c.reserve_into(17, None, &mut [], None).unwrap_err().status(),
        Some(Status::Inval)
    );
}

#[test]
fn error_is_a_std_error() {
    fn takes(_: &dyn std::error::Error) {}
    let e = Error::new(Status::Policy.code(), "why");
    takes(&e);
    assert_eq!(
        e.to_string(),
        "KVC_EPOLICY (policy returned an invalid victim set): why"
    );
    assert_eq!(Error::new(-99, "").status(), None);
}

#[test]
fn spec_errors_name_the_typo() {
    let e = Cache::from_spec(2, 4, 8, 16, DType::F32, Mode::Store, "h2o recnet=64").unwrap_err();
    assert_eq!(e.status(), Some(Status::Unknown));
    assert!(e.detail().contains("did you mean 'recent'"), "{}", e);
    assert!(e.detail().contains("its parameters: norm"), "{}", e);
    let e = Cache::from_spec(2, 4, 8, 16, DType::F32, Mode::Store, "h2 recent=4").unwrap_err();
    assert!(e.detail().contains("did you mean 'h2o'"), "{}", e);
    let e = Cache::from_spec(2, 3, 8, 16, DType::F32, Mode::Store, "h2o").unwrap_err();
    assert!(e.detail().contains("not a multiple"), "{}", e);
}

#[test]
fn prefill_store_and_index_then_compact() {
    let (kv, q, d, cap, n, w) = (2u32, 4u32, 8u32, 16u32, 60usize, 4usize);
    let mut rng = Lcg(9);
    let k = rng.vec(n * (kv * d) as usize);
    let v = rng.vec(n * (kv * d) as usize);
    let qs = rng.vec(w * (q * d) as usize);
    let mut c = Cache::from_spec(kv, q, d, cap, DType::F16, Mode::Store, "snapkv prefill_max=64").unwrap();
    c.prefill(0, &k, &v, &qs).unwrap();
    assert_eq!(c.len(), cap as usize);
    // the observation window is kept in every group
    for g in 0..c.groups() {
        let pos = c.positions(g).unwrap();
        for p in (n - w) as i64..n as i64 {
            assert!(pos.contains(&p), "group {} lost window position {}", g, p);
        }
    }
    c.append(n as i64, &k[..(kv * d) as usize], &v[..(kv * d) as usize]).unwrap();
    let e = c.prefill(100, &k, &v, &qs).unwrap_err();
    assert_eq!(e.status(), Some(Status::State));
    // INDEX: the engine's scores pick the tokens; the keep lists are increasing prompt indices
    let mut c = Cache::from_spec(kv, q, d, cap, DType::F32, Mode::Index, "h2o prefill_max=64 chunk=5 recent=2")
        .unwrap();
    let scores: Vec<f32> = (0..kv as usize * n).map(|i| (i % 7) as f32).collect();
    let keep = c.prefill_index(0, n as u32, Some(&scores), w as u32, None).unwrap();
    assert_eq!(keep.len(), kv as usize);
    for (g, list) in keep.iter().enumerate() {
        assert_eq!(list.len(), cap as usize);
        assert!(list.windows(2).all(|p| p[0] < p[1]));
        let pos = c.positions(g as u32).unwrap();
        assert!(list.iter().zip(pos.iter()).all(|(&i, &p)| p == i as i64));
    }
    // an eviction round of 5 leaves 4 holes; the plan fills them from the tail
    let r = c.reserve(n as i64, None).unwrap();
    assert_eq!(r.evicted[0].len(), 5);
    let holes = c.positions(0).unwrap()[..12].iter().filter(|&&p| p < 0).count();
    let (moves, freed) = c.compact(0, 4).unwrap();
    assert_eq!(moves.len(), holes);
    assert!(moves.iter().all(|m| m.from >= 12 && m.to < 12));
    assert_eq!(freed, 1);
    let pos = c.positions(0).unwrap();
    assert!(pos[..12].iter().all(|&p| p >= 0) && pos[12..].iter().all(|&p| p < 0));
    let e = c.prefill_index(0, n as u32, Some(&scores[..3]), 0, None).unwrap_err();
    assert_eq!(e.status(), Some(Status::Inval));
    let mut s = Cache::builder(1, 1, 4, 4).build().unwrap();
    assert_eq!(s.compact(0, 1).unwrap_err().status(), Some(Status::Mode));
}
