"""The products the compiled kernels skip, and that skipping them changes no result.

- A zero start (no initial state, or zeros): step 0's h_{-1} @ Wh in the forward (batches
  of at least ZERO_START_MIN_ROWS = 4 rows) and step 0's rows of dWh = h_prev.T @ dGh in
  the backward (at least ZERO_START_MIN_WORK = 2^15 multiply-adds). Both are zero, unless
  Wh (forward) or dGh at step 0 (backward) hold inf or NaN: then 0 * inf = NaN, which the
  twin (and PyTorch) give and so must the kernels.
- ``backward(..., input_grad=False)`` (layers and rnnfast.functional): no dx products (dx
  None); and a layer's backward makes no dh0 product when the forward had no initial state
  (dh0 None, as always then).

Each test fails if the skip ignores its condition: a skipped product that should have made
NaN leaves finite values where the twin has NaN; a skipped dx or dh0 that something else
depended on changes the weight gradients, compared bit for bit here.
"""
import numpy as np
import pytest

from rnnfast import functional as F
from cells_for_tests import (
    COMPILED,
    KIND_BACKENDS,
    kernel_backward,
    kernel_forward,
    make_layer,
    param_names,
    problem_states,
    random_problem,
    state_arg,
    state_names,
)

# the skips apply: B >= 4 rows (the forward's) and B * H * H >= 2^15 multiply-adds (dWh's)
B, T, D, H = 8, 5, 3, 64


def _x(dtype, batch=B, steps=T, seed=1):
    return np.random.default_rng(seed).standard_normal((batch, steps, D)).astype(dtype)


def _fwd_bwd(layer, x, dout, states=None, **backward_kw):
    kind = layer._spec.kind
    out, _ = layer(x, state_arg(kind, states) if states is not None else None)
    dx, _ = layer.backward(dout, **backward_kw)
    return out, dx, {k: g.copy() for k, g in layer.grads.items()}


def _same_nonfinite_pattern(a, r, what):
    for test in (np.isnan, np.isposinf, np.isneginf):
        np.testing.assert_array_equal(test(a), test(r), err_msg=f"{what}: {test.__name__}")
    fin = np.isfinite(a)
    np.testing.assert_allclose(a[fin], r[fin], rtol=1e-4, atol=1e-5, err_msg=what)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cell", COMPILED)
@pytest.mark.parametrize("fill", [np.nan, np.inf])
@pytest.mark.filterwarnings("ignore::RuntimeWarning")      # the twin's NumPy on inf - inf
def test_zero_start_with_a_nonfinite_wh_is_nan_as_in_the_twin(cell, dtype, fill):
    """Wh[0, 0] non-finite and no initial state: 0 * Wh makes NaN at step 0 in the gate
    column of Wh[:, 0], so step 0's product cannot be skipped. The compiled result has the
    twin's non-finite pattern (outputs and every gradient)."""
    x = _x(dtype)
    dout = np.ones((B, T, H), dtype)
    res = {}
    for backend in ("cython", "numpy"):
        layer = make_layer(cell, D, H, dtype=dtype, backend=backend, seed=4)
        layer.params["Wh"][0, 0] = fill
        res[backend] = _fwd_bwd(layer, x, dout)
    (out, dx, g), (out_r, dx_r, g_r) = res["cython"], res["numpy"]
    assert not np.isfinite(out[:, 0]).all()             # NaN from step 0 on
    _same_nonfinite_pattern(out, out_r, "out")
    _same_nonfinite_pattern(dx, dx_r, "dx")
    for k in g:
        _same_nonfinite_pattern(g[k], g_r[k], k)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cell", COMPILED)
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_zero_start_with_a_nonfinite_step0_gradient_is_nan_in_dwh(cell, dtype):
    """An inf in dout at step 0 only (one row): dG is non-finite at step 0 and finite after
    it (gradients flow back in time), so dWh's step-0 term 0 * inf = NaN is the only
    non-finite one: skipping step 0's rows of dWh would hide it."""
    x = _x(dtype)
    dout = np.random.default_rng(2).standard_normal((B, T, H)).astype(dtype)
    dout[1, 0, 0] = np.inf
    res = {}
    for backend in ("cython", "numpy"):
        layer = make_layer(cell, D, H, dtype=dtype, backend=backend, seed=4)
        res[backend] = _fwd_bwd(layer, x, dout)
    (out, dx, g), (out_r, dx_r, g_r) = res["cython"], res["numpy"]
    assert np.isnan(g_r["Wh"]).any()                    # the twin's: the term is there
    for k in g:
        _same_nonfinite_pattern(g[k], g_r[k], k)
    _same_nonfinite_pattern(dx, dx_r, "dx")
    _same_nonfinite_pattern(out, out_r, "out")


