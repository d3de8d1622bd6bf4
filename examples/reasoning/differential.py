"""Differential test: the PyTorch decoder on libkvc INDEX mode (engine.py)
against the C runner on libkvc STORE mode (examples/llama), on one model.

    /usr/bin/python3 examples/reasoning/differential.py [--model model.bin] [--llama build/examples/llama/llama]

For every prompt (task instances from tasks.py and a few hand-written token
lists), deterministic policy and budget, both engines feed the prompt token by
token and then decode greedily. The C runner writes a trace (--trace: per
position the argmax and per layer and group the evicted positions); the
PyTorch decoder records the same. Both must make the same evictions and
predict the same tokens.

Exact equality is not always possible: the two engines compute the same f32
model with sums in different orders (BLAS against plain loops, torch's
softmax against libkvc's kernel), so their attention masses, key norms and
logits agree to about 1e-6 relative, not bit for bit. Where two candidates'
scores are that close, either may be evicted. So a differing decision is
accepted only as a near-tie: recomputing the policy's score in float64 from
the PyTorch side's own numbers (a shadow of the policy, which must also agree
with libkvc's INDEX-mode choice at every eviction), the two victims' scores
must be within --rtol of each other (default 1e-4, about 100 times the noise);
a differing argmax only if the two tokens' logits are within --logit-tol
(default 1e-3). After such a flip the two runs no longer see the same cache,
so the comparison of that run stops there. Anything else is a failure. The
table says how many decisions were compared, how many were identical, how
many flipped on a near-tie, and how often the PyTorch side's decisions were
near-ties at all. Policies without scores (window, sink, random: positions and
the seeded generator only) must match exactly, and so must vase_dkv (whose
random projections this script does not reproduce: no shadow to call a
difference a near-tie).

Not compared, by design: vase and rkv rank by the recent queries in STORE mode
and by the observed mass in INDEX mode (different inputs), and keyformer
draws its Gumbel noise slot by slot, while the two modes lay slots out
differently (STORE refills a hole with the last resident, INDEX reuses the
freed slot), so the same token gets different noise.
"""

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

_here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _here)
import engine as E  # noqa: E402
import model as M  # noqa: E402
import tasks as T  # noqa: E402

# Policies whose decisions depend only on inputs both engines share (those the
# library has are compared).
POLICIES = ("window", "sink", "random", "h2o", "tova", "knorm", "vatp", "keydiff", "scissorhands", "vase_dkv")
# Compared without a shadow score: window, sink and random rank by position and
# the seeded generator only, so they must match exactly; vase_dkv's scores use a
# projection drawn from libkvc's generator at each eviction, which this script
# does not reproduce, so any difference fails it (none occurs on these prompts).
EXACT = ("window", "sink", "random", "vase_dkv")


class Shadow:
    """One layer and group seen from the PyTorch side: residents, and per
    position the float64 statistics the policies rank by."""

    def __init__(self, n, heads, d, history):
        self.resident = set()
        self.acc = np.zeros(n)                # accumulated mass (h2o, vatp)
        self.last = np.zeros(n)               # last step's mass (tova)
        self.knorm = np.zeros(n)              # key L2 norm (knorm), mean over the group's heads
        self.vl1 = np.zeros(n)                # value L1 norm (vatp), mean over the group's heads
        self.khat = np.zeros((n, heads, d))   # unit keys (keydiff)
        self.history = history                # scissorhands: ring of per-step flags "mass < 1/t",
        self.ring_lo = np.zeros((history, n), bool)  # certainly below (mass < (1 - rtol)/t)
        self.ring_hi = np.zeros((history, n), bool)  # possibly below (mass < (1 + rtol)/t)
        self.steps = 0

    def keep(self, policy, pos):
        """Keep-scores of positions `pos` (higher = kept) and their uncertainty
        (None: float scores, compared with rtol; else an integer band)."""
        if policy == "h2o":
            return self.acc[pos], None
        if policy == "tova":
            return self.last[pos], None
        if policy == "knorm":
            return -self.knorm[pos], None
        if policy == "vatp":
            return self.acc[pos] * self.vl1[pos], None
        if policy == "keydiff":  # anchor: mean unit key of every resident, per head
            res = sorted(self.resident)
            anchor = self.khat[res].sum(0)
            anchor /= np.maximum(np.linalg.norm(anchor, axis=-1, keepdims=True), 1e-300)
            return -(self.khat[pos] * anchor).sum(-1).mean(-1), None
        if policy == "scissorhands":  # -count of unimportant steps; a flag near 1/t may go either way
            lo, hi = self.ring_lo[:, pos].sum(0), self.ring_hi[:, pos].sum(0)
            return -(lo + hi) / 2.0, (hi - lo) / 2.0
        raise ValueError("no shadow score for policy %r" % policy)


