"""rnnfast.torch, the torch.nn modules on rnnfast's kernels, against torch.nn's own.

Every comparison runs the same weights through both modules (the torch.nn module's
state_dict loaded into the rnnfast.torch one) and compares the outputs, the final states and
every gradient (input, initial states, each parameter) that torch's autograd gives through
each; torch.autograd.gradcheck checks the gradients in float64 against finite differences.
Tolerances: conftest's per-dtype ones, relative to the largest value of each compared tensor
(the gradients of the weights are sums over every step and row). Packed inputs go through
torch.nn.utils.rnn.pack_padded_sequence on both sides, so the input gradient compared is
the padded tensor's, carried through torch's packing and the module's unpacking.
"""
import copy
import pickle
import subprocess
import sys

import numpy as np
import pytest

from rnnfast import cells
from conftest import ATOL, RTOL

torch = pytest.importorskip(
    "torch", reason="PyTorch is not installed; rnnfast.torch needs it "
                    "(pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu)")
rt = pytest.importorskip("rnnfast.torch")
torch.set_num_threads(1)

TORCH_DTYPE = {np.float32: torch.float32, np.float64: torch.float64}
B, T, D, H = 3, 5, 4, 6
TORCH_KINDS = [s.kind for s in cells.specs() if s.torch_class]


def pair(kind, *, dtype=np.float32, seed=0, **kwargs):
    """(torch.nn module, rnnfast.torch module) with the same weights."""
    spec = cells.get(kind)
    if spec.family == "rnn":
        kwargs["nonlinearity"] = spec.nonlinearity
    torch.manual_seed(seed)
    ref = getattr(torch.nn, spec.torch_class)(D, H, dtype=TORCH_DTYPE[dtype], **kwargs)
    ours = getattr(rt, spec.torch_class)(D, H, dtype=TORCH_DTYPE[dtype], **kwargs)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


# lengths of the packed cases (B rows, at most T): sorted for enforce_sorted=True; unsorted,
# with a tie and no row of all T steps, for enforce_sorted=False
PACKINGS = {"padded": None, "packed_sorted": (T, T - 1, 2), "packed_unsorted": (3, T - 1, 3)}


def inputs(kind, *, batch_first, dtype, num_layers=1, states=True, seed=1, batched=True,
           directions=1):
    g = torch.Generator().manual_seed(seed)
    td = TORCH_DTYPE[dtype]
    shape = ((B, T, D) if batch_first else (T, B, D)) if batched else (T, D)
    x = torch.randn(shape, generator=g, dtype=td)
    if not states:
        return x, None
    sshape = (num_layers * directions, B, H) if batched else (num_layers * directions, H)
    hs = tuple(torch.randn(sshape, generator=g, dtype=td)
               for _ in cells.get(kind).states)
    return x, (hs if len(hs) == 2 else hs[0])


def leaves(x, hx):
    x = x.clone().requires_grad_()
    if hx is None:
        return x, None
    if isinstance(hx, tuple):
        return x, tuple(h.clone().requires_grad_() for h in hx)
    return x, hx.clone().requires_grad_()


def as_tuple(s):
    return () if s is None else (s if isinstance(s, tuple) else (s,))


def packed(x, lengths, batch_first):
    """``x`` packed as torch.nn.utils.rnn packs it (enforce_sorted when the lengths are)."""
    return torch.nn.utils.rnn.pack_padded_sequence(
        x, lengths, batch_first=batch_first, enforce_sorted=list(lengths) == sorted(lengths)[::-1])


