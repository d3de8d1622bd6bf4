"""Eviction policies written in Python, served to the C core through the
kvc_policy vtable.

How a Python exception is kept from unwinding into C
----------------------------------------------------
Every callback is a ctypes trampoline that catches *everything*
(BaseException included) and records the first exception of the C call it
runs in. What C sees depends on what the callback can say:

* ``init`` and ``select`` return a status: the exception becomes its code
  (a raised :class:`kvc.Error` gives its own code, MemoryError gives
  KVC_ENOMEM, anything else KVC_EPOLICY). The C call fails and, as every
  failed libkvc call, leaves the cache exactly as it was.
* ``score`` returns nothing: the keep-scores are filled with 0.0 for every
  slot, so the core's tie-break evicts the oldest candidate (what ``window``
  would do). Once ``score`` or ``select`` has failed, later ``score`` calls of
  the same C call get the same zeros without running Python again and later
  ``select`` calls fail at once, so one step is never decided half by the
  policy and half by the fallback.
* ``on_insert``, ``on_attend``, ``on_move`` and ``fini`` return nothing: the
  notification is lost, the C call goes on.

When the C call returns, the :class:`kvc.Cache` method that made it raises
:class:`kvc.PolicyError` from the recorded exception (KeyboardInterrupt and
other non-Exception errors are re-raised as they are). Its ``completed``
attribute says whether the call went through (score, on_*: the token was
appended or reserved) or was refused (init, select: nothing changed).

A policy never calls back into its cache (the C contract); the binding
enforces it by refusing such calls.
"""

from __future__ import annotations

import ctypes
import operator
import re
from array import array
from collections import namedtuple
from ctypes import c_char_p, c_float
from typing import Any, Optional, Sequence

from . import _capi
from ._errors import Error, Status, c_string, invalid, wrong_type

NEED_ATTN = 0x1
NEED_QUERY_WINDOW = 0x2
NEED_VALUE_STATS = 0x4
NEED_KEY_STATS = 0x8
NEED_RNG = 0x10
NEED_KEYS = 0x20
NEED_VALUES = 0x40
NEED_QUERIES = 0x80
RECENT_HALF = _capi.RECENT_HALF

Param = namedtuple("Param", "name default min max choices help")
Param.__new__.__defaults__ = (None, "")
Param.__doc__ = ("A numeric parameter of a Python policy: set through Cache(..., name=value), "
                 "set_param() or a spec; `choices` names the values 0, 1, 2, ...")
Token = namedtuple("Token", "pos seq key_norm value_range value_l1")
Token.__doc__ = ("Facts about a token, computed once when it is inserted: its position, insertion "
                 "index, and the key L2 norm / value range / value L1 norm its policy asked for "
                 "(NEED_KEY_STATS, NEED_VALUE_STATS; 0 otherwise), averaged over the group's kv heads.")
PolicyContext = namedtuple("PolicyContext", "n_groups capacity head_dim q_per_group block chunk "
                                            "sink recent mode params rng")
PolicyContext.__doc__ = ("What a policy's init learns about its cache: groups, capacity, head_dim, "
                         "query heads per group, block, chunk, sink, recent, mode ('store' or "
                         "'index'), its parameters by name, and the cache's Rng.")
SelectRequest = namedtuple("SelectRequest", "group candidates n_victims block positions "
                                            "window_score rng")
SelectRequest.__doc__ = ("One eviction: choose `n_victims` distinct entries of `candidates` (the "
                         "first slot of each unit, oldest first). `positions` maps every slot of "
                         "the group to its position (-1 empty); `window_score` is per candidate "
                         "or None.")

_NAME = re.compile(r"[a-z0-9_]+\Z")
_METHODS = ("init", "on_insert", "on_attend", "score", "select", "on_move", "fini")


class Rng:
    """The cache's seeded generator (xoshiro256**), for policies that need randomness.
    Valid while its cache is open; use it only inside the policy's methods."""

    __slots__ = ("_p",)

    def __init__(self, ptr: Any) -> None:
        self._p = ptr

    def _ptr(self):
        if not self._p:
            raise Error(Status.ESTATE, "cache is closed: its generator is gone")
        return self._p

    def next(self) -> int:
        """The next 64 random bits."""
        return _capi.lib.kvc_rng_next(self._ptr())

    def uniform(self) -> float:
        """A uniform float in [0, 1)."""
        return _capi.lib.kvc_rng_uniform(self._ptr())

    def below(self, bound: int) -> int:
        """A uniform integer in [0, bound), without modulo bias."""
        if not 0 <= bound < 2 ** 32:
            raise invalid("bound must be in [0, 2**32)")
        return _capi.lib.kvc_rng_below(self._ptr(), bound)


