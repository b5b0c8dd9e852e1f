"""The pure-NumPy twin of the compiled kernels: the test oracle and ``backend="numpy"``.

Every function here has the same name, signature and return values as its
compiled twin in ``rnnfast._core`` (where the compiled core has the cell: see
``rnnfast.cells``, ``CellSpec.compiled``). Both trust their contract, which
``rnnfast._checks`` guarantees (``rnnfast.functional`` checks, then calls one):

- ``x`` is C-contiguous, ``(batch, seq_len, input)`` if ``batch_first`` else
  ``(seq_len, batch, input)``, of the same floating dtype as the parameters;
- ``Wx (input, G*hidden)``, ``Wh (hidden, G*hidden)``, ``b (G*hidden,)`` with
  G = 1 (RNN), 4 (LSTM, gate order i, f, g, o) or 3 (GRU, gate order r, z, n), and for
  the GRU ``b_hn (hidden,)``;
- states ``h0``, ``c0``, ``dh_n``, ``dc_n`` are ``(batch, hidden)`` or None (zeros);
- ``dout`` has the shape of ``out`` or is None (zeros);
- ``workspace`` is what the same backend's forward returned with ``training=True``.

The functions::

    rnn_forward(x, h0, Wx, Wh, b, nonlinearity="tanh", batch_first=True, training=True)
        -> (out, h_n, workspace)
    rnn_backward(dout, dh_n, x, Wx, Wh, workspace, nonlinearity="tanh", batch_first=True)
        -> (dx, dh0, dWx, dWh, db)
    lstm_forward(x, h0, c0, Wx, Wh, b, batch_first=True, training=True)
        -> (out, h_n, c_n, workspace)
    lstm_backward(dout, dh_n, dc_n, x, Wx, Wh, workspace, batch_first=True)
        -> (dx, dh0, dc0, dWx, dWh, db)
    gru_forward(x, h0, Wx, Wh, b, b_hn, batch_first=True, training=True)
        -> (out, h_n, workspace)
    gru_backward(dout, dh_n, x, Wx, Wh, workspace, batch_first=True)
        -> (dx, dh0, dWx, dWh, db, db_hn)
    dense_cross_entropy(h, W, b, labels, dW, db) -> (loss, correct, dh) or None

(the last one a classifier head's training step: ``rnnfast.nn.Dense`` and
``rnnfast.losses.softmax_cross_entropy`` at class indices in one call, see there).

``workspace`` is None unless ``training``. A backward takes, as the RNN's and LSTM's do,
only the weights its products need (``Wx`` for ``dx``, ``Wh`` for the recurrent
gradient): everything else BPTT needs of the forward, ``b_hn`` included, is in the
workspace (``hs``, and ``cs``, ``gates``, ``hn`` as the cell needs them).

The math, per step t (rows are batch elements, right-multiplying weights)::

    RNN:   h_t = act(x_t @ Wx + h_{t-1} @ Wh + b),  act = tanh, relu or sigmoid
    LSTM:  i, f, g, o = split(x_t @ Wx + h_{t-1} @ Wh + b)
           i, f, o = sigmoid(i, f, o); g = tanh(g)
           c_t = f * c_{t-1} + i * g;  h_t = o * tanh(c_t)
    GRU:   (PyTorch's formulation)
           r, z = sigmoid(x_t @ Wx_rz + h_{t-1} @ Wh_rz + b_rz)
           n = tanh(x_t @ Wx_n + b_n + r * (h_{t-1} @ Wh_n + b_hn))
           h_t = (1 - z) * n + z * h_{t-1}

The structure mirrors the compiled core: one shared scan (time loop) for the forward and
one for the backward; per step only ``h_{t-1} @ Wh`` is a product, the input projection
``x @ Wx + b`` of all steps is one product before the loop, and the weight gradients and
``dx`` are products over all steps after it. What differs between cells is one forward
step and one backward step per cell (below, side by side, as the C row functions).

The GRU's backward has two gate gradients: ``dGx``, of the input-side pre-activations
(``x_t @ Wx + b``), gives ``dx``, ``dWx`` and ``db``; ``dGh``, of the hidden-side
products (``h_{t-1} @ Wh``, and ``b_hn``), gives the recurrent ``dh``, ``dWh`` and
``db_hn``. They differ in the n slice only, by the factor r. For the RNN and LSTM they
are one array.
"""
import numpy as np
from scipy.special import expit as sigmoid

