"""Extremes: very long sequences, saturated activations, denormal-range values.

- seq_len 10,000 forward + backward: finite on both backends and dtypes; float64 compiled
  == float64 twin within the usual tolerance; float32 compiled is as accurate as the
  float32 twin (both measured against the float64 twin), the weight gradients being sums
  over 20,000 rows where float32 tolerances made for short sums do not apply.
- inputs of magnitude 1e4: tanh is exactly +-1 (sigmoid 0/1), the LSTM gates exactly 0/1
  (g exactly +-1), so c is exactly f*c_prev + i*g and h exactly o*tanh(c); the GRU's r, z
  exactly 0/1 and n +-1, so h is exactly n or h_prev; every gradient through the saturated
  units is exactly 0; no NaN anywhere. (On every backend that runs the cell.)
- denormals: the compiled kernels flush them to zero while they run (FTZ/DAZ), and leave
  the caller's floating-point mode (MXCSR) as it was. The speed with denormal-range values
  is measured, not asserted, by bench/denormals.py (see docs/reliability.md).
"""
import threading

import numpy as np
import pytest

from rnnfast import _core, cells
from rnnfast import functional as F
import cells_for_tests as reg
from cells_for_tests import COMPILED, KIND_BACKENDS, KINDS, random_problem, result_names
from conftest import ATOL, RTOL

# compiled vs twin, and the compiled core's floating-point mode: the kinds it has
CELLS = COMPILED


def run(cell, p, backend):
    """Training forward + backward through the functional face; every result."""
    out, finals, ws = reg.kernel_forward(F, cell, p["x"], reg.problem_states(cell, p),
                                         tuple(p[n] for n in reg.param_names(cell)),
                                         backend=backend)
    dx, d0, dparams = reg.kernel_backward(F, cell, p["dout"],
                                          reg.problem_states(cell, p, "d", "_n"), p["x"],
                                          p["Wx"], p["Wh"], ws, backend=backend)
    return [out, *finals, dx, *d0, *dparams]


# ------------------------------------------------------------------------- long sequences

LONG_T = 10_000


@pytest.mark.parametrize("cell", CELLS)
def test_seq_len_10000_finite_and_accurate(cell):
    p64 = random_problem(cell, 2, LONG_T, 4, 8, np.float64, seed=0)
    p32 = {k: v.astype(np.float32) for k, v in p64.items()}
    truth = run(cell, p64, "numpy")
    got64 = run(cell, p64, "cython")
    got32 = run(cell, p32, "cython")
    twin32 = run(cell, p32, "numpy")
    eps32 = np.finfo(np.float32).eps
    for name, t, g64, g32, n32 in zip(result_names(cell), truth, got64, got32, twin32,
                                      strict=True):
        for a in (t, g64, g32, n32):
            assert np.isfinite(a).all(), name
        np.testing.assert_allclose(g64, t, rtol=RTOL[np.float64], atol=ATOL[np.float64],
                                   err_msg=name)
        # normwise errors of the float32 results against the float64 twin
        scale = np.abs(t).max()
        err_compiled = np.abs(g32 - t).max() / scale
        err_twin = np.abs(n32 - t).max() / scale
        assert err_compiled <= 2 * err_twin + 4 * eps32, (name, err_compiled, err_twin)


# ------------------------------------------------------------------------- saturation

