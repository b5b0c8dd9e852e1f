"""Input validation and conversion: every user-facing error of rnnfast is raised here.

The kernels (``rnnfast._core`` and ``rnnfast.reference``) trust their contract;
the functions below establish it: floating arrays of one dtype, C-contiguous,
with consistent shapes, sizes that fit 32-bit BLAS indices, and a workspace
made by the same backend for the same call.
"""
import numpy as np

from . import cells

BACKENDS = ("cython", "numpy")
NONLINEARITIES = cells.NONLINEARITIES
_INT32_MAX = 2**31 - 1
# dtype instances, not the scalar types: `dt in (np.float32, np.float64)` builds a dtype from
# each type on every comparison (~0.3 us, a percent of a tiny forward)
FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_dtype(dtype):
    """float32 or float64 as a NumPy dtype."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be np.float32 or np.float64, got {dtype!r}") from None
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"dtype must be np.float32 or np.float64, got {dt}")
    return FLOAT_DTYPES[FLOAT_DTYPES.index(dt)]     # the plain dtype (no metadata)


def check_backend(backend):
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return backend


def check_nonlinearity(nonlinearity):
    if nonlinearity not in NONLINEARITIES:
        raise ValueError(f"nonlinearity must be one of {NONLINEARITIES}, got {nonlinearity!r}")
    return nonlinearity


def check_compiled(spec, backend):
    """``backend``, refused with NotImplementedError when it is the compiled core and the
    compiled core has no kernels for ``spec`` (the NumPy twin has every cell)."""
    check_backend(backend)
    if backend == "cython" and not spec.compiled:
        what = (f"an RNN with nonlinearity={spec.nonlinearity!r}" if spec.family == "rnn"
                else f"the {spec.layer}")
        raise NotImplementedError(
            f"the compiled core (backend='cython') has no kernels for {what} yet; "
            f"use backend='numpy' (the NumPy twin: the same math, slower)")
    return backend


def check_size(value, name):
    """A positive int such as input_size or hidden_size."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be a positive int, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be a positive int, got {value}")
    return int(value)


def as_numeric_array(a, name):
    """``a`` as an ndarray of a real numeric dtype, neither copied nor converted.

    Real floating, integer and bool inputs pass; anything else is a TypeError. The
    checks below validate shapes and sizes on this view *before* converting, so that
    a wrong or too large input (a huge broadcast view, say) is rejected without first
    allocating and filling a copy of it.
    """
    if type(a) is np.ndarray and a.dtype.kind in "fiub":
        return a                                    # the common case, without a call
    if a is None:
        raise TypeError(f"{name} must be an array of numbers, got None")
    try:
        arr = np.asarray(a)
    except (ValueError, TypeError) as e:
        raise TypeError(f"{name} must be an array of numbers, could not convert "
                        f"{type(a).__name__}: {e}") from None
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{name} must have a real numeric dtype (floating, integer or bool), "
                        f"got dtype {arr.dtype}")
    return arr


def as_float_array(a, name, dtype):
    """``a`` as a C-contiguous array of ``dtype``; no copy when it already is one.

    Real floating, integer and bool inputs convert; anything else is a TypeError.
    """
    return np.ascontiguousarray(as_numeric_array(a, name), dtype=dtype)


def _shape_str(names, sizes):
    return "(" + ", ".join(f"{n}={s}" for n, s in zip(names, sizes)) + ")"


def check_sequence(x, name, input_size, batch_first, dtype, *, hidden=None, gates=1):
    """A 3-D sequence array; returns ``(x, batch, seq_len)``.

    With ``hidden``, the problem must also fit 32-bit BLAS indices (check_blas_size);
    every check runs before ``x`` is converted.
    """
    x = as_numeric_array(x, name)
    layout = ("batch", "seq_len", "features") if batch_first else ("seq_len", "batch", "features")
    if x.ndim != 3:
        expected = "(" + ", ".join(layout[:2]) + f", features={input_size})"
        raise ValueError(f"{name} must be 3-D, expected shape {expected} "
                         f"(batch_first={batch_first}), got shape {x.shape}")
    batch, seq_len = (x.shape[0], x.shape[1]) if batch_first else (x.shape[1], x.shape[0])
    if x.shape[2] != input_size:
        raise ValueError(f"{name} must have {input_size} features in its last axis, "
                         f"expected shape {_shape_str(layout, x.shape[:2] + (input_size,))}, "
                         f"got shape {x.shape}")
    if batch < 1:
        raise ValueError(f"{name} must have a batch size of at least 1, got shape {x.shape}")
    if hidden is not None:
        check_blas_size(batch, seq_len, input_size, hidden, gates)
    return as_float_array(x, name, dtype), batch, seq_len


def check_state(s, name, batch, hidden, dtype):
    """None, or a ``(batch, hidden)`` state array."""
    if s is None:
        return None
    s = as_numeric_array(s, name)
    if s.shape != (batch, hidden):
        raise ValueError(f"{name} must have shape (batch={batch}, hidden_size={hidden}) "
                         f"= {(batch, hidden)}, got shape {s.shape}")
    return as_float_array(s, name, dtype)


