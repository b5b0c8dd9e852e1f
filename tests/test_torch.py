"""rnnfast against PyTorch: torch.nn.RNN (tanh, relu), torch.nn.LSTM and torch.nn.GRU,
outputs and every gradient, float32 and float64, both layouts, with initial states.

The weights come over two ways: ``rnnfast.from_torch`` and the explicit mapping of the
design notes, written out here (``Wx = weight_ih_l0.T``, ``Wh = weight_hh_l0.T``,
``b = bias_ih_l0 + bias_hh_l0``; for the GRU ``b[:2H] = bias_ih[:2H] + bias_hh[:2H]``,
``b[2H:] = bias_ih[2H:]``, ``b_hn = bias_hh[2H:]``); the weight gradients map back through
the registry's torch mapping (``CellSpec.grads_from_torch``: ``dWx = weight_ih_l0.grad.T``,
``db = bias_ih_l0.grad``, ``db_hn = bias_hh_l0.grad[2H:]``), and in the gates where the
two torch biases are summed ``db`` equals ``bias_hh_l0.grad`` too. Tolerances are
conftest's, with the weight gradients judged against their sums of |terms| as in
test_parity.py (see there). torch has no sigmoid RNN: test_loops.py and test_gradcheck.py
check it.
"""
import numpy as np
import pytest

import rnnfast
from rnnfast import cells
from cells_for_tests import (
    TORCH_KINDS,
    kind_backends,
    layer_class,
    make_layer,
    param_names,
    random_problem,
    state_names,
)
from conftest import ATOL, RTOL
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

TORCH_DTYPE = {np.float32: torch.float32, np.float64: torch.float64}
B, T, D, H = 3, 6, 5, 7
KIND_BACKENDS = kind_backends(TORCH_KINDS)


def torch_module(cell, batch_first, dtype, *, bias=True, seed=0):
    s = cells.get(cell)
    torch.manual_seed(seed)
    kwargs = dict(bias=bias, batch_first=batch_first)
    if s.family == "rnn":
        kwargs["nonlinearity"] = s.nonlinearity
    m = getattr(torch.nn, s.torch_class)(D, H, **kwargs)
    return m.to(TORCH_DTYPE[dtype])


def weights_of(module, cell, dtype):
    """The explicit mapping of the design notes, in numpy (written out, not the registry's)."""
    w = lambda name: getattr(module, name).detach().numpy().astype(np.float64)  # noqa: E731
    GH = module.weight_hh_l0.shape[0]
    b_ih = w("bias_ih_l0") if module.bias else np.zeros(GH)
    b_hh = w("bias_hh_l0") if module.bias else np.zeros(GH)
    res = {"Wx": w("weight_ih_l0").T, "Wh": w("weight_hh_l0").T}
    if cells.get(cell).family == "gru":
        res["b"] = np.concatenate([b_ih[:2 * H] + b_hh[:2 * H], b_ih[2 * H:]])
        res["b_hn"] = b_hh[2 * H:]
    else:
        res["b"] = b_ih + b_hh
    return {k: v.astype(dtype) for k, v in res.items()}


def torch_results(module, cell, p, *, states=True):
    """Forward and backward of the torch module under L = sum(out * dout) +
    sum(h_n * dh_n) (+ sum(c_n * dc_n)); results named as rnnfast's."""
    s = cells.get(cell)
    module.zero_grad()
    t = lambda a: torch.tensor(a, requires_grad=True)    # noqa: E731
    x = t(p["x"])
    init = tuple(t(p[n + "0"][None]) for n in s.states)  # (num_layers=1, batch, hidden)
    hx = (init[0] if len(init) == 1 else init) if states else None
    out, finals = module(x, hx)
    finals = (finals,) if len(init) == 1 else finals
    finals = tuple(f[0] for f in finals)
    loss = (out * torch.tensor(p["dout"])).sum()
    for f, name in zip(finals, s.states):
        loss = loss + (f * torch.tensor(p[f"d{name}_n"])).sum()
    loss.backward()

    def g(name):
        param = getattr(module, name, None)               # bias=False: no bias parameters
        return None if param is None else param.grad.numpy()

    res = dict(out=out.detach().numpy())
    res.update({f"{n}_n": f.detach().numpy() for n, f in zip(s.states, finals)})
    res["dx"] = x.grad.numpy()
    if states:
        res.update({f"d{n}0": i.grad.numpy()[0] for n, i in zip(s.states, init)})
    grads = s.grads_from_torch(g("weight_ih_l0"), g("weight_hh_l0"), g("bias_ih_l0"),
                               g("bias_hh_l0"))
    res.update({"d" + k: v for k, v in grads.items()})
    if module.bias:
        # the gates where rnnfast's b is torch's two biases summed: db is both gradients
        res["db_hh"] = g("bias_hh_l0")[s.summed_bias(H)]
    return res


