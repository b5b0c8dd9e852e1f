"""rnnfast: fast, verified recurrent networks on the CPU.

``RNN``, ``LSTM`` and ``GRU`` layers over a compiled core (``rnnfast._core``: Cython over
BLAS, GIL released) with a pure-NumPy twin (``rnnfast.reference``, ``backend="numpy"``)
that the tests hold it to. ``rnnfast.cells`` is the registry of cell kinds;
``rnnfast.interop`` maps weights from and to PyTorch and Keras.
"""
from . import cells, functional, interop, reference
from .interop import from_keras_weights, from_torch, to_torch
from .layers import GRU, LSTM, RNN


def set_thread_policy(policy):
    """How large problems share OpenMP's threads: "adaptive" (default) or "static"; see
    ``rnnfast._core.set_thread_policy``. Returns the previous policy."""
    from . import _core
    return _core.set_thread_policy(policy)


def thread_policy():
    """The thread policy in force ("adaptive" or "static")."""
    from . import _core
    return _core.thread_policy()


__version__ = "0.1.0"
__all__ = ["RNN", "LSTM", "GRU", "from_torch", "to_torch", "from_keras_weights", "cells",
           "functional", "reference", "interop", "set_thread_policy", "thread_policy",
           "__version__"]
