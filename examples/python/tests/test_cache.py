"""kvc.Cache in STORE mode without numpy: lifecycle, options, errors, buffers."""
import gc
import threading
from array import array

import pytest

import kvc


def rows(n, seed):
    """Deterministic pseudo-random float32 values in [-0.5, 0.5)."""
    out, s = array("f"), seed
    for _ in range(n):
        s = (s * 1103515245 + 12345) & 0x7FFFFFFF
        out.append(((s >> 8) & 0xFFFF) / 65536.0 - 0.5)
    return out


def small(**kw):
    args = dict(n_kv_heads=2, n_q_heads=4, head_dim=8, capacity=16)
    args.update(kw)
    return kvc.Cache(**args)


def test_context_manager_and_close():
    with small(policy="window") as c:
        assert not c.closed and c.mode == "store" and c.dtype == "f32"
        c.append(rows(16, 1), rows(16, 2))
        assert len(c) == 1
    assert c.closed
    c.close()  # idempotent
    with pytest.raises(kvc.Error) as ei:
        len(c)
    assert ei.value.status is kvc.Status.ESTATE and "closed" in ei.value.detail
    assert repr(c) == "<kvc.Cache closed>"


def test_window_keeps_the_last_tokens_and_counts():
    with small(policy="window") as c:
        for t in range(40):
            c.append(rows(16, t), rows(16, 100 + t))
            c.attend(rows(32, 200 + t))
        assert len(c) == 16 and c.capacity == 16 and c.groups == 2
        for g in range(2):
            assert sorted(c.positions(g)) == list(range(24, 40))
        assert c.stats == kvc.Stats(appends=40, evictions=2 * 24, attends=40)
        assert c.policy_name == "window"


def test_positions_default_and_explicit():
    with small(policy="window") as c:
        c.append(rows(16, 0), rows(16, 0))          # pos 0
        c.append(rows(16, 0), rows(16, 0), pos=10)  # explicit
        c.append(rows(16, 0), rows(16, 0))          # 11
        assert sorted(p for p in c.positions() if p >= 0) == [0, 10, 11]
        with pytest.raises(kvc.Error) as ei:
            c.append(rows(16, 0), rows(16, 0), pos=11)
        assert ei.value.status is kvc.Status.EORDER
        assert "11" in ei.value.detail and "previous" in ei.value.detail
        c.reset()
        c.append(rows(16, 0), rows(16, 0))
        assert c.positions()[0] == 0 and len(c) == 1


def test_read_returns_what_was_stored():
    k, v = rows(16, 5), rows(16, 6)
    with small() as c:
        c.append(k, v)
        rk, rv = c.read(1, 0)
        assert list(rk) == list(k[8:]) and list(rv) == list(v[8:])
        with pytest.raises(kvc.Error) as ei:
            c.read(0, 1)
        assert ei.value.status is kvc.Status.ERANGE


def test_full_policy_fails_when_full_and_leaves_cache_unchanged():
    with small(capacity=4) as c:
        for t in range(4):
            c.append(rows(16, t), rows(16, t))
        before = (c.positions(0), c.stats)
        with pytest.raises(kvc.Error) as ei:
            c.append(rows(16, 9), rows(16, 9))
        assert ei.value.status is kvc.Status.EFULL
        assert "never evicts" in ei.value.detail
        assert (c.positions(0), c.stats) == before


def test_spec_string_and_options():
    with small(policy="h2o recent=4 sink=2 norm=lifetime", seed=7, scale=0.5) as c:
        assert c.get("recent") == 4 and c.get("sink") == 2 and c.get("seed") == 7
        assert c.get_param("norm") == 1.0
        assert c.options["chunk"] == 1
        c.set("recent", 5)
        c.set_param("norm", "sum")
        assert c.get("recent") == 5 and c.get_param("norm") == 0.0
        c.apply_spec("scope=shared chunk=2")
        assert c.groups == 1 and c.max_evictions == 2
        c.append(rows(16, 0), rows(16, 0))
        with pytest.raises(kvc.Error) as ei:
            c.set("recent", 3)
        assert ei.value.status is kvc.Status.ESTATE