def run(module, x, hx, *, seed=None, backward=True, lengths=None):
    """Outputs, states and every gradient of a loss on all of them, as a dict of tensors;
    with ``lengths``, ``x`` goes in packed (and the packed output's data is compared, its
    batch_sizes and indices too)."""
    module.zero_grad(set_to_none=True)
    x, hx = leaves(x, hx)
    if seed is not None:
        torch.manual_seed(seed)
    if lengths is None:
        out, state = module(x, hx)
    else:
        out, state = module(packed(x, lengths, module.batch_first), hx)
        assert isinstance(out, torch.nn.utils.rnn.PackedSequence)
        result = {"batch_sizes": out.batch_sizes}
        for name in ("sorted_indices", "unsorted_indices"):
            if getattr(out, name) is not None:
                result[name] = getattr(out, name)
        return {**result, **run_on(module, x, hx, out.data, state, backward)}
    return run_on(module, x, hx, out, state, backward)


def run_on(module, x, hx, out, state, backward):
    result = {"out": out.detach().clone()}
    for k, s in enumerate(as_tuple(state)):
        result[f"state{k}"] = s.detach().clone()
    if backward:
        g = torch.Generator().manual_seed(7)
        loss = (out * torch.randn(out.shape, generator=g, dtype=out.dtype)).sum()
        for s in as_tuple(state):
            loss = loss + (s * torch.randn(s.shape, generator=g, dtype=s.dtype)).sum()
        loss.backward()
        result["dx"] = x.grad.clone()
        for k, h in enumerate(as_tuple(hx)):
            result[f"dstate{k}"] = h.grad.clone()
        for name, p in module.named_parameters():
            result[f"d{name}"] = p.grad.clone()
    return result


def assert_same_results(ours, ref, dtype):
    assert ours.keys() == ref.keys()
    for key in ref:
        a, b = ours[key], ref[key]
        assert a.shape == b.shape and a.dtype == b.dtype, key
        if not b.is_floating_point():               # a packed output's sizes and indices
            assert torch.equal(a, b), key
            continue
        scale = max(1.0, float(b.abs().max()))
        torch.testing.assert_close(a, b, rtol=RTOL[dtype], atol=ATOL[dtype] * 10 * scale,
                                   msg=lambda m, key=key: f"{key}: {m}")


def check_parity(kind, dtype, batch_first, num_layers, bidirectional, packing):
    nd = 2 if bidirectional else 1
    ref, ours = pair(kind, dtype=dtype, batch_first=batch_first, num_layers=num_layers,
                     bidirectional=bidirectional)
    lengths = PACKINGS[packing]
    for states in (True, False):
        x, hx = inputs(kind, batch_first=batch_first, dtype=dtype, num_layers=num_layers,
                       states=states, directions=nd)
        expected = run(ref, x, hx, lengths=lengths)
        # out, the states, dx, the initial states' and every parameter's gradients (and
        # for packed output, batch_sizes and the indices when not enforce_sorted)
        n_extra = 0 if lengths is None else (1 if packing == "packed_sorted" else 3)
        assert len(expected) == 2 + len(cells.get(kind).states) * (1 + states) + \
            len(list(ref.parameters())) + n_extra
        assert len(list(ref.parameters())) == num_layers * nd * (4 if ref.bias else 2)
        assert_same_results(run(ours, x, hx, lengths=lengths), expected, dtype)
        # the inference kernels (no graph: every layer in the kernels' stack loop) too
        with torch.no_grad():
            inferred = run(ours, x, hx, backward=False, lengths=lengths)
        assert_same_results(inferred, {k: expected[k] for k in inferred}, dtype)


@pytest.mark.parametrize("packing", list(PACKINGS))
@pytest.mark.parametrize("bidirectional", [False, True], ids=["one_way", "bidirectional"])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("batch_first", [True, False], ids=["batch_first", "time_major"])
@pytest.mark.parametrize("kind", TORCH_KINDS)
def test_parity_with_torch_nn(kind, batch_first, num_layers, bidirectional, packing):
    """float64: outputs, states and every gradient as torch.nn's, tightly."""
    check_parity(kind, np.float64, batch_first, num_layers, bidirectional, packing)


