"""Hostile inputs: a clean Python exception or a defined result, never a crash, and a layer
that failed a call is exactly as it was before it (params, grads, BPTT cache).

"Defined result" means: the result of the same call on the plain array the input stands
for (a list, another dtype, a masked array's data, a matrix's 2-D array), or, for NaN/Inf,
the twin's result, NaN for NaN and Inf for Inf at the same places.

Huge sizes run in a child process whose address space is capped (RLIMIT_AS): there an
attempt to allocate a huge copy shows up as a MemoryError instead of memory really being
taken, so the tests can insist on the *early* ValueError without any risk to the machine.
"""
import json
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

from rnnfast import cells
from rnnfast import functional as F
import cells_for_tests as reg
from cells_for_tests import (
    COMPILED,
    KIND_BACKENDS,
    KINDS,
    kernel_backward,
    kernel_forward,
    param_names,
    state_names,
)

B, T, D, H = 2, 4, 3, 5


def make_layer(cell, backend, dtype=np.float32):
    return reg.make_layer(cell, D, H, dtype=dtype, backend=backend, seed=7)


def n_states(cell):
    return len(state_names(cell))


def clean_x(dtype=np.float32):
    return np.random.default_rng(3).standard_normal((B, T, D)).astype(dtype)


def layer_state(layer):
    """Everything a failed call must leave alone: params and grads (values and the very
    arrays), and the BPTT cache."""
    return ({k: (v, v.copy()) for k, v in layer.params.items()},
            {k: (v, v.copy()) for k, v in layer.grads.items()},
            layer._cache, layer.training)


def assert_same_state(layer, state):
    params, grads, cache, training = state
    assert layer.params.keys() == params.keys() and layer.grads.keys() == grads.keys()
    for store, saved in ((layer.params, params), (layer.grads, grads)):
        for k, (arr, copy) in saved.items():
            assert store[k] is arr, f"{k} was replaced"
            np.testing.assert_array_equal(arr, copy, err_msg=f"{k} was modified")
    assert layer._cache is cache, "the BPTT cache changed"
    assert layer.training == training


class RaisesInArray:
    """An object whose conversion to an array raises its own error."""

    def __array__(self, dtype=None, copy=None):
        raise RuntimeError("conversion refused")


class HugeLength:
    """A sequence that claims 2**40 elements."""

    def __len__(self):
        return 2**40

    def __getitem__(self, i):
        return 1.0


def _masked():
    x = clean_x()
    return np.ma.masked_array(x, mask=x > 0)


def _matrix(a):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        return np.matrix(a)


# x inputs that must be refused: (id, value, exception type)
BAD_X = [
    ("python-scalar", 1.0, ValueError),
    ("numpy-0d", np.float32(1.0), ValueError),
    ("1d", np.zeros(D), ValueError),
    ("2d", np.zeros((T, D)), ValueError),
    ("4d", np.zeros((1, B, T, D)), ValueError),
    ("matrix", _matrix(np.zeros((T, D))), ValueError),
    ("batch-0", np.zeros((0, T, D)), ValueError),
    ("features-0", np.zeros((B, T, 0)), ValueError),
    ("wrong-features", np.zeros((B, T, D + 1)), ValueError),
    ("ragged-list", [[[1.0, 2.0, 3.0]], [[1.0, 2.0]]], TypeError),
    ("None", None, TypeError),
    ("str", "abc", TypeError),
    ("bytes", b"abc", TypeError),
    ("dict", {"x": 1}, TypeError),
    ("set", {1.0, 2.0}, TypeError),
    ("generator", (v for v in range(3)), TypeError),
    ("object-array", clean_x().astype(object), TypeError),
    ("complex", clean_x().astype(complex), TypeError),
    ("datetime", np.zeros((B, T, D), "M8[s]"), TypeError),
    ("timedelta", np.zeros((B, T, D), "m8[s]"), TypeError),
    ("structured", np.zeros((B, T, D), dtype=[("a", "f4")]), TypeError),
    ("python-bigint", [[[2**70] * D] * T] * B, TypeError),
    ("huge-len", HugeLength(), MemoryError),
    ("own-error", RaisesInArray(), RuntimeError),   # the object's own error, unchanged
]

