"""Eviction policies written in Python through the C vtable."""
import gc
import random
from array import array

import pytest

import kvc


def rows(n, rnd):
    return array("f", [rnd.uniform(-1, 1) for _ in range(n)])


class PyWindow(kvc.Policy):
    """Keep-score = insertion index: the oldest candidate goes (built-in `window`)."""
    name = "py_window"

    def init(self, ctx):
        self.seq = [[0] * ctx.capacity for _ in range(ctx.n_groups)]

    def on_insert(self, group, slot, token):
        self.seq[group][slot] = token.seq

    def on_move(self, group, src, dst):
        self.seq[group][dst] = self.seq[group][src]

    def score(self, group, slots):
        return [self.seq[group][s] for s in slots]


class PyH2O(kvc.Policy):
    """H2O as the library implements it, accumulating in float32 like C does."""
    name = "py_h2o"
    needs = kvc.NEED_ATTN
    default_recent = kvc.RECENT_HALF

    def init(self, ctx):
        self.acc = [array("f", bytes(4 * ctx.capacity)) for _ in range(ctx.n_groups)]

    def on_insert(self, group, slot, token):
        self.acc[group][slot] = 0.0

    def on_attend(self, group, mass):
        acc = self.acc[group]
        for i, m in enumerate(mass):
            acc[i] += m

    def on_move(self, group, src, dst):
        self.acc[group][dst] = self.acc[group][src]

    def score(self, group, slots):
        return [self.acc[group][s] for s in slots]


class PyRandom(kvc.Policy):
    """The built-in `random`: partial Fisher-Yates over the candidates."""
    name = "py_random"
    needs = kvc.NEED_RNG

    def select(self, req):
        pool = list(req.candidates)
        for i in range(req.n_victims):
            j = i + req.rng.below(len(pool) - i)
            pool[i], pool[j] = pool[j], pool[i]
        return pool[:req.n_victims]


def run_pair(builtin, mine, mode="store", steps=150, **kw):
    """Drive two caches with the same stream; every step, both hold the same positions."""
    rnd = random.Random(42)
    shape = dict(n_kv_heads=2, n_q_heads=4, head_dim=8, capacity=16, mode=mode)
    with kvc.Cache(policy=builtin, **shape, **kw) as a, kvc.Cache(policy=mine, **shape, **kw) as b:
        for t in range(steps):
            k, v, q = rows(16, rnd), rows(16, rnd), rows(32, rnd)
            if mode == "store":
                a.append(k, v)
                b.append(k, v)
                oa, ob = a.attend(q), b.attend(q)
                assert oa == ob
            else:
                ra, rb = a.reserve(), b.reserve()
                assert ra == rb, t
                for g in range(a.groups):
                    mass = rows(16, rnd)
                    mass = array("f", [abs(x) for x in mass])
                    a.observe(g, mass)
                    b.observe(g, mass)
            for g in range(a.groups):
                assert a.positions(g) == b.positions(g), (t, g)
        assert a.stats == b.stats and b.stats.evictions > 0
        assert b.policy_name == mine.name


def test_python_window_equals_builtin_window_store():
    run_pair("window", PyWindow)


def test_python_window_equals_builtin_window_index_blocks_chunks():
    run_pair("window", PyWindow, mode="index", block=4, chunk=2)


def test_python_h2o_equals_builtin_h2o():
    run_pair("h2o", PyH2O)
    run_pair("h2o", PyH2O, mode="index", scope="shared")


def test_python_random_equals_builtin_random():
    run_pair("random", PyRandom, seed=1234)
    run_pair("random", PyRandom, mode="index", seed=99, chunk=3)


def full_cache(policy, cap=6, **kw):
    c = kvc.Cache(n_kv_heads=1, n_q_heads=1, head_dim=4, capacity=cap, policy=policy, **kw)
    for t in range(cap):
        c.append(array("f", [t] * 4), array("f", [t] * 4))
    return c


class Flaky(kvc.Policy):
    """Evicts the oldest, or fails in the way the test asks."""
    fail = None

    def select(self, req):
        if self.fail == "raise":
            raise RuntimeError("select exploded")
        if self.fail == "dup":
            return [req.candidates[0]] * req.n_victims
        if self.fail == "count":
            return []
        if self.fail == "enomem":
            raise kvc.Error(kvc.Status.ENOMEM, "out of policy memory")
        if self.fail == "interrupt":
            raise KeyboardInterrupt
        if self.fail == "reenter":
            len(self.cache)
        if self.fail == "close":
            self.cache.close()
        return req.candidates[:req.n_victims]


@pytest.mark.parametrize("fail,code,cause", [
    ("raise", "EPOLICY", RuntimeError), ("count", "EPOLICY", kvc.Error),
    ("enomem", "ENOMEM", kvc.Error), ("reenter", "EINVAL", kvc.Error),
    ("close", "EINVAL", kvc.Error)])
