"""The compiled core against its NumPy twin, and each backend against itself on
equivalent inputs (views, orders, dtypes, read-only), through the checked
functional face and the class API. Compiled vs twin runs over the kinds the compiled
core has (``cells_for_tests.COMPILED``); the equivalent-input and eval tests over every
kind on every backend that runs it.

Tolerances are conftest's RTOL/ATOL, element by element, with one refinement for
the parameter gradients (see ``assert_weight_grads_close``): an entry of
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

from rnnfast import cells
from cells_for_tests import (
    COMPILED,
    KIND_BACKENDS,
    backward,
    forward,
    layer_backward,
    layer_forward,
    make_layer,
    param_names,
    problem_states,
    random_problem,
    result_names,
    run,
    state_names,
)
from conftest import ATOL, RTOL

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
# the gradients that are sums over every (step, batch) row: every parameter's
WEIGHT_GRADS = tuple(dict.fromkeys("d" + n for s in cells.specs() for n in s.params))


def weight_grad_scales(kind, p, *, batch_first=True, states="hc", dout=True,
                       dstates="hc"):
    """For each entry of dWx, dWh, db (and db_hn): the sum of the |terms| it adds up, in
    float64.

    ``dWx = x.T @ dG``, ``dWh = h_prev.T @ dGh``, ``db = dG.sum(0)`` over all
    (step, batch) rows, dG the gradient of the input-side pre-activations and dGh that of
    the hidden-side products (the same but for the GRU, whose n slice of dGh is r times
    dG's; its ``db_hn`` is the sum of that slice). backward takes x and Wx only for
    ``dx = dG @ Wx.T`` and ``dWx = x.T @ dG``, so a backward given the identity for Wx
    (and zeros of matching width for x) returns dG as its dx.
    """
    s = cells.get(kind)
    p = {k: v.astype(np.float64) for k, v in p.items()}
    kw = dict(batch_first=batch_first, dout=dout, dstates=dstates)
    GH = p["Wh"].shape[1]
    out, _, ws = forward(kind, p, "numpy", batch_first=batch_first, states=states)
    want = backward(kind, p, ws, "numpy", **kw)
    out, _, ws = forward(kind, p, "numpy", batch_first=batch_first, states=states)
    dG = backward(kind, p, ws, "numpy", x=np.zeros(p["x"].shape[:2] + (GH,)),
                  Wx=np.eye(GH), **kw)["dx"]
    tm = (lambda a: a.transpose(1, 0, 2)) if batch_first else (lambda a: a)   # time-major
    B, H = p["h0"].shape
    h0 = p["h0"] if "h" in states else np.zeros((B, H))
    rows = lambda a: a.reshape(-1, a.shape[-1])                              # noqa: E731
    dG, x = rows(tm(dG)), rows(tm(p["x"]))
    dGh = dG
    if "b_hn" in s.params:
        # the reset gate r (the twin keeps the activated gates, time-major) multiplies the
        # hidden-side n product
        dGh = dG.copy()
        dGh[:, s.gate("n", H)] *= rows(ws["gates"][:, :, s.gate("r", H)])
    h_prev = rows(np.concatenate([h0[None], tm(out)[:-1]]))
    # the identity trick itself, checked: these products rebuild the float64 gradients
    np.testing.assert_allclose(x.T @ dG, want["dWx"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(h_prev.T @ dGh, want["dWh"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dG.sum(0), want["db"], rtol=1e-10, atol=1e-12)
    if "b_hn" in s.params:
        np.testing.assert_allclose(dGh[:, s.gate("n", H)].sum(0), want["db_hn"], rtol=1e-10,
                                   atol=1e-12)
    dG, dGh = np.abs(dG), np.abs(dGh)
    scales = dict(dWx=np.abs(x).T @ dG, dWh=np.abs(h_prev).T @ dGh, db=dG.sum(0))
    if "b_hn" in s.params:
        scales["db_hn"] = dGh[:, s.gate("n", H)].sum(0)
    return scales


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


def assert_parity(kind, p, dtype, **kwargs):
    """Compiled == twin on one problem; returns the twin's results."""
    compiled = run(kind, p, "cython", **kwargs)
    twin = run(kind, p, "numpy", **kwargs)
    assert_results_close(compiled, twin, dtype, weight_grad_scales(kind, p, **kwargs))
    return twin


# --------------------------------------------------------------------- compiled vs twin

@pytest.mark.parametrize("batch_first", [True, False], ids=["batch_first", "time_major"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: SHAPE_ID % s)
@pytest.mark.parametrize("kind", COMPILED)
def test_parity_shapes(kind, shape, batch_first, dtype):
    p = random_problem(kind, *shape, dtype, batch_first=batch_first, seed=sum(shape))
    twin = assert_parity(kind, p, dtype, batch_first=batch_first)
    # the problem is not degenerate: its gradients are not all zero
    assert np.abs(twin["dWx"]).max() > 0 and np.abs(twin["dx"]).max() > 0


# LSTM weights far past L2's share (Wh: 16 MiB), streamed from L3 k block by k block, with
# A's rows 4 KiB apart interleaved; dh = dG @ Wh.T sums 4096 terms in 16 blocks of 256.
# (At this hidden size a float32 tanh RNN's dh0 differs from the twin's by the
# rounding of 1024-term sums, 1.2e-6 where they cancel, beyond the fixed atol of 1e-6.)
@pytest.mark.parametrize("batch_first", [True, False], ids=["batch_first", "time_major"])
def test_parity_streamed_weights(batch_first, dtype):
    p = random_problem("lstm", 11, 2, 3, 1024, dtype, batch_first=batch_first, seed=1024)
    twin = assert_parity("lstm", p, dtype, batch_first=batch_first)
    assert np.abs(twin["dWh"]).max() > 0 and np.abs(twin["dx"]).max() > 0


def _subsets(names):
    """Every subset of the state names, as strings: "hc", "h", "c", "" (or "h", "")."""
    full = "".join(names)
    subsets = [full] + ([n for n in names] if len(names) > 1 else []) + [""]
    return list(dict.fromkeys(subsets))


# which initial states are given, h0 ("h") and/or c0 ("c"), and which final-state
# gradients, dh_n ("h") and/or dc_n ("c"); an RNN or GRU has h only
OPTIONAL = [(k, s, d) for k in COMPILED for s in _subsets(state_names(k))
            for d in _subsets(state_names(k))]


@pytest.mark.parametrize("dout", [True, False], ids=["dout", "no-dout"])
@pytest.mark.parametrize("kind,states,dstates", OPTIONAL,
                         ids=[f"{k}-state[{s}]-dstate[{d}]" for k, s, d in OPTIONAL])
def test_parity_optional_arguments(kind, states, dstates, dout, dtype):
    for batch_first in (True, False):
        p = random_problem(kind, 3, 5, 4, 6, dtype, batch_first=batch_first, seed=7)
        twin = assert_parity(kind, p, dtype, batch_first=batch_first, states=states,
                             dout=dout, dstates=dstates)
        grads = [k for k in twin if k.startswith("d")]
        if not dout and not dstates:
            # no gradient flows in: every gradient is exactly zero
            for name in grads:
                assert not twin[name].any(), name
        else:
            assert all(twin[name].any() for name in ("dx", "dWx", "dWh", "db"))


@pytest.mark.parametrize("batch_first", [True, False], ids=["batch_first", "time_major"])
@pytest.mark.parametrize("kind", COMPILED)
def test_parity_long_sequence(kind, batch_first, dtype):
    p = random_problem(kind, 4, 50, 13, 33, dtype, batch_first=batch_first, seed=50)
    assert_parity(kind, p, dtype, batch_first=batch_first)


# --------------------------------------------------------------------- equivalent inputs

def layer_with(kind, p, backend, dtype, batch_first=True):
    D, H = p["Wx"].shape[0], p["Wh"].shape[0]
    layer = make_layer(kind, D, H, batch_first=batch_first, dtype=dtype, backend=backend)
    for name in param_names(kind):
        layer.params[name][...] = p[name]
    return layer


def layer_run(layer, kind, a):
    """Forward and backward of a layer on the arrays ``a``; every result by name."""
    names = state_names(kind)
    out, finals = layer_forward(layer, a["x"], problem_states(kind, a))
    dx, d0 = layer_backward(layer, a["dout"], problem_states(kind, a, "d", "_n"))
    res = dict(out=out)
    res.update({f"{n}_n": f for n, f in zip(names, finals)})
    res["dx"] = dx
    res.update({f"d{n}0": g for n, g in zip(names, d0)})
    res.update({"d" + k: g.copy() for k, g in layer.grads.items()})
    assert tuple(res) == result_names(kind)
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
@pytest.mark.parametrize("cell,backend", KIND_BACKENDS)
def test_equivalent_inputs_same_results(cell, kind, backend, dtype):
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
        layer = layer_with(cell, p64, backend, dtype, batch_first)
        got = layer_run(layer, cell, given)
        want = layer_run(layer, cell, plain)
        assert_results_close(got, want, dtype)
        for k, a in given.items():
            np.testing.assert_array_equal(a, before[k], err_msg=f"{k} was modified")


PARAM_KINDS = ["strided", "reversed", "fortran", "readonly", "other_float"]


@pytest.mark.parametrize("kind", PARAM_KINDS)
@pytest.mark.parametrize("cell,backend", KIND_BACKENDS)
def test_equivalent_params_same_results(cell, kind, backend, dtype):
    """A params entry replaced by an equivalent array of another form (the user's own)
    gives the results of the plain parameters and is not written to."""
    rng = np.random.default_rng(4)
    p64 = random_problem(cell, 3, 6, 4, 5, np.float64, seed=12)
    inputs = {k: np.ascontiguousarray(p64[k], dtype=dtype) for k in INPUT_NAMES}
    given = {k: variant(p64[k][None], kind, dtype, rng)[0] for k in param_names(cell)}
    plain = {k: np.ascontiguousarray(a, dtype=dtype) for k, a in given.items()}
    want = layer_run(layer_with(cell, plain, backend, dtype), cell, inputs)
    layer = layer_with(cell, plain, backend, dtype)
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
@pytest.mark.parametrize("kind,backend", KIND_BACKENDS)
def test_eval_forward_equals_training_forward(kind, shape, batch_first, backend, dtype):
    p = random_problem(kind, *shape, dtype, batch_first=batch_first, seed=5)
    for states in ("hc", ""):
        out_t, finals_t, ws_t = forward(kind, p, backend, batch_first=batch_first,
                                        states=states, training=True)
        out_e, finals_e, ws_e = forward(kind, p, backend, batch_first=batch_first,
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


# ----------------------------------------------------------------------------- F-ordered weights

def _direction_call(core, kind, p, Wx, Wh, steps, reverse, batch_first):
    """A training forward and its backward of one direction (``_core.direction_*``) on the
    given weights; every result."""
    weights = (Wx, Wh) + tuple(p[n] for n in param_names(kind)[2:])
    states = tuple(p[n + "0"] for n in state_names(kind))
    out, finals, ws = core.direction_forward(kind, p["x"], states, weights, batch_first, True,
                                             steps, reverse)
    dstates = tuple(p[f"d{n}_n"] for n in state_names(kind))
    dx, d0, grads = core.direction_backward(kind, p["dout"], dstates, p["x"], Wx, Wh, ws,
                                            batch_first)
    return (out, *finals, dx, *d0, *grads)


@pytest.mark.parametrize("kind", COMPILED)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("products", ["packed", "blas"])
@pytest.mark.parametrize("shape,lengths,reverse", [
    ((3, 6, 5, 7), None, False), ((1, 9, 4, 33), None, True),
    ((4, 7, 9, 16), [7, 2, 5, 1], True), ((2, 3, 1, 1), None, False),
    ((5, 4, 130, 20), [4, 4, 1, 3, 2], False)])
def test_f_ordered_weights_are_read_in_place(monkeypatch, kind, dtype, products, shape,
                                             lengths, reverse):
    """The kernels read a weight that lies in memory as its transpose (F-ordered, as
    rnnfast.torch hands over torch's weight_ih.T / weight_hh.T) as the same matrix: every
    result equals the C-contiguous copy's: to the bit in our packed products (the packed
    panels are the same), to conftest's tolerances normwise in BLAS (its product with a
    transposed operand may add in another order: 1-2 ulp apart at batch 1, and a few
    entries of float32 sums that cancel, measured)."""
    from rnnfast import _core
    if products == "blas":
        monkeypatch.setattr(_core, "packed_max_work", 0)
    B, T, D, H = shape
    p = random_problem(kind, B, T, D, H, dtype, batch_first=False, seed=4)
    steps = None if lengths is None else _core.sequence_steps(np.array(lengths, np.intp), T)
    c_order = _direction_call(_core, kind, p, p["Wx"], p["Wh"], steps, reverse, False)
    f_Wx, f_Wh = np.asfortranarray(p["Wx"]), np.asfortranarray(p["Wh"])
    assert not f_Wx.flags.c_contiguous or D == 1 or p["Wx"].shape[1] == 1
    f_order = _direction_call(_core, kind, p, f_Wx, f_Wh, steps, reverse, False)
    for a, b in zip(c_order, f_order):
        assert a.flags.c_contiguous and b.flags.c_contiguous
        if products == "packed":
            np.testing.assert_array_equal(a, b)
        else:
            # normwise: two orders of one sum differ relative to the terms, not to a sum
            # that cancels (see the module's note)
            np.testing.assert_allclose(a, b, rtol=0,
                                       atol=ATOL[dtype] + RTOL[dtype] * np.abs(a).max())


@pytest.mark.parametrize("name", ["Wx", "Wh"])
def test_strided_weights_are_refused(name):
    """A weight that is neither C- nor F-contiguous is a ValueError naming it (the kernels
    read W's memory as one of the two)."""
    from rnnfast import _core
    p = random_problem("lstm", 2, 3, 4, 5, np.float32, batch_first=False)
    weights = [p["Wx"], p["Wh"], p["b"]]
    k = 0 if name == "Wx" else 1
    big = np.zeros((weights[k].shape[0], 2 * weights[k].shape[1]), np.float32)
    big[:, ::2] = weights[k]
    weights[k] = big[:, ::2]
    with pytest.raises(ValueError, match=f"{name} must be C-contiguous or F-contiguous"):
        _core.direction_forward("lstm", p["x"], (p["h0"], p["c0"]), tuple(weights), False,
                                True)