def near(a, b, rtol, atol, ua=None, ub=None):
    """May scores a and b rank either way in the other engine?"""
    if ua is not None:  # integer scores: only within the flags' uncertainty, and only if there is some
        return ua + ub > 0 and abs(a - b) <= ua + ub
    return abs(a - b) <= rtol * max(abs(a), abs(b)) + atol


def prompts(length, n_per_task, seed):
    """(name, prompt ids, greedy steps): task instances cut before their first
    generated token, and hand-written lists."""
    out = []
    rng = random.Random(seed)
    for task in T.TASKS:
        for i in range(n_per_task):
            toks, flags = T.make(task, rng, length)
            cut = flags.index(T.GEN) if T.GEN in flags else len(toks)
            out.append(("%s#%d" % (task, i), toks[:cut], max(8, len(toks) - cut)))
    n = length
    # one filler word repeated with a period: equal keys up to RoPE, so key
    # norms tie up to rounding (the hard case for knorm)
    out.append(("periodic", [T.BOS] + [T.FILL0 + (i % 5) for i in range(n - 1)], 8))
    # symbols in a fixed stride, then a question the model never saw in training
    out.append(("stride", [T.BOS, T.TAG["chase"], T.BAR] + [T.SYM0 + (7 * i) % T.NSYM for i in range(n - 6)]
                + [T.QUES, T.SYM0 + 5, T.COLON], 12))
    # no BOS, unused token ids mixed in
    out.append(("no-bos", [(i * 37 + 11) % T.VOCAB for i in range(n)], 8))
    return out


def run_c(llama, model, tokenizer, policy, budget, seed, ids, steps, tmp):
    pf, tf = os.path.join(tmp, "prompt.ids"), os.path.join(tmp, "trace.txt")
    with open(pf, "w") as f:
        f.write(" ".join(map(str, ids)) + "\n")
    cmd = [llama, "-m", model, "-z", tokenizer, "-t", "0", "--no-stop", "--ids", "--steps", str(steps),
           "--policy", policy, "--budget", str(budget), "--seed", str(seed), "--prompt-ids", pf, "--trace", tf]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    if r.returncode:
        raise RuntimeError("%s failed (exit %d): %s" % (" ".join(cmd), r.returncode, r.stderr.strip()))
    steps_, evict = {}, {}
    with open(tf) as f:
        for line in f:
            w = line.split()
            if not w or w[0] == "#":
                continue
            if w[0] == "step":
                steps_[int(w[1])] = (int(w[2]), int(w[3]), float(w[4]))
            elif w[0] == "evict":
                evict[(int(w[1]), int(w[2]), int(w[3]))] = tuple(sorted(map(int, w[4:])))
    return steps_, evict


class Stats:
    def __init__(self):
        self.runs = self.ev = self.ev_same = self.ev_flip = 0
        self.tok = self.tok_same = self.tok_flip = self.cut = 0
        self.py_decisions = self.py_near = 0
        self.possible = 0
        self.max_flip_gap = 0.0
        self.failures = []


