"""The pure-NumPy twin of the compiled kernels: the test oracle and ``backend="numpy"``.

Every function here has the same name, signature and return values as its
compiled twin in ``rnnfast._core``. Both trust their contract, which
``rnnfast._checks`` guarantees (``rnnfast.functional`` checks, then calls one):

- ``x`` is C-contiguous, ``(batch, seq_len, input)`` if ``batch_first`` else
  ``(seq_len, batch, input)``, of the same floating dtype as the parameters;
- ``Wx (input, G*hidden)``, ``Wh (hidden, G*hidden)``, ``b (G*hidden,)`` with
  G = 1 (RNN) or 4 (LSTM, gate order i, f, g, o);
- states ``h0``, ``c0``, ``dh_n``, ``dc_n`` are ``(batch, hidden)`` or None (zeros);
- ``dout`` has the shape of ``out`` or is None (zeros);
- ``workspace`` is what the same backend's forward returned with ``training=True``.

The math, per step t (rows are batch elements, right-multiplying weights)::

    RNN:   h_t = act(x_t @ Wx + h_{t-1} @ Wh + b)
    LSTM:  i, f, g, o = split(x_t @ Wx + h_{t-1} @ Wh + b)
           i, f, o = sigmoid(i, f, o); g = tanh(g)
           c_t = f * c_{t-1} + i * g;  h_t = o * tanh(c_t)
"""
import numpy as np
from scipy.special import expit as sigmoid

__all__ = ["rnn_forward", "rnn_backward", "lstm_forward", "lstm_backward"]


def _relu(a):
    return np.maximum(a, 0)


_ACTIVATIONS = {"tanh": np.tanh, "relu": _relu}


def _act_grad_from_output(h, nonlinearity):
    """d act(a) / da expressed through h = act(a)."""
    if nonlinearity == "tanh":
        return 1 - h * h
    return (h > 0).astype(h.dtype)


def _time_major(a, batch_first):
    """A (seq_len, batch, n) view of a sequence array."""
    return a.transpose(1, 0, 2) if batch_first else a


def _user_layout(a_tm, batch_first):
    """A C-contiguous copy of a (seq_len, batch, n) array in the user's layout.

    Always a copy (``out`` must not alias the workspace's ``hs``: a caller writing
    into ``out`` would change what backward reads); ``ascontiguousarray`` would
    return ``a_tm`` itself when ``batch_first`` is False."""
    return np.array(a_tm.transpose(1, 0, 2) if batch_first else a_tm, order="C", copy=True)


def _state(s, batch, hidden, dtype):
    return np.zeros((batch, hidden), dtype) if s is None else s


def _input_projection(xs, Wx, b):
    """x_t @ Wx + b for every step at once: (seq_len, batch, G*hidden)."""
    T, B, D = xs.shape
    return (xs.reshape(T * B, D) @ Wx + b).reshape(T, B, Wx.shape[1])


def _weight_grads(xs, hs_prev, dG, Wx):
    """Deferred GEMMs over all steps: dx, dWx, dWh, db from the gate gradients."""
    T, B, D = xs.shape
    GH = dG.shape[2]
    dG2 = dG.reshape(T * B, GH)
    dWx = xs.reshape(T * B, D).T @ dG2
    dWh = hs_prev.reshape(T * B, hs_prev.shape[2]).T @ dG2
    db = dG2.sum(axis=0)
    dx = (dG2 @ Wx.T).reshape(T, B, D)
    return dx, dWx, dWh, db


def _empty_backward(x, Wx, Wh, b_shape, dh_n):
    dt = Wx.dtype
    return (np.zeros(x.shape, dt), dh_n, np.zeros(Wx.shape, dt),
            np.zeros(Wh.shape, dt), np.zeros(b_shape, dt))


# --------------------------------------------------------------------- tanh / relu RNN

def rnn_forward(x, h0, Wx, Wh, b, nonlinearity="tanh", batch_first=True, training=True):
    """Returns ``(out, h_n, workspace)``; workspace is None unless ``training``."""
    xs = _time_major(x, batch_first)
    T, B, _ = xs.shape
    H = Wh.shape[0]
    act = _ACTIVATIONS[nonlinearity]
    hs = np.empty((T + 1, B, H), Wx.dtype)          # h_{-1} = h0, h_0 .. h_{T-1}
    hs[0] = _state(h0, B, H, Wx.dtype)
    pre = _input_projection(xs, Wx, b)
    for t in range(T):
        hs[t + 1] = act(pre[t] + hs[t] @ Wh)
    out = _user_layout(hs[1:], batch_first)
    workspace = None
    if training:
        workspace = {"backend": "numpy", "cell": "rnn", "nonlinearity": nonlinearity,
                     "batch_first": batch_first, "dims": (B, T, H), "hs": hs}
    return out, hs[T].copy(), workspace


