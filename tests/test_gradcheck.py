"""Every gradient against central finite differences of the forward, in float64.

The scalar loss is ``L = sum(out * dout) + sum(h_n * dh_n) (+ sum(c_n * dc_n))`` with
random ``dout``, ``dh_n``, ``dc_n``, so ``backward(dout, dh_n, dc_n)`` must return
dL/dx, dL/dh0, dL/dc0, dL/dWx, dL/dWh, dL/db. The finite differences perturb each
entry of each input by +-STEP and evaluate the twin's forward (``backend="numpy"``,
the readable oracle); both backends' analytic gradients are compared with them.
"""
import functools

import numpy as np
import pytest

from rnnfast import functional as F

from conftest import random_problem

B, T, D, H = 2, 4, 3, 5
STEP = 1e-6
# central differences: truncation ~STEP**2 * |L'''| ~ 1e-12, rounding ~1e-16 * |L| / STEP
# ~ 1e-9 for |L| ~ 10; so 1e-6 relative with an absolute floor of 1e-8
FD_RTOL, FD_ATOL = 1e-6, 1e-8

CELLS = [("rnn", "tanh"), ("rnn", "relu"), ("lstm", None)]
CELL_IDS = ["rnn-tanh", "rnn-relu", "lstm"]
# which terms the loss has: everything, no output term (dout None), no final-state terms
TERMS = ["all", "no-dout", "no-dstate"]
SEEDS = {"rnn": 1, "lstm": 2}


def problem(cell, batch_first):
    return random_problem(cell, B, T, D, H, np.float64, batch_first=batch_first,
                          seed=SEEDS[cell])


def inputs_of(cell):
    return ("x", "h0", "Wx", "Wh", "b") + (("c0",) if cell == "lstm" else ())


def loss_weights(cell, p, terms):
    """(dout, dh_n, dc_n) of the loss; None for the absent terms."""
    dout = None if terms == "no-dout" else p["dout"]
    if terms == "no-dstate":
        return dout, None, None
    return dout, p["dh_n"], (p["dc_n"] if cell == "lstm" else None)


def forward(cell, nl, q, batch_first, backend="numpy", training=False):
    if cell == "rnn":
        out, h_n, ws = F.rnn_forward(q["x"], q["h0"], q["Wx"], q["Wh"], q["b"], nl,
                                     batch_first, training, backend=backend)
        return out, (h_n,), ws
    out, h_n, c_n, ws = F.lstm_forward(q["x"], q["h0"], q["c0"], q["Wx"], q["Wh"], q["b"],
                                       batch_first, training, backend=backend)
    return out, (h_n, c_n), ws


def loss(cell, nl, q, batch_first, weights):
    out, finals, _ = forward(cell, nl, q, batch_first)
    total = 0.0
    for value, w in zip((out,) + finals, weights):
        if w is not None:
            total += float(np.sum(value * w))
    return total


@functools.lru_cache(maxsize=None)
def numerical_gradients(cell, nl, batch_first, terms):
    """dL/d(every input) by central differences of the twin's forward."""
    p = problem(cell, batch_first)
    weights = loss_weights(cell, p, terms)
    grads = {}
    for name in inputs_of(cell):
        q = {k: v.copy() for k, v in p.items()}
        g = np.empty_like(p[name])
        for i in np.ndindex(g.shape):
            q[name][i] = p[name][i] + STEP
            up = loss(cell, nl, q, batch_first, weights)
            q[name][i] = p[name][i] - STEP
            down = loss(cell, nl, q, batch_first, weights)
            q[name][i] = p[name][i]
            g[i] = (up - down) / (2 * STEP)
        grads["d" + name] = g
    return grads


def analytic_gradients(cell, nl, batch_first, terms, backend):
    p = problem(cell, batch_first)
    dout, dh_n, dc_n = loss_weights(cell, p, terms)
    _, _, ws = forward(cell, nl, p, batch_first, backend=backend, training=True)
    if cell == "rnn":
        dx, dh0, dWx, dWh, db = F.rnn_backward(dout, dh_n, p["x"], p["Wx"], p["Wh"], ws, nl,
                                               batch_first, backend=backend)
        return dict(dx=dx, dh0=dh0, dWx=dWx, dWh=dWh, db=db)
    dx, dh0, dc0, dWx, dWh, db = F.lstm_backward(dout, dh_n, dc_n, p["x"], p["Wx"], p["Wh"],
                                                 ws, batch_first, backend=backend)
    return dict(dx=dx, dh0=dh0, dc0=dc0, dWx=dWx, dWh=dWh, db=db)


@pytest.mark.parametrize("terms", TERMS)
@pytest.mark.parametrize("batch_first", [True, False], ids=["batch_first", "time_major"])
@pytest.mark.parametrize("cell,nl", CELLS, ids=CELL_IDS)
def test_gradients_match_finite_differences(cell, nl, batch_first, terms, backend):
    numeric = numerical_gradients(cell, nl, batch_first, terms)
    analytic = analytic_gradients(cell, nl, batch_first, terms, backend)
    assert analytic.keys() == numeric.keys()
    for name, want in numeric.items():
        assert np.abs(want).max() > 1e-3, f"{name}: the check would be vacuous"
        np.testing.assert_allclose(analytic[name], want, rtol=FD_RTOL, atol=FD_ATOL,
                                   err_msg=f"{name} ({backend})")


@pytest.mark.parametrize("batch_first", [True, False], ids=["batch_first", "time_major"])
def test_relu_problem_is_differentiable(batch_first):
    """The relu checks are only valid away from the kink: every pre-activation of the
    problem is far from 0 compared with what a STEP perturbation can move it, and enough
    units are active that the check is not vacuous."""
    p = problem("rnn", batch_first)
    out, _, _ = forward("rnn", "relu", p, batch_first)
    tm = (lambda a: a.transpose(1, 0, 2)) if batch_first else (lambda a: a)
    xs, hs = tm(p["x"]), tm(out)
    h_prev = np.concatenate([p["h0"][None], hs[:-1]])
    pre = xs @ p["Wx"] + h_prev @ p["Wh"] + p["b"]
    np.testing.assert_allclose(np.maximum(pre, 0), hs, rtol=1e-12, atol=1e-14)  # they are right
    assert np.abs(pre).min() > 1e-4
    assert (pre > 0).mean() > 0.25
