"""Property tests: the compiled core equals its NumPy twin on thousands of random tiny problems.

Hypothesis draws the cell (tanh/relu RNN, LSTM), the sizes (batch, seq_len, input, hidden,
each down to 1, seq_len down to 0), the dtype, ``batch_first``, which optional states and
gradients are given, and the memory layout of every array argument (C, Fortran, strided
view, negative strides, read-only, another dtype that converts exactly or by rounding).
For each problem:

- the compiled result on the drawn layouts is *bitwise* the compiled result on plain
  C-contiguous inputs of the compute dtype (conversion is exact, so layout cannot matter);
- the compiled result equals the twin's (``backend="numpy"``) within the per-dtype tolerance
  of ``conftest.RTOL``/``ATOL``, outputs and every gradient;
- no input array is modified (read-only ones included).

Budget: the whole file runs in well under a minute on 2 cores (tiny sizes, ~2,000 examples
in all). ``RNNFAST_PROPERTY_EXAMPLES`` scales the example count for a longer local soak.
On CI (``CI`` set) the examples are derandomized, so a run is reproducible.
"""
import os

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rnnfast
from rnnfast import functional as F
from conftest import ATOL, RTOL, random_problem

_SCALE = float(os.environ.get("RNNFAST_PROPERTY_EXAMPLES", "1"))
settings.register_profile(
    "rnnfast-properties",
    deadline=None,                        # first calls pay imports; timing is not the point
    database=None,                        # nothing written into the checkout
    derandomize=bool(os.environ.get("CI")),
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
PROFILE = settings.get_profile("rnnfast-properties")


def examples(n):
    return settings(PROFILE, max_examples=max(1, int(n * _SCALE)))


LAYOUTS = ("C", "F", "strided", "reversed", "readonly", "other_dtype", "list")


def with_layout(a, layout, rng):
    """The same values as ``a`` in another memory layout (or container)."""
    if layout == "C":
        return a
    if layout == "F":
        return np.asfortranarray(a)
    if layout == "strided":
        # a non-contiguous view: every other element of a larger array, in every axis
        big = np.empty(tuple(2 * n + 1 for n in a.shape), a.dtype)
        big[...] = rng.standard_normal(big.shape)
        view = big[tuple(slice(1, None, 2) for _ in a.shape)]
        view[...] = a
        return view
    if layout == "reversed":
        # negative strides in every axis
        r = np.ascontiguousarray(a[tuple(slice(None, None, -1) for _ in a.shape)])
        return r[tuple(slice(None, None, -1) for _ in a.shape)]
    if layout == "readonly":
        r = a.copy()
        r.setflags(write=False)
        return r
    if layout == "other_dtype":
        # float32 data as float64 converts exactly; float64 data as float32 rounds, and the
        # compiled call must then see exactly the rounded values
        return a.astype(np.float64 if a.dtype == np.float32 else np.float32)
    if layout == "list":
        # a nested list keeps no shape for an empty array ((0, B, D) -> []): C then
        return a.tolist() if a.size else a
    raise AssertionError(layout)


def canonical(a, dtype):
    """What ``_checks`` should hand the kernel for an argument: C-contiguous ``dtype``."""
    return None if a is None else np.ascontiguousarray(np.asarray(a), dtype=dtype)


@st.composite
def problems(draw, cell=None):
    cell = draw(st.sampled_from(["tanh", "relu", "lstm"])) if cell is None else cell
    dims = dict(B=draw(st.integers(1, 4)), T=draw(st.integers(0, 6)),
                D=draw(st.integers(1, 4)), H=draw(st.integers(1, 5)))
    return dict(
        cell=cell, **dims,
        dtype=draw(st.sampled_from([np.float32, np.float64])),
        batch_first=draw(st.booleans()),
        seed=draw(st.integers(0, 2**32 - 1)),
        given=draw(st.fixed_dictionaries(
            {k: st.booleans() for k in ("h0", "c0", "dout", "dh_n", "dc_n")})),
        layouts=draw(st.fixed_dictionaries(
            {k: st.sampled_from(LAYOUTS)
             for k in ("x", "h0", "c0", "Wx", "Wh", "b", "dout", "dh_n", "dc_n")})),
    )


def make_arrays(pr):
    kind = "lstm" if pr["cell"] == "lstm" else "rnn"
    T = max(pr["T"], 1)          # random_problem needs T >= 1; cut back to T below
    p = random_problem(kind, pr["B"], T, pr["D"], pr["H"], pr["dtype"],
                       batch_first=pr["batch_first"], seed=pr["seed"])
    if pr["T"] == 0:
        cut = (slice(None), slice(0, 0)) if pr["batch_first"] else (slice(0, 0),)
        p["x"], p["dout"] = p["x"][cut].copy(), p["dout"][cut].copy()
    for k in ("h0", "c0", "dout", "dh_n", "dc_n"):
        if not pr["given"][k]:
            p[k] = None
    return p


def run(pr, p, backend):
    """Forward + backward through the checked functional face; every result, flattened."""
    bf = pr["batch_first"]
    if pr["cell"] == "lstm":
        out, h_n, c_n, ws = F.lstm_forward(p["x"], p["h0"], p["c0"], p["Wx"], p["Wh"], p["b"],
                                           batch_first=bf, backend=backend)
        grads = F.lstm_backward(p["dout"], p["dh_n"], p["dc_n"], p["x"], p["Wx"], p["Wh"], ws,
                                batch_first=bf, backend=backend)
        return (out, h_n, c_n) + tuple(grads)
    out, h_n, ws = F.rnn_forward(p["x"], p["h0"], p["Wx"], p["Wh"], p["b"], pr["cell"],
                                 batch_first=bf, backend=backend)
    grads = F.rnn_backward(p["dout"], p["dh_n"], p["x"], p["Wx"], p["Wh"], ws, pr["cell"],
                           batch_first=bf, backend=backend)
    return (out, h_n) + tuple(grads)


NAMES = {"lstm": ("out", "h_n", "c_n", "dx", "dh0", "dc0", "dWx", "dWh", "db"),
         "rnn": ("out", "h_n", "dx", "dh0", "dWx", "dWh", "db")}


def snapshot(p):
    return {k: (None if v is None else np.array(v, copy=True)) for k, v in p.items()}


def assert_unchanged(before, p):
    for k, v in p.items():
        if v is not None:
            np.testing.assert_array_equal(np.asarray(v), before[k], err_msg=f"{k} was modified")


@examples(1600)
@given(pr=problems())
def test_compiled_equals_twin_any_layout(pr):
    dt = np.dtype(pr["dtype"])
    p = make_arrays(pr)
    rng = np.random.default_rng(pr["seed"])
    drawn = {k: (None if v is None else with_layout(v, pr["layouts"][k], rng))
             for k, v in p.items()}
    # Wx decides the dtype of a functional call: keep it in the compute dtype when its
    # drawn layout is another dtype or a list (a list of floats would mean float64)
    if pr["layouts"]["Wx"] in ("other_dtype", "list"):
        drawn["Wx"] = p["Wx"]
    # what the kernels must see: the drawn values, converted to the compute dtype
    plain = {k: canonical(v, dt) for k, v in drawn.items()}
    before = snapshot(drawn)

    got = run(pr, drawn, "cython")
    assert_unchanged(before, drawn)
    want = run(pr, plain, "cython")
    twin = run(pr, plain, "numpy")

    kind = "lstm" if pr["cell"] == "lstm" else "rnn"
    for name, g, w, r in zip(NAMES[kind], got, want, twin):
        if name in ("dh0", "dc0") and g is None:
            continue
        assert g.dtype == dt and r.dtype == dt, name
        assert g.shape == r.shape, name
        # layout and container do not change a bit of the result
        np.testing.assert_array_equal(g, w, err_msg=f"{name}: layout changed the result")
        np.testing.assert_allclose(g, r, rtol=RTOL[pr["dtype"]], atol=ATOL[pr["dtype"]],
                                   err_msg=f"{name}: compiled vs twin")
        assert np.isfinite(g).all(), name


@st.composite
def layer_problems(draw):
    pr = draw(problems())
    pr["T"] = max(pr["T"], 1)
    pr["calls"] = draw(st.integers(1, 3))      # several forward/backward rounds per layer
    return pr


@examples(400)
@given(pr=layer_problems())
def test_layers_compiled_equals_twin(pr):
    """The class API on both backends: same outputs, input gradients and ``grads``, over
    several calls on one layer (state in and out, params written in place between calls)."""
    dt = pr["dtype"]
    layers = {}
    for backend in ("cython", "numpy"):
        if pr["cell"] == "lstm":
            layers[backend] = rnnfast.LSTM(pr["D"], pr["H"], batch_first=pr["batch_first"],
                                           dtype=dt, backend=backend, seed=pr["seed"])
        else:
            layers[backend] = rnnfast.RNN(pr["D"], pr["H"], pr["cell"], dtype=dt,
                                          batch_first=pr["batch_first"], backend=backend,
                                          seed=pr["seed"])
    for k in ("Wx", "Wh", "b"):
        np.testing.assert_array_equal(layers["cython"].params[k], layers["numpy"].params[k])
    for call in range(pr["calls"]):
        p = make_arrays(dict(pr, seed=pr["seed"] + call))
        rng = np.random.default_rng(pr["seed"] + call)
        drawn = {k: (None if v is None else with_layout(v, pr["layouts"][k], rng))
                 for k, v in p.items()}
        res = {}
        for backend, layer in layers.items():
            if pr["cell"] == "lstm":
                state = (drawn["h0"], drawn["c0"])
                state = None if all(s is None for s in state) else state
                dstate = (drawn["dh_n"], drawn["dc_n"])
                dstate = None if all(s is None for s in dstate) else dstate
                out, (h_n, c_n) = layer(drawn["x"], state)
                dx, (dh0, dc0) = layer.backward(drawn["dout"], dstate)
                res[backend] = dict(out=out, h_n=h_n, c_n=c_n, dx=dx, dh0=dh0, dc0=dc0)
            else:
                out, h_n = layer(drawn["x"], drawn["h0"])
                dx, dh0 = layer.backward(drawn["dout"], drawn["dh_n"])
                res[backend] = dict(out=out, h_n=h_n, dx=dx, dh0=dh0)
            res[backend].update({"d" + k: layer.grads[k].copy() for k in layer.grads})
        for name, g in res["cython"].items():
            r = res["numpy"][name]
            if g is None or r is None:
                assert g is None and r is None, name
                continue
            assert g.dtype == np.dtype(dt) == r.dtype, name
            np.testing.assert_allclose(g, r, rtol=RTOL[dt], atol=ATOL[dt], err_msg=name)
        # an SGD step written into params in place; the twin layer takes the same values
        for k, w in layers["cython"].params.items():
            w -= dt(0.01) * layers["cython"].grads[k]
            layers["numpy"].params[k][...] = w
