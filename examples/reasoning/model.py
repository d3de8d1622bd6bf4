"""The proving-ground transformer in PyTorch: Llama architecture (RMSNorm,
rotary embeddings on interleaved pairs, grouped-query attention, SwiGLU, tied
classifier), numerically the same model as examples/llama's C forward pass.

Also reads and writes llama2.c's legacy checkpoint format, which the C runner
loads: seven int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads,
vocab_size, seq_len; a positive vocab_size means a tied classifier), then the
f32 tensors in file order, then two unused RoPE tables."""

import math
import struct

import torch
import torch.nn as nn
import torch.nn.functional as F


class Config:
    def __init__(self, dim=64, hidden_dim=192, n_layers=4, n_heads=4, n_kv_heads=2, vocab_size=128,
                 seq_len=1024):
        self.dim, self.hidden_dim, self.n_layers = dim, hidden_dim, n_layers
        self.n_heads, self.n_kv_heads = n_heads, n_kv_heads
        self.vocab_size, self.seq_len = vocab_size, seq_len
        self.head_size = dim // n_heads

    def header(self):
        return [self.dim, self.hidden_dim, self.n_layers, self.n_heads, self.n_kv_heads, self.vocab_size,
                self.seq_len]


def rope_tables(head_size, positions):
    """cos and sin of pos * 10000^(-2j/head_size), shape [len(positions), head_size/2],
    computed in float64 like the C runner."""
    j = torch.arange(head_size // 2, dtype=torch.float64)
    inv = torch.pow(torch.tensor(10000.0, dtype=torch.float64), -2.0 * j / head_size)
    ang = positions.to(torch.float64)[:, None] * inv[None, :]
    return torch.cos(ang).float(), torch.sin(ang).float()


def apply_rope(x, cos, sin):
    """x [..., T, heads, head_size]; rotate pairs (2j, 2j+1); cos/sin [T, head_size/2]."""
    a, b = x[..., 0::2], x[..., 1::2]
    c, s = cos[:, None, :], sin[:, None, :]
    out = torch.stack((a * c - b * s, a * s + b * c), dim=-1)
    return out.flatten(-2)


class RMSNorm(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * self.weight


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        hs, kv = c.head_size, c.n_kv_heads * c.head_size
        self.c = c
        self.attn_norm = RMSNorm(c.dim)
        self.wq = nn.Linear(c.dim, c.dim, bias=False)
        self.wk = nn.Linear(c.dim, kv, bias=False)
        self.wv = nn.Linear(c.dim, kv, bias=False)
        self.wo = nn.Linear(c.dim, c.dim, bias=False)
        self.ffn_norm = RMSNorm(c.dim)
        self.w1 = nn.Linear(c.dim, c.hidden_dim, bias=False)
        self.w2 = nn.Linear(c.hidden_dim, c.dim, bias=False)
        self.w3 = nn.Linear(c.dim, c.hidden_dim, bias=False)
        del hs

    def qkv(self, x, cos, sin):
        """q [B,T,H,hs], k and v [B,T,KV,hs], rotated."""
        c = self.c
        B, T, _ = x.shape
        h = self.attn_norm(x)
        q = self.wq(h).view(B, T, c.n_heads, c.head_size)
        k = self.wk(h).view(B, T, c.n_kv_heads, c.head_size)
        v = self.wv(h).view(B, T, c.n_kv_heads, c.head_size)
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v

    def ffn(self, x):
        h = self.ffn_norm(x)
        return self.w2(F.silu(self.w1(h)) * self.w3(h))

    def forward(self, x, cos, sin, mask):
        c = self.c
        B, T, _ = x.shape
        q, k, v = self.qkv(x, cos, sin)
        g = c.n_heads // c.n_kv_heads
        q = q.transpose(1, 2)                                  # B H T hs
        k = k.transpose(1, 2).repeat_interleave(g, dim=1)      # B H T hs
        v = v.transpose(1, 2).repeat_interleave(g, dim=1)
        att = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(c.head_size)) + mask
        y = torch.softmax(att, dim=-1) @ v                     # B H T hs
        x = x + self.wo(y.transpose(1, 2).reshape(B, T, c.dim))
        return x + self.ffn(x)


class Transformer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.tok_emb = nn.Embedding(c.vocab_size, c.dim)
        self.layers = nn.ModuleList(Block(c) for _ in range(c.n_layers))
        self.norm = RMSNorm(c.dim)
        self.apply(self._init)
        for l in self.layers:  # scaled residual projections (GPT-2 style) for a stable start
            for w in (l.wo.weight, l.w2.weight):
                nn.init.normal_(w, 0.0, 0.02 / math.sqrt(2 * c.n_layers))

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, 0.02)

    def forward(self, tokens):
        B, T = tokens.shape
        cos, sin = rope_tables(self.c.head_size, torch.arange(T))
        mask = torch.full((T, T), float("-inf")).triu(1)
        x = self.tok_emb(tokens)
        for l in self.layers:
            x = l(x, cos, sin, mask)
        return self.norm(x) @ self.tok_emb.weight.t()


