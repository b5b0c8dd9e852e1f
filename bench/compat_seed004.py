"""Seed 004's classifier: the notebook's NumPy loops against rnnfast.compat, 1 thread.

The baseline is the notebook's ``ScratchSimpleRNNClassifier`` (``shared/seeds/004``, In [3]),
its forward and backward transcribed below unchanged but for comments; against it
``rnnfast.compat.ScratchSimpleRNNClassifier`` with the same weights. One sample is one
forward + backward (with its SGD update) at batch 32, 50 steps, 8 features, 64 nodes, 10
classes, float64 (the notebook's dtype). Samples alternate between the two; prints the
medians and their ratio (target, issue 16: at least 5x). The two results are checked against
each other first. ``--compat-dtype float32`` runs compat in float32 against the same float64
notebook (an opt-in of compat's, ``dtype=np.float32``: not the notebook's numbers to the last
bits, checked to 1e-6). ``--steady`` adds groups of 30 consecutive steps of each, alternated:
each side with its own buffers in cache, as in a training loop (one alternated sample runs
compat right after the notebook's step). ``python bench/compat_seed004.py [--repeats N]
[--steady]``; run it alone (timing).
"""
import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from rnnfast import compat  # noqa: E402
from rnnfast import functional as F  # noqa: E402

BATCH, STEPS, FEATURES, NODES, CLASSES = 32, 50, 8, 64, 10


class NotebookClassifier:
    """Seed 004's ScratchSimpleRNNClassifier (In [3]): forward and backward as written."""

    def __init__(self, n_features, n_nodes, n_output, activation=np.tanh,
                 learning_rate=0.01):
        self.n_features = n_features
        self.n_nodes = n_nodes
        self.n_output = n_output
        self.activation = activation
        self.learning_rate = learning_rate
        self.Wx = np.random.randn(n_features, n_nodes) * 0.01
        self.Wh = np.random.randn(n_nodes, n_nodes) * 0.01
        self.B = np.zeros(n_nodes)
        self.W_out = np.random.randn(n_nodes, n_output) * 0.01
        self.B_out = np.zeros(n_output)

    def forward(self, X):
        batch_size, n_sequences, n_features = X.shape
        h_t = np.zeros((batch_size, self.n_nodes))
        self.h_states = []
        self.a_states = []
        for t in range(n_sequences):
            x_t = X[:, t, :]
            a_t = np.dot(x_t, self.Wx) + np.dot(h_t, self.Wh) + self.B
            h_t = self.activation(a_t)
            self.h_states.append(h_t)
            self.a_states.append(a_t)
        h_last = self.h_states[-1]
        z_out = np.dot(h_last, self.W_out) + self.B_out
        y_pred = self._softmax(z_out)
        return y_pred

    def backward(self, X, y_true, y_pred):
        batch_size, n_sequences, n_features = X.shape
        dL_dz_out = (y_pred - y_true) / batch_size
        h_last = self.h_states[-1]
        dL_dW_out = np.dot(h_last.T, dL_dz_out)
        dL_dB_out = np.sum(dL_dz_out, axis=0)
        dL_dh_t = np.dot(dL_dz_out, self.W_out.T)
        dL_dWx = np.zeros_like(self.Wx)
        dL_dWh = np.zeros_like(self.Wh)
        dL_dB = np.zeros_like(self.B)
        for t in reversed(range(n_sequences)):
            x_t = X[:, t, :]
            a_t = self.a_states[t]
            h_prev = self.h_states[t - 1] if t > 0 else np.zeros_like(self.h_states[0])
            dL_da_t = dL_dh_t * (1 - np.tanh(a_t) ** 2)
            dL_dWx += np.dot(x_t.T, dL_da_t)
            dL_dWh += np.dot(h_prev.T, dL_da_t)
            dL_dB += np.sum(dL_da_t, axis=0)
            dL_dh_t = np.dot(dL_da_t, self.Wh.T)
        self.Wx -= self.learning_rate * dL_dWx
        self.Wh -= self.learning_rate * dL_dWh
        self.B -= self.learning_rate * dL_dB
        self.W_out -= self.learning_rate * dL_dW_out
        self.B_out -= self.learning_rate * dL_dB_out

    def _softmax(self, x):
        exp_x = np.exp(x - np.max(x, axis=1, keepdims=True))
        return exp_x / np.sum(exp_x, axis=1, keepdims=True)


NAMES = ("Wx", "Wh", "B", "W_out", "B_out")


