"""rnnfast.torch against torch.nn: one training step, 1 thread.

A step is what a training loop runs: forward, a loss on the last step's output
(``out[:, -1].pow(2).sum()``), backward through torch's autograd (parameter gradients and
the input's). Both modules have the same weights (the torch.nn module's state_dict), batch
first, float32. Implementations alternate round by round; each sample is the mean of enough
steps to take ~20 ms, and the table gives each one's median over the rounds and the ratio
of the medians (measured in one process, side by side).

Then, at the small shape, bidirectional and packed steps (``PackedSequence`` input of
lengths drawn uniformly in [T/4, T], in random order, packed with ``enforce_sorted=False``
once, outside the step; the loss on ``h_n``, each sequence's last valid step, as a
classifier reads it; the gradient reaches the packed data): one-direction packed,
bidirectional padded (the loss on the last step as above) and bidirectional packed.

Also, at the tiny shape: the wrapper's cost, the rnnfast.torch step minus the direct
compiled forward+backward (``rnnfast._core`` on ready arrays, the same gradient on the last
step), split into torch's floor (the same step through an empty autograd.Function of the
same interface: what torch's autograd costs any such wrapper) and the rest; and the same
floor with the direct kernels run inside its Function, whose difference to the step is
rnnfast.torch's own share (its Python: the rest is the kernels run between torch's ops,
colder than in a loop of their own, which any wrapper pays); what a call prepares (the
summed biases; the weights are read in place).

    flock /tmp/rnnfast-bench.lock python bench/torch_backend.py [--medium] [--rounds N]
"""
import argparse
import time

import numpy as np
import torch
from threadpoolctl import threadpool_limits

import rnnfast.torch as rt
from rnnfast import _core

SHAPES = {"tiny": (1, 50, 8, 32), "small": (16, 100, 32, 64), "medium": (32, 100, 128, 256)}
CELLS = {"lstm": "LSTM", "gru": "GRU", "rnn_tanh": "RNN"}


def mean_time(fn, target=0.02):
    """Seconds per call of ``fn``, averaged over enough calls to take ``target`` seconds."""
    fn()
    n, t = 1, 0.0
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        t = time.perf_counter() - t0
        if t >= target:
            return t / n
        n = max(n * 2, int(n * target / max(t, 1e-9)) + 1)


def medians(fns, rounds):
    samples = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            samples[name].append(mean_time(fn))
    return {name: float(np.median(s)) for name, s in samples.items()}


def modules(cell, D, H, **kwargs):
    torch.manual_seed(0)
    ref = getattr(torch.nn, CELLS[cell])(D, H, batch_first=True, **kwargs)
    ours = getattr(rt, CELLS[cell])(D, H, batch_first=True, **kwargs)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def step(module, x):
    def run():
        module.zero_grad(set_to_none=True)
        out, _ = module(x)
        out[:, -1].pow(2).sum().backward()
    return run


def packed_input(B, T, D):
    """A PackedSequence of B rows, lengths uniform in [T/4, T] in random order, its data a
    leaf that requires a gradient."""
    g = torch.Generator().manual_seed(2)
    lengths = torch.randint(T // 4, T + 1, (B,), generator=g)
    x = torch.randn(B, T, D, generator=g)
    seq = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True,
                                                  enforce_sorted=False)
    data = seq.data.detach().requires_grad_()
    return (torch.nn.utils.rnn.PackedSequence(data, seq.batch_sizes, seq.sorted_indices,
                                              seq.unsorted_indices),
            float(lengths.sum()) / (B * T))


def packed_step(module, seq):
    def run():
        module.zero_grad(set_to_none=True)
        seq.data.grad = None
        _, state = module(seq)
        h_n = state[0] if isinstance(state, tuple) else state
        h_n.pow(2).sum().backward()
    return run