def run_py(m, policy, budget, seed, ids, steps, args, st):
    """Decode with the INDEX-mode engine, keeping a shadow of the policy's
    scores; returns (steps, evictions) as run_c, the scores frozen at each
    eviction, and the numbers of layers and groups."""
    n_total = len(ids) + steps
    steps_, evict = {}, {}
    dec = E.Decoder(m, capacity=budget, policy=policy, seed=seed)
    L = len(dec.layers)
    G = dec.layers[0].groups
    c0 = dec.layers[0].cache
    heads = m.c.n_kv_heads // G
    history = int(c0.get_param("history")) if policy == "scissorhands" else 1
    shadows = [[Shadow(n_total, heads, m.c.head_size, history) for _ in range(G)] for _ in range(L)]
    sink, recent = c0.get("sink"), c0.get("recent")
    frozen = {}  # (pos, layer, group) -> {position: (score, uncertainty)} at each eviction
    stats = policy in ("knorm", "vatp", "keydiff")

    def on_step(pos, tok, logits):
        for l, lc in enumerate(dec.layers):
            r = lc.last
            # this step's mass per slot, as the engine observed it (numpy: fast on tiny arrays)
            w = lc.last_weights.numpy().astype(np.float64)  # [n_kv, query heads per kv head, cap]
            masses = [w.reshape(-1, lc.cap).mean(0)] if G == 1 else w.mean(1)
            slot_pos = lc.slot_pos.numpy()
            for g in range(G):
                sh = shadows[l][g]
                ev = tuple(sorted(r.evicted[g]))
                if ev:
                    evict[(pos, l, g)] = ev
                    if policy not in EXACT:
                        check_decision(sh, pos, l, g, ev)
                    sh.resident.difference_update(ev)
                sh.resident.add(pos)
                hs = [g] if G > 1 else list(range(lc.n_kv))
                if stats:  # the new token's statistics, from the rows the engine wrote
                    s = r.slots[g]
                    k = lc.k.numpy()[hs, s].astype(np.float64)
                    sh.knorm[pos] = np.linalg.norm(k, axis=-1).mean()
                    sh.khat[pos] = k / np.maximum(np.linalg.norm(k, axis=-1, keepdims=True), 1e-12)
                    sh.vl1[pos] = np.abs(lc.v.numpy()[hs, s].astype(np.float64)).sum(-1).mean()
                sp = slot_pos[g]
                occ = sp >= 0
                p_occ, m_occ = sp[occ], masses[g][occ]
                sh.acc[p_occ] += m_occ
                sh.last[p_occ] = m_occ
                if policy == "scissorhands" and lc.observe:
                    row = sh.steps % sh.history
                    sh.ring_lo[:, pos] = sh.ring_hi[:, pos] = False  # a new token starts with no record
                    sh.ring_lo[row] = sh.ring_hi[row] = False
                    thr = 1.0 / (pos + 1)                            # t: tokens so far
                    sh.ring_lo[row, p_occ] = m_occ < thr * (1 - args.rtol)
                    sh.ring_hi[row, p_occ] = m_occ < thr * (1 + args.rtol)
                    sh.steps += 1
        steps_[pos] = (tok, int(torch.argmax(logits)), logits.double().numpy())

    def check_decision(sh, pos, l, g, ev):
        """Score the candidates libkvc chose among; its victim must be the
        shadow's lowest, up to a near-tie."""
        cands = np.array(sorted(p for p in sh.resident if sink <= p < pos - recent), dtype=np.int64)
        if len(cands) < 2:
            return
        ks, unc = sh.keep(policy, cands)
        u = unc if unc is not None else np.zeros(len(cands))
        frozen[(pos, l, g)] = {int(p): (float(x), None if unc is None else float(e))
                               for p, x, e in zip(cands, ks, u)}
        if len(ev) != 1:
            return
        order = np.lexsort((cands, ks))  # lowest score first, ties to the older
        i0, i1 = order[0], order[1]
        un = (lambda i: None) if unc is None else (lambda i: unc[i])
        st.py_decisions += 1
        st.py_near += near(ks[i0], ks[i1], args.rtol, args.atol, un(i0), un(i1))
        mine = int(np.nonzero(cands == ev[0])[0][0])
        if cands[i0] != ev[0] and not near(ks[i0], ks[mine], args.rtol, args.atol, un(i0), un(mine)):
            st.failures.append("%s budget %d pos %d layer %d group %d: libkvc INDEX evicted %d, the shadow "
                               "%s score says %d (scores %.9g vs %.9g)" % (policy, budget, pos, l, g, ev[0],
                                                                           policy, cands[i0], ks[mine],
                                                                           ks[i0]))

    dec.generate(ids, steps, on_step)
    # libkvc's own map must equal the engine's at the end
    for l, lc in enumerate(dec.layers):
        for g in range(G):
            if sorted(p for p in lc.cache.positions(g) if p >= 0) != sorted(shadows[l][g].resident):
                st.failures.append("%s budget %d: layer %d group %d: libkvc positions differ from the engine's"
                                   % (policy, budget, l, g))
    dec.close()
    return steps_, evict, frozen, L, G


