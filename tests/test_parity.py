"""The compiled core against its NumPy twin, and each backend against itself on
equivalent inputs (views, orders, dtypes, read-only), through the checked
functional face and the class API.

Tolerances are conftest's RTOL/ATOL, element by element, with one refinement for
the three weight gradients (see ``assert_weight_grads_close``): an entry of
``dWx = x.T @ dG`` is a sum over every (step, batch) row, and where those terms
cancel the result can be many times smaller than the terms themselves. Its
rounding error is then relative to the terms, not to the result: on the float32
tanh RNN problems of test_parity_shapes (B=16, T=5, D=8, H=64) and
test_parity_long_sequence, the float32 *twin* misses the float64 truth by up to
2.2x the elementwise RTOL/ATOL on such an entry (the compiled core by up to
1.9x): the twin itself does not meet it. So for those entries the
relative part of the tolerance is RTOL times the sum of |terms| (``|x|.T @ |dG|``,
Higham's bound for a sum of products); RTOL and ATOL themselves are unchanged.
"""
import numpy as np
import pytest

import rnnfast
from rnnfast import functional as F
from conftest import ATOL, RTOL, random_problem

CELLS = [("rnn", "tanh"), ("rnn", "relu"), ("lstm", None)]
CELL_IDS = ["rnn-tanh", "rnn-relu", "lstm"]
GATES = {"rnn": 1, "lstm": 4}

# (batch, seq_len, input_size, hidden): the unit sizes, odd sizes, a mix; from
# (16, 5, 8, 64) on, large enough (batch * hidden * G*hidden > 32768) for the per-step
# product to go through BLAS rather than the compiled small-product loop
SHAPES = [
    (1, 1, 1, 1),
    (1, 6, 4, 5),      # batch 1
    (5, 1, 4, 5),      # seq_len 1
    (4, 6, 3, 1),      # hidden 1
    (4, 6, 1, 5),      # input 1
    (7, 13, 5, 33),
    (13, 7, 33, 13),
    (3, 4, 7, 7),
    (2, 9, 16, 64),
    (16, 5, 8, 64),
    (1, 3, 129, 200),  # batch 1 through BLAS too
    (1, 4, 3, 30),     # batch 1, LSTM: four panels of gates, the last one partial
    (1, 3, 5, 300),    # batch 1, hidden > one k block (256): the blocked single-row path
    (11, 2, 3, 300),   # LSTM: Wh (1.4 MB) past L2's share, streamed; k blocks of 256 + 44
    (600, 2, 3, 4),    # a batch larger than the compiled inference's chunk of rows
]
SHAPE_ID = "B%d-T%d-D%d-H%d"
WEIGHT_GRADS = ("dWx", "dWh", "db")


def forward(cell, nl, p, backend, *, batch_first=True, states="hc", training=True):
    """``(out, finals, workspace)`` of one forward; finals is (h_n,) or (h_n, c_n).
    ``states``: which of h0 ("h") and c0 ("c") to pass (the others are None)."""
    h0 = p["h0"] if "h" in states else None
    if cell == "rnn":
        out, h_n, ws = F.rnn_forward(p["x"], h0, p["Wx"], p["Wh"], p["b"], nl, batch_first,
                                     training, backend=backend)
        return out, (h_n,), ws
    c0 = p["c0"] if "c" in states else None
    out, h_n, c_n, ws = F.lstm_forward(p["x"], h0, c0, p["Wx"], p["Wh"], p["b"], batch_first,
                                       training, backend=backend)
    return out, (h_n, c_n), ws


