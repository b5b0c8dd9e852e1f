"""The class API (RNN, LSTM): modes, initialisation, params/grads, states, repr, and the
public faces of the package (functional, reference, the compiled module)."""
import importlib
import importlib.machinery
import inspect

import numpy as np
import pytest

import rnnfast
from rnnfast import _checks, cells
from rnnfast import functional as F
from cells_for_tests import (
    COMPILED,
    KIND_BACKENDS,
    KINDS,
    as_states,
    default_backend,
    kernel_forward,
    layer_backward,
    layer_class,
    layer_forward,
    make_layer,
    param_names,
    problem_states,
    random_problem,
    state_arg,
    state_names,
)
from conftest import ATOL, RTOL

B, T, D, H = 3, 5, 4, 6


def make(cell, backend=None, dtype=np.float32, **kwargs):
    backend = default_backend(cell) if backend is None else backend
    kwargs = dict(dtype=dtype, backend=backend) | kwargs
    return make_layer(cell, kwargs.pop("input_size", D), kwargs.pop("hidden_size", H),
                      **kwargs)


def run(layer, p, states=True, dstates=True):
    """Forward and backward with (or without) initial states and their gradients."""
    kind = layer._spec.kind
    out, finals = layer_forward(layer, p["x"], problem_states(kind, p) if states else None)
    dx, dstate = layer_backward(layer, p["dout"],
                                problem_states(kind, p, "d", "_n") if dstates else None)
    return out, finals, dx, dstate


# --------------------------------------------------------------------- modes

@pytest.mark.parametrize("cell,backend", KIND_BACKENDS)
def test_train_and_eval_return_the_layer(cell, backend):
    layer = make(cell, backend)
    assert layer.training is True                   # training is the default
    assert layer.eval() is layer and layer.training is False
    assert layer.train() is layer and layer.training is True
    assert layer.train(False) is layer and layer.training is False
    assert layer.train(True) is layer and layer.training is True


@pytest.mark.parametrize("cell,backend", KIND_BACKENDS)
def test_eval_forward_keeps_no_workspace(cell, backend, dtype):
    layer = make(cell, backend, dtype)
    p = random_problem(cell, B, T, D, H, dtype)
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

@pytest.mark.parametrize("cell", KINDS)
def test_seed_reproducibility(cell, dtype):
    a = make(cell, dtype=dtype, seed=42)
    same = make(cell, dtype=dtype, seed=42)
    other_backend = make(cell, "numpy", dtype=dtype, seed=42)
    different = make(cell, dtype=dtype, seed=43)
    unseeded = [make(cell, dtype=dtype), make(cell, dtype=dtype)]
    for name in param_names(cell):
        np.testing.assert_array_equal(a.params[name], same.params[name])
        np.testing.assert_array_equal(a.params[name], other_backend.params[name])
        assert not np.array_equal(a.params[name], different.params[name]), name
        assert not np.array_equal(unseeded[0].params[name], unseeded[1].params[name]), name


@pytest.mark.parametrize("cell", KINDS)
def test_initialisation_like_pytorch(cell, dtype):
    """Weights ~ U(-k, k), k = 1/sqrt(hidden); where b is the sum of PyTorch's two biases
    (every gate of the RNN and LSTM, the GRU's r and z) it lies within +-2k, elsewhere (the
    GRU's n part of b, its b_hn) it is one draw within +-k. Large enough a layer that the
    draws fill their ranges."""
    hidden = 64
    layer = make(cell, dtype=dtype, input_size=32, hidden_size=hidden, seed=0)
    k = 1 / np.sqrt(hidden)
    # the registry's shapes and torch mapping (test_cells.py holds them to DESIGN.md's)
    shapes = cells.get(cell).param_shapes(32, hidden)
    summed = cells.get(cell).summed_bias(hidden).stop
    assert list(layer.params) == list(shapes)
    parts = {}
    for name, p in layer.params.items():
        assert p.shape == shapes[name] and p.dtype == dtype, name
        assert p.flags.c_contiguous and p.flags.writeable, name
        if name == "b":
            parts["b (summed)"] = (p[:summed], 2)
            if summed < p.size:
                parts["b (one draw)"] = (p[summed:], 1)
        else:
            parts[name] = (p, 1)
    for name, (p, draws) in parts.items():
        bound = draws * k
        assert np.abs(p).max() <= bound, name
        assert p.max() > 0.8 * bound * (0.5 if draws == 2 else 1), name
        assert p.min() < -0.8 * bound * (0.5 if draws == 2 else 1), name
        # centred: the mean within 4 standard errors of 0 (std of U(-k, k) is k/sqrt(3),
        # of the sum of two such draws k*sqrt(2/3))
        std = k * np.sqrt(2 / 3) if draws == 2 else k / np.sqrt(3)
        assert abs(p.mean()) < 4 * std / np.sqrt(p.size), name
    # the sum of two draws reaches beyond a single draw's range
    assert np.abs(layer.params["b"][:summed]).max() > k


