"""The new cells against plain NumPy loops written here from their equations: the sigmoid RNN
(which torch does not have: with test_gradcheck's finite differences, this is its check)
and the GRU (besides torch.nn.GRU in test_torch.py).

The loops are deliberately built differently from the twin: batch-first throughout, the
input products step by step, and BPTT accumulating every parameter gradient as it goes
(the twin defers them to products over all steps). float64, every result: outputs, final
state and every gradient, through the functional face and the layers, on every backend
that runs the cell.
"""
import numpy as np
import pytest

import cells_for_tests as reg
from conftest import ATOL, RTOL

B, T, D, H = 3, 7, 4, 5
DT = np.float64


def sig(a):
    return 1 / (1 + np.exp(-a))


# --------------------------------------------------------------------- sigmoid RNN

def sigmoid_rnn_loop(p):
    """h_t = sigmoid(x_t Wx + h_{t-1} Wh + b); returns out (B, T, H) and h_n."""
    h, out = p["h0"], []
    for t in range(p["x"].shape[1]):
        h = sig(p["x"][:, t] @ p["Wx"] + h @ p["Wh"] + p["b"])
        out.append(h)
    return np.stack(out, axis=1), h


def sigmoid_rnn_bptt(p, out):
    """The gradients of L = sum(out * dout) + sum(h_n * dh_n), step by step."""
    g = {k: np.zeros_like(p[k]) for k in ("Wx", "Wh", "b")}
    dx = np.zeros_like(p["x"])
    dh = p["dh_n"].copy()
    for t in reversed(range(out.shape[1])):
        h_prev = p["h0"] if t == 0 else out[:, t - 1]
        dh = dh + p["dout"][:, t]
        da = dh * out[:, t] * (1 - out[:, t])          # sigmoid' = h (1 - h)
        g["Wx"] += p["x"][:, t].T @ da
        g["Wh"] += h_prev.T @ da
        g["b"] += da.sum(axis=0)
        dx[:, t] = da @ p["Wx"].T
        dh = da @ p["Wh"].T
    return dict(dx=dx, dh0=dh, dWx=g["Wx"], dWh=g["Wh"], db=g["b"])


# --------------------------------------------------------------------- GRU

def gru_loop(p):
    """PyTorch's GRU: r, z = sigmoid(x Wx_rz + h Wh_rz + b_rz),
    n = tanh(x Wx_n + b_n + r * (h Wh_n + b_hn)), h' = (1 - z) n + z h."""
    Wx, Wh, b = p["Wx"], p["Wh"], p["b"]
    H = p["b_hn"].shape[0]
    Wx_r, Wx_z, Wx_n = Wx[:, :H], Wx[:, H:2 * H], Wx[:, 2 * H:]
    Wh_r, Wh_z, Wh_n = Wh[:, :H], Wh[:, H:2 * H], Wh[:, 2 * H:]
    b_r, b_z, b_n = b[:H], b[H:2 * H], b[2 * H:]
    h, out, saved = p["h0"], [], []
    for t in range(p["x"].shape[1]):
        x = p["x"][:, t]
        r = sig(x @ Wx_r + h @ Wh_r + b_r)
        z = sig(x @ Wx_z + h @ Wh_z + b_z)
        hn = h @ Wh_n + p["b_hn"]
        n = np.tanh(x @ Wx_n + b_n + r * hn)
        saved.append((h, r, z, n, hn))
        h = (1 - z) * n + z * h
        out.append(h)
    return np.stack(out, axis=1), h, saved


def gru_bptt(p, saved):
    Wx, Wh = p["Wx"], p["Wh"]
    g = {k: np.zeros_like(p[k]) for k in ("Wx", "Wh", "b", "b_hn")}
    dx = np.zeros_like(p["x"])
    dh = p["dh_n"].copy()
    for t in reversed(range(len(saved))):
        h_prev, r, z, n, hn = saved[t]
        x = p["x"][:, t]
        dh = dh + p["dout"][:, t]
        dn = dh * (1 - z)
        dz = dh * (h_prev - n)
        dn_pre = dn * (1 - n ** 2)                   # tanh' at n's pre-activation
        dr = dn_pre * hn
        dr_pre = dr * r * (1 - r)
        dz_pre = dz * z * (1 - z)
        dhn = dn_pre * r                             # of h Wh_n + b_hn
        d_in = np.concatenate([dr_pre, dz_pre, dn_pre], axis=1)     # of x Wx + b
        d_hid = np.concatenate([dr_pre, dz_pre, dhn], axis=1)       # of h Wh (+ b_hn)
        g["Wx"] += x.T @ d_in
        g["b"] += d_in.sum(axis=0)
        g["Wh"] += h_prev.T @ d_hid
        g["b_hn"] += dhn.sum(axis=0)
        dx[:, t] = d_in @ Wx.T
        dh = dh * z + d_hid @ Wh.T
    return dict(dx=dx, dh0=dh, dWx=g["Wx"], dWh=g["Wh"], db=g["b"], db_hn=g["b_hn"])