@pytest.mark.parametrize("config", [(1, False, "padded"), (2, False, "padded"),
                                    (2, True, "padded"), (2, True, "packed_unsorted")],
                         ids=["one_layer", "stacked", "bidirectional", "bidirectional_packed"])
@pytest.mark.parametrize("batch_first", [True, False], ids=["batch_first", "time_major"])
@pytest.mark.parametrize("kind", TORCH_KINDS)
def test_parity_with_torch_nn_float32(kind, batch_first, config):
    check_parity(kind, np.float32, batch_first, *config)


@pytest.mark.parametrize("kind", TORCH_KINDS)
def test_packed_edge_cases(kind):
    """Every row of full length (the kernels' full-length loops), one row, a batch whose
    longest row is shorter than the padded input, and lengths of a PackedSequence made by
    pack_sequence from a list: as torch.nn."""
    ref, ours = pair(kind, dtype=np.float64, num_layers=2, bidirectional=True)
    x, hx = inputs(kind, batch_first=False, dtype=np.float64, num_layers=2, directions=2)
    for lengths in ((T, T, T), (T - 2, 1, T - 3)):
        assert_same_results(run(ours, x, hx, lengths=lengths),
                            run(ref, x, hx, lengths=lengths), np.float64)
    one = inputs(kind, batch_first=False, dtype=np.float64, num_layers=2, directions=2,
                 states=False)[0][:, :1]
    assert_same_results(run(ours, one, None, lengths=(2,)), run(ref, one, None, lengths=(2,)),
                        np.float64)
    seqs = [torch.randn(n, D, dtype=torch.float64) for n in (2, 4, 1, 4)]
    seq = torch.nn.utils.rnn.pack_sequence(seqs, enforce_sorted=False)
    (a, sa), (b, sb) = ours(seq), ref(seq)
    torch.testing.assert_close(a.data, b.data, rtol=1e-12, atol=1e-13)
    for u, v in zip(as_tuple(sa), as_tuple(sb)):
        torch.testing.assert_close(u, v, rtol=1e-12, atol=1e-13)
    assert torch.equal(a.sorted_indices, b.sorted_indices)
    assert torch.equal(a.unsorted_indices, b.unsorted_indices)


@pytest.mark.parametrize("kind", TORCH_KINDS)
def test_unbatched_and_no_bias(kind):
    for kwargs in ({"bias": False}, {"bias": True, "batch_first": True},
                   {"bias": False, "bidirectional": True, "num_layers": 2}):
        ref, ours = pair(kind, dtype=np.float64, **kwargs)
        nd, L = 1 + kwargs.get("bidirectional", False), kwargs.get("num_layers", 1)
        x, hx = inputs(kind, batch_first=False, dtype=np.float64, batched=False,
                       num_layers=L, directions=nd)
        assert_same_results(run(ours, x, hx), run(ref, x, hx), np.float64)
        if nd == 2:
            x, hx = inputs(kind, batch_first=False, dtype=np.float64, num_layers=L,
                           directions=nd)
            lengths = PACKINGS["packed_unsorted"]
            assert_same_results(run(ours, x, hx, lengths=lengths),
                                run(ref, x, hx, lengths=lengths), np.float64)
    assert not any("bias" in name for name, _ in rt.LSTM(D, H, bias=False).named_parameters())


@pytest.mark.parametrize("config", [(False, "padded"), (True, "padded"),
                                    (True, "packed_unsorted"), (False, "packed_sorted")],
                         ids=["one_way", "bidirectional", "bidirectional_packed", "packed"])