# x inputs with a defined result: (id, value, the plain array it stands for)
GOOD_X = [
    ("list", clean_x().tolist(), clean_x()),
    ("float64", clean_x().astype(np.float64), clean_x()),
    ("float16", clean_x().astype(np.float16), clean_x().astype(np.float16)),
    ("longdouble", clean_x().astype(np.longdouble), clean_x()),
    ("int64", (clean_x() * 3).astype(np.int64), (clean_x() * 3).astype(np.int64)),
    ("uint8", (np.abs(clean_x()) * 3).astype(np.uint8), (np.abs(clean_x()) * 3).astype(np.uint8)),
    ("bool", clean_x() > 0, clean_x() > 0),
    ("big-endian", clean_x().astype(">f4"), clean_x()),
    ("masked-array", _masked(), _masked().data),      # the mask is ignored: the data count
    ("ndarray-subclass", clean_x().view(type("Sub", (np.ndarray,), {})), clean_x()),
    ("broadcast-view", np.broadcast_to(clean_x()[:1], (B, T, D)),
     np.ascontiguousarray(np.broadcast_to(clean_x()[:1], (B, T, D)))),
]


@pytest.mark.parametrize("cell,backend", KIND_BACKENDS)
@pytest.mark.parametrize("name,value,exc", BAD_X, ids=[c[0] for c in BAD_X])
def test_bad_x_is_a_clean_error_and_layer_unchanged(backend, cell, name, value, exc):
    layer = make_layer(cell, backend)
    out, _ = layer(clean_x())                       # a cache from a good forward
    state = layer_state(layer)
    with pytest.raises(exc):
        layer(value)
    assert_same_state(layer, state)
    # the layer still works, on the cache of the good forward
    dx, _ = layer.backward(np.ones_like(out))
    assert np.isfinite(dx).all()


@pytest.mark.parametrize("cell,backend", KIND_BACKENDS)
@pytest.mark.parametrize("name,value,plain", GOOD_X, ids=[c[0] for c in GOOD_X])
def test_convertible_x_gives_the_plain_result(backend, cell, name, value, plain):
    layer = make_layer(cell, backend)
    got = layer(value)[0]
    got_dx = layer.backward(np.ones_like(got))[0]
    want = layer(plain.astype(np.float32))[0]
    want_dx = layer.backward(np.ones_like(want))[0]
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got_dx, want_dx)