def check_weights(spec, weights, dtype=None):
    """Weights in the right-multiplying layout; returns them checked and converted.

    ``weights`` lists the arrays in ``spec.params`` order; it may stop early (backward
    takes only Wx and Wh), and a None entry after those two is returned as None (not
    checked).
    Wh fixes the hidden size and Wx the input size; every other parameter must have the
    shape the registry gives it (``b (G*hidden,)``, ``b_hn (hidden,)``).
    The dtype is ``dtype`` if given, else Wx's own when it is float32/float64,
    else float64.
    """
    gates = spec.gates
    Wx, Wh = weights[0], weights[1]
    if dtype is None:
        wx_dtype = np.asarray(Wx).dtype
        dtype = FLOAT_DTYPES[0] if wx_dtype == FLOAT_DTYPES[0] else FLOAT_DTYPES[1]
    # Wx and Wh are always needed (None is a TypeError); a later entry may be None
    arrays = [None if w is None and k >= 2 else as_numeric_array(w, name)
              for k, (name, w) in enumerate(zip(spec.params, weights))]
    Wx, Wh = arrays[0], arrays[1]
    if Wh.ndim != 2 or Wh.shape[0] < 1 or Wh.shape[1] != gates * Wh.shape[0]:
        raise ValueError(f"Wh must have shape (hidden, {gates}*hidden), got shape {Wh.shape}")
    hidden = Wh.shape[0]
    if Wx.ndim != 2 or Wx.shape[0] < 1 or Wx.shape[1] != gates * hidden:
        raise ValueError(f"Wx must have shape (input_size, {gates}*hidden) = "
                         f"(input_size, {gates * hidden}), got shape {Wx.shape}")
    shapes = spec.param_shapes(Wx.shape[0], hidden)
    for name, a in zip(spec.params[2:], arrays[2:]):
        if a is not None and a.shape != shapes[name]:
            raise ValueError(f"{name} must have shape {shapes[name]}, got shape {a.shape}")
    return tuple(None if a is None else as_float_array(a, name, dtype)
                 for name, a in zip(spec.params, arrays))


def check_params(params, spec, input_size, hidden, dtype, suffix=""):
    """A layer's ``params`` dict (its entries may have been replaced by the user);
    returns its arrays checked, in ``spec.params`` order. Each entry must be there and
    have the layer's own shape, and an error names the entry the user replaced,
    ``params['Wh']`` say. ``suffix``: the entries of another layer or direction
    (``"_l1_reverse"``: ``params['Wh_l1_reverse']``)."""
    for base, shape in spec.param_shapes(input_size, hidden).items():
        name = base + suffix
        if name not in params:
            raise ValueError(f"params[{name!r}] is missing: it must be an array of shape "
                             f"{shape} (input_size={input_size}, hidden_size={hidden}), "
                             f"got no entry (params has {sorted(params)})")
        got = as_numeric_array(params[name], f"params[{name!r}]").shape
        if got != shape:
            raise ValueError(f"params[{name!r}] must have shape {shape} (input_size="
                             f"{input_size}, hidden_size={hidden}), got shape {got}")
    try:
        return check_weights(spec, tuple(params[name + suffix] for name in spec.params),
                             dtype=dtype)
    except (TypeError, ValueError) as e:
        if not suffix:
            raise
        raise type(e)(f"{e} (params with suffix {suffix!r})") from None


def check_lengths(lengths, batch, seq_len):
    """None, or one sequence length per batch row, each an integer in 1 .. seq_len (any
    order); returned as an intp array."""
    if lengths is None:
        return None
    if (type(lengths) is np.ndarray and lengths.dtype == np.intp and lengths.shape == (batch,)
            and batch and 1 <= lengths.min() and lengths.max() <= seq_len):
        return lengths                      # (the common case, quickly)
    if isinstance(lengths, np.ndarray):
        a = lengths
    else:
        try:
            a = np.asarray(lengths)
        except (TypeError, ValueError):
            a = np.asarray(lengths, dtype=object)
    if a.dtype == np.bool_ or not (np.issubdtype(a.dtype, np.integer)
                                   or (a.dtype == object and all(
                                       isinstance(v, (int, np.integer))
                                       and not isinstance(v, (bool, np.bool_))
                                       for v in a.ravel()))):
        raise TypeError(f"lengths must be integers (one per batch row), got "
                        f"{'booleans' if a.dtype == np.bool_ else f'dtype {a.dtype}'}")
    if a.ndim != 1 or a.shape[0] != batch:
        raise ValueError(f"lengths must have one entry per batch row, expected shape "
                         f"({batch},), got shape {a.shape}")
    a = a.astype(np.intp)
    if batch and (a.min() < 1 or a.max() > seq_len):
        bad = a[(a < 1) | (a > seq_len)][0]
        raise ValueError(f"lengths must be between 1 and seq_len={seq_len}, got {int(bad)} "
                         f"(min {int(a.min())}, max {int(a.max())})")
    return a


def check_layer_state(s, name, layers, batch, hidden, dtype):
    """None, or a stacked/bidirectional layer's ``(num_layers * num_directions, batch,
    hidden)`` state array, C-contiguous."""
    if s is None:
        return None
    s = as_numeric_array(s, name)
    if s.shape != (layers, batch, hidden):
        raise ValueError(f"{name} must have shape (num_layers * num_directions={layers}, "
                         f"batch={batch}, hidden_size={hidden}) = {(layers, batch, hidden)}, "
                         f"got shape {s.shape}")
    return as_float_array(s, name, dtype)


def check_step_input(x_t, input_size, dtype):
    """A streaming step's input: ``(batch, input_size)``, C-contiguous, the layer's dtype
    (no copy when it already is one)."""
    if (type(x_t) is np.ndarray and x_t.dtype == dtype and x_t.ndim == 2
            and x_t.shape[1] == input_size and x_t.shape[0] >= 1 and x_t.flags.c_contiguous):
        return x_t
    x_t = as_numeric_array(x_t, "x_t")
    if x_t.ndim != 2 or x_t.shape[1] != input_size or x_t.shape[0] < 1:
        raise ValueError(f"x_t must have shape (batch, input_size={input_size}) (one time "
                         f"step), got shape {x_t.shape}")
    return as_float_array(x_t, "x_t", dtype)