# --------------------------------------------------------------------- params and grads

@pytest.mark.parametrize("cell,backend", KIND_BACKENDS)
def test_grads_match_params_after_backward(cell, backend, dtype):
    layer = make(cell, backend, dtype, seed=0)
    want = {"Wx", "Wh", "b"} | ({"b_hn"} if cells.get(cell).family == "gru" else set())
    assert layer.grads.keys() == layer.params.keys() == want
    p = random_problem(cell, B, T, D, H, dtype)
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


@pytest.mark.parametrize("cell,backend", KIND_BACKENDS)
def test_writing_into_params_changes_the_model(cell, backend, dtype):
    layer = make(cell, backend, dtype, seed=0)
    p = random_problem(cell, B, T, D, H, dtype, seed=1)
    before = layer(p["x"])[0]
    for name in param_names(cell):
        layer.params[name][...] = p[name]
    after = layer(p["x"])[0]
    assert not np.allclose(before, after)
    want = kernel_forward(F, cell, p["x"], (None,) * len(state_names(cell)),
                          tuple(p[n] for n in param_names(cell)), backend="numpy")[0]
    np.testing.assert_allclose(after, want, rtol=RTOL[dtype], atol=ATOL[dtype])
    # and so does writing into a single entry, of each parameter
    for name in param_names(cell):
        layer.params[name].flat[0] += 1
        now = layer(p["x"])[0]
        assert not np.array_equal(now, after), name
        after = now


@pytest.mark.parametrize("batch_first", [True, False], ids=["batch_first", "time_major"])
@pytest.mark.parametrize("cell,backend", KIND_BACKENDS)
def test_results_do_not_alias_the_workspace(cell, batch_first, backend, dtype):
    """Writing into what forward returned (out, final states) leaves backward's result
    unchanged: the layer keeps its own copy of what BPTT needs."""
    p = random_problem(cell, B, T, D, H, dtype, batch_first=batch_first)
    layer = make(cell, backend, dtype, batch_first=batch_first, seed=0)
    clean = [a.copy() for a in run(layer, p)[2:3]] + [g.copy() for g in layer.grads.values()]
    out, finals = layer_forward(layer, p["x"], problem_states(cell, p))
    for a in (out,) + finals:
        a[...] = 7
    dx, _ = layer_backward(layer, p["dout"], problem_states(cell, p, "d", "_n"))
    for got, want in zip([dx] + list(layer.grads.values()), clean, strict=True):
        np.testing.assert_array_equal(got, want)


# --------------------------------------------------------------------- state gradients

@pytest.mark.parametrize("cell,backend", KIND_BACKENDS)
def test_state_gradients_only_for_given_states(cell, backend, dtype):
    p = random_problem(cell, B, T, D, H, dtype)
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

@pytest.mark.parametrize("cell,backend", KIND_BACKENDS)
def test_repr(cell, backend, dtype):
    layer = make(cell, backend, dtype, batch_first=False)
    text = repr(layer)
    assert text.startswith(f"{cells.get(cell).layer}({D}, {H}")
    for part in ("batch_first=False", f"backend={backend!r}",
                 f"dtype=np.{np.dtype(dtype).name}"):
        assert part in text, (part, text)
    if cells.get(cell).family == "rnn":
        assert f"nonlinearity={cells.get(cell).nonlinearity!r}" in text
    else:
        assert "nonlinearity" not in text
    # it is the call that makes such a layer
    copy = eval(text, {"np": np, "RNN": rnnfast.RNN, "LSTM": rnnfast.LSTM, "GRU": rnnfast.GRU})
    assert type(copy) is type(layer) and repr(copy) == text
    assert (copy.input_size, copy.hidden_size, copy.batch_first, copy.dtype, copy.backend) == (
        layer.input_size, layer.hidden_size, layer.batch_first, layer.dtype, layer.backend)