@pytest.mark.parametrize("spec,status,words", [
    ("nope", "EUNKNOWN", ["nope", "h2o"]),
    ("h2o recent=x", "ESYNTAX", ["recent=x"]),
    ("h2o bogus=1", "EUNKNOWN", ["bogus"]),
    ("h2o recent=99", "ERANGE", ["recent=99"]),
    ("recent=4", "ESYNTAX", []),
    ("h2o norm=median", "EUNKNOWN", ["norm=median", "sum, lifetime"]),
])
def test_bad_specs(spec, status, words):
    with pytest.raises(kvc.Error) as ei:
        small(policy=spec)
    assert ei.value.status is kvc.Status[status]
    for w in words:
        assert w in str(ei.value)


def test_bad_shapes_and_enums():
    cases = [dict(n_q_heads=3), dict(head_dim=0), dict(capacity=-1), dict(capacity=2 ** 32),
             dict(dtype="f64"), dict(mode="paged")]
    for kw in cases:
        with pytest.raises(kvc.Error) as ei:
            small(**kw)
        assert ei.value.status is kvc.Status.EINVAL, kw
    with pytest.raises(TypeError):
        small(capacity=1.5)
    with pytest.raises(kvc.Error) as ei:
        small(capacity=2 ** 31)  # C limit: 2^31 slots
    assert ei.value.status is kvc.Status.EOVERFLOW
    with pytest.raises(TypeError):
        small(policy=42)


def test_joint_option_check_happens_at_freeze():
    with small(policy="h2o", sink=8, recent=8) as c:
        with pytest.raises(kvc.Error) as ei:
            c.prepare()
        assert ei.value.status is kvc.Status.EINVAL
        assert "no room to evict" in ei.value.detail


def test_unknown_options():
    with pytest.raises(kvc.Error) as ei:
        small(policy="window", recnt=3)
    assert ei.value.status is kvc.Status.EUNKNOWN
    with small() as c:
        with pytest.raises(kvc.Error) as ei:
            c.get("bogus")
        assert ei.value.status is kvc.Status.EUNKNOWN


def test_mode_errors():
    with small() as c:
        with pytest.raises(kvc.Error) as ei:
            c.reserve()
        assert ei.value.status is kvc.Status.EMODE
        with pytest.raises(kvc.Error) as ei:
            c.attend(rows(32, 0))
        assert ei.value.status is kvc.Status.EEMPTY
    with small(mode="index") as c:
        with pytest.raises(kvc.Error) as ei:
            c.append(rows(16, 0), rows(16, 0))
        assert ei.value.status is kvc.Status.EMODE


def test_nonfinite_rejected_with_nothing_stored():
    with small() as c:
        k = rows(16, 0)
        k[3] = float("nan")
        with pytest.raises(kvc.Error) as ei:
            c.append(k, rows(16, 0))
        assert ei.value.status is kvc.Status.ENONFINITE and len(c) == 0
        c.append(rows(16, 0), rows(16, 0))
        q = rows(32, 0)
        q[0] = float("inf")
        out = array("f", [7.0]) * 32
        with pytest.raises(kvc.Error):
            c.attend(q, out=out)
        assert set(out) == {7.0}


# ------------------------------------------------------------------ buffers
def test_buffer_kinds_are_accepted_in_place():
    k, v = rows(16, 1), rows(16, 2)
    with small(capacity=8, policy="window") as c:
        c.append(k, v)
        c.append(memoryview(k), memoryview(v))
        c.append(bytes(k), bytearray(v))          # raw bytes: native float32
        c.append(memoryview(bytes(k)), memoryview(bytes(v)).cast("f"))
        out = array("f", bytes(4 * 32))
        ret = c.attend(rows(32, 3), out=out)
        assert ret is out and any(out)
        mv = memoryview(bytearray(4 * 32))
        assert c.attend(rows(32, 3), out=mv) is mv
        assert bytes(mv) == out.tobytes()


def test_buffer_checks():
    with small() as c:
        good = rows(16, 1)
        with pytest.raises(kvc.Error, match="expected 16 float32 values, got 15"):
            c.append(good[:15], good)
        with pytest.raises(kvc.Error, match="not a whole number"):
            c.append(bytes(63), good)
        with pytest.raises(TypeError, match="expected numbers"):
            c.append("0123456789abcdef", good)
        with pytest.raises(kvc.InvalidType):
            c.append([0.0] * 15 + [None], good)
        c.append(good, good)
        with pytest.raises(kvc.Error, match="read-only"):
            c.attend(rows(32, 0), out=bytes(128))
        with pytest.raises(kvc.Error, match="not C-contiguous"):
            c.attend(rows(32, 0), out=memoryview(bytearray(256)).cast("f")[::2])


