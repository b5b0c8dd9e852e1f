"""Every bad input gets its own clear error, and leaves the layer as it was.

For each bad call: the exception type, a message that names the argument and (for
shapes) holds both the expected and the received shape, parameters and gradients
unchanged, and a BPTT cache from an earlier good forward still usable.
"""
import re

import numpy as np
import pytest

import rnnfast
from rnnfast import cells
from rnnfast import functional as F
import cells_for_tests as reg
from cells_for_tests import (
    KIND_BACKENDS,
    KINDS,
    default_backend,
    kernel_backward,
    kernel_forward,
    param_names,
    random_problem,
    state_arg,
    state_names,
)

B, T, D, H = 3, 6, 4, 5


def make_layer(cell, backend, dtype, batch_first=True, **kwargs):
    return reg.make_layer(cell, D, H, batch_first=batch_first, dtype=dtype, backend=backend,
                          seed=0, **kwargs)


def problem(cell, dtype, batch_first=True):
    return random_problem(cell, B, T, D, H, dtype, batch_first=batch_first, seed=1)


def fwd(layer, x, h0=None, c0=None):
    kind = layer._spec.kind
    return layer(x, state_arg(kind, (h0, c0)[:len(state_names(kind))]))


def bwd(layer, dout, dh_n=None, dc_n=None):
    kind = layer._spec.kind
    return layer.backward(dout, state_arg(kind, (dh_n, dc_n)[:len(state_names(kind))]))


def snapshot(layer):
    """Copies of the params and grads, and which arrays the params dict holds."""
    return {"params": {k: np.array(v, copy=True) for k, v in layer.params.items()},
            "grads": {k: np.array(v, copy=True) for k, v in layer.grads.items()},
            "ids": {k: id(v) for k, v in layer.params.items()}}


def assert_unchanged(layer, before):
    """params hold the same arrays with the same values; grads the same values."""
    assert {k: id(v) for k, v in layer.params.items()} == before["ids"]
    for kind in ("params", "grads"):
        for name, value in getattr(layer, kind).items():
            np.testing.assert_array_equal(value, before[kind][name],
                                          err_msg=f"{kind}[{name!r}]")


def assert_names(message, name, *fragments):
    """The message names the argument (as a word) and holds every fragment."""
    assert re.search(rf"\b{re.escape(name)}\b", message), (name, message)
    for f in fragments:
        assert f in message, (f, message)


def check_error(layer, p, exc, call, name, *fragments):
    """``call(layer)`` (a bad forward or backward) raises ``exc`` naming ``name``; params
    and grads unchanged; the cache of the training forward before it survives (a bad
    forward does not drop it, a bad backward does not consume it): the good backward
    that follows gives the gradients it would have given."""
    fwd(layer, p["x"], p["h0"], p["c0"])
    want = [np.array(g, copy=True) for g in
            _flatten(bwd(layer, p["dout"], p["dh_n"], p["dc_n"]))]
    fwd(layer, p["x"], p["h0"], p["c0"])
    before = snapshot(layer)
    with pytest.raises(exc) as info:
        call(layer)
    assert_names(str(info.value), name, *fragments)
    assert_unchanged(layer, before)
    got = _flatten(bwd(layer, p["dout"], p["dh_n"], p["dc_n"]))
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def _flatten(results):
    dx, dstate = results
    return [dx] + (list(dstate) if isinstance(dstate, tuple) else [dstate])


# --------------------------------------------------------------------- x: dtype

BAD_X = {
    "complex": lambda s: np.ones(s, np.complex128),
    "object": lambda s: np.full(s, 1.0, dtype=object),
    "str-array": lambda s: np.full(s, "1"),
    "str": lambda s: "not an array",
    "None": lambda s: None,
    "ragged": lambda s: [[[1.0] * s[2]] * s[1], [[1.0] * s[2]]],
}