def assert_matches(got, want, dtype, scales, cell):
    """rnnfast's results against torch's; rnnfast's db against both torch bias gradients."""
    db_hh = want.pop("db_hh", None)
    assert_results_close(got, want, dtype, scales)
    if db_hh is not None:
        summed = cells.get(cell).summed_bias(H)
        assert_weight_grads_close({"db": got["db"][summed]}, {"db": db_hh},
                                  {"db": scales["db"][summed]}, dtype)


def rnnfast_results(layer, cell, p, *, states=True):
    """The layer's results by name; without states, no state gradients (checked None)."""
    given = p if states else dict(p, **{n + "0": None for n in state_names(cell)})
    res = layer_run(layer, cell, given)
    if not states:
        for n in state_names(cell):
            assert res.pop(f"d{n}0") is None
    return res


def make(how, module, cell, batch_first, dtype, backend):
    if how == "from_torch":
        layer = rnnfast.from_torch(module, dtype=dtype, backend=backend)
    else:
        layer = make_layer(cell, D, H, batch_first=batch_first, dtype=dtype, backend=backend)
        for name, w in weights_of(module, cell, dtype).items():
            layer.params[name][...] = w
    assert isinstance(layer, layer_class(cell)) and layer._spec is cells.get(cell)
    assert (layer.input_size, layer.hidden_size) == (D, H)
    assert layer.batch_first == batch_first and layer.dtype == dtype
    assert layer.backend == backend
    if cells.get(cell).family == "rnn":
        assert layer.nonlinearity == cells.get(cell).nonlinearity
    return layer


@pytest.mark.parametrize("how", ["from_torch", "explicit"])
@pytest.mark.parametrize("batch_first", [True, False], ids=["batch_first", "time_major"])
@pytest.mark.parametrize("cell,backend", KIND_BACKENDS)
def test_matches_torch(cell, batch_first, how, backend, dtype):
    module = torch_module(cell, batch_first, dtype)
    layer = make(how, module, cell, batch_first, dtype, backend)
    for name, w in weights_of(module, cell, dtype).items():
        np.testing.assert_array_equal(layer.params[name], w, err_msg=name)
    p = random_problem(cell, B, T, D, H, dtype, batch_first=batch_first, seed=3)
    want = torch_results(module, cell, p)
    got = rnnfast_results(layer, cell, p)
    assert got.keys() == want.keys() - {"db_hh"}
    scales = weight_grad_scales(cell, {**p, **weights_of(module, cell, np.float64)},
                                batch_first=batch_first)
    assert_matches(got, want, dtype, scales, cell)


@pytest.mark.parametrize("cell,backend", KIND_BACKENDS)
def test_matches_torch_without_state(cell, backend, dtype):
    """No initial state on either side: zeros; rnnfast returns no state gradient."""
    module = torch_module(cell, True, dtype, seed=1)
    layer = rnnfast.from_torch(module, dtype=dtype, backend=backend)
    p = random_problem(cell, B, T, D, H, dtype, seed=4)
    want = torch_results(module, cell, p, states=False)
    got = rnnfast_results(layer, cell, p, states=False)
    scales = weight_grad_scales(cell, {**p, **weights_of(module, cell, np.float64)},
                                states="")
    assert_matches(got, want, dtype, scales, cell)


@pytest.mark.parametrize("cell,backend", KIND_BACKENDS)
def test_matches_torch_without_bias(cell, backend, dtype):
    """bias=False maps to zero biases; the weight gradients still match."""
    module = torch_module(cell, True, dtype, bias=False, seed=2)
    layer = rnnfast.from_torch(module, dtype=dtype, backend=backend)
    biases = [n for n in param_names(cell) if n.startswith("b")]
    assert biases and not any(layer.params[n].any() for n in biases)
    p = random_problem(cell, B, T, D, H, dtype, seed=5)
    want = torch_results(module, cell, p)
    got = rnnfast_results(layer, cell, p)
    for n in biases:
        got.pop("d" + n)
    scales = weight_grad_scales(cell, {**p, **weights_of(module, cell, np.float64)})
    assert_matches(got, want, dtype, scales, cell)


# ----------------------------------------------------------------------------- interop

@pytest.mark.parametrize("cell,backend", KIND_BACKENDS)
def test_from_torch_takes_the_modules_dtype(cell, backend, dtype):
    """No dtype given: the layer's is the module's (a float64 module, a float64 layer)."""
    module = torch_module(cell, True, dtype)
    layer = rnnfast.from_torch(module, backend=backend)
    assert layer.dtype == dtype
    for name, w in weights_of(module, cell, dtype).items():
        np.testing.assert_array_equal(layer.params[name], w, err_msg=name)
    assert all(p.dtype == dtype for p in layer.params.values())