@pytest.mark.parametrize("cell", COMPILED)
@pytest.mark.parametrize("steps", [1, 2])
def test_zero_start_of_one_or_two_steps_matches_the_twin(cell, steps):
    """One step from a zero start: all of dWh's rows are step 0's, so dWh is zero; two
    steps: dWh is step 1's rows alone."""
    x = _x(np.float64, steps=steps)
    dout = np.random.default_rng(5).standard_normal((B, steps, H))
    res = {}
    for backend in ("cython", "numpy"):
        layer = make_layer(cell, D, H, dtype=np.float64, backend=backend, seed=4)
        res[backend] = _fwd_bwd(layer, x, dout)
    (out, dx, g), (out_r, dx_r, g_r) = res["cython"], res["numpy"]
    if steps == 1:
        np.testing.assert_array_equal(g["Wh"], 0)
    np.testing.assert_allclose(out, out_r, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(dx, dx_r, rtol=1e-12, atol=1e-13)
    for k in g:
        np.testing.assert_allclose(g[k], g_r[k], rtol=1e-12, atol=1e-13, err_msg=k)


@pytest.mark.parametrize("cell", COMPILED)
def test_zero_start_equals_an_explicit_zero_state_and_a_tiny_one(cell):
    """h0 = None and h0 = zeros take the skip, h0 = 1e-30 (not zero) the product; the
    results agree to rounding, and None and zeros bit for bit."""
    x = _x(np.float64)
    dout = np.random.default_rng(6).standard_normal((B, T, H))
    n_states = len(state_names(cell))
    got = []
    for h0 in (None, 0.0, 1e-30):
        layer = make_layer(cell, D, H, dtype=np.float64, seed=4)
        states = None if h0 is None else (np.full((B, H), h0),) * n_states
        got.append(_fwd_bwd(layer, x, dout, states))
    for name, a, b in [("out", got[0][0], got[1][0]), ("dx", got[0][1], got[1][1])] + [
            (k, got[0][2][k], got[1][2][k]) for k in got[0][2]]:
        np.testing.assert_array_equal(a, b, err_msg=f"{name}: None vs zeros")
    for name, a, b in [("out", got[0][0], got[2][0]), ("dx", got[0][1], got[2][1])] + [
            (k, got[0][2][k], got[2][2][k]) for k in got[0][2]]:
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13, err_msg=f"{name}: tiny")


CONFIGS = [
    pytest.param(dict(num_layers=1, bidirectional=False), False, id="one"),
    pytest.param(dict(num_layers=1, bidirectional=False), True, id="one-lengths"),
    pytest.param(dict(num_layers=2, bidirectional=False), False, id="stacked"),
    pytest.param(dict(num_layers=1, bidirectional=True), False, id="bidirectional"),
    pytest.param(dict(num_layers=1, bidirectional=True), True, id="bidirectional-lengths"),
    pytest.param(dict(num_layers=2, bidirectional=True), True, id="stacked-bi-lengths"),
]


@pytest.mark.parametrize("cell,backend", KIND_BACKENDS)
@pytest.mark.parametrize("config,with_lengths", CONFIGS)
@pytest.mark.parametrize("with_state", [False, True])
def test_backward_without_input_grad_gives_the_same_gradients(cell, backend, config,
                                                              with_lengths, with_state):
    """``input_grad=False``: dx is None, the parameter gradients and the state gradients are
    those of the full backward, bit for bit, in every configuration and on both backends."""
    L = config["num_layers"] * (2 if config["bidirectional"] else 1)
    rng = np.random.default_rng(7)
    x = _x(np.float32)
    lengths = np.array([5, 2, 4, 1, 5, 3, 5, 1]) if with_lengths else None
    out_width = H * (2 if config["bidirectional"] else 1)
    dout = rng.standard_normal((B, T, out_width)).astype(np.float32)
    n_states = len(state_names(cell))
    shape = (L, B, H) if L > 1 else (B, H)
    states = tuple(rng.standard_normal(shape).astype(np.float32) for _ in range(n_states))
    dstates = tuple(rng.standard_normal(shape).astype(np.float32) for _ in range(n_states))
    results = []
    for input_grad in (True, False):
        layer = make_layer(cell, D, H, backend=backend, seed=8, **config)
        out, _ = layer(x, state_arg(cell, states) if with_state else None, lengths=lengths)
        dx, d0 = layer.backward(dout, state_arg(cell, dstates), input_grad=input_grad)
        results.append((out, dx, d0, {k: g.copy() for k, g in layer.grads.items()}))
    (out, dx, d0, g), (out_n, dx_n, d0_n, g_n) = results
    assert dx is not None and dx_n is None
    np.testing.assert_array_equal(out, out_n)
    d0, d0_n = (d0, d0_n) if n_states == 2 else ((d0,), (d0_n,))
    for a, b in zip(d0, d0_n):
        assert (a is None) == (not with_state) and (b is None) == (not with_state)
        if a is not None:
            np.testing.assert_array_equal(a, b)
    assert g.keys() == g_n.keys()
    for k in g:
        np.testing.assert_array_equal(g[k], g_n[k], err_msg=k)


@pytest.mark.parametrize("cell,backend", KIND_BACKENDS)
@pytest.mark.parametrize("with_state", [False, True])
def test_functional_backward_without_input_grad(cell, backend, with_state):
    """rnnfast.functional's ``*_backward(..., input_grad=False)``: dx None, every other
    result that of the full backward, bit for bit."""
    p = random_problem(cell, B, T, D, H, np.float32, seed=9)
    if not with_state:
        p.update(h0=None, c0=None)
    weights = tuple(p[n] for n in param_names(cell))
    results = []
    for input_grad in (True, False):
        _, _, ws = kernel_forward(F, cell, p["x"], problem_states(cell, p), weights,
                                  backend=backend)
        results.append(kernel_backward(F, cell, p["dout"], problem_states(cell, p, "d", "_n"),
                                       p["x"], p["Wx"], p["Wh"], ws, backend=backend,
                                       input_grad=input_grad))
    (dx, d0, g), (dx_n, d0_n, g_n) = results
    assert dx is not None and dx_n is None
    for a, b in zip(d0 + g, d0_n + g_n, strict=True):
        np.testing.assert_array_equal(a, b)
