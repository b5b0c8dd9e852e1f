"""How far is float32 from the exact answer? float32 results vs the float64 NumPy twin.

    python bench/numerics.py            # markdown table on stdout (about a minute)

For every size of the benchmark grid (batch, seq_len, input, hidden) and both cells
(tanh RNN, LSTM): one training forward and a backward from a gradient on the *last
step's output only* (dout zero except at t = T-1; no gradient on the final state). The
inputs and weights are drawn once (PyTorch-scaled weights, U(-1/sqrt(H), 1/sqrt(H))),
rounded to float32, and the float64 twin runs on exactly those rounded values, so the
table measures the arithmetic, not the rounding of the inputs.

Error of an array ``a`` against the float64 result ``r``: ``max|a - r| / max|r|`` (a
normwise relative error; elementwise ratios are meaningless for entries that are sums
cancelling to nearly zero). Two rows per case: the compiled core in float32, and, for
scale, the NumPy twin in float32.
"""
import sys

import numpy as np

from rnnfast import cells
from rnnfast import functional as F

GRID = {"tiny": (1, 50, 8, 32), "small": (16, 100, 32, 64), "medium": (32, 100, 128, 256),
        "large": (64, 50, 512, 1024)}
NAMES = {"lstm": ("out", "h_n", "c_n", "dx", "dWx", "dWh", "db"),
         "tanh": ("out", "h_n", "dx", "dWx", "dWh", "db")}


def problem(cell, B, T, D, H, seed=0):
    """float32-representable inputs (as float64) for one call."""
    rng = np.random.default_rng(seed)
    G = (cells.get("lstm") if cell == "lstm" else cells.for_layer("rnn", cell)).gates
    k = 1 / np.sqrt(H)
    dout = np.zeros((B, T, H))
    dout[:, -1] = rng.standard_normal((B, H))
    p = dict(x=rng.standard_normal((B, T, D)), Wx=rng.uniform(-k, k, (D, G * H)),
             Wh=rng.uniform(-k, k, (H, G * H)), b=rng.uniform(-k, k, G * H), dout=dout)
    return {n: a.astype(np.float32).astype(np.float64) for n, a in p.items()}


def run(cell, p, backend):
    if cell == "lstm":
        out, h, c, ws = F.lstm_forward(p["x"], None, None, p["Wx"], p["Wh"], p["b"],
                                       backend=backend)
        dx, _, _, dWx, dWh, db = F.lstm_backward(p["dout"], None, None, p["x"], p["Wx"],
                                                 p["Wh"], ws, backend=backend)
        return out, h, c, dx, dWx, dWh, db
    out, h, ws = F.rnn_forward(p["x"], None, p["Wx"], p["Wh"], p["b"], "tanh",
                               backend=backend)
    dx, _, dWx, dWh, db = F.rnn_backward(p["dout"], None, p["x"], p["Wx"], p["Wh"], ws,
                                         "tanh", backend=backend)
    return out, h, dx, dWx, dWh, db


def errors(got, want):
    return [float(np.max(np.abs(g.astype(np.float64) - w)) / np.max(np.abs(w)))
            for g, w in zip(got, want)]


def main():
    cols = ("out", "h_n", "c_n", "dx", "dWx", "dWh", "db")
    print("| size (B, T, D, H) | cell | float32 result | " + " | ".join(cols) + " |")
    print("|---|---|---|" + "---|" * len(cols))
    for size, shape in GRID.items():
        for cell in ("tanh", "lstm"):
            p64 = problem(cell, *shape)
            p32 = {n: a.astype(np.float32) for n, a in p64.items()}
            truth = run(cell, p64, "numpy")
            for label, backend in (("compiled", "cython"), ("NumPy twin", "numpy")):
                err = dict(zip(NAMES[cell], errors(run(cell, p32, backend), truth)))
                cells = [f"{err[c]:.1e}" if c in err else "-" for c in cols]
                print(f"| {size} ({', '.join(map(str, shape))}) | "
                      f"{'tanh RNN' if cell == 'tanh' else 'LSTM'} | {label} | "
                      + " | ".join(cells) + " |", flush=True)
    print(f"\nfloat32 machine epsilon: {np.finfo(np.float32).eps:.1e}. "
          "Error = max|float32 - float64| / max|float64| per array.")


if __name__ == "__main__":
    sys.exit(main())
