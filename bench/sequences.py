"""Sequences against PyTorch: variable lengths, bidirectional, stacked layers, streaming step.

For each grid shape (rnnfast.bench.SIZES), cell (tanh RNN, LSTM, GRU) and pass (inference
forward; training forward + backward), in one process, samples alternated round-robin
(rnnfast.bench.time_callables), medians:

- lengths: a batch whose lengths are uniform in [T/4, T] against the padded call of the same
  batch (rnnfast ``lengths=``; PyTorch ``pack_padded_sequence(..., enforce_sorted=False)``,
  packing included). Targets: <= 0.85x padded at the small and medium shapes, <= 1.05x at
  every shape.
- bidirectional: one bidirectional layer against one direction at 1 thread (target <=
  2.05x), and at 2 threads against itself at 1 thread (target >= 1.6x faster; the
  2-thread calls are timed in a group of their own, after the 1-thread group).
- stacked: 2 layers against 1 (target <= 2.05x).
- step: one streaming step at batch 1, input 32, hidden 128 (rnnfast ``layer.step`` with
  ``out=`` the state; PyTorch's LSTMCell/GRUCell/RNNCell); target <= 5 us.

``python bench/sequences.py [--sizes tiny,small] [--kinds lstm] [--markdown FILE]``.
Without torch (``pip install torch==2.13.0``) only rnnfast's columns are filled.
"""
import argparse
import contextlib
import sys

import numpy as np

import rnnfast
from rnnfast.bench import SETTLE_S, SIZES, _import_torch, limit_threads, time_callables

KINDS = ("rnn", "lstm", "gru")
PASSES = ("fwd", "fwdbwd")
LAYERS = {"rnn": rnnfast.RNN, "lstm": rnnfast.LSTM, "gru": rnnfast.GRU}
TORCH_CLASSES = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}
TORCH_CELLS = {"rnn": "RNNCell", "lstm": "LSTMCell", "gru": "GRUCell"}
# variants of a call: (num_layers, bidirectional, with lengths)
VARIANTS = {"one": (1, False, False), "lengths": (1, False, True), "bi": (1, True, False),
            "two": (2, False, False)}


