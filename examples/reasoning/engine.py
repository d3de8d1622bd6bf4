"""A PyTorch decoder whose KV cache is run by libkvc in INDEX mode.

This is the reference for an engine author who keeps K and V in their own
tensors (as Hugging Face's or vLLM's engines do) and lets libkvc decide which
tokens stay. Per layer the engine owns preallocated tensors
``k, v: [n_kv_heads, capacity, head_size]`` and asks libkvc, for every new
token, where to put it:

1. ``reservation = cache.reserve(pos, k_new, v_new)`` makes room: for each
   eviction group g it returns ``slots[g]``, the slot to write, and
   ``evicted[g]``, the positions it dropped to free it (key and value rows are
   handed over so that policies ranking by key norm or value size see them).
2. The engine writes the token's key and value rows at those slots and marks
   the evicted positions' slots empty in its own slot -> position table
   (``slot_pos``; libkvc's ``positions()`` holds the same map).
3. It attends over the occupied slots (``slot_pos >= 0``) with its own code.
4. It reports the softmax weights per slot with ``cache.observe(group, mass)``:
   for each kv head, the mean over the query heads that read it (the GQA
   average STORE mode's fused kernel hands the policy); in shared scope one
   group, the mean over all query heads. Attention-free policies (window,
   sink, random, knorm, ...) need no observation and get none.

The model is examples/reasoning/model.py's Transformer, used piece by piece
(its projections, RoPE, feed-forward), so that the decoder computes the same
function as the model's full-sequence forward and as the C runner
(examples/llama), which drives the same policies in STORE mode: the
differential test (differential.py) checks that both make the same evictions
and the same greedy tokens.

    dec = Decoder(M.load("model.bin"), capacity=128, policy="h2o")
    logits = dec.step(token, pos)      # one token through every layer
"""

import math
import os
import sys

import torch

_here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _here)
try:
    import kvc
except ImportError:  # running from the source tree: the binding sits in examples/python
    sys.path.insert(0, os.path.join(_here, "..", "python"))
    import kvc
import model as M  # noqa: E402

# Policy needs that mean "this policy reads attention": plain mass, the
# query-window scores (which INDEX mode replaces by the observed mass), and the
# recent queries themselves (likewise replaced in INDEX mode; flag of 0.2).
_READS_ATTENTION = kvc.NEED_ATTN | kvc.NEED_QUERY_WINDOW | getattr(kvc, "NEED_QUERIES", 0x80)


def policy_reads_attention(cache):
    """Does the cache's policy use observed attention mass? (Unknown: assume yes.)"""
    try:
        return bool(kvc.policy_info(cache.policy_name).needs & _READS_ATTENTION)
    except kvc.Error:  # a policy written in Python: its needs are its own
        pol = cache.policy
        return pol is None or bool(getattr(pol, "needs", _READS_ATTENTION) & _READS_ATTENTION)


