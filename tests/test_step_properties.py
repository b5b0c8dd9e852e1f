"""Property tests of ``layer.step()``, the streaming step: its compiled lane
(``StepKernel.step_ready``: arguments taken as they are) against the checked path, bitwise,
and both against the NumPy twin.

Hypothesis draws a layer (every kind, one or two layers, float32 or float64, stateful or
not, tiny sizes) and a sequence of operations: steps whose input is C-contiguous, Fortran,
strided, a list or of the other dtype, whose state is None, the last step's result or fresh
arrays (C, Fortran or the other dtype), and whose ``out`` is None, the carried state itself
(the step in place), new arrays, arrays of the other dtype or read-only ones (errors); between
steps, parameters written in place and announced (``params_changed()``), replaced by other
arrays, a switch to training mode and back, ``reset_state()``. Three layers with the same
weights run the same operations: the compiled one with its step lane, the compiled one
without it (the lane removed from its step kernels) and the twin (``backend="numpy"``).
After every operation the first two agree to the bit (results, or the error's type and
message), and the twin within conftest's tolerance (or the same error type). ~200 examples,
a few seconds; ``RNNFAST_PROPERTY_EXAMPLES`` scales the count; derandomized on CI."""
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from rnnfast import cells
from cells_for_tests import KINDS, make_layer, property_settings
from conftest import ATOL, RTOL

PROFILE = property_settings(200)
COMPILED_STEP = tuple(k for k in KINDS if cells.get(k).compiled)

# (weighted towards what the lane takes as it is: C-contiguous arrays of the layer's dtype)
STEP = st.tuples(st.just("step"),
                 st.sampled_from(["c", "c", "c", "fortran", "strided", "list", "other_dtype"]),
                 st.sampled_from(["none", "carried", "carried", "fresh", "fresh",
                                  "fresh_fortran", "fresh_other_dtype"]),
                 st.sampled_from(["none", "none", "state", "state", "new", "new",
                                  "other_dtype", "readonly"]))
OTHER = st.tuples(st.sampled_from(["params_changed", "params_replaced", "train_eval",
                                   "reset"]), st.integers(0, 8))


@st.composite
def step_problems(draw):
    return dict(kind=draw(st.sampled_from(COMPILED_STEP)),
                num_layers=draw(st.sampled_from([1, 1, 1, 2])),
                dtype=draw(st.sampled_from([np.float32, np.float64])),
                stateful=draw(st.sampled_from([False, False, True])),
                B=draw(st.integers(1, 3)), D=draw(st.integers(1, 4)), H=draw(st.integers(1, 5)),
                ops=draw(st.lists(st.one_of(STEP, STEP, OTHER), min_size=1, max_size=6)),
                seed=draw(st.integers(0, 2**32 - 1)))


def _other(dtype):
    return np.float64 if dtype == np.float32 else np.float32


def _layout(a, how, dtype):
    if how == "fortran":
        return np.asfortranarray(a)
    if how == "strided":
        return np.repeat(a, 2, axis=-1)[..., ::2]
    if how == "list":
        return a.tolist()
    if how == "other_dtype":
        return a.astype(_other(dtype))
    return a


def _without_lane(layer):
    """``layer`` whose step kernels lack the compiled lane (every step: the checked path)."""
    made = layer._make_step_kernels

    def checked_only():
        held, kernels, _ = made()
        layer._step_kernels = (held, kernels, None)
        return layer._step_kernels
    layer._make_step_kernels = checked_only
    return layer


def _states(value, n):
    return (value,) if n == 1 else tuple(value)


def _run(pr, backend, lane=True):
    kind, dtype = pr["kind"], pr["dtype"]
    layer = make_layer(kind, pr["D"], pr["H"], num_layers=pr["num_layers"], dtype=dtype,
                       stateful=pr["stateful"], backend=backend, seed=5).eval()
    if not lane:
        _without_lane(layer)
    n = len(cells.get(kind).states)
    shape = layer._state_shape(pr["B"])
    rng = np.random.default_rng(pr["seed"])
    carried = None
    got = []
    for op in pr["ops"]:
        if op[0] == "params_changed":
            name = layer._names[op[1] % len(layer._names)]
            layer.params[name] *= 0.5
            layer.params_changed()
        elif op[0] == "params_replaced":
            name = layer._names[op[1] % len(layer._names)]
            layer.params[name] = layer.params[name] * 1.5
        elif op[0] == "train_eval":
            layer.train()
            layer.eval()
        elif op[0] == "reset":
            if pr["stateful"]:
                layer.reset_state()
        else:
            _, x_how, state_how, out_how = op
            x_t = _layout(rng.standard_normal((pr["B"], pr["D"])).astype(dtype), x_how, dtype)
            fresh = tuple(rng.standard_normal(shape).astype(dtype) for _ in range(n))
            state = {"none": None, "carried": carried, "fresh": fresh,
                     "fresh_fortran": tuple(np.asfortranarray(s) for s in fresh),
                     "fresh_other_dtype": tuple(s.astype(_other(dtype)) for s in fresh),
                     }[state_how]
            if state is not None and n == 1:
                state = state[0]
            out = None
            if out_how == "state" and isinstance(state, (tuple, np.ndarray)):
                out = state                     # in place
            elif out_how == "new":
                out = tuple(np.empty(shape, dtype) for _ in range(n))
            elif out_how == "other_dtype":
                out = tuple(np.empty(shape, _other(dtype)) for _ in range(n))
            elif out_how == "readonly":
                out = tuple(np.empty(shape, dtype) for _ in range(n))
                for o in out:
                    o.flags.writeable = False
            if isinstance(out, tuple) and n == 1:
                out = out[0]
            try:
                h_t, new = layer.step(x_t, state, out=out)
            except (ValueError, TypeError) as e:
                got.append((type(e), str(e)))
                continue
            states = _states(new, n)
            got.append([np.array(h_t, copy=True)] + [np.array(s, copy=True) for s in states])
            carried = tuple(np.array(s, copy=True) for s in states)
    return got


@PROFILE
@given(pr=step_problems())
def test_step_lane_equals_checked_path_and_twin(pr):
    fast, checked = _run(pr, "cython"), _run(pr, "cython", lane=False)
    twin = _run(pr, "numpy")
    assert len(fast) == len(checked) == len(twin)
    for i, (a, b, c) in enumerate(zip(fast, checked, twin)):
        if isinstance(a, tuple) or isinstance(b, tuple):
            assert a == b, f"op {i}: {a} != {b}"
            assert isinstance(c, tuple) and c[0] is a[0], f"op {i}: twin {c} vs {a}"
            continue
        assert not isinstance(c, tuple), f"op {i}: twin raised {c}"
        for u, v, w in zip(a, b, c):
            assert u.dtype == v.dtype == w.dtype and u.shape == v.shape == w.shape, f"op {i}"
            np.testing.assert_array_equal(u, v, err_msg=f"op {i}")
            np.testing.assert_allclose(u, w, rtol=RTOL[pr["dtype"]] * 10,
                                       atol=ATOL[pr["dtype"]] * 10, err_msg=f"op {i}")
