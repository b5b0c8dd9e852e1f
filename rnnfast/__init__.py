"""rnnfast: fast, verified recurrent networks on the CPU.

``RNN`` and ``LSTM`` layers over a compiled core (``rnnfast._core``: Cython over
BLAS, GIL released) with a pure-NumPy twin (``rnnfast.reference``,
``backend="numpy"``) that the tests hold it to.
"""
from . import functional, reference
from .layers import LSTM, RNN, from_torch

__version__ = "0.1.0"
__all__ = ["RNN", "LSTM", "from_torch", "functional", "reference", "__version__"]
