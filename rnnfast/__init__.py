"""rnnfast: fast, verified recurrent networks on the CPU.

``RNN`` and ``LSTM`` layers over a compiled core (``rnnfast._core``: Cython over
BLAS, GIL released) with a pure-NumPy twin (``rnnfast.reference``,
``backend="numpy"``) that the tests hold it to.
"""
from . import functional, reference
from .layers import LSTM, RNN, from_torch


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
__all__ = ["RNN", "LSTM", "from_torch", "functional", "reference", "set_thread_policy",
           "thread_policy", "__version__"]
