"""Property tests of the layers' fast lanes: whatever a user hands a compiled layer, the lanes
(``BufferedKernels.layer_forward``/``layer_backward``, ``stack_forward``/``stack_backward``
and the stacked path's gradients written in place) give bitwise what the checked path gives.

Hypothesis draws a layer (every compiled kind, one or two layers, one or two directions,
``batch_first``, float32 or float64, tiny sizes), which arguments are given (initial
states, dout, state gradients, lengths, ``accumulate``), whether the layer is stateful or
in eval mode, at which call an LSTM returns its cells (``return_cells``, with ``dcells`` or
not), how many forward(+backward) calls follow each other, and one arrangement of the
arguments or of ``layer.grads``/``layer.params`` that the lanes must either take as it is
or hand to the checked path: gradients aliasing a weight,
another gradient, dout or a state gradient; gradients that are Fortran-ordered, read-only or
a view into a larger buffer; an input that is Fortran-ordered, strided, a list or of
another dtype; a strided dout; parameters replaced by copies, or written in place, between
calls. Two copies of the same seeded layer run the same calls, one with the lanes (the
default) and one without (``layer._fast = False``); every output, state, input gradient,
state gradient and ``grads`` entry after every call must be the same to the bit, and so must
any error (its type and message). Neither may modify an argument the arrangement does not
alias into ``grads``.

Budget: a few seconds on 2 cores (~300 examples); ``RNNFAST_PROPERTY_EXAMPLES`` scales the
count for a longer local soak. On CI (``CI`` set) the examples are derandomized."""
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from cells_for_tests import COMPILED, make_layer, property_settings, state_arg, state_names

PROFILE = property_settings(300)

# what is done to the arguments (before the first call) or between calls
ARRANGEMENTS = (
    "plain", "grads_alias_weight", "grads_alias_other_grad", "grads_overlap",
    "grads_alias_dout", "grads_alias_dh_n", "grads_fortran", "grads_readonly",
    "grads_in_big_buffer", "x_fortran", "x_strided", "x_list", "x_other_dtype",
    "dout_strided", "states_fortran", "params_replaced", "params_written",
)
# the arrangements that make grads share memory with an argument (it may then change)
ALIASING = ("grads_alias_dout", "grads_alias_dh_n")


@st.composite
def lane_problems(draw):
    num_layers = draw(st.sampled_from([1, 1, 2]))
    B, T = draw(st.integers(1, 4)), draw(st.integers(1, 5))
    lengths = draw(st.one_of(st.none(), st.lists(st.integers(1, T), min_size=B, max_size=B)))
    return dict(
        kind=draw(st.sampled_from(COMPILED)), num_layers=num_layers,
        bidirectional=draw(st.booleans()), batch_first=draw(st.booleans()),
        dtype=draw(st.sampled_from([np.float32, np.float64])),
        B=B, T=T, D=draw(st.integers(1, 4)), H=draw(st.integers(1, 5)),
        lengths=lengths, lengths_type=draw(st.sampled_from(["intp", "int32", "list"])),
        states=draw(st.booleans()), dstates=draw(st.booleans()),
        dout=draw(st.sampled_from([True, True, False])),
        accumulate=draw(st.booleans()), calls=draw(st.integers(1, 3)),
        stateful=draw(st.booleans()), eval=draw(st.sampled_from([False, False, True])),
        # (the LSTM) return_cells at this call (if there is one), with dcells or not
        cells_at=draw(st.sampled_from([None, 0, 1, 2])), dcells=draw(st.booleans()),
        arrangement=draw(st.sampled_from(ARRANGEMENTS)),
        pick=draw(st.integers(0, 2**16)), seed=draw(st.integers(0, 2**32 - 1)),
    )


def _arguments(pr, layer):
    """The calls' arguments (x, states, dout, dstates, lengths), seeded."""
    rng = np.random.default_rng(pr["seed"])
    dtype, B, T, H = pr["dtype"], pr["B"], pr["T"], pr["H"]
    nd = 2 if pr["bidirectional"] else 1
    lead = (B, T) if pr["batch_first"] else (T, B)
    x = rng.standard_normal(lead + (pr["D"],)).astype(dtype)
    dout = rng.standard_normal(lead + (nd * H,)).astype(dtype) if pr["dout"] else None
    shape = layer._state_shape(B)
    n = len(state_names(pr["kind"]))

    def states(given):
        return tuple(rng.standard_normal(shape).astype(dtype) if given else None
                     for _ in range(n))
    lengths = pr["lengths"]
    if lengths is not None and pr["lengths_type"] != "list":
        lengths = np.array(lengths, np.intp if pr["lengths_type"] == "intp" else np.int32)
    dcells = rng.standard_normal(lead + (nd * H,)).astype(dtype) if pr["dcells"] else None
    return dict(x=x, states=states(pr["states"]), dout=dout, dstates=states(pr["dstates"]),
                lengths=lengths, dcells=dcells)


