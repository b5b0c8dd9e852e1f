"""The class API (RNN, LSTM): modes, initialisation, params/grads, states, repr, and the
public faces of the package (functional, reference, the compiled module)."""
import importlib
import importlib.machinery
import inspect

import numpy as np
import pytest

import rnnfast
from rnnfast import functional as F
from conftest import ATOL, RTOL, random_problem

B, T, D, H = 3, 5, 4, 6
CELLS = ["rnn-tanh", "rnn-relu", "lstm"]


def make(cell, backend="cython", dtype=np.float32, **kwargs):
    kwargs = dict(dtype=dtype, backend=backend) | kwargs
    if cell == "lstm":
        return rnnfast.LSTM(kwargs.pop("input_size", D), kwargs.pop("hidden_size", H), **kwargs)
    return rnnfast.RNN(kwargs.pop("input_size", D), kwargs.pop("hidden_size", H),
                       cell.split("-")[1], **kwargs)


def kind(cell):
    return "lstm" if cell == "lstm" else "rnn"


def run(layer, p, states=True, dstates=True):
    """Forward and backward with (or without) initial states and their gradients."""
    if isinstance(layer, rnnfast.LSTM):
        out, finals = layer(p["x"], (p["h0"], p["c0"]) if states else None)
        dx, dstate = layer.backward(p["dout"], (p["dh_n"], p["dc_n"]) if dstates else None)
        return out, finals, dx, dstate
    out, h_n = layer(p["x"], p["h0"] if states else None)
    dx, dh0 = layer.backward(p["dout"], p["dh_n"] if dstates else None)
    return out, (h_n,), dx, (dh0,)


# --------------------------------------------------------------------- modes

@pytest.mark.parametrize("cell", CELLS)
def test_train_and_eval_return_the_layer(cell, backend):
    layer = make(cell, backend)
    assert layer.training is True                   # training is the default
    assert layer.eval() is layer and layer.training is False
    assert layer.train() is layer and layer.training is True
    assert layer.train(False) is layer and layer.training is False
    assert layer.train(True) is layer and layer.training is True


@pytest.mark.parametrize("cell", CELLS)
def test_eval_forward_keeps_no_workspace(cell, backend, dtype):
    layer = make(cell, backend, dtype)
    p = random_problem(kind(cell), B, T, D, H, dtype)
    layer(p["x"])
    assert layer._cache is not None                 # training forward: kept for BPTT
    layer.eval()
    assert layer._cache is None                     # eval() drops it
    out_eval = layer(p["x"])[0]
    assert layer._cache is None
    with pytest.raises(ValueError, match="training"):
        layer.backward(p["dout"])
    out_train = layer.train()(p["x"])[0]
    np.testing.assert_allclose(out_eval, out_train, rtol=RTOL[dtype], atol=ATOL[dtype])


# --------------------------------------------------------------------- initialisation

@pytest.mark.parametrize("cell", CELLS)
def test_seed_reproducibility(cell, dtype):
    a = make(cell, dtype=dtype, seed=42)
    same = make(cell, dtype=dtype, seed=42)
    other_backend = make(cell, "numpy", dtype=dtype, seed=42)
    different = make(cell, dtype=dtype, seed=43)
    unseeded = [make(cell, dtype=dtype), make(cell, dtype=dtype)]
    for name in ("Wx", "Wh", "b"):
        np.testing.assert_array_equal(a.params[name], same.params[name])
        np.testing.assert_array_equal(a.params[name], other_backend.params[name])
        assert not np.array_equal(a.params[name], different.params[name]), name
        assert not np.array_equal(unseeded[0].params[name], unseeded[1].params[name]), name