@pytest.mark.parametrize("cell", COMPILED)
@pytest.mark.parametrize("fill", [np.nan, np.inf, -np.inf])
@pytest.mark.filterwarnings("ignore::RuntimeWarning")      # the twin's NumPy warns on inf-inf
def test_nan_inf_propagate_like_the_twin(dtype, cell, fill):
    """A non-finite input is no error: both backends give the same non-finite pattern."""
    x = clean_x(dtype)
    x[0, 1, :] = fill                           # one batch row, from step 1 on
    res = {}
    for backend in ("cython", "numpy"):
        layer = make_layer(cell, backend, dtype)
        out, _ = layer(x)
        dx, _ = layer.backward(np.ones_like(out))
        res[backend] = (out, dx, {k: g.copy() for k, g in layer.grads.items()})
    (out, dx, g), (out_r, dx_r, g_r) = res["cython"], res["numpy"]
    # the other batch row never sees the bad input: finite
    assert np.isfinite(out[1]).all() and np.isfinite(out[0, :1]).all()
    assert not np.isfinite(out[0, 1:]).all() or (cell != "rnn_tanh" or fill != fill)
    for a, r in [(out, out_r), (dx, dx_r)] + [(g[k], g_r[k]) for k in g]:
        np.testing.assert_array_equal(np.isnan(a), np.isnan(r))
        np.testing.assert_array_equal(np.isposinf(a), np.isposinf(r))
        np.testing.assert_array_equal(np.isneginf(a), np.isneginf(r))
        fin = np.isfinite(a)
        np.testing.assert_allclose(a[fin], r[fin], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cell,backend", KIND_BACKENDS)
@pytest.mark.parametrize("fill", [np.nan, np.inf, -np.inf])
@pytest.mark.filterwarnings("ignore::RuntimeWarning")      # the twin's NumPy warns on inf-inf
def test_nan_inf_stay_in_their_batch_row(backend, dtype, cell, fill):
    """On every backend that runs the cell: a non-finite input is no error, the other batch
    row and the steps before it stay finite, NaN comes out as NaN from its step on, and
    the other row's input gradient stays finite (the weight gradients mix rows)."""
    x = clean_x(dtype)
    x[0, 1, :] = fill
    layer = make_layer(cell, backend, dtype)
    out, _ = layer(x)
    dx, _ = layer.backward(np.ones_like(out))
    assert np.isfinite(out[1]).all() and np.isfinite(out[0, :1]).all()
    assert np.isfinite(dx[1]).all()
    if fill != fill:
        assert np.isnan(out[0, 1:]).all()


@pytest.mark.parametrize("cell", KINDS)
@pytest.mark.parametrize("fill", [np.nan])
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_nonfinite_weight_propagates_and_no_state_means_zeros(dtype, cell, fill):
    """A NaN/Inf in Wh: no crash, non-finite results, the same pattern on both backends
    (where both run the cell).

    And h0=None means a zero initial state (the documented contract of every kernel),
    so it must give exactly the result of an explicit zero h0 (and c0): with a
    non-finite Wh, 0 * NaN = 0 * Inf = NaN already at step 0."""
    res = {}
    for backend in reg.backends_for(cell):
        layer = make_layer(cell, backend, dtype)
        layer.params["Wh"][0, 0] = fill
        zeros = np.zeros((B, H), dtype)
        explicit = reg.state_arg(cell, (zeros,) * n_states(cell))
        out0, _ = layer(clean_x(dtype), explicit)
        assert np.isnan(out0[:, 0]).any()           # 0 * fill is NaN at step 0
        out, _ = layer(clean_x(dtype))
        layer.backward(np.ones_like(out))           # no crash on the way back either
        np.testing.assert_array_equal(
            out, out0, err_msg=f"{backend}: h0=None differs from an explicit zero h0")
        res[backend] = out0
    if len(res) == 2:
        np.testing.assert_array_equal(np.isnan(res["cython"]), np.isnan(res["numpy"]))


@pytest.mark.parametrize("cell,backend", KIND_BACKENDS)
def test_empty_sequence_is_defined(backend, cell):
    layer = make_layer(cell, backend)
    h0 = np.full((B, H), 0.25, np.float32)
    state = reg.state_arg(cell, (h0, h0 * 2)[:n_states(cell)])
    out, s = layer(np.zeros((B, 0, D), np.float32), state)
    assert out.shape == (B, 0, H)
    h_n = reg.as_states(cell, s)[0]
    np.testing.assert_array_equal(h_n, h0)
    dstate = reg.state_arg(cell, (h0, h0)[:n_states(cell)])
    dx, ds = layer.backward(np.zeros((B, 0, H), np.float32), dstate)
    assert dx.shape == (B, 0, D)
    np.testing.assert_array_equal(reg.as_states(cell, ds)[0], h0)
    for g in layer.grads.values():
        np.testing.assert_array_equal(g, 0)


def _bad_states(cell):
    good = np.zeros((B, H), np.float32)
    bad = [("wrong-shape", np.zeros((B, H + 1)), ValueError),
           ("transposed", np.zeros((H, B)), ValueError),
           ("3d", np.zeros((1, B, H)), ValueError),
           ("scalar", 0.0, ValueError),
           ("string", "zeros", TypeError),
           ("complex", np.zeros((B, H), complex), TypeError)]
    if n_states(cell) == 1:
        return bad
    # an LSTM state is a pair
    return ([(n, (v, good), e) for n, v, e in bad] + [(n + "-c", (good, v), e) for n, v, e in bad]
            + [("not-a-pair", good, TypeError), ("triple", (good, good, good), TypeError),
               ("stacked-array", np.zeros((2, B, H)), TypeError)])


@pytest.mark.parametrize("cell,backend", KIND_BACKENDS)
def test_bad_state_and_gradients_leave_the_layer_unchanged(backend, cell):
    layer = make_layer(cell, backend)
    out, _ = layer(clean_x())
    for _name, value, exc in _bad_states(cell):
        state = layer_state(layer)
        with pytest.raises(exc):
            layer(clean_x(), value)
        assert_same_state(layer, state)
        with pytest.raises(exc):
            layer.backward(np.ones_like(out), value)
        assert_same_state(layer, state)
    for bad_dout, exc in [(np.ones((B, T + 1, H)), ValueError), (np.ones((B, T)), ValueError),
                          ("ones", TypeError), (np.ones((B, T, H), complex), TypeError),
                          (_matrix(np.ones((T, H))), ValueError)]:
        state = layer_state(layer)
        with pytest.raises(exc):
            layer.backward(bad_dout)
        assert_same_state(layer, state)
    # the failures consumed nothing: backward on the cache of the good forward works and
    # equals the same forward/backward on a fresh layer
    dx, _ = layer.backward(np.ones_like(out))
    fresh = make_layer(cell, backend)
    fresh(clean_x())
    np.testing.assert_array_equal(dx, fresh.backward(np.ones_like(out))[0])
    for k in layer.grads:
        np.testing.assert_array_equal(layer.grads[k], fresh.grads[k])


@pytest.mark.parametrize("cell,backend", KIND_BACKENDS)
def test_bad_params_are_refused_and_not_modified(backend, cell):
    layer = make_layer(cell, backend)
    G = cells.get(cell).gates
    good = {k: v.copy() for k, v in layer.params.items()}
    cases = [("Wx", np.zeros((D + 1, G * H)), ValueError), ("Wx", np.zeros((D, G * H + 1)),
                                                           ValueError),
             ("Wh", np.zeros((H, H + 1)), ValueError), ("Wh", np.zeros((H + 1, G * (H + 1))),
                                                        ValueError),
             ("b", np.zeros(G * H + 1), ValueError), ("b", 0.0, ValueError),
             ("b", None, TypeError), ("Wx", None, TypeError), ("Wh", "weights", TypeError),
             ("Wx", np.zeros((D, G * H), complex), TypeError)]
    if "b_hn" in param_names(cell):
        cases += [("b_hn", np.zeros(H + 1), ValueError), ("b_hn", 0.0, ValueError),
                  ("b_hn", np.zeros(G * H), ValueError), ("b_hn", None, TypeError),
                  ("b_hn", "bias", TypeError), ("b_hn", np.zeros(H, complex), TypeError)]
    for key, value, exc in cases:
        layer.params[key] = value
        x = clean_x()
        x_copy = x.copy()
        with pytest.raises(exc):
            layer(x)
        np.testing.assert_array_equal(x, x_copy)
        for k, v in layer.params.items():      # the other params are left as they were
            if k != key:
                np.testing.assert_array_equal(v, good[k])
        layer.params[key] = good[key].copy()
    # params of another dtype or layout are used as the values they hold
    layer.params["Wx"] = np.asfortranarray(good["Wx"].astype(np.float64))
    out, _ = layer(clean_x())
    layer.params["Wx"] = good["Wx"]
    np.testing.assert_array_equal(out, layer(clean_x())[0])


@pytest.mark.parametrize("cell,backend", KIND_BACKENDS)
@pytest.mark.filterwarnings("ignore::DeprecationWarning")     # setting strides (NumPy 2.4)
def test_params_changed_in_place_after_a_call(backend, cell):
    """A layer may remember its checked params between calls, but shape, dtype and strides
    of the very same arrays can be set in place: that must be seen (an error, or the result
    for the values the arrays now hold), not trusted (LSTM Wh reshaped in place to
    PyTorch's (4H, H) layout used to corrupt the heap)."""
    G = cells.get(cell).gates
    x = clean_x()

    def fresh_with(Wh):
        layer = make_layer(cell, backend)
        layer.params["Wh"] = Wh
        return layer

    for change in ("shape", "resize", "dtype", "strides"):
        layer = make_layer(cell, backend)
        out, _ = layer(x)
        layer.backward(np.ones_like(out))                  # params checked, remembered
        w = layer.params["Wh"]
        if change == "shape":
            if G == 1:
                continue                                   # (H, H): no other shape
            w.shape = (G * H, H)
        elif change == "resize":
            w.resize((H, G * H - 1), refcheck=False)
        elif change == "dtype":
            w.dtype = np.int32                             # same itemsize, new meaning
        else:
            w.strides = (w.strides[0], 0)                  # every row one repeated value
        if change in ("shape", "resize"):
            with pytest.raises(ValueError, match="Wh"):
                layer(x)
            continue
        want = fresh_with(np.ascontiguousarray(w, dtype=np.float32))(x)[0]
        np.testing.assert_array_equal(layer(x)[0], want)


def test_backward_misuse_is_a_clean_error(backend):
    for cell in (k for k in KINDS if backend in reg.backends_for(k)):
        layer = make_layer(cell, backend)
        dout = np.ones((B, T, H), np.float32)
        with pytest.raises(ValueError):
            layer.backward(dout)                        # no forward yet
        layer(clean_x())
        layer.backward(dout)
        with pytest.raises(ValueError):
            layer.backward(dout)                        # the workspace was used
        layer.eval()(clean_x())
        with pytest.raises(ValueError):
            layer.backward(dout)                        # eval keeps no workspace


def _problem(cell, dtype=np.float32):
    rng = np.random.default_rng(0)
    p = dict(x=rng.standard_normal((B, T, D)).astype(dtype))
    for name, shape in cells.get(cell).param_shapes(D, H).items():
        p[name] = rng.uniform(-.4, .4, shape).astype(dtype)
    p["dout"] = rng.standard_normal((B, T, H)).astype(dtype)
    return p


def _fwd(cell, p, backend, **kw):
    return kernel_forward(F, cell, p["x"], (None,) * n_states(cell),
                          tuple(p[n] for n in param_names(cell)), backend=backend, **kw)


def _bwd(cell, p, ws, backend, **kw):
    dx, d0, dparams = kernel_backward(F, cell, p["dout"], (None,) * n_states(cell), p["x"],
                                      p["Wx"], p["Wh"], ws, backend=backend, **kw)
    return (dx,) + d0 + dparams


@pytest.mark.parametrize("cell,backend", KIND_BACKENDS)
def test_functional_hostile_arguments(backend, cell):
    p = _problem(cell)
    # forward without a bias: refused (the compiled core would dereference NULL)
    with pytest.raises(TypeError):
        _fwd(cell, dict(p, b=None), backend)
    for key in ("x",) + param_names(cell):
        with pytest.raises(TypeError):
            _fwd(cell, dict(p, **{key: None}), backend)
    with pytest.raises(ValueError):
        F.rnn_forward(p["x"], None, p["Wx"][:, :H], p["Wh"][:, :H], p["b"][:H], "softsign",
                      backend=backend)
    with pytest.raises(ValueError):
        _fwd(cell, p, "torch")
    ws = _fwd(cell, p, backend)[-1]
    # a workspace that is not one, or belongs to another call, is refused and not consumed
    for bad in ([1, 2], {"backend": backend}, None, "workspace"):
        with pytest.raises((TypeError, ValueError)):
            _bwd(cell, p, bad, backend)
    other = "numpy" if backend == "cython" else "cython"
    with pytest.raises(NotImplementedError if other not in reg.backends_for(cell)
                       else ValueError):
        _bwd(cell, p, ws, other)
    with pytest.raises(ValueError):
        _bwd(cell, p, ws, backend, batch_first=False)
    p64 = {k: v.astype(np.float64) for k, v in p.items()}
    with pytest.raises(ValueError, match="float32"):
        _bwd(cell, p64, ws, backend)                      # float32 workspace, float64 call
    with pytest.raises(ValueError):
        _bwd(cell, dict(p, dout=p["dout"][:, :-1]), ws, backend)
    same_family = reg.other_kind(cell, backend, family=False)   # another nonlinearity
    if same_family is not None:
        with pytest.raises(ValueError):
            _bwd(same_family, p, ws, backend)
    assert not ws.get("consumed")
    # after all that, the workspace still gives the gradients of a fresh forward
    got = _bwd(cell, p, ws, backend)
    want = _bwd(cell, p, _fwd(cell, p, backend)[-1], backend)
    for a, b in zip(got, want):
        if a is not None:
            np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError):
        _bwd(cell, p, ws, backend)                         # consumed now