# --------------------------------------------------------------------- public faces

def kernel_signatures(module, drop_backend=False, names=None):
    out = {}
    for name in rnnfast.reference.__all__ if names is None else names:
        sig = inspect.signature(getattr(module, name))
        params = [p for p in sig.parameters.values()
                  if not (drop_backend and p.name == "backend" and p.kind == p.KEYWORD_ONLY)]
        out[name] = [(p.name, p.kind, p.default) for p in params]
    return out


def test_functional_and_reference_have_the_same_functions():
    names = set(rnnfast.reference.__all__)
    assert names == {f"{f}_{d}" for f in cells.FAMILIES for d in ("forward", "backward")}
    assert names <= set(F.__all__)
    assert kernel_signatures(F, drop_backend=True) == kernel_signatures(rnnfast.reference)
    for name in names:                       # and the functional face takes backend=
        backend = inspect.signature(getattr(F, name)).parameters["backend"]
        assert backend.kind == backend.KEYWORD_ONLY and backend.default == "cython"


def test_compiled_module_is_compiled_and_has_the_same_functions():
    """The compiled module has the twin's functions, with the same signatures, for every
    family the registry says it has (a family is compiled when one of its kinds is); the
    families it does not have yet it does not pretend to have."""
    core = importlib.import_module("rnnfast._core")
    assert isinstance(core.__spec__.loader, importlib.machinery.ExtensionFileLoader)
    assert core.__file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)), core.__file__
    compiled = {s.family for s in cells.specs() if s.compiled}
    names = [n for n in rnnfast.reference.__all__ if n.split("_")[0] in compiled]
    assert len(names) == 2 * len(compiled)
    assert kernel_signatures(core, names=names) == kernel_signatures(rnnfast.reference,
                                                                     names=names)
    for family in set(cells.FAMILIES) - compiled:
        assert not hasattr(core, f"{family}_forward"), (
            f"_core has {family}_forward: flip CellSpec.compiled for the {family} kinds")
    assert F.kernels("cython") is core and F.kernels("numpy") is rnnfast.reference


@pytest.mark.parametrize("cell", KINDS)
def test_a_cell_the_compiled_core_lacks_points_to_the_twin(cell):
    """Every cell is compiled today; the refusal for one that is not (a new kind landing in
    the twin first) is a NotImplementedError naming the cell and backend='numpy'."""
    import dataclasses

    spec = dataclasses.replace(cells.get(cell), compiled=False)
    with pytest.raises(NotImplementedError, match="backend='numpy'") as info:
        _checks.check_compiled(spec, "cython")
    assert (spec.nonlinearity or spec.layer) in str(info.value)
    assert _checks.check_compiled(spec, "numpy") == "numpy"
    assert _checks.check_compiled(cells.get(cell), "cython") == "cython"


def test_package_face():
    assert set(rnnfast.__all__) >= {"RNN", "LSTM", "GRU", "from_torch", "to_torch",
                                    "from_keras_weights", "cells", "functional", "reference",
                                    "interop", "__version__"}
    assert isinstance(rnnfast.__version__, str) and rnnfast.__version__
    assert rnnfast.from_torch is rnnfast.interop.from_torch
    from rnnfast import layers
    assert callable(layers.from_torch)
    assert {layer_class(k) for k in KINDS} == {rnnfast.RNN, rnnfast.LSTM, rnnfast.GRU}


def test_calling_a_layer_runs_its_own_classes_forward():
    """layer(...) is forward(...) (bound at class creation): a subclass that overrides
    forward is called through its own, one that does not through its parent's."""

    class Doubled(rnnfast.GRU):
        def forward(self, x, h0=None, *, lengths=None):
            out, h_n = super().forward(x, h0, lengths=lengths)
            return 2 * out, h_n

    class Plain(rnnfast.LSTM):
        pass

    x = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
    doubled, plain = Doubled(4, 5, seed=1).eval(), Plain(4, 5, seed=1).eval()
    np.testing.assert_array_equal(doubled(x)[0], 2 * rnnfast.GRU(4, 5, seed=1).eval()(x)[0])
    np.testing.assert_array_equal(plain(x, lengths=[3, 2])[0],
                                  rnnfast.LSTM(4, 5, seed=1).eval().forward(x, lengths=[3, 2])[0])


