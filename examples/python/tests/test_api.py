"""Module-level API, the C declarations (prototypes, structs, status codes)
checked against include/kvc.h and the C compiler, and library discovery."""
import ctypes
import os
import re
import shutil
import subprocess
import sys
import textwrap

import pytest

import kvc
from kvc import _capi
from conftest import PKG_ROOT, REPO

HEADER = os.path.join(REPO, "include", "kvc.h")


def header():
    with open(HEADER) as f:
        return f.read()


def test_version_matches_header():
    h = header()
    parts = [re.search(r"#define KVC_VERSION_%s (\d+)" % p, h).group(1)
             for p in ("MAJOR", "MINOR", "PATCH")]
    assert kvc.version() == ".".join(parts)
    assert _capi.lib.kvc_version_number() == int(parts[0]) * 10000 + int(parts[1]) * 100 + int(parts[2])


def test_every_exported_function_has_a_prototype():
    declared = set(re.findall(r"KVC_API[^;(]*?\b(kvc_\w+)\s*\(", header()))
    assert len(declared) > 40
    assert declared == set(_capi.FUNCTIONS)
    for name in declared:
        fn = getattr(_capi.lib, name)
        assert fn.argtypes is not None, name


def test_status_codes_match_the_library():
    h = header()
    listed = dict((n, int(v)) for n, v in re.findall(r"X\((KVC_(?!OPT_)\w+), (-?\d+),", h))
    assert listed == dict(_capi.STATUS)
    for st in kvc.Status:
        assert kvc.strerror(st) != "unknown status"
    assert kvc.strerror(-len(listed)) == "unknown status"
    e = kvc.Error(kvc.Status.EFULL, "why")
    assert e.status is kvc.Status.EFULL and e.message == kvc.strerror(-4)
    assert str(e) == "KVC_EFULL (%s): why" % kvc.strerror(-4)
    assert kvc.Error(-99).status is None


def test_option_names_match_the_header():
    h = header()
    opts = re.findall(r"X\(KVC_OPT_(\w+), (\d+),", h)
    assert [n.lower() for n, v in sorted(opts, key=lambda x: int(x[1]))] == list(_capi.OPTIONS)


LAYOUT_C = r"""
#include <stddef.h>
#include <stdio.h>
#include "kvc.h"
#define S(t) printf(#t " size %zu\n", sizeof(t));
#define F(t, f) printf(#t " " #f " %zu\n", offsetof(t, f));
int main(void) {
%s
    return 0;
}
"""


def test_struct_layouts_match_the_c_compiler(tmp_path):
    cc = os.environ.get("CC", "cc")
    if not shutil.which(cc):
        pytest.skip("no C compiler to compare struct layouts with")
    body, expect = [], {}
    for st in _capi.STRUCTS:
        t = st.__name__
        body.append("S(%s)" % t)
        expect["%s size" % t] = ctypes.sizeof(st)
        for fname, _ in st._fields_:
            cname = fname[:-1] if fname in ("def_", "from_") else fname
            body.append("F(%s, %s)" % (t, cname))
            expect["%s %s" % (t, cname)] = getattr(st, fname).offset
    src = tmp_path / "layout.c"
    src.write_text(LAYOUT_C.replace("%s", "\n".join("    " + b for b in body)))
    exe = tmp_path / "layout"
    subprocess.run([cc, "-std=c11", "-I", os.path.join(REPO, "include"), str(src), "-o", str(exe)],
                   check=True)
    got = {}
    for line in subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.splitlines():
        key, val = line.rsplit(" ", 1)
        got[key] = int(val)
    assert got == expect