@pytest.mark.parametrize("cell,backend", KIND_BACKENDS)
def test_tampered_workspace_is_refused_not_a_crash(backend, cell):
    """The workspace is a plain dict the caller holds. Replacing its arrays, or its dims to
    fit a longer x, must be a ValueError: the kernels index those arrays without bounds
    checks (a smaller 'gates' used to crash the process)."""
    p = _problem(cell)
    G = cells.get(cell).gates
    longer = dict(p, x=np.ones((B, 2 * T, D), np.float32),
                  dout=np.ones((B, 2 * T, H), np.float32))
    tamperings = [("gates", np.zeros((1, 1, 1), np.float32)), ("hs", np.zeros((1, 1, 1))),
                  ("cs", np.zeros((1, 1, 1), np.float32)), ("hs", None),
                  ("gates", np.zeros((T, B, G * H + 1), np.float32)),
                  ("hn", np.zeros((1, 1, 1), np.float32)), ("hn", None),
                  ("hn", np.zeros((T, B, G * H), np.float32)),
                  ("hgates", np.zeros((1, 1, 1), np.float32)), ("hgates", None),
                  ("hgates", np.zeros((T, B, G * H + 1), np.float32))]
    tested = set()
    for key, value in tamperings:
        ws = _fwd(cell, p, backend)[-1]
        if key not in ws or (key == "cs" and "c" not in state_names(cell)):
            continue                      # the twin's RNN keeps only hs; no RNN reads cs
        tested.add(key)
        ws[key] = value
        with pytest.raises(ValueError, match="workspace"):
            _bwd(cell, p, ws, backend)
    ws = _fwd(cell, p, backend)[-1]
    ws["dims"] = (B, 2 * T, H)                         # claims to fit the longer x
    with pytest.raises(ValueError, match="workspace"):
        _bwd(cell, longer, ws, backend)
    ws = _fwd(cell, p, backend)[-1]
    del ws["hs"]
    with pytest.raises(ValueError, match="workspace"):
        _bwd(cell, p, ws, backend)
    # every array this cell's workspace holds was tampered with
    assert tested == {k for k, v in _fwd(cell, p, backend)[-1].items()
                      if isinstance(v, np.ndarray)}


