"""Write the proving ground's evaluation instances (the format of taskset.h).

    python3 examples/reasoning/make_tasks.py --out examples/reasoning/data/tasks.bin

Instances are drawn from tasks.py with their own seed (disjoint in practice
from the training stream, which uses another seed): `--n` per task, each
exactly `--length` tokens, tasks interleaved (recall, needle, chase, vt, ...)."""

import argparse
import os
import random
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tasks as T  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--n", type=int, default=300, help="instances per task")
    ap.add_argument("--length", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=20261201)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    out = bytearray(b"KVCTASK1" + struct.pack("<II", a.n * len(T.TASKS), T.VOCAB))
    for _ in range(a.n):
        for ti, task in enumerate(T.TASKS):
            toks, flags = T.make(task, rng, a.length)
            scored = [(i, f) for i, f in enumerate(flags) if f != T.PROMPT]
            out += struct.pack("<BBHH", ti, 0, a.length, len(scored))
            out += bytes(toks)
            for i, f in scored:
                out += struct.pack("<HB", i, f)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "wb") as f:
        f.write(out)
    print("wrote %s: %d instances of %d tokens (%d bytes)" % (a.out, a.n * len(T.TASKS), a.length, len(out)))


if __name__ == "__main__":
    main()