def lengths_for(B, T, seed=0):
    """Lengths uniform in [T/4, T] (one row of full length, as a padded batch has)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(max(1, T // 4), T + 1, B)
    lengths[0] = T
    return rng.permutation(lengths)


def rnnfast_call(kind, shape, variant, pass_, seed=0):
    B, T, D, H = shape
    L, bi, with_lengths = VARIANTS[variant]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((B, T, D)).astype(np.float32)
    layer = LAYERS[kind](D, H, num_layers=L, bidirectional=bi, seed=seed)
    lengths = lengths_for(B, T, seed) if with_lengths else None
    kw = {"lengths": lengths} if with_lengths else {}
    if pass_ == "fwd":
        layer.eval()
        return lambda: layer(x, **kw)
    dout = rng.standard_normal((B, T, (2 if bi else 1) * H)).astype(np.float32)

    def fwdbwd():
        layer(x, **kw)
        layer.backward(dout)
    return fwdbwd


def torch_call(torch, kind, shape, variant, pass_, seed=0):
    B, T, D, H = shape
    L, bi, with_lengths = VARIANTS[variant]
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
    torch.manual_seed(seed)
    module = getattr(torch.nn, TORCH_CLASSES[kind])(D, H, num_layers=L, bidirectional=bi,
                                                     batch_first=True)
    rng = np.random.default_rng(seed)
    x = torch.tensor(rng.standard_normal((B, T, D)), dtype=torch.float32)
    lengths = torch.tensor(lengths_for(B, T, seed)) if with_lengths else None
    dout = torch.tensor(rng.standard_normal((B, T, (2 if bi else 1) * H)),
                        dtype=torch.float32)

    def run():
        if lengths is None:
            return module(x)[0]
        seq = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        return pad_packed_sequence(module(seq)[0], batch_first=True, total_length=T)[0]

    if pass_ == "fwd":
        def fwd():
            with torch.no_grad():
                return run()
        return fwd

    def fwdbwd():
        module.zero_grad(set_to_none=False)
        run().backward(dout)
    return fwdbwd


def step_calls(torch, kind, D=32, H=128):
    layer = LAYERS[kind](D, H).eval()
    x_t = np.ones((1, D), np.float32)
    _, state = layer.step(x_t)
    calls = {"rnnfast": lambda: layer.step(x_t, state, out=state)}
    if torch is not None:
        cell = getattr(torch.nn, TORCH_CELLS[kind])(D, H)
        xt = torch.ones(1, D)
        hx = (torch.zeros(1, H), torch.zeros(1, H)) if kind == "lstm" else torch.zeros(1, H)

        def torch_step():
            with torch.no_grad():
                return cell(xt, hx)
        calls["torch"] = torch_step
    return calls


def measure(kinds, sizes, repeat, budget, torch):
    """``{(kind, size, pass): {name: median seconds}}``; names "<impl> <variant>[ 2t]".

    Per cell two groups of alternated samples, one after the other: every variant at 1
    thread, then the one-direction and bidirectional calls at 2 threads. (Switching the
    thread count from sample to sample measured cold starts: the worker threads asleep
    after the other group's sample, at times re-created, 0.01-0.5x "speedups".)"""
    impls = ["rnnfast"] + (["torch"] if torch is not None else [])

    def call(impl, kind, shape, variant, pass_):
        return (rnnfast_call(kind, shape, variant, pass_) if impl == "rnnfast"
                else torch_call(torch, kind, shape, variant, pass_))

    results = {}
    for size in sizes:
        for kind in kinds:
            for pass_ in PASSES:
                shape = SIZES[size]
                print(f"  {size} {kind} {pass_} ...", file=sys.stderr, flush=True)
                medians = {}
                for threads, variants, suffix in ((1, VARIANTS, ""), (2, ("one", "bi"), " 2t")):
                    fns = {f"{impl} {v}{suffix}": call(impl, kind, shape, v, pass_)
                           for v in variants for impl in impls}
                    with limit_threads(threads):
                        # at 2 threads each library's workers spin on after its calls:
                        # each sample waits for them to sleep first (the grid's SETTLE_S)
                        timings = time_callables(fns, repeat=repeat, budget=budget,
                                                 settle=SETTLE_S if threads > 1 else 0.0)
                    medians.update({n: t.median for n, t in timings.items()})
                results[(kind, size, pass_)] = medians
    return results


def measure_steps(kinds, torch, repeat):
    out = {}
    for kind in kinds:
        with limit_threads(1):
            timings = time_callables(step_calls(torch, kind), repeat=repeat, budget=1.0)
        out[kind] = {n: t.median for n, t in timings.items()}
    return out


def _ratio(a, b):
    return f"{a / b:.2f}x" if a and b else "-"


def tables(results, steps, have_torch):
    """The four tables (markdown), rnnfast beside PyTorch, with the targets."""
    lines = []

    def row(cells):
        lines.append("| " + " | ".join(cells) + " |")

    def header(cols):
        row(cols)
        row(["---"] + ["--:"] * (len(cols) - 1))

    keys = list(results)
    lines.append("### Variable lengths (uniform in [T/4, T]) vs padded, 1 thread")
    header(["cell", "rnnfast padded ms", "rnnfast lengths ms", "rnnfast ratio",
            "torch padded ms", "torch packed ms", "torch ratio", "target"])
    for kind, size, pass_ in keys:
        r = results[(kind, size, pass_)]
        target = "<= 0.85x" if size in ("small", "medium") else "<= 1.05x"
        row([f"{size}-{kind}-{pass_}", f"{r['rnnfast one'] * 1e3:.3f}",
             f"{r['rnnfast lengths'] * 1e3:.3f}", _ratio(r["rnnfast lengths"], r["rnnfast one"]),
             f"{r.get('torch one', 0) * 1e3:.3f}", f"{r.get('torch lengths', 0) * 1e3:.3f}",
             _ratio(r.get("torch lengths"), r.get("torch one")), target])
    lines.append("")
    lines.append("### Bidirectional: vs one direction at 1 thread; 2 threads vs 1")
    header(["cell", "rnnfast bi/one 1t", "rnnfast bi 1t/2t", "rnnfast one 1t/2t",
            "torch bi/one 1t", "torch bi 1t/2t", "targets"])
    for kind, size, pass_ in keys:
        r = results[(kind, size, pass_)]
        row([f"{size}-{kind}-{pass_}", _ratio(r["rnnfast bi"], r["rnnfast one"]),
             _ratio(r["rnnfast bi"], r["rnnfast bi 2t"]),
             _ratio(r["rnnfast one"], r["rnnfast one 2t"]),
             _ratio(r.get("torch bi"), r.get("torch one")),
             _ratio(r.get("torch bi"), r.get("torch bi 2t")), "<= 2.05x; >= 1.6x"])
    lines.append("")
    lines.append("### Stacked: 2 layers vs 1, 1 thread")
    header(["cell", "rnnfast 1 layer ms", "rnnfast 2 layers ms", "rnnfast ratio",
            "torch ratio", "target"])
    for kind, size, pass_ in keys:
        r = results[(kind, size, pass_)]
        row([f"{size}-{kind}-{pass_}", f"{r['rnnfast one'] * 1e3:.3f}",
             f"{r['rnnfast two'] * 1e3:.3f}", _ratio(r["rnnfast two"], r["rnnfast one"]),
             _ratio(r.get("torch two"), r.get("torch one")), "<= 2.05x"])
    if steps:
        lines.append("")
        lines.append("### Streaming step, batch 1, input 32, hidden 128, 1 thread")
        header(["cell", "rnnfast step us", "torch cell us", "target"])
        for kind, r in steps.items():
            row([kind, f"{r['rnnfast'] * 1e6:.2f}",
                 f"{r['torch'] * 1e6:.2f}" if "torch" in r else "-", "<= 5 us"])
    if not have_torch:
        lines.append("")
        lines.append("(PyTorch not installed: its columns are empty.)")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default=",".join(SIZES), help="grid shapes (default: all)")
    p.add_argument("--kinds", default=",".join(KINDS), help="cells (default: rnn,lstm,gru)")
    p.add_argument("--repeat", type=int, default=7, help="rounds of samples (default 7)")
    p.add_argument("--budget", type=float, default=0.5,
                   help="seconds of sampling per implementation and cell (default 0.5)")
    p.add_argument("--no-step", action="store_true", help="leave out the step table")
    p.add_argument("--markdown", help="also write the tables to this file")
    args = p.parse_args(argv)
    torch = _import_torch()
    sizes = [s for s in args.sizes.split(",") if s]
    kinds = [k for k in args.kinds.split(",") if k]
    for s in sizes:
        if s not in SIZES:
            p.error(f"unknown size {s!r}; choose from {', '.join(SIZES)}")
    for k in kinds:
        if k not in KINDS:
            p.error(f"unknown cell {k!r}; choose from {', '.join(KINDS)}")
    results = measure(kinds, sizes, args.repeat, args.budget, torch)
    steps = None if args.no_step else measure_steps(kinds, torch, args.repeat)
    text = tables(results, steps, torch is not None)
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