def check_step_out(outs, shape, dtype):
    """step()'s ``out=`` arrays: writable C-contiguous arrays of the state's shape and the
    layer's dtype (written in place, so nothing is converted)."""
    for k, o in enumerate(outs):
        name = "out" if len(outs) == 1 else f"out[{k}]"
        if not isinstance(o, np.ndarray):
            raise TypeError(f"{name} must be an ndarray of shape {shape}, got "
                            f"{type(o).__name__}")
        if o.shape != tuple(shape) or o.dtype != dtype or not o.flags.c_contiguous \
                or not o.flags.writeable:
            raise ValueError(f"{name} must be a writable C-contiguous {np.dtype(dtype)} array "
                             f"of shape {tuple(shape)}, got a {o.dtype} array of shape "
                             f"{o.shape}" + ("" if o.flags.writeable else " (read-only)"))
    return outs


def check_output_grad(dout, name, shape, dtype):
    """None, or the gradient of a forward's output: its shape exactly."""
    if dout is None:
        return None
    dout = as_numeric_array(dout, name)
    if dout.shape != tuple(shape):
        raise ValueError(f"{name} must have the shape of the forward output {tuple(shape)}, "
                         f"got shape {dout.shape}")
    return as_float_array(dout, name, dtype)


def check_grads_store(grads, shapes, dtype, owner="layer"):
    """The arrays of ``grads`` (a layer's ``grads`` dict) that a backward will write into.

    ``layer.grads`` holds stable arrays that each backward overwrites in place (or adds to,
    with ``accumulate=True``), so that an optimizer may hold them. A user may have replaced
    an entry: it must then still be a writable ndarray of the parameter's shape and the
    layer's dtype (anything else is an error here, before the backward computes anything);
    a missing entry is allowed (backward puts a new array there). ``shapes`` is
    ``{name: shape}`` in parameter order."""
    if not isinstance(grads, dict):
        raise TypeError(f"{owner}.grads must be a dict of arrays, got {type(grads).__name__}")
    for name, shape in shapes.items():
        g = grads.get(name)
        if g is None:
            continue
        if not isinstance(g, np.ndarray):
            raise TypeError(f"{owner}.grads[{name!r}] must be an ndarray of shape {shape} "
                            f"(backward writes into it), got {type(g).__name__}")
        if g.shape != shape:
            raise ValueError(f"{owner}.grads[{name!r}] must have the shape of "
                             f"params[{name!r}], {shape} (backward writes into it in place), "
                             f"got shape {g.shape}")
        if g.dtype != dtype:
            raise ValueError(f"{owner}.grads[{name!r}] must have the layer's dtype {dtype} "
                             f"(backward writes into it in place), got {g.dtype}")
        if not g.flags.writeable:
            raise ValueError(f"{owner}.grads[{name!r}] is read-only: backward writes into "
                             f"it in place")


def store_grads(grads, names, values, accumulate):
    """Write a backward's gradients into the arrays of ``grads`` (checked by
    check_grads_store): overwritten, or added to with ``accumulate``; a missing entry gets
    the new array itself."""
    for name, g in zip(names, values):
        dest = grads.get(name)
        if dest is None:
            grads[name] = g
        elif accumulate:
            np.add(dest, g, out=dest)
        else:
            np.copyto(dest, g)


def _fits_blas(batch, seq_len, input_size, width):
    """Whether the largest matrix of a call, batch*seq_len rows of the wider of input_size
    and width (gates * hidden), is indexable with 32-bit ints."""
    return batch * max(seq_len, 1) * max(input_size, width) <= _INT32_MAX


def check_blas_size(batch, seq_len, input_size, hidden, gates):
    """Every matrix a kernel hands to BLAS must be indexable with 32-bit ints."""
    if not _fits_blas(batch, seq_len, input_size, gates * hidden):
        raise ValueError(f"problem too large for 32-bit BLAS indices: "
                         f"batch*seq_len={batch * max(seq_len, 1)} rows of width "
                         f"{max(input_size, gates * hidden)} exceed {_INT32_MAX} elements")


def _ready_for_forward(gates, x, states, weights, batch_first, weights_checked):
    """Whether a forward's arguments already are what check_forward would return: plain
    C-contiguous ndarrays of one float dtype with consistent shapes (the common case,
    checked in ~2 us where the full path takes ~6; a tiny forward takes ~30; ~1 us when
    the weights are a layer's checked parameters, which are not looked at again). Anything
    else takes the full path, which converts or raises the error."""
    ndarray = np.ndarray
    Wx, Wh, b = weights[0], weights[1], weights[2]
    extra = weights[3:]                 # b_hn (GRU): (hidden,)
    if not weights_checked and not (type(Wx) is ndarray and type(Wh) is ndarray
                                    and type(b) is ndarray):
        return False
    dtype = Wx.dtype
    if not weights_checked and not (
            (dtype is FLOAT_DTYPES[0] or dtype is FLOAT_DTYPES[1]) and Wh.dtype is dtype
            and b.dtype is dtype and Wx.ndim == 2 and Wx.flags.c_contiguous
            and Wh.flags.c_contiguous and b.flags.c_contiguous):
        return False
    if not (type(x) is ndarray and x.dtype is dtype and x.ndim == 3
            and x.flags.c_contiguous):
        return False
    input_size, width = Wx.shape
    hidden = width // gates
    batch, seq_len, features = x.shape
    if not batch_first:
        batch, seq_len = seq_len, batch
    if not weights_checked and not (input_size >= 1 and hidden >= 1 and width == gates * hidden
                                    and Wh.shape == (hidden, width) and b.shape == (width,)):
        return False
    if not weights_checked:
        for w in extra:
            if not (type(w) is ndarray and w.dtype is dtype and w.shape == (hidden,)
                    and w.flags.c_contiguous):
                return False
    if not (batch >= 1 and features == input_size
            and _fits_blas(batch, seq_len, input_size, width)):
        return False
    for s in states:
        if s is not None and not (type(s) is ndarray and s.dtype is dtype
                                  and s.shape == (batch, hidden) and s.flags.c_contiguous):
            return False
    return True


