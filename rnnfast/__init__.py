"""rnnfast: fast, verified recurrent networks on the CPU.

``RNN``, ``LSTM`` and ``GRU`` layers over a compiled core (``rnnfast._core``: Cython over
BLAS, GIL released) with a pure-NumPy twin (``rnnfast.reference``, ``backend="numpy"``)
that the tests hold it to. ``rnnfast.cells`` is the registry of cell kinds;
``rnnfast.interop`` maps weights from and to PyTorch and Keras. Training: ``rnnfast.nn``
(``Dense``), ``rnnfast.losses``, ``rnnfast.optim`` (SGD, AdaGrad, Adam), ``rnnfast.init``
and ``rnnfast.models`` (``SequenceClassifier``, ``SequenceRegressor``: scikit-learn's
conventions). ``simd_path()``,
``set_simd_path(name)`` and ``simd_paths()`` show and force the compiled core's SIMD code
path, ``thread_policy()`` and ``set_thread_policy(name)`` how it shares threads (see the
README, "SIMD paths" and "Thread policy").
"""
from typing import TYPE_CHECKING

from . import cells, functional, init, interop, losses, nn, optim, reference
from .interop import from_keras_weights, from_torch, to_torch
from .layers import GRU, LSTM, RNN

if TYPE_CHECKING:   # (at run time from __getattr__ below)
    from . import models
    from ._core import set_simd_path, set_thread_policy, simd_path, simd_paths, thread_policy

__version__ = "0.1.0"
__all__ = ["RNN", "LSTM", "GRU", "from_torch", "to_torch", "from_keras_weights", "cells",
           "functional", "reference", "interop", "nn", "losses", "optim", "init", "models",
           "simd_path", "set_simd_path", "simd_paths",
           "thread_policy", "set_thread_policy", "__version__"]

_CORE_FUNCTIONS = ("simd_path", "set_simd_path", "simd_paths", "thread_policy",
                   "set_thread_policy")


def __getattr__(name):
    # these live in the compiled core, imported on first use as elsewhere (importing
    # rnnfast does not need it: backend="numpy" runs without)
    if name in _CORE_FUNCTIONS:
        return getattr(functional.compiled_core(), name)
    if name == "models":
        # on first use: it imports scikit-learn when installed (~2 s), which `import rnnfast`
        # should not pay
        import importlib
        return importlib.import_module(".models", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