@pytest.mark.parametrize("torch_dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("cell", TORCH_KINDS)
def test_from_torch_half_precision_is_an_error_unless_a_dtype_is_given(cell, torch_dtype):
    backend = "numpy"
    module = torch_module(cell, True, np.float32).to(getattr(torch, torch_dtype))
    with pytest.raises(TypeError, match=rf"torch\.{torch_dtype}.*float32 or float64"):
        rnnfast.from_torch(module, backend=backend)
    layer = rnnfast.from_torch(module, dtype=np.float32, backend=backend)
    assert layer.dtype == np.float32
    want = weights_of(module.float(), cell, np.float32)
    for name, w in want.items():
        np.testing.assert_array_equal(layer.params[name], w, err_msg=name)


@pytest.mark.parametrize("cell,backend", KIND_BACKENDS)
def test_to_torch_round_trips(cell, backend, dtype):
    """rnnfast -> torch -> rnnfast gives bitwise the parameters; the torch module computes
    what the layer computes; torch -> rnnfast -> torch computes what the first module does."""
    layer = make_layer(cell, D, H, batch_first=False, dtype=dtype, backend=backend, seed=9)
    module = rnnfast.to_torch(layer)
    s = cells.get(cell)
    assert type(module) is getattr(torch.nn, s.torch_class)
    assert module.batch_first is False and module.weight_ih_l0.dtype == TORCH_DTYPE[dtype]
    assert (module.input_size, module.hidden_size, module.num_layers) == (D, H, 1)
    if s.family == "rnn":
        assert module.nonlinearity == s.nonlinearity
    back = rnnfast.from_torch(module, backend=backend)
    assert back.dtype == dtype and back.batch_first is False and back._spec is s
    for name in param_names(cell):
        np.testing.assert_array_equal(back.params[name], layer.params[name], err_msg=name)
    # the torch module computes the layer's outputs
    p = random_problem(cell, B, T, D, H, dtype, batch_first=False, seed=6)
    want = torch_results(module, cell, p)
    got = rnnfast_results(layer, cell, p)
    scales = weight_grad_scales(cell, {**p, **{k: v.astype(np.float64)
                                               for k, v in layer.params.items()}},
                                batch_first=False)
    assert_matches(got, want, dtype, scales, cell)
    # torch -> rnnfast -> torch: the second module computes what the first one does
    first = torch_module(cell, True, dtype, seed=7)
    second = rnnfast.to_torch(rnnfast.from_torch(first, backend=backend))
    xt = torch.tensor(random_problem(cell, B, T, D, H, dtype, seed=8)["x"])
    with torch.no_grad():
        (out_a, finals_a), (out_b, finals_b) = first(xt), second(xt)
    flat = lambda out, f: [out] + (list(f) if isinstance(f, tuple) else [f])  # noqa: E731
    for u, v in zip(flat(out_a, finals_a), flat(out_b, finals_b), strict=True):
        np.testing.assert_allclose(v.numpy(), u.numpy(), rtol=RTOL[dtype], atol=ATOL[dtype])


# (stacked and bidirectional modules map: test_interop.py checks them)
UNMAPPED = [("LSTM", dict(proj_size=3), ValueError)]     # only the LSTM has projections


@pytest.mark.parametrize("cls,kwargs,error", UNMAPPED,
                         ids=[f"{c}-{next(iter(k))}" for c, k, _ in UNMAPPED])
def test_from_torch_refuses_what_does_not_map(cls, kwargs, error):
    module = getattr(torch.nn, cls)(D, H, **kwargs)
    attr, value = next(iter(kwargs.items()))
    with pytest.raises(error, match="no rnnfast counterpart") as info:
        rnnfast.from_torch(module, backend="numpy")
    assert f"module.{attr}" in str(info.value) and repr(value) in str(info.value)


@pytest.mark.parametrize("module", [lambda: torch.nn.Linear(D, H), lambda: torch.nn.RNNCell(D, H),
                                    lambda: np.zeros((D, H)), lambda: None],
                         ids=["Linear", "RNNCell", "ndarray", "None"])
def test_from_torch_refuses_other_modules(module):
    m = module()
    with pytest.raises(TypeError, match="torch.nn.RNN, torch.nn.LSTM, torch.nn.GRU") as info:
        rnnfast.from_torch(m)
    assert type(m).__qualname__ in str(info.value)


def test_to_torch_refuses_what_torch_does_not_have():
    with pytest.raises(ValueError, match="sigmoid"):
        rnnfast.to_torch(make_layer("rnn_sigmoid", D, H))
    with pytest.raises(TypeError, match="layer"):
        rnnfast.to_torch(torch.nn.GRU(D, H))