def check_forward(spec, x, states, weights, batch_first, weights_checked=False):
    """Validated ``(x, states, weights)`` for a forward call of a ``spec`` cell.

    ``states`` is a tuple of initial states (h0,) or (h0, c0), each possibly None;
    ``weights`` the parameters in ``spec.params`` order (Wx, Wh, b(, b_hn)).
    ``weights_checked``: the weights already passed check_weights (a layer's params).
    """
    gates = spec.gates
    if _ready_for_forward(gates, x, states, weights, batch_first, weights_checked):
        return x, states, weights
    for name, w in zip(spec.params[2:], weights[2:]):
        if w is None:
            # the kernels need every bias (pass zeros for none); None would reach the
            # compiled core as NULL
            raise TypeError(f"{name} must be an array of numbers, got None "
                            f"(use zeros for no bias)")
    if not weights_checked:
        weights = check_weights(spec, weights)
    Wx, Wh = weights[0], weights[1]
    dtype, hidden, input_size = Wx.dtype, Wh.shape[0], Wx.shape[0]
    x, batch, seq_len = check_sequence(x, "x", input_size, batch_first, dtype,
                                       hidden=hidden, gates=gates)
    names = tuple(name + "0" for name in spec.states)
    states = tuple(check_state(s, n, batch, hidden, dtype) for s, n in zip(states, names))
    return x, states, weights


def _workspace_arrays(spec, backend, workspace, seq_len, batch, hidden):
    """The arrays of a workspace the kernels read and write without bounds checks, as
    ``{key: shape}``. (A shape of None marks a key that must be there: the compiled RNN's
    workspace holds ``"cs": None``; one without that key was tampered with.)"""
    arrays = {"hs": (seq_len + 1, batch, hidden)}
    if spec.family != "rnn" or backend == "cython":
        arrays["gates"] = (seq_len, batch, spec.gates * hidden)
    if "c" in spec.states:
        arrays["cs"] = (seq_len + 1, batch, hidden)
    elif backend == "cython" and "cs" not in workspace:
        arrays["cs"] = None
    if "b_hn" in spec.params:
        # the GRU's hidden-side products, kept apart: the reset gate multiplies the n gate's
        # h @ Wh_n + b_hn (the twin keeps that part alone, the compiled core all of h @ Wh)
        if backend == "numpy":
            arrays["hn"] = (seq_len, batch, hidden)
        else:
            arrays["hgates"] = (seq_len, batch, spec.gates * hidden)
    return arrays


def check_workspace(workspace, spec, backend, batch_first, dims, dtype=None):
    """The workspace of the matching training forward of a ``spec`` cell, not yet used by a
    backward.

    With ``dtype``, its arrays must have that dtype (a float32 forward's workspace cannot
    serve a float64 backward)."""
    if workspace is None:
        raise ValueError("backward needs the workspace of a training forward "
                         "(training=True); got None (was forward run in eval mode?)")
    if not isinstance(workspace, dict) or not {"backend", "cell", "batch_first",
                                               "dims"} <= workspace.keys():
        raise TypeError(f"workspace must be the dict returned by forward, got "
                        f"{type(workspace).__name__}")
    made = (workspace["backend"], workspace["cell"], workspace["batch_first"],
            tuple(workspace["dims"]))
    wanted = (backend, spec.family, batch_first, tuple(dims))
    if made != wanted:
        raise ValueError("workspace does not belong to this call: it was made by "
                         f"(backend, cell, batch_first, (batch, seq_len, hidden)) = {made}, "
                         f"this call is {wanted}")
    if spec.nonlinearity is not None and workspace.get("nonlinearity") != spec.nonlinearity:
        raise ValueError(f"workspace was made with nonlinearity="
                         f"{workspace.get('nonlinearity')!r}, this backward asks for "
                         f"{spec.nonlinearity!r}")
    if workspace.get("consumed"):
        raise ValueError("this workspace was already used by a backward call (BPTT consumes "
                         "it); run forward again before another backward")
    # the arrays the kernels read and write without bounds checks: they must still be the
    # ones forward made (same shapes), or backward would run off their ends
    batch, seq_len, hidden = dims
    arrays = _workspace_arrays(spec, backend, workspace, seq_len, batch, hidden)
    for key, shape in arrays.items():
        value = workspace.get(key)
        if not isinstance(value, np.ndarray) or value.shape != shape:
            got = (f"shape {value.shape}" if isinstance(value, np.ndarray)
                   else type(value).__name__)
            raise ValueError(f"workspace was modified: its {key!r} must be the array of shape "
                             f"{shape} that forward made, got {got}")
    if dtype is not None:
        for key, value in workspace.items():
            if isinstance(value, np.ndarray) and value.dtype != dtype:
                raise ValueError(f"workspace does not belong to this call: its {key!r} is "
                                 f"{value.dtype}, this call computes in {np.dtype(dtype)}")
    return workspace


