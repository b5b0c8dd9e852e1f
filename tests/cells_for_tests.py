"""The cell registry (``rnnfast.cells``) for the tests: which kinds there are, which backends
run them, and how to build a problem and call forward/backward of any kind through the
functional face, the raw kernels or the layers. Every suite takes its list of cells from
here, so a new kind (or a compiled kernel for one: ``CellSpec.compiled``) reaches them all.

- ``KINDS``: every kind; ``COMPILED``: the kinds the compiled core has (tests about the
  compiled core alone, or compiled vs twin, run over these); ``TWIN_ONLY`` the others.
- ``KIND_BACKENDS``: pytest params ``(kind, backend)`` for every backend that runs the kind.
- ``REPRESENTATIVES``: one kind per family (rnn_tanh, lstm, gru), for the suites that are
  about a family's code path rather than its activation (memory).
"""
import os

import numpy as np
import pytest

import rnnfast
from rnnfast import cells
from rnnfast import functional as F

KINDS = cells.KINDS
BACKENDS = ("cython", "numpy")
COMPILED = tuple(k for k in KINDS if cells.get(k).compiled)
TWIN_ONLY = tuple(k for k in KINDS if not cells.get(k).compiled)
REPRESENTATIVES = tuple({cells.get(k).family: k for k in reversed(KINDS)}[f]
                        for f in cells.FAMILIES)
TORCH_KINDS = tuple(k for k in KINDS if cells.get(k).torch_class is not None)


def spec(kind):
    return cells.get(kind)


def backends_for(kind):
    """The backends that have kernels for ``kind``: the twin always, the compiled core when
    the registry says so."""
    return tuple(b for b in BACKENDS if b == "numpy" or cells.get(kind).compiled)


def default_backend(kind):
    """The compiled core when it has the kind, else the twin."""
    return backends_for(kind)[0]


def kind_backends(kinds=KINDS, backends=BACKENDS):
    """pytest params ``(kind, backend)``: each kind on each of ``backends`` that runs it."""
    return [pytest.param(k, b, id=f"{k}-{b}") for k in kinds for b in backends_for(k)
            if b in backends]


KIND_BACKENDS = kind_backends()


def other_kind(kind, backend, *, family=True):
    """Another kind the backend runs, of another family (``family=True``) or of the same
    family (another nonlinearity), or None."""
    s = cells.get(kind)
    for k in KINDS:
        o = cells.get(k)
        if k != kind and backend in backends_for(k) and (o.family != s.family) == family:
            return k
    return None


# ----------------------------------------------------------------------------- names

def state_names(kind):
    return cells.get(kind).states                           # ("h",) or ("h", "c")


def param_names(kind):
    return cells.get(kind).params                           # ("Wx", "Wh", "b"(, "b_hn"))


def result_names(kind):
    """Every result of a forward + backward, in the kernels' order."""
    s = cells.get(kind)
    return (("out",) + tuple(f"{n}_n" for n in s.states) + ("dx",)
            + tuple(f"d{n}0" for n in s.states) + tuple("d" + n for n in s.params))


# ----------------------------------------------------------------------------- problems

def random_problem(kind, B, T, D, H, dtype, *, batch_first=True, seed=0, scale=None):
    """Inputs, states, weights and output gradients for one call, PyTorch-scaled weights
    (U(-1/sqrt(H), 1/sqrt(H))) so that the recurrence is stable and comparisons are
    well conditioned. Every kind gets every state (c0, dc_n too), drawn in one order; the
    parameters beyond Wx, Wh, b (the GRU's b_hn) are drawn after everything else."""
    s = cells.get(kind)
    rng = np.random.default_rng(seed)
    k = 1 / np.sqrt(H) if scale is None else scale
    shapes = s.param_shapes(D, H)
    xshape = (B, T, D) if batch_first else (T, B, D)
    p = {
        "x": rng.standard_normal(xshape),
        "h0": rng.standard_normal((B, H)) * 0.5,
        "c0": rng.standard_normal((B, H)) * 0.5,
        "Wx": rng.uniform(-k, k, shapes["Wx"]),
        "Wh": rng.uniform(-k, k, shapes["Wh"]),
        "b": rng.uniform(-k, k, shapes["b"]),
        "dout": rng.standard_normal(xshape[:2] + (H,)),
        "dh_n": rng.standard_normal((B, H)),
        "dc_n": rng.standard_normal((B, H)),
    }
    for name in s.params[3:]:
        p[name] = rng.uniform(-k, k, shapes[name])
    return {name: a.astype(dtype) for name, a in p.items()}


# ----------------------------------------------------------------------------- calls

def kernel_forward(module, kind, x, states, weights, batch_first=True, training=True,
                   **kwargs):
    """``module.<family>_forward`` (``functional`` with ``backend=`` in kwargs, or a raw
    kernel module) with the kind's arguments; returns ``(out, finals, workspace)``."""
    s = cells.get(kind)
    extra = (s.nonlinearity,) if s.family == "rnn" else ()
    res = getattr(module, f"{s.family}_forward")(x, *states, *weights, *extra, batch_first,
                                                 training, **kwargs)
    return res[0], tuple(res[1:-1]), res[-1]


def kernel_backward(module, kind, dout, dstates, x, Wx, Wh, workspace, batch_first=True,
                    **kwargs):
    """``module.<family>_backward``; returns ``(dx, dstates0, dparams)`` (tuples in the
    registry's state and parameter orders)."""
    s = cells.get(kind)
    extra = (s.nonlinearity,) if s.family == "rnn" else ()
    res = getattr(module, f"{s.family}_backward")(dout, *dstates, x, Wx, Wh, workspace,
                                                  *extra, batch_first, **kwargs)
    n = len(s.states)
    return res[0], tuple(res[1:1 + n]), tuple(res[1 + n:])


