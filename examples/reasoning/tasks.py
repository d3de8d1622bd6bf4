"""Synthetic long-context tasks of the proving ground, over a 128-token vocabulary.

Every instance is a list of token ids and a list of flags of the same length:
``PROMPT`` tokens are read as given, ``FORCED`` tokens are scored (the model's
prediction at the position before is compared with them) and then read as
given (a question stream the user writes), and ``GEN`` tokens are scored and
then replaced by the model's own prediction (decoding). Each generator fills
exactly ``length`` tokens, so that instances of a task can run in lockstep.

Tasks (the distances that matter are long: a sliding window shorter than the
distance between a fact and its use cannot answer):

- ``recall``: associative recall with long gaps (MQAR-like). Key-value pairs
  (keys and values from disjoint halves of the symbols) come first; then filler with questions ``? k v`` spread until the end.
- ``needle``: a passkey of 5 distinct symbols at a controlled depth in filler,
  asked for at the end.
- ``chase``: k-hop pointer chasing. A random permutation written as facts
  ``a b ;`` in random order, filler, then ``? x :`` and the model writes the
  chain x -> p(x) -> p(p(x)) ... hop by hop (16 hops).
- ``copy`` (training only): a symbol string repeated.
- ``vt``: variable tracking while decoding. Links ``a > b ;`` of three chains
  are scattered through filler; ``? a :`` asks the model to write the chain
  that starts at a, one variable per step, then ``.``.
"""

import random

PAD, BOS, EOS, BAR, SEMI, QUES, COLON, EQ, ARROW, DOT = range(10)
TAG = {"recall": 10, "needle": 11, "chase": 12, "vt": 13, "copy": 14}
SYM0, NSYM = 16, 64       # symbols: keys, values, nodes, variables
FILL0, NFILL = 80, 32     # filler words
VOCAB = 128
PROMPT, FORCED, GEN = 0, 1, 2
TASKS = ("recall", "needle", "chase", "vt")
CHASE_HOPS = 16


def token_names():
    """Printable name of every token id (the tokenizer file of the checkpoint)."""
    names = ["<pad>", "<s>", "</s>", "|", ";", "?", ":", "=", ">", "."]
    names += ["REC", "NDL", "HOP", "VAR", "CPY", "<u15>"]
    names += ["s%02d" % i for i in range(NSYM)]
    names += ["f%02d" % i for i in range(NFILL)]
    names += ["<u%d>" % i for i in range(len(names), VOCAB)]
    return names


def _filler(rng, n):
    return [FILL0 + rng.randrange(NFILL) for _ in range(n)]


def _split(rng, total, parts):
    """`parts` non-negative integers summing to `total`, uniformly spread."""
    cuts = sorted(rng.randrange(total + 1) for _ in range(parts - 1))
    return [b - a for a, b in zip([0] + cuts, cuts + [total])]