def saturating_problem(kind, B, T, D, H, dtype, seed=0):
    """x[..., 0] = +-1e4 and |Wx[0]| in [0.5, 1]: every pre-activation is >= 5000 in
    magnitude (the rest adds at most ~sqrt(H) + D + 1), with the sign of x0 * Wx[0]."""
    rng = np.random.default_rng(seed)
    G = cells.get(kind).gates
    k = 1 / np.sqrt(H)
    x = rng.standard_normal((B, T, D))
    x[..., 0] = 1e4 * rng.choice([-1.0, 1.0], (B, T))
    Wx = rng.uniform(-k, k, (D, G * H))
    Wx[0] = rng.choice([-1.0, 1.0], G * H) * rng.uniform(0.5, 1.0, G * H)
    p = dict(x=x, Wx=Wx, Wh=rng.uniform(-k, k, (H, G * H)), b=rng.uniform(-k, k, G * H),
             h0=rng.standard_normal((B, H)) * 0.5, c0=rng.standard_normal((B, H)) * 0.5,
             dout=rng.standard_normal((B, T, H)), dh_n=rng.standard_normal((B, H)),
             dc_n=rng.standard_normal((B, H)))
    if "b_hn" in reg.param_names(kind):
        p["b_hn"] = rng.uniform(-k, k, H)
    p = {n: a.astype(dtype) for n, a in p.items()}
    signs = np.sign(p["x"][..., :1].astype(np.float64) * p["Wx"][0].astype(np.float64))
    return p, signs                                   # signs: (B, T, G*H), +-1


# the saturated value of each saturating RNN activation, from the sign of its input
SATURATED = {"tanh": lambda s: s, "sigmoid": lambda s: (s > 0).astype(s.dtype)}
SATURATING_RNNS = reg.kind_backends([k for k in KINDS if cells.get(k).nonlinearity
                                     in SATURATED])


# H = 8: the per-step product runs in the C kernel; H = 100: in BLAS
@pytest.mark.parametrize("H", [8, 100])
@pytest.mark.parametrize("cell,backend", SATURATING_RNNS)
def test_saturated_rnn_is_exact(cell, backend, dtype, H):
    """tanh(+-5000) = +-1 and sigmoid(+-5000) = 1/0, exactly."""
    p, signs = saturating_problem(cell, 3, 6, 4, H, dtype)
    out, h_n, dx, dh0, dWx, dWh, db = run(cell, p, backend)
    want = SATURATED[cells.get(cell).nonlinearity](signs)
    np.testing.assert_array_equal(out, want.astype(dtype))
    np.testing.assert_array_equal(h_n, want[:, -1].astype(dtype))
    # d tanh = 1 - h^2 = 0 and d sigmoid = h (1 - h) = 0 exactly: nothing flows back
    for name, g in zip(("dx", "dh0", "dWx", "dWh", "db"), (dx, dh0, dWx, dWh, db)):
        np.testing.assert_array_equal(g, 0, err_msg=name)


@pytest.mark.parametrize("H", [8, 100])
@pytest.mark.parametrize("backend", reg.backends_for("lstm"))
def test_saturated_lstm_gates_are_exact(backend, dtype, H):
    T = 6
    p, signs = saturating_problem("lstm", 3, T, 4, H, dtype)
    out, h_n, c_n, dx, dh0, dc0, dWx, dWh, db = run("lstm", p, backend)
    one = dtype(1)
    i, f, o = ((signs[..., k * H:(k + 1) * H] > 0).astype(dtype) for k in (0, 1, 3))
    g = signs[..., 2 * H:3 * H].astype(dtype)              # tanh(+-5000) = +-1 exactly
    # the tanh the backend applies to c (the compiled core has its own approximation)
    tanh = np.tanh if backend == "numpy" else _core._tanh
    c = p["c0"].copy()
    for t in range(T):
        c = f[:, t] * c + i[:, t] * g[:, t]                # exact: gates are 0/1 and +-1
        want_h = o[:, t] * tanh(c.ravel()).reshape(c.shape)
        np.testing.assert_array_equal(out[:, t], want_h, err_msg=f"h at step {t}")
    np.testing.assert_array_equal(c_n, c)
    np.testing.assert_array_equal(h_n, out[:, -1])
    assert one in o and 0 in o and one in f and 0 in f        # both saturations occur
    # every gate derivative (i(1-i), f(1-f), o(1-o), 1-g^2) is exactly 0
    for name, a in zip(("dx", "dh0", "dWx", "dWh", "db"), (dx, dh0, dWx, dWh, db)):
        np.testing.assert_array_equal(a, 0, err_msg=name)
    # the cell-state gradient still flows (h = o * tanh(c) with c unsaturated), through the
    # forget gates only: dc_{t-1} = (dc_t + dh_t * o_t * (1 - tanh(c_t)^2)) * f_t, where
    # dh_t = dout_t (+ dh_n at the last step): the recurrent dh is 0
    c_seq = [p["c0"]]
    for t in range(T):
        c_seq.append(f[:, t] * c_seq[-1] + i[:, t] * g[:, t])
    dc = p["dc_n"].astype(np.float64)
    for t in reversed(range(T)):
        dh = p["dout"][:, t] + (p["dh_n"] if t == T - 1 else 0)
        th = np.tanh(c_seq[t + 1].astype(np.float64))
        dc = (dc + dh * o[:, t] * (1 - th * th)) * f[:, t]
    assert np.isfinite(dc0).all()
    np.testing.assert_allclose(dc0, dc, rtol=RTOL[dtype], atol=ATOL[dtype])