def check_backward(spec, dout, dstates, x, weights, workspace, batch_first, backend,
                   weights_checked=False):
    """Validated ``(dout, dstates, x, weights, workspace)`` for a backward call of a ``spec``
    cell; ``weights`` is ``(Wx, Wh)`` (backward needs no bias: what BPTT needs of the
    forward is in the workspace)."""
    if not weights_checked:
        weights = check_weights(spec, weights)
    Wx, Wh = weights[0], weights[1]
    dtype, hidden, input_size = Wx.dtype, Wh.shape[0], Wx.shape[0]
    x, batch, seq_len = check_sequence(x, "x", input_size, batch_first, dtype)
    check_workspace(workspace, spec, backend, batch_first, (batch, seq_len, hidden), dtype)
    if dout is not None:
        dout = as_numeric_array(dout, "dout")
        expected = x.shape[:2] + (hidden,)
        if dout.shape != expected:
            raise ValueError(f"dout must have the shape of the forward output {expected}, "
                             f"got shape {dout.shape}")
        dout = as_float_array(dout, "dout", dtype)
    names = tuple(f"d{name}_n" for name in spec.states)
    dstates = tuple(check_state(s, n, batch, hidden, dtype) for s, n in zip(dstates, names))
    return dout, dstates, x, weights, workspace


# ----------------------------------------------------------------------------- training

def check_features(x, name, in_features, dtype):
    """A ``(batch, features)`` or ``(batch, seq_len, features)`` array with ``in_features``
    in its last axis (a Dense layer's input or output gradient), converted to ``dtype``."""
    x = as_numeric_array(x, name)
    if x.ndim not in (2, 3) or x.shape[-1] != in_features:
        raise ValueError(f"{name} must have shape (batch, {in_features}) or (batch, seq_len, "
                         f"{in_features}), got shape {x.shape}")
    return as_float_array(x, name, dtype)