@pytest.mark.parametrize("kind", BAD_X)
@pytest.mark.parametrize("cell,backend", KIND_BACKENDS)
def test_non_numeric_x_is_a_type_error(cell, kind, backend, dtype):
    layer = make_layer(cell, backend, dtype)
    p = problem(cell, dtype)
    bad = BAD_X[kind](p["x"].shape)
    check_error(layer, p, TypeError, lambda lay: fwd(lay, bad), "x")


@pytest.mark.parametrize("kind", ["complex", "object", "str-array"])
@pytest.mark.parametrize("cell,backend", KIND_BACKENDS)
def test_non_numeric_states_and_gradients_are_type_errors(cell, kind, backend, dtype):
    layer = make_layer(cell, backend, dtype)
    p = problem(cell, dtype)
    for name in (n + "0" for n in state_names(cell)):
        bad = dict(h0=p["h0"], c0=p["c0"]) | {name: BAD_X[kind](p[name].shape)}
        check_error(layer, p, TypeError,
                    lambda lay, bad=bad: fwd(lay, p["x"], bad["h0"], bad["c0"]), name)
    for name in ("dout",) + tuple(f"d{n}_n" for n in state_names(cell)):
        bad = dict(dout=p["dout"], dh_n=p["dh_n"], dc_n=p["dc_n"]) | {
            name: BAD_X[kind](p[name].shape)}
        check_error(layer, p, TypeError,
                    lambda lay, bad=bad: bwd(lay, bad["dout"], bad["dh_n"], bad["dc_n"]), name)


@pytest.mark.parametrize("kind", ["int64", "int8", "uint8", "bool"])
@pytest.mark.parametrize("cell,backend", KIND_BACKENDS)
def test_integer_and_bool_x_convert(cell, kind, backend, dtype):
    layer = make_layer(cell, backend, dtype)
    rng = np.random.default_rng(2)
    x = rng.integers(0, 2 if kind == "bool" else 4, (B, T, D)).astype(kind)
    out, _ = fwd(layer, x)
    dx, _ = bwd(layer, np.ones(out.shape, int))
    ref = make_layer(cell, backend, dtype)
    want_out, _ = fwd(ref, x.astype(dtype))
    want_dx, _ = bwd(ref, np.ones(out.shape, dtype))
    assert out.dtype == dx.dtype == dtype
    np.testing.assert_array_equal(out, want_out)
    np.testing.assert_array_equal(dx, want_dx)


# --------------------------------------------------------------------- shapes

def shape_str(shape):
    return str(tuple(shape))


@pytest.mark.parametrize("batch_first", [True, False], ids=["batch_first", "time_major"])
@pytest.mark.parametrize("cell,backend", KIND_BACKENDS)
def test_x_of_wrong_shape(cell, batch_first, backend, dtype):
    """A wrong number of axes, then a wrong feature size; the expected shape is spelled in
    the layer's layout."""
    layer = make_layer(cell, backend, dtype, batch_first)
    p = problem(cell, dtype, batch_first)
    x = p["x"]
    any_length = "(batch, seq_len, features=4)" if batch_first else "(seq_len, batch, features=4)"
    this_length = "(batch=3, seq_len=6, features=4)" if batch_first else \
        "(seq_len=6, batch=3, features=4)"
    cases = [(bad, any_length) for bad in (x[0], x[..., None], x.ravel(), np.float64(1.0))]
    cases += [(np.zeros(x.shape[:2] + (f,), dtype), this_length) for f in (D - 1, D + 1)]
    for bad, expected in cases:
        check_error(layer, p, ValueError, lambda lay, bad=bad: fwd(lay, bad), "x", expected,
                    "got shape " + shape_str(np.shape(bad)))


