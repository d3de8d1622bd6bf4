"""kvc.Cache and the free functions over the C API."""

from __future__ import annotations

import ctypes
import threading
import warnings
import weakref
from collections import namedtuple
from typing import Any, Dict, List, Optional, Tuple, Union
from ctypes import byref, c_double, c_int64, c_uint32, c_void_p

from . import _buffers, _capi
from ._errors import Error, PolicyError, Status, c_string, invalid, wrong_type
from ._policy import Policy

_lib = _capi.lib

DTYPES = {"f32": 0, "float32": 0, "f16": 1, "float16": 1, "bf16": 2, "bfloat16": 2}
_DTYPE_NAMES = ("f32", "f16", "bf16")
MODES = {"store": 0, "index": 1}
SCOPES = {"head": 0, "shared": 1}
_SCOPE_NAMES = ("head", "shared")

Stats = namedtuple("Stats", "appends evictions attends")
Stats.__doc__ = ("Cumulative counters of a cache (reset by Cache.reset): tokens appended or "
                 "reserved, tokens evicted summed over groups, attention steps.")
Reservation = namedtuple("Reservation", "slots evicted")
Reservation.__doc__ = ("Result of Cache.reserve: `slots[g]` is where group g stores the token, "
                       "`evicted[g]` the positions group g dropped to make room.")


def _u32(name, x, lo=0):
    if isinstance(x, bool) or not isinstance(x, int):
        raise wrong_type("%s must be an int, got %s" % (name, type(x).__name__))
    if not lo <= x < 2 ** 32:
        raise invalid("%s=%d is outside [%d, 2**32)" % (name, x, lo))
    return x


def _i64(name, x):
    if isinstance(x, bool) or not isinstance(x, int):
        raise wrong_type("%s must be an int, got %s" % (name, type(x).__name__))
    if not -2 ** 63 <= x < 2 ** 63:
        raise invalid("%s=%d does not fit in int64" % (name, x))
    return x


def _enum(name, value, table):
    if isinstance(value, str):
        if value not in table:
            raise invalid("%s=%r: expected one of %s" % (name, value, ", ".join(sorted(table))))
        return table[value]
    if isinstance(value, int) and value in table.values():
        return int(value)
    raise invalid("%s=%r: expected one of %s" % (name, value, ", ".join(sorted(table))))


def version() -> str:
    """Version string of the loaded libkvc, e.g. "0.1.0"."""
    return _lib.kvc_version_string().decode()


def active_isa() -> str:
    """Instruction set the attention kernel runs on ("scalar", "avx2", "avx512", "avx512_vnni",
    "avx512_bf16", "neon")."""
    return _lib.kvc_active_isa().decode()


def set_isa(isa: Optional[str] = None) -> None:
    """Force the kernel ISA for this process (None or "auto": the CPU's best)."""
    rc = _lib.kvc_set_isa(None if isa is None else c_string(isa, "ISA name"))
    if rc:
        raise Error(rc, "ISA %r" % (isa,))


def policies() -> List[str]:
    """Names of the built-in policies, in the library's order."""
    out, i = [], 0
    while True:
        p = _lib.kvc_policy_at(i)
        if not p:
            return out
        out.append(p.contents.name.decode())
        i += 1


PolicyInfo = namedtuple("PolicyInfo", "name needs default_sink default_recent default_chunk "
                                      "default_scope params")
PolicyInfo.__doc__ = ("What the C library says about a built-in policy: name, NEED_* flags, default "
                      "sink/recent/chunk/scope, and its parameters (kvc.Param).")


def policy_info(name: str) -> "PolicyInfo":
    """What the C library says about a built-in policy: needs, defaults, parameters."""
    p = _lib.kvc_policy_by_name(c_string(name, "policy name"))
    if not p:
        raise Error(Status.EUNKNOWN, "unknown policy %r; built-in policies: %s"
                    % (name, ", ".join(policies())))
    c = p.contents
    params = []
    for i in range(c.n_params):
        q = c.params[i]
        choices = None
        if q.choices:
            choices, j = [], 0
            while q.choices[j]:
                choices.append(q.choices[j].decode())
                j += 1
        from ._policy import Param
        params.append(Param(q.name.decode(), q.def_, q.min, q.max, choices,
                            (q.help or b"").decode()))
    return PolicyInfo(c.name.decode(), c.needs, c.default_sink, c.default_recent,
                      c.default_chunk, ("head", "shared")[c.default_scope], params)