def direct_calls(cell, ours, x):
    """The compiled forward and backward the rnnfast.torch step runs, on ready arrays:
    ``(forward, backward)``, backward taking forward's result (the gradient on the last
    step's output, as the step's loss gives it)."""
    xa = x.detach().numpy()
    Wx = ours.weight_ih_l0.detach().numpy().T.copy()
    Wh = ours.weight_hh_l0.detach().numpy().T.copy()
    spec = rt._SPEC_OF_MODE[ours.mode]
    biases = spec.biases_from_torch(ours.bias_ih_l0.detach().numpy(),
                                    ours.bias_hh_l0.detach().numpy())
    b, b_hn = biases["b"], biases.get("b_hn")

    def forward():
        if cell == "lstm":
            out, h, c, ws = _core.lstm_forward(xa, None, None, Wx, Wh, b, True, True)
        elif cell == "gru":
            out, h, ws = _core.gru_forward(xa, None, Wx, Wh, b, b_hn, True, True)
        else:
            out, h, ws = _core.rnn_forward(xa, None, Wx, Wh, b, "tanh", True, True)
        return out, ws

    def backward(done):
        out, ws = done
        dout = np.zeros_like(out)
        dout[:, -1] = 2 * out[:, -1]
        if cell == "lstm":
            _core.lstm_backward(dout, None, None, xa, Wx, Wh, ws, True)
        elif cell == "gru":
            _core.gru_backward(dout, None, xa, Wx, Wh, ws, True)
        else:
            _core.rnn_backward(dout, None, xa, Wx, Wh, ws, "tanh", True)
    return forward, backward


def direct_step(cell, ours, x):
    """The compiled forward+backward the rnnfast.torch step runs, on ready arrays."""
    forward, backward = direct_calls(cell, ours, x)

    def run():
        backward(forward())
    return run


