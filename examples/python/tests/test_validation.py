"""Arguments the binding must refuse before they reach C: strings holding a
NUL (C would stop reading there), select answers that are not integer
slots, and policy class attributes that do not fit their uint32 fields."""
from array import array

import pytest

import kvc


def small(policy="window", **kw):
    return kvc.Cache(n_kv_heads=1, n_q_heads=1, head_dim=4, capacity=4, policy=policy, **kw)


# ------------------------------------------------------------------ NUL
def test_nul_in_spec_rejected():
    with pytest.raises(kvc.Error) as e:
        small("h2o recent=3\0 sink=9999")
    assert e.value.code == kvc.Status.ESYNTAX and "NUL" in e.value.detail
    with pytest.raises(kvc.Error) as e:
        small("h2o\0")
    assert e.value.code == kvc.Status.ESYNTAX


def test_nul_in_options_and_names_rejected():
    with small("h2o") as c:
        sink = c.get("sink")
        with pytest.raises(kvc.Error) as e:
            c.apply_spec("recent=1\0 sink=3")
        assert e.value.code == kvc.Status.ESYNTAX
        assert c.get("sink") == sink and c.get("recent") != 1
        for call in (lambda: c.set_param("norm\0junk", 1), lambda: c.get_param("norm\0junk"),
                     lambda: c.set_param("norm\0junk", "lifetime")):
            with pytest.raises(kvc.Error) as e:
                call()
            assert "NUL" in e.value.detail
        assert c.get_param("norm") == 0
    with pytest.raises(kvc.Error) as e:
        kvc.policy_info("h2o\0")
    assert e.value.code == kvc.Status.EINVAL
    before = kvc.active_isa()
    with pytest.raises(kvc.Error) as e:
        kvc.set_isa("scalar\0")
    assert e.value.code == kvc.Status.EINVAL and kvc.active_isa() == before


def test_non_str_names_rejected():
    with pytest.raises(TypeError):
        kvc.policy_info(b"h2o")
    with pytest.raises(TypeError):
        kvc.set_isa(b"scalar")
    with small("h2o") as c, pytest.raises(TypeError):
        c.get_param(b"norm")


def test_nul_in_python_policy_strings_rejected():
    class P(kvc.Policy):
        name = "p"
        params = (kvc.Param("x", 0, 0, 1, help="bad\0help"),)

    with pytest.raises(kvc.Error):
        small(P)

    class Q(kvc.Policy):
        name = "q"
        params = (kvc.Param("x\0y", 0, 0, 1),)

    with pytest.raises(ValueError):
        small(Q)

    class R(kvc.Policy):
        name = "r"
        params = (kvc.Param("x", 0, 0, 1, choices=("a", "b\0c")),)

    with pytest.raises(ValueError):
        small(R)


# ---------------------------------------------------------- select answers
class Answer(kvc.Policy):
    """Evicts whatever `answer(request)` says."""
    name = "answer"

    def __init__(self, answer):
        self.answer = answer

    def select(self, request):
        return self.answer(request)


def fill(c, n):
    k = array("f", [0.25] * 4)
    for _ in range(n):
        c.append(k, k)


@pytest.mark.parametrize("bad", [
    lambda r: [r.candidates[0] + 0.7],  # a float: int() would truncate it to a candidate
    lambda r: [float(r.candidates[0])],
    lambda r: [str(r.candidates[0])],   # int("3") == 3
    lambda r: [True],                   # True == 1, a candidate
    lambda r: [None],
])
def test_select_answer_types(bad):
    with small(Answer(bad)) as c:
        fill(c, 4)
        before = c.positions()
        with pytest.raises(kvc.PolicyError) as e:
            fill(c, 1)
        assert not e.value.completed and e.value.code == kvc.Status.EPOLICY
        assert c.positions() == before and c.stats.appends == 4


def test_select_numpy_integers_accepted():
    np = pytest.importorskip("numpy")
    with small(Answer(lambda r: np.array(r.candidates[:r.n_victims], dtype=np.int64))) as c:
        fill(c, 6)
        assert c.stats.evictions == 2


# ------------------------------------------------------ class attributes
@pytest.mark.parametrize("attr,value,exc", [
    ("default_recent", 2 ** 33, ValueError),  # used to become 0
    ("needs", 2 ** 32 + 1, ValueError),       # used to become 1
    ("default_sink", -1, ValueError),         # used to wrap to 2**32-1
    ("default_chunk", 2.5, TypeError),
    ("default_sink", "2", TypeError),
    ("needs", True, TypeError),
    ("default_scope", 2 ** 32 + 1, ValueError),  # used to become 1 (shared)
    ("default_scope", 2, ValueError),
    ("default_scope", "global", TypeError),
])
def test_policy_attributes_checked(attr, value, exc):
    cls = type("Bad", (kvc.Policy,), {"name": "bad", attr: value,
                                     "score": lambda self, g, slots: [0.0] * len(slots)})
    with pytest.raises(exc) as e:
        small(cls)
    assert attr in str(e.value)
    # the instance was not attached: a valid one works afterwards
    setattr(cls, attr, 0 if attr != "default_scope" else "shared")
    with small(cls) as c:
        fill(c, 6)
        assert len(c) == 4


def test_policy_attributes_numpy_and_limits_accepted():
    np = pytest.importorskip("numpy")

    class P(kvc.Policy):
        name = "p"
        needs = np.uint32(kvc.NEED_RNG)
        default_recent = kvc.RECENT_HALF
        default_sink = np.int64(1)
        default_scope = 1

        def score(self, group, slots):
            return [0.0] * len(slots)

    with small(P) as c:
        assert c.get("recent") == 2 and c.get("sink") == 1 and c.get("scope") == "shared"