@pytest.mark.parametrize("cell", CELLS)
def test_initialisation_like_pytorch(cell, dtype):
    """Weights ~ U(-k, k), k = 1/sqrt(hidden); b is the sum of PyTorch's two biases, so
    it lies within +-2k. Large enough a layer that the draws fill their ranges."""
    hidden = 64
    layer = make(cell, dtype=dtype, input_size=32, hidden_size=hidden, seed=0)
    G = 4 if cell == "lstm" else 1
    k = 1 / np.sqrt(hidden)
    shapes = {"Wx": (32, G * hidden), "Wh": (hidden, G * hidden), "b": (G * hidden,)}
    for name, p in layer.params.items():
        assert p.shape == shapes[name] and p.dtype == dtype, name
        assert p.flags.c_contiguous and p.flags.writeable, name
        bound = 2 * k if name == "b" else k
        assert np.abs(p).max() <= bound, name
        assert p.max() > 0.8 * bound * (0.5 if name == "b" else 1), name
        assert p.min() < -0.8 * bound * (0.5 if name == "b" else 1), name
        # centred: the mean within 4 standard errors of 0 (std of U(-k, k) is k/sqrt(3),
        # of the sum of two such draws k*sqrt(2/3))
        std = k * np.sqrt(2 / 3) if name == "b" else k / np.sqrt(3)
        assert abs(p.mean()) < 4 * std / np.sqrt(p.size), name
    # the sum of two draws reaches beyond a single draw's range
    assert np.abs(layer.params["b"]).max() > k


# --------------------------------------------------------------------- params and grads

@pytest.mark.parametrize("cell", CELLS)
def test_grads_match_params_after_backward(cell, backend, dtype):
    layer = make(cell, backend, dtype, seed=0)
    assert layer.grads.keys() == layer.params.keys() == {"Wx", "Wh", "b"}
    p = random_problem(kind(cell), B, T, D, H, dtype)
    run(layer, p)
    assert layer.grads.keys() == layer.params.keys()
    for name, g in layer.grads.items():
        assert g.shape == layer.params[name].shape and g.dtype == dtype, name
        assert np.abs(g).max() > 0, name
    # backward sets the gradients, it does not accumulate them
    first = {k: g.copy() for k, g in layer.grads.items()}
    run(layer, p)
    for name, g in layer.grads.items():
        np.testing.assert_array_equal(g, first[name], err_msg=name)
    layer.zero_grad()
    assert not any(g.any() for g in layer.grads.values())


@pytest.mark.parametrize("cell", CELLS)
def test_writing_into_params_changes_the_model(cell, backend, dtype):
    layer = make(cell, backend, dtype, seed=0)
    p = random_problem(kind(cell), B, T, D, H, dtype, seed=1)
    before = layer(p["x"])[0]
    for name in ("Wx", "Wh", "b"):
        layer.params[name][...] = p[name]
    after = layer(p["x"])[0]
    assert not np.allclose(before, after)
    if cell == "lstm":
        want = F.lstm_forward(p["x"], None, None, p["Wx"], p["Wh"], p["b"], backend="numpy")[0]
    else:
        want = F.rnn_forward(p["x"], None, p["Wx"], p["Wh"], p["b"], cell.split("-")[1],
                             backend="numpy")[0]
    np.testing.assert_allclose(after, want, rtol=RTOL[dtype], atol=ATOL[dtype])
    # and so does writing into a single entry
    layer.params["b"][0] += 1
    assert not np.array_equal(layer(p["x"])[0], after)


@pytest.mark.parametrize("batch_first", [True, False], ids=["batch_first", "time_major"])
@pytest.mark.parametrize("cell", CELLS)
def test_results_do_not_alias_the_workspace(cell, batch_first, backend, dtype):
    """Writing into what forward returned (out, final states) leaves backward's result
    unchanged: the layer keeps its own copy of what BPTT needs."""
    p = random_problem(kind(cell), B, T, D, H, dtype, batch_first=batch_first)
    layer = make(cell, backend, dtype, batch_first=batch_first, seed=0)
    clean = [a.copy() for a in run(layer, p)[2:3]] + [g.copy() for g in layer.grads.values()]
    out, finals = layer(p["x"], (p["h0"], p["c0"]) if cell == "lstm" else p["h0"])
    for a in (out,) + (finals if cell == "lstm" else (finals,)):
        a[...] = 7
    if cell == "lstm":
        dx, _ = layer.backward(p["dout"], (p["dh_n"], p["dc_n"]))
    else:
        dx, _ = layer.backward(p["dout"], p["dh_n"])
    for got, want in zip([dx] + list(layer.grads.values()), clean):
        np.testing.assert_array_equal(got, want)


