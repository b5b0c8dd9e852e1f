"""The functional face: the functions of ``rnnfast.reference``, checked, on either backend.

``from rnnfast import reference as F`` and ``from rnnfast import functional as F``
are interchangeable: the same names, arguments and return values. These validate
and convert their inputs (``rnnfast._checks``) and run the compiled core unless
``backend="numpy"``.
"""
import importlib.util
import os

from . import _checks, reference

__all__ = ["rnn_forward", "rnn_backward", "lstm_forward", "lstm_backward", "kernels"]


def kernels(backend):
    """The kernel module behind ``backend``: ``rnnfast._core`` or ``rnnfast.reference``."""
    if _checks.check_backend(backend) == "numpy":
        return reference
    return compiled_core()


def compiled_core():
    """``rnnfast._core``, or an ImportError that says why it is missing and what to do
    (usually: a source checkout, imported from its root, has no compiled module)."""
    try:
        from . import _core
    except ImportError:
        name = f"{__package__}._core"
        if importlib.util.find_spec(name) is not None:   # there, but it does not load: its
            raise                                        # own error says why (a library)
        raise ImportError(_checks.missing_core_message(os.path.dirname(__file__)),
                          name=name) from None
    return _core


def rnn_forward(x, h0, Wx, Wh, b, nonlinearity="tanh", batch_first=True, training=True,
                *, backend="cython"):
    """tanh/relu RNN forward; returns ``(out, h_n, workspace)`` (workspace None if not training)."""
    _checks.check_nonlinearity(nonlinearity)
    x, (h0,), Wx, Wh, b = _checks.check_forward("rnn", x, (h0,), Wx, Wh, b, batch_first)
    return kernels(backend).rnn_forward(x, h0, Wx, Wh, b, nonlinearity, bool(batch_first),
                                        bool(training))


def rnn_backward(dout, dh_n, x, Wx, Wh, workspace, nonlinearity="tanh", batch_first=True,
                 *, backend="cython"):
    """BPTT of ``rnn_forward``; returns ``(dx, dh0, dWx, dWh, db)``. Consumes ``workspace``."""
    _checks.check_nonlinearity(nonlinearity)
    dout, (dh_n,), x, Wx, Wh, workspace = _checks.check_backward(
        "rnn", dout, (dh_n,), x, Wx, Wh, workspace, batch_first, backend)
    if workspace["nonlinearity"] != nonlinearity:
        raise ValueError(f"workspace was made with nonlinearity={workspace['nonlinearity']!r}, "
                         f"this backward asks for {nonlinearity!r}")
    workspace["consumed"] = True
    return kernels(backend).rnn_backward(dout, dh_n, x, Wx, Wh, workspace, nonlinearity,
                                         bool(batch_first))


def lstm_forward(x, h0, c0, Wx, Wh, b, batch_first=True, training=True, *, backend="cython"):
    """LSTM forward; returns ``(out, h_n, c_n, workspace)`` (workspace None if not training)."""
    x, (h0, c0), Wx, Wh, b = _checks.check_forward("lstm", x, (h0, c0), Wx, Wh, b, batch_first)
    return kernels(backend).lstm_forward(x, h0, c0, Wx, Wh, b, bool(batch_first),
                                         bool(training))


def lstm_backward(dout, dh_n, dc_n, x, Wx, Wh, workspace, batch_first=True, *,
                  backend="cython"):
    """BPTT of ``lstm_forward``; returns ``(dx, dh0, dc0, dWx, dWh, db)``. Consumes
    ``workspace``."""
    dout, (dh_n, dc_n), x, Wx, Wh, workspace = _checks.check_backward(
        "lstm", dout, (dh_n, dc_n), x, Wx, Wh, workspace, batch_first, backend)
    workspace["consumed"] = True
    return kernels(backend).lstm_backward(dout, dh_n, dc_n, x, Wx, Wh, workspace,
                                          bool(batch_first))