@pytest.mark.parametrize("batch_first", [True, False], ids=["batch_first", "time_major"])
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh"])
def test_dropout_between_layers_as_torch(kind, batch_first, config):
    """Under one seed both modules drop the same elements (rnnfast.torch draws its masks from
    torch's generator in torch's order: time-major, or over the packed rows of a
    PackedSequence), so outputs and gradients agree in training."""
    bidirectional, packing = config
    nd, lengths = 1 + bidirectional, PACKINGS[packing]
    ref, ours = pair(kind, dtype=np.float64, batch_first=batch_first, num_layers=3,
                     dropout=0.4, bidirectional=bidirectional)
    x, hx = inputs(kind, batch_first=batch_first, dtype=np.float64, num_layers=3,
                   directions=nd)
    expected = run(ref, x, hx, seed=5, lengths=lengths)
    assert_same_results(run(ours, x, hx, seed=5, lengths=lengths), expected, np.float64)
    # the inference path (no graph) draws the same masks
    with torch.no_grad():
        torch.manual_seed(5)
        out = ours(x if lengths is None else packed(x, lengths, batch_first), hx)[0]
        torch.testing.assert_close(out if lengths is None else out.data, expected["out"],
                                   rtol=1e-12, atol=1e-12)
    # and dropout does act: another seed, other masks
    assert not torch.equal(run(ours, x, hx, seed=6, backward=False, lengths=lengths)["out"],
                           expected["out"])
    ref.eval(), ours.eval()      # no dropout in eval mode
    assert_same_results(run(ours, x, hx, seed=6, lengths=lengths),
                        run(ref, x, hx, seed=5, lengths=lengths), np.float64)


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("kind", TORCH_KINDS)
def test_gradcheck_float64(kind, num_layers):
    _, ours = pair(kind, dtype=np.float64, num_layers=num_layers, batch_first=True)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, D, generator=g, dtype=torch.float64, requires_grad=True)
    states = [torch.randn(num_layers, 2, H, generator=g, dtype=torch.float64,
                          requires_grad=True) for _ in cells.get(kind).states]
    params = list(ours.parameters())

    def f(x, *rest):
        hx = tuple(rest[:len(states)]) if len(states) == 2 else rest[0]
        out, state = ours(x, hx)
        return (out, *as_tuple(state))

    # the parameters are the module's own: gradcheck perturbs them in place, which the
    # module reads (its views of them follow the storage)
    assert torch.autograd.gradcheck(f, (x, *states, *params), eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("kind", TORCH_KINDS)
def test_gradcheck_float64_bidirectional_packed(kind):
    """Two bidirectional layers over a PackedSequence of unsorted lengths: the gradients of
    the packed data, the initial states and every parameter, against finite differences."""
    _, ours = pair(kind, dtype=np.float64, num_layers=2, bidirectional=True)
    g = torch.Generator().manual_seed(3)
    template = packed(torch.zeros(3, 3, D, dtype=torch.float64), (2, 3, 1), False)
    data = torch.randn(template.data.shape, generator=g, dtype=torch.float64,
                       requires_grad=True)
    states = [torch.randn(4, 3, H, generator=g, dtype=torch.float64, requires_grad=True)
              for _ in cells.get(kind).states]
    params = list(ours.parameters())

    def f(data, *rest):
        seq = torch.nn.utils.rnn.PackedSequence(data, template.batch_sizes,
                                                template.sorted_indices,
                                                template.unsorted_indices)
        hx = tuple(rest[:len(states)]) if len(states) == 2 else rest[0]
        out, state = ours(seq, hx)
        return (out.data, *as_tuple(state))

    assert torch.autograd.gradcheck(f, (data, *states, *params), eps=1e-6, atol=1e-7)


def test_module_twice_in_one_graph_and_stacked_on_itself():
    ref, ours = pair("gru", dtype=np.float64, batch_first=True)
    x1, _ = inputs("gru", batch_first=True, dtype=np.float64, seed=1, states=False)
    x2, _ = inputs("gru", batch_first=True, dtype=np.float64, seed=2, states=False)
    grads = []
    for m in (ref, ours):
        m.zero_grad(set_to_none=True)
        a, ha = m(x1)
        b, hb = m(x2, ha)                        # the second call starts from the first's
        loss = (a ** 2).sum() + (b[:, -1] * 3).sum() + hb.sum()
        loss.backward()
        grads.append({n: p.grad.clone() for n, p in m.named_parameters()})
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", TORCH_KINDS)
def test_retain_graph_second_backward(kind):
    """The compiled backward overwrites a workspace's gates: with retain_graph=True the
    first backward must leave them intact, so that the second gives the same gradients; a
    second backward of a freed graph is torch's own error."""
    _, ours = pair(kind, dtype=np.float64, num_layers=2, bidirectional=True)
    x, hx = inputs(kind, batch_first=False, dtype=np.float64, num_layers=2, directions=2)
    x, hx = leaves(x, hx)
    out, state = ours(packed(x, PACKINGS["packed_unsorted"], False), hx)
    out = out.data
    loss = out.pow(2).sum() + sum(s.sum() for s in as_tuple(state))
    loss.backward(retain_graph=True)
    first = [t.grad.clone() for t in (x, *as_tuple(hx), *ours.parameters())]
    for t in (x, *as_tuple(hx), *ours.parameters()):
        t.grad = None
    loss.backward()
    second = [t.grad for t in (x, *as_tuple(hx), *ours.parameters())]
    for a, b in zip(first, second):
        assert torch.equal(a, b)
    # the last backward let the workspaces go (out: the packing's gather of the Function's)
    node = out.grad_fn.next_functions[0][0].next_functions[0][0]
    assert type(node).__name__ == "_RecurrentFunctionBackward" and node.tape is None
    with pytest.raises(RuntimeError, match="second time"):
        loss.backward()


def test_inference_path_keeps_no_workspace(monkeypatch):
    """no_grad, and calls where nothing needs a gradient, run the inference kernels (no
    workspace, no graph); eval mode with trainable parameters still backpropagates, as
    torch.nn's modules do. (Without dropout a stack runs in the kernels' stack loop, with
    it layer by layer: either is watched.)"""
    seen = []
    kernel, stack = rt._forward_layer, rt._core.stack_forward

    def spy(core, call, x, states, layer, training):
        seen.append(training)
        out, done = kernel(core, call, x, states, layer, training)
        assert all((ws is None) == (not training) for _, ws in done)
        return out, done

    def stack_spy(kernels, kind, x, states, weights, directions, batch_first, training,
                  lengths):
        done = stack(kernels, kind, x, states, weights, directions, batch_first, training,
                     lengths)
        seen.extend([training] * len(done[2]))      # (every layer in one call)
        assert all((ws is None) == (not training) for _, workspaces in done[2]
                   for ws in workspaces)
        return done

    monkeypatch.setattr(rt, "_forward_layer", spy)
    monkeypatch.setattr(rt._core, "stack_forward", stack_spy)
    ref, ours = pair("lstm", num_layers=2)
    x, hx = inputs("lstm", batch_first=False, dtype=np.float32, num_layers=2)
    with torch.no_grad():
        out, (h, c) = ours(x, hx)
    assert out.grad_fn is None and h.grad_fn is None and seen == [False, False]
    torch.testing.assert_close(out, ref(x, hx)[0].detach())
    seen.clear()
    ours.eval().requires_grad_(False)
    out, _ = ours(x, hx)
    assert out.grad_fn is None and seen == [False, False]
    seen.clear()
    ours.requires_grad_(True)
    out, _ = ours(x, hx)               # eval, trainable: a workspace for backward
    assert seen == [True, True]
    out.sum().backward()
    assert ours.weight_ih_l0.grad is not None


def test_state_dict_both_ways():
    for kind in TORCH_KINDS:
        ref, ours = pair(kind, num_layers=2)
        assert [(n, p.shape) for n, p in ours.named_parameters()] == \
            [(n, p.shape) for n, p in ref.named_parameters()]
        torch.manual_seed(9)
        other = type(ref)(D, H, num_layers=2, **({"nonlinearity": ref.nonlinearity}
                                                  if hasattr(ref, "nonlinearity") else {}))
        other.load_state_dict(ours.state_dict())       # rnnfast.torch -> torch.nn
        x, _ = inputs(kind, batch_first=False, dtype=np.float32, states=False)
        torch.testing.assert_close(other(x)[0], ours(x)[0], rtol=1e-5, atol=1e-6)


def test_initialisation_is_torch_nn_s():
    torch.manual_seed(4)
    a = torch.nn.GRU(D, H, num_layers=2)
    torch.manual_seed(4)
    b = rt.GRU(D, H, num_layers=2)
    for (n, p), (m, q) in zip(a.named_parameters(), b.named_parameters()):
        assert n == m and torch.equal(p, q)


def test_convert_keeps_modules_and_parameters():
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(D, H, num_layers=2, batch_first=True)
            self.inner = torch.nn.Sequential(torch.nn.GRU(H, H, bidirectional=True),
                                             torch.nn.Linear(2 * H, 2))
            self.rnn = torch.nn.RNN(D, H, nonlinearity="relu")

        def forward(self, x):
            out, _ = self.lstm(x)
            out, h = self.inner[0](out.transpose(0, 1))
            y = self.inner[1](out[-1]) + h[1].sum(dim=1, keepdim=True)  # (h[1]: reverse's)
            return y + self.rnn(x.transpose(0, 1))[1][0].sum(dim=1, keepdim=True)

    torch.manual_seed(0)
    net = Net()
    twin = copy.deepcopy(net)
    x = torch.randn(B, T, D)
    target = torch.randn(B, 2)
    expected = twin(x)
    modules = [net.lstm, net.inner[0], net.rnn]
    params = [id(p) for p in net.parameters()]
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    opt_twin = torch.optim.SGD(twin.parameters(), lr=0.1)
    assert rt.convert(net) is net
    assert [net.lstm, net.inner[0], net.rnn] == modules
    assert (type(net.lstm), type(net.inner[0]), type(net.rnn)) == (rt.LSTM, rt.GRU, rt.RNN)
    assert [id(p) for p in net.parameters()] == params
    torch.testing.assert_close(net(x), expected, rtol=1e-5, atol=1e-6)
    for model, optimizer in ((net, opt), (twin, opt_twin)):
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(x), target).backward()
        optimizer.step()
    for p, q in zip(net.parameters(), twin.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    assert rt.convert(net) is net      # already converted: left alone


def test_pickle_and_deepcopy():
    ref, ours = pair("lstm", num_layers=2)
    x, hx = inputs("lstm", batch_first=False, dtype=np.float32, num_layers=2)
    expected = ours(x, hx)[0]
    for clone in (pickle.loads(pickle.dumps(ours)), copy.deepcopy(ours)):
        assert type(clone) is rt.LSTM and "_rf_cache" not in clone.__dict__
        torch.testing.assert_close(clone(x, hx)[0], expected, rtol=0, atol=0)
        with torch.no_grad():
            clone.weight_hh_l0.mul_(0.5)     # the clone's own parameters
        assert not torch.equal(clone(x, hx)[0], expected)
    torch.testing.assert_close(ours(x, hx)[0], expected, rtol=0, atol=0)


def test_parameters_changed_in_every_way_are_read():
    """The module keeps NumPy views of its parameters: writes in place, through .data, new
    storage (p.data = ...), a replaced parameter and a dtype change must all be seen."""
    ref, ours = pair("gru")
    x, _ = inputs("gru", batch_first=False, dtype=np.float32, states=False)
    check = lambda: torch.testing.assert_close(ours(x)[0], ref(x)[0])  # noqa: E731
    check()
    with torch.no_grad():
        for m in (ref, ours):
            m.weight_hh_l0.mul_(0.5)
    check()
    for m in (ref, ours):
        m.bias_hh_l0.data.add_(0.25)
    check()
    new = torch.randn(3 * H, D)
    for m in (ref, ours):
        m.weight_ih_l0.data = new.clone()
    check()
    for m in (ref, ours):
        m.weight_hh_l0 = torch.nn.Parameter(torch.randn(3 * H, H, generator=torch.Generator()
                                                        .manual_seed(2)))
    check()
    ref.double(), ours.double()
    torch.testing.assert_close(ours(x.double())[0], ref(x.double())[0])


def test_clear_errors():
    with pytest.raises(ValueError, match="proj_size"):
        rt.LSTM(D, H, proj_size=2)
    m = rt.LSTM(D, H)
    x = torch.randn(T, B, D)
    seq = torch.nn.utils.rnn.pack_padded_sequence(x, [T, T - 1, 2])
    PS = torch.nn.utils.rnn.PackedSequence
    with pytest.raises(ValueError, match=r"data must be 2-D \(total steps, input_size=4\)"):
        m(PS(torch.randn(seq.data.shape[0], D + 1), seq.batch_sizes))
    with pytest.raises(ValueError, match="dtype torch.float32, got torch.float64"):
        m(PS(seq.data.double(), seq.batch_sizes))
    with pytest.raises(ValueError, match="batch_sizes.sum"):
        m(PS(seq.data[:-1], seq.batch_sizes))
    with pytest.raises(ValueError, match=r"hx h0 must have shape \(2, 3, 6\)"):
        rt.LSTM(D, H, bidirectional=True)(seq, (torch.zeros(1, B, H), torch.zeros(2, B, H)))
    with pytest.raises(ValueError, match="3-D"):
        m(torch.randn(2, T, B, D))
    with pytest.raises(ValueError, match="input_size=4"):
        m(torch.randn(T, B, D + 1))
    with pytest.raises(ValueError, match="dtype torch.float32, got torch.float64"):
        m(x.double())
    with pytest.raises(ValueError, match="device meta"):
        m(torch.empty(T, B, D, device="meta"))
    with pytest.raises(TypeError, match="pair"):
        m(x, torch.zeros(1, B, H))
    with pytest.raises(ValueError, match=r"hx c0 must have shape \(1, 3, 6\)"):
        m(x, (torch.zeros(1, B, H), torch.zeros(2, B, H)))
    with pytest.raises(TypeError, match="float16"):
        m.half()(x.half())
    with pytest.raises(TypeError, match="torch.Tensor"):
        rt.GRU(D, H)(np.zeros((T, B, D), np.float32))
    with pytest.raises(ValueError, match="parameter weight_hh_l0 must have shape"):
        g = rt.GRU(D, H)
        g.weight_hh_l0 = torch.nn.Parameter(torch.zeros(3 * H, H + 1))
        g(x)
    net = torch.nn.Sequential(torch.nn.LSTM(D, H), torch.nn.LSTM(H, H, proj_size=2))
    with pytest.raises(ValueError, match="proj_size"):
        rt.convert(net)
    assert type(net[0]) is torch.nn.LSTM          # nothing converted by a failed call


def test_import_without_torch():
    """``import rnnfast`` does not import torch; ``import rnnfast.torch`` without torch says
    what to install."""
    code = ("import sys; import rnnfast; assert 'torch' not in sys.modules, 'torch imported'; "
            "sys.modules['torch'] = None\n"
            "try:\n    import rnnfast.torch\nexcept ImportError as e:\n    print(e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd="/")
    assert "pip install torch" in out.stdout


@pytest.mark.parametrize("kind", TORCH_KINDS)
def test_gradient_on_one_output_only(kind):
    """A loss on the final state alone (no gradient reaches ``output``: the kernels get
    None for it) or on the output alone, as torch.nn computes it."""
    ref, ours = pair(kind, dtype=np.float64, num_layers=2)
    x, hx = inputs(kind, batch_first=False, dtype=np.float64, num_layers=2)
    for pick in range(1 + len(cells.get(kind).states)):
        grads = []
        for m in (ref, ours):
            m.zero_grad(set_to_none=True)
            xl, hl = leaves(x, hx)
            out, state = m(xl, hl)
            (out, *as_tuple(state))[pick].sum().backward()
            grads.append([xl.grad, *(h.grad for h in as_tuple(hl)),
                          *(p.grad for p in m.parameters())])
        for a, b in zip(grads[1], grads[0]):
            if b is None:
                assert a is None or not a.any()
            else:
                torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", TORCH_KINDS)
def test_retain_graph_one_layer(kind):
    """The one-layer, one-direction path (its own tape: input and workspace): a retained
    graph gives the same gradients twice, the last backward lets the workspace go."""
    _, ours = pair(kind, dtype=np.float64)
    x, hx = leaves(*inputs(kind, batch_first=False, dtype=np.float64))
    out, state = ours(x, hx)
    loss = out.pow(2).sum() + sum(s.sum() for s in as_tuple(state))
    tensors = (x, *as_tuple(hx), *ours.parameters())
    loss.backward(retain_graph=True)
    first = [t.grad.clone() for t in tensors]
    for t in tensors:
        t.grad = None
    loss.backward()
    for a, t in zip(first, tensors):
        assert torch.equal(a, t.grad)
    assert type(out.grad_fn).__name__ == "_RecurrentFunctionBackward"
    assert out.grad_fn.tape is None


def test_double_backward_is_refused():
    """The backward is once-differentiable: with create_graph=True the gradients are those
    of a plain backward, and differentiating them again is torch's error."""
    ref, ours = pair("lstm", dtype=np.float64)
    x, _ = inputs("lstm", batch_first=False, dtype=np.float64, states=False)
    grads = []
    for m, create_graph in ((ref, False), (ours, True)):
        xl = x.clone().requires_grad_()
        out, _ = m(xl)
        (g,) = torch.autograd.grad(out.pow(2).sum(), xl, create_graph=create_graph)
        grads.append(g)
    torch.testing.assert_close(grads[1].detach(), grads[0], rtol=1e-12, atol=1e-12)
    assert grads[1].requires_grad
    with pytest.raises(RuntimeError, match="once_differentiable"):
        grads[1].sum().backward()


def test_parameter_updates_autograd_does_not_track_are_read():
    """Every call reads the parameters' current values (nothing derived from them is kept
    between calls): also writes that leave a tensor's version counter alone, which a cache
    keyed on ``p._version`` would miss (fused optimizers, ``p.data`` in place, writes through
    a NumPy view), and load_state_dict, requires_grad toggled, .double()."""
    ref, ours = pair("lstm", batch_first=True)
    x, _ = inputs("lstm", batch_first=True, dtype=np.float32, states=False)

    def check():
        torch.testing.assert_close(ours(x)[0], ref(x)[0])

    check()
    opts = [torch.optim.Adam(m.parameters(), lr=0.1, fused=True) for m in (ref, ours)]
    for m, opt in zip((ref, ours), opts):
        versions = [p._version for p in m.parameters()]
        m(x)[0].pow(2).sum().backward()
        opt.step()
        assert versions == [p._version for p in m.parameters()]     # (untracked)
    check()
    for m in (ref, ours):
        m.weight_ih_l0.data.mul_(0.5)
        m.bias_hh_l0.detach().numpy()[:] += 0.25
    check()
    ref.load_state_dict(pair("lstm", seed=3)[0].state_dict())
    ours.load_state_dict(ref.state_dict())
    check()
    for m in (ref, ours):
        m.requires_grad_(False)
    check()
    with torch.no_grad():
        for m in (ref, ours):
            m.weight_hh_l0.add_(0.1)
    check()
    for m in (ref, ours):
        m.requires_grad_(True)
    check()
    ref.double(), ours.double()
    torch.testing.assert_close(ours(x.double())[0], ref(x.double())[0])