# --------------------------------------------------------------------- the fast lane
# A compiled one-layer, one-direction layer checks arguments that already are what the
# kernels take in C and writes the gradients straight into layer.grads (layer_forward /
# layer_backward); anything else takes the checked path. Both must give the same bits.

def _lane_run(kind, fast, dtype, batch_first, with_states, accumulate, arrange=None,
              calls=2, lengths=None):
    """Forward and backward ``calls`` times of a seeded compiled layer on one lane (fast
    True: the fast lane where it applies; False: the checked path always); returns every
    result and the grads, copied."""
    layer = make(kind, "cython", dtype, batch_first=batch_first, seed=3)
    layer._fast = fast
    taken = []          # what the fast lane said: None (declined) or its result
    if fast:
        kernels = layer._kernels

        def spy(name):
            lane = getattr(kernels, name)

            def call(*args):
                result = lane(*args)
                taken.append((name, result))
                return result
            return call
        for name in ("layer_forward", "layer_backward"):
            setattr(kernels, name, spy(name))
    p = random_problem(kind, B, T, D, H, dtype, batch_first=batch_first, seed=1)
    if arrange is not None:
        arrange(layer, p)
    got = []
    for _ in range(calls):
        states = (problem_states(kind, p) if with_states
                  else (None,) * len(state_names(kind)))
        out, finals = layer(p["x"], state_arg(kind, states), lengths=lengths)
        finals = as_states(kind, finals)
        dstates = (problem_states(kind, p, "d", "_n") if with_states
                   else (None,) * len(state_names(kind)))
        dx, d0 = layer.backward(p["dout"], state_arg(kind, dstates),
                                accumulate=accumulate)
        got += [out, *finals, dx, *as_states(kind, d0)]
        got += [layer.grads[n].copy() for n in param_names(kind)]
    _lane_run.taken = taken
    return got


def _bitwise_equal(a, b):
    assert len(a) == len(b)
    for u, v in zip(a, b):
        if u is None or v is None:
            assert u is None and v is None
        else:
            assert u.dtype == v.dtype and u.shape == v.shape
            np.testing.assert_array_equal(u, v)


@pytest.mark.parametrize("kind", COMPILED)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("with_states", [True, False])
@pytest.mark.parametrize("accumulate", [False, True])
@pytest.mark.parametrize("lengths", [None, [T, 2, T - 1]], ids=["full", "lengths"])
def test_fast_lane_equals_the_checked_path(kind, dtype, batch_first, with_states,
                                           accumulate, lengths):
    lengths = None if lengths is None else np.array(lengths)
    fast = _lane_run(kind, True, dtype, batch_first, with_states, accumulate,
                     lengths=lengths)
    # every call took the fast lane, the gradients written in place unless accumulated
    taken = _lane_run.taken
    assert [name for name, _ in taken] == ["layer_forward", "layer_backward"] * 2
    assert all(result is not None for _, result in taken)
    assert all(result[3] is (not accumulate) for name, result in taken
               if name == "layer_backward")
    _bitwise_equal(fast, _lane_run(kind, False, dtype, batch_first, with_states,
                                   accumulate, lengths=lengths))
    assert _lane_run.taken == []


def _grads_alias_a_weight(layer, p):
    layer.grads["Wh"] = layer.params["Wh"]      # (a user's mistake: the copy path's order)


def _grads_overlap_each_other(layer, p):
    shape, n = layer.grads["Wh"].shape, layer.grads["b"].size
    block = np.zeros(layer.grads["Wh"].size + n, layer.dtype)
    layer.grads["Wh"] = block[:layer.grads["Wh"].size].reshape(shape)
    layer.grads["b"] = block[1:1 + n]           # overlaps Wh's


def _grads_alias_dout(layer, p):
    n = layer.grads["b"].size
    layer.grads["b"] = p["dout"].reshape(-1)[:n]


def _grads_fortran_order(layer, p):
    layer.grads["Wx"] = np.asfortranarray(np.zeros_like(layer.grads["Wx"]))