# ---------------------------------------------------------------------------- huge sizes

_HUGE_CHILD = textwrap.dedent("""
    import json, resource, sys
    cap = 3 * 2**30                      # 3 GiB of address space: a huge copy cannot happen
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    import numpy as np, rnnfast
    from rnnfast import functional as F
    backend = sys.argv[1]

    def big(shape, dtype=np.float32):
        return np.broadcast_to(np.zeros((), dtype), shape)      # no memory behind it

    rnn, lstm = rnnfast.RNN(1, 1, backend=backend), rnnfast.LSTM(1, 1, backend=backend)
    lstm_trained = rnnfast.LSTM(1, 1, backend=backend)
    lstm_trained(np.zeros((1, 1, 1), np.float32))
    w = np.zeros((1, 1), np.float32)
    cases = {
        "x rows beyond int32": lambda: rnn(big((2**16, 2**16, 1))),
        "x float64 into float32, rows beyond int32": lambda: lstm(big((2**16, 2**15, 1),
                                                                      np.float64)),
        "x batch beyond int32, seq_len 0": lambda: rnn(big((2**32, 0, 1))),
        "x wrong features, 8 GiB": lambda: rnn(big((2**15, 2**15, 2))),
        "h0 wrong shape, 16 GiB": lambda: rnn(np.zeros((1, 1, 1), np.float32),
                                             big((2**16, 2**16))),
        "lstm c0 wrong shape, 16 GiB": lambda: lstm(np.zeros((1, 1, 1), np.float32),
                                                    (np.zeros((1, 1)), big((2**16, 2**16)))),
        "dout wrong shape, 16 GiB": lambda: lstm_trained.backward(big((2**16, 2**16, 1))),
        "functional Wx wrong shape, 16 GiB": lambda: F.rnn_forward(
            np.zeros((1, 1, 1), np.float32), None, big((2**16, 2**16)), w, np.zeros(1),
            backend=backend),
        "RNN input_size beyond int32": lambda: rnnfast.RNN(2**31, 1, backend=backend),
        "LSTM 4*hidden beyond int32": lambda: rnnfast.LSTM(1, 2**29, backend=backend),
        "RNN hidden 2**20 (8 TiB of Wh)": lambda: rnnfast.RNN(1, 2**20, backend=backend),
    }
    from rnnfast import cells
    if backend == "numpy" or cells.get("gru").compiled:
        gru = rnnfast.GRU(1, 1, backend=backend)
        cases.update({
            "GRU x rows beyond int32": lambda: gru(big((2**16, 2**16, 1))),
            "GRU 3*hidden beyond int32": lambda: rnnfast.GRU(1, 2**30, backend=backend),
            "GRU h0 wrong shape, 16 GiB": lambda: gru(np.zeros((1, 1, 1), np.float32),
                                                     big((2**16, 2**16))),
            "functional GRU b_hn wrong shape, 16 GiB": lambda: F.gru_forward(
                np.zeros((1, 1, 1), np.float32), None, np.zeros((1, 3), np.float32),
                np.zeros((1, 3), np.float32), np.zeros(3, np.float32), big((2**34,)),
                backend=backend),
        })
    result = {}
    for name, call in cases.items():
        try:
            call()
            result[name] = "no error"
        except BaseException as e:
            result[name] = type(e).__name__ + ": " + str(e)[:200]
    # this process image's resident peak (ru_maxrss would include the forking parent's)
    with open("/proc/self/status") as f:
        peak = int(next(l for l in f if l.startswith("VmHWM:")).split()[1])    # KiB
    print(json.dumps({"result": result, "peak_kib": peak}))
""")