def export(model, path):
    """Write `model` as a llama2.c legacy checkpoint (tied classifier)."""
    c = model.c
    L = model.layers
    tensors = [model.tok_emb.weight]
    tensors += [l.attn_norm.weight for l in L]
    tensors += [l.wq.weight for l in L] + [l.wk.weight for l in L] + [l.wv.weight for l in L]
    tensors += [l.wo.weight for l in L] + [l.ffn_norm.weight for l in L]
    tensors += [l.w1.weight for l in L] + [l.w2.weight for l in L] + [l.w3.weight for l in L]
    tensors += [model.norm.weight]
    with open(path, "wb") as f:
        f.write(struct.pack("7i", *c.header()))
        for t in tensors:
            f.write(t.detach().float().contiguous().numpy().tobytes())
        cos, sin = rope_tables(c.head_size, torch.arange(c.seq_len))
        f.write(cos.numpy().tobytes())
        f.write(sin.numpy().tobytes())


def load(path):
    """Read a checkpoint written by export() back into a Transformer."""
    import numpy as np
    with open(path, "rb") as f:
        hdr = struct.unpack("7i", f.read(28))
        data = np.frombuffer(f.read(), dtype=np.float32)
    c = Config(*hdr[:5], vocab_size=abs(hdr[5]), seq_len=hdr[6])
    m = Transformer(c)
    at = 0

    def take(shape):
        nonlocal at
        n = int(np.prod(shape))
        t = torch.from_numpy(data[at:at + n].copy()).view(*shape)
        at += n
        return t

    kv = c.n_kv_heads * c.head_size
    with torch.no_grad():
        m.tok_emb.weight.copy_(take((c.vocab_size, c.dim)))
        for name, shape in (("attn_norm", (c.dim,)), ("wq", (c.dim, c.dim)), ("wk", (kv, c.dim)),
                            ("wv", (kv, c.dim)), ("wo", (c.dim, c.dim)), ("ffn_norm", (c.dim,)),
                            ("w1", (c.hidden_dim, c.dim)), ("w2", (c.dim, c.hidden_dim)),
                            ("w3", (c.hidden_dim, c.dim))):
            for l in m.layers:
                getattr(l, name).weight.copy_(take(shape))
        m.norm.weight.copy_(take((c.dim,)))
    return m


def write_tokenizer(names, path):
    """llama2.c tokenizer file: max length, then per token a score, a length and
    its bytes. Pieces start with a space so that printed text is readable."""
    pieces = [(" " + n).encode() for n in names]
    with open(path, "wb") as f:
        f.write(struct.pack("i", max(len(p) for p in pieces)))
        for p in pieces:
            f.write(struct.pack("fi", 0.0, len(p)))
            f.write(p)
