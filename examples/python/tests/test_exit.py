"""Interpreter exit while a daemon thread is inside a C call on a cache.

weakref.finalize runs at exit for caches nobody closed; a daemon thread may
then be inside kvc_cache_attend with the GIL released. The finalizer must
not free the cache under it (it used to: SIGSEGV, since the cache's memory
is one large block that free() unmaps)."""
import os
import subprocess
import sys

from conftest import PKG_ROOT

SCRIPT = r"""
import threading, time
from array import array
import kvc
d, cap = 128, 16384
c = kvc.Cache(n_kv_heads=2, n_q_heads=2, head_dim=d, capacity=cap, policy="window")
k = array("f", [0.5] * (2 * d))
for t in range(cap):
    c.append(k, k)
q, out = array("f", [0.01] * (2 * d)), array("f", bytes(8 * d))
inside = threading.Event()

def spin():
    while True:
        inside.set()
        try:
            c.attend(q, out)
        except kvc.Error:
            return  # closed under us between two calls: the right answer

threading.Thread(target=spin, daemon=True).start()
inside.wait()
time.sleep(0.05)
print("exiting")
"""


def test_exit_with_daemon_thread_inside_a_call():
    env = dict(os.environ, PYTHONPATH=PKG_ROOT)
    for _ in range(3):
        r = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0, "exit code %d\n%s" % (r.returncode, r.stderr[-2000:])
        assert r.stdout.strip() == "exiting"