# AddressSanitizer maps terabytes of shadow memory, which an address-space cap forbids, and
# the child must run without it; but importing rnnfast loads the compiled core (rnnfast.optim
# takes its one-pass updates), which, built with ASan, refuses to load without its runtime
# first. So under ASan (docs/reliability.md) neither child runs: the normal runs cover them.
UNDER_ASAN = "asan" in os.environ.get("LD_PRELOAD", "")


@pytest.mark.skipif(UNDER_ASAN, reason="the child runs without ASan's runtime, which the "
                    "ASan-built core needs, and its shadow memory cannot live under RLIMIT_AS")
@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_huge_sizes_are_refused_before_allocating(backend, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "ASAN_OPTIONS")}
    # run from an empty directory: "python -c" puts the working directory first on
    # sys.path, and from the checkout that would be the source tree (no compiled module),
    # not the installed package under test
    proc = subprocess.run([sys.executable, "-c", _HUGE_CHILD, backend], capture_output=True,
                          text=True, timeout=120, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]      # no crash, no kill
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    res = report["result"]
    for name, outcome in res.items():
        if name == "RNN hidden 2**20 (8 TiB of Wh)":
            # fits 32-bit BLAS, but not in memory: NumPy's clean MemoryError
            assert outcome.startswith("MemoryError"), (name, outcome)
        else:
            # refused by validation, before any copy (under the cap a copy would have
            # been a MemoryError instead)
            assert outcome.startswith("ValueError"), (name, outcome)
    assert report["peak_kib"] < 1024 * 1024, report      # under 1 GiB resident at peak