def rnn_backward(dout, dh_n, x, Wx, Wh, workspace, nonlinearity="tanh", batch_first=True):
    """Returns ``(dx, dh0, dWx, dWh, db)``."""
    xs = _time_major(x, batch_first)
    T, B, _ = xs.shape
    H = Wh.shape[0]
    dh = _state(dh_n, B, H, Wx.dtype).copy()
    if T == 0:
        return _empty_backward(x, Wx, Wh, (H,), dh)
    hs = workspace["hs"]
    douts = None if dout is None else _time_major(dout, batch_first)
    dG = np.empty((T, B, H), Wx.dtype)
    for t in reversed(range(T)):
        if douts is not None:
            dh += douts[t]
        dG[t] = dh * _act_grad_from_output(hs[t + 1], nonlinearity)
        dh = dG[t] @ Wh.T
    dx, dWx, dWh, db = _weight_grads(xs, hs[:T], dG, Wx)
    return _user_layout(dx, batch_first), dh, dWx, dWh, db


# --------------------------------------------------------------------- LSTM

def lstm_forward(x, h0, c0, Wx, Wh, b, batch_first=True, training=True):
    """Returns ``(out, h_n, c_n, workspace)``; workspace is None unless ``training``."""
    xs = _time_major(x, batch_first)
    T, B, _ = xs.shape
    H = Wh.shape[0]
    hs = np.empty((T + 1, B, H), Wx.dtype)          # h_{-1} = h0, h_0 .. h_{T-1}
    cs = np.empty((T + 1, B, H), Wx.dtype)          # c_{-1} = c0, c_0 .. c_{T-1}
    gates = np.empty((T, B, 4 * H), Wx.dtype)       # activated i, f, g, o
    hs[0] = _state(h0, B, H, Wx.dtype)
    cs[0] = _state(c0, B, H, Wx.dtype)
    pre = _input_projection(xs, Wx, b)
    for t in range(T):
        a = pre[t] + hs[t] @ Wh
        i = sigmoid(a[:, :H])
        f = sigmoid(a[:, H:2 * H])
        g = np.tanh(a[:, 2 * H:3 * H])
        o = sigmoid(a[:, 3 * H:])
        cs[t + 1] = f * cs[t] + i * g
        hs[t + 1] = o * np.tanh(cs[t + 1])
        gates[t] = np.concatenate([i, f, g, o], axis=1)
    out = _user_layout(hs[1:], batch_first)
    workspace = None
    if training:
        workspace = {"backend": "numpy", "cell": "lstm", "batch_first": batch_first,
                     "dims": (B, T, H), "hs": hs, "cs": cs, "gates": gates}
    return out, hs[T].copy(), cs[T].copy(), workspace


def lstm_backward(dout, dh_n, dc_n, x, Wx, Wh, workspace, batch_first=True):
    """Returns ``(dx, dh0, dc0, dWx, dWh, db)``."""
    xs = _time_major(x, batch_first)
    T, B, _ = xs.shape
    H = Wh.shape[0]
    dh = _state(dh_n, B, H, Wx.dtype).copy()
    dc = _state(dc_n, B, H, Wx.dtype).copy()
    if T == 0:
        dx, dh0, dWx, dWh, db = _empty_backward(x, Wx, Wh, (4 * H,), dh)
        return dx, dh0, dc, dWx, dWh, db
    hs, cs, gates = workspace["hs"], workspace["cs"], workspace["gates"]
    douts = None if dout is None else _time_major(dout, batch_first)
    dG = np.empty((T, B, 4 * H), Wx.dtype)
    for t in reversed(range(T)):
        if douts is not None:
            dh += douts[t]
        i, f, g, o = (gates[t, :, k * H:(k + 1) * H] for k in range(4))
        tanh_c = np.tanh(cs[t + 1])
        dc = dc + dh * o * (1 - tanh_c * tanh_c)
        dG[t, :, :H] = dc * g * i * (1 - i)
        dG[t, :, H:2 * H] = dc * cs[t] * f * (1 - f)
        dG[t, :, 2 * H:3 * H] = dc * i * (1 - g * g)
        dG[t, :, 3 * H:] = dh * tanh_c * o * (1 - o)
        dc = dc * f
        dh = dG[t] @ Wh.T
    dx, dWx, dWh, db = _weight_grads(xs, hs[:T], dG, Wx)
    return _user_layout(dx, batch_first), dh, dc, dWx, dWh, db
