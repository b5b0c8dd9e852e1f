"""A layer at 1 and 2 threads in a steady loop (no other library's calls in between), eval
forward and training forward+backward, RNN, LSTM and GRU, float32: bidirectional (the
default) or, with ``--one``, one direction.

Groups of calls at 1 thread and at 2 threads (threadpoolctl) alternate, three rounds
after a warm-up; each group's median, the best of the groups per setting, and the ratio
1-thread / 2-thread. ``bench/sequences.py`` measures the bidirectional calls alternated with
PyTorch's samples (whose OpenMP workers keep spinning after its calls, on the core the
second thread wants); this shows what the two directions side by side give when nothing else
wakes or spins, and, with ``--one``, that no cell is slower at 2 threads than at 1 (issue
12); with ``--ratio``, the bidirectional call against one direction, both at 1 thread, in one
loop (issue 14's <= 2.05x without PyTorch's samples in between).
``python bench/bidirectional_steady.py [tiny|small|medium|large,...] [--one | --ratio]``; run
it alone on the machine (``flock /tmp/rnnfast-bench.lock ...``).
"""
import argparse
import time

import numpy as np
from threadpoolctl import threadpool_limits

import rnnfast
from rnnfast.bench import SIZES

CALLS = {"tiny": 200, "small": 40, "medium": 8, "large": 3}     # per group


def layer_calls(cls, size, bidirectional):
    """The eval forward and the training forward+backward of a seeded ``cls`` layer on the
    ``size`` shape: ``{"fwd": fn, "fwdbwd": fn}``."""
    B, T, D, H = SIZES[size]
    x = np.random.default_rng(0).standard_normal((B, T, D)).astype(np.float32)
    dout = np.ones((B, T, (2 if bidirectional else 1) * H), np.float32)
    ev = cls(D, H, seed=0, bidirectional=bidirectional).eval()
    tr = cls(D, H, seed=0, bidirectional=bidirectional)

    def fwdbwd():
        tr(x)
        tr.backward(dout)
    return {"fwd": lambda: ev(x), "fwdbwd": fwdbwd}


def best_group_medians(calls, n, rounds):
    """``calls``: ``{key: (fn, threads)}``. Groups of ``n`` calls of each (after a few
    untimed ones) at its thread count, all keys in turn, ``rounds`` times; the best group
    median of each key."""
    res = {}
    for _ in range(rounds):
        for key, (fn, threads) in calls.items():
            with threadpool_limits(threads):
                for _ in range(max(2, n // 5)):
                    fn()
                times = []
                for _ in range(n):
                    t0 = time.perf_counter()
                    fn()
                    times.append(time.perf_counter() - t0)
            res.setdefault(key, []).append(float(np.median(times)))
    return {k: min(v) for k, v in res.items()}


def measure(size, bidirectional=True):
    for cls in (rnnfast.RNN, rnnfast.LSTM, rnnfast.GRU):
        fns = layer_calls(cls, size, bidirectional)
        best = best_group_medians({(name, t): (fn, t) for name, fn in fns.items()
                                   for t in (1, 2)}, CALLS[size], 3)
        print(f"{size} {cls.__name__}{' bidirectional' if bidirectional else ''}: " + ", ".join(
            f"{name} 1t {best[(name, 1)] * 1e3:.3f} ms 2t {best[(name, 2)] * 1e3:.3f} ms "
            f"({best[(name, 1)] / best[(name, 2)]:.2f}x)" for name in ("fwd", "fwdbwd")),
            flush=True)


def measure_ratio(size):
    """Bidirectional against one direction at 1 thread (issue 14's <= 2.05x), groups of
    each alternated five times in one loop; the best group medians and their ratio."""
    for cls in (rnnfast.RNN, rnnfast.LSTM, rnnfast.GRU):
        calls = {(name, bi): (fn, 1) for bi in (False, True)
                 for name, fn in layer_calls(cls, size, bi).items()}
        best = best_group_medians(calls, CALLS[size], 5)
        print(f"{size} {cls.__name__} 1 thread: " + ", ".join(
            f"{name} one {best[(name, False)] * 1e3:.3f} ms bi {best[(name, True)] * 1e3:.3f} "
            f"ms (bi/one {best[(name, True)] / best[(name, False)]:.2f}x)"
            for name in ("fwd", "fwdbwd")), flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("sizes", nargs="?", default="small",
                   help="grid shapes, comma-separated (default small)")
    p.add_argument("--one", action="store_true", help="one direction, not bidirectional")
    p.add_argument("--ratio", action="store_true",
                   help="bidirectional against one direction, both at 1 thread")
    args = p.parse_args(argv)
    for size in args.sizes.split(","):
        if size not in SIZES:
            p.error(f"unknown size {size!r}; choose from {', '.join(SIZES)}")
        if args.ratio:
            measure_ratio(size)
        else:
            measure(size, not args.one)


if __name__ == "__main__":
    main()