@pytest.mark.parametrize("batch_first", [True, False], ids=["batch_first", "time_major"])
@pytest.mark.parametrize("cell,backend", KIND_BACKENDS)
def test_initial_state_of_wrong_shape(cell, batch_first, backend, dtype):
    """A batch that differs from x's, a wrong hidden size, a missing or extra axis."""
    layer = make_layer(cell, backend, dtype, batch_first)
    p = problem(cell, dtype, batch_first)
    for name in (n + "0" for n in state_names(cell)):
        for shape in [(B + 1, H), (B - 1, H), (B, H + 1), (H,), (1, B, H)]:
            states = dict(h0=p["h0"], c0=p["c0"]) | {name: np.zeros(shape, dtype)}
            check_error(layer, p, ValueError,
                        lambda lay, s=states: fwd(lay, p["x"], s["h0"], s["c0"]), name,
                        shape_str((B, H)), "got shape " + shape_str(shape))


@pytest.mark.parametrize("batch_first", [True, False], ids=["batch_first", "time_major"])
@pytest.mark.parametrize("cell,backend", KIND_BACKENDS)
def test_gradients_of_wrong_shape(cell, batch_first, backend, dtype):
    layer = make_layer(cell, backend, dtype, batch_first)
    p = problem(cell, dtype, batch_first)
    out_shape = p["dout"].shape
    cases = [("dout", s, out_shape) for s in (out_shape[:2] + (H + 1,),
                                              (out_shape[0] + 1,) + out_shape[1:],
                                              (out_shape[0], out_shape[1] - 1, H),
                                              out_shape[::-1], out_shape[1:])]
    for name in (f"d{n}_n" for n in state_names(cell)):
        cases += [(name, s, (B, H)) for s in ((B + 1, H), (B, H - 1), (1, B, H))]
    for name, shape, expected in cases:
        args = dict(dout=p["dout"], dh_n=p["dh_n"], dc_n=p["dc_n"]) | {
            name: np.zeros(shape, dtype)}
        check_error(layer, p, ValueError,
                    lambda lay, a=args: bwd(lay, a["dout"], a["dh_n"], a["dc_n"]), name,
                    shape_str(expected), "got shape " + shape_str(shape))


# --------------------------------------------------------------------- call order

@pytest.mark.parametrize("cell,backend", KIND_BACKENDS)
def test_backward_without_its_forward(cell, backend, dtype):
    p = problem(cell, dtype)
    layer = make_layer(cell, backend, dtype)
    with pytest.raises(ValueError, match="forward"):            # never run forward
        bwd(layer, p["dout"])
    layer.eval()
    fwd(layer, p["x"])
    assert layer._cache is None
    with pytest.raises(ValueError, match="forward"):            # eval-mode forward
        bwd(layer, p["dout"])
    layer.train()
    with pytest.raises(ValueError, match="forward"):            # still no training forward
        bwd(layer, p["dout"])
    fwd(layer, p["x"])
    bwd(layer, p["dout"])
    before = snapshot(layer)
    with pytest.raises(ValueError, match="forward"):            # a second backward
        bwd(layer, p["dout"])
    assert_unchanged(layer, before)
    fwd(layer, p["x"])
    layer.eval()                                                 # eval() drops the cache
    with pytest.raises(ValueError, match="forward"):
        bwd(layer, p["dout"])


# --------------------------------------------------------------------- constructors

