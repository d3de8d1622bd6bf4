"""Train the proving-ground model on the four tasks of tasks.py.

    /usr/bin/python3 examples/reasoning/train.py --out examples/reasoning/model

Fixed seeds; a curriculum of growing sequence lengths (short sequences first,
then the full 1024); loss only on scored tokens. Writes model.bin (llama2.c
format), tokens.bin (its tokenizer), train.log and model.sha256 into --out.
`--steps-scale` shortens every phase (the CI smoke test uses a tiny value).

Resumable: every --save-every steps the whole training state (weights,
optimiser, step, every random generator) goes to --out/state.pt, and the same
command continues from it, giving the same result as an uninterrupted run."""

import argparse
import hashlib
import math
import os
import random
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model as M  # noqa: E402
import tasks as T  # noqa: E402

# Linear warm-up over the first steps of training.
WARMUP = 100
# (sequence length, batch, steps, peak learning rate, share of the batch given to
# the copy aid, task mix of the rest). The last phase gives half of each batch to
# vt, the one task still short of 95% after the first 1024 phase: its answers
# chain four or five lookups, so one weak lookup fails the whole instance.
MIX = T.TASKS
VT_MIX = ("recall", "needle", "chase", "vt", "vt", "vt")
PHASES = [(64, 32, 900, 3e-3, 0.4, MIX), (128, 16, 400, 3e-3, 0.2, MIX), (256, 12, 600, 3e-3, 0.1, MIX),
          (512, 8, 400, 2e-3, 0.05, MIX), (1024, 6, 800, 1e-3, 0.0, MIX), (1024, 6, 1000, 5e-4, 0.0, VT_MIX)]


def batch(rng, length, n, copy_share, mix):
    toks, tgt = [], []
    n_copy = int(round(n * copy_share))
    for i in range(n):
        task = "copy" if i < n_copy else mix[i % len(mix)]
        t, f = T.make(task, rng, length)
        # the model at position i predicts token i+1; only scored tokens count
        toks.append(t)
        tgt.append([t[j + 1] if f[j + 1] != T.PROMPT else -100 for j in range(length - 1)] + [-100])
    return torch.tensor(toks), torch.tensor(tgt)


@torch.no_grad()
def accuracy(model, rng, length, n_per_task):
    """Per task, the share of instances whose scored tokens are all predicted
    right with teacher forcing (a quick check; the C evaluation decodes)."""
    model.eval()
    out = {}
    for task in T.TASKS:
        ok = 0
        for _ in range(n_per_task):
            t, f = T.make(task, rng, length)
            logits = model(torch.tensor([t]))[0]
            pred = logits.argmax(-1).tolist()
            ok += all(pred[j - 1] == t[j] for j in range(1, length) if f[j] != T.PROMPT)
        out[task] = ok / n_per_task
    model.train()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps-scale", type=float, default=1.0, help="multiply every phase's steps")
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--save-every", type=int, default=100)
    ap.add_argument("--final-eval", type=int, default=32, help="instances per task of the final check (0: none)")
    a = ap.parse_args()

    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    rng = random.Random(a.seed)
    erng = random.Random(a.seed + 1)
    os.makedirs(a.out, exist_ok=True)
    state_path = os.path.join(a.out, "state.pt")
    resume = torch.load(state_path) if os.path.exists(state_path) else None
    log = open(os.path.join(a.out, "train.log"), "a" if resume else "w")

    def say(msg):
        print(msg, flush=True)
        log.write(msg + "\n")
        log.flush()

    cfg = M.Config()
    model = M.Transformer(cfg)
    n_params = sum(p.numel() for p in model.parameters())
    say("model: dim %d, hidden %d, %d layers, %d query / %d kv heads, vocab %d, context %d: %d parameters" %
        (cfg.dim, cfg.hidden_dim, cfg.n_layers, cfg.n_heads, cfg.n_kv_heads, cfg.vocab_size, cfg.seq_len,
         n_params))
    say("command: " + " ".join(sys.argv))
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    other = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": other, "weight_decay": 0.0}],
                            lr=1e-3, betas=(0.9, 0.98))
    t0 = time.time()
    step = 0
    if resume:
        model.load_state_dict(resume["model"])
        opt.load_state_dict(resume["opt"])
        step = resume["step"]
        rng.setstate(resume["rng"])
        erng.setstate(resume["erng"])
        torch.set_rng_state(resume["torch_rng"])
        t0 -= resume["seconds"]
        say("resumed at step %d (%.0f s of training so far)" % (step, resume["seconds"]))
    done = 0
    warm = max(1, int(WARMUP * a.steps_scale))
    for length, bsz, steps, lr, copy_share, mix in PHASES:
        steps = max(1, int(steps * a.steps_scale))
        for i in range(steps):
            done += 1
            if done <= step:
                continue  # finished before the resume
            # warm-up at the start only, constant within the shorter phases, a
            # cosine decay to a tenth over each full-length phase
            if length == PHASES[0][0] and i < warm:
                f = (i + 1) / warm
            elif length == PHASES[-1][0]:
                f = 0.1 + 0.45 * (1 + math.cos(math.pi * i / steps))
            else:
                f = 1.0
            for g in opt.param_groups:
                g["lr"] = lr * f
            x, y = batch(rng, length, bsz, copy_share, mix)
            logits = model(x)
            loss = F.cross_entropy(logits.view(-1, cfg.vocab_size), y.view(-1), ignore_index=-100)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            if step % 25 == 0:
                say("step %5d  len %4d  loss %.4f  lr %.2e  %.0f s" % (step, length, loss.item(), lr * f,
                                                                    time.time() - t0))
            if a.eval_every and step % a.eval_every == 0:
                acc = accuracy(model, erng, length, 16)
                say("step %5d  len %4d  teacher-forced accuracy %s" % (step, length, " ".join(
                    "%s %.2f" % kv for kv in acc.items())))
                M.export(model, os.path.join(a.out, "model.bin"))
            if a.save_every and step % a.save_every == 0:
                torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "rng": rng.getstate(),
                            "erng": erng.getstate(), "torch_rng": torch.get_rng_state(),
                            "seconds": time.time() - t0}, state_path + ".tmp")
                os.replace(state_path + ".tmp", state_path)
    if a.final_eval:
        acc = accuracy(model, erng, cfg.seq_len, a.final_eval)
        say("final teacher-forced accuracy at %d: %s" % (cfg.seq_len, " ".join("%s %.3f" % kv for kv in
                                                                              acc.items())))
    path = os.path.join(a.out, "model.bin")
    M.export(model, path)
    M.write_tokenizer(T.token_names(), os.path.join(a.out, "tokens.bin"))
    digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
    with open(os.path.join(a.out, "model.sha256"), "w") as f:
        f.write("%s  model.bin\n" % digest)
    say("wrote %s (%d bytes, sha256 %s) in %.0f s" % (path, os.path.getsize(path), digest, time.time() - t0))


if __name__ == "__main__":
    main()