def _arrange(pr, layer, args):
    """The drawn arrangement, before the first call, on this layer and its arguments."""
    how = pr["arrangement"]
    names = layer._names
    name = names[pr["pick"] % len(names)]
    other = names[(pr["pick"] // len(names)) % len(names)]
    g = layer.grads
    if how == "grads_alias_weight":
        if layer.params[other].shape == g[name].shape:
            g[name] = layer.params[other]
        else:
            g[name] = layer.params[name]
    elif how == "grads_alias_other_grad" and name != other and g[name].shape == g[other].shape:
        g[name] = g[other]
    elif how == "grads_overlap":
        # two gradients in one buffer, the second starting inside the first
        first, second = g[name], g[other]
        block = np.zeros(first.size + second.size, layer.dtype)
        start = 1 if first.size > 1 and name != other else first.size
        g[name] = block[:first.size].reshape(first.shape)
        if name != other:
            g[other] = block[start:start + second.size].reshape(second.shape)
    elif how == "grads_alias_dout" and args["dout"] is not None:
        flat = args["dout"].reshape(-1)
        if flat.size >= g[name].size:
            g[name] = flat[:g[name].size].reshape(g[name].shape)
    elif how == "grads_alias_dh_n" and args["dstates"][0] is not None:
        flat = args["dstates"][0].reshape(-1)
        if flat.size >= g[name].size:
            g[name] = flat[:g[name].size].reshape(g[name].shape)
    elif how == "grads_fortran":
        g[name] = np.asfortranarray(np.zeros_like(g[name]))
    elif how == "grads_readonly":
        g[name] = g[name].copy()
        g[name].flags.writeable = False
    elif how == "grads_in_big_buffer":
        # C-contiguous views at odd offsets of one larger buffer: apart from each other
        sizes = [g[n].size for n in names]
        big = np.zeros(sum(sizes) + len(sizes) + 1, layer.dtype)
        at = 1
        for n, size in zip(names, sizes):
            g[n] = big[at:at + size].reshape(g[n].shape)
            at += size + 1
    elif how == "x_fortran":
        args["x"] = np.asfortranarray(args["x"])
    elif how == "x_strided":
        big = np.repeat(args["x"], 2, axis=-1)
        args["x"] = big[..., ::2]
    elif how == "x_list":
        args["x"] = args["x"].tolist()
    elif how == "x_other_dtype":
        args["x"] = args["x"].astype(np.float64 if layer.dtype == np.float32 else np.float32)
    elif how == "dout_strided" and args["dout"] is not None:
        args["dout"] = np.repeat(args["dout"], 2, axis=-1)[..., ::2]
    elif how == "states_fortran":
        args["states"] = tuple(None if s is None else np.asfortranarray(s)
                               for s in args["states"])


def _between(pr, layer, call):
    """The drawn change between two calls (after call ``call``'s backward)."""
    how = pr["arrangement"]
    name = layer._names[(pr["pick"] + call) % len(layer._names)]
    if how == "params_replaced":
        layer.params[name] = layer.params[name].copy()
    elif how == "params_written":
        layer.params[name] *= 0.5


def _copies(values):
    return [None if v is None else np.array(v, copy=True) for v in values]


def _run(pr, fast):
    kind = pr["kind"]
    layer = make_layer(kind, pr["D"], pr["H"], num_layers=pr["num_layers"],
                       bidirectional=pr["bidirectional"], batch_first=pr["batch_first"],
                       dtype=pr["dtype"], stateful=pr["stateful"], backend="cython", seed=3)
    layer._fast = fast
    if pr["eval"]:
        layer.eval()
    args = _arguments(pr, layer)
    _arrange(pr, layer, args)
    before = {k: _copies(v if isinstance(v, tuple) else (v,)) for k, v in args.items()
              if k != "lengths" and not isinstance(v, list)}
    got = []
    for call in range(pr["calls"]):
        cells = kind == "lstm" and pr["cells_at"] == call
        try:
            done = layer(args["x"], state_arg(kind, args["states"]), lengths=args["lengths"],
                         **({"return_cells": True} if cells else {}))
            out, finals = done[0], done[1]
            got += _copies((out,) + (finals if isinstance(finals, tuple) else (finals,))
                           + tuple(done[2:]))
            if not pr["eval"]:
                more = {"dcells": args["dcells"]} if cells else {}
                dx, d0 = layer.backward(args["dout"], state_arg(kind, args["dstates"]),
                                        accumulate=pr["accumulate"], **more)
                got += _copies((dx,) + (d0 if isinstance(d0, tuple) else (d0,)))
        except (ValueError, TypeError) as e:
            got.append((type(e), str(e)))
        got += _copies(layer.grads[n] for n in layer._names)
        _between(pr, layer, call)
    if pr["arrangement"] not in ALIASING:     # no argument was modified
        for k, values in before.items():
            now = args[k] if isinstance(args[k], tuple) else (args[k],)
            for a, b in zip(values, now):
                if a is not None:
                    np.testing.assert_array_equal(np.asarray(b), a, err_msg=f"{k} modified")
    return got


def _same(fast, checked):
    assert len(fast) == len(checked)
    for i, (u, v) in enumerate(zip(fast, checked)):
        if isinstance(u, tuple) or isinstance(v, tuple):
            assert u == v, f"entry {i}: {u} != {v}"
        elif u is None or v is None:
            assert u is None and v is None, f"entry {i}"
        else:
            assert u.dtype == v.dtype and u.shape == v.shape, f"entry {i}"
            np.testing.assert_array_equal(u, v, err_msg=f"entry {i}")


@PROFILE
@given(pr=lane_problems())
def test_lanes_equal_the_checked_path_bitwise(pr):
    _same(_run(pr, True), _run(pr, False))
