"""Are rnnfast's results bitwise the same whatever the BLAS thread count?

    python bench/thread_determinism.py            # markdown table on stdout

For each shape (batch, seq_len, input, hidden), cell and dtype: one training forward +
backward through ``rnnfast.functional`` (compiled core) under ``threadpool_limits(1)``
and under ``threadpool_limits(2)``; the table names the outputs that differ and the
largest relative difference. Each thread count on its own is repeatable (that one *is*
tested: tests/test_threads.py::test_repeatable_for_a_fixed_blas_thread_count).

The benchmark grid comes first; the other shapes are ones where OpenBLAS's threaded
products round differently (found by probing; see docs/reliability.md).
"""
import sys

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from rnnfast import cells
from rnnfast import functional as F

GRID = {"tiny": (1, 50, 8, 32), "small": (16, 100, 32, 64), "medium": (32, 100, 128, 256),
        "large": (64, 50, 512, 1024)}
EXTRA = {"k=2000": (1, 2000, 256, 256), "k=1000": (2, 500, 64, 512),
         "odd": (257, 3, 33, 65), "B=1 long": (1, 4000, 16, 16), "B=128": (128, 20, 64, 128)}
NAMES = {"lstm": "out h_n c_n dx dh0 dc0 dWx dWh db".split(),
         "tanh": "out h_n dx dh0 dWx dWh db".split()}


def problem(cell, B, T, D, H, dtype, seed=0):
    rng = np.random.default_rng(seed)
    G = (cells.get("lstm") if cell == "lstm" else cells.for_layer("rnn", cell)).gates
    k = 1 / np.sqrt(H)
    p = dict(x=rng.standard_normal((B, T, D)), h0=rng.standard_normal((B, H)) * .5,
             c0=rng.standard_normal((B, H)) * .5, Wx=rng.uniform(-k, k, (D, G * H)),
             Wh=rng.uniform(-k, k, (H, G * H)), b=rng.uniform(-k, k, G * H),
             dout=rng.standard_normal((B, T, H)), dh_n=rng.standard_normal((B, H)),
             dc_n=rng.standard_normal((B, H)))
    return {n: a.astype(dtype) for n, a in p.items()}


def run(cell, p):
    if cell == "lstm":
        out, h, c, ws = F.lstm_forward(p["x"], p["h0"], p["c0"], p["Wx"], p["Wh"], p["b"])
        return [out, h, c] + list(F.lstm_backward(p["dout"], p["dh_n"], p["dc_n"], p["x"],
                                                  p["Wx"], p["Wh"], ws))
    out, h, ws = F.rnn_forward(p["x"], p["h0"], p["Wx"], p["Wh"], p["b"], cell)
    return [out, h] + list(F.rnn_backward(p["dout"], p["dh_n"], p["x"], p["Wx"], p["Wh"], ws,
                                          cell))


def compare(cell, shape, dtype):
    p = problem(cell, *shape, dtype)
    res = {}
    for n in (1, 2):
        with threadpool_limits(n, user_api="blas"):
            res[n] = run(cell, p)
    differ, worst = [], 0.0
    for name, a, b in zip(NAMES[cell], res[1], res[2]):
        if not np.array_equal(a, b):
            differ.append(name)
            # relative to the array's largest magnitude: elementwise ratios blow up on
            # entries that are sums cancelling to nearly zero
            worst = max(worst, float(np.max(np.abs(a - b)) / np.max(np.abs(a))))
    return differ, worst


def main():
    blas = [f"{i['internal_api']} {i['version']} ({i['architecture']}, {i['filepath']})"
            for i in threadpool_info() if i["user_api"] == "blas"]
    print("BLAS libraries: " + "; ".join(blas) + "\n")
    print("| name | batch, seq_len, input, hidden | cell | dtype | 1 vs 2 BLAS threads "
          "| max abs. difference / max abs. value |")
    print("|---|---|---|---|---|---|")
    for name, shape in {**GRID, **EXTRA}.items():
        for cell in ("tanh", "lstm"):
            for dtype in (np.float32, np.float64):
                differ, worst = compare(cell, shape, dtype)
                verdict = "identical" if not differ else "differ: " + ", ".join(differ)
                print(f"| {name} | {', '.join(map(str, shape))} | {cell} | "
                      f"{np.dtype(dtype).name} | {verdict} | {worst:.1e} |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