def test_select_errors_become_status_codes_and_change_nothing(fail, code, cause):
    pol = Flaky()
    with full_cache(pol) as c:
        pol.cache = c
        before = (c.positions(), c.stats, len(c))
        pol.fail = fail
        with pytest.raises(kvc.PolicyError) as ei:
            c.append(array("f", [9] * 4), array("f", [9] * 4))
        e = ei.value
        assert e.status is kvc.Status[code] and e.callback == "select" and not e.completed
        assert isinstance(e.__cause__, cause)
        assert "select" in str(e)
        assert (c.positions(), c.stats, len(c)) == before
        pol.fail = None  # the cache is still usable, the same position goes in
        c.append(array("f", [9] * 4), array("f", [9] * 4), pos=6)
        assert 6 in c.positions() and 0 not in c.positions()
        del pol.cache


def test_select_reentry_is_refused_clearly():
    pol = Flaky()
    with full_cache(pol) as c:
        pol.cache, pol.fail = c, "reenter"
        with pytest.raises(kvc.PolicyError) as ei:
            c.append(array("f", [9] * 4), array("f", [9] * 4))
        assert "must not call back into its cache" in str(ei.value.__cause__)
        del pol.cache


def test_invalid_victims_are_caught_by_the_core():
    pol = Flaky()
    pol.fail = "dup"
    with full_cache(pol, chunk=2) as c:
        with pytest.raises(kvc.Error) as ei:
            c.append(array("f", [9] * 4), array("f", [9] * 4))
        assert ei.value.status is kvc.Status.EPOLICY and "duplicate" in ei.value.detail
        assert not isinstance(ei.value, kvc.PolicyError)
        assert len(c) == 6


def test_keyboard_interrupt_is_reraised_as_is():
    pol = Flaky()
    with full_cache(pol) as c:
        pol.fail = "interrupt"
        with pytest.raises(KeyboardInterrupt):
            c.append(array("f", [9] * 4), array("f", [9] * 4))
        assert len(c) == 6 and c.stats.appends == 6


class BadScore(PyWindow):
    mode = "raise"

    def score(self, group, slots):
        self.calls = getattr(self, "calls", 0) + 1
        if self.mode == "raise":
            raise ValueError("no score today")
        if self.mode == "short":
            return [1.0]
        if self.mode == "text":
            return ["high"] * len(slots)
        return super().score(group, slots)


@pytest.mark.parametrize("mode,cause", [("raise", ValueError), ("short", ValueError),
                                        ("text", TypeError)])
def test_score_errors_fall_back_to_oldest_and_are_raised_after(mode, cause):
    pol = BadScore()
    pol.mode = mode
    with full_cache(pol, cap=6, sink=2) as c:
        with pytest.raises(kvc.PolicyError) as ei:
            c.append(array("f", [9] * 4), array("f", [9] * 4))
        e = ei.value
        assert e.completed and e.callback == "score" and isinstance(e.__cause__, cause)
        assert "oldest candidate" in str(e)
        # the append went through: the oldest unprotected token (position 2) went
        assert sorted(c.positions()) == [0, 1, 3, 4, 5, 6]
        pol.mode = None
        c.append(array("f", [9] * 4), array("f", [9] * 4))
        assert sorted(c.positions()) == [0, 1, 4, 5, 6, 7]


def test_score_fallback_covers_every_unit_of_a_block_eviction():
    pol = BadScore()
    with kvc.Cache(n_kv_heads=1, n_q_heads=1, head_dim=4, capacity=256, mode="index",
                   policy=pol, block=128) as c:
        for t in range(256):
            c.reserve()
        with pytest.raises(kvc.PolicyError):
            c.reserve()
        # block of 128 slots scored 64 at a time: Python ran once, then the fallback
        assert pol.calls == 1
        assert sorted(c.positions())[-129:] == list(range(128, 257))


class Noisy(PyWindow):
    where = None

    def _maybe(self, name):
        if self.where == name:
            raise RuntimeError(name + " failed")

    def init(self, ctx):
        self._maybe("init")
        super().init(ctx)

    def on_insert(self, group, slot, token):
        super().on_insert(group, slot, token)
        self._maybe("on_insert")

    def fini(self):
        self._maybe("fini")


def test_init_failure_refuses_the_first_append():
    pol = Noisy()
    pol.where = "init"
    with kvc.Cache(n_kv_heads=1, n_q_heads=1, head_dim=4, capacity=4, policy=pol) as c:
        with pytest.raises(kvc.PolicyError) as ei:
            c.append(array("f", [1] * 4), array("f", [1] * 4))
        assert ei.value.callback == "init" and not ei.value.completed
        assert ei.value.status is kvc.Status.EPOLICY and "init failed" in str(ei.value)
        assert len(c) == 0
        pol.where = None
        c.append(array("f", [1] * 4), array("f", [1] * 4))
        assert len(c) == 1


