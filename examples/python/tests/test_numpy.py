"""attend and the standalone kernel against a float64 numpy reference, and
the H2O policy against a small numpy model of its rule."""
import pytest

import kvc

np = pytest.importorskip("numpy")


def reference(q, K, V, n_kv, scale):
    """q: (n_q, d); K, V: (n_kv, n, d) in float64. Returns out (n_q, d), weights (n_q, n)."""
    n_q, d = q.shape
    r = n_q // n_kv
    out = np.empty((n_q, d))
    w = np.empty((n_q, K.shape[1]))
    for h in range(n_q):
        s = K[h // r] @ q[h] * scale
        e = np.exp(s - s.max())
        w[h] = e / e.sum()
        out[h] = w[h] @ V[h // r]
    return out, w


def to_bf16(x):
    """float32 -> bfloat16 bits, round to nearest even; and back to float32."""
    b = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    b = ((b + 0x7FFF + ((b >> 16) & 1)) >> 16).astype(np.uint16)
    return b, (b.astype(np.uint32) << 16).view(np.float32)


def quantise(x, dtype):
    if dtype == "f16":
        return x.astype(np.float16).astype(np.float32)
    if dtype == "bf16":
        return to_bf16(x)[1]
    return x


@pytest.mark.parametrize("dtype,tol", [("f32", 2e-5), ("f16", 2e-5), ("bf16", 2e-5)])
@pytest.mark.parametrize("n_kv,n_q,d", [(1, 1, 16), (2, 8, 64), (4, 4, 33)])
def test_attend_matches_numpy(dtype, tol, n_kv, n_q, d):
    rng = np.random.default_rng(n_kv * 100 + d)
    n = 50
    K = rng.standard_normal((n, n_kv, d)).astype(np.float32)
    V = rng.standard_normal((n, n_kv, d)).astype(np.float32)
    with kvc.Cache(n_kv_heads=n_kv, n_q_heads=n_q, head_dim=d, capacity=64, dtype=dtype) as c:
        for t in range(n):
            c.append(K[t], V[t])
        q = rng.standard_normal((n_q, d)).astype(np.float32)
        out = c.attend(q)
        assert isinstance(out, np.ndarray) and out.shape == (n_q, d) and out.dtype == np.float32
        Kq = quantise(K, dtype).transpose(1, 0, 2).astype(np.float64)
        Vq = quantise(V, dtype).transpose(1, 0, 2).astype(np.float64)
        ref, _ = reference(q.astype(np.float64), Kq, Vq, n_kv, 1 / np.sqrt(d))
        np.testing.assert_allclose(out, ref, rtol=tol, atol=tol)
        # the stored rows read back as the quantised values
        k0, v0 = c.read(n_kv - 1, 7)
        np.testing.assert_array_equal(np.frombuffer(k0, np.float32), quantise(K, dtype)[7, n_kv - 1])
        # out= filled in place, flat numpy buffers work too
        flat = np.zeros(n_q * d, np.float32)
        assert c.attend(q.ravel(), out=flat) is flat
        np.testing.assert_allclose(flat.reshape(n_q, d), ref, rtol=tol, atol=tol)


def test_attend_over_residents_after_eviction():
    rng = np.random.default_rng(3)
    n_kv, n_q, d, cap = 2, 4, 16, 24
    K = rng.standard_normal((200, n_kv, d)).astype(np.float32)
    V = rng.standard_normal((200, n_kv, d)).astype(np.float32)
    with kvc.Cache(n_kv_heads=n_kv, n_q_heads=n_q, head_dim=d, capacity=cap,
                   policy="h2o recent=6", scale=0.3) as c:
        for t in range(200):
            c.append(K[t], V[t])
            q = rng.standard_normal((n_q, d)).astype(np.float32)
            out = c.attend(q)
            # per kv head: attention over exactly the resident positions, in slot order
            for g in range(n_kv):
                pos = np.array(c.positions(g)[:len(c)])
                assert len(set(pos)) == len(pos)
                Kg, Vg = K[pos, g][None].astype(np.float64), V[pos, g][None].astype(np.float64)
                r = n_q // n_kv
                ref, _ = reference(q[g * r:(g + 1) * r].astype(np.float64), Kg, Vg, 1, 0.3)
                np.testing.assert_allclose(out[g * r:(g + 1) * r], ref, rtol=2e-5, atol=2e-5)


def test_h2o_matches_a_numpy_model():
    """Head scope, no sink: each kv head keeps its `recent` newest tokens and,
    among the others, evicts the least accumulated mass (mean over its query
    heads), ties to the older. The model sees the softmax weights numpy computes."""
    rng = np.random.default_rng(11)
    n_kv, n_q, d, cap, recent = 2, 4, 8, 12, 3
    r = n_q // n_kv
    with kvc.Cache(n_kv_heads=n_kv, n_q_heads=n_q, head_dim=d, capacity=cap,
                   policy="h2o", recent=recent, sink=0) as c:
        model = [dict() for _ in range(n_kv)]  # position -> accumulated mass
        K, V = {}, {}
        for t in range(120):
            k = rng.standard_normal((n_kv, d)).astype(np.float32)
            v = rng.standard_normal((n_kv, d)).astype(np.float32)
            K[t], V[t] = k, v
            for g in range(n_kv):
                if len(model[g]) == cap:
                    cands = sorted(model[g])[:-recent]
                    victim = min(cands, key=lambda p: (model[g][p], p))
                    del model[g][victim]
                model[g][t] = 0.0
            c.append(k, v)
            q = rng.standard_normal((n_q, d)).astype(np.float32) * 3
            c.attend(q)
            for g in range(n_kv):
                pos = [p for p in c.positions(g) if p >= 0]
                assert sorted(pos) == sorted(model[g]), (t, g)
                Kg = np.array([K[p][g] for p in pos], np.float64)[None]
                _, w = reference(q[g * r:(g + 1) * r].astype(np.float64), Kg, Kg, 1, 1 / np.sqrt(d))
                for j, p in enumerate(pos):
                    model[g][p] += float(w[:, j].mean())


@pytest.mark.parametrize("dtype", ["f32", "f16", "bf16"])
def test_standalone_attention_with_strides_and_weights(dtype):
    rng = np.random.default_rng(5)
    n_kv, n_q, d, n, rs = 2, 6, 20, 37, 24
    hs = n * rs + 8
    Kf = rng.standard_normal((n_kv, n, d)).astype(np.float32)
    Vf = rng.standard_normal((n_kv, n, d)).astype(np.float32)
    if dtype == "f32":
        store = lambda x: x  # noqa: E731
        buf_dtype = np.float32
    elif dtype == "f16":
        store = lambda x: x.astype(np.float16)  # noqa: E731
        buf_dtype = np.float16
    else:
        store = lambda x: to_bf16(x)[0]  # noqa: E731
        buf_dtype = np.uint16
    Kb = np.zeros(n_kv * hs, buf_dtype)
    Vb = np.zeros(n_kv * hs, buf_dtype)
    for h in range(n_kv):
        for j in range(n):
            Kb[h * hs + j * rs:h * hs + j * rs + d] = store(Kf[h, j])
            Vb[h * hs + j * rs:h * hs + j * rs + d] = store(Vf[h, j])
    q = rng.standard_normal((n_q, d)).astype(np.float32)
    out, w = kvc.attention(q, Kb, Vb, n_q_heads=n_q, n_kv_heads=n_kv, head_dim=d, n_keys=n,
                           dtype=dtype, row_stride=rs, head_stride=hs, scale=0.2, weights=True)
    ref, wref = reference(q.astype(np.float64), quantise(Kf, dtype).astype(np.float64),
                          quantise(Vf, dtype).astype(np.float64), n_kv, 0.2)
    np.testing.assert_allclose(out, ref, rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(w, wref, rtol=2e-5, atol=1e-6)
    # one kv head only: the other rows of out stay untouched
    part = np.full((n_q, d), 9.0, np.float32)
    kvc.attention(q, Kb, Vb, n_q_heads=n_q, n_kv_heads=n_kv, head_dim=d, n_keys=n, dtype=dtype,
                  row_stride=rs, head_stride=hs, scale=0.2, out=part, kv_range=(1, 2))
    np.testing.assert_allclose(part[3:], ref[3:], rtol=2e-5, atol=2e-5)
    assert (part[:3] == 9.0).all()


def test_standalone_attention_checks():
    q = np.zeros((2, 8), np.float32)
    K = np.zeros((1, 10, 8), np.float32)
    out = kvc.attention(q, K, K, n_q_heads=2, n_kv_heads=1, head_dim=8)
    np.testing.assert_allclose(out, 0.0)
    with pytest.raises(kvc.Error, match="reaches element"):
        kvc.attention(q, K, K[:, :5], n_q_heads=2, n_kv_heads=1, head_dim=8, n_keys=10)
    # float64 K (and non-contiguous K/V) are converted: same result as float32
    Kr = np.random.default_rng(1).standard_normal((1, 10, 8)).astype(np.float32)
    ref = kvc.attention(q + 1, Kr, Kr, n_q_heads=2, n_kv_heads=1, head_dim=8)
    np.testing.assert_array_equal(kvc.attention(q + 1, Kr.astype(np.float64), Kr, n_q_heads=2, n_kv_heads=1,
                                                head_dim=8), ref)
    np.testing.assert_array_equal(np.ravel(kvc.attention((q + 1).tolist(), Kr, Kr.tolist(), n_q_heads=2,
                                                         n_kv_heads=1, head_dim=8)), ref.ravel())
    with pytest.raises(kvc.Error, match="16-bit"):
        kvc.attention(q, K, K, n_q_heads=2, n_kv_heads=1, head_dim=8, dtype="f16")
    K2 = np.repeat(Kr, 2, axis=1)[:, ::2]  # a strided view of the same keys
    assert not K2.flags.c_contiguous
    np.testing.assert_array_equal(kvc.attention(q + 1, K2, K2, n_q_heads=2, n_kv_heads=1, head_dim=8), ref)
    with pytest.raises(kvc.Error) as ei:
        kvc.attention(q, K, K, n_q_heads=2, n_kv_heads=1, head_dim=8, kv_range=(1, 1))
    assert ei.value.status is kvc.Status.ERANGE


def test_numpy_buffers_are_used_in_place_and_checked():
    with kvc.Cache(n_kv_heads=1, n_q_heads=1, head_dim=4, capacity=4) as c:
        k = np.arange(4, dtype=np.float32)
        c.append(k, k)
        c.append(np.arange(8, dtype=np.float32)[::2].copy(), k)
        c.append(np.arange(8, dtype=np.float32)[::2], k)  # strided: copied
        c.append(np.arange(4.0), k)                       # float64: converted
        with pytest.raises(TypeError, match="convertible to float32"):
            c.append(np.array([1 + 2j] * 4), k)
        with pytest.raises(TypeError):
            c.append(np.array(["a"] * 4), k)
        with pytest.raises(kvc.Error, match="read-only"):
            ro = np.zeros(4, np.float32)
            ro.flags.writeable = False
            c.attend(k, out=ro)
        fortran = np.asfortranarray(np.ones((2, 2), np.float32))
        with pytest.raises(kvc.Error, match="not C-contiguous"):
            c.attend(k, out=fortran)  # an output is written in place: never copied
        out = np.empty(4, np.float32)
        c.attend(k, out=out)
        assert np.isfinite(out).all()
