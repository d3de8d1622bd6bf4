//! The hand-written declarations against include/kvc.h: every exported
//! function declared, every constant equal, every struct laid out as the C
//! compiler lays it out.
use std::collections::BTreeSet;
use std::mem::{size_of, MaybeUninit};
use std::path::PathBuf;
use std::process::Command;

use kvc_sys::*;

const SOURCE: &str = include_str!("../src/lib.rs");

fn include_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../include")
}

fn header() -> String {
    let path = include_dir().join("kvc.h");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {}", path.display(), e))
}

/// Names of `KVC_API ... kvc_name(` declarations.
fn header_functions(h: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for decl in h.split("\nKVC_API ").skip(1) {
        let head = &decl[..decl.find('(').unwrap()];
        let name = head
            .rsplit(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .next()
            .unwrap();
        assert!(name.starts_with("kvc_"), "odd declaration: {}", head);
        out.insert(name.to_string());
    }
    out
}

#[test]
fn every_header_function_is_declared() {
    let h = header();
    let want = header_functions(&h);
    assert!(want.len() > 40, "parsed only {} functions", want.len());
    let have: BTreeSet<String> = SOURCE
        .split("pub fn ")
        .skip(1)
        .map(|s| s[..s.find('(').unwrap()].to_string())
        .collect();
    assert_eq!(want, have);
}

#[test]
fn constants_match_the_header() {
    let h = header();
    let define = |name: &str| -> u64 {
        let key = format!("#define {} ", name);
        let line = h
            .lines()
            .find(|l| l.starts_with(&key))
            .unwrap_or_else(|| panic!("{} not in header", name));
        let v = line[key.len()..]
            .split_whitespace()
            .next()
            .unwrap()
            .trim_end_matches('u');
        if let Some(hex) = v.strip_prefix("0x") {
            u64::from_str_radix(hex, 16).unwrap()
        } else {
            v.parse().unwrap()
        }
    };
    assert_eq!(define("KVC_VERSION_MAJOR"), KVC_VERSION_MAJOR as u64);
    assert_eq!(define("KVC_VERSION_MINOR"), KVC_VERSION_MINOR as u64);
    assert_eq!(define("KVC_VERSION_PATCH"), KVC_VERSION_PATCH as u64);
    assert_eq!(define("KVC_POLICY_ABI"), KVC_POLICY_ABI as u64);
    for (name, value) in [
        ("KVC_NEED_ATTN", KVC_NEED_ATTN),
        ("KVC_NEED_QUERY_WINDOW", KVC_NEED_QUERY_WINDOW),
        ("KVC_NEED_VALUE_STATS", KVC_NEED_VALUE_STATS),
        ("KVC_NEED_KEY_STATS", KVC_NEED_KEY_STATS),
        ("KVC_NEED_RNG", KVC_NEED_RNG),
    ] {
        assert_eq!(define(name), value as u64, "{}", name);
    }
    // X(KVC_EINVAL, -1, "...") lines of the status list
    let mut listed = Vec::new();
    for line in h.lines() {
        if line.trim_start().starts_with("X(KVC_OPT_") {
            continue; // the option list, checked below
        }
        if let Some(rest) = line.trim_start().strip_prefix("X(KVC_") {
            let mut it = rest.split(',');
            let name = format!("KVC_{}", it.next().unwrap());
            let value: i32 = it.next().unwrap().trim().parse().unwrap();
            listed.push((name, value));
        }
    }
    let ours = [
        ("KVC_OK", KVC_OK),
        ("KVC_EINVAL", KVC_EINVAL),
        ("KVC_ENOMEM", KVC_ENOMEM),
        ("KVC_EOVERFLOW", KVC_EOVERFLOW),
        ("KVC_EFULL", KVC_EFULL),
        ("KVC_ESTATE", KVC_ESTATE),
        ("KVC_ERANGE", KVC_ERANGE),
        ("KVC_EUNKNOWN", KVC_EUNKNOWN),
        ("KVC_EORDER", KVC_EORDER),
        ("KVC_ENONFINITE", KVC_ENONFINITE),
        ("KVC_EMODE", KVC_EMODE),
        ("KVC_EPOLICY", KVC_EPOLICY),
        ("KVC_EABI", KVC_EABI),
        ("KVC_EEMPTY", KVC_EEMPTY),
        ("KVC_ENOTSUP", KVC_ENOTSUP),
        ("KVC_ESYNTAX", KVC_ESYNTAX),
    ];
    let ours: Vec<(String, i32)> = ours.iter().map(|(n, v)| (n.to_string(), *v)).collect();
    assert_eq!(listed, ours);
    // enum values: "KVC_MODE_INDEX = 1," and friends, or "X(KVC_OPT_SINK, 1," in the option list
    for (name, value) in [
        ("KVC_DTYPE_F32", KVC_DTYPE_F32),
        ("KVC_DTYPE_F16", KVC_DTYPE_F16),
        ("KVC_DTYPE_BF16", KVC_DTYPE_BF16),
        ("KVC_MODE_STORE", KVC_MODE_STORE),
        ("KVC_MODE_INDEX", KVC_MODE_INDEX),
        ("KVC_SCOPE_HEAD", KVC_SCOPE_HEAD),
        ("KVC_SCOPE_SHARED", KVC_SCOPE_SHARED),
        ("KVC_OPT_SCOPE", KVC_OPT_SCOPE),
        ("KVC_OPT_SINK", KVC_OPT_SINK),
        ("KVC_OPT_RECENT", KVC_OPT_RECENT),
        ("KVC_OPT_CHUNK", KVC_OPT_CHUNK),
        ("KVC_OPT_BLOCK", KVC_OPT_BLOCK),
        ("KVC_OPT_SEED", KVC_OPT_SEED),
        ("KVC_OPT_QUERY_WINDOW", KVC_OPT_QUERY_WINDOW),
        ("KVC_OPT_PROTECT", KVC_OPT_PROTECT),
        ("KVC_OPT_PREFILL_MAX", KVC_OPT_PREFILL_MAX),
    ] {
        let (key, row) = (format!("{} = ", name), format!("X({}, ", name));
        let at = h
            .find(&key)
            .map(|i| i + key.len())
            .or_else(|| h.find(&row).map(|i| i + row.len()))
            .unwrap_or_else(|| panic!("{} not in header", name));
        let digits: String = h[at..].chars().take_while(|c| c.is_ascii_digit()).collect();
        assert_eq!(digits.parse::<u32>().unwrap(), value, "{}", name);
    }
}

#[test]
fn library_agrees() {
    unsafe {
        assert_eq!(kvc_version_number(), KVC_VERSION_NUMBER);
        for code in KVC_ESYNTAX..=KVC_OK {
            let msg = std::ffi::CStr::from_ptr(kvc_strerror(code)).to_str().unwrap();
            assert_ne!(msg, "unknown status", "{}", code);
        }
        let msg = std::ffi::CStr::from_ptr(kvc_strerror(KVC_ESYNTAX - 1))
            .to_str()
            .unwrap();
        assert_eq!(msg, "unknown status");
        let mut n = 0;
        while !kvc_policy_at(n).is_null() {
            let p = &*kvc_policy_at(n);
            assert_eq!(p.abi_version, KVC_POLICY_ABI);
            assert_eq!(p.struct_size as usize, size_of::<kvc_policy>());
            n += 1;
        }
        assert_eq!(n, 15);
    }
}

macro_rules! layout {
    ($out:ident, $t:ident { $($f:ident),* }) => {{
        $out.push((format!("{} size", stringify!($t)), size_of::<$t>()));
        let u = MaybeUninit::<$t>::uninit();
        let base = u.as_ptr() as usize;
        $(
            // SAFETY: only the field's address is taken.
            let at = unsafe { std::ptr::addr_of!((*u.as_ptr()).$f) } as usize;
            $out.push((format!("{} {}", stringify!($t), stringify!($f)), at - base));
        )*
    }};
}

#[test]
fn struct_layouts_match_the_c_compiler() {
    let mut rust: Vec<(String, usize)> = Vec::new();
    layout!(rust, kvc_allocator { alloc, free, opaque });
    layout!(
        rust,
        kvc_token {
            pos,
            seq,
            key_norm,
            value_range,
            value_l1,
            key,
            value
        }
    );
    layout!(
        rust,
        kvc_param {
            name,
            def,
            min,
            max,
            choices,
            help
        }
    );
    layout!(
        rust,
        kvc_policy_ctx {
            n_groups,
            capacity,
            head_dim,
            q_per_group,
            block,
            chunk,
            sink,
            recent,
            mode,
            rng,
            params,
            user,
            kv_heads,
            scale,
            prefill_max
        }
    );
    layout!(
        rust,
        kvc_prefill {
            group,
            n_tokens,
            tokens,
            score,
            n_window,
            n_candidates,
            candidates,
            n_victims,
            rng
        }
    );
    layout!(rust, kvc_move { from, to });
    layout!(
        rust,
        kvc_select {
            group,
            n_candidates,
            candidates,
            n_victims,
            block,
            positions,
            window_score,
            rng,
            queries,
            n_queries
        }
    );
    layout!(
        rust,
        kvc_policy {
            abi_version,
            struct_size,
            name,
            needs,
            default_sink,
            default_recent,
            default_chunk,
            default_scope,
            n_params,
            params,
            state_size,
            init,
            on_insert,
            on_attend,
            score,
            select,
            on_move,
            fini,
            control,
            user,
            default_query_window,
            prefill
        }
    );
    layout!(
        rust,
        kvc_stats {
            appends,
            evictions,
            attends
        }
    );
    layout!(
        rust,
        kvc_attn_layout {
            n_q_heads,
            n_kv_heads,
            head_dim,
            n_keys,
            dtype,
            row_stride,
            head_stride,
            scale
        }
    );

    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let mut src = String::from("#include <stddef.h>\n#include <stdio.h>\n#include \"kvc.h\"\nint main(void) {\n");
    for (key, _) in &rust {
        let mut it = key.split(' ');
        let (t, f) = (it.next().unwrap(), it.next().unwrap());
        if f == "size" {
            src += &format!("    printf(\"{} size %zu\\n\", sizeof({}));\n", t, t);
        } else {
            src += &format!("    printf(\"{} {} %zu\\n\", offsetof({}, {}));\n", t, f, t, f);
        }
    }
    src += "    return 0;\n}\n";
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let (c_file, exe) = (dir.join("layout.c"), dir.join("layout"));
    std::fs::write(&c_file, src).unwrap();
    let status = match Command::new(&cc)
        .arg("-std=c11")
        .arg("-I")
        .arg(include_dir())
        .arg(&c_file)
        .arg("-o")
        .arg(&exe)
        .status()
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("skipped: no C compiler ({}): {}", cc, e);
            return;
        }
    };
    assert!(status.success(), "compiling the layout probe failed");
    let out = Command::new(&exe).output().unwrap();
    let c: Vec<(String, usize)> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect();
    assert_eq!(rust, c);
}
