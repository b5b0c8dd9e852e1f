"""Property tests: the compiled core equals its NumPy twin on thousands of random tiny problems.

Hypothesis draws the cell (every kind the compiled core has: cells_for_tests.COMPILED), the
sizes (batch, seq_len, input, hidden, each down to 1, seq_len down to 0), the dtype,
``batch_first``, which optional states and gradients are given, and the memory layout of
every array argument (C, Fortran, strided view, negative strides, read-only, another dtype
that converts exactly or by rounding).
For each problem:

- the compiled result on the drawn layouts is *bitwise* the compiled result on plain
  C-contiguous inputs of the compute dtype (conversion is exact, so layout cannot matter);
- the compiled result equals the twin's (``backend="numpy"``) within the per-dtype tolerance
  of ``conftest.RTOL``/``ATOL``, normwise (see assert_twin_close), outputs and every
  gradient;
- no input array is modified (read-only ones included).

The kinds only the twin has so far (the GRU, the sigmoid RNN) get the same draws on the twin:
its result on the drawn layouts is bitwise its result on plain inputs, finite, and no input
is modified.

Budget: the whole file runs in well under a minute on 2 cores (tiny sizes, ~2,000 examples
in all). ``RNNFAST_PROPERTY_EXAMPLES`` scales the example count for a longer local soak.
On CI (``CI`` set) the examples are derandomized, so a run is reproducible.
"""
import os

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rnnfast import cells
from rnnfast import functional as F
import cells_for_tests as reg
from cells_for_tests import COMPILED, KINDS, TWIN_ONLY, random_problem
from conftest import ATOL, RTOL

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


def assert_twin_close(got, want, dtype, err_msg):
    """Compiled against twin, to conftest's tolerances normwise: ``|got - want| <= ATOL +
    RTOL * (|want| + max |want|)``, as tests/test_parity.py compares two orders of one sum.
    The two add the terms of each sum in another order (the twin through NumPy's BLAS), so
    an entry whose sum cancels differs relative to its terms, not to itself. Elementwise,
    about one float32 draw in a few thousand failed on correct results: a tanh RNN (3, 4, 3
    -> 3), dWx's entry 0.0063 in a gradient whose largest is 4.79, compiled 6.5e-7 and twin
    7.6e-7 from the float64 value of the same inputs, 1.24e-6 apart."""
    scale = float(np.abs(want).max()) if want.size else 0.0
    np.testing.assert_allclose(got, want, rtol=RTOL[dtype],
                               atol=ATOL[dtype] + RTOL[dtype] * scale, err_msg=err_msg)


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
def problems(draw, kinds=COMPILED):
    cell = draw(st.sampled_from(kinds))
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
             for k in ("x", "h0", "c0", "Wx", "Wh", "b", "b_hn", "dout", "dh_n", "dc_n")})),
    )


def make_arrays(pr):
    kind = pr["cell"]
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
    kind, bf = pr["cell"], pr["batch_first"]
    out, finals, ws = reg.kernel_forward(
        F, kind, p["x"], reg.problem_states(kind, p), tuple(p[n] for n in reg.param_names(kind)),
        batch_first=bf, backend=backend)
    dx, d0, dparams = reg.kernel_backward(
        F, kind, p["dout"], reg.problem_states(kind, p, "d", "_n"), p["x"], p["Wx"], p["Wh"],
        ws, batch_first=bf, backend=backend)
    return (out,) + finals + (dx,) + d0 + dparams


def drawn_and_plain(pr):
    """``(dtype, drawn, plain)``: the problem's arrays in their drawn layouts, and what the
    kernels must see of them (the drawn values converted to the compute dtype)."""
    dt = np.dtype(pr["dtype"])
    p = make_arrays(pr)
    rng = np.random.default_rng(pr["seed"])
    drawn = {k: (None if v is None else with_layout(v, pr["layouts"][k], rng))
             for k, v in p.items()}
    # Wx decides the dtype of a functional call: keep it in the compute dtype when its
    # drawn layout is another dtype or a list (a list of floats would mean float64)
    if pr["layouts"]["Wx"] in ("other_dtype", "list"):
        drawn["Wx"] = p["Wx"]
    return dt, drawn, {k: canonical(v, dt) for k, v in drawn.items()}


