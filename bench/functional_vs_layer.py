"""rnnfast.functional against a layer: forward+backward of the same problem, 1 thread.

The functional face allocates nothing that a layer keeps: its calls borrow their scratch
and workspace from the compiled core's shared buffers (``_core.SharedBuffers``). Target
(issue on threads and calls): functional fwd+bwd within 1.1x of the layer's at the small
and medium grid shapes. Prints medians of alternated samples and minor page faults per
call. ``python bench/functional_vs_layer.py`` from anywhere with the package installed.
"""
import resource
import statistics
import time

import numpy as np
from threadpoolctl import threadpool_limits

import rnnfast
from rnnfast import functional as F

SHAPES = {"small": (16, 100, 32, 64), "medium": (32, 100, 128, 256),
          "issue": (32, 50, 8, 64)}      # the shape the issue measured (4.2-4.7 ms)


def callables(kind, shape, seed=0):
    B, T, D, H = shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((B, T, D)).astype(np.float32)
    dout = rng.standard_normal((B, T, H)).astype(np.float32)
    layer = (rnnfast.LSTM(D, H, seed=seed) if kind == "lstm"
             else rnnfast.RNN(D, H, seed=seed))
    Wx, Wh, b = (layer.params[k] for k in ("Wx", "Wh", "b"))

    def with_layer():
        layer(x)
        layer.backward(dout)

    if kind == "lstm":
        def functional():
            _, _, _, ws = F.lstm_forward(x, None, None, Wx, Wh, b)
            F.lstm_backward(dout, None, None, x, Wx, Wh, ws)
    else:
        def functional():
            _, _, ws = F.rnn_forward(x, None, Wx, Wh, b)
            F.rnn_backward(dout, None, x, Wx, Wh, ws)
    return {"layer": with_layer, "functional": functional}


def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def measure(fns, samples=31, min_seconds=0.02):
    for fn in fns.values():
        fn()
        fn()
    number = {}
    for k, fn in fns.items():
        t0 = time.perf_counter()
        fn()
        number[k] = max(1, int(min_seconds / (time.perf_counter() - t0)))
    times = {k: [] for k in fns}
    flt = {k: 0 for k in fns}
    calls = {k: 0 for k in fns}
    for _ in range(samples):
        for k, fn in fns.items():
            f0 = faults()
            t0 = time.perf_counter()
            for _ in range(number[k]):
                fn()
            times[k].append((time.perf_counter() - t0) / number[k])
            flt[k] += faults() - f0
            calls[k] += number[k]
    return ({k: statistics.median(v) for k, v in times.items()},
            {k: flt[k] / calls[k] for k in fns})


def main():
    print("| cell | layer ms | functional ms | functional / layer | faults per call "
          "(layer / functional) |")
    print("|---|--:|--:|--:|--:|")
    with threadpool_limits(1):
        for size, shape in SHAPES.items():
            for kind in ("rnn", "lstm"):
                med, flt = measure(callables(kind, shape))
                print(f"| {size}-{kind} {shape} | {med['layer'] * 1e3:.3f} | "
                      f"{med['functional'] * 1e3:.3f} | "
                      f"{med['functional'] / med['layer']:.3f}x | "
                      f"{flt['layer']:.1f} / {flt['functional']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
