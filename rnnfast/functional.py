"""The functional face: the functions of ``rnnfast.reference``, checked, on either backend.

``from rnnfast import reference as F`` and ``from rnnfast import functional as F``
are interchangeable: the same names, arguments and return values. These validate
and convert their inputs (``rnnfast._checks``) and run the compiled core unless
``backend="numpy"``. A cell the compiled core does not have (``rnnfast.cells``:
``CellSpec.compiled``; today it has every cell) raises NotImplementedError on
``backend="cython"``.
"""
import importlib.util
import os

from . import _checks, cells, reference

__all__ = ["rnn_forward", "rnn_backward", "lstm_forward", "lstm_backward", "gru_forward",
           "gru_backward", "kernels", "release_buffers"]

_LSTM = cells.get("lstm")
_GRU = cells.get("gru")


def kernels(backend, spec=None):
    """The kernel module behind ``backend``: ``rnnfast._core`` or ``rnnfast.reference``.

    With ``spec`` (a ``rnnfast.cells.CellSpec``): NotImplementedError if that backend has
    no kernels for the cell."""
    if spec is None:
        _checks.check_backend(backend)
    else:
        _checks.check_compiled(spec, backend)
    if backend == "numpy":
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


def release_buffers():
    """Free the buffers the compiled core keeps for these functions between calls.

    A compiled call borrows its scratch (and a training forward its workspace, until the
    backward that consumes it) from a small process-wide stock of buffers instead of
    allocating them, so that their pages stay mapped (at most 16 buffers, 256 MiB in all).
    """
    compiled_core().release_shared_buffers()


def _rnn_spec(nonlinearity):
    _checks.check_nonlinearity(nonlinearity)
    return cells.for_layer("rnn", nonlinearity)


def rnn_forward(x, h0, Wx, Wh, b, nonlinearity="tanh", batch_first=True, training=True,
                *, backend="cython"):
    """tanh/relu/sigmoid RNN forward; returns ``(out, h_n, workspace)`` (workspace None if
    not training)."""
    spec = _rnn_spec(nonlinearity)
    k = kernels(backend, spec)
    x, (h0,), (Wx, Wh, b) = _checks.check_forward(spec, x, (h0,), (Wx, Wh, b), batch_first)
    return k.rnn_forward(x, h0, Wx, Wh, b, nonlinearity, bool(batch_first), bool(training))


def rnn_backward(dout, dh_n, x, Wx, Wh, workspace, nonlinearity="tanh", batch_first=True,
                 *, backend="cython", input_grad=True):
    """BPTT of ``rnn_forward``; returns ``(dx, dh0, dWx, dWh, db)``. Consumes ``workspace``.
    ``input_grad=False``: dx is None, its products skipped (for x that needs no gradient)."""
    spec = _rnn_spec(nonlinearity)
    k = kernels(backend, spec)
    dout, (dh_n,), x, (Wx, Wh), workspace = _checks.check_backward(
        spec, dout, (dh_n,), x, (Wx, Wh), workspace, batch_first, backend)
    workspace["consumed"] = True
    return k.rnn_backward(dout, dh_n, x, Wx, Wh, workspace, nonlinearity, bool(batch_first),
                          input_grad=bool(input_grad))


def lstm_forward(x, h0, c0, Wx, Wh, b, batch_first=True, training=True, *, backend="cython"):
    """LSTM forward; returns ``(out, h_n, c_n, workspace)`` (workspace None if not training)."""
    k = kernels(backend, _LSTM)
    x, (h0, c0), (Wx, Wh, b) = _checks.check_forward(_LSTM, x, (h0, c0), (Wx, Wh, b),
                                                     batch_first)
    return k.lstm_forward(x, h0, c0, Wx, Wh, b, bool(batch_first), bool(training))


def lstm_backward(dout, dh_n, dc_n, x, Wx, Wh, workspace, batch_first=True, *,
                  backend="cython", input_grad=True):
    """BPTT of ``lstm_forward``; returns ``(dx, dh0, dc0, dWx, dWh, db)``. Consumes
    ``workspace``. ``input_grad``: see rnn_backward."""
    k = kernels(backend, _LSTM)
    dout, (dh_n, dc_n), x, (Wx, Wh), workspace = _checks.check_backward(
        _LSTM, dout, (dh_n, dc_n), x, (Wx, Wh), workspace, batch_first, backend)
    workspace["consumed"] = True
    return k.lstm_backward(dout, dh_n, dc_n, x, Wx, Wh, workspace, bool(batch_first),
                           input_grad=bool(input_grad))


def gru_forward(x, h0, Wx, Wh, b, b_hn, batch_first=True, training=True, *, backend="cython"):
    """GRU forward (PyTorch's formulation); returns ``(out, h_n, workspace)`` (workspace
    None if not training)."""
    k = kernels(backend, _GRU)
    x, (h0,), (Wx, Wh, b, b_hn) = _checks.check_forward(_GRU, x, (h0,), (Wx, Wh, b, b_hn),
                                                        batch_first)
    return k.gru_forward(x, h0, Wx, Wh, b, b_hn, bool(batch_first), bool(training))


def gru_backward(dout, dh_n, x, Wx, Wh, workspace, batch_first=True, *, backend="cython",
                 input_grad=True):
    """BPTT of ``gru_forward``; returns ``(dx, dh0, dWx, dWh, db, db_hn)``. Consumes
    ``workspace``. ``input_grad``: see rnn_backward."""
    k = kernels(backend, _GRU)
    dout, (dh_n,), x, (Wx, Wh), workspace = _checks.check_backward(
        _GRU, dout, (dh_n,), x, (Wx, Wh), workspace, batch_first, backend)
    workspace["consumed"] = True
    return k.gru_backward(dout, dh_n, x, Wx, Wh, workspace, bool(batch_first),
                          input_grad=bool(input_grad))