def _u32_attr(policy, attr, hi=2 ** 32 - 1, names=()):
    """A class attribute of a Policy that C stores in a uint32 field."""
    x = getattr(policy, attr)
    what = " or ".join(names + ("an int",))
    if isinstance(x, bool):
        raise wrong_type("%s.%s must be %s, got a bool" % (type(policy).__name__, attr, what))
    try:
        x = operator.index(x)
    except TypeError:
        raise wrong_type("%s.%s must be %s, got %r" % (type(policy).__name__, attr, what, x)) from None
    if not 0 <= x <= hi:
        raise invalid("%s.%s=%d is outside [0, %d]" % (type(policy).__name__, attr, x, hi))
    return x


def _slot(s):
    """One victim answered by select: an integer slot (int or numpy integer),
    never a float, bool or string that int() would quietly convert."""
    if isinstance(s, bool):
        raise Error(Status.EPOLICY, "select returned %r: slots are integers, not bools" % (s,))
    try:
        s = operator.index(s)
    except TypeError:
        raise Error(Status.EPOLICY, "select returned %r (%s): slots must be integers"
                    % (s, type(s).__name__)) from None
    if not 0 <= s < 2 ** 32:
        raise Error(Status.EPOLICY, "select returned slot %d" % s)
    return s


def _status_of(exc):
    if isinstance(exc, Error) and exc.code < 0:
        return exc.code
    if isinstance(exc, MemoryError):
        return int(Status.ENOMEM)
    return int(Status.EPOLICY)