def test_isa_and_policies():
    assert kvc.active_isa() in ("scalar", "avx2", "avx512", "avx512_vnni", "avx512_bf16", "neon")
    assert kvc.policies() == ["full", "window", "sink", "random", "h2o", "tova", "knorm",
                              "vatp", "vase", "vase_dkv", "rkv", "keydiff", "scissorhands",
                              "keyformer", "snapkv"]
    assert kvc.policy_info("rkv").needs & kvc.NEED_KEYS and kvc.policy_info("rkv").needs & kvc.NEED_QUERIES
    assert kvc.policy_info("vase_dkv").needs & kvc.NEED_VALUES
    info = kvc.policy_info("h2o")
    assert info.default_recent == kvc.RECENT_HALF and info.needs & kvc.NEED_ATTN
    assert info.params[0].name == "norm" and info.params[0].choices == ["sum", "lifetime"]
    assert kvc.policy_info("tova").default_scope == "shared"
    assert kvc.policy_info("vase").needs & kvc.NEED_RNG
    with pytest.raises(kvc.Error) as ei:
        kvc.policy_info("nope")
    assert ei.value.status is kvc.Status.EUNKNOWN


def test_set_isa():
    before = kvc.active_isa()
    try:
        kvc.set_isa("scalar")
        assert kvc.active_isa() == "scalar"
        with pytest.raises(kvc.Error) as ei:
            kvc.set_isa("mmx")
        assert ei.value.status is kvc.Status.EUNKNOWN
    finally:
        kvc.set_isa(None)
    assert kvc.active_isa() == before


def _probe(env):
    code = "import kvc; print(kvc.library_source); print(kvc.library_path)"
    full = dict(os.environ, PYTHONPATH=PKG_ROOT, **env)
    for k, v in env.items():
        if v is None:
            del full[k]
    return subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True)


def test_discovery_order(tmp_path):
    lib = os.path.join(REPO, "lib", "libkvc.so")
    # explicit path, and a directory
    r = _probe({"KVC_LIBRARY": lib})
    assert r.returncode == 0 and r.stdout.splitlines() == ["KVC_LIBRARY", lib], r.stderr
    r = _probe({"KVC_LIBRARY": os.path.dirname(lib)})
    assert r.returncode == 0 and r.stdout.splitlines()[0] == "KVC_LIBRARY", r.stderr
    # an explicit choice that does not load is an error, never a silent fallback
    r = _probe({"KVC_LIBRARY": str(tmp_path / "missing.so")})
    assert r.returncode != 0 and "KVC_LIBRARY" in r.stderr and "missing.so" in r.stderr
    # pkg-config (lib/kvc-uninstalled.pc points at the tree)
    if shutil.which("pkg-config"):
        r = _probe({"KVC_LIBRARY": None, "PKG_CONFIG_PATH": os.path.join(REPO, "lib")})
        assert r.returncode == 0 and r.stdout.splitlines()[0] == "pkg-config", r.stderr
    # nothing configured: the build tree
    r = _probe({"KVC_LIBRARY": None, "PKG_CONFIG_PATH": str(tmp_path),
                "PKG_CONFIG_LIBDIR": str(tmp_path)})
    assert r.returncode == 0 and r.stdout.splitlines() == ["build tree", lib], (r.stdout, r.stderr)


def test_every_public_member_is_documented_and_typed():
    import inspect
    import typing
    missing, untyped = [], []
    for name in kvc.__all__:
        obj = getattr(kvc, name)
        if isinstance(obj, (int, str)):
            continue
        if not (getattr(obj, "__doc__", None) or "").strip():
            missing.append(name)
        if inspect.isfunction(obj) and not typing.get_type_hints(obj):
            untyped.append(name)
        if inspect.isclass(obj):
            for m, member in vars(obj).items():
                if m.startswith("_") and m not in ("__init__", "__len__", "__enter__"):
                    continue
                fn = member.fget if isinstance(member, property) else member
                if not callable(fn) or isinstance(member, type):
                    continue
                if not (getattr(fn, "__doc__", None) or "").strip() and m != "__init__":
                    missing.append("%s.%s" % (name, m))
                if obj in (kvc.Cache, kvc.Policy, kvc.Rng) and inspect.isfunction(fn) and \
                        "return" not in typing.get_type_hints(fn):
                    untyped.append("%s.%s" % (name, m))
    assert not missing, "undocumented: %s" % ", ".join(missing)
    assert not untyped, "no type hints: %s" % ", ".join(untyped)
    import os
    assert os.path.exists(os.path.join(os.path.dirname(kvc.__file__), "py.typed"))
