"""rnnfast against JAX's jitted ``lax.scan`` on the tiny cells, one thread.

    pip install "jax[cpu]"          # not a dependency of rnnfast
    python bench/jax_tiny.py        # markdown table on stdout (about a minute)

The issue names JAX the fastest peer at tiny sizes. For each tiny cell (batch 1, seq_len 50,
input 8, hidden 32; tanh RNN and LSTM, gate order i, f, g, o): the same weights and input in
both; "fwd" returns all outputs, "fwd+bwd" the gradients of ``out[:, -1].sum()`` with
respect to x, Wx, Wh and b (rnnfast: a training forward and ``backward`` from that output
gradient). JAX's version hoists the input projection out of the scan (one matmul for all
steps), as rnnfast does. Both are timed round-robin in one process by
``rnnfast.bench.time_callables``; JAX runs on the CPU with XLA's thread pool off, on inputs
already converted to JAX arrays.
"""
import os

# before jax is imported: one thread, CPU
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false "
                                   "intra_op_parallelism_threads=1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402

import rnnfast  # noqa: E402
import rnnfast._core  # noqa: E402,F401  (loaded before the thread limit, see BENCHMARKS.md)
from rnnfast.bench import limit_threads, time_callables  # noqa: E402

B, T, D, H = 1, 50, 8, 32


def jax_functions(cell):
    """Jitted ``forward(x, Wx, Wh, b)`` (all outputs) and ``gradients(x, Wx, Wh, b)``."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    def forward(x, Wx, Wh, b):
        xw = jnp.swapaxes(x @ Wx + b, 0, 1)                 # (T, B, G): all steps at once
        h0 = jnp.zeros((x.shape[0], Wh.shape[0]), x.dtype)
        if cell == "rnn":
            def step(h, xw_t):
                h = jnp.tanh(xw_t + h @ Wh)
                return h, h
            _, hs = lax.scan(step, h0, xw)
        else:
            def step(state, xw_t):
                h, c = state
                i, f, g, o = jnp.split(xw_t + h @ Wh, 4, axis=-1)
                c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
                h = jax.nn.sigmoid(o) * jnp.tanh(c)
                return (h, c), h
            _, hs = lax.scan(step, (h0, h0), xw)
        return jnp.swapaxes(hs, 0, 1)

    def loss(x, Wx, Wh, b):
        return forward(x, Wx, Wh, b)[:, -1].sum()

    return jax.jit(forward), jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3)))


def run_cell(cell):
    layer_type = rnnfast.RNN if cell == "rnn" else rnnfast.LSTM
    x = np.random.default_rng(0).standard_normal((B, T, D)).astype(np.float32)
    dout = np.zeros((B, T, H), np.float32)
    dout[:, -1] = 1
    inference = layer_type(D, H, seed=0).eval()
    training = layer_type(D, H, seed=0)
    p = inference.params
    forward, gradients = jax_functions(cell)
    import jax.numpy as jnp  # JAX's best case: its inputs already are its own arrays
    jx, jWx, jWh, jb = (jnp.asarray(a) for a in (x, p["Wx"], p["Wh"], p["b"]))

    def rnnfast_fwd():
        return inference(x)[0]

    def rnnfast_fwd_bwd():
        training(x)
        return training.backward(dout)[0]

    def jax_fwd():
        return forward(jx, jWx, jWh, jb).block_until_ready()

    def jax_fwd_bwd():
        grads = gradients(jx, jWx, jWh, jb)
        for g in grads:
            g.block_until_ready()
        return grads[0]

    rows = []
    for name, ours, theirs in (("fwd", rnnfast_fwd, jax_fwd),
                               ("fwd+bwd", rnnfast_fwd_bwd, jax_fwd_bwd)):
        # the same numbers: outputs, or dx of the fwd+bwd
        diff = float(np.max(np.abs(np.asarray(theirs()) - ours())))
        assert diff < 1e-4, f"{cell}-{name}: JAX and rnnfast differ by {diff}"
        timings = time_callables({"rnnfast": ours, "jax": theirs})
        rows.append((f"tiny-{cell}-{name}", timings["rnnfast"].median, timings["jax"].median,
                     diff))
    return rows


def main():
    import jax
    rows = []
    with limit_threads(1):
        for cell in ("rnn", "lstm"):
            rows += run_cell(cell)
    print(f"JAX {jax.__version__} (jit, lax.scan, CPU, XLA thread pool off), rnnfast "
          f"{rnnfast.__version__}; 1 thread; float32; medians of round-robin samples\n")
    print("| cell | rnnfast ms | JAX ms | vs JAX | max abs diff |")
    print("|---|--:|--:|--:|--:|")
    for name, ours, theirs, diff in rows:
        print(f"| {name} | {ours * 1e3:.3g} | {theirs * 1e3:.3g} | {theirs / ours:.2f}x "
              f"| {diff:.1e} |")


if __name__ == "__main__":
    main()