from . import cells, losses

__all__ = ["rnn_forward", "rnn_backward", "lstm_forward", "lstm_backward",
           "gru_forward", "gru_backward"]


def _relu(a):
    return np.maximum(a, 0)


# the RNN's activations, each with its derivative expressed through h = act(a)
_ACTIVATIONS = {
    "tanh": (np.tanh, lambda h: 1 - h * h),
    "relu": (_relu, lambda h: (h > 0).astype(h.dtype)),
    "sigmoid": (sigmoid, lambda h: h * (1 - h)),
}


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


# ------------------------------------------------------------------------- per-cell steps
#
# forward step(t, a, ah, ws, consts): ``a`` is step t's input projection x_t @ Wx + b and
# ``ah`` its hidden-side product h_{t-1} @ Wh, both (batch, G*hidden); the step writes
# step t's results into the workspace arrays ``ws``: hs[t + 1] (h_t), and cs[t + 1],
# gates[t], hn[t] where the cell keeps them.
#
# backward step(t, dh, carry, ws, dGx, dGh) -> (carry, dh_direct): ``dh`` is dL/dh_t (the
# output's gradient included), ``carry`` the gradients of the other states (LSTM: (dc,)).
# The step writes step t's gate gradients into dGx (input side) and dGh (hidden side; the
# same array unless the cell keeps them apart) and returns the carry for step t - 1 and the
# part of dL/dh_{t-1} that does not go through h_{t-1} @ Wh (None: there is none). The scan
# then sets dL/dh_{t-1} = dGh @ Wh.T (+ dh_direct).

# tanh / relu / sigmoid RNN --------------------------------------------------------------

def _rnn_forward_step(t, a, ah, ws, consts):
    ws["hs"][t + 1] = consts["act"](a + ah)


def _rnn_backward_step(t, dh, carry, ws, dGx, dGh, consts):
    dGx[...] = dh * consts["act_grad"](ws["hs"][t + 1])
    return carry, None


# LSTM -----------------------------------------------------------------------------------

def _lstm_forward_step(t, a, ah, ws, consts):
    H = ws["hs"].shape[2]
    a = a + ah
    i = sigmoid(a[:, :H])
    f = sigmoid(a[:, H:2 * H])
    g = np.tanh(a[:, 2 * H:3 * H])
    o = sigmoid(a[:, 3 * H:])
    cs, hs = ws["cs"], ws["hs"]
    cs[t + 1] = f * cs[t] + i * g
    hs[t + 1] = o * np.tanh(cs[t + 1])
    ws["gates"][t] = np.concatenate([i, f, g, o], axis=1)


def _lstm_backward_step(t, dh, carry, ws, dGx, dGh, consts):
    H = ws["hs"].shape[2]
    (dc,) = carry
    cs, gates = ws["cs"], ws["gates"]
    i, f, g, o = (gates[t, :, k * H:(k + 1) * H] for k in range(4))
    tanh_c = np.tanh(cs[t + 1])
    dc = dc + dh * o * (1 - tanh_c * tanh_c)
    dGx[:, :H] = dc * g * i * (1 - i)
    dGx[:, H:2 * H] = dc * cs[t] * f * (1 - f)
    dGx[:, 2 * H:3 * H] = dc * i * (1 - g * g)
    dGx[:, 3 * H:] = dh * tanh_c * o * (1 - o)
    return (dc * f,), None


# GRU ------------------------------------------------------------------------------------

def _gru_forward_step(t, a, ah, ws, consts):
    H = ws["hs"].shape[2]
    r = sigmoid(a[:, :H] + ah[:, :H])
    z = sigmoid(a[:, H:2 * H] + ah[:, H:2 * H])
    hn = ah[:, 2 * H:] + consts["b_hn"]          # h_{t-1} @ Wh_n + b_hn: r multiplies it
    n = np.tanh(a[:, 2 * H:] + r * hn)
    hs = ws["hs"]
    hs[t + 1] = (1 - z) * n + z * hs[t]
    ws["gates"][t] = np.concatenate([r, z, n], axis=1)
    ws["hn"][t] = hn


