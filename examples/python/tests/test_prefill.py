"""Prefill compression, compaction plans and spec-error detail through the binding."""
import pytest

import kvc

np = pytest.importorskip("numpy")


def test_spec_errors_say_what_is_wrong():
    with pytest.raises(kvc.Error) as ei:
        kvc.Cache(2, 4, 8, 16, policy="h2o recnet=64")
    e = ei.value
    assert e.status is kvc.Status.EUNKNOWN
    assert "did you mean 'recent'" in e.detail and "its parameters: norm" in e.detail
    with pytest.raises(kvc.Error) as ei:
        kvc.Cache(2, 4, 8, 16, policy="h2 recent=4")
    assert "did you mean 'h2o'" in ei.value.detail and "snapkv" in ei.value.detail
    with pytest.raises(kvc.Error) as ei:
        kvc.Cache(2, 4, 8, 16, policy="recent=4")
    assert ei.value.status is kvc.Status.ESYNTAX
    with pytest.raises(kvc.Error) as ei:
        kvc.Cache(2, 4, 8, 16, policy="h2o recent=99")
    assert ei.value.status is kvc.Status.ERANGE and "recent=99" in ei.value.detail
    c = kvc.Cache(2, 4, 8, 16, policy="h2o recent=4 protect=3 prefill_max=32")
    assert c.get("protect") == 3 and c.get("prefill_max") == 32 and c.get("recent") == 4


def test_prefill_store_keeps_the_window_and_decodes_on():
    rng = np.random.default_rng(1)
    n, w, kv, q, d, cap = 80, 8, 2, 4, 8, 24
    k = rng.standard_normal((n, kv, d), dtype=np.float32)
    v = rng.standard_normal((n, kv, d), dtype=np.float32)
    qs = rng.standard_normal((w, q, d), dtype=np.float32)
    with kvc.Cache(kv, q, d, cap, policy="snapkv", prefill_max=n) as c:
        assert c.prefill(k, v, qs) == cap
        for g in range(c.groups):
            pos = c.positions(g)
            assert all(p in pos for p in range(n - w, n))
            s = sorted(p for p in pos if p >= 0)
            assert s == [p for p in pos if p >= 0]  # slots in position order
        c.append(k[0], v[0])  # the next position: n
        assert max(c.positions(0)) == n
        out = c.attend(qs[0])
        assert out.shape == (q, d)
        with pytest.raises(kvc.Error) as ei:
            c.prefill(k, v, qs)
        assert ei.value.status is kvc.Status.ESTATE
    with kvc.Cache(kv, q, d, cap, policy="h2o", prefill_max=n - 1) as c:
        with pytest.raises(kvc.Error) as ei:
            c.prefill(k, v, qs)
        assert ei.value.status is kvc.Status.ERANGE and "prefill_max" in ei.value.detail
        assert len(c) == 0


def test_prefill_index_and_compact():
    n, kv, q, d, cap = 50, 2, 4, 8, 16
    scores = np.tile((np.arange(n) % 7).astype(np.float32), kv)
    with kvc.Cache(kv, q, d, cap, mode="index", policy="h2o chunk=5 recent=2",
                   prefill_max=n) as c:
        keep = c.prefill_index(n, scores, n_window=4)
        assert len(keep) == kv and all(len(g) == cap for g in keep)
        for g, lst in enumerate(keep):
            assert list(lst) == sorted(lst)
            assert c.positions(g) == list(lst)  # pos 0: prompt index == position
            assert all(i in lst for i in range(n - 4, n))
        r = c.reserve()
        assert r.slots[0] < cap and len(r.evicted[0]) == 5
        holes = sum(p < 0 for p in c.positions(0)[:len(c)])
        moves, freed = c.compact(0, page=4)
        assert len(moves) == holes and freed == 1
        assert all(f >= len(c) > t for f, t in moves)
        pos = c.positions(0)
        assert all(p >= 0 for p in pos[:len(c)]) and all(p < 0 for p in pos[len(c):])
    with kvc.Cache(kv, q, d, cap, policy="h2o") as c:
        with pytest.raises(kvc.Error) as ei:
            c.compact()
        assert ei.value.status is kvc.Status.EMODE