def forward(kind, p, backend, *, batch_first=True, states="hc", training=True):
    """``(out, finals, workspace)`` of one checked forward (``rnnfast.functional``); finals
    is (h_n,) or (h_n, c_n). ``states``: which of h0 ("h") and c0 ("c") to pass (the
    others are None)."""
    given = tuple(p[n + "0"] if n in states else None for n in state_names(kind))
    weights = tuple(p[n] for n in param_names(kind))
    return kernel_forward(F, kind, p["x"], given, weights, batch_first, training,
                          backend=backend)


def backward(kind, p, ws, backend, *, batch_first=True, dout=True, dstates="hc", x=None,
             Wx=None):
    """The gradients of one checked backward, by name. ``dout``: pass dout or None;
    ``dstates``: which of dh_n ("h") and dc_n ("c") to pass (the others are None)."""
    x = p["x"] if x is None else x
    Wx = p["Wx"] if Wx is None else Wx
    g_out = p["dout"] if dout else None
    given = tuple(p[f"d{n}_n"] if n in dstates else None for n in state_names(kind))
    dx, d0, dparams = kernel_backward(F, kind, g_out, given, x, Wx, p["Wh"], ws, batch_first,
                                      backend=backend)
    res = {"dx": dx}
    res.update({f"d{n}0": g for n, g in zip(state_names(kind), d0)})
    res.update({"d" + n: g for n, g in zip(param_names(kind), dparams)})
    return res


def run(kind, p, backend, *, batch_first=True, states="hc", dout=True, dstates="hc"):
    """Forward then backward; every result by name."""
    out, finals, ws = forward(kind, p, backend, batch_first=batch_first, states=states)
    res = dict(out=out)
    res.update({f"{n}_n": f for n, f in zip(state_names(kind), finals)})
    res.update(backward(kind, p, ws, backend, batch_first=batch_first, dout=dout,
                        dstates=dstates))
    return res


# ----------------------------------------------------------------------------- layers

def make_layer(kind, input_size, hidden_size, **kwargs):
    """A layer of ``kind``; ``backend`` defaults to ``default_backend(kind)``."""
    s = cells.get(kind)
    kwargs.setdefault("backend", default_backend(kind))
    cls = getattr(rnnfast, s.layer)
    if s.family == "rnn":
        return cls(input_size, hidden_size, s.nonlinearity, **kwargs)
    return cls(input_size, hidden_size, **kwargs)


def layer_class(kind):
    return getattr(rnnfast, cells.get(kind).layer)


def state_arg(kind, states):
    """What a layer takes for its states: ``h0`` (RNN, GRU), or the pair ``(h0, c0)`` or None
    (LSTM). ``states``: a tuple in the registry's order, entries possibly None."""
    if len(cells.get(kind).states) == 1:
        return states[0]
    return None if all(s is None for s in states) else tuple(states)


def as_states(kind, value):
    """A layer's state result (``h`` or ``(h, c)``) as a tuple."""
    return (value,) if len(cells.get(kind).states) == 1 else tuple(value)


def layer_forward(layer, x, states=None):
    """``(out, finals)`` of a layer's forward; ``states`` a tuple (or None: no state)."""
    kind = layer._spec.kind
    states = (None,) * len(state_names(kind)) if states is None else states
    out, finals = layer(x, state_arg(kind, states))
    return out, as_states(kind, finals)


def layer_backward(layer, dout, dstates=None):
    """``(dx, dstates0)`` of a layer's backward; ``dstates`` a tuple (or None)."""
    kind = layer._spec.kind
    dstates = (None,) * len(state_names(kind)) if dstates is None else dstates
    dx, d0 = layer.backward(dout, state_arg(kind, dstates))
    return dx, as_states(kind, d0)


def problem_states(kind, p, prefix="", suffix="0"):
    """The states of a problem dict as a tuple: ``("h0", "c0")`` or ``("dh_n", ...)``."""
    return tuple(p[f"{prefix}{n}{suffix}"] for n in state_names(kind))


# ----------------------------------------------------------------------------- gradients

def central_difference(f, a, idx, eps=1e-6):
    """d f() / d a[idx] by a central difference (``a[idx]`` perturbed in place and
    restored)."""
    old = a[idx]
    a[idx] = old + eps
    up = f()
    a[idx] = old - eps
    down = f()
    a[idx] = old
    return (up - down) / (2 * eps)


def central_differences(f, a, eps=1e-6):
    """d f() / d a by central differences at every entry of ``a`` (float64 result)."""
    g = np.zeros(a.shape, dtype=np.float64)
    for i in np.ndindex(a.shape):
        g[i] = central_difference(f, a, i, eps)
    return g


# ----------------------------------------------------------------------------- property tests

def property_settings(n):
    """Hypothesis settings for the property test files: ``n`` examples, scaled by
    RNNFAST_PROPERTY_EXAMPLES (a longer local soak), no deadline (first calls pay imports;
    timing is not the point), no example database (nothing written into the checkout),
    derandomized when CI is set (a run is reproducible)."""
    from hypothesis import HealthCheck, settings

    scale = float(os.environ.get("RNNFAST_PROPERTY_EXAMPLES", "1"))
    return settings(deadline=None, database=None, derandomize=bool(os.environ.get("CI")),
                    suppress_health_check=[HealthCheck.too_slow], print_blob=True,
                    max_examples=max(1, int(n * scale)))