def _gru_backward_step(t, dh, carry, ws, dGx, dGh, consts):
    H = ws["hs"].shape[2]
    gates = ws["gates"]
    r, z, n = (gates[t, :, k * H:(k + 1) * H] for k in range(3))
    dn = dh * (1 - z)
    dz = dh * (ws["hs"][t] - n)
    da_n = dn * (1 - n * n)                       # of x_t @ Wx_n + b_n + r * hn
    dr = da_n * ws["hn"][t]
    dGx[:, :H] = dr * r * (1 - r)
    dGx[:, H:2 * H] = dz * z * (1 - z)
    dGx[:, 2 * H:] = da_n
    dGh[:, :2 * H] = dGx[:, :2 * H]
    dGh[:, 2 * H:] = da_n * r                     # of hn = h_{t-1} @ Wh_n + b_hn
    return carry, dh * z


_STEPS = {"rnn": (_rnn_forward_step, _rnn_backward_step),
          "lstm": (_lstm_forward_step, _lstm_backward_step),
          "gru": (_gru_forward_step, _gru_backward_step)}


# ------------------------------------------------------------------------- the shared scans

def _consts(spec, weights=None):
    """What a cell's steps need besides the workspace: the RNN's activation (and its
    derivative), and for the forward (``weights`` given) the GRU's b_hn."""
    consts = {}
    if spec.nonlinearity is not None:
        consts["act"], consts["act_grad"] = _ACTIVATIONS[spec.nonlinearity]
    if weights is not None and "b_hn" in spec.params:
        consts["b_hn"] = weights[spec.params.index("b_hn")]
    return consts


def _workspace_arrays(spec, T, B, H, dtype):
    """The arrays a forward fills and its backward reads (uninitialised)."""
    arrays = {"hs": np.empty((T + 1, B, H), dtype)}      # h_{-1} = h0, h_0 .. h_{T-1}
    if "c" in spec.states:
        arrays["cs"] = np.empty((T + 1, B, H), dtype)    # c_{-1} = c0, c_0 .. c_{T-1}
    if spec.family != "rnn":
        arrays["gates"] = np.empty((T, B, spec.gates * H), dtype)     # activated gates
    if "b_hn" in spec.params:
        arrays["hn"] = np.empty((T, B, H), dtype)        # h_{t-1} @ Wh_n + b_hn
    return arrays


def sequence_steps(lengths, T):
    """What this backend's loops need of a batch's sequence lengths (checked: one int per
    row, each in 1 .. T): the lengths themselves, or None when every row has all T steps.
    False when a length is not in 1 .. T. (The compiled core sorts rows and shrinks the
    batch step by step; this twin masks, a different mechanism and so a better oracle.)"""
    if lengths is None:
        return None
    lengths = np.asarray(lengths, np.intp)
    if lengths.shape[0] == 0:
        return None
    if lengths.min() < 1 or lengths.max() > T:
        return False            # (unchecked: rnnfast._checks.check_lengths says what is wrong)
    return None if lengths.min() == T else lengths


def _direction(T, B, steps, reverse):
    """The time index that loop step s of row b works on, (T, B), and the mask of the steps
    within each row's length (None: all). In reverse, row b runs from its own last step
    down to 0 and then, masked, over its padding (so every time index appears once)."""
    s = np.arange(T)[:, None]
    lengths = np.full(B, T) if steps is None else steps
    mask = None if steps is None else s < lengths[None, :]
    if not reverse:
        return np.broadcast_to(s, (T, B)), mask
    rev = lengths[None, :] - 1 - s
    return (rev if mask is None else np.where(mask, rev, s)), mask


def _gather_steps(a_tm, when, mask):
    """(T, B, n): step s of row b is a_tm[when[s, b], b]; zero where masked off."""
    g = a_tm[when, np.arange(a_tm.shape[1])[None, :]]
    return g if mask is None else np.where(mask[:, :, None], g, 0)