@pytest.mark.parametrize("cell", KINDS)
@pytest.mark.parametrize("kwargs,exc,fragment", [
    (dict(hidden_size=0), ValueError, "hidden_size"),
    (dict(hidden_size=-1), ValueError, "hidden_size"),
    (dict(hidden_size=2.5), TypeError, "hidden_size"),
    (dict(hidden_size="5"), TypeError, "hidden_size"),
    (dict(hidden_size=True), TypeError, "hidden_size"),
    (dict(hidden_size=None), TypeError, "hidden_size"),
    (dict(input_size=0), ValueError, "input_size"),
    (dict(input_size=-3), ValueError, "input_size"),
    (dict(input_size=1.0), TypeError, "input_size"),
    (dict(dtype=np.int32), TypeError, "dtype"),
    (dict(dtype=np.float16), TypeError, "dtype"),
    (dict(dtype=np.complex64), TypeError, "dtype"),
    (dict(dtype="float"), None, None),        # "float" is float64: accepted
    (dict(dtype="not a dtype"), TypeError, "dtype"),
    (dict(backend="cuda"), ValueError, "backend"),
    (dict(backend=None), ValueError, "backend"),
], ids=lambda v: repr(v) if not isinstance(v, dict) else "-".join(f"{k}={v[k]!r}" for k in v))
def test_bad_constructor_arguments(cell, kwargs, exc, fragment):
    # (a cell the compiled core does not have is made on the twin, unless the backend is
    # the bad argument)
    args = dict(input_size=D, hidden_size=H, backend=default_backend(cell)) | kwargs
    if exc is None:
        layer = reg.make_layer(cell, args.pop("input_size"), args.pop("hidden_size"), **args)
        assert layer.dtype == np.float64
        return
    with pytest.raises(exc) as info:
        reg.make_layer(cell, args.pop("input_size"), args.pop("hidden_size"), **args)
    message = str(info.value)
    assert_names(message, fragment)
    bad = next(iter(kwargs.values()))
    assert str(bad) in message or repr(bad) in message or np.dtype(bad).name in message


@pytest.mark.parametrize("backend", ["cython", "numpy"])
@pytest.mark.parametrize("nonlinearity", ["softsign", "TANH", "Sigmoid", None, ""])
def test_bad_nonlinearity(nonlinearity, backend):
    with pytest.raises(ValueError) as info:
        rnnfast.RNN(D, H, nonlinearity, backend=backend)
    assert_names(str(info.value), "nonlinearity", repr(nonlinearity),
                 repr(cells.NONLINEARITIES))


# --------------------------------------------------------------------- seq_len == 0

@pytest.mark.parametrize("batch_first", [True, False], ids=["batch_first", "time_major"])
@pytest.mark.parametrize("states", [True, False], ids=["state", "no-state"])
@pytest.mark.parametrize("cell,backend", KIND_BACKENDS)
def test_empty_sequence(cell, states, batch_first, backend, dtype):
    layer = make_layer(cell, backend, dtype, batch_first)
    p = problem(cell, dtype, batch_first)
    x = np.zeros((B, 0, D) if batch_first else (0, B, D), dtype)
    h0, c0 = (p["h0"], p["c0"]) if states else (None, None)
    out, finals = fwd(layer, x, h0, c0)
    finals = reg.as_states(cell, finals)
    assert out.shape == x.shape[:2] + (H,) and out.dtype == dtype
    for f, s in zip(finals, (h0, c0)):
        assert f.shape == (B, H) and f.dtype == dtype
        np.testing.assert_array_equal(f, np.zeros((B, H)) if s is None else s)
        if s is not None:
            assert not np.shares_memory(f, s)
    for gradient_given in (True, False):
        fwd(layer, x, h0, c0)
        dout = np.zeros(out.shape, dtype)
        dh_n, dc_n = (p["dh_n"], p["dc_n"]) if gradient_given else (None, None)
        dx, dstate = bwd(layer, dout, dh_n, dc_n)
        assert dx.shape == x.shape and dx.dtype == dtype
        dstate = reg.as_states(cell, dstate)
        for ds, given in zip(dstate, (dh_n, dc_n)):
            if not states:
                assert ds is None                       # no initial state, no gradient
            elif given is None:
                np.testing.assert_array_equal(ds, np.zeros((B, H)))
            else:
                np.testing.assert_array_equal(ds, given)
                assert not np.shares_memory(ds, given)
        for name, g in layer.grads.items():
            assert g.shape == layer.params[name].shape and g.dtype == dtype
            assert not g.any(), name


# --------------------------------------------------------------------- LSTM state pairs