# --------------------------------------------------------------------- state gradients

@pytest.mark.parametrize("cell", CELLS)
def test_state_gradients_only_for_given_states(cell, backend, dtype):
    p = random_problem(kind(cell), B, T, D, H, dtype)
    layer = make(cell, backend, dtype, seed=0)
    for states in (True, False):
        for dstates in (True, False):
            _, _, dx, dstate = run(layer, p, states, dstates)
            assert dx.shape == p["x"].shape
            for d in dstate:
                if states:
                    assert d is not None and d.shape == (B, H) and d.dtype == dtype
                else:
                    assert d is None


def test_lstm_state_gradients_follow_each_given_state(backend, dtype):
    """(h0, None) gives (dh0, None); (None, c0) gives (None, dc0)."""
    p = random_problem("lstm", B, T, D, H, dtype)
    layer = make("lstm", backend, dtype, seed=0)
    for h0, c0 in [(p["h0"], None), (None, p["c0"])]:
        layer(p["x"], (h0, c0))
        _, (dh0, dc0) = layer.backward(p["dout"], (p["dh_n"], p["dc_n"]))
        assert (dh0 is None) == (h0 is None) and (dc0 is None) == (c0 is None)
        for d in (dh0, dc0):
            assert d is None or (d.shape == (B, H) and d.any())


# --------------------------------------------------------------------- repr

@pytest.mark.parametrize("cell", CELLS)
def test_repr(cell, backend, dtype):
    layer = make(cell, backend, dtype, batch_first=False)
    text = repr(layer)
    assert text.startswith(("LSTM(" if cell == "lstm" else "RNN(") + f"{D}, {H}")
    for part in ("batch_first=False", f"backend={backend!r}",
                 f"dtype=np.{np.dtype(dtype).name}"):
        assert part in text, (part, text)
    if cell != "lstm":
        assert f"nonlinearity={cell.split('-')[1]!r}" in text
    # it is the call that makes such a layer
    copy = eval(text, {"np": np, "RNN": rnnfast.RNN, "LSTM": rnnfast.LSTM})
    assert type(copy) is type(layer) and repr(copy) == text
    assert (copy.input_size, copy.hidden_size, copy.batch_first, copy.dtype, copy.backend) == (
        layer.input_size, layer.hidden_size, layer.batch_first, layer.dtype, layer.backend)


# --------------------------------------------------------------------- public faces

def kernel_signatures(module, drop_backend=False):
    out = {}
    for name in rnnfast.reference.__all__:
        sig = inspect.signature(getattr(module, name))
        params = [p for p in sig.parameters.values()
                  if not (drop_backend and p.name == "backend" and p.kind == p.KEYWORD_ONLY)]
        out[name] = [(p.name, p.kind, p.default) for p in params]
    return out


def test_functional_and_reference_have_the_same_functions():
    names = set(rnnfast.reference.__all__)
    assert names == {"rnn_forward", "rnn_backward", "lstm_forward", "lstm_backward"}
    assert names <= set(F.__all__)
    assert kernel_signatures(F, drop_backend=True) == kernel_signatures(rnnfast.reference)
    for name in names:                       # and the functional face takes backend=
        backend = inspect.signature(getattr(F, name)).parameters["backend"]
        assert backend.kind == backend.KEYWORD_ONLY and backend.default == "cython"


def test_compiled_module_is_compiled_and_has_the_same_functions():
    core = importlib.import_module("rnnfast._core")
    assert isinstance(core.__spec__.loader, importlib.machinery.ExtensionFileLoader)
    assert core.__file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)), core.__file__
    assert kernel_signatures(core) == kernel_signatures(rnnfast.reference)
    assert F.kernels("cython") is core and F.kernels("numpy") is rnnfast.reference


def test_package_face():
    assert set(rnnfast.__all__) >= {"RNN", "LSTM", "from_torch", "functional", "reference",
                                    "__version__"}
    assert isinstance(rnnfast.__version__, str) and rnnfast.__version__