def _to_user_time(a_steps, when, mask):
    """(T, B, n) by each row's own time from (T, B, n) by loop step; zero past a row's
    end."""
    if mask is not None:
        a_steps = np.where(mask[:, :, None], a_steps, 0)
    back = np.empty_like(a_steps)
    back[when, np.arange(a_steps.shape[1])[None, :]] = a_steps
    return back


def _forward(spec, x, states, weights, batch_first, training, steps=None, reverse=False,
             out=None, out_col=0, cells_out=None):
    """The forward scan of any cell; returns ``(out, finals, workspace)``, finals the
    final states in ``spec.states`` order. ``steps``: sequence_steps() of the lengths, or
    None; ``reverse``: the reverse direction; ``out``: an output array (zeros past each
    row's end) whose columns ``out_col`` .. ``out_col + H`` this writes, else a new one;
    ``cells_out`` (LSTM): an array like ``out`` that gets every c_t in the same columns."""
    Wx, Wh, b = weights[0], weights[1], weights[2]
    xs = _time_major(x, batch_first)
    T, B, _ = xs.shape
    H = Wh.shape[0]
    plain = steps is None and not reverse
    when, mask = _direction(T, B, steps, reverse)
    if not plain:
        xs = _gather_steps(xs, when, mask)
    ws = _workspace_arrays(spec, T, B, H, Wx.dtype)
    for name, s in zip(spec.states, states):
        ws[name + "s"][0] = _state(s, B, H, Wx.dtype)
    step = _STEPS[spec.family][0]
    consts = _consts(spec, weights)
    pre = _input_projection(xs, Wx, b)
    hs = ws["hs"]
    for t in range(T):
        step(t, pre[t], hs[t] @ Wh, ws, consts)
        if mask is not None:                # rows past their end keep their state
            for name in spec.states:
                ws[name + "s"][t + 1] = np.where(mask[t][:, None], ws[name + "s"][t + 1],
                                                 ws[name + "s"][t])
    finals = tuple(ws[name + "s"][T].copy() for name in spec.states)
    if plain and out is None:
        out = _user_layout(hs[1:], batch_first)
    else:
        out_tm = _to_user_time(hs[1:], when, mask)
        if out is None:
            out = _user_layout(out_tm, batch_first)
        else:
            _time_major(out, batch_first)[:, :, out_col:out_col + H] = out_tm
    if cells_out is not None:
        _time_major(cells_out, batch_first)[:, :, out_col:out_col + H] = _to_user_time(
            ws["cs"][1:], when, mask)
    workspace = None
    if training:
        workspace = {"backend": "numpy", "cell": spec.family}
        if spec.nonlinearity is not None:
            workspace["nonlinearity"] = spec.nonlinearity
        workspace.update({"batch_first": batch_first, "dims": (B, T, H)}, **ws)
        if not plain or out_col or out.shape[2] != H:
            workspace.update(steps=steps, reverse=reverse, out_col=out_col)
    return out, finals, workspace


def _weight_grads(xs, hs_prev, dGx, dGh, Wx):
    """Deferred GEMMs over all steps: dx, dWx, dWh, db from the gate gradients (dGx of the
    input side, dGh of the hidden side; one array for the RNN and LSTM)."""
    T, B, D = xs.shape
    GH = dGx.shape[2]
    dGx2 = dGx.reshape(T * B, GH)
    dGh2 = dGx2 if dGh is dGx else dGh.reshape(T * B, GH)
    dWx = xs.reshape(T * B, D).T @ dGx2
    dWh = hs_prev.reshape(T * B, hs_prev.shape[2]).T @ dGh2
    db = dGx2.sum(axis=0)
    dx = (dGx2 @ Wx.T).reshape(T, B, D)
    return dx, dWx, dWh, db