@pytest.mark.parametrize("kind", ["array", "1-tuple", "3-tuple", "str", "dict", "stacked"])
def test_lstm_state_must_be_a_pair(kind, backend, dtype):
    layer = make_layer("lstm", backend, dtype)
    p = problem("lstm", dtype)
    bad = {"array": p["h0"], "1-tuple": (p["h0"],), "3-tuple": (p["h0"], p["c0"], p["c0"]),
           "str": "hc", "dict": {"h": p["h0"], "c": p["c0"]},
           "stacked": np.stack([p["h0"], p["c0"]])}[kind]
    check_error(layer, p, TypeError, lambda lay: lay(p["x"], bad), "state", "pair")
    bad_d = bad if kind != "array" else p["dh_n"]
    check_error(layer, p, TypeError, lambda lay: lay.backward(p["dout"], bad_d), "dstate",
                "pair")
    # a list is a pair too
    want = layer(p["x"], (p["h0"], p["c0"]))[0], layer.backward(p["dout"], (p["dh_n"], p["dc_n"]))
    got = layer(p["x"], [p["h0"], p["c0"]])[0], layer.backward(p["dout"], [p["dh_n"], p["dc_n"]])
    for g, w in zip(_flatten(got[1]) + [got[0]], _flatten(want[1]) + [want[0]]):
        np.testing.assert_array_equal(g, w)


# --------------------------------------------------------------------- params replaced

def bad_params(cell):
    """Mis-shaped replacements of each parameter of the cell: (name, shape)."""
    G = cells.get(cell).gates
    cases = {
        "Wx-rows": ("Wx", (D + 1, G * H)),
        "Wx-cols": ("Wx", (D, G * H + 1)),
        "Wx-1d": ("Wx", (D * G * H,)),
        "Wh-cols": ("Wh", (H, G * H + 1)),
        "Wh-square": ("Wh", (H + 1, G * (H + 1))),
        "Wh-3d": ("Wh", (1, H, G * H)),
        "b-long": ("b", (G * H + 1,)),
        "b-2d": ("b", (1, G * H)),
    }
    if "b_hn" in param_names(cell):
        cases.update({"b_hn-long": ("b_hn", (H + 1,)), "b_hn-short": ("b_hn", (H - 1,)),
                      "b_hn-2d": ("b_hn", (1, H)), "b_hn-like-b": ("b_hn", (G * H,))})
    return cases


PARAM_CASES = [pytest.param(kind, backend, case, id=f"{kind}-{backend}-{case}")
               for kind, backend in (p.values for p in KIND_BACKENDS)
               for case in bad_params(kind)]


@pytest.mark.parametrize("cell,backend,case", PARAM_CASES)
def test_params_entry_of_wrong_shape(cell, backend, case, dtype):
    """The error names the replaced entry, its expected and its received shape, on forward
    and on a backward after it was replaced between the two."""
    name, shape = bad_params(cell)[case]
    expected = cells.get(cell).param_shapes(D, H)[name]
    fragments = (f"params[{name!r}]", shape_str(expected), "got shape " + shape_str(shape))
    p = problem(cell, dtype)
    layer = make_layer(cell, backend, dtype)
    layer.params[name] = np.zeros(shape, dtype)
    before = snapshot(layer)
    with pytest.raises(ValueError) as info:
        fwd(layer, p["x"], p["h0"], p["c0"])
    assert_names(str(info.value), name, *fragments)
    assert_unchanged(layer, before)
    layer = make_layer(cell, backend, dtype)
    fwd(layer, p["x"], p["h0"], p["c0"])
    layer.params[name] = np.zeros(shape, dtype)
    before = snapshot(layer)
    with pytest.raises(ValueError) as info:
        bwd(layer, p["dout"], p["dh_n"], p["dc_n"])
    assert_names(str(info.value), name, *fragments)
    assert_unchanged(layer, before)