def loop_results(kind, p):
    if kind == "rnn_sigmoid":
        out, h_n = sigmoid_rnn_loop(p)
        return dict(out=out, h_n=h_n, **sigmoid_rnn_bptt(p, out))
    out, h_n, saved = gru_loop(p)
    return dict(out=out, h_n=h_n, **gru_bptt(p, saved))


KINDS = ("rnn_sigmoid", "gru")
PARAMS = reg.kind_backends(KINDS)


def problem(kind, batch_first=True, seed=0):
    """Weights U(-1, 1) (not U(-1/sqrt(H), 1/sqrt(H))): larger gradients, so that every
    result clears the non-vacuity bound below even through the sigmoid's 1/4."""
    return reg.random_problem(kind, B, T, D, H, DT, batch_first=batch_first, seed=seed,
                              scale=1.0)


def batch_first_view(p):
    return dict(p, x=p["x"].transpose(1, 0, 2), dout=p["dout"].transpose(1, 0, 2))


def assert_close(got, want):
    assert got.keys() == want.keys()
    for name in want:
        assert got[name].shape == want[name].shape, name
        np.testing.assert_allclose(got[name], want[name], rtol=RTOL[DT], atol=ATOL[DT],
                                   err_msg=name)


@pytest.mark.parametrize("batch_first", [True, False], ids=["batch_first", "time_major"])
@pytest.mark.parametrize("kind,backend", PARAMS)
def test_functional_matches_the_loop(kind, backend, batch_first):
    p = problem(kind, batch_first, seed=1)
    q = p if batch_first else batch_first_view(p)      # the loops are batch-first
    want = loop_results(kind, q)
    got = reg.run(kind, p, backend, batch_first=batch_first)
    if not batch_first:                                # back to batch-first to compare
        for name in ("out", "dx"):
            got[name] = got[name].transpose(1, 0, 2)
    assert_close(got, want)
    assert all(np.abs(v).max() > 1e-3 for v in want.values())      # not vacuous


@pytest.mark.parametrize("kind,backend", PARAMS)
def test_layer_matches_the_loop(kind, backend):
    p = problem(kind, seed=2)
    want = loop_results(kind, p)
    layer = reg.make_layer(kind, D, H, dtype=DT, backend=backend)
    for name in reg.param_names(kind):
        layer.params[name][...] = p[name]
    out, h_n = layer(p["x"], p["h0"])
    dx, dh0 = layer.backward(p["dout"], p["dh_n"])
    got = dict(out=out, h_n=h_n, dx=dx, dh0=dh0,
               **{"d" + k: g for k, g in layer.grads.items()})
    assert_close(got, want)


@pytest.mark.parametrize("kind", KINDS)
def test_the_loops_are_what_they_say(kind):
    """The test's own loops against central differences of their own forward (so a
    mistake in a loop cannot hide behind an identical mistake in the twin)."""
    p = reg.random_problem(kind, 2, 3, 2, 2, DT, seed=3, scale=1.0)
    want = loop_results(kind, p)

    def loss(q):
        out, h_n = sigmoid_rnn_loop(q) if kind == "rnn_sigmoid" else gru_loop(q)[:2]
        return np.sum(out * q["dout"]) + np.sum(h_n * q["dh_n"])

    step = 1e-6
    for name in ("x", "h0") + reg.param_names(kind):
        num = np.empty_like(p[name])
        for i in np.ndindex(num.shape):
            q = {k: v.copy() for k, v in p.items()}
            q[name][i] += step
            up = loss(q)
            q[name][i] -= 2 * step
            num[i] = (up - loss(q)) / (2 * step)
        assert np.abs(num).max() > 1e-3, name
        np.testing.assert_allclose(want["d" + name], num, rtol=1e-6, atol=1e-8, err_msg=name)