@pytest.mark.parametrize("H", [8, 100])
@pytest.mark.parametrize("backend", reg.backends_for("gru"))
def test_saturated_gru_gates_are_exact(backend, dtype, H):
    """Every GRU gate saturated: r, z exactly 0 or 1 and n exactly +-1 (the hidden-side
    terms are small next to 5000), so h_t = n_t where z = 0 and h_{t-1} where z = 1, every
    gate derivative is exactly 0 (dx, dWx, dWh, db, db_hn all zero), and the state gradient
    flows through z alone: dL/dh_{t-1} = z_t * dL/dh_t."""
    s = cells.get("gru")
    T = 6
    p, signs = saturating_problem("gru", 3, T, 4, H, dtype)
    out, h_n, dx, dh0, dWx, dWh, db, db_hn = run("gru", p, backend)
    z = (signs[..., s.gate("z", H)] > 0).astype(dtype)
    n = signs[..., s.gate("n", H)].astype(dtype)
    h = p["h0"].copy()
    for t in range(T):
        h = np.where(z[:, t] == 1, h, n[:, t])           # (1 - z) * n + z * h, exactly
        np.testing.assert_array_equal(out[:, t], h, err_msg=f"h at step {t}")
    np.testing.assert_array_equal(h_n, h)
    assert 1 in z and 0 in z                             # both saturations occur
    for name, a in zip(("dx", "dWx", "dWh", "db", "db_hn"), (dx, dWx, dWh, db, db_hn)):
        np.testing.assert_array_equal(a, 0, err_msg=name)
    dh = p["dh_n"].astype(np.float64)
    for t in reversed(range(T)):
        dh = (dh + p["dout"][:, t]) * z[:, t]
    np.testing.assert_allclose(dh0, dh, rtol=RTOL[dtype], atol=ATOL[dtype])
    assert dh0.any() and not dh0.all()


@pytest.mark.parametrize("cell,backend", KIND_BACKENDS)
def test_huge_inputs_give_no_nan(backend, dtype, cell):
    """Random weights, inputs of magnitude 1e4 everywhere: saturated or (relu) large, but
    never NaN or Inf, forward or backward."""
    p = random_problem(cell, 3, 20, 6, 16, dtype, seed=5)
    p["x"] = (p["x"] * 1e4).astype(dtype)
    for name, a in zip(result_names(cell), run(cell, p, backend), strict=True):
        assert np.isfinite(a).all(), name


# ------------------------------------------------------------------------- denormals

TINY = {np.float32: 1e-20, np.float64: 1e-160}          # TINY**2 is denormal
DENORMAL = {np.float32: 1e-39, np.float64: 1e-310}


