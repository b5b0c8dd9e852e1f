"""rnnfast: fast, verified recurrent networks on the CPU.

``RNN`` and ``LSTM`` layers over a compiled core (``rnnfast._core``: Cython over
BLAS, GIL released) with a pure-NumPy twin (``rnnfast.reference``,
``backend="numpy"``) that the tests hold it to. ``simd_path()``,
``set_simd_path(name)`` and ``simd_paths()`` show and force the compiled core's
SIMD code path (see the README, "SIMD paths").
"""
from typing import TYPE_CHECKING

from . import functional, reference
from .layers import LSTM, RNN, from_torch

if TYPE_CHECKING:   # (at run time from __getattr__ below)
    from ._core import set_simd_path, simd_path, simd_paths

__version__ = "0.1.0"
__all__ = ["RNN", "LSTM", "from_torch", "functional", "reference", "simd_path",
           "set_simd_path", "simd_paths", "__version__"]

_SIMD_FUNCTIONS = ("simd_path", "set_simd_path", "simd_paths")


def __getattr__(name):
    # the SIMD functions live in the compiled core, imported on first use as elsewhere
    # (importing rnnfast does not need it: backend="numpy" runs without)
    if name in _SIMD_FUNCTIONS:
        from . import _core
        return getattr(_core, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
