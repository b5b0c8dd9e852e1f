"""A layer at 1 and 2 threads in a steady loop (no other library's calls in between), eval
forward and training forward+backward, RNN, LSTM and GRU, float32: bidirectional (the
default) or, with ``--one``, one direction.

Groups of calls at 1 thread and at 2 threads (threadpoolctl) alternate, three times each
after a warm-up; each group's median, the best of the groups per setting, and the ratio
1-thread / 2-thread. ``bench/sequences.py`` measures the bidirectional calls alternated with
PyTorch's samples (whose OpenMP workers keep spinning after its calls, on the core the
second thread wants); this shows what the two directions side by side give when nothing else
wakes or spins, and, with ``--one``, that no cell is slower at 2 threads than at 1 (issue
12). ``python bench/bidirectional_steady.py [tiny|small|medium|large,...] [--one]``; run it
alone on the machine (``flock /tmp/rnnfast-bench.lock ...``).
"""
import argparse
import time

import numpy as np
from threadpoolctl import threadpool_limits

import rnnfast
from rnnfast.bench import SIZES

CALLS = {"tiny": 200, "small": 40, "medium": 8, "large": 3}     # per group


def measure(size, bidirectional=True):
    B, T, D, H = SIZES[size]
    nd = 2 if bidirectional else 1
    x = np.random.default_rng(0).standard_normal((B, T, D)).astype(np.float32)
    dout = np.ones((B, T, nd * H), np.float32)
    n = CALLS[size]
    for cls in (rnnfast.RNN, rnnfast.LSTM, rnnfast.GRU):
        ev = cls(D, H, seed=0, bidirectional=bidirectional).eval()
        tr = cls(D, H, seed=0, bidirectional=bidirectional)

        def fwdbwd(tr=tr):
            tr(x)
            tr.backward(dout)
        res = {}
        for name, fn in (("fwd", lambda ev=ev: ev(x)), ("fwdbwd", fwdbwd)):
            for threads in (1, 2, 1, 2, 1, 2):
                with threadpool_limits(threads):
                    for _ in range(max(2, n // 5)):
                        fn()
                    times = []
                    for _ in range(n):
                        t0 = time.perf_counter()
                        fn()
                        times.append(time.perf_counter() - t0)
                res.setdefault((name, threads), []).append(float(np.median(times)))
        best = {k: min(v) for k, v in res.items()}
        print(f"{size} {cls.__name__}{' bidirectional' if bidirectional else ''}: " + ", ".join(
            f"{name} 1t {best[(name, 1)] * 1e3:.3f} ms 2t {best[(name, 2)] * 1e3:.3f} ms "
            f"({best[(name, 1)] / best[(name, 2)]:.2f}x)" for name in ("fwd", "fwdbwd")),
            flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("sizes", nargs="?", default="small",
                   help="grid shapes, comma-separated (default small)")
    p.add_argument("--one", action="store_true", help="one direction, not bidirectional")
    args = p.parse_args(argv)
    for size in args.sizes.split(","):
        if size not in SIZES:
            p.error(f"unknown size {size!r}; choose from {', '.join(SIZES)}")
        measure(size, not args.one)


if __name__ == "__main__":
    main()