def _destroy(handle, policy, explicit):
    """Free a cache (also run by the garbage collector); returns the policy's pending error."""
    _lib.kvc_cache_destroy(handle[0])
    handle[0] = None
    if policy is None:
        return None
    pending = policy._take_error()
    policy._detach()
    if pending is not None and not explicit:
        warnings.warn("kvc: policy %s raised %r while its cache was freed by the garbage "
                      "collector" % (pending[0], pending[1]), RuntimeWarning)
    return pending


def _finalize(handle, policy, lock):
    """The finalizer of a Cache nobody closed. It runs when the garbage
    collector frees the object (no call can be in flight: a call holds a
    reference), or at interpreter exit, when a daemon thread may still be
    inside a C call on the cache with the GIL released: freeing the cache under
    it would crash. Such a busy cache is left to the operating system."""
    if not lock.acquire(blocking=False):
        return
    try:
        _destroy(handle, policy, False)
    finally:
        lock.release()


class Cache:
    """A libkvc cache: one sequence x one attention layer (or any unit you choose).

    >>> with kvc.Cache(n_kv_heads=2, n_q_heads=4, head_dim=8, capacity=16,
    ...                policy="h2o recent=4") as c:
    ...     c.append(k, v)          # pos defaults to the previous one + 1
    ...     out = c.attend(q)

    ``policy`` is a spec string (a built-in name then ``key=value`` options),
    a :class:`kvc.Policy` subclass or instance, or None (``full``). Extra
    keyword arguments are options (scope, sink, recent, chunk, block, seed,
    query_window, scale) or policy parameters, set before the first append.
    Inputs (k, v, q, mass) are any array-like convertible to float32: used
    in place, with no copy, when already a C-contiguous aligned float32
    buffer, else copied to float32 for the call. Outputs (``out=``) must be
    writable C-contiguous float32 buffers, written in place. Calls on one
    cache are serialised by a lock.
    """

    def __init__(self, n_kv_heads: int, n_q_heads: int, head_dim: int, capacity: int, dtype: str = "f32",
                 mode: str = "store", policy: Union[str, Policy, type, None] = "full", **options: Any) -> None:
        self._h = [None]  # shared with the finalizer
        self._lock = threading.Lock()
        self._owner = None
        self._pypol = None
        self._last_pos = None
        self.n_kv_heads = _u32("n_kv_heads", n_kv_heads, 1)
        self.n_q_heads = _u32("n_q_heads", n_q_heads, 1)
        self.head_dim = _u32("head_dim", head_dim, 1)
        cap = _u32("capacity", capacity, 1)
        if n_q_heads % n_kv_heads:
            raise invalid("n_q_heads=%d is not a multiple of n_kv_heads=%d (GQA)"
                          % (n_q_heads, n_kv_heads))
        self._dtype = _enum("dtype", dtype, DTYPES)
        self._mode = _enum("mode", mode, MODES)
        if policy is None:
            policy = "full"
        if isinstance(policy, type) and issubclass(policy, Policy):
            policy = policy()
        h = c_void_p()
        if isinstance(policy, str):
            # the library parses the spec and says exactly what is wrong with it
            spec = c_string(policy, "policy spec", Status.ESYNTAX)
            err = ctypes.create_string_buffer(256)
            rc = _lib.kvc_cache_create_spec_err(byref(h), self.n_kv_heads, self.n_q_heads,
                                                self.head_dim, cap, self._dtype, self._mode, spec,
                                                None, err, len(err))
            if rc:
                raise Error(rc, "Cache(policy=%r): %s" % (policy, err.value.decode(errors="replace")))
        elif isinstance(policy, Policy):
            cstruct, _refs = policy._attach()
            cpol = ctypes.pointer(cstruct)
            self._pypol = policy
        else:
            raise wrong_type("policy must be a spec string, a kvc.Policy subclass or instance, "
                            "or None; got %s" % type(policy).__name__)
        if self._pypol is not None:
            rc = _lib.kvc_cache_create(byref(h), self.n_kv_heads, self.n_q_heads, self.head_dim,
                                       cap, self._dtype, self._mode, cpol, None)
            if rc:
                self._pypol._detach()
                raise Error(rc, "kvc_cache_create(n_kv_heads=%d, n_q_heads=%d, head_dim=%d, "
                                "capacity=%d)" % (n_kv_heads, n_q_heads, head_dim, capacity))
        self._h[0] = h.value
        # The finalizer holds the policy (and so its C trampolines) until the
        # C cache, which copied pointers to them, is gone.
        self._fin = weakref.finalize(self, _finalize, self._h, self._pypol, self._lock)
        try:
            for key, value in options.items():
                self._set_named(key, value)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------ plumbing
    def _call(self, what, fn, *args):
        """Run fn(handle, *args) under the cache's lock; raise on failure.

        Also raises the error a Python policy recorded during the call."""
        me = threading.get_ident()
        if self._owner == me:
            raise Error(Status.EINVAL, "%s called from inside a policy callback of the same "
                                       "cache: a policy must not call back into its cache" % what)
        with self._lock:
            h = self._h[0]
            if h is None:
                raise Error(Status.ESTATE, "cache is closed: %s after close()" % what)
            self._owner = me
            try:
                rc = fn(h, *args)
            finally:
                self._owner = None
            pending = self._pypol._take_error() if self._pypol is not None else None
            detail = _lib.kvc_cache_last_error(h).decode(errors="replace") if rc else ""
        if pending is not None:
            self._raise_policy(what, rc, detail, pending)
        if rc:
            raise Error(rc, "%s: %s" % (what, detail) if detail else what)
        return rc

    def _raise_policy(self, what, rc, detail, pending):
        where, exc = pending
        if not isinstance(exc, Exception):
            raise exc  # KeyboardInterrupt, SystemExit: not ours to wrap
        pname = self._pypol._policy_name()
        if rc:
            msg = "%s failed: policy '%s' %s raised %s: %s" % (what, pname, where,
                                                              type(exc).__name__, exc)
            if detail:
                msg += " [%s]" % detail
        else:
            msg = "policy '%s' %s raised %s: %s; %s completed%s" % (
                pname, where, type(exc).__name__, exc, what,
                " (score fell back to 0 for every slot: the oldest candidate was evicted)"
                if where == "score" else "")
        raise PolicyError(rc or Status.EPOLICY, msg, where, not rc) from exc

    def _query(self, what, fn, *args):
        """fn(handle, *args) under the lock, result returned as is (no status check)."""
        if self._owner == threading.get_ident():
            raise Error(Status.EINVAL, "%s called from inside a policy callback of the same "
                                       "cache: a policy must not call back into its cache" % what)
        with self._lock:
            h = self._h[0]
            if h is None:
                raise Error(Status.ESTATE, "cache is closed: %s after close()" % what)
            return fn(h, *args)

    # ------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Free the C cache (idempotent). A Python policy's fini runs here."""
        if self._owner == threading.get_ident():
            raise Error(Status.EINVAL, "close called from inside a policy callback of the same "
                                       "cache: a policy must not call back into its cache")
        with self._lock:
            if self._h[0] is None:
                return
            self._fin.detach()
            pending = _destroy(self._h, self._pypol, True)
        if pending is not None:
            self._raise_policy("close", 0, "", pending)

    destroy = close

    @property
    def closed(self) -> bool:
        """True once close() ran (or the context manager exited)."""
        return self._h[0] is None

    def __enter__(self) -> "Cache":
        """``with Cache(...) as c:`` closes the cache when the block ends."""
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        if self.closed:
            return "<kvc.Cache closed>"
        return "<kvc.Cache %s %s kv=%d q=%d d=%d %d/%d>" % (
            self.policy_name, ("store", "index")[self._mode], self.n_kv_heads, self.n_q_heads,
            self.head_dim, len(self), self.capacity)

    def prepare(self) -> None:
        """Freeze the options and allocate everything now (the first append does it too)."""
        self._call("prepare", _lib.kvc_cache_prepare)

    def reset(self) -> None:
        """Forget all tokens and policy state; keep options and memory."""
        self._call("reset", _lib.kvc_cache_reset)
        self._last_pos = None

    # ------------------------------------------------------------ options
    def set(self, option: Union[str, int], value: Union[int, str]) -> None:
        """Set an option (name or kvc_option number) before the first append."""
        key = self._option_key(option)
        if key == 0 and isinstance(value, str):
            value = _enum("scope", value, SCOPES)
        self._call("set %s" % _capi.OPTIONS[key], _lib.kvc_cache_set, key, _i64(option, value))

    def get(self, option: Union[str, int]) -> Union[int, str]:
        """Read an option's value as it is set: an int, or for ``scope`` its
        name (``"head"`` or ``"shared"``), the form ``set`` accepts."""
        key = self._option_key(option)
        v = c_int64()
        rc = self._query("get", _lib.kvc_cache_get, key, byref(v))
        if rc:
            raise Error(rc, "get %s" % _capi.OPTIONS[key])
        if key == 0:
            return _SCOPE_NAMES[v.value]
        return v.value

    @property
    def options(self) -> Dict[str, Union[int, str]]:
        """All options as a dict."""
        return {name: self.get(name) for name in _capi.OPTIONS}

    def set_scale(self, scale: float) -> None:
        """Set the attention scale (default 1/sqrt(head_dim))."""
        self._call("set scale", _lib.kvc_cache_set_scale, float(scale))

    def set_param(self, name: str, value: Union[float, str]) -> None:
        """Set a policy parameter (a number, or one of its choices by name)."""
        if isinstance(value, str):
            self._check_word(name)
            self._check_word(value)
            self.apply_spec("%s=%s" % (name, value))
        else:
            self._call("set_param %s" % name, _lib.kvc_cache_set_param,
                       c_string(name, "parameter name"), float(value))

    def get_param(self, name: str) -> float:
        """Read a policy parameter (a choice reads back as its index)."""
        v = c_double()
        rc = self._query("get_param", _lib.kvc_cache_get_param, c_string(name, "parameter name"),
                         byref(v))
        if rc:
            raise Error(rc, "policy '%s' has no parameter %r" % (self.policy_name, name))
        return v.value

    def apply_spec(self, options: str) -> None:
        """Apply "key=value ..." options all-or-nothing."""
        self._call("apply_spec", _lib.kvc_cache_apply_spec,
                   c_string(options, "options", Status.ESYNTAX))

    def _option_key(self, option):
        if isinstance(option, str):
            if option not in _capi.OPTIONS:
                raise Error(Status.EUNKNOWN, "unknown option %r; options are %s"
                            % (option, ", ".join(_capi.OPTIONS)))
            return _capi.OPTIONS.index(option)
        return _u32("option", option)

    @staticmethod
    def _check_word(s):
        if not s or any(ch in s for ch in " \t,="):
            raise Error(Status.ESYNTAX, "%r is not a single word" % (s,))

    def _set_named(self, key, value):
        if key in _capi.OPTIONS:
            self.set(key, value)
        elif key == "scale":
            self.set_scale(value)
        else:
            self.set_param(key, value)

    # ------------------------------------------------------------ STORE mode
    def _next_pos(self, pos):
        if pos is None:
            return 0 if self._last_pos is None else self._last_pos + 1
        return _i64("pos", pos)

    def append(self, k: Any, v: Any, pos: Optional[int] = None) -> None:
        """Append one token (STORE mode): k and v hold n_kv_heads*head_dim
        values each, any shape (an array-like; float32 C-contiguous input is
        read in place, anything else copied). pos defaults to the previous
        position + 1 (0 first)."""
        n = self.n_kv_heads * self.head_dim
        mk, ka, _ = _buffers.f32(k, "k", n)
        mv, va, _ = _buffers.f32(v, "v", n)
        pos = self._next_pos(pos)
        try:
            self._call("append(pos=%d)" % pos, _lib.kvc_cache_append, pos, ka, va)
        except PolicyError as e:
            if e.completed:
                self._last_pos = pos
            raise
        self._last_pos = pos
        del mk, mv

    def attend(self, q: Any, out: Any = None) -> Any:
        """Decode attention of q (n_q_heads*head_dim values, an array-like) over
        the resident tokens; returns `out`, a writable float32 buffer written in
        place (allocated when not given: a numpy array shaped like q if q is one,
        else array('f'))."""
        n = self.n_q_heads * self.head_dim
        mq, qa, _ = _buffers.f32(q, "q", n)
        if out is None:
            out = _buffers.new_f32(n, q)
        mo, oa, _ = _buffers.f32(out, "out", n, writable=True)
        if _buffers.overlap(qa, 4 * n, oa, 4 * n):
            raise invalid("out must not overlap q")
        try:
            self._call("attend", _lib.kvc_cache_attend, qa, oa)
        except PolicyError as e:
            e.result = out if e.completed else None
            raise
        del mq, mo
        return out

    def _prompt_kv(self, what, k, v, need):
        """(memoryviews, addresses, n tokens) of a prompt's token-major K and V, or Nones."""
        if k is None and v is None and not need:
            return (None, None), (None, None), None
        if k is None or v is None:
            raise invalid("%s: pass both k and v" % what)
        row = self.n_kv_heads * self.head_dim
        mk, ka, nk = _buffers.f32(k, "k")
        mv, va, nv = _buffers.f32(v, "v")
        if nk != nv or nk == 0 or nk % row:
            raise invalid("%s: k and v must hold the same whole number of tokens of n_kv_heads*"
                          "head_dim = %d floats (got %d and %d)" % (what, row, nk, nv))
        return (mk, mv), (ka, va), nk // row

    def prefill(self, k: Any, v: Any, q: Any = None, pos: int = 0) -> int:
        """Take a whole prompt in one call into the empty cache (kvc_cache_prefill).

        k and v: the prompt's K and V, token after token (n x n_kv_heads x
        head_dim float32, any shape). q: the queries of its last n_window
        tokens (n_window x n_q_heads x head_dim), or None. When the prompt
        is longer than the capacity each group keeps what the policy chooses
        from the window's attention; needs the prefill_max option >= n.
        Positions are pos .. pos + n - 1; the next append defaults to pos + n."""
        _, (ka, va), n = self._prompt_kv("prefill", k, v, True)
        qa, w, mq = None, 0, None
        if q is not None:
            mq, qa, nq = _buffers.f32(q, "q")
            per = self.n_q_heads * self.head_dim
            if nq % per:
                raise invalid("prefill: q holds %d floats, not a whole number of tokens of "
                              "n_q_heads*head_dim = %d" % (nq, per))
            w = nq // per
        pos = _i64("pos", pos)
        self._call("prefill(n=%d, n_window=%d)" % (n, w), _lib.kvc_cache_prefill, pos, n, ka, va,
                   qa if w else None, w)
        self._last_pos = pos + n - 1
        del mq
        return len(self)

    def prefill_index(self, n: int, scores: Any = None, n_window: int = 0, pos: int = 0, k: Any = None,
                      v: Any = None) -> Tuple[Tuple[int, ...], ...]:
        """INDEX-mode prefill (kvc_cache_prefill_index): n prompt tokens, the
        engine's scores (groups x n float32, or None), the last n_window kept.
        Returns, per group, the prompt indices now in slots 0, 1, ...: copy
        prompt row keep[g][s] into slot s. k and v (token-major, as for
        prefill) are needed when the policy uses key or value statistics."""
        n = _u32("n", n)
        mkv, (ka, va), nkv = self._prompt_kv("prefill_index", k, v, False)
        if nkv is not None and nkv != n:
            raise invalid("prefill_index: k and v hold %d tokens, n is %d" % (nkv, n))
        groups, cap = self.groups, self.capacity
        sa, ms = None, None
        if scores is not None:
            ms, sa, ns = _buffers.f32(scores, "scores", groups * n)
        keep = (c_uint32 * (groups * cap))()
        pos = _i64("pos", pos)
        self._call("prefill_index(n=%d, n_window=%d)" % (n, n_window), _lib.kvc_cache_prefill_index,
                   pos, n, ka, va, sa, _u32("n_window", n_window), keep)
        self._last_pos = pos + n - 1
        del ms, mkv
        kept = len(self)
        return tuple(tuple(keep[g * cap:g * cap + kept]) for g in range(groups))

    def compact(self, group: int = 0, page: int = 1) -> Tuple[Tuple[Tuple[int, int], ...], int]:
        """Compaction plan (kvc_cache_compact, INDEX mode): returns (moves,
        freed_pages), moves a tuple of (from_slot, to_slot) the engine copies;
        the cache has already applied them to its slot map."""
        _u32("group", group)
        cap = self.capacity
        moves = (_capi.kvc_move * cap)()
        n, freed = c_uint32(), c_uint32()
        self._call("compact(group=%d, page=%d)" % (group, page), _lib.kvc_cache_compact, group,
                   _u32("page", page), moves, byref(n), byref(freed))
        return tuple((moves[i].from_, moves[i].to) for i in range(n.value)), freed.value

    def read(self, kv_head: int, slot: int) -> Tuple[Any, Any]:
        """Copy the stored K and V rows of a resident token as float32: (k, v)."""
        _u32("kv_head", kv_head)
        _u32("slot", slot)
        k, v = _buffers.new_f32(self.head_dim), _buffers.new_f32(self.head_dim)
        rc = self._query("read", _lib.kvc_cache_read, kv_head, slot, k.buffer_info()[0],
                         v.buffer_info()[0])
        if rc:
            raise Error(rc, "read(kv_head=%d, slot=%d): %d kv heads, %d resident"
                        % (kv_head, slot, self.n_kv_heads, len(self)))
        return k, v

    # ------------------------------------------------------------ INDEX mode
    def reserve(self, pos: Optional[int] = None, k: Any = None, v: Any = None) -> "Reservation":
        """Make room for a token and say where to write it: returns
        Reservation(slots, evicted) with one entry per group. k and v are
        needed when the policy uses key or value statistics."""
        if (k is None) != (v is None):
            raise invalid("reserve: pass both k and v, or neither")
        ka = va = None
        if k is not None:
            n = self.n_kv_heads * self.head_dim
            mk, ka, _ = _buffers.f32(k, "k", n)
            mv, va, _ = _buffers.f32(v, "v", n)
        pos = self._next_pos(pos)
        groups = self._query("reserve", _lib.kvc_cache_groups)
        maxev = self._query("reserve", _lib.kvc_cache_max_evictions)
        slots = (c_uint32 * groups)()
        ev = (c_int64 * (groups * maxev))()
        try:
            self._call("reserve(pos=%d)" % pos, _lib.kvc_cache_reserve, pos, ka, va, slots, ev)
        except PolicyError as e:
            if e.completed:  # the slots are taken: the engine must still learn them
                self._last_pos = pos
                e.result = self._reservation(slots, ev, groups, maxev)
            raise
        self._last_pos = pos
        return self._reservation(slots, ev, groups, maxev)

    @staticmethod
    def _reservation(slots, ev, groups, maxev):
        evicted = tuple(tuple(p for p in ev[g * maxev:(g + 1) * maxev] if p >= 0)
                        for g in range(groups))
        return Reservation(tuple(slots), evicted)

    def observe(self, group: int, mass: Any) -> None:
        """Report attention mass per slot (float32, at most capacity values) for a group."""
        _u32("group", group)
        mm, ma, n = _buffers.f32(mass, "mass")
        if n > self.capacity:
            raise invalid("mass: %d values for capacity %d" % (n, self.capacity))
        self._call("observe(group=%d)" % group, _lib.kvc_cache_observe, group, ma, n)
        del mm

    # ------------------------------------------------------------ introspection
    def __len__(self) -> int:
        """Resident tokens per group."""
        return self._query("len", _lib.kvc_cache_len)

    @property
    def capacity(self) -> int:
        """Slots per eviction group."""
        return self._query("capacity", _lib.kvc_cache_capacity)

    @property
    def groups(self) -> int:
        """Eviction groups: n_kv_heads in head scope, 1 in shared scope."""
        return self._query("groups", _lib.kvc_cache_groups)

    @property
    def max_evictions(self) -> int:
        """Positions one append or reserve may evict per group (chunk * block)."""
        return self._query("max_evictions", _lib.kvc_cache_max_evictions)

    @property
    def dtype(self) -> str:
        """K/V storage type: "f32", "f16" or "bf16"."""
        return _DTYPE_NAMES[self._dtype]

    @property
    def mode(self) -> str:
        """ "store" (the cache holds K/V) or "index" (the engine does)."""
        return ("store", "index")[self._mode]

    @property
    def policy_name(self) -> str:
        """Name of the cache's policy."""
        return self._query("policy_name", _lib.kvc_cache_policy_name).decode()

    @property
    def policy(self) -> Optional[Policy]:
        """The Python policy instance, or None for a built-in policy."""
        return self._pypol

    def positions(self, group: int = 0) -> List[int]:
        """Slot -> position map of a group (-1 for empty slots), as a list."""
        _u32("group", group)
        buf = (c_int64 * self.capacity)()
        rc = self._query("positions", _lib.kvc_cache_positions, group, buf)
        if rc:
            raise Error(rc, "positions(group=%d): the cache has %d groups" % (group, self.groups))
        return list(buf)

    @property
    def stats(self) -> "Stats":
        """Cumulative Stats(appends, evictions, attends)."""
        s = _capi.kvc_stats()
        rc = self._query("stats", _lib.kvc_cache_stats, byref(s))
        if rc:
            raise Error(rc, "stats")
        return Stats(s.appends, s.evictions, s.attends)

    @property
    def last_error(self) -> str:
        """kvc_cache_last_error: detail of the last failure on this cache."""
        return self._query("last_error", _lib.kvc_cache_last_error).decode(errors="replace")