def models(backend, dtype=np.float64):
    np.random.seed(0)
    notebook = NotebookClassifier(FEATURES, NODES, CLASSES)
    fast = compat.ScratchSimpleRNNClassifier(FEATURES, NODES, CLASSES, backend=backend,
                                             dtype=dtype)
    for name in NAMES:
        setattr(fast, name, getattr(notebook, name).astype(dtype))
    rng = np.random.default_rng(0)
    X = rng.standard_normal((BATCH, STEPS, FEATURES)).astype(dtype)
    y = np.eye(CLASSES)[rng.integers(0, CLASSES, BATCH)]
    return notebook, fast, X, y


def step(model, X, y):
    model.backward(X, y, model.forward(X))


def check(backend, dtype):
    """One step of each from the same weights gives the same weights (tanh: the notebook's
    math is right), to float64 rounding (float32: to 1e-6)."""
    notebook, fast, X, y = models(backend, dtype)
    step(notebook, X.astype(np.float64), y)
    step(fast, X, y)
    worst = max(float(np.max(np.abs(getattr(notebook, n) - getattr(fast, n))))
                for n in NAMES)
    if worst > (1e-12 if dtype == np.float64 else 1e-6):
        sys.exit(f"compat ({backend}) and the notebook disagree after one step: {worst:.3g}")
    return worst


def kernels_only(backend, fast, X):
    """The recurrent part alone, as compat calls it: rnnfast.functional's RNN forward and
    backward (what is left of compat's time without its Python: the head, softmax, checks
    and SGD step)."""
    dh = np.ones((BATCH, NODES), X.dtype)

    def run():
        _, _, ws = F.rnn_forward(X, None, fast.Wx, fast.Wh, fast.B, backend=backend)
        F.rnn_backward(None, dh, X, fast.Wx, fast.Wh, ws, backend=backend)
    return run


def timed(fn, *args):
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def steady(notebook, fast, X_nb, X, y, kernels, rounds=12, group=30):
    """Groups of ``group`` consecutive steps of each (a training loop's steady state: its
    buffers in cache), alternated ``rounds`` times; the median of the group medians."""
    res = {"nb": [], "fast": [], "k": []}
    for _ in range(rounds):
        for key, fn in (("nb", lambda: step(notebook, X_nb, y)),
                        ("fast", lambda: step(fast, X, y)), ("k", kernels)):
            for _ in range(5):
                fn()
            res[key].append(statistics.median(timed(fn) for _ in range(group)))
    return tuple(statistics.median(res[k]) for k in ("nb", "fast", "k"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200, help="samples of each")
    parser.add_argument("--compat-dtype", choices=("float64", "float32"), default="float64",
                        help="compat's dtype (the notebook is float64)")
    parser.add_argument("--steady", action="store_true",
                        help="also groups of consecutive steps of each, alternated")
    args = parser.parse_args()
    dtype = np.dtype(args.compat_dtype)
    with threadpool_limits(1):
        print(f"batch {BATCH}, {STEPS} steps, {FEATURES} features, {NODES} nodes, {CLASSES} "
              f"classes, notebook float64, compat {dtype}, 1 thread; {args.repeats} "
              f"alternated samples, medians")
        results = {}
        for backend in ("cython", "numpy"):
            worst = check(backend, dtype)
            notebook, fast, X, y = models(backend, dtype)
            X_nb = X.astype(np.float64)
            for _ in range(10):                 # warm-up (and the buffers' first pages)
                step(notebook, X_nb, y)
                step(fast, X, y)
            kernels = kernels_only(backend, fast, X)
            t_nb, t_fast, t_k = [], [], []
            for _ in range(args.repeats):
                t_nb.append(timed(step, notebook, X_nb, y))
                t_fast.append(timed(step, fast, X, y))
                t_k.append(timed(kernels))
            nb, fa, k = (statistics.median(t) for t in (t_nb, t_fast, t_k))
            results[backend] = (nb, fa, k)
            print(f"  notebook loops {nb * 1e3:7.3f} ms   compat backend={backend!r:9}"
                  f"{fa * 1e3:7.3f} ms   ratio {nb / fa:5.2f}x   (of which the RNN "
                  f"fwd+bwd kernels {k * 1e3:.3f} ms; one step agrees to {worst:.1e})")
            if args.steady:
                nb, fa, k = steady(notebook, fast, X_nb, X, y, kernels)
                print(f"    steady (groups of 30 consecutive steps): notebook {nb * 1e3:7.3f} "
                      f"ms   compat {fa * 1e3:7.3f} ms   ratio {nb / fa:5.2f}x   (kernels "
                      f"{k * 1e3:.3f} ms)")
    return results


if __name__ == "__main__":
    main()
