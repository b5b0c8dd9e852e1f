"""Every gradient against central finite differences of the forward, in float64.

The scalar loss is ``L = sum(out * dout) + sum(h_n * dh_n) (+ sum(c_n * dc_n))`` with
random ``dout``, ``dh_n``, ``dc_n``, so ``backward(dout, dh_n, dc_n)`` must return
dL/dx, dL/dh0, dL/dc0, dL/dWx, dL/dWh, dL/db (and the GRU's dL/db_hn). The finite
differences perturb each entry of each input by +-STEP and evaluate the twin's forward
(``backend="numpy"``, the readable oracle); the analytic gradients of every backend that
runs the cell (``cells_for_tests.KIND_BACKENDS``) are compared with them.
"""
import functools

import numpy as np
import pytest

from rnnfast import cells
from cells_for_tests import (
    KIND_BACKENDS,
    backward,
    forward,
    param_names,
    random_problem,
    state_names,
)

B, T, D, H = 2, 4, 3, 5
STEP = 1e-6
# central differences: truncation ~STEP**2 * |L'''| ~ 1e-12, rounding ~1e-16 * |L| / STEP
# ~ 1e-9 for |L| ~ 10; so 1e-6 relative with an absolute floor of 1e-8
FD_RTOL, FD_ATOL = 1e-6, 1e-8

# which terms the loss has: (dout given, which final-state gradients are given)
TERMS = {"all": (True, "hc"), "no-dout": (False, "hc"), "no-dstate": (True, "")}
SEEDS = {"rnn": 1, "lstm": 2, "gru": 3}        # per family (the kinds of a family share one)
# weights U(-scale, scale), default 1/sqrt(H). The sigmoid's derivative is at most 1/4, so
# with the default scale dL/dh0 of the no-dout loss shrinks to ~2e-4 over the T steps,
# under the non-vacuity bound below; with weights in +-2 it stays near 1e-2.
SCALES = {"rnn_sigmoid": 2.0}


def problem(cell, batch_first):
    return random_problem(cell, B, T, D, H, np.float64, batch_first=batch_first,
                          seed=SEEDS[cells.get(cell).family], scale=SCALES.get(cell))


def inputs_of(cell):
    """x, h0, every parameter (and c0)."""
    states = tuple(n + "0" for n in state_names(cell))
    return ("x", states[0]) + param_names(cell) + states[1:]


def loss(cell, q, batch_first, terms):
    """L = sum(out * dout) + sum(h_n * dh_n) + sum(c_n * dc_n), the given terms only."""
    dout, dstates = TERMS[terms]
    out, finals, _ = forward(cell, q, "numpy", batch_first=batch_first, training=False)
    total = float(np.sum(out * q["dout"])) if dout else 0.0
    for value, name in zip(finals, "hc"):
        if name in dstates:
            total += float(np.sum(value * q[f"d{name}_n"]))
    return total


@functools.lru_cache(maxsize=None)
def numerical_gradients(cell, batch_first, terms):
    """dL/d(every input) by central differences of the twin's forward."""
    p = problem(cell, batch_first)
    grads = {}
    for name in inputs_of(cell):
        q = {k: v.copy() for k, v in p.items()}
        g = np.empty_like(p[name])
        for i in np.ndindex(g.shape):
            q[name][i] = p[name][i] + STEP
            up = loss(cell, q, batch_first, terms)
            q[name][i] = p[name][i] - STEP
            down = loss(cell, q, batch_first, terms)
            q[name][i] = p[name][i]
            g[i] = (up - down) / (2 * STEP)
        grads["d" + name] = g
    return grads


def analytic_gradients(cell, batch_first, terms, backend):
    p = problem(cell, batch_first)
    dout, dstates = TERMS[terms]
    _, _, ws = forward(cell, p, backend, batch_first=batch_first)
    return backward(cell, p, ws, backend, batch_first=batch_first, dout=dout,
                    dstates=dstates)


@pytest.mark.parametrize("terms", TERMS)
@pytest.mark.parametrize("batch_first", [True, False], ids=["batch_first", "time_major"])
@pytest.mark.parametrize("cell,backend", KIND_BACKENDS)
def test_gradients_match_finite_differences(cell, batch_first, terms, backend):
    numeric = numerical_gradients(cell, batch_first, terms)
    analytic = analytic_gradients(cell, batch_first, terms, backend)
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
    p = problem("rnn_relu", batch_first)
    out, _, _ = forward("rnn_relu", p, "numpy", batch_first=batch_first)
    tm = (lambda a: a.transpose(1, 0, 2)) if batch_first else (lambda a: a)
    xs, hs = tm(p["x"]), tm(out)
    h_prev = np.concatenate([p["h0"][None], hs[:-1]])
    pre = xs @ p["Wx"] + h_prev @ p["Wh"] + p["b"]
    np.testing.assert_allclose(np.maximum(pre, 0), hs, rtol=1e-12, atol=1e-14)  # they are right
    assert np.abs(pre).min() > 1e-4
    assert (pre > 0).mean() > 0.25