def snapshot(p):
    return {k: (None if v is None else np.array(v, copy=True)) for k, v in p.items()}


def assert_unchanged(before, p):
    for k, v in p.items():
        if v is not None:
            np.testing.assert_array_equal(np.asarray(v), before[k], err_msg=f"{k} was modified")


@examples(1600)
@given(pr=problems())
def test_compiled_equals_twin_any_layout(pr):
    dt, drawn, plain = drawn_and_plain(pr)
    before = snapshot(drawn)

    got = run(pr, drawn, "cython")
    assert_unchanged(before, drawn)
    want = run(pr, plain, "cython")
    twin = run(pr, plain, "numpy")

    for name, g, w, r in zip(reg.result_names(pr["cell"]), got, want, twin, strict=True):
        if name in ("dh0", "dc0") and g is None:
            continue
        assert g.dtype == dt and r.dtype == dt, name
        assert g.shape == r.shape, name
        # layout and container do not change a bit of the result
        np.testing.assert_array_equal(g, w, err_msg=f"{name}: layout changed the result")
        assert_twin_close(g, r, pr["dtype"], f"{name}: compiled vs twin")
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
        layers[backend] = reg.make_layer(pr["cell"], pr["D"], pr["H"],
                                         batch_first=pr["batch_first"], dtype=dt,
                                         backend=backend, seed=pr["seed"])
    for k in reg.param_names(pr["cell"]):
        np.testing.assert_array_equal(layers["cython"].params[k], layers["numpy"].params[k])
    for call in range(pr["calls"]):
        p = make_arrays(dict(pr, seed=pr["seed"] + call))
        rng = np.random.default_rng(pr["seed"] + call)
        drawn = {k: (None if v is None else with_layout(v, pr["layouts"][k], rng))
                 for k, v in p.items()}
        res = {}
        kind = pr["cell"]
        for backend, layer in layers.items():
            out, finals = reg.layer_forward(layer, drawn["x"], reg.problem_states(kind, drawn))
            dx, d0 = reg.layer_backward(layer, drawn["dout"],
                                        reg.problem_states(kind, drawn, "d", "_n"))
            res[backend] = dict(out=out, dx=dx)
            res[backend].update({f"{n}_n": f for n, f in zip(reg.state_names(kind), finals)})
            res[backend].update({f"d{n}0": g for n, g in zip(reg.state_names(kind), d0)})
            res[backend].update({"d" + k: layer.grads[k].copy() for k in layer.grads})
        for name, g in res["cython"].items():
            r = res["numpy"][name]
            if g is None or r is None:
                assert g is None and r is None, name
                continue
            assert g.dtype == np.dtype(dt) == r.dtype, name
            assert_twin_close(g, r, dt, name)
        # an SGD step written into params in place; the twin layer takes the same values
        for k, w in layers["cython"].params.items():
            w -= dt(0.01) * layers["cython"].grads[k]
            layers["numpy"].params[k][...] = w


@examples(300)
@given(pr=problems(kinds=TWIN_ONLY or KINDS))
def test_twin_any_layout(pr):
    """Every kind on the twin (the ones the compiled core lacks above all: nothing else
    draws random layouts and sizes for them): the drawn layouts give bitwise the result on
    plain C-contiguous inputs, every result is finite and has the compute dtype and the
    expected shape, and no input is modified."""
    dt, drawn, plain = drawn_and_plain(pr)
    before = snapshot(drawn)
    got = run(pr, drawn, "numpy")
    assert_unchanged(before, drawn)
    want = run(pr, plain, "numpy")
    B, T, D, H = pr["B"], pr["T"], pr["D"], pr["H"]
    seq = (B, T) if pr["batch_first"] else (T, B)
    shapes = {"out": seq + (H,), "dx": seq + (D,),
              **{f"{n}_n": (B, H) for n in reg.state_names(pr["cell"])},
              **{f"d{n}0": (B, H) for n in reg.state_names(pr["cell"])},
              **{"d" + n: s for n, s in cells.get(pr["cell"]).param_shapes(D, H).items()}}
    for name, g, w in zip(reg.result_names(pr["cell"]), got, want, strict=True):
        if name.endswith("0") and g is None:
            assert pr["given"][name[1:-1] + "0"] is False, name
            continue
        assert g.dtype == dt and g.shape == shapes[name], name
        np.testing.assert_array_equal(g, w, err_msg=f"{name}: layout changed the result")
        assert np.isfinite(g).all(), name