def _x_not_ready(layer, p):
    p["x"] = p["x"].tolist()                    # a list: converted by the checked path


def _dout_strided(layer, p):
    p["dout"] = np.repeat(p["dout"], 2, axis=-1)[..., ::2]


@pytest.mark.parametrize("kind", COMPILED)
@pytest.mark.parametrize("arrange", [_grads_alias_a_weight, _grads_overlap_each_other,
                                     _grads_alias_dout, _grads_fortran_order, _x_not_ready,
                                     _dout_strided])
def test_fast_lane_declines_what_it_cannot_take_as_it_is(kind, arrange):
    # the same results as the checked path (the copy semantics where grads overlap what
    # the call reads), for arguments the fast lane hands on or stores afterwards
    for accumulate in (False, True):
        fast = _lane_run(kind, True, np.float32, True, True, accumulate, arrange)
        if not accumulate:      # the arrangement reached the fast lane's tests
            assert [name for name, result in _lane_run.taken
                    if result is None or (name == "layer_backward" and not result[3])]
        _bitwise_equal(fast, _lane_run(kind, False, np.float32, True, True, accumulate,
                                       arrange))


@pytest.mark.parametrize("kind", COMPILED)
@pytest.mark.parametrize("arrange", [_grads_fortran_order, _dout_strided, _grads_alias_dout])
def test_fast_lane_with_lengths_whose_backward_declines(kind, arrange):
    # a forward with lengths on the fast lane, then a backward the lane declines: the
    # checked path must take the lengths' workspace (it raised "workspace was modified"
    # with a strided dout or Fortran-ordered grads, found by test_lane_properties)
    lengths = np.array([T, 2, T - 1])

    def after_forward(layer, p):    # the arrangement only once the lane took the forward
        forward = layer._forward

        def then_arrange(*args, **kwargs):
            done = forward(*args, **kwargs)
            if not getattr(layer, "_arranged", False):
                layer._arranged = True
                arrange(layer, p)
            return done
        layer._forward = then_arrange
    for accumulate in (False, True):
        fast = _lane_run(kind, True, np.float32, True, True, accumulate, after_forward,
                         lengths=lengths)
        assert all(r is not None for n, r in _lane_run.taken if n == "layer_forward")
        _bitwise_equal(fast, _lane_run(kind, False, np.float32, True, True, accumulate,
                                       after_forward, lengths=lengths))


@pytest.mark.parametrize("kind", COMPILED)
def test_fast_lane_writes_into_the_grads_arrays(kind):
    layer = make(kind, "cython", seed=3)
    held = dict(layer.grads)
    p = random_problem(kind, B, T, D, H, np.float32, seed=1)
    layer_forward(layer, p["x"])
    layer.backward(p["dout"])
    for name in param_names(kind):
        assert layer.grads[name] is held[name]
        assert np.any(held[name] != 0)


