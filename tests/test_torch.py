"""rnnfast against PyTorch: torch.nn.RNN (tanh, relu) and torch.nn.LSTM, outputs and every
gradient, float32 and float64, both layouts, with initial states.

The weights come over two ways: ``rnnfast.from_torch`` and the explicit mapping of the
design notes (``Wx = weight_ih_l0.T``, ``Wh = weight_hh_l0.T``, ``b = bias_ih_l0 +
bias_hh_l0``); the weight gradients map back the same way (``dWx = weight_ih_l0.grad.T``;
``db`` equals both ``bias_ih_l0.grad`` and ``bias_hh_l0.grad``). Tolerances are
conftest's, with the weight gradients judged against their sums of |terms| as in
test_parity.py (see there).
"""
import numpy as np
import pytest

import rnnfast
from conftest import random_problem
from test_parity import (
    assert_results_close,
    assert_weight_grads_close,
    layer_run,
    weight_grad_scales,
)

torch = pytest.importorskip(
    "torch", reason="PyTorch is not installed; the torch comparisons need it "
                    "(pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu)")
torch.set_num_threads(1)

CELLS = [("rnn", "tanh"), ("rnn", "relu"), ("lstm", None)]
CELL_IDS = ["rnn-tanh", "rnn-relu", "lstm"]
TORCH_DTYPE = {np.float32: torch.float32, np.float64: torch.float64}
B, T, D, H = 3, 6, 5, 7


def torch_module(cell, nl, batch_first, dtype, *, bias=True, seed=0):
    torch.manual_seed(seed)
    if cell == "rnn":
        m = torch.nn.RNN(D, H, nonlinearity=nl, bias=bias, batch_first=batch_first)
    else:
        m = torch.nn.LSTM(D, H, bias=bias, batch_first=batch_first)
    return m.to(TORCH_DTYPE[dtype])


def weights_of(module, dtype):
    """The explicit mapping of the design notes, in numpy."""
    w = lambda name: getattr(module, name).detach().numpy().astype(np.float64)  # noqa: E731
    b = np.zeros(module.weight_hh_l0.shape[0])
    if module.bias:
        b = w("bias_ih_l0") + w("bias_hh_l0")
    return {"Wx": w("weight_ih_l0").T.astype(dtype), "Wh": w("weight_hh_l0").T.astype(dtype),
            "b": b.astype(dtype)}


def torch_results(module, cell, p, *, states=True):
    """Forward and backward of the torch module under L = sum(out * dout) +
    sum(h_n * dh_n) (+ sum(c_n * dc_n)); results named as rnnfast's."""
    module.zero_grad()
    t = lambda a: torch.tensor(a, requires_grad=True)    # noqa: E731
    x = t(p["x"])
    h0, c0 = t(p["h0"][None]), t(p["c0"][None])           # (num_layers=1, batch, hidden)
    if cell == "rnn":
        out, h_n = module(x, h0 if states else None)
        finals = (h_n[0],)
    else:
        out, (h_n, c_n) = module(x, (h0, c0) if states else None)
        finals = (h_n[0], c_n[0])
    loss = (out * torch.tensor(p["dout"])).sum()
    for f, name in zip(finals, ("dh_n", "dc_n")):
        loss = loss + (f * torch.tensor(p[name])).sum()
    loss.backward()
    g = lambda name: getattr(module, name).grad.numpy()   # noqa: E731
    res = dict(out=out.detach().numpy(), h_n=finals[0].detach().numpy())
    if cell == "lstm":
        res["c_n"] = finals[1].detach().numpy()
    res["dx"] = x.grad.numpy()
    if states:
        res["dh0"] = h0.grad.numpy()[0]
        if cell == "lstm":
            res["dc0"] = c0.grad.numpy()[0]
    res.update(dWx=g("weight_ih_l0").T, dWh=g("weight_hh_l0").T)
    if module.bias:
        # one bias in rnnfast, two in torch: both are dL/db (torch sums them separately)
        res["db"], res["db_hh"] = g("bias_ih_l0"), g("bias_hh_l0")
    return res


def assert_matches(got, want, dtype, scales):
    """rnnfast's results against torch's; rnnfast's db against both torch bias gradients."""
    db_hh = want.pop("db_hh", None)
    assert_results_close(got, want, dtype, scales)
    if db_hh is not None:
        assert_weight_grads_close({"db": got["db"]}, {"db": db_hh}, scales, dtype)