def compare(policy, budget, name, n_prompt, c, py, args, st):
    """Walk both runs position by position until they part."""
    (c_steps, c_ev), (p_steps, p_ev, frozen, L, G) = c, py
    st.runs += 1
    where = "%s budget %d prompt %s" % (policy, budget, name)
    last = max(p_steps)
    if max(c_steps) != last:
        st.failures.append("%s: the C run has %d positions, the PyTorch run %d" % (where, max(c_steps) + 1,
                                                                                  last + 1))
        return
    for pos in range(last + 1):
        for l in range(L):
            for g in range(G):
                a, b = c_ev.get((pos, l, g), ()), p_ev.get((pos, l, g), ())
                if not a and not b:
                    continue
                st.ev += 1
                if a == b:
                    st.ev_same += 1
                    continue
                only_c, only_py = sorted(set(a) - set(b)), sorted(set(b) - set(a))
                sc = frozen.get((pos, l, g))
                if sc is not None and len(only_c) == len(only_py) == 1 and only_c[0] in sc:
                    (x, ux), (y, uy) = sc[only_c[0]], sc[only_py[0]]
                    if near(x, y, args.rtol, args.atol, ux, uy):
                        st.ev_flip += 1
                        gap = abs(x - y) / max(abs(x), abs(y), 1e-300)
                        st.max_flip_gap = max(st.max_flip_gap, gap)
                        if args.verbose:
                            print("  near-tie flip: %s pos %d layer %d group %d: C evicted %d, PyTorch %d "
                                  "(scores %.9g and %.9g, relative gap %.2g)"
                                  % (where, pos, l, g, only_c[0], only_py[0], x, y, gap), file=sys.stderr)
                        st.cut += 1
                        return
                st.failures.append("%s pos %d layer %d group %d: C evicted %s, PyTorch+INDEX %s%s"
                                   % (where, pos, l, g, list(a), list(b),
                                      "" if sc is None else " (PyTorch-side scores %s)"
                                      % ", ".join("%d: %.9g" % (p, sc[p][0]) for p in only_c + only_py if p in sc)))
                return
        ct, pt = c_steps[pos], p_steps[pos]
        st.tok += 1
        if ct[0] != pt[0]:
            st.failures.append("%s pos %d: fed token %d in C, %d in PyTorch" % (where, pos, ct[0], pt[0]))
            return
        if ct[1] == pt[1]:
            st.tok_same += 1
            continue
        logits = pt[2]
        gap = logits[pt[1]] - logits[ct[1]]
        if gap > args.logit_tol:
            st.failures.append("%s pos %d: C predicts %d (margin %.3g), PyTorch %d, whose logit leads by %.3g"
                               % (where, pos, ct[1], ct[2], pt[1], gap))
            return
        st.tok_flip += 1
        if args.verbose:
            print("  near-tie argmax: %s pos %d: C %d, PyTorch %d (logit gap %.2g)"
                  % (where, pos, ct[1], pt[1], gap), file=sys.stderr)
        if pos + 1 >= n_prompt:  # a generated token: the runs feed different tokens from here on
            st.cut += 1
            return