class LayerCache:
    """One layer's K/V tensors, with libkvc deciding the slots (INDEX mode).

    ``policy`` is a libkvc spec ("h2o", "tova recent=8", ...); ``options`` are
    cache options (seed, sink, recent, scope, ...), as for ``kvc.Cache``.
    """

    def __init__(self, n_kv_heads, n_q_heads, head_size, capacity, policy="full", **options):
        self.n_kv, self.n_q, self.hs, self.cap = n_kv_heads, n_q_heads, head_size, capacity
        self.cache = kvc.Cache(n_kv_heads, n_q_heads, head_size, capacity, mode="index", policy=policy,
                               **options)
        self.cache.prepare()  # freeze the options now: groups and scope are final from here on
        self.groups = self.cache.groups  # n_kv_heads in head scope, 1 in shared scope
        # kv head h lives in group h (head scope) or in the single group (shared scope)
        self.group_of_head = [h if self.groups > 1 else 0 for h in range(n_kv_heads)]
        self.k = torch.zeros(n_kv_heads, capacity, head_size)
        self.v = torch.zeros(n_kv_heads, capacity, head_size)
        self.slot_pos = torch.full((self.groups, capacity), -1, dtype=torch.long)
        self.observe = policy_reads_attention(self.cache)
        self.scale = 1.0 / math.sqrt(head_size)
        self.last = None          # the last step's Reservation, and
        self.last_weights = None  # its softmax weights [n_kv, q heads per kv head, cap]: for tests and traces

    def close(self):
        self.cache.close()

    @torch.no_grad()
    def append(self, pos, k, v):
        """Store the token at `pos`: k and v are [n_kv_heads, head_size] float32.
        Returns libkvc's Reservation (slots and evicted positions per group)."""
        k, v = k.detach().float().contiguous(), v.detach().float().contiguous()
        r = self.cache.reserve(pos, k.numpy(), v.numpy())
        for g in range(self.groups):
            row = self.slot_pos[g]
            for p in r.evicted[g]:                    # the freed slots are masked from now on
                row[row == p] = -1
            row[r.slots[g]] = pos
        for h in range(self.n_kv):
            s = r.slots[self.group_of_head[h]]
            self.k[h, s] = k[h]
            self.v[h, s] = v[h]
        self.last = r
        return r

    @torch.no_grad()
    def attend(self, q):
        """Decode attention of q [n_q_heads, head_size] over the occupied slots;
        reports the weights to libkvc. Returns [n_q_heads * head_size]."""
        ratio = self.n_q // self.n_kv
        occupied = self.slot_pos[self.group_of_head] >= 0               # [n_kv, cap]
        scores = torch.einsum("krd,kcd->krc", q.view(self.n_kv, ratio, self.hs), self.k) * self.scale
        scores = scores.masked_fill(~occupied[:, None, :], float("-inf"))
        w = torch.softmax(scores, dim=-1)                                # [n_kv, ratio, cap]
        out = torch.einsum("krc,kcd->krd", w, self.v)
        if self.observe:
            if self.groups == 1:   # shared scope: one group, the mean over every query head
                self.cache.observe(0, w.reshape(self.n_q, self.cap).mean(0).numpy())
            else:                  # head scope: kv head h's group, the mean over its query heads
                mass = w.mean(1)
                for h in range(self.n_kv):
                    self.cache.observe(h, mass[h].numpy())
        self.last_weights = w
        return out.reshape(self.n_q * self.hs)


class Decoder:
    """Token-by-token decoding of a model.Transformer over libkvc-managed
    caches, one LayerCache per layer (seed + layer as the C runner does)."""

    def __init__(self, model, capacity, policy="full", seed=42, **options):
        self.model = model.eval()
        c = model.c
        self.c = c
        self.layers = [LayerCache(c.n_kv_heads, c.n_heads, c.head_size, capacity, policy, seed=seed + l,
                                  **options) for l in range(c.n_layers)]

    def close(self):
        for lc in self.layers:
            lc.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @torch.no_grad()
    def step(self, token, pos):
        """Run `token` at position `pos` through every layer; returns the logits."""
        m, c = self.model, self.c
        cos, sin = M.rope_tables(c.head_size, torch.tensor([pos]))
        x = m.tok_emb.weight[token].view(1, 1, c.dim)
        for block, lc in zip(m.layers, self.layers):
            q, k, v = block.qkv(x, cos, sin)                    # [1,1,H,hs], [1,1,KV,hs] (K after RoPE)
            lc.append(pos, k[0, 0], v[0, 0])
            att = lc.attend(q[0, 0])
            x = x + block.wo(att.view(1, 1, c.dim))
            x = x + block.ffn(x)
        return (m.norm(x) @ m.tok_emb.weight.t()).view(-1)

    def generate(self, prompt, steps, on_step=None):
        """Feed `prompt` (token ids) then decode `steps` greedy tokens; returns them.
        on_step(pos, token, logits) runs after every forward."""
        out, tok = [], prompt[0]
        for pos in range(len(prompt) - 1 + steps):
            logits = self.step(tok, pos)
            if on_step:
                on_step(pos, tok, logits)
            if pos + 1 < len(prompt):
                tok = prompt[pos + 1]
            else:
                tok = int(torch.argmax(logits))
                out.append(tok)
        return out
