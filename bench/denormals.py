"""Do denormal-range values slow rnnfast down? A measurement, not a test.

    python bench/denormals.py            # markdown table on stdout (about half a minute)

The compiled kernels turn on flush-to-zero and denormals-are-zero (MXCSR FTZ/DAZ) while
they run, so denormal inputs and weights should cost no more than normal ones. For each
cell and dtype, one training forward + backward of the "small" grid problem (batch 16,
seq_len 100, input 32, hidden 64), minimum and median of repeated calls, single BLAS
thread:

- normal: x ~ N(0, 1), weights ~ U(-1/sqrt(H), 1/sqrt(H)), output gradient ~ N(0, 1);
- denormal: the same x, h0, c0 and weights times 1e-40 (float32) or 1e-310 (float64),
  i.e. every input and weight in the denormal range; the output gradient stays normal, so
  the weight gradients are denormal-range products too.

The target is a ratio denormal/normal <= 2 for the compiled core. The NumPy twin runs in
the caller's floating-point mode (no FTZ/DAZ) and is shown as the control: its ratio
shows how much denormals cost on this CPU when nothing flushes them. Timing assertions
do not belong in the test suite; the correctness side (flushing inside kernels, MXCSR
restored, results equal to the twin's) is tested in tests/test_extremes.py.
"""
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

from rnnfast import cells
from rnnfast import functional as F

B, T, D, H = 16, 100, 32, 64
SCALE = {np.float32: 1e-40, np.float64: 1e-310}


def problem(cell, dtype, denormal, seed=0):
    rng = np.random.default_rng(seed)
    G = (cells.get("lstm") if cell == "lstm" else cells.for_layer("rnn", cell)).gates
    k = 1 / np.sqrt(H)
    p = dict(x=rng.standard_normal((B, T, D)), h0=rng.standard_normal((B, H)) * .5,
             c0=rng.standard_normal((B, H)) * .5, Wx=rng.uniform(-k, k, (D, G * H)),
             Wh=rng.uniform(-k, k, (H, G * H)), b=rng.uniform(-k, k, G * H))
    if denormal:
        p = {n: a * SCALE[dtype] for n, a in p.items()}
    p["dout"] = rng.standard_normal((B, T, H))
    p = {n: a.astype(dtype) for n, a in p.items()}
    if denormal:
        for n in ("x", "Wx", "Wh", "b"):
            a = np.abs(p[n][p[n] != 0])
            assert a.max() < np.finfo(dtype).tiny, n          # really denormal
    return p


def call(cell, p, backend):
    if cell == "lstm":
        out, h, c, ws = F.lstm_forward(p["x"], p["h0"], p["c0"], p["Wx"], p["Wh"], p["b"],
                                       backend=backend)
        return F.lstm_backward(p["dout"], None, None, p["x"], p["Wx"], p["Wh"], ws,
                               backend=backend)
    out, h, ws = F.rnn_forward(p["x"], p["h0"], p["Wx"], p["Wh"], p["b"], backend=backend)
    return F.rnn_backward(p["dout"], None, p["x"], p["Wx"], p["Wh"], ws, backend=backend)


def seconds(fn, budget=1.0, min_repeat=5):
    """(minimum, median) seconds per call. The minimum is the better estimate of the
    intrinsic cost on a machine shared with other jobs; the median is shown too."""
    fn()                                                    # warm-up
    times, start = [], time.perf_counter()
    while len(times) < min_repeat or time.perf_counter() - start < budget:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.min(times)), float(np.median(times))


def main():
    print(f"batch {B}, seq_len {T}, input {D}, hidden {H}; training forward + backward; "
          "1 BLAS thread; minimum (median) time per call over ~1 s of calls\n")
    print("| cell | dtype | backend | normal (ms) | denormal (ms) | denormal / normal "
          "(min) | (median) | <= 2x |")
    print("|---|---|---|---|---|---|---|---|")
    with threadpool_limits(1, user_api="blas"):
        for cell in ("tanh", "lstm"):
            for dtype in (np.float32, np.float64):
                for backend in ("cython", "numpy"):
                    t = {}
                    for denormal in (False, True):
                        p = problem(cell, dtype, denormal)
                        t[denormal] = seconds(lambda c=cell, p=p, b=backend: call(c, p, b))
                    ratio = t[True][0] / t[False][0]
                    ratio_median = t[True][1] / t[False][1]
                    verdict = ("yes" if ratio <= 2 else "NO") if backend == "cython" \
                        else "(control)"
                    print(f"| {'tanh RNN' if cell == 'tanh' else 'LSTM'} | "
                          f"{np.dtype(dtype).name} | "
                          f"{'compiled' if backend == 'cython' else 'NumPy twin'} | "
                          f"{t[False][0] * 1e3:.3f} ({t[False][1] * 1e3:.3f}) | "
                          f"{t[True][0] * 1e3:.3f} ({t[True][1] * 1e3:.3f}) | {ratio:.2f} | "
                          f"{ratio_median:.2f} | {verdict} |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