def _backward(spec, dout, dstates, x, Wx, Wh, workspace, batch_first, dx=None, dcells=None):
    """The backward scan of any cell; returns ``(dx, dstates0, grads)``: the initial states'
    gradients in ``spec.states`` order and the parameters' in ``spec.params`` order. The
    forward's lengths, direction and output columns come with the workspace (``dout`` is
    the gradient of that whole output, ``dcells`` that of its cells_out); ``dx``: add the
    input gradient into it."""
    xs = _time_major(x, batch_first)
    T, B, _ = xs.shape
    H = Wh.shape[0]
    dt = Wx.dtype
    steps, reverse = workspace.get("steps"), workspace.get("reverse", False)
    out_col = workspace.get("out_col", 0)
    plain = steps is None and not reverse
    dh = _state(dstates[0], B, H, dt).copy()
    carry = tuple(_state(s, B, H, dt).copy() for s in dstates[1:])
    shapes = spec.param_shapes(Wx.shape[0], H)
    if T == 0:
        grads = tuple(np.zeros(shapes[name], dt) for name in spec.params)
        return (np.zeros(x.shape, dt) if dx is None else dx), (dh,) + carry, grads
    step = _STEPS[spec.family][1]
    consts = _consts(spec)
    when, mask = _direction(T, B, steps, reverse)
    douts = None
    if dout is not None:
        douts = _time_major(dout, batch_first)[:, :, out_col:out_col + H]
        if not plain:
            douts = _gather_steps(douts, when, mask)
    dcs = None
    if dcells is not None:
        dcs = _gather_steps(_time_major(dcells, batch_first)[:, :, out_col:out_col + H],
                            when, mask)
    if not plain:
        xs = _gather_steps(xs, when, mask)
    dGx = np.empty((T, B, spec.gates * H), dt)
    dGh = np.empty_like(dGx) if "b_hn" in spec.params else dGx
    for t in reversed(range(T)):
        if douts is not None:
            dh += douts[t]
        if dcs is not None:                 # dL/dc_t given directly
            carry = (carry[0] + dcs[t],)
        new_carry, dh_direct = step(t, dh, carry, workspace, dGx[t], dGh[t], consts)
        dh_prev = dGh[t] @ Wh.T
        if dh_direct is not None:
            dh_prev += dh_direct
        if mask is None:
            carry, dh = new_carry, dh_prev
        else:       # a step past a row's end passes its state through: no gate gradient
            m = mask[t][:, None]
            dGx[t] = np.where(m, dGx[t], 0)
            if dGh is not dGx:
                dGh[t] = np.where(m, dGh[t], 0)
            dh = np.where(m, dh_prev, dh)
            carry = tuple(np.where(m, new, old) for new, old in zip(new_carry, carry))
    dx_tm, dWx, dWh, db = _weight_grads(xs, workspace["hs"][:T], dGx, dGh, Wx)
    grads = (dWx, dWh, db)
    if "b_hn" in spec.params:
        grads += (dGh[:, :, spec.gate("n", H)].reshape(T * B, H).sum(axis=0),)
    if not plain:                           # back to each row's own time
        dx_tm = _to_user_time(dx_tm, when, None)
    if dx is None:
        return _user_layout(dx_tm, batch_first), (dh,) + carry, grads
    _time_major(dx, batch_first)[...] += dx_tm
    return dx, (dh,) + carry, grads


def direction_forward(kind, x, states, weights, batch_first, training, steps=None,
                      reverse=False, out=None, out_col=0, cells_out=None):
    """One direction of one layer, for stacks and directions (rnnfast._sequence):
    ``kind`` a registry kind ("lstm", "rnn_tanh", ...), ``states`` and ``weights`` in the
    registry's order; returns ``(out, finals, workspace)``. See _forward."""
    return _forward(cells.get(kind), x, states, weights, batch_first, training, steps,
                    reverse, out, out_col, cells_out)


def direction_backward(kind, dout, dstates, x, Wx, Wh, workspace, batch_first, dx=None,
                       dcells=None, need_dx=True, need_dh0=True):
    """The backward of direction_forward; returns ``(dx, dstates0, grads)``. ``need_dx``
    False: no input gradient (``dx`` returned as given: None by default). ``need_dh0`` is
    the compiled kernels' leave to skip dh0's last product; the twin makes it all the same."""
    got, dstates0, grads = _backward(cells.get(kind), dout, dstates, x, Wx, Wh, workspace,
                                     batch_first, dx if need_dx else None, dcells)
    return (got if need_dx else dx), dstates0, grads


# ------------------------------------------------------------------------- the functions