def check_positive(value, name, *, allow_zero=False):
    """A finite real number > 0 (>= 0 with ``allow_zero``), as a float."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer,
                                                                     np.floating)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    v = float(value)
    if not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return v


def check_fraction(value, name):
    """A number in [0, 1) (a momentum, Adam's betas)."""
    v = check_positive(value, name, allow_zero=True)
    if v >= 1:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    return v


# ----------------------------------------------------------------------------- interop

def check_torch_layer(layer, layer_types):
    """The CellSpec of an rnnfast layer that has a torch.nn counterpart."""
    if not isinstance(layer, layer_types):
        raise TypeError(f"layer must be an rnnfast RNN, LSTM or GRU layer, got "
                        f"{type(layer).__name__}")
    spec = layer._spec
    if spec.torch_class is None:
        raise ValueError(f"torch.nn has no {spec.layer} with nonlinearity="
                         f"{spec.nonlinearity!r} (torch.nn.RNN's nonlinearity is 'tanh' or "
                         f"'relu'): this layer has no torch counterpart")
    return spec


def check_keras_kind(kind, nonlinearity):
    """The CellSpec for ``from_keras_weights(kind, ...)``: "rnn" (Keras' SimpleRNN, with
    ``nonlinearity`` its activation, "tanh" by default), "lstm" or "gru"."""
    kinds = tuple(dict.fromkeys(s.keras_kind for s in cells.specs() if s.keras_kind))
    if kind not in kinds:
        raise ValueError(f"kind must be one of {kinds}, got {kind!r}")
    spec = cells.for_layer(kind, "tanh" if nonlinearity is None else nonlinearity)
    if spec.family != "rnn" and nonlinearity is not None:
        raise ValueError(f"nonlinearity is for kind='rnn' (Keras' SimpleRNN activation); a "
                         f"Keras {kind.upper()} has its own, got nonlinearity={nonlinearity!r}")
    return spec


def check_keras_weights(spec, kernel, recurrent_kernel, bias):
    """Keras' ``layer.get_weights()`` arrays for a ``spec`` cell: returns them as float64
    arrays with ``(input_size, hidden)``; bias None means a layer with ``use_bias=False``.

    Shapes: ``kernel (input_dim, G*units)``, ``recurrent_kernel (units, G*units)``, and
    ``bias (G*units,)``, except a GRU's ``(2, 3*units)`` (``reset_after=True``: input and
    recurrent biases)."""
    G, label = spec.gates, f"a Keras {spec.keras_kind.upper()}"
    kernel = as_numeric_array(kernel, "kernel")
    recurrent_kernel = as_numeric_array(recurrent_kernel, "recurrent_kernel")
    rk = recurrent_kernel.shape
    if recurrent_kernel.ndim != 2 or rk[0] < 1 or rk[1] != G * rk[0]:
        raise ValueError(f"recurrent_kernel must have shape (units, {G}*units) for {label}, "
                         f"got shape {rk}")
    H = rk[0]
    if kernel.ndim != 2 or kernel.shape[0] < 1 or kernel.shape[1] != G * H:
        raise ValueError(f"kernel must have shape (input_dim, {G}*units) = (input_dim, "
                         f"{G * H}) for {label} with units={H}, got shape {kernel.shape}")
    if bias is not None:
        bias = as_numeric_array(bias, "bias")
        expected = (2, G * H) if "b_hn" in spec.params else (G * H,)
        if bias.shape != expected:
            hint = ""
            if "b_hn" in spec.params and bias.shape == (G * H,):
                hint = (" (a GRU with reset_after=False, whose single bias means another "
                        "cell: only reset_after=True, PyTorch's formulation, maps)")
            raise ValueError(f"bias must have shape {expected} for {label} with "
                             f"units={H}, got shape {bias.shape}{hint}")
        bias = np.asarray(bias, np.float64)
    return (np.asarray(kernel, np.float64), np.asarray(recurrent_kernel, np.float64), bias,
            kernel.shape[0], H)


def missing_core_message(package_dir):
    """What to tell a user whose ``rnnfast`` has no compiled module ``rnnfast._core``:
    usually a source checkout imported from its root (``python -m``, ``python -c`` and the
    interactive interpreter put the current directory first on ``sys.path``)."""
    import importlib.machinery
    import os
    import sys

    package_dir = os.path.abspath(package_dir)
    root = os.path.dirname(package_dir)
    if not any(os.path.exists(os.path.join(root, f)) for f in ("pyproject.toml", "setup.py")):
        return (f"rnnfast's compiled core (rnnfast._core) is missing from {package_dir}: the "
                "installation is incomplete. Reinstall it (pip install --force-reinstall "
                "rnnfast, or pip install . from a checkout), or use backend=\"numpy\" (the "
                "NumPy twin).")
    # an installed rnnfast that the checkout shadows: rnnfast on the rest of sys.path
    rest = [p for p in sys.path if os.path.abspath(p or os.curdir) != root]
    spec = importlib.machinery.PathFinder.find_spec("rnnfast", rest)
    where = (f"an installed rnnfast in {os.path.dirname(spec.origin)} is shadowed"
             if spec is not None and spec.origin else "no installed rnnfast was found")
    return (f"rnnfast was imported from the source checkout {package_dir}, which has no "
            "compiled core (rnnfast._core is built by installing the package): the checkout's "
            f"root {root} comes first on sys.path (as the current directory does under python "
            f"-m and python -c); {where}. "
            f"Install with `pip install .` in {root}, then run from another directory, or use "
            "the installed commands, which import the installed package from anywhere: "
            "`rnnfast-bench` for the benchmark table, and the `pytest` script (not python -m "
            "pytest) for the tests. backend=\"numpy\" (the NumPy twin) needs no compiled core.")


# ----------------------------------------------------------------------------- compat
#
# rnnfast.compat: the seed notebooks' own APIs. Their shapes are written as the notebooks'
# comments write them, with named dimensions ("n_a", "batch"), so that an error can say
# which dimension disagrees.

def _named_shape(spec, dims):
    """``(n_a, 1) = (5, 1)``: a shape written with dimension names, and with the sizes bound
    so far (an unbound name stays a name)."""
    names = "(" + ", ".join(str(s) for s in spec) + ("," if len(spec) == 1 else "") + ")"
    sizes = tuple(dims.get(s, s) if isinstance(s, str) else s for s in spec)
    if all(isinstance(s, int) for s in spec):
        return names
    shown = "(" + ", ".join(str(s) for s in sizes) + ("," if len(sizes) == 1 else "") + ")"
    return names if shown == names else f"{names} = {shown}"


def check_seed_shapes(entries, dims=None):
    """Arrays whose shapes are given with named dimensions, as the seed notebooks' comments
    give them: ``entries`` is a sequence of ``(label, array, spec)`` or ``(label, array, spec,
    hint)``, ``spec`` a tuple of ints and dimension names; a name takes the size it has at
    its first appearance (in order) unless ``dims`` (a dict, updated in place) has it.
    Returns the arrays as numeric ndarrays (not converted). A ValueError names the array,
    its expected shape (names, and sizes where known) and the shape it has, plus ``hint``."""
    dims = {} if dims is None else dims
    arrays = []
    for entry in entries:
        label, a, spec = entry[:3]
        a = as_numeric_array(a, label)
        ok = a.ndim == len(spec)
        if ok:
            bound = {}
            for s, n in zip(spec, a.shape):
                want = dims.get(s, bound.get(s)) if isinstance(s, str) else s
                if want is None and isinstance(s, str):
                    bound[s] = n
                elif n != want:
                    ok = False
                    break
        if not ok:
            hint = f"; {entry[3]}" if len(entry) > 3 and entry[3] else ""
            raise ValueError(f"{label} must have shape {_named_shape(spec, dims)}, got shape "
                             f"{a.shape}{hint}")
        for s, n in zip(spec, a.shape):
            if isinstance(s, str):
                dims.setdefault(s, n)
        arrays.append(a)
    return arrays


def check_seed_keys(parameters, specs, func, name="parameters"):
    """A seed notebook's parameters dict holding every key of ``specs`` ({key: shape spec,
    as check_seed_shapes takes}); extra keys are ignored."""
    if not isinstance(parameters, dict):
        raise TypeError(f"{name} must be a dict of arrays (as the notebook's {func} takes), "
                        f"got {type(parameters).__name__}")
    for key, spec in specs.items():
        if key not in parameters:
            raise ValueError(f"{name}[{key!r}] is missing: {func} needs it, an array of shape "
                             f"{_named_shape(spec, {})} (got the keys {sorted(parameters)})")


def check_seed_sequence(x, name, n_x, func):
    """Seed 003's ``(n_x, m, T_x)`` (features, batch, time) input; a ``(batch, time,
    features)`` array is recognised in the message when its last axis has the n_x
    features."""
    x = as_numeric_array(x, name)
    hint = ""
    if x.ndim == 3 and x.shape[0] != n_x and x.shape[2] == n_x:
        hint = (f"{func} takes the notebook's (features, batch, time) layout: a (batch, time, "
                f"features) array converts with {name}.transpose(2, 0, 1)")
    (x,) = check_seed_shapes([(name, x, ("n_x", "m", "T_x"), hint)], {"n_x": n_x})
    if x.shape[1] < 1:
        raise ValueError(f"{name} must have a batch size m of at least 1, got shape {x.shape}")
    return x


def check_seed_activation(nonlinearity, activation, name):
    """The kernel nonlinearity found for a seed notebook's activation (None: not one the
    compiled core has)."""
    if nonlinearity is None:
        raise TypeError(f"{name} must be one the compiled core runs: Tanh, Sigmoid or ReLU of "
                        f"rnnfast.compat (a class or an instance), np.tanh, "
                        f"scipy.special.expit, or 'tanh', 'sigmoid', 'relu'; got "
                        f"{activation!r}")
    return nonlinearity


def check_seed_labels(y, name, batch, n_classes, dtype):
    """Labels of one batch as a one-hot ``(batch, n_classes)`` array of ``dtype``: one-hot
    (or any target distribution) of that shape, or integer class indices ``(batch,)``."""
    y = as_numeric_array(y, name)
    if y.shape == (batch, n_classes):
        return np.asarray(y, dtype=dtype)
    if y.shape == (batch,):
        if y.dtype.kind not in "iu":
            raise TypeError(f"{name} of shape {y.shape} are class indices and must be "
                            f"integers, got dtype {y.dtype}")
        if y.size and (y.min() < 0 or y.max() >= n_classes):
            raise ValueError(f"{name} must be class indices in [0, {n_classes}), got values "
                             f"from {y.min()} to {y.max()}")
        onehot = np.zeros((batch, n_classes), dtype)
        onehot[np.arange(batch), y] = 1
        return onehot
    raise ValueError(f"{name} must be one-hot labels of shape (batch={batch}, n_output="
                     f"{n_classes}) or class indices of shape ({batch},), got shape {y.shape}")


def check_update_pair(param, grad, name):
    """A parameter that a seed notebook's optimizer updates in place, and its gradient."""
    if not isinstance(param, np.ndarray) or param.dtype not in FLOAT_DTYPES:
        what = (f"{param.dtype} array" if isinstance(param, np.ndarray)
                else type(param).__name__)
        raise TypeError(f"layer.{name} must be a float32 or float64 ndarray (updated in "
                        f"place), got {what}")
    if not param.flags.writeable:
        raise ValueError(f"layer.{name} is read-only: the optimizer updates it in place")
    g = as_numeric_array(grad, f"layer.d{name}")
    if g.shape != param.shape:
        raise ValueError(f"layer.d{name} must have the shape of layer.{name} {param.shape}, "
                         f"got shape {g.shape}")
    return g


def check_seed_batch(dA):
    """The batch size of a layer written to seed 001's optimizer protocol: the rows of its
    ``dA`` (a compat layer gives ``batch_size`` instead)."""
    if dA is None or np.ndim(dA) < 1:
        raise TypeError("SGD.update(layer) needs layer.batch_size, or layer.dA (batch, ...) "
                        "as the notebook's layers have, to divide the gradients by the batch "
                        f"size; got dA={type(dA).__name__}")
    return np.shape(dA)[0]


# ----------------------------------------------------------------------------- torch backend
# rnnfast.torch: drop-in torch.nn modules. These functions take torch objects but do not
# import torch (rnnfast imports without it): they read the tensors' attributes only.

def missing_torch_message():
    """What ``import rnnfast.torch`` says without PyTorch."""
    return ("rnnfast.torch needs PyTorch, which is not installed: pip install torch (the CPU "
            "build: pip install torch --index-url https://download.pytorch.org/whl/cpu)")


def check_torch_options(owner, proj_size):
    """The constructor arguments rnnfast.torch refuses: ``proj_size`` (an LSTM with
    projections has no rnnfast kernel)."""
    if proj_size:
        raise ValueError(f"{owner}: proj_size must be 0 (rnnfast has no LSTM with projections), "
                         f"got proj_size={proj_size!r}")


_TORCH_FLOAT = {"torch.float32": FLOAT_DTYPES[0], "torch.float64": FLOAT_DTYPES[1]}


def check_torch_tensor(t, name, owner):
    """A CPU tensor of float32 or float64; returns its NumPy dtype."""
    if not hasattr(t, "device") or not hasattr(t, "dtype") or not hasattr(t, "dim"):
        raise TypeError(f"{owner}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if t.device.type != "cpu":
        raise ValueError(f"{owner}: {name} is on device {t.device}; rnnfast.torch runs on the "
                         f"CPU only: move it (and the module) to the CPU, or use the torch.nn "
                         f"module on {t.device.type}")
    dt = _TORCH_FLOAT.get(str(t.dtype))
    if dt is None:
        raise TypeError(f"{owner}: {name} has dtype {t.dtype}; rnnfast.torch computes in "
                        f"torch.float32 or torch.float64 (convert with .float() or .double())")
    return dt


def check_torch_parameter(p, name, shape, dtype, owner):
    """One of a module's weights: a CPU tensor of the module's dtype and its shape (the
    kernels trust the shapes without bounds checks)."""
    if p is None:
        raise ValueError(f"{owner}: parameter {name} is missing (it must be a tensor of shape "
                         f"{tuple(shape)})")
    dt = check_torch_tensor(p, f"parameter {name}", owner)
    if tuple(p.shape) != tuple(shape):
        raise ValueError(f"{owner}: parameter {name} must have shape {tuple(shape)}, got shape "
                         f"{tuple(p.shape)}")
    if dtype is not None and dt != dtype:
        raise TypeError(f"{owner}: parameter {name} has dtype {p.dtype}, the module's other "
                        f"parameters {dtype}: every parameter must have one dtype")
    return dt


def check_torch_input(owner, input, input_size, batch_first, dtype, torch_dtype):
    """A module's input: a 3-D ``(batch, seq_len, input_size)`` (``batch_first``) or
    ``(seq_len, batch, input_size)`` tensor, or a 2-D unbatched ``(seq_len, input_size)``
    one, of the parameters' dtype (``torch_dtype`` is it as torch's). Returns whether it is
    batched."""
    try:                # the common case in ~1 us (the full checks take ~5 of a ~40 us call)
        shape = input.shape
        if (input.dtype is torch_dtype and input.is_cpu and len(shape) == 3
                and shape[2] == input_size and shape[0] and shape[1]):
            return True
    except AttributeError:
        pass
    dt = check_torch_tensor(input, "input", owner)
    nd = input.dim()
    layout = "(batch, seq_len, " if batch_first else "(seq_len, batch, "
    if nd not in (2, 3):
        raise ValueError(f"{owner}: input must be 3-D {layout}input_size={input_size}) or "
                         f"2-D unbatched (seq_len, input_size={input_size}), got "
                         f"{nd}-D shape {tuple(input.shape)}")
    if input.shape[-1] != input_size:
        raise ValueError(f"{owner}: input must have input_size={input_size} features in its "
                         f"last axis, got shape {tuple(input.shape)}")
    if dt != dtype:
        raise ValueError(f"{owner}: input must have the parameters' dtype "
                         f"torch.{np.dtype(dtype).name}, got {input.dtype}")
    if 0 in tuple(input.shape):
        raise ValueError(f"{owner}: input must have at least one step and one batch row, got "
                         f"shape {tuple(input.shape)}")
    return nd == 3


def check_torch_state(owner, name, s, shape, dtype):
    """An initial state ``(num_layers * num_directions, batch, hidden)`` (2-D without the
    batch axis for unbatched input) of the parameters' dtype."""
    check_torch_tensor(s, name, owner)
    if tuple(s.shape) != tuple(shape):
        raise ValueError(f"{owner}: {name} must have shape {tuple(shape)} "
                         f"(num_layers * num_directions, batch, hidden_size) for this input, "
                         f"got shape {tuple(s.shape)}")
    if _TORCH_FLOAT[str(s.dtype)] != dtype:
        raise ValueError(f"{owner}: {name} must have the parameters' dtype "
                         f"torch.{np.dtype(dtype).name}, got {s.dtype}")


def check_torch_hx(owner, hx, n_states):
    """``hx`` as a tuple of ``n_states`` tensors (or None): the LSTM's is a pair (h0, c0)."""
    if hx is None:
        return (None,) * n_states
    if n_states == 1:
        if isinstance(hx, (tuple, list)):
            raise TypeError(f"{owner}: hx must be a tensor (h0), got a {type(hx).__name__}")
        return (hx,)
    if not isinstance(hx, (tuple, list)) or len(hx) != n_states:
        got = (f"a {type(hx).__name__} of length {len(hx)}" if isinstance(hx, (tuple, list))
               else type(hx).__name__)
        raise TypeError(f"{owner}: hx must be a pair (h0, c0) of tensors, got {got}")
    return tuple(hx)


def check_torch_convertible(module, path):
    """A torch.nn.RNN/LSTM/GRU that rnnfast.torch.convert can take over: CPU, float32 or
    float64, no projection, and only the configurations rnnfast.torch runs."""
    owner = f"convert: {path or 'model'} ({type(module).__name__})"
    check_torch_options(owner, getattr(module, "proj_size", 0))
    for name in module._flat_weights_names:
        p = getattr(module, name)
        check_torch_tensor(p, f"parameter {name}", owner)


def check_torch_packed(owner, data, batch_sizes, input_size, dtype):
    """A PackedSequence input: its ``data`` a 2-D ``(total steps, input_size)`` tensor of the
    parameters' dtype, one row per step of every sequence (``batch_sizes.sum()`` rows)."""
    dt = check_torch_tensor(data, "input (a PackedSequence's data)", owner)
    if data.dim() != 2 or data.shape[1] != input_size:
        raise ValueError(f"{owner}: a PackedSequence input's data must be 2-D (total steps, "
                         f"input_size={input_size}), got shape {tuple(data.shape)}")
    if dt != dtype:
        raise ValueError(f"{owner}: input must have the parameters' dtype "
                         f"torch.{np.dtype(dtype).name}, got {data.dtype}")
    total = int(batch_sizes.sum()) if batch_sizes is not None and len(batch_sizes) else 0
    if total == 0 or data.shape[0] != total:
        raise ValueError(f"{owner}: a PackedSequence input must have batch_sizes.sum() rows "
                         f"of data (one per step of every sequence) and at least one, got "
                         f"{data.shape[0]} rows for batch_sizes summing to {total}")


# ----------------------------------------------------------------------------- interop (stacks)
# (interop.from_torch: any num_layers and bidirectional)

def check_torch_recurrent(module, dtype=None):
    """The CellSpec and the dtype of an rnnfast layer for a ``torch.nn.RNN``, ``LSTM`` or
    ``GRU`` module of any ``num_layers``, ``bidirectional``, ``batch_first`` and ``bias``;
    an LSTM with a projection (``proj_size > 0``) has no rnnfast counterpart (ValueError).
    ``dtype`` None: the module's own (float32 or float64; other dtypes, float16 and
    bfloat16, are an error rather than a silent conversion)."""
    try:
        import torch
    except ImportError:                 # then it cannot be a torch module
        torch = None
    spec = None
    if torch is not None:
        for s in cells.specs():
            cls = getattr(torch.nn, s.torch_class) if s.torch_class else None
            if cls is not None and isinstance(module, cls):
                spec = s
                break
    if spec is None:
        names = ", ".join(dict.fromkeys(f"torch.nn.{s.torch_class}" for s in cells.specs()
                                        if s.torch_class))
        raise TypeError(f"module must be one of {names}, got {type(module).__module__}."
                        f"{type(module).__qualname__}")
    if spec.family == "rnn":
        spec = cells.for_layer("rnn", module.nonlinearity)
    proj = getattr(module, "proj_size", 0)
    if proj != 0:
        raise ValueError(f"module.proj_size must be 0 (an LSTM with a projection of h has no "
                         f"rnnfast counterpart), got {proj!r}")
    if dtype is not None:
        return spec, check_dtype(dtype)
    param_dtype = module.weight_ih_l0.dtype
    numpy_dtype = {torch.float32: FLOAT_DTYPES[0], torch.float64: FLOAT_DTYPES[1]}
    if param_dtype not in numpy_dtype:
        raise TypeError(f"module's parameters are {param_dtype}; rnnfast layers compute in "
                        f"float32 or float64: convert the module (module.float()) or pass "
                        f"dtype=np.float32 to convert its weights")
    return spec, numpy_dtype[param_dtype]