def test_notification_failure_is_raised_after_a_completed_call():
    pol = Noisy()
    c = kvc.Cache(n_kv_heads=2, n_q_heads=2, head_dim=4, capacity=4, policy=pol, mode="index")
    pol.where = "on_insert"
    with pytest.raises(kvc.PolicyError) as ei:
        c.reserve()
    e = ei.value
    assert e.completed and e.callback == "on_insert"
    assert len(c) == 1  # the token is in, and the engine learns where
    assert e.result == kvc.Reservation((0, 0), ((), ()))
    pol.where = None
    assert c.reserve().slots == (1, 1)
    pol.where = "fini"
    with pytest.raises(kvc.PolicyError) as ei:
        c.close()
    assert ei.value.callback == "fini"


def test_fini_failure_is_raised_by_close():
    pol = Noisy()
    c = kvc.Cache(n_kv_heads=1, n_q_heads=1, head_dim=4, capacity=4, policy=pol)
    c.prepare()
    pol.where = "fini"
    with pytest.raises(kvc.PolicyError) as ei:
        c.close()
    assert ei.value.callback == "fini" and ei.value.completed and c.closed


def test_policy_instance_serves_one_open_cache():
    pol = PyWindow()
    shape = dict(n_kv_heads=1, n_q_heads=1, head_dim=4, capacity=4)
    with kvc.Cache(policy=pol, **shape) as c:
        assert c.policy is pol
        with pytest.raises(ValueError, match="already used"):
            kvc.Cache(policy=pol, **shape)
    with kvc.Cache(policy=pol, **shape) as c:  # free again once closed
        c.append(array("f", [1] * 4), array("f", [1] * 4))
    with kvc.Cache(policy=PyWindow, **shape) as a, kvc.Cache(policy=PyWindow, **shape) as b:
        assert a.policy is not b.policy


def test_callbacks_stay_alive_with_the_cache_only():
    rnd = random.Random(1)
    c = kvc.Cache(n_kv_heads=1, n_q_heads=1, head_dim=4, capacity=4, policy=PyWindow())
    gc.collect()  # nothing but the cache refers to the policy now
    for t in range(20):
        c.append(rows(4, rnd), rows(4, rnd))
    assert sorted(c.positions()) == [16, 17, 18, 19]
    del c
    gc.collect()


class Tunable(kvc.Policy):
    name = "tunable"
    params = (kvc.Param("keep_every", 2, 1, 8, help="protect every n-th position"),
              kvc.Param("order", 0, 0, 1, choices=("oldest", "newest")))
    default_recent = 1

    def init(self, ctx):
        self.ctx = ctx

    def select(self, req):
        pos = req.positions
        cands = [s for s in req.candidates if pos[s] % int(self.ctx.params["keep_every"])]
        if self.ctx.params["order"] == 1:
            cands.reverse()
        return cands[:req.n_victims]


def test_python_policy_parameters_and_context():
    with kvc.Cache(n_kv_heads=1, n_q_heads=2, head_dim=4, capacity=8, policy=Tunable,
                   keep_every=3, order="newest") as c:
        assert c.get_param("keep_every") == 3 and c.get_param("order") == 1
        assert c.get("recent") == 1
        for t in range(12):
            c.append(array("f", [1] * 4), array("f", [1] * 4))
        ctx = c.policy.ctx
        assert (ctx.n_groups, ctx.capacity, ctx.head_dim, ctx.q_per_group, ctx.mode) == \
            (1, 8, 4, 2, "store")
        assert ctx.params == {"keep_every": 3.0, "order": 1.0}
        # newest unprotected non-multiple of 3 goes: 5, 7, 8, then 4
        assert sorted(c.positions()) == [0, 1, 2, 3, 6, 9, 10, 11]
        with pytest.raises(kvc.Error) as ei:
            c.set_param("keep_every", 4)
        assert ei.value.status is kvc.Status.ESTATE
    with pytest.raises(kvc.Error) as ei:
        kvc.Cache(n_kv_heads=1, n_q_heads=1, head_dim=4, capacity=8, policy=Tunable, keep_every=9)
    assert ei.value.status is kvc.Status.ERANGE


def test_policy_without_score_or_select_never_evicts():
    class Keeper(kvc.Policy):
        pass

    with full_cache(Keeper, cap=3) as c:
        with pytest.raises(kvc.Error) as ei:
            c.append(array("f", [1] * 4), array("f", [1] * 4))
        assert ei.value.status is kvc.Status.EFULL and "'keeper'" in ei.value.detail


def test_bad_policy_names():
    class Bad(kvc.Policy):
        name = "Not Valid"

    with pytest.raises(ValueError, match="a-z0-9_"):
        kvc.Cache(n_kv_heads=1, n_q_heads=1, head_dim=4, capacity=4, policy=Bad)


def test_rng_is_dead_after_close():
    pol = PyRandom()
    with kvc.Cache(n_kv_heads=1, n_q_heads=1, head_dim=4, capacity=4, policy=pol) as c:
        c.prepare()
        assert pol._kvc_rng.below(10) < 10
    with pytest.raises(kvc.Error) as ei:
        pol._kvc_rng.next()
    assert ei.value.status is kvc.Status.ESTATE