def st_max_gap(rows):
    return max(st.max_flip_gap for _, st in rows) if rows else 0.0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    root = os.path.normpath(os.path.join(_here, "..", ".."))
    ap.add_argument("--model", default=os.path.join(_here, "model", "model.bin"))
    ap.add_argument("--tokenizer", help="default: tokens.bin beside the model, else one written to a temp dir")
    ap.add_argument("--llama", default=os.path.join(root, os.environ.get("BUILD", "build"), "examples", "llama",
                                                    "llama"))
    ap.add_argument("--policies", help="comma-separated (default: %s, those the library has)" % ",".join(POLICIES))
    ap.add_argument("--budgets", default="24,48", help="cache budgets per layer and group")
    ap.add_argument("--length", type=int, default=160, help="length of the task instances")
    ap.add_argument("--per-task", type=int, default=1, help="instances per task")
    ap.add_argument("--seed", type=int, default=7, help="instances and cache seeds")
    ap.add_argument("--rtol", type=float, default=1e-4, help="relative score gap accepted as a near-tie")
    ap.add_argument("--atol", type=float, default=0.0, help="absolute score gap accepted as a near-tie")
    ap.add_argument("--logit-tol", type=float, default=1e-3, help="logit gap accepted as an argmax near-tie")
    ap.add_argument("--min-compared", type=int, default=200,
                    help="fail if fewer eviction decisions of a policy were compared (a test must be able to fail)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every near-tie flip")
    args = ap.parse_args()

    torch.set_num_threads(1)
    for path, what in ((args.model, "checkpoint"), (args.llama, "C runner (make llama)")):
        if not os.path.exists(path):
            sys.exit("differential: %s %s not found" % (what, path))
    m = M.load(args.model)
    tmp = tempfile.mkdtemp(prefix="kvc-diff-")
    tok = args.tokenizer or os.path.join(os.path.dirname(args.model), "tokens.bin")
    if not os.path.exists(tok):
        tok = os.path.join(tmp, "tokens.bin")
        M.write_tokenizer(T.token_names(), tok)
    have = E.kvc.policies()
    if args.policies:
        policies = [p for p in args.policies.split(",") if p]
        for p in policies:
            if p not in POLICIES or p not in have:
                sys.exit("differential: policy %r is not %s" % (p, "in this libkvc" if p in POLICIES else
                                                                "deterministic with a shadow score here (%s)"
                                                                % ", ".join(POLICIES)))
    else:
        policies = [p for p in POLICIES if p in have]
    budgets = [int(b) for b in args.budgets.split(",")]
    plist = prompts(args.length, args.per_task, args.seed)
    t0 = time.time()
    rows, failures = [], []
    for policy in policies:
        st = Stats()
        for budget in budgets:
            for name, ids, steps in plist:
                c = run_c(args.llama, args.model, tok, policy, budget, args.seed, ids, steps, tmp)
                py = run_py(m, policy, budget, args.seed, ids, steps, args, st)
                st.possible += len(py[1])  # every eviction decision of the PyTorch run
                compare(policy, budget, name, len(ids), c, py, args, st)
        print("  %-8s %5.0f s" % (policy, time.time() - t0), file=sys.stderr)
        if st.ev_same < args.min_compared:
            st.failures.append("%s: only %d identical eviction decisions of %d were compared "
                               "(near-ties cut %d runs short); at least %d are required"
                               % (policy, st.ev_same, st.possible, st.cut, args.min_compared))
        rows.append((policy, st))
        failures += st.failures
    for f in os.listdir(tmp):
        os.remove(os.path.join(tmp, f))
    os.rmdir(tmp)

    print("PyTorch + libkvc INDEX mode vs the C runner on STORE mode: %s, budgets %s, %d prompts"
          % (os.path.basename(args.model), args.budgets, len(plist)))
    hdr = ("policy", "runs", "decisions", "compared", "identical", "near-tie", "tokens", "identical", "near-tie",
           "cut", "py near-ties")
    fmt = "%-12s %4s %9s %9s %9s %8s %7s %9s %8s %4s %12s"
    print(fmt % hdr)
    tot = [0] * 9
    for policy, st in rows:
        nt = "%d/%d" % (st.py_near, st.py_decisions) if st.py_decisions else "-"
        vals = (st.runs, st.possible, st.ev, st.ev_same, st.ev_flip, st.tok, st.tok_same, st.tok_flip, st.cut)
        tot = [a + b for a, b in zip(tot, vals)]
        print(fmt % ((policy,) + vals + (nt,)))
    print(fmt % (("all",) + tuple(tot) + ("",)))
    print("decisions: evictions (position x layer x group) the PyTorch runs make; compared: those checked "
          "(up to a run's first near-tie flip); near-tie: differing victims whose scores are within rtol %g, "
          "or argmaxes whose logits are within %g; cut: runs compared only up to such a flip; py near-ties: "
          "PyTorch-side decisions whose two lowest scores are within rtol" % (args.rtol, args.logit_tol))
    if st_max_gap(rows):
        print("largest relative score gap of a near-tie flip: %.2g" % st_max_gap(rows))
    if failures:
        print("\n%d mismatches beyond the tolerance:" % len(failures))
        for f in failures[:20]:
            print("  " + f)
        return 1
    print("no mismatch beyond the tolerance (%.0f s)" % (time.time() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