@pytest.mark.parametrize("cell,backend", KIND_BACKENDS)
def test_params_entry_missing(cell, backend, dtype):
    """A params dict without one of the cell's entries (a GRU's without b_hn, say): a
    ValueError naming the entry and its expected shape, on forward and on backward; the
    layer as it was, and once the entry is back the pending backward gives the gradients
    it would have given."""
    p = problem(cell, dtype)
    fresh = make_layer(cell, backend, dtype)                  # the same seed: same params
    fwd(fresh, p["x"], p["h0"], p["c0"])
    want = _flatten(bwd(fresh, p["dout"], p["dh_n"], p["dc_n"]))
    for name in param_names(cell):
        expected = cells.get(cell).param_shapes(D, H)[name]
        fragments = (f"params[{name!r}]", "missing", shape_str(expected), "got no entry")
        layer = make_layer(cell, backend, dtype)
        value = layer.params.pop(name)
        before = snapshot(layer)
        with pytest.raises(ValueError) as info:
            fwd(layer, p["x"], p["h0"], p["c0"])
        assert_names(str(info.value), name, *fragments)
        assert_unchanged(layer, before)
        layer.params[name] = value
        fwd(layer, p["x"], p["h0"], p["c0"])
        del layer.params[name]                            # between forward and backward
        before = snapshot(layer)
        with pytest.raises(ValueError) as info:
            bwd(layer, p["dout"], p["dh_n"], p["dc_n"])
        assert_names(str(info.value), name, *fragments)
        assert_unchanged(layer, before)
        layer.params[name] = value
        for g, w in zip(_flatten(bwd(layer, p["dout"], p["dh_n"], p["dc_n"])), want,
                        strict=True):
            np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("cell,backend", KIND_BACKENDS)
def test_params_entry_not_numeric(cell, backend, dtype):
    p = problem(cell, dtype)
    G = cells.get(cell).gates
    cases = [("b", None, TypeError), ("Wx", np.zeros((D, G * H), complex), TypeError),
             ("Wh", "weights", TypeError)]
    if "b_hn" in param_names(cell):
        cases += [("b_hn", None, TypeError), ("b_hn", np.zeros(H, complex), TypeError),
                  ("b_hn", "bias", TypeError)]
    for name, bad, exc in cases:
        layer = make_layer(cell, backend, dtype)
        layer.params[name] = bad
        with pytest.raises(exc, match=rf"\b{name}\b"):
            fwd(layer, p["x"], p["h0"], p["c0"])


# --------------------------------------------------------------------- functional face

def f_forward(cell, p, backend, training=True, batch_first=True):
    states = tuple(p[n + "0"] for n in state_names(cell))
    weights = tuple(p[n] for n in param_names(cell))
    return kernel_forward(F, cell, p["x"], states, weights, batch_first, training,
                          backend=backend)[-1]


def f_backward(cell, p, ws, backend, batch_first=True, dout=None):
    dout = p["dout"] if dout is None else dout
    dstates = tuple(p[f"d{n}_n"] for n in state_names(cell))
    return kernel_backward(F, cell, dout, dstates, p["x"], p["Wx"], p["Wh"], ws, batch_first,
                           backend=backend)


OTHER = {"cython": "numpy", "numpy": "cython"}


def _other_backend_workspace(cell, p, backend):
    """A workspace of the other backend for the same call: a real one where that backend
    runs the cell, else this backend's relabelled as the other's."""
    other = OTHER[backend]
    if other in reg.backends_for(cell):
        return f_forward(cell, p, other)
    return dict(f_forward(cell, p, backend), backend=other)