@pytest.mark.parametrize("kind", COMPILED)
def test_fast_lane_backward_after_params_were_replaced(kind):
    # the workspace fits the weights forward ran on: another shape in params between
    # forward and backward is the checked path's error, not a read past the workspace
    layer = make(kind, "cython", seed=3)
    p = random_problem(kind, B, T, D, H, np.float32, seed=1)
    layer_forward(layer, p["x"])
    Wh = layer.params["Wh"]
    layer.params["Wh"] = np.zeros((H + 1, Wh.shape[1] // H * (H + 1)), np.float32)
    with pytest.raises(ValueError, match="Wh"):
        layer.backward(p["dout"])


def _stack_run(kind, fast, layout, arrange=None):
    """Forward and backward twice of a seeded compiled stacked or bidirectional layer,
    with ``fast`` False the checked way only; every result and the grads, copied."""
    num_layers, bidirectional = layout
    layer = make(kind, "cython", seed=3, num_layers=num_layers, bidirectional=bidirectional)
    layer._fast = fast
    rng = np.random.default_rng(1)
    x = rng.standard_normal((B, T, D)).astype(np.float32)
    dout = rng.standard_normal((B, T, (2 if bidirectional else 1) * H)).astype(np.float32)
    n = len(state_names(kind))
    dstates = (None,) * n
    if arrange == "dh_n":
        # the last layer's bias gradient is written into the state gradient the first
        # layer reads at its turn (a user's mistake: the copy path's order decides)
        L = num_layers * (2 if bidirectional else 1)
        dh = rng.standard_normal((L, B, H)).astype(np.float32)
        last = layer._names[-1]
        layer.grads[last] = dh.reshape(-1)[:layer.grads[last].size]
        dstates = (dh,) + (None,) * (n - 1)
    elif arrange is not None:
        arrange(layer, dout)
    got = []
    for _ in range(2):
        out, finals = layer(x)
        dx, _ = layer.backward(dout, state_arg(kind, dstates))
        got += [out, *as_states(kind, finals), dx]
        got += [layer.grads[n].copy() for n in layer._names]
    return got


def _stack_grads_alias_a_weight(layer, dout):
    layer.grads["Wh_l1" if layer.num_layers > 1 else "Wh_reverse"] = layer.params["Wh"]


def _stack_grads_alias_dout(layer, dout):
    name = "b_l1" if layer.num_layers > 1 else "b_reverse"
    layer.grads[name] = dout.reshape(-1)[:layer.grads[name].size]


@pytest.mark.parametrize("kind", COMPILED)
@pytest.mark.parametrize("layout", [(2, False), (1, True), (2, True)],
                         ids=["stacked", "bidirectional", "both"])
@pytest.mark.parametrize("arrange", [None, _stack_grads_alias_a_weight,
                                     _stack_grads_alias_dout, "dh_n"])
def test_stacked_gradients_written_in_place_equal_the_checked_path(kind, layout, arrange):
    layer = make(kind, "cython", seed=3, num_layers=layout[0], bidirectional=layout[1])
    held = dict(layer.grads)
    _bitwise_equal(_stack_run(kind, True, layout, arrange),
                   _stack_run(kind, False, layout, arrange))
    if arrange is None:     # written into the very arrays (an optimizer may hold them)
        x = np.zeros((B, T, D), np.float32)
        dout = np.ones((B, T, layer.num_directions * H), np.float32)
        assert layer._grads_into(layer._weights(), dout, (None,) * len(state_names(kind)),
                                 None, False) is not None
        layer(x)
        layer.backward(dout)
        assert all(layer.grads[n] is held[n] for n in layer._names)
        assert all(np.any(layer.grads[n] != 0) for n in layer._names if n.startswith("b"))


@pytest.mark.parametrize("arrange,expected", [
    (None, 2), (_stack_grads_alias_a_weight, 1), (_stack_grads_alias_dout, 1)])
def test_grads_fit_says_what_the_kernels_may_write(arrange, expected):
    layer = make("lstm", "cython", seed=3, num_layers=2)
    dout = np.ones((B, T, H), np.float32)
    if arrange is not None:
        arrange(layer, dout)
    core = layer._kernels_module
    targets = layer._param_getter(layer.grads)
    assert core.grads_fit(targets, layer._weights(), dout) == expected
    # not writeable, another shape, a strided view: not at all; a strided dout: stored after
    ro = targets[0].copy()
    ro.flags.writeable = False
    assert core.grads_fit((ro,) + targets[1:], layer._weights(), dout) == 0
    assert core.grads_fit((targets[0][:-1],) + targets[1:], layer._weights(), dout) == 0
    assert core.grads_fit((np.zeros_like(targets[0]).T.copy().T,) + targets[1:],
                          layer._weights(), dout) == 0
    if expected == 2:
        assert core.grads_fit(targets, layer._weights(), dout[:, ::2]) == 1
        assert core.grads_fit(targets, layer._weights(), [1.0]) == 1


def _layers_run(kind, fast, dtype, batch_first, with_states, accumulate, lengths,
                num_layers, bidirectional):
    """A seeded compiled layer of ``num_layers`` layers (of two directions with
    ``bidirectional``), forward and backward twice (fast False: the checked path only);
    every result and the grads, copied."""
    layer = make(kind, "cython", dtype, seed=3, num_layers=num_layers,
                 bidirectional=bidirectional, batch_first=batch_first)
    layer._fast = fast
    nd = 2 if bidirectional else 1
    rng = np.random.default_rng(1)
    xshape = (B, T, D) if batch_first else (T, B, D)
    x = rng.standard_normal(xshape).astype(dtype)
    dout = rng.standard_normal(xshape[:2] + (nd * H,)).astype(dtype)
    n = len(state_names(kind))
    shape = (num_layers * nd, B, H)
    states = tuple(rng.standard_normal(shape).astype(dtype) for _ in range(n))
    dstates = tuple(rng.standard_normal(shape).astype(dtype) for _ in range(n))
    if not with_states:
        states = dstates = (None,) * n
    got = []
    for _ in range(2):
        out, finals = layer(x, state_arg(kind, states), lengths=lengths)
        dx, d0 = layer.backward(dout, state_arg(kind, dstates), accumulate=accumulate)
        got += [out, *as_states(kind, finals), dx, *as_states(kind, d0)]
        got += [layer.grads[name].copy() for name in layer._names]
    return got


@pytest.mark.parametrize("kind", COMPILED)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("num_layers,bidirectional", [(1, True), (2, False), (3, True)])
@pytest.mark.parametrize("with_states,accumulate,lengths", [
    (True, False, None), (False, True, None), (True, False, [T, 2, T - 1]),
    (False, False, [1, T, 3])])
def test_stack_fast_lane_equals_the_checked_path(monkeypatch, kind, dtype, batch_first,
                                                 num_layers, bidirectional, with_states,
                                                 accumulate, lengths):
    core = rnnfast.functional.kernels("cython")
    taken = []

    def spy(name):
        lane = getattr(core, name)

        def call(*args):
            result = lane(*args)
            taken.append((name, result is not None))
            return result
        return call
    for name in ("stack_forward", "stack_backward"):
        monkeypatch.setattr(core, name, spy(name))
    lengths = None if lengths is None else np.array(lengths)
    fast = _layers_run(kind, True, dtype, batch_first, with_states, accumulate, lengths,
                       num_layers, bidirectional)
    assert taken == [("stack_forward", True), ("stack_backward", True)] * 2
    _bitwise_equal(fast, _layers_run(kind, False, dtype, batch_first, with_states,
                                     accumulate, lengths, num_layers, bidirectional))
    assert len(taken) == 4      # (the checked path does not take the lane)


def test_params_snapshot_sees_every_change_the_kernels_would_trust():
    core = rnnfast.functional.kernels("cython")
    a, b = np.zeros((4, 6), np.float32), np.zeros(6, np.float32)
    params = {"Wh": a, "b": b}
    snap = core.ParamsSnapshot(("Wh", "b"), (a, b))
    assert snap.holds(params)
    assert snap.holds(dict(params, extra=1))            # (other entries do not matter)
    assert not snap.holds({"Wh": a})                    # an entry missing
    assert not snap.holds({"Wh": a, "b": b.copy()})     # replaced by an equal array
    assert not snap.holds([a, b])                       # not a dict
    a.shape = (6, 4)                                    # set in place: shape, strides
    assert not snap.holds(params)
    a.shape = (4, 6)
    assert snap.holds(params)
    a.shape = (24,)                                     # fewer dimensions
    assert not snap.holds(params)
    a.shape = (4, 6)
    b.dtype = np.int32                                  # same itemsize, another dtype
    assert not snap.holds(params)
    b.dtype = np.float32
    assert snap.holds(params)
    big = tuple(np.zeros((1,) * 8, np.float32) for _ in range(5))   # past the stack buffer
    names = tuple(f"w{i}" for i in range(5))
    assert core.ParamsSnapshot(names, big).holds(dict(zip(names, big)))
    with pytest.raises(ValueError, match="length"):
        core.ParamsSnapshot(("Wh",), (a, b))
    with pytest.raises(TypeError, match="ndarrays"):
        core.ParamsSnapshot(("Wh",), ([1.0],))


def test_params_snapshot_never_made_holds_nothing():
    core = rnnfast.functional.kernels("cython")
    snap = core.ParamsSnapshot.__new__(core.ParamsSnapshot)     # (no __init__)
    assert not snap.holds({})
    a = np.zeros(3, np.float32)
    snap.__init__(("a",), (a,))
    assert snap.holds({"a": a})
    view = a.reshape(1, 3)
    snap.__init__(("a",), (view,))                              # made again: the new arrays
    assert snap.holds({"a": view}) and not snap.holds({"a": a})
