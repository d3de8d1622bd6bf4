"""The C ABI of libkvc, declared for ctypes: library discovery, structs and
one prototype (argtypes + restype) per exported function.

Nothing here is public; ``kvc`` wraps it. Every declaration mirrors
include/kvc.h, and the tests compare struct layouts with the C compiler's.
"""

import ctypes
import os
import subprocess
import sys
from ctypes import (CFUNCTYPE, POINTER, Structure, c_char_p, c_double, c_float,
                    c_int, c_int64, c_size_t, c_uint, c_uint32, c_uint64,
                    c_void_p)

# Version of the C API this binding was written against: a library with the
# same major version and at least this minor version is accepted.
ABI_MAJOR = 0
ABI_MINOR = 1

_HERE = os.path.dirname(os.path.abspath(__file__))
# The copy `pip install` built into the package (setup.py), if any.
_BUNDLED = os.path.join(_HERE, "libkvc.so")
# A source checkout used in place (PYTHONPATH=examples/python), after `make`.
_REPO_LIB = os.path.normpath(os.path.join(_HERE, os.pardir, os.pardir, os.pardir, "lib"))


def _pkg_config_libdir():
    try:
        res = subprocess.run(["pkg-config", "--variable=libdir", "kvc"], capture_output=True,
                             text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    return res.stdout.strip() if res.returncode == 0 else ""


def _candidates():
    """Yield (how, path) in the documented search order."""
    env = os.environ.get("KVC_LIBRARY")
    if env:
        # An explicit choice is never silently replaced by another copy.
        path = os.path.join(env, "libkvc.so") if os.path.isdir(env) else env
        yield "KVC_LIBRARY", path
        return
    if os.path.exists(_BUNDLED):
        yield "bundled", _BUNDLED
    libdir = _pkg_config_libdir()
    if libdir:
        for name in ("libkvc.so.%d" % ABI_MAJOR, "libkvc.so"):
            path = os.path.join(libdir, name)
            if os.path.exists(path):
                yield "pkg-config", path
                break
    path = os.path.join(_REPO_LIB, "libkvc.so")
    if os.path.exists(path):
        yield "build tree", path
    # Last resort: the dynamic loader's own search (ld.so.cache, LD_LIBRARY_PATH).
    yield "loader", "libkvc.so.%d" % ABI_MAJOR


def _load():
    tried = []
    for how, path in _candidates():
        try:
            return ctypes.CDLL(path), how, path
        except OSError as e:
            tried.append("%s: %s (%s)" % (how, path, e))
    raise ImportError(
        "kvc: cannot load the libkvc shared library. Tried, in order:\n  " + "\n  ".join(tried) +
        "\nThis package has no copy of its own (it was installed without libkvc's sources). "
        "Either:\n"
        "  - install libkvc (make install PREFIX=...) and make `pkg-config --variable=libdir kvc` "
        "find it (PKG_CONFIG_PATH=<prefix>/lib/pkgconfig), or\n"
        "  - set KVC_LIBRARY to the path of libkvc.so (or of the directory holding it), or\n"
        "  - reinstall from a libkvc source tree, which builds a copy into the package: "
        "pip install <libkvc>/examples/python")


lib, how_found, library_path = _load()

# ------------------------------------------------------------------ constants
STATUS = (
    ("KVC_OK", 0), ("KVC_EINVAL", -1), ("KVC_ENOMEM", -2), ("KVC_EOVERFLOW", -3),
    ("KVC_EFULL", -4), ("KVC_ESTATE", -5), ("KVC_ERANGE", -6), ("KVC_EUNKNOWN", -7),
    ("KVC_EORDER", -8), ("KVC_ENONFINITE", -9), ("KVC_EMODE", -10), ("KVC_EPOLICY", -11),
    ("KVC_EABI", -12), ("KVC_EEMPTY", -13), ("KVC_ENOTSUP", -14), ("KVC_ESYNTAX", -15),
)
POLICY_ABI = 1
RECENT_HALF = 0xFFFFFFFF
OPTIONS = ("scope", "sink", "recent", "chunk", "block", "seed", "query_window", "protect",
           "prefill_max")


# -------------------------------------------------------------------- structs
class kvc_allocator(Structure):
    _fields_ = [("alloc", CFUNCTYPE(c_void_p, c_void_p, c_size_t, c_size_t)),
                ("free", CFUNCTYPE(None, c_void_p, c_void_p)),
                ("opaque", c_void_p)]


class kvc_token(Structure):
    _fields_ = [("pos", c_int64), ("seq", c_uint64), ("key_norm", c_float),
                ("value_range", c_float), ("value_l1", c_float),
                ("key", POINTER(c_float)), ("value", POINTER(c_float))]


class kvc_param(Structure):
    _fields_ = [("name", c_char_p), ("def_", c_double), ("min", c_double), ("max", c_double),
                ("choices", POINTER(c_char_p)), ("help", c_char_p)]


class kvc_policy_ctx(Structure):
    _fields_ = [("n_groups", c_uint32), ("capacity", c_uint32), ("head_dim", c_uint32),
                ("q_per_group", c_uint32), ("block", c_uint32), ("chunk", c_uint32),
                ("sink", c_uint32), ("recent", c_uint32), ("mode", c_uint),
                ("rng", c_void_p), ("params", POINTER(c_double)), ("user", c_void_p),
                ("kv_heads", c_uint32), ("scale", c_float), ("prefill_max", c_uint32)]


class kvc_prefill(Structure):
    _fields_ = [("group", c_uint32), ("n_tokens", c_uint32), ("tokens", POINTER(kvc_token)),
                ("score", POINTER(c_float)), ("n_window", c_uint32), ("n_candidates", c_uint32),
                ("candidates", POINTER(c_uint32)), ("n_victims", c_uint32), ("rng", c_void_p)]


class kvc_move(Structure):
    _fields_ = [("from_", c_uint32), ("to", c_uint32)]


class kvc_select(Structure):
    _fields_ = [("group", c_uint32), ("n_candidates", c_uint32),
                ("candidates", POINTER(c_uint32)), ("n_victims", c_uint32), ("block", c_uint32),
                ("positions", POINTER(c_int64)), ("window_score", POINTER(c_float)),
                ("rng", c_void_p), ("queries", POINTER(c_float)), ("n_queries", c_uint32)]


# Callback types of the policy vtable, in declaration order.
STATE_SIZE_FN = CFUNCTYPE(c_size_t, POINTER(kvc_policy_ctx))
INIT_FN = CFUNCTYPE(c_int, c_void_p, POINTER(kvc_policy_ctx))
ON_INSERT_FN = CFUNCTYPE(None, c_void_p, c_uint32, c_uint32, POINTER(kvc_token))
ON_ATTEND_FN = CFUNCTYPE(None, c_void_p, c_uint32, POINTER(c_float), c_uint32)
SCORE_FN = CFUNCTYPE(None, c_void_p, c_uint32, POINTER(c_uint32), c_uint32, POINTER(c_float))
SELECT_FN = CFUNCTYPE(c_int, c_void_p, POINTER(kvc_select), POINTER(c_uint32))
ON_MOVE_FN = CFUNCTYPE(None, c_void_p, c_uint32, c_uint32, c_uint32)
FINI_FN = CFUNCTYPE(None, c_void_p)
CONTROL_FN = CFUNCTYPE(c_int, c_void_p, c_int, c_void_p)
PREFILL_FN = CFUNCTYPE(c_int, c_void_p, POINTER(kvc_prefill), POINTER(c_uint32))


class kvc_policy(Structure):
    _fields_ = [("abi_version", c_uint32), ("struct_size", c_uint32), ("name", c_char_p),
                ("needs", c_uint32), ("default_sink", c_uint32), ("default_recent", c_uint32),
                ("default_chunk", c_uint32), ("default_scope", c_uint32), ("n_params", c_uint32),
                ("params", POINTER(kvc_param)),
                ("state_size", STATE_SIZE_FN), ("init", INIT_FN), ("on_insert", ON_INSERT_FN),
                ("on_attend", ON_ATTEND_FN), ("score", SCORE_FN), ("select", SELECT_FN),
                ("on_move", ON_MOVE_FN), ("fini", FINI_FN), ("control", CONTROL_FN),
                ("user", c_void_p), ("default_query_window", c_uint32), ("prefill", PREFILL_FN)]


class kvc_stats(Structure):
    _fields_ = [("appends", c_uint64), ("evictions", c_uint64), ("attends", c_uint64)]


class kvc_attn_layout(Structure):
    _fields_ = [("n_q_heads", c_uint32), ("n_kv_heads", c_uint32), ("head_dim", c_uint32),
                ("n_keys", c_uint32), ("dtype", c_uint), ("row_stride", c_size_t),
                ("head_stride", c_size_t), ("scale", c_float)]


STRUCTS = (kvc_allocator, kvc_token, kvc_param, kvc_policy_ctx, kvc_prefill, kvc_select,
           kvc_policy, kvc_stats, kvc_attn_layout, kvc_move)

# ----------------------------------------------------------------- prototypes
_cache_p = c_void_p  # kvc_cache * (opaque)
_pol_p = POINTER(kvc_policy)
_f32_p = c_void_p    # float buffers are passed as raw addresses, checked beforehand
_u32 = c_uint32
_PROTOTYPES = {
    "kvc_version_number": (c_uint, []),
    "kvc_version_string": (c_char_p, []),
    "kvc_strerror": (c_char_p, [c_int]),
    "kvc_rng_next": (c_uint64, [c_void_p]),
    "kvc_rng_uniform": (c_double, [c_void_p]),
    "kvc_rng_below": (c_uint32, [c_void_p, c_uint32]),
    "kvc_policy_full": (_pol_p, []),
    "kvc_policy_window": (_pol_p, []),
    "kvc_policy_sink": (_pol_p, []),
    "kvc_policy_random": (_pol_p, []),
    "kvc_policy_h2o": (_pol_p, []),
    "kvc_policy_tova": (_pol_p, []),
    "kvc_policy_knorm": (_pol_p, []),
    "kvc_policy_vatp": (_pol_p, []),
    "kvc_policy_vase": (_pol_p, []),
    "kvc_policy_vase_dkv": (_pol_p, []),
    "kvc_policy_rkv": (_pol_p, []),
    "kvc_policy_keydiff": (_pol_p, []),
    "kvc_policy_scissorhands": (_pol_p, []),
    "kvc_policy_keyformer": (_pol_p, []),
    "kvc_policy_snapkv": (_pol_p, []),
    "kvc_policy_by_name": (_pol_p, [c_char_p]),
    "kvc_policy_at": (_pol_p, [c_size_t]),
    "kvc_cache_create": (c_int, [POINTER(_cache_p), _u32, _u32, _u32, _u32, c_uint, c_uint,
                                 _pol_p, POINTER(kvc_allocator)]),
    "kvc_cache_create_spec": (c_int, [POINTER(_cache_p), _u32, _u32, _u32, _u32, c_uint, c_uint,
                                      c_char_p, POINTER(kvc_allocator)]),
    "kvc_cache_create_spec_err": (c_int, [POINTER(_cache_p), _u32, _u32, _u32, _u32, c_uint,
                                          c_uint, c_char_p, POINTER(kvc_allocator), c_char_p,
                                          c_size_t]),
    "kvc_cache_destroy": (None, [_cache_p]),
    "kvc_cache_prepare": (c_int, [_cache_p]),
    "kvc_cache_control": (c_int, [_cache_p, c_int, c_void_p]),
    "kvc_cache_reset": (c_int, [_cache_p]),
    "kvc_cache_set": (c_int, [_cache_p, c_uint, c_int64]),
    "kvc_cache_get": (c_int, [_cache_p, c_uint, POINTER(c_int64)]),
    "kvc_cache_set_scale": (c_int, [_cache_p, c_float]),
    "kvc_cache_set_param": (c_int, [_cache_p, c_char_p, c_double]),
    "kvc_cache_get_param": (c_int, [_cache_p, c_char_p, POINTER(c_double)]),
    "kvc_cache_apply_spec": (c_int, [_cache_p, c_char_p]),
    "kvc_cache_last_error": (c_char_p, [_cache_p]),
    "kvc_cache_append": (c_int, [_cache_p, c_int64, _f32_p, _f32_p]),
    "kvc_cache_attend": (c_int, [_cache_p, _f32_p, _f32_p]),
    "kvc_cache_attend_heads": (c_int, [_cache_p, _f32_p, _f32_p, _u32, _u32]),
    "kvc_cache_attend_finish": (c_int, [_cache_p, _f32_p]),
    "kvc_cache_read": (c_int, [_cache_p, _u32, _u32, _f32_p, _f32_p]),
    "kvc_cache_reserve": (c_int, [_cache_p, c_int64, _f32_p, _f32_p, POINTER(c_uint32),
                                  POINTER(c_int64)]),
    "kvc_cache_observe": (c_int, [_cache_p, _u32, _f32_p, _u32]),
    "kvc_cache_max_evictions": (c_uint32, [_cache_p]),
    "kvc_cache_prefill": (c_int, [_cache_p, c_int64, _u32, _f32_p, _f32_p, _f32_p, _u32]),
    "kvc_cache_prefill_index": (c_int, [_cache_p, c_int64, _u32, _f32_p, _f32_p, _f32_p, _u32,
                                        POINTER(c_uint32)]),
    "kvc_cache_compact": (c_int, [_cache_p, _u32, _u32, POINTER(kvc_move), POINTER(c_uint32),
                                  POINTER(c_uint32)]),
    "kvc_cache_groups": (c_uint32, [_cache_p]),
    "kvc_cache_capacity": (c_uint32, [_cache_p]),
    "kvc_cache_len": (c_uint32, [_cache_p]),
    "kvc_cache_positions": (c_int, [_cache_p, _u32, POINTER(c_int64)]),
    "kvc_cache_stats": (c_int, [_cache_p, POINTER(kvc_stats)]),
    "kvc_cache_policy_name": (c_char_p, [_cache_p]),
    "kvc_attention": (c_int, [POINTER(kvc_attn_layout), _f32_p, c_void_p, c_void_p, _f32_p,
                              _f32_p, c_size_t]),
    "kvc_attention_heads": (c_int, [POINTER(kvc_attn_layout), _u32, _u32, _f32_p, c_void_p,
                                    c_void_p, _f32_p, _f32_p, c_size_t]),
    "kvc_row_bytes": (c_size_t, [c_uint, _u32]),
    "kvc_quantize_q8": (c_int, [_f32_p, _u32, c_void_p]),
    "kvc_active_isa": (c_char_p, []),
    "kvc_set_isa": (c_int, [c_char_p]),
}
FUNCTIONS = tuple(_PROTOTYPES)


def _declare():
    for name, (restype, argtypes) in _PROTOTYPES.items():
        try:
            fn = getattr(lib, name)
        except AttributeError:
            raise ImportError("kvc: %s (%s) has no symbol %s: it is older than this binding "
                              "(needs libkvc %d.%d or later)"
                              % (library_path, how_found, name, ABI_MAJOR, ABI_MINOR)) from None
        fn.restype = restype
        fn.argtypes = argtypes


_declare()
_ver = lib.kvc_version_number()
if _ver // 10000 != ABI_MAJOR or (_ver // 100) % 100 < ABI_MINOR:
    raise ImportError("kvc: %s is libkvc %s; this binding needs %d.%d or a later %d.x"
                      % (library_path, lib.kvc_version_string().decode(), ABI_MAJOR, ABI_MINOR,
                         ABI_MAJOR))
del _ver

# PyObject_GetBuffer gives the address of any buffer, read-only ones included,
# without a copy; the caller's memoryview keeps the memory pinned.
class Py_buffer(Structure):
    _fields_ = [("buf", c_void_p), ("obj", c_void_p), ("len", ctypes.c_ssize_t),
                ("itemsize", ctypes.c_ssize_t), ("readonly", c_int), ("ndim", c_int),
                ("format", c_char_p), ("shape", c_void_p), ("strides", c_void_p),
                ("suboffsets", c_void_p), ("internal", c_void_p)]


_get_buffer = ctypes.pythonapi.PyObject_GetBuffer
_get_buffer.argtypes = [ctypes.py_object, POINTER(Py_buffer), c_int]
_get_buffer.restype = c_int
_release_buffer = ctypes.pythonapi.PyBuffer_Release
_release_buffer.argtypes = [POINTER(Py_buffer)]
_release_buffer.restype = None


_char_from_buffer = ctypes.c_char.from_buffer
_addressof = ctypes.addressof


def address(mv):
    """Address of the first byte of a non-empty C-contiguous memoryview (which
    stays the owner and keeps the memory pinned)."""
    if not mv.readonly:
        return _addressof(_char_from_buffer(mv))  # the fast path, writable buffers only
    view = Py_buffer()
    _get_buffer(mv, ctypes.byref(view), 0)  # PyBUF_SIMPLE: contiguity already checked
    try:
        return view.buf
    finally:
        _release_buffer(ctypes.byref(view))


LITTLE = sys.byteorder == "little"