@pytest.mark.parametrize("cell,backend", KIND_BACKENDS)
def test_functional_workspace_must_match_the_call(cell, backend, dtype):
    p = problem(cell, dtype)
    ws = _other_backend_workspace(cell, p, backend)
    with pytest.raises(ValueError, match="workspace"):            # the other backend's
        f_backward(cell, p, ws, backend)
    with pytest.raises(ValueError, match="workspace"):            # eval mode: none
        f_backward(cell, p, f_forward(cell, p, backend, training=False), backend)
    with pytest.raises(ValueError, match="workspace"):            # other layout
        f_backward(cell, p, f_forward(cell, p, backend), backend, batch_first=False)
    short = dict(p, x=p["x"][:, :-1], dout=p["dout"][:, :-1])
    with pytest.raises(ValueError, match="workspace"):            # another sequence length
        f_backward(cell, short, f_forward(cell, p, backend), backend)
    other = {k: v.astype(np.float64 if dtype == np.float32 else np.float32)
             for k, v in p.items()}
    with pytest.raises(ValueError, match="workspace"):            # another dtype
        f_backward(cell, other, f_forward(cell, p, backend), backend)
    with pytest.raises(ValueError, match="workspace"):            # another cell
        f_backward(cell, p, _other_cell_workspace(cell, dtype, backend), backend)
    with pytest.raises(TypeError, match="workspace"):
        f_backward(cell, p, ("not", "a", "workspace"), backend)
    # a bad dout does not consume the workspace; a good backward does
    ws = f_forward(cell, p, backend)
    with pytest.raises(ValueError, match="dout"):
        f_backward(cell, p, ws, backend, dout=p["dout"][:, :, :-1])
    f_backward(cell, p, ws, backend)
    with pytest.raises(ValueError, match="already used"):
        f_backward(cell, p, ws, backend)


def _other_cell_workspace(cell, dtype, backend):
    """A workspace of another cell family with the same (batch, seq_len, hidden)."""
    other = reg.other_kind(cell, backend)
    return f_forward(other, problem(other, dtype), backend)


@pytest.mark.parametrize("cell,backend", reg.kind_backends(
    [k for k in KINDS if cells.get(k).family == "rnn"]))
def test_functional_nonlinearity_must_match(cell, backend, dtype):
    """A workspace of one nonlinearity cannot serve the backward of another; an unknown
    nonlinearity is refused."""
    p = problem(cell, dtype)
    ws = f_forward(cell, p, backend)
    nonlinearity = cells.get(cell).nonlinearity
    others = [n for n in cells.NONLINEARITIES if n != nonlinearity
              and backend in reg.backends_for(cells.for_layer("rnn", n).kind)]
    assert others
    for other in others:
        with pytest.raises(ValueError, match="nonlinearity"):
            F.rnn_backward(p["dout"], p["dh_n"], p["x"], p["Wx"], p["Wh"], ws, other,
                           backend=backend)
    assert not ws.get("consumed")
    with pytest.raises(ValueError, match="nonlinearity"):
        F.rnn_forward(p["x"], p["h0"], p["Wx"], p["Wh"], p["b"], "softsign", backend=backend)


@pytest.mark.parametrize("cell", KINDS)
def test_functional_bad_arguments(cell, dtype):
    backend = default_backend(cell)
    p = problem(cell, dtype)
    with pytest.raises(ValueError, match="backend"):
        f_forward(cell, p, "cuda")
    for name in param_names(cell)[2:]:               # the biases: b (and b_hn)
        with pytest.raises(TypeError, match=rf"\b{name}\b"):
            f_forward(cell, dict(p, **{name: None}), backend)
    with pytest.raises(ValueError, match=r"\bWx\b"):
        f_forward(cell, dict(p, Wx=p["Wx"][:, :-1]), backend)
    with pytest.raises(ValueError, match=r"\bWh\b"):
        f_forward(cell, dict(p, Wh=p["Wh"][:-1]), backend)
    for name in param_names(cell)[2:]:
        expected = cells.get(cell).param_shapes(D, H)[name]
        for bad in (p[name][:-1], p[name][None], np.zeros(expected[0] + 1)):
            with pytest.raises(ValueError) as info:
                f_forward(cell, dict(p, **{name: bad}), backend)
            assert_names(str(info.value), name, shape_str(expected),
                         "got shape " + shape_str(bad.shape))