def rnn_forward(x, h0, Wx, Wh, b, nonlinearity="tanh", batch_first=True, training=True):
    """Returns ``(out, h_n, workspace)``; workspace is None unless ``training``."""
    spec = cells.for_layer("rnn", nonlinearity)
    out, (h_n,), workspace = _forward(spec, x, (h0,), (Wx, Wh, b), batch_first, training)
    return out, h_n, workspace


def rnn_backward(dout, dh_n, x, Wx, Wh, workspace, nonlinearity="tanh", batch_first=True, *,
                 input_grad=True):
    """Returns ``(dx, dh0, dWx, dWh, db)``; dx None without ``input_grad``."""
    spec = cells.for_layer("rnn", nonlinearity)
    dx, (dh0,), (dWx, dWh, db) = _backward(spec, dout, (dh_n,), x, Wx, Wh, workspace,
                                           batch_first)
    return (dx if input_grad else None), dh0, dWx, dWh, db


def lstm_forward(x, h0, c0, Wx, Wh, b, batch_first=True, training=True):
    """Returns ``(out, h_n, c_n, workspace)``; workspace is None unless ``training``."""
    out, (h_n, c_n), workspace = _forward(cells.get("lstm"), x, (h0, c0), (Wx, Wh, b),
                                          batch_first, training)
    return out, h_n, c_n, workspace


def lstm_backward(dout, dh_n, dc_n, x, Wx, Wh, workspace, batch_first=True, *,
                  input_grad=True):
    """Returns ``(dx, dh0, dc0, dWx, dWh, db)``; dx None without ``input_grad``."""
    dx, (dh0, dc0), (dWx, dWh, db) = _backward(cells.get("lstm"), dout, (dh_n, dc_n), x, Wx,
                                               Wh, workspace, batch_first)
    return (dx if input_grad else None), dh0, dc0, dWx, dWh, db


def gru_forward(x, h0, Wx, Wh, b, b_hn, batch_first=True, training=True):
    """Returns ``(out, h_n, workspace)``; workspace is None unless ``training``."""
    out, (h_n,), workspace = _forward(cells.get("gru"), x, (h0,), (Wx, Wh, b, b_hn),
                                      batch_first, training)
    return out, h_n, workspace


def gru_backward(dout, dh_n, x, Wx, Wh, workspace, batch_first=True, *, input_grad=True):
    """Returns ``(dx, dh0, dWx, dWh, db, db_hn)``; dx None without ``input_grad``."""
    dx, (dh0,), (dWx, dWh, db, db_hn) = _backward(cells.get("gru"), dout, (dh_n,), x, Wx,
                                                  Wh, workspace, batch_first)
    return (dx if input_grad else None), dh0, dWx, dWh, db, db_hn


def dense_cross_entropy(h, W, b, labels, dW, db):
    """A classifier head's training step: the logits ``h @ W + b`` of the features ``h (B,
    F)``, the mean softmax cross-entropy against the class indices ``labels`` (B,) and its
    gradients, ``dW (F, C)`` and ``db (C,)`` written into the given arrays; returns ``(loss,
    correct, dh)`` (``correct``: how many rows' largest logit is at their label, ``dh``: a
    new array). Dense's forward and backward and losses.softmax_cross_entropy's values, to
    the bit. None unless the arguments are ndarrays of one float dtype with these shapes
    and intp labels (then the caller takes Dense and the loss, which convert or raise).
    The labels are not checked: each must be in [0, C)."""
    arrays = (h, W, b, dW, db)
    if not (all(type(a) is np.ndarray for a in arrays + (labels,))
            and W.dtype in (np.float32, np.float64) and all(a.dtype == W.dtype for a in arrays)
            and h.ndim == 2 and W.ndim == 2 and h.shape[1] == W.shape[0] and min(h.shape) > 0
            and W.shape[1] > 0 and b.shape == (W.shape[1],) and dW.shape == W.shape
            and db.shape == b.shape and labels.shape == (h.shape[0],)
            and labels.dtype == np.intp):
        return None
    logits = h @ W
    logits += b
    loss, dz = losses._cross_entropy_indices(logits, labels)
    correct = int(np.count_nonzero(logits.argmax(axis=1) == labels))
    dW[...] = h.T @ dz
    db[...] = np.add.reduce(dz, axis=0)
    return loss, correct, dz @ W.T