def backward(cell, nl, p, ws, backend, *, batch_first=True, dout=True, dstates="hc", x=None,
             Wx=None):
    """The gradients of one backward, by name. ``dout``: pass dout or None; ``dstates``:
    which of dh_n ("h") and dc_n ("c") to pass (the others are None)."""
    x = p["x"] if x is None else x
    Wx = p["Wx"] if Wx is None else Wx
    g_out = p["dout"] if dout else None
    dh_n = p["dh_n"] if "h" in dstates else None
    if cell == "rnn":
        dx, dh0, dWx, dWh, db = F.rnn_backward(g_out, dh_n, x, Wx, p["Wh"], ws, nl,
                                               batch_first, backend=backend)
        return dict(dx=dx, dh0=dh0, dWx=dWx, dWh=dWh, db=db)
    dc_n = p["dc_n"] if "c" in dstates else None
    dx, dh0, dc0, dWx, dWh, db = F.lstm_backward(g_out, dh_n, dc_n, x, Wx, p["Wh"], ws,
                                                 batch_first, backend=backend)
    return dict(dx=dx, dh0=dh0, dc0=dc0, dWx=dWx, dWh=dWh, db=db)


def run(cell, nl, p, backend, *, batch_first=True, states="hc", dout=True, dstates="hc"):
    """Forward then backward; every result by name."""
    out, finals, ws = forward(cell, nl, p, backend, batch_first=batch_first, states=states)
    res = dict(out=out, h_n=finals[0])
    if cell == "lstm":
        res["c_n"] = finals[1]
    res.update(backward(cell, nl, p, ws, backend, batch_first=batch_first, dout=dout,
                        dstates=dstates))
    return res