def test_kernels_flush_denormals(dtype):
    """Inside the compiled kernels FTZ/DAZ are on: a pre-activation that would be a
    denormal (TINY * TINY) comes out as exactly 0, and a denormal input counts as 0.
    The twin, in the caller's mode, keeps the denormals: the flush is the core's doing."""
    one = np.ones((1, 1), dtype)
    zero = np.zeros(1, dtype)
    cases = {"product underflows (FTZ)": (np.full((1, 1, 1), TINY[dtype], dtype),
                                          one * TINY[dtype]),
             "denormal input (DAZ)": (np.full((1, 1, 1), DENORMAL[dtype], dtype), one)}
    for name, (x, Wx) in cases.items():
        compiled = F.rnn_forward(x, None, Wx, one, zero, training=False)[0]
        twin = F.rnn_forward(x, None, Wx, one, zero, training=False, backend="numpy")[0]
        assert twin.item() != 0 and abs(twin.item()) < np.finfo(dtype).tiny, name
        assert compiled.item() == 0, name


def assert_denormals_work():
    """The caller's mode: FTZ off (a product may underflow to a denormal) and DAZ off
    (a denormal operand is not read as zero)."""
    for dt in (np.float32, np.float64):
        tiny, den = dt(TINY[dt]), dt(DENORMAL[dt])
        assert tiny * tiny != 0, f"{dt.__name__}: FTZ left on"
        assert den * dt(1) == den != 0, f"{dt.__name__}: DAZ left on"
        a = np.full(64, den, dt)
        assert (a * dt(1)).all() and (a + a).all(), f"{dt.__name__}: NumPy sees FTZ/DAZ"


@pytest.mark.parametrize("cell", CELLS)
def test_floating_point_mode_restored_after_calls(dtype, cell):
    p = random_problem(cell, 2, 5, 3, 4, dtype)
    assert_denormals_work()
    run(cell, p, "cython")                                    # training forward + backward
    assert_denormals_work()
    reg.kernel_forward(F, cell, p["x"], reg.problem_states(cell, p),
                       tuple(p[n] for n in reg.param_names(cell)), training=False)
    assert_denormals_work()
    # also in another thread (MXCSR is per thread), and in this one after it
    errors = []

    def in_thread():
        try:
            run(cell, p, "cython")
            assert_denormals_work()
        except BaseException as e:
            errors.append(e)

    th = threading.Thread(target=in_thread)
    th.start()
    th.join()
    assert not errors, errors
    assert_denormals_work()


@pytest.mark.parametrize("cell", CELLS)
def test_denormal_range_values_match_the_twin(dtype, cell):
    """A normal problem with a third of x, h0 and the weights replaced by denormal-range
    values: finite, and the compiled result (denormals flushed) equals the twin's (denormals
    kept) within the usual tolerance, since the flushed amounts are below 1e-38."""
    p = random_problem(cell, 3, 8, 5, 6, dtype, seed=9)
    rng = np.random.default_rng(9)
    for k in ("x", "h0", "Wx", "Wh"):
        mask = rng.random(p[k].shape) < 1 / 3
        p[k][mask] = DENORMAL[dtype] * rng.uniform(-1, 1, mask.sum())
    got, want = run(cell, p, "cython"), run(cell, p, "numpy")
    for name, g, w in zip(result_names(cell), got, want, strict=True):
        assert np.isfinite(g).all(), name
        np.testing.assert_allclose(g, w, rtol=RTOL[dtype], atol=ATOL[dtype], err_msg=name)
    # an all-denormal problem is (flushed to) the all-zero problem: nothing blows up, and
    # each result is the twin's on zeros (exactly zero or tiny where that is zero: every
    # cell but the sigmoid RNN, whose h = sigmoid(0) = 0.5)
    q = {k: (v * 0 + DENORMAL[dtype]).astype(dtype) for k, v in p.items()}
    zeros = {k: np.zeros_like(v) for k, v in p.items()}
    for name, g, w in zip(result_names(cell), run(cell, q, "cython"), run(cell, zeros, "numpy"),
                          strict=True):
        assert np.isfinite(g).all(), name
        assert np.abs(g[w == 0]).max(initial=0) <= 1e-30, name
        np.testing.assert_allclose(g, w, rtol=RTOL[dtype], atol=1e-30, err_msg=name)