def test_array_likes_are_converted_and_float32_is_used_in_place():
    from kvc import _buffers
    good = rows(16, 1)
    # already C-contiguous float32: the object itself, no copy
    assert _buffers.as_f32(good, "k") is good
    mv = memoryview(good)
    assert _buffers.as_f32(mv, "k") is mv
    # anything else: a float32 copy of the same values
    spread = array("f", [x for g in good for x in (g, 0.0)])
    for other in (array("d", good), list(good), tuple(good), memoryview(spread)[::2],
                  memoryview(bytes(1) + good.tobytes())[1:]):
        conv = _buffers.as_f32(other, "k")
        assert conv is not other
        assert memoryview(conv).format == "f" and list(memoryview(conv).cast("B").cast("f")) == list(good)
    # the cache gives the same answers for either
    outs = []
    for kind in (lambda a: a, lambda a: array("d", a), list):
        with small(policy="h2o recent=2") as c:
            for t in range(6):
                c.append(kind(rows(16, t)), kind(rows(16, t + 9)))
            outs.append(list(c.attend(kind(rows(32, 3)))))
    assert outs[0] == outs[1] == outs[2]


def test_options_read_back_as_set():
    with small(policy="h2o", scope="shared", recent=3) as c:
        assert c.get("scope") == "shared" and c.options["scope"] == "shared" and c.get("recent") == 3
        c.set("scope", 0)
        assert c.get("scope") == "head"
        c.set("scope", c.get("scope"))  # what get returns, set accepts
        assert c.options["scope"] == "head"


def test_errors_are_value_and_type_errors():
    with small() as c:
        with pytest.raises(ValueError):
            c.set("recent", 10 ** 6)
        with pytest.raises(ValueError):
            c.apply_spec("colour=red")
        with pytest.raises(TypeError):
            c.set("recent", "three")
        with pytest.raises(kvc.InvalidValue) as ei:
            c.append(rows(16, 0), rows(16, 0), pos=-1)
        assert isinstance(ei.value, kvc.Error) and ei.value.status is kvc.Status.EINVAL
    with pytest.raises(ValueError, match="cache is closed"):
        c.append(rows(16, 0), rows(16, 0))
    with pytest.raises(kvc.CacheFull):
        with small(capacity=1) as f:
            f.append(rows(16, 0), rows(16, 0))
            f.append(rows(16, 0), rows(16, 0))


        q = rows(32, 0)
        with pytest.raises(kvc.Error, match="overlap"):
            c.attend(q, out=q)
        assert len(c) == 1


def test_python_side_errors_carry_status():
    with small() as c:
        with pytest.raises(kvc.Error) as ei:
            c.append(rows(16, 0), rows(16, 0), pos=2 ** 63)
        assert ei.value.status is kvc.Status.EINVAL
        with pytest.raises(kvc.Error) as ei:
            c.append(rows(16, 0), rows(16, 0), pos=-1)
        assert ei.value.status is kvc.Status.EINVAL and "negative" in ei.value.detail


def test_threads_share_a_cache_safely():
    with small(capacity=64, policy="h2o") as c:
        errors = []

        def worker(seed):
            try:
                for t in range(200):
                    c.attend(rows(32, seed + t)) if len(c) else None
            except Exception as e:  # pragma: no cover - reported below
                errors.append(e)

        c.append(rows(16, 0), rows(16, 0))
        ts = [threading.Thread(target=worker, args=(i * 1000,)) for i in range(3)]
        for t in ts:
            t.start()
        for t in range(1, 100):
            c.append(rows(16, t), rows(16, t))
        for t in ts:
            t.join()
        assert not errors and c.stats.attends == 600 and c.stats.appends == 100


def test_garbage_collected_cache_is_freed():
    c = small()
    c.append(rows(16, 0), rows(16, 0))
    fin = c._fin
    del c
    gc.collect()
    assert not fin.alive