def weight_grad_scales(cell, nl, p, *, batch_first=True, states="hc", dout=True,
                       dstates="hc"):
    """For each entry of dWx, dWh, db: the sum of the |terms| it adds up, in float64.

    ``dWx = x.T @ dG``, ``dWh = h_prev.T @ dG``, ``db = dG.sum(0)`` over all
    (step, batch) rows, dG the gradient of the pre-activations. backward takes x and Wx
    only for ``dx = dG @ Wx.T`` and ``dWx = x.T @ dG``, so a backward given the identity
    for Wx (and zeros of matching width for x) returns dG as its dx.
    """
    p = {k: v.astype(np.float64) for k, v in p.items()}
    kw = dict(batch_first=batch_first, dout=dout, dstates=dstates)
    GH = p["Wh"].shape[1]
    out, _, ws = forward(cell, nl, p, "numpy", batch_first=batch_first, states=states)
    want = backward(cell, nl, p, ws, "numpy", **kw)
    out, _, ws = forward(cell, nl, p, "numpy", batch_first=batch_first, states=states)
    dG = backward(cell, nl, p, ws, "numpy", x=np.zeros(p["x"].shape[:2] + (GH,)),
                  Wx=np.eye(GH), **kw)["dx"]
    tm = (lambda a: a.transpose(1, 0, 2)) if batch_first else (lambda a: a)   # time-major
    B, H = p["h0"].shape
    h0 = p["h0"] if "h" in states else np.zeros((B, H))
    rows = lambda a: a.reshape(-1, a.shape[-1])                              # noqa: E731
    dG, x = rows(tm(dG)), rows(tm(p["x"]))
    h_prev = rows(np.concatenate([h0[None], tm(out)[:-1]]))
    # the identity trick itself, checked: these products rebuild the float64 gradients
    np.testing.assert_allclose(x.T @ dG, want["dWx"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(h_prev.T @ dG, want["dWh"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dG.sum(0), want["db"], rtol=1e-10, atol=1e-12)
    dG = np.abs(dG)
    return dict(dWx=np.abs(x).T @ dG, dWh=np.abs(h_prev).T @ dG, db=dG.sum(0))


def assert_weight_grads_close(got, want, scales, dtype):
    """|got - want| <= ATOL + RTOL * (sum of |terms|), entry by entry."""
    for name in (n for n in WEIGHT_GRADS if n in want):
        err = np.abs(got[name].astype(np.float64) - want[name])
        tol = ATOL[dtype] + RTOL[dtype] * scales[name]
        worst = np.unravel_index(np.argmax(err / tol), err.shape)
        assert np.all(err <= tol), (
            f"{name}[{worst}]: got {got[name][worst]!r}, want {want[name][worst]!r}, "
            f"|diff| {err[worst]:.3g} > tolerance {tol[worst]:.3g} "
            f"(sum of |terms| {scales[name][worst]:.3g})")


def assert_results_close(got, want, dtype, scales=None):
    """Every result: same name, shape and dtype; elementwise RTOL/ATOL, except the weight
    gradients when ``scales`` (their sums of |terms|) are given."""
    assert got.keys() == want.keys()
    for name in want:
        assert got[name].shape == want[name].shape, name
        assert got[name].dtype == want[name].dtype == dtype, name
        if scales is not None and name in WEIGHT_GRADS:
            continue
        np.testing.assert_allclose(got[name], want[name], rtol=RTOL[dtype], atol=ATOL[dtype],
                                   err_msg=name)
    if scales is not None:
        assert_weight_grads_close(got, want, scales, dtype)


def assert_parity(cell, nl, p, dtype, **kwargs):
    """Compiled == twin on one problem; returns the twin's results."""
    compiled = run(cell, nl, p, "cython", **kwargs)
    twin = run(cell, nl, p, "numpy", **kwargs)
    assert_results_close(compiled, twin, dtype, weight_grad_scales(cell, nl, p, **kwargs))
    return twin


# --------------------------------------------------------------------- compiled vs twin

@pytest.mark.parametrize("batch_first", [True, False], ids=["batch_first", "time_major"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: SHAPE_ID % s)
@pytest.mark.parametrize("cell,nl", CELLS, ids=CELL_IDS)
def test_parity_shapes(cell, nl, shape, batch_first, dtype):
    p = random_problem(cell, *shape, dtype, batch_first=batch_first, seed=sum(shape))
    twin = assert_parity(cell, nl, p, dtype, batch_first=batch_first)
    # the problem is not degenerate: its gradients are not all zero
    assert np.abs(twin["dWx"]).max() > 0 and np.abs(twin["dx"]).max() > 0


# LSTM weights far past L2's share (Wh: 16 MiB), streamed from L3 k block by k block, with
# A's rows 4 KiB apart interleaved; dh = dG @ Wh.T sums 4096 terms in 16 blocks of 256.
# (At this hidden size a float32 tanh RNN's dh0 differs from the twin's by the
# rounding of 1024-term sums, 1.2e-6 where they cancel, beyond the fixed atol of 1e-6.)
@pytest.mark.parametrize("batch_first", [True, False], ids=["batch_first", "time_major"])
def test_parity_streamed_weights(batch_first, dtype):
    p = random_problem("lstm", 11, 2, 3, 1024, dtype, batch_first=batch_first, seed=1024)
    twin = assert_parity("lstm", None, p, dtype, batch_first=batch_first)
    assert np.abs(twin["dWh"]).max() > 0 and np.abs(twin["dx"]).max() > 0


# which initial states are given, h0 ("h") and/or c0 ("c"), and which final-state
# gradients, dh_n ("h") and/or dc_n ("c"); an RNN has h only
OPTIONAL = ([("rnn", nl, s, d) for nl in ("tanh", "relu") for s in ("h", "") for d in ("h", "")]
            + [("lstm", None, s, d) for s in ("hc", "h", "c", "") for d in ("hc", "h", "c", "")])


@pytest.mark.parametrize("dout", [True, False], ids=["dout", "no-dout"])
@pytest.mark.parametrize("cell,nl,states,dstates", OPTIONAL,
                         ids=[f"{c}{'-' + n if n else ''}-state[{s}]-dstate[{d}]"
                              for c, n, s, d in OPTIONAL])
def test_parity_optional_arguments(cell, nl, states, dstates, dout, dtype):
    for batch_first in (True, False):
        p = random_problem(cell, 3, 5, 4, 6, dtype, batch_first=batch_first, seed=7)
        twin = assert_parity(cell, nl, p, dtype, batch_first=batch_first, states=states,
                             dout=dout, dstates=dstates)
        grads = [k for k in twin if k.startswith("d")]
        if not dout and not dstates:
            # no gradient flows in: every gradient is exactly zero
            for name in grads:
                assert not twin[name].any(), name
        else:
            assert all(twin[name].any() for name in ("dx", "dWx", "dWh", "db"))


@pytest.mark.parametrize("batch_first", [True, False], ids=["batch_first", "time_major"])
@pytest.mark.parametrize("cell,nl", CELLS, ids=CELL_IDS)
def test_parity_long_sequence(cell, nl, batch_first, dtype):
    p = random_problem(cell, 4, 50, 13, 33, dtype, batch_first=batch_first, seed=50)
    assert_parity(cell, nl, p, dtype, batch_first=batch_first)


# --------------------------------------------------------------------- equivalent inputs

def make_layer(cell, nl, p, backend, dtype, batch_first=True):
    D, H = p["Wx"].shape[0], p["Wh"].shape[0]
    if cell == "rnn":
        layer = rnnfast.RNN(D, H, nl, batch_first=batch_first, dtype=dtype, backend=backend)
    else:
        layer = rnnfast.LSTM(D, H, batch_first=batch_first, dtype=dtype, backend=backend)
    for name in ("Wx", "Wh", "b"):
        layer.params[name][...] = p[name]
    return layer


def layer_run(layer, cell, a):
    """Forward and backward of a layer on the arrays ``a``; every result by name."""
    if cell == "rnn":
        out, h_n = layer(a["x"], a["h0"])
        dx, dh0 = layer.backward(a["dout"], a["dh_n"])
        res = dict(out=out, h_n=h_n, dx=dx, dh0=dh0)
    else:
        out, (h_n, c_n) = layer(a["x"], (a["h0"], a["c0"]))
        dx, (dh0, dc0) = layer.backward(a["dout"], (a["dh_n"], a["dc_n"]))
        res = dict(out=out, h_n=h_n, c_n=c_n, dx=dx, dh0=dh0, dc0=dc0)
    res.update({"d" + k: g.copy() for k, g in layer.grads.items()})
    return res


def other_float(dtype):
    return np.float64 if dtype == np.float32 else np.float32


def variant(a, kind, dtype, rng):
    """``a`` (float64 data) as an input of another form; converting it to a C-contiguous
    ``dtype`` array gives the plain input it must behave like."""
    if kind == "other_float":
        # float64 data into a float32 layer (rounds), float32 data into a float64 one
        return a if dtype == np.float32 else a.astype(np.float32)
    if kind == "integer":
        return np.rint(2 * a).astype(np.int64)
    a = a.astype(dtype)
    if kind == "strided":
        # every other entry of axis 1 of a larger array, e.g. x[:, ::2] (x: every other step)
        big = rng.standard_normal((a.shape[0], 2 * a.shape[1]) + a.shape[2:]).astype(dtype)
        big[:, ::2] = a
        return big[:, ::2]
    if kind == "reversed":
        # negative strides in every axis
        flip = tuple(slice(None, None, -1) for _ in a.shape)
        return a[flip].copy()[flip]
    if kind == "swapped":
        # a transposed view of an array stored in the other axis order
        return a.T.copy().T
    if kind == "fortran":
        return np.asfortranarray(a)
    if kind == "readonly":
        a = a.copy()
        a.setflags(write=False)
        return a
    raise AssertionError(kind)


INPUT_KINDS = ["strided", "reversed", "swapped", "fortran", "readonly", "other_float",
               "integer"]
INPUT_NAMES = ("x", "h0", "c0", "dout", "dh_n", "dc_n")


@pytest.mark.parametrize("kind", INPUT_KINDS)
@pytest.mark.parametrize("cell,nl", CELLS, ids=CELL_IDS)
def test_equivalent_inputs_same_results(cell, nl, kind, backend, dtype):
    """Views, orders, read-only arrays, the other float dtype and integers behave as the
    plain C-contiguous array of the layer's dtype with the same values, and stay unchanged."""
    rng = np.random.default_rng(3)
    for batch_first in (True, False):
        p64 = random_problem(cell, 3, 6, 4, 5, np.float64, batch_first=batch_first, seed=11)
        given = {k: variant(p64[k], kind, dtype, rng) for k in INPUT_NAMES}
        plain = {k: np.ascontiguousarray(a, dtype=dtype) for k, a in given.items()}
        assert all(a.flags.c_contiguous for a in plain.values())
        if kind not in ("other_float", "integer"):
            assert all(a.dtype == dtype for a in given.values())
        if kind in ("strided", "reversed", "swapped", "fortran"):
            assert not given["x"].flags.c_contiguous
        before = {k: np.array(a, copy=True) for k, a in given.items()}
        layer = make_layer(cell, nl, p64, backend, dtype, batch_first)
        got = layer_run(layer, cell, given)
        want = layer_run(layer, cell, plain)
        assert_results_close(got, want, dtype)
        for k, a in given.items():
            np.testing.assert_array_equal(a, before[k], err_msg=f"{k} was modified")


PARAM_KINDS = ["strided", "reversed", "fortran", "readonly", "other_float"]


@pytest.mark.parametrize("kind", PARAM_KINDS)
@pytest.mark.parametrize("cell,nl", CELLS, ids=CELL_IDS)
def test_equivalent_params_same_results(cell, nl, kind, backend, dtype):
    """A params entry replaced by an equivalent array of another form (the user's own)
    gives the results of the plain parameters and is not written to."""
    rng = np.random.default_rng(4)
    p64 = random_problem(cell, 3, 6, 4, 5, np.float64, seed=12)
    inputs = {k: np.ascontiguousarray(p64[k], dtype=dtype) for k in INPUT_NAMES}
    given = {k: variant(p64[k][None], kind, dtype, rng)[0] for k in ("Wx", "Wh", "b")}
    plain = {k: np.ascontiguousarray(a, dtype=dtype) for k, a in given.items()}
    want = layer_run(make_layer(cell, nl, plain, backend, dtype), cell, inputs)
    layer = make_layer(cell, nl, plain, backend, dtype)
    layer.params.update(given)
    before = {k: np.array(v, copy=True) for k, v in layer.params.items()}
    got = layer_run(layer, cell, inputs)
    assert_results_close(got, want, dtype)
    for k, v in layer.params.items():
        np.testing.assert_array_equal(v, before[k], err_msg=f"params[{k!r}] was modified")


# --------------------------------------------------------------------- eval == training

# the last two are long enough for the compiled inference to project the inputs in
# several chunks of ~512 rows (with a remainder), the last with a batch above 512
EVAL_SHAPES = [(1, 1, 2, 3), (3, 7, 4, 5), (33, 20, 4, 6), (600, 2, 3, 4)]


@pytest.mark.parametrize("batch_first", [True, False], ids=["batch_first", "time_major"])
@pytest.mark.parametrize("shape", EVAL_SHAPES, ids=lambda s: SHAPE_ID % s)
@pytest.mark.parametrize("cell,nl", CELLS, ids=CELL_IDS)
def test_eval_forward_equals_training_forward(cell, nl, shape, batch_first, backend, dtype):
    p = random_problem(cell, *shape, dtype, batch_first=batch_first, seed=5)
    for states in ("hc", ""):
        out_t, finals_t, ws_t = forward(cell, nl, p, backend, batch_first=batch_first,
                                        states=states, training=True)
        out_e, finals_e, ws_e = forward(cell, nl, p, backend, batch_first=batch_first,
                                        states=states, training=False)
        assert ws_t is not None and ws_e is None
        for name, got, want in zip(("out", "h_n", "c_n"), (out_e,) + finals_e,
                                   (out_t,) + finals_t):
            assert got.shape == want.shape and got.dtype == want.dtype == dtype, name
            np.testing.assert_allclose(got, want, rtol=RTOL[dtype], atol=ATOL[dtype],
                                       err_msg=name)
        # and the final states are the last step of out
        last = out_t[:, -1] if batch_first else out_t[-1]
        np.testing.assert_array_equal(finals_t[0], last)