def rnnfast_results(layer, cell, p, *, states=True):
    """The layer's results by name; without states, no state gradients (checked None)."""
    res = layer_run(layer, cell, p if states else dict(p, h0=None, c0=None))
    if not states:
        assert res.pop("dh0") is None and res.pop("dc0", None) is None
    return res


def make_layer(how, module, cell, nl, batch_first, dtype, backend):
    if how == "from_torch":
        layer = rnnfast.from_torch(module, dtype=dtype, backend=backend)
    else:
        if cell == "rnn":
            layer = rnnfast.RNN(D, H, nl, batch_first=batch_first, dtype=dtype, backend=backend)
        else:
            layer = rnnfast.LSTM(D, H, batch_first=batch_first, dtype=dtype, backend=backend)
        for name, w in weights_of(module, dtype).items():
            layer.params[name][...] = w
    assert isinstance(layer, rnnfast.RNN if cell == "rnn" else rnnfast.LSTM)
    assert (layer.input_size, layer.hidden_size) == (D, H)
    assert layer.batch_first == batch_first and layer.dtype == dtype
    assert layer.backend == backend
    if cell == "rnn":
        assert layer.nonlinearity == nl
    return layer


@pytest.mark.parametrize("how", ["from_torch", "explicit"])
@pytest.mark.parametrize("batch_first", [True, False], ids=["batch_first", "time_major"])
@pytest.mark.parametrize("cell,nl", CELLS, ids=CELL_IDS)
def test_matches_torch(cell, nl, batch_first, how, backend, dtype):
    module = torch_module(cell, nl, batch_first, dtype)
    layer = make_layer(how, module, cell, nl, batch_first, dtype, backend)
    for name, w in weights_of(module, dtype).items():
        np.testing.assert_array_equal(layer.params[name], w, err_msg=name)
    p = random_problem(cell, B, T, D, H, dtype, batch_first=batch_first, seed=3)
    want = torch_results(module, cell, p)
    got = rnnfast_results(layer, cell, p)
    scales = weight_grad_scales(cell, nl, {**p, **weights_of(module, np.float64)},
                                batch_first=batch_first)
    assert_matches(got, want, dtype, scales)


@pytest.mark.parametrize("cell,nl", CELLS, ids=CELL_IDS)
def test_matches_torch_without_state(cell, nl, backend, dtype):
    """No initial state on either side: zeros; rnnfast returns no state gradient."""
    module = torch_module(cell, nl, True, dtype, seed=1)
    layer = rnnfast.from_torch(module, dtype=dtype, backend=backend)
    p = random_problem(cell, B, T, D, H, dtype, seed=4)
    want = torch_results(module, cell, p, states=False)
    got = rnnfast_results(layer, cell, p, states=False)
    scales = weight_grad_scales(cell, nl, {**p, **weights_of(module, np.float64)},
                                states="")
    assert_matches(got, want, dtype, scales)


@pytest.mark.parametrize("cell,nl", CELLS, ids=CELL_IDS)
def test_matches_torch_without_bias(cell, nl, backend, dtype):
    """bias=False maps to b = 0; the weight gradients still match."""
    module = torch_module(cell, nl, True, dtype, bias=False, seed=2)
    layer = rnnfast.from_torch(module, dtype=dtype, backend=backend)
    assert not layer.params["b"].any()
    p = random_problem(cell, B, T, D, H, dtype, seed=5)
    want = torch_results(module, cell, p)
    got = rnnfast_results(layer, cell, p)
    got.pop("db")
    scales = weight_grad_scales(cell, nl, {**p, **weights_of(module, np.float64)})
    assert_matches(got, want, dtype, scales)


@pytest.mark.parametrize("kwargs,error", [
    (dict(num_layers=2), ValueError),
    (dict(bidirectional=True), ValueError),
    (dict(proj_size=3), ValueError),
], ids=["two-layers", "bidirectional", "projection"])
def test_from_torch_refuses_what_does_not_map(kwargs, error):
    cls = torch.nn.LSTM if "proj_size" in kwargs else torch.nn.RNN
    with pytest.raises(error, match="one-layer, unidirectional"):
        rnnfast.from_torch(cls(D, H, **kwargs))


def test_from_torch_refuses_other_modules():
    with pytest.raises(TypeError, match="GRU"):
        rnnfast.from_torch(torch.nn.GRU(D, H))
