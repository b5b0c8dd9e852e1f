"""Input validation and conversion: every user-facing error of rnnfast is raised here.

The kernels (``rnnfast._core`` and ``rnnfast.reference``) trust their contract;
the functions below establish it: floating arrays of one dtype, C-contiguous,
with consistent shapes, sizes that fit 32-bit BLAS indices, and a workspace
made by the same backend for the same call.
"""
import numpy as np

BACKENDS = ("cython", "numpy")
NONLINEARITIES = ("tanh", "relu")
GATES = {"rnn": 1, "lstm": 4}
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


def check_weights(Wx, Wh, b, gates, dtype=None):
    """Weights in the right-multiplying layout; returns ``(Wx, Wh, b)``.

    ``b`` may be None (backward needs no bias); it is then returned as None.
    The dtype is ``dtype`` if given, else Wx's own when it is float32/float64,
    else float64.
    """
    if dtype is None:
        wx_dtype = np.asarray(Wx).dtype
        dtype = FLOAT_DTYPES[0] if wx_dtype == FLOAT_DTYPES[0] else FLOAT_DTYPES[1]
    Wx = as_numeric_array(Wx, "Wx")
    Wh = as_numeric_array(Wh, "Wh")
    b = None if b is None else as_numeric_array(b, "b")
    if Wh.ndim != 2 or Wh.shape[0] < 1 or Wh.shape[1] != gates * Wh.shape[0]:
        raise ValueError(f"Wh must have shape (hidden, {gates}*hidden), got shape {Wh.shape}")
    hidden = Wh.shape[0]
    if Wx.ndim != 2 or Wx.shape[0] < 1 or Wx.shape[1] != gates * hidden:
        raise ValueError(f"Wx must have shape (input_size, {gates}*hidden) = "
                         f"(input_size, {gates * hidden}), got shape {Wx.shape}")
    if b is not None and b.shape != (gates * hidden,):
        raise ValueError(f"b must have shape ({gates * hidden},), got shape {b.shape}")
    return (as_float_array(Wx, "Wx", dtype), as_float_array(Wh, "Wh", dtype),
            None if b is None else as_float_array(b, "b", dtype))


def check_params(params, cell, input_size, hidden, dtype):
    """A layer's ``params`` dict (its entries may have been replaced by the user);
    returns ``(Wx, Wh, b)``. Each entry must have the layer's own shape, and an error
    names the entry the user replaced, ``params['Wh']`` say."""
    gh = GATES[cell] * hidden
    expected = {"Wx": (input_size, gh), "Wh": (hidden, gh), "b": (gh,)}
    for name, shape in expected.items():
        got = as_numeric_array(params[name], f"params[{name!r}]").shape
        if got != shape:
            raise ValueError(f"params[{name!r}] must have shape {shape} (input_size="
                             f"{input_size}, hidden_size={hidden}), got shape {got}")
    return check_weights(params["Wx"], params["Wh"], params["b"], GATES[cell], dtype=dtype)


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


def _ready_for_forward(gates, x, states, Wx, Wh, b, batch_first, weights_checked):
    """Whether a forward's arguments already are what check_forward would return: plain
    C-contiguous ndarrays of one float dtype with consistent shapes (the common case,
    checked in ~2 us where the full path takes ~6; a tiny forward takes ~30; ~1 us when
    the weights are a layer's checked parameters, which are not looked at again). Anything
    else takes the full path, which converts or raises the error."""
    ndarray = np.ndarray
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
    if not (batch >= 1 and features == input_size
            and _fits_blas(batch, seq_len, input_size, width)):
        return False
    for s in states:
        if s is not None and not (type(s) is ndarray and s.dtype is dtype
                                  and s.shape == (batch, hidden) and s.flags.c_contiguous):
            return False
    return True


def check_forward(cell, x, states, Wx, Wh, b, batch_first, weights_checked=False):
    """Validated ``(x, states, Wx, Wh, b)`` for a forward call.

    ``states`` is a tuple of initial states (h0,) or (h0, c0), each possibly None.
    ``weights_checked``: the weights already passed check_weights (a layer's params).
    """
    gates = GATES[cell]
    if _ready_for_forward(gates, x, states, Wx, Wh, b, batch_first, weights_checked):
        return x, states, Wx, Wh, b
    if b is None:
        # the kernels need a bias (pass zeros for none); None would reach them as NULL
        raise TypeError("b must be an array of numbers, got None (use zeros for no bias)")
    if not weights_checked:
        Wx, Wh, b = check_weights(Wx, Wh, b, gates)
    dtype, hidden, input_size = Wx.dtype, Wh.shape[0], Wx.shape[0]
    x, batch, seq_len = check_sequence(x, "x", input_size, batch_first, dtype,
                                       hidden=hidden, gates=gates)
    names = ("h0", "c0")
    states = tuple(check_state(s, n, batch, hidden, dtype) for s, n in zip(states, names))
    return x, states, Wx, Wh, b


def check_workspace(workspace, cell, backend, batch_first, dims, dtype=None):
    """The workspace of the matching training forward, not yet used by a backward.

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
    wanted = (backend, cell, batch_first, tuple(dims))
    if made != wanted:
        raise ValueError("workspace does not belong to this call: it was made by "
                         f"(backend, cell, batch_first, (batch, seq_len, hidden)) = {made}, "
                         f"this call is {wanted}")
    if workspace.get("consumed"):
        raise ValueError("this workspace was already used by a backward call (BPTT consumes "
                         "it); run forward again before another backward")
    # the arrays the kernels read and write without bounds checks: they must still be the
    # ones forward made (same shapes), or backward would run off their ends
    batch, seq_len, hidden = dims
    arrays = {"hs": (seq_len + 1, batch, hidden)}
    if cell == "lstm" or backend == "cython":
        arrays["gates"] = (seq_len, batch, GATES[cell] * hidden)
    if cell == "lstm":
        arrays["cs"] = (seq_len + 1, batch, hidden)
    elif backend == "cython" and "cs" not in workspace:
        arrays["cs"] = None
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


def check_backward(cell, dout, dstates, x, Wx, Wh, workspace, batch_first, backend,
                   weights_checked=False):
    """Validated ``(dout, dstates, x, Wx, Wh, workspace)`` for a backward call."""
    gates = GATES[cell]
    if not weights_checked:
        Wx, Wh, _ = check_weights(Wx, Wh, None, gates)
    dtype, hidden, input_size = Wx.dtype, Wh.shape[0], Wx.shape[0]
    x, batch, seq_len = check_sequence(x, "x", input_size, batch_first, dtype)
    check_workspace(workspace, cell, backend, batch_first, (batch, seq_len, hidden), dtype)
    if dout is not None:
        dout = as_numeric_array(dout, "dout")
        expected = x.shape[:2] + (hidden,)
        if dout.shape != expected:
            raise ValueError(f"dout must have the shape of the forward output {expected}, "
                             f"got shape {dout.shape}")
        dout = as_float_array(dout, "dout", dtype)
    names = ("dh_n", "dc_n")
    dstates = tuple(check_state(s, n, batch, hidden, dtype) for s, n in zip(dstates, names))
    return dout, dstates, x, Wx, Wh, workspace


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