def attention(q: Any, k: Any, v: Any, *, n_q_heads: int, n_kv_heads: int, head_dim: int,
              n_keys: Optional[int] = None, dtype: str = "f32", row_stride: Optional[int] = None,
              head_stride: Optional[int] = None, scale: float = 0.0, out: Any = None, weights: Any = None,
              kv_range: Optional[Tuple[int, int]] = None) -> Any:
    """The standalone decode-attention kernel over your own K/V.

    q and out: n_q_heads*head_dim float32. k and v: float32 for dtype "f32";
    16-bit elements (numpy float16/uint16, array('H') or raw bytes) for "f16"
    and "bf16". The layout is [kv head][key][row_stride] with strides in
    elements (defaults: contiguous rows and heads; n_keys then defaults to
    what k holds). weights=True returns (out, weights) with n_q_heads rows of
    n_keys softmax weights; a float32 buffer is filled instead. kv_range=(b, e)
    computes kv heads [b, e) only (kvc_attention_heads).
    """
    dt = _enum("dtype", dtype, DTYPES)
    nq, nkv, d = (_u32("n_q_heads", n_q_heads, 1), _u32("n_kv_heads", n_kv_heads, 1),
                  _u32("head_dim", head_dim, 1))
    if nq % nkv:
        raise invalid("n_q_heads=%d is not a multiple of n_kv_heads=%d" % (nq, nkv))
    esz = 4 if dt == 0 else 2
    fmts = _buffers.F32 if dt == 0 else (_buffers.F16 | _buffers.U16 if dt == 1 else _buffers.U16)
    if dt == 0:  # float32 K/V: any array-like, copied only when it must be
        k, v = _buffers.as_f32(k, "k"), _buffers.as_f32(v, "v")
    mk, nk_elems = _buffers.view(k, "k", fmts, esz)
    mv, nv_elems = _buffers.view(v, "v", fmts, esz)
    rs = d if row_stride is None else _u32("row_stride", row_stride)
    if n_keys is None:
        if head_stride is not None:
            raise invalid("n_keys is required with an explicit head_stride")
        if nk_elems % (nkv * rs):
            raise invalid("k holds %d elements, not a whole number of %d heads x row_stride %d: "
                          "pass n_keys" % (nk_elems, nkv, rs))
        n_keys = nk_elems // (nkv * rs)
    nkeys = _u32("n_keys", n_keys, 1)
    hs = nkeys * rs if head_stride is None else _i64("head_stride", head_stride)
    if rs < d or hs < 0:
        raise invalid("row_stride must be >= head_dim and head_stride >= 0")
    extent = (nkv - 1) * hs + (nkeys - 1) * rs + d
    for name, count in (("k", nk_elems), ("v", nv_elems)):
        if count < extent:
            raise invalid("%s: the layout reaches element %d, the buffer has %d"
                          % (name, extent, count))
    ka, va = _buffers.addr(mk, "k", esz), _buffers.addr(mv, "v", esz)
    n = nq * d
    mq, qa, _ = _buffers.f32(q, "q", n)
    if out is None:
        out = _buffers.new_f32(n, q)
    mo, oa, _ = _buffers.f32(out, "out", n, writable=True)
    want_w = weights is True
    wa, mw = None, None
    if want_w:
        weights = _buffers.new_f32(nq * nkeys, q, (nq, nkeys))
    if weights is not None and weights is not False:
        mw, wa, _ = _buffers.f32(weights, "weights", nq * nkeys, writable=True)
    layout = _capi.kvc_attn_layout(nq, nkv, d, nkeys, dt, rs, hs, float(scale))
    if kv_range is None:
        rc = _lib.kvc_attention(byref(layout), qa, ka, va, oa, wa, nkeys)
    else:
        b, e = kv_range
        rc = _lib.kvc_attention_heads(byref(layout), _u32("kv_begin", b), _u32("kv_end", e), qa,
                                      ka, va, oa, wa, nkeys)
    del mk, mv, mq, mo, mw
    if rc:
        raise Error(rc, "attention(n_q_heads=%d, n_kv_heads=%d, head_dim=%d, n_keys=%d%s)"
                    % (nq, nkv, d, nkeys, ", kv_range=%r" % (kv_range,) if kv_range else ""))
    return (out, weights) if want_w else out
