"""INDEX mode: reserve / observe with the engine owning its tensors."""
from array import array

import pytest

import kvc


def test_reserve_fills_then_evicts_and_reuses_slots():
    with kvc.Cache(n_kv_heads=2, n_q_heads=2, head_dim=4, capacity=8, mode="index",
                   policy="window") as c:
        seen = []
        for t in range(8):
            r = c.reserve()
            assert r.evicted == ((), ())
            seen.append(r.slots)
        assert sorted(s[0] for s in seen) == list(range(8))
        r = c.reserve(pos=100)
        assert r.evicted == ((0,), (0,))
        # the freed slot is the one handed out, and now holds position 100
        assert c.positions(0)[r.slots[0]] == 100
        assert len(c) == 8 and c.stats.evictions == 2


def test_observe_drives_h2o():
    cap = 8
    with kvc.Cache(n_kv_heads=1, n_q_heads=1, head_dim=4, capacity=cap, mode="index",
                   policy="h2o", recent=2) as c:
        slot_of = {}
        for t in range(cap):
            slot_of[t] = c.reserve(pos=t).slots[0]
        # position 5 gets all the attention, the rest none
        mass = array("f", bytes(4 * cap))
        mass[slot_of[5]] = 1.0
        c.observe(0, mass)
        evicted = []
        for t in range(cap, cap + 5):
            r = c.reserve(pos=t)
            evicted += r.evicted[0]
            slot_of[t] = r.slots[0]
        assert 5 not in evicted and 5 in c.positions(0)
        assert evicted == [0, 1, 2, 3, 4]
        assert c.stats.attends == 1


def test_observe_checks():
    with kvc.Cache(n_kv_heads=2, n_q_heads=2, head_dim=4, capacity=8, mode="index",
                   policy="h2o") as c:
        c.reserve()
        with pytest.raises(kvc.Error) as ei:
            c.observe(2, array("f", [1.0]))
        assert ei.value.status is kvc.Status.ERANGE and "group 2" in ei.value.detail
        with pytest.raises(kvc.Error) as ei:
            c.observe(0, array("f", [-1.0]))
        assert ei.value.status is kvc.Status.ENONFINITE and "mass[0]" in ei.value.detail
        with pytest.raises(kvc.Error, match="capacity 8"):
            c.observe(0, array("f", bytes(4 * 9)))
        c.observe(0, array("f"))  # nothing to report is fine


def test_block_eviction_returns_whole_blocks():
    with kvc.Cache(n_kv_heads=1, n_q_heads=1, head_dim=4, capacity=16, mode="index",
                   policy="window", block=4, scope="shared") as c:
        assert c.groups == 1 and c.max_evictions == 4
        for t in range(16):
            c.reserve()
        r = c.reserve()
        assert sorted(r.evicted[0]) == [0, 1, 2, 3]


def test_stats_policies_need_k_and_v():
    with kvc.Cache(n_kv_heads=1, n_q_heads=1, head_dim=4, capacity=8, mode="index",
                   policy="knorm", sink=0) as c:
        with pytest.raises(kvc.Error) as ei:
            c.reserve()
        assert ei.value.status is kvc.Status.EINVAL and "k and v" in ei.value.detail
        with pytest.raises(kvc.Error, match="both k and v"):
            c.reserve(k=array("f", [0.0] * 4))
        norms = [3, 1, 4, 1.5, 9, 2, 6, 5]
        for t, n in enumerate(norms):
            kv = array("f", [n, 0, 0, 0])
            c.reserve(k=kv, v=kv)
        small = array("f", [0.5, 0, 0, 0])
        r = c.reserve(k=small, v=small)
        assert r.evicted == ((4,),)  # the largest key norm goes