@st.composite
def sequence_problems(draw):
    """A stacked / bidirectional layer problem: kind, layers, directions, layout, sizes,
    lengths (or none), which states and state gradients are given, return_cells (LSTM)."""
    kind = draw(st.sampled_from(COMPILED))
    B, T = draw(st.integers(1, 5)), draw(st.integers(1, 6))
    lengths = draw(st.none() | st.lists(st.integers(1, T), min_size=B, max_size=B))
    return dict(kind=kind, L=draw(st.integers(1, 3)), bi=draw(st.booleans()),
                batch_first=draw(st.booleans()), B=B, T=T, D=draw(st.integers(1, 5)),
                H=draw(st.integers(1, 6)), dtype=draw(st.sampled_from([np.float32,
                                                                         np.float64])),
                lengths=lengths, states=draw(st.booleans()), dstates=draw(st.booleans()),
                cells=cells.get(kind).family == "lstm" and draw(st.booleans()),
                seed=draw(st.integers(0, 2**16)))


@examples(150)
@given(pr=sequence_problems())
def test_sequence_layers_compiled_equals_twin(pr):
    """Stacks, directions and lengths (the compiled core's sorted, shrinking batches, reverse
    directions from each row's own end, column halves of one output and the reverse
    direction's dx added in; the twin's masks): outputs, final states, every c_t, the input
    and state gradients and every parameter gradient agree within the dtype's tolerance."""
    dt, kind, L, nd = pr["dtype"], pr["kind"], pr["L"], 2 if pr["bi"] else 1
    B, T, H = pr["B"], pr["T"], pr["H"]
    rng = np.random.default_rng(pr["seed"])
    x = rng.standard_normal((B, T, pr["D"]) if pr["batch_first"] else (T, B, pr["D"]))
    x = x.astype(dt)
    names = reg.state_names(kind)
    shape = (B, H) if L * nd == 1 else (L * nd, B, H)      # (one layer: (batch, hidden))
    states = tuple(rng.standard_normal(shape).astype(dt) if pr["states"] else None
                   for _ in names)
    dstates = tuple(rng.standard_normal(shape).astype(dt) if pr["dstates"] else None
                    for _ in names)
    lengths = None if pr["lengths"] is None else np.array(pr["lengths"])
    res = {}
    for backend in ("cython", "numpy"):
        layer = reg.make_layer(kind, pr["D"], H, num_layers=L, bidirectional=pr["bi"],
                               batch_first=pr["batch_first"], dtype=dt, backend=backend,
                               seed=pr["seed"])
        kw = {"lengths": lengths}
        if pr["cells"]:
            kw["return_cells"] = True
        got = layer(x, reg.state_arg(kind, states), **kw)
        out, finals = got[0], reg.as_states(kind, got[1])
        dout = np.random.default_rng(pr["seed"] + 1).standard_normal(out.shape).astype(dt)
        bkw = {}
        if pr["cells"]:
            bkw["dcells"] = np.random.default_rng(pr["seed"] + 2).standard_normal(
                out.shape).astype(dt)
        dx, d0 = layer.backward(dout, reg.state_arg(kind, dstates), **bkw)
        r = dict(out=out, dx=dx, **{f"{n}_n": f for n, f in zip(names, finals)},
                 **{f"d{n}0": g for n, g in zip(names, reg.as_states(kind, d0))},
                 **{"d" + k: g.copy() for k, g in layer.grads.items()})
        if pr["cells"]:
            r["cells"] = got[2]
        res[backend] = r
    for name, g in res["cython"].items():
        want = res["numpy"][name]
        if g is None or want is None:
            assert g is None and want is None, name
            continue
        assert g.dtype == np.dtype(dt) == want.dtype and g.shape == want.shape, name
        assert_twin_close(g, want, dt, name)