def recall(rng, length):
    n_pairs = max(4, min(16, length // 48))
    n_q = max(4, min(16, length // 40))
    # keys and values from disjoint halves of the symbols (as in MQAR), so a
    # key's only earlier occurrence is the one its value follows
    keys = rng.sample(range(NSYM // 2), n_pairs)
    vals = [NSYM // 2 + rng.randrange(NSYM // 2) for _ in keys]
    toks = [BOS, TAG["recall"], BAR]
    for k, v in zip(keys, vals):
        toks += [SYM0 + k, SYM0 + v, SEMI]
    toks.append(BAR)
    flags = [PROMPT] * len(toks)
    free = length - len(toks) - 3 * n_q
    gaps = _split(rng, free, n_q + 1)
    for i in range(n_q):
        toks += _filler(rng, gaps[i])
        flags += [PROMPT] * gaps[i]
        j = rng.randrange(n_pairs)
        toks += [QUES, SYM0 + keys[j], SYM0 + vals[j]]
        flags += [PROMPT, PROMPT, FORCED]
    toks += _filler(rng, gaps[-1])
    flags += [PROMPT] * gaps[-1]
    return toks, flags


def needle(rng, length, depth=None):
    key = [SYM0 + s for s in rng.sample(range(NSYM), 5)]
    head = [BOS, TAG["needle"], BAR]
    tail = [QUES, EQ] + key
    hay = length - len(head) - len(tail) - 7
    if depth is None:
        depth = rng.uniform(0.02, 0.98)
    at = int(round(depth * hay))
    toks = head + _filler(rng, at) + [EQ] + key + [DOT] + _filler(rng, hay - at) + tail
    flags = [PROMPT] * (length - 5) + [GEN] * 5
    return toks, flags


def chase(rng, length, n_facts=None):
    if n_facts is None:
        n_facts = max(8, min(64, length // 16))
    nodes = rng.sample(range(NSYM), n_facts)
    perm = nodes[:]
    rng.shuffle(perm)
    succ = dict(zip(nodes, perm))
    order = nodes[:]
    rng.shuffle(order)
    toks = [BOS, TAG["chase"], BAR]
    for a in order:
        toks += [SYM0 + a, SYM0 + succ[a], SEMI]
    toks.append(BAR)
    x = rng.choice(nodes)
    chain = []
    y = x
    for _ in range(CHASE_HOPS):
        y = succ[y]
        chain.append(SYM0 + y)
    gap = length - len(toks) - 3 - CHASE_HOPS
    toks += _filler(rng, gap) + [QUES, SYM0 + x, COLON] + chain
    flags = [PROMPT] * (length - CHASE_HOPS) + [GEN] * CHASE_HOPS
    return toks, flags


def vt(rng, length):
    n_chains = 3 if length >= 128 else 2
    longest = 6 if length >= 128 else 4
    lens = [rng.randint(3, longest) for _ in range(n_chains)]
    syms = rng.sample(range(NSYM), sum(lens))
    chains, at = [], 0
    for n in lens:
        chains.append(syms[at:at + n])
        at += n
    links = [[(c[i], c[i + 1]) for i in range(len(c) - 1)] for c in chains]
    # interleave the chains' links, keeping each chain's own order
    seq = []
    cursors = [0] * n_chains
    while any(cursors[i] < len(links[i]) for i in range(n_chains)):
        i = rng.choice([i for i in range(n_chains) if cursors[i] < len(links[i])])
        seq.append(links[i][cursors[i]])
        cursors[i] += 1
    q = rng.randrange(n_chains)
    answer = [SYM0 + s for s in chains[q][1:]] + [DOT]
    head = [BOS, TAG["vt"], BAR]
    tail = [QUES, SYM0 + chains[q][0], COLON] + answer
    free = length - len(head) - len(tail) - 4 * len(seq)
    gaps = _split(rng, free, len(seq) + 1)
    toks = head[:]
    for (a, b), g in zip(seq, gaps):
        toks += _filler(rng, g) + [SYM0 + a, ARROW, SYM0 + b, SEMI]
    toks += _filler(rng, gaps[-1]) + tail
    flags = [PROMPT] * (length - len(answer)) + [GEN] * len(answer)
    return toks, flags


def copy(rng, length):
    """Training aid, never evaluated: a random symbol string, filler, and the
    string again. Each token of the second copy is found by looking up the
    token before it in the first copy, the lookup every task above is built
    on; the random lengths keep the distance from being a constant the model
    could learn instead. It gives the optimiser that signal at every
    position, so the lookup forms early."""
    n = rng.randint(4, min(NSYM, (length - 4) // 2))
    gap = rng.randint(0, length - 4 - 2 * n)
    s = [SYM0 + x for x in rng.sample(range(NSYM), n)]  # distinct: every lookup has one answer
    toks = [BOS, TAG["copy"], BAR] + s + _filler(rng, gap) + [BAR] + s
    tail = length - len(toks)
    toks += _filler(rng, tail)
    flags = [PROMPT] * (n + gap + 4) + [FORCED] * n + [PROMPT] * tail
    return toks, flags


GENERATORS = {"recall": recall, "needle": needle, "chase": chase, "vt": vt, "copy": copy}


def make(task, rng, length):
    toks, flags = GENERATORS[task](rng, length)
    assert len(toks) == length == len(flags), (task, len(toks), len(flags), length)
    assert all(0 <= t < VOCAB for t in toks)
    return toks, flags


if __name__ == "__main__":
    names = token_names()
    r = random.Random(1)
    for t in TASKS:
        toks, flags = make(t, r, 160)
        print(t, " ".join(names[x] + ("*" if f else "") for x, f in zip(toks, flags)))
