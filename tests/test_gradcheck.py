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

from conftest import random_problem
from test_parity import backward, forward

B, T, D, H = 2, 4, 3, 5
STEP = 1e-6
# central differences: truncation ~STEP**2 * |L'''| ~ 1e-12, rounding ~1e-16 * |L| / STEP
# ~ 1e-9 for |L| ~ 10; so 1e-6 relative with an absolute floor of 1e-8
FD_RTOL, FD_ATOL = 1e-6, 1e-8

CELLS = [("rnn", "tanh"), ("rnn", "relu"), ("lstm", None)]
CELL_IDS = ["rnn-tanh", "rnn-relu", "lstm"]
# which terms the loss has: (dout given, which final-state gradients are given)
TERMS = {"all": (True, "hc"), "no-dout": (False, "hc"), "no-dstate": (True, "")}
SEEDS = {"rnn": 1, "lstm": 2}


def problem(cell, batch_first):
    return random_problem(cell, B, T, D, H, np.float64, batch_first=batch_first,
                          seed=SEEDS[cell])


def inputs_of(cell):
    return ("x", "h0", "Wx", "Wh", "b") + (("c0",) if cell == "lstm" else ())


def loss(cell, nl, q, batch_first, terms):
    """L = sum(out * dout) + sum(h_n * dh_n) + sum(c_n * dc_n), the given terms only."""
    dout, dstates = TERMS[terms]
    out, finals, _ = forward(cell, nl, q, "numpy", batch_first=batch_first, training=False)
    total = float(np.sum(out * q["dout"])) if dout else 0.0
    for value, name in zip(finals, "hc"):
        if name in dstates:
            total += float(np.sum(value * q[f"d{name}_n"]))
    return total


@functools.lru_cache(maxsize=None)
def numerical_gradients(cell, nl, batch_first, terms):
    """dL/d(every input) by central differences of the twin's forward."""
    p = problem(cell, batch_first)
    grads = {}
    for name in inputs_of(cell):
        q = {k: v.copy() for k, v in p.items()}
        g = np.empty_like(p[name])
        for i in np.ndindex(g.shape):
            q[name][i] = p[name][i] + STEP
            up = loss(cell, nl, q, batch_first, terms)
            q[name][i] = p[name][i] - STEP
            down = loss(cell, nl, q, batch_first, terms)
            q[name][i] = p[name][i]
            g[i] = (up - down) / (2 * STEP)
        grads["d" + name] = g
    return grads


def analytic_gradients(cell, nl, batch_first, terms, backend):
    p = problem(cell, batch_first)
    dout, dstates = TERMS[terms]
    _, _, ws = forward(cell, nl, p, backend, batch_first=batch_first)
    return backward(cell, nl, p, ws, backend, batch_first=batch_first, dout=dout,
                    dstates=dstates)


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
    out, _, _ = forward("rnn", "relu", p, "numpy", batch_first=batch_first)
    tm = (lambda a: a.transpose(1, 0, 2)) if batch_first else (lambda a: a)
    xs, hs = tm(p["x"]), tm(out)
    h_prev = np.concatenate([p["h0"][None], hs[:-1]])
    pre = xs @ p["Wx"] + h_prev @ p["Wh"] + p["b"]
    np.testing.assert_allclose(np.maximum(pre, 0), hs, rtol=1e-12, atol=1e-14)  # they are right
    assert np.abs(pre).min() > 1e-4
    assert (pre > 0).mean() > 0.25
