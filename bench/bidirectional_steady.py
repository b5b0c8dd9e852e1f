"""A bidirectional layer at 1 and 2 threads in a steady loop (no other library's calls in
between), eval forward and training forward+backward, RNN, LSTM and GRU, float32.

Groups of 60 calls at 1 thread and at 2 threads (threadpoolctl) alternate, twice each after
20 calls of warm-up; each group's median, the best of the two groups per setting, and the
ratio 1-thread / 2-thread. ``bench/sequences.py`` measures the same calls alternated with
PyTorch's samples; this shows what the two directions side by side give when nothing else
wakes or spins. ``python bench/bidirectional_steady.py [small|medium|tiny|large]``; run it
alone on the machine (``flock /tmp/rnnfast-bench.lock ...``).
"""
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

import rnnfast
from rnnfast.bench import SIZES


def main(size="small"):
    B, T, D, H = SIZES[size]
    x = np.random.default_rng(0).standard_normal((B, T, D)).astype(np.float32)
    dout = np.ones((B, T, 2 * H), np.float32)
    for cls in (rnnfast.RNN, rnnfast.LSTM, rnnfast.GRU):
        ev = cls(D, H, seed=0, bidirectional=True).eval()
        tr = cls(D, H, seed=0, bidirectional=True)

        def fwdbwd(tr=tr):
            tr(x)
            tr.backward(dout)
        res = {}
        for name, fn in (("fwd", lambda ev=ev: ev(x)), ("fwdbwd", fwdbwd)):
            for threads in (1, 2, 1, 2):
                with threadpool_limits(threads):
                    for _ in range(20):
                        fn()
                    times = []
                    for _ in range(60):
                        t0 = time.perf_counter()
                        fn()
                        times.append(time.perf_counter() - t0)
                res.setdefault((name, threads), []).append(float(np.median(times)))
        best = {k: min(v) for k, v in res.items()}
        print(f"{size} {cls.__name__}: " + ", ".join(
            f"{name} 1t {best[(name, 1)] * 1e3:.3f} ms 2t {best[(name, 2)] * 1e3:.3f} ms "
            f"({best[(name, 1)] / best[(name, 2)]:.2f}x)" for name in ("fwd", "fwdbwd")))


if __name__ == "__main__":
    main(*sys.argv[1:2])