class Policy:
    """Base class of an eviction policy written in Python.

    Override the methods you need; the ones you leave alone stay NULL in the
    C vtable (so a policy with neither ``score`` nor ``select`` never evicts).
    Class attributes describe the policy: ``name`` ([a-z0-9_]+), ``needs``
    (NEED_* flags), ``default_sink``, ``default_recent`` (or RECENT_HALF),
    ``default_chunk``, ``default_scope`` ("head" or "shared") and ``params``
    (a sequence of :class:`kvc.Param`).

    An instance keeps the state of one cache: pass the class (a fresh instance
    per cache) or an instance not in use by another open cache. Methods run
    inside the C call that needs them (append, attend, reserve, reset,
    close...), serialised per cache, and must not call that cache.
    """

    name: Optional[str] = None
    needs = 0
    default_sink = 0
    default_recent = 0
    default_chunk = 1
    default_scope = "head"
    params = ()

    # --- the methods a policy may define --------------------------------
    def init(self, ctx: PolicyContext) -> None:
        """(Re)initialise for a cache: ctx is a :class:`kvc.PolicyContext`."""

    def on_insert(self, group: int, slot: int, token: Token) -> None:
        """A token (:class:`kvc.Token`) entered `slot` of `group`."""

    def on_attend(self, group: int, mass: Any) -> None:
        """One step of attention mass for `group`, indexed by slot (array('f'))."""

    def score(self, group: int, slots: Sequence[int]) -> Sequence[float]:
        """Return one keep-score per slot (higher = keep); the lowest units go."""
        raise NotImplementedError

    def select(self, request: SelectRequest) -> Sequence[int]:
        """Return `request.n_victims` distinct candidates to evict."""
        raise NotImplementedError

    def on_move(self, group: int, src: int, dst: int) -> None:
        """STORE mode: the resident of slot `src` moved to slot `dst`."""

    def fini(self) -> None:
        """The cache is closed or reset."""

    # --- binding machinery ----------------------------------------------
    def _policy_name(self):
        n = self.name if self.name is not None else re.sub(r"[^a-z0-9_]", "",
                                                           type(self).__name__.lower())
        if not isinstance(n, str) or not _NAME.match(n):
            raise invalid("policy name %r must match [a-z0-9_]+" % (n,))
        return n

    def _vtable(self):
        """Build (once) the C struct and its trampolines; all are kept on self."""
        vt = self.__dict__.get("_kvc_vt")
        if vt is not None:
            return vt
        keep = []  # everything the struct points to
        p = _capi.kvc_policy()
        p.abi_version = _capi.POLICY_ABI
        p.struct_size = ctypes.sizeof(_capi.kvc_policy)
        name = self._policy_name().encode()
        keep.append(name)
        p.name = name
        # the struct's fields are uint32: check, never let ctypes wrap a value
        for attr in ("needs", "default_sink", "default_recent", "default_chunk"):
            setattr(p, attr, _u32_attr(self, attr))
        scope = self.default_scope
        if isinstance(scope, str) and scope in ("head", "shared"):
            p.default_scope = ("head", "shared").index(scope)
        else:
            p.default_scope = _u32_attr(self, "default_scope", 1, ('"head"', '"shared"'))
        params = [q if isinstance(q, Param) else Param(*q) for q in self.params]
        if params:
            arr = (_capi.kvc_param * len(params))()
            for i, q in enumerate(params):
                if not isinstance(q.name, str) or not _NAME.match(q.name):
                    raise invalid("parameter name %r must match [a-z0-9_]+" % (q.name,))
                for c in q.choices or ():
                    if not isinstance(c, str) or not _NAME.match(c):
                        raise invalid("choice %r of parameter %s must match [a-z0-9_]+"
                                         % (c, q.name))
                pn, ph = q.name.encode(), c_string(q.help or "", "help of parameter " + q.name)
                keep += [pn, ph]
                arr[i].name, arr[i].help = pn, ph
                arr[i].def_, arr[i].min, arr[i].max = q.default, q.min, q.max
                if q.choices:
                    ch = (c_char_p * (len(q.choices) + 1))(*[c.encode() for c in q.choices], None)
                    keep.append(ch)
                    arr[i].choices = ch
            keep.append(arr)
            p.n_params = len(params)
            p.params = arr
        self._kvc_params = params
        cls = type(self)
        for m in _METHODS:
            # init is always wired: it also learns the capacity and the generator
            if m == "init" or getattr(cls, m) is not getattr(Policy, m):
                fn = getattr(_capi, m.upper() + "_FN")(getattr(self, "_cb_" + m))
                keep.append(fn)
                setattr(p, m, fn)
        vt = (p, keep)
        self._kvc_vt = vt
        return vt

    def _attach(self):
        if self.__dict__.get("_kvc_attached"):
            raise invalid("policy instance %r is already used by an open cache: pass the class, "
                             "or a new instance, for each cache" % (self,))
        vt = self._vtable()
        self._kvc_attached = True
        self._kvc_pending = None
        self._kvc_cap = 0
        self._kvc_rng = None
        return vt

    def _detach(self):
        if self._kvc_rng is not None:
            self._kvc_rng._p = None
        self._kvc_attached = False

    def _take_error(self):
        pending, self._kvc_pending = self._kvc_pending, None
        return pending

    def _record(self, where, exc):
        if self._kvc_pending is None:
            self._kvc_pending = (where, exc)
        return _status_of(exc)

    def _rng(self, ptr):
        r = self._kvc_rng
        if r is None or r._p != ptr:
            r = self._kvc_rng = Rng(ptr)
        return r

    # --- trampolines: nothing may escape them ------------------------------
    def _cb_init(self, state, ctxp):
        try:
            c = ctxp.contents
            values = {q.name: c.params[i] for i, q in enumerate(self._kvc_params)}
            self._kvc_cap = c.capacity
            ctx = PolicyContext(c.n_groups, c.capacity, c.head_dim, c.q_per_group, c.block,
                                c.chunk, c.sink, c.recent, "index" if c.mode else "store",
                                values, self._rng(c.rng))
            self.init(ctx)
            return 0
        except BaseException as e:  # noqa: B902 - must not unwind into C
            return self._record("init", e)

    def _cb_on_insert(self, state, group, slot, tokp):
        try:
            t = tokp.contents
            self.on_insert(group, slot, Token(t.pos, t.seq, t.key_norm, t.value_range, t.value_l1))
        except BaseException as e:
            self._record("on_insert", e)

    def _cb_on_attend(self, state, group, mass, n):
        try:
            a = array("f")
            a.frombytes(ctypes.string_at(mass, 4 * n))
            self.on_attend(group, a)
        except BaseException as e:
            self._record("on_attend", e)

    def _cb_score(self, state, group, slots, n, keep):
        out = (c_float * n).from_address(ctypes.addressof(keep.contents)) if n else None
        if self._kvc_pending is None or self._kvc_pending[0] not in ("score", "select"):
            try:
                vals = self.score(group, slots[:n])
                a = array("f", vals)
                if len(a) != n:
                    raise ValueError("score returned %d values for %d slots" % (len(a), n))
                if n:
                    ctypes.memmove(out, a.buffer_info()[0], 4 * n)
                return
            except BaseException as e:
                self._record("score", e)
        if n:
            ctypes.memset(out, 0, 4 * n)  # all equal: the oldest candidate goes

    def _cb_select(self, state, reqp, victims):
        if self._kvc_pending is not None and self._kvc_pending[0] in ("score", "select"):
            return int(Status.EPOLICY)
        try:
            r = reqp.contents
            nc = r.n_candidates
            ws = r.window_score[:nc] if r.window_score else None
            req = SelectRequest(r.group, r.candidates[:nc], r.n_victims, r.block,
                                r.positions[:self._kvc_cap], ws, self._rng(r.rng))
            out = [_slot(s) for s in self.select(req)]
            if len(out) != r.n_victims:
                raise Error(Status.EPOLICY, "select returned %d slots, expected %d"
                            % (len(out), r.n_victims))
            for i, s in enumerate(out):
                victims[i] = s  # distinct candidates? the core checks that
            return 0
        except BaseException as e:
            return self._record("select", e)

    def _cb_on_move(self, state, group, src, dst):
        try:
            self.on_move(group, src, dst)
        except BaseException as e:
            self._record("on_move", e)

    def _cb_fini(self, state):
        try:
            self.fini()
        except BaseException as e:
            self._record("fini", e)