def floor_step(module, x, kernels=None):
    """torch's own share of a step: the same step (zero_grad, a module call, loss, backward)
    through an empty autograd.Function of rnnfast.torch's interface (inputs ``(call, x, h0,
    c0, *params)``, its outputs, applied by the same C entry, the same once_differentiable),
    whose forward and backward only hand out copies of ready arrays as tensors. With
    ``kernels`` (direct_calls' pair) they also run the compiled forward and backward on
    ready arrays: the step with everything but rnnfast.torch's own work (checks, weight
    transposes, conversions), the kernels as they run between torch's ops (colder than in a loop
    of their own)."""
    params = list(module._flat_weights)
    B, T = x.shape[0], x.shape[1]
    H = module.hidden_size
    outs = [np.zeros((B, T, H), np.float32)] + [np.zeros((1, B, H), np.float32)] * (
        2 if isinstance(module, torch.nn.LSTM) else 1)
    grads = [x.detach().numpy().copy()] + [p.detach().numpy().copy() for p in params]
    run_forward, run_backward = kernels if kernels is not None else (None, None)

    class Empty(torch.autograd.Function):
        @staticmethod
        def forward(ctx, call, x, h0, c0, *params):
            ctx.set_materialize_grads(False)
            ctx.save_for_backward(x)
            if run_forward is not None:
                ctx.done = run_forward()
            return tuple(torch.from_numpy(a.copy()) for a in outs)

        @staticmethod
        @rt._once_differentiable
        def backward(ctx, *grad_outputs):
            _ = ctx.saved_tensors
            if run_backward is not None:
                run_backward(ctx.done)
            return (None, torch.from_numpy(grads[0].copy()), None, None,
                    *(torch.from_numpy(g.copy()) for g in grads[1:]))

    apply = super(torch.autograd.Function, Empty).apply

    class Wrapper(torch.nn.Module):         # (a module call, as rnnfast.torch's)
        def forward(self, x):
            outs = apply(None, x, None, None, *params)
            return outs[0], outs[1:]

    wrapper = Wrapper()

    def run():
        module.zero_grad(set_to_none=True)
        out, _ = wrapper(x)
        out[:, -1].pow(2).sum().backward()
    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--medium", action="store_true", help="add the medium shape")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)
    shapes = ["tiny", "small"] + (["medium"] if args.medium else [])
    print(f"torch {torch.__version__}, 1 thread, float32, batch first; medians of "
          f"{args.rounds} rounds (ms per training step)")
    print(f"{'shape':8} {'cell':9} {'torch.nn':>10} {'rnnfast.torch':>14} {'speedup':>8}")
    with threadpool_limits(1):
        for shape in shapes:
            B, T, D, H = SHAPES[shape]
            x = torch.randn(B, T, D, generator=torch.Generator().manual_seed(1),
                            requires_grad=True)
            for cell in CELLS:
                ref, ours = modules(cell, D, H)
                m = medians({"torch": step(ref, x), "rnnfast": step(ours, x)}, args.rounds)
                print(f"{shape:8} {cell:9} {m['torch'] * 1e3:10.3f} {m['rnnfast'] * 1e3:14.3f} "
                      f"{m['torch'] / m['rnnfast']:7.2f}x", flush=True)
        B, T, D, H = SHAPES["small"]
        x = torch.randn(B, T, D, generator=torch.Generator().manual_seed(1),
                        requires_grad=True)
        seq, real = packed_input(B, T, D)
        print(f"\nsmall {SHAPES['small']}: packed (lengths in [T/4, T], {real:.0%} real "
              f"steps, loss on h_n) and bidirectional steps (ms per training step)")
        print(f"{'variant':21} {'cell':9} {'torch.nn':>10} {'rnnfast.torch':>14} "
              f"{'speedup':>8}")
        for variant, bi, is_packed in (("packed", False, True), ("bidirectional", True, False),
                                       ("bidirectional packed", True, True)):
            for cell in CELLS:
                ref, ours = modules(cell, D, H, bidirectional=bi)
                make = (lambda m: packed_step(m, seq)) if is_packed else (lambda m: step(m, x))
                m = medians({"torch": make(ref), "rnnfast": make(ours)}, args.rounds)
                print(f"{variant:21} {cell:9} {m['torch'] * 1e3:10.3f} "
                      f"{m['rnnfast'] * 1e3:14.3f} {m['torch'] / m['rnnfast']:7.2f}x",
                      flush=True)
        B, T, D, H = SHAPES["tiny"]
        x = torch.randn(B, T, D, generator=torch.Generator().manual_seed(1),
                        requires_grad=True)
        print("\nwrapper overhead at the tiny shape (us per step): rnnfast.torch step, direct "
              "_core fwd+bwd, difference; torch's floor (the step through an empty Function "
              "of the same interface) and what is left of the difference; then the floor "
              "with the direct kernels run inside it, and rnnfast.torch's own share: the "
              "step minus that (its Python; the rest of the difference is the kernels "
              "running colder between torch's ops); what a call prepares")
        for cell in CELLS:
            _, ours = modules(cell, D, H)
            spec = rt._SPEC_OF_MODE[ours.mode]
            _, views = ours._rf_views("bench")
            m = medians({"step": step(ours, x), "direct": direct_step(cell, ours, x),
                         "floor": floor_step(ours, x),
                         "inside": floor_step(ours, x, direct_calls(cell, ours, x)),
                         "copies": lambda ours=ours, spec=spec, views=views:
                         ours._rf_call(spec, views, views[0].dtype, True)}, args.rounds)
            over = m["step"] - m["direct"]
            print(f"  {cell:9} step {m['step'] * 1e6:7.1f}  direct {m['direct'] * 1e6:7.1f}  "
                  f"overhead {over * 1e6:6.1f} = torch floor {m['floor'] * 1e6:6.1f} + "
                  f"{(over - m['floor']) * 1e6:5.1f}; floor with the kernels inside "
                  f"{m['inside'] * 1e6:6.1f}, own {(m['step'] - m['inside']) * 1e6:5.1f}  "
                  f"(the call's preparation, biases summed: {m['copies'] * 1e6:.1f})", flush=True)
        print("\nper-call preparation (the biases summed) at the other shapes (us)")
        for shape in shapes[1:]:
            B, T, D, H = SHAPES[shape]
            for cell in CELLS:
                _, ours = modules(cell, D, H)
                spec = rt._SPEC_OF_MODE[ours.mode]
                _, views = ours._rf_views("bench")
                t = medians({"c": lambda ours=ours, spec=spec, views=views:
                             ours._rf_call(spec, views, views[0].dtype, True)}, 3)["c"]
                print(f"  {shape:8} {cell:9} {t * 1e6:7.1f}")


if __name__ == "__main__":
    main()
