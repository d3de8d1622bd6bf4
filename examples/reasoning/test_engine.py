"""Tests of the INDEX-mode PyTorch decoder (engine.py) on the proving-ground
checkpoint: the same function as the model's full-sequence forward, libkvc's
slot map mirrored exactly, K/V rows where libkvc said, empty slots masked,
and observations only for policies that read attention.

    KVC_REASONING_MODEL=path/model.bin /usr/bin/python3 -m pytest -q examples/reasoning/test_engine.py
"""

import os
import random
import sys

import pytest
import torch

_here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _here)
import engine as E  # noqa: E402
import model as M  # noqa: E402
import tasks as T  # noqa: E402

MODEL = os.environ.get("KVC_REASONING_MODEL", os.path.join(_here, "model", "model.bin"))


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    if not os.path.exists(MODEL):
        pytest.fail("checkpoint %s not found (set KVC_REASONING_MODEL)" % MODEL)
    return M.load(MODEL)


def instance(task="chase", length=96, seed=3):
    return T.make(task, random.Random(seed), length)[0]


@torch.no_grad()
def reference(model, toks):
    """Logits and rotated K/V of every position from the full-sequence forward."""
    logits = model(torch.tensor([toks]))[0]
    cos, sin = M.rope_tables(model.c.head_size, torch.arange(len(toks)))
    x = model.tok_emb(torch.tensor([toks]))
    mask = torch.full((len(toks), len(toks)), float("-inf")).triu(1)
    kv = []
    for block in model.layers:
        _, k, v = block.qkv(x, cos, sin)
        kv.append((k[0], v[0]))
        x = block(x, cos, sin, mask)
    return logits, kv


def test_full_cache_is_the_model(model):
    toks = instance()
    ref, _ = reference(model, toks)
    with E.Decoder(model, capacity=len(toks), policy="full") as dec:
        got = torch.stack([dec.step(t, p) for p, t in enumerate(toks)])
    assert (got - ref).abs().max().item() < 1e-4 * max(1.0, ref.abs().max().item())
    assert torch.equal(got.argmax(-1), ref.argmax(-1))


@pytest.mark.parametrize("spec", ["h2o", "tova", "knorm", "h2o chunk=4", "window block=4"])
def test_slots_follow_libkvc(model, spec):
    """At every step the engine's slot map is libkvc's, each occupied slot of
    layer 0 holds its token's K/V rows (deeper layers' rows depend on what was
    evicted before), and empty slots get no weight."""
    toks = instance(length=80)
    _, kv = reference(model, toks)
    with E.Decoder(model, capacity=24, policy=spec) as dec:
        evicted = 0
        for pos, t in enumerate(toks):
            dec.step(t, pos)
            for l, lc in enumerate(dec.layers):
                evicted += sum(len(e) for e in lc.last.evicted)
                for g in range(lc.groups):
                    assert lc.cache.positions(g) == lc.slot_pos[g].tolist()
                k_ref, v_ref = kv[l]
                for h in range(lc.n_kv):
                    sp = lc.slot_pos[lc.group_of_head[h]]
                    occ = (sp >= 0).nonzero().view(-1)
                    if l == 0:
                        assert torch.allclose(lc.k[h, occ], k_ref[sp[occ], h], atol=1e-4), (spec, pos, h)
                        assert torch.allclose(lc.v[h, occ], v_ref[sp[occ], h], atol=1e-4), (spec, pos, h)
                    empty = (sp < 0).nonzero().view(-1)
                    if len(empty):
                        assert lc.last_weights[h][:, empty].abs().max().item() == 0.0
        assert evicted > 0


def test_observes_only_when_the_policy_reads_attention(model):
    toks = instance(length=48)
    for spec, reads in (("h2o", True), ("tova", True), ("knorm", False), ("window", False)):
        with E.Decoder(model, capacity=16, policy=spec) as dec:
            for p, t in enumerate(toks):
                dec.step(t, p)
            attends = dec.layers[0].cache.stats.attends
            # every step but the last is flushed to the policy by the next reserve
            assert attends == (len(toks) - 1 if reads else 0), (spec, attends)


def test_shared_scope_is_one_group(model):
    with E.Decoder(model, capacity=16, policy="h2o", scope="shared") as dec:
        for p, t in enumerate(instance(length=48)):
            dec.step(t, p)
        lc = dec.layers[0]
        assert lc.groups == 1 and lc.group_of_head == [0] * model.c.n_kv_heads
        assert len(lc.last.slots) == 1
