# Type stub of the compiled module rnnfast._core (rnnfast/_core.pyx), checked against the
# built module by `python -m mypy.stubtest rnnfast._core` in .ci/run. The kernels trust their
# contract (rnnfast/reference.py, rnnfast/_checks.py): every array of one call has one dtype,
# float32 or float64 (_F), and is C-contiguous with consistent shapes.
from typing import Any, Literal, TypedDict, TypeVar

import numpy as np
import numpy.typing as npt
from typing_extensions import disjoint_base

_F = TypeVar("_F", np.float32, np.float64)
_Array = npt.NDArray[_F]
_Nonlinearity = Literal["tanh", "relu", "sigmoid"]
_Cell = Literal["rnn", "lstm", "gru"]
# BufferedKernels' kept buffers, by name (flat arrays, grown when too small)
_Pool = dict[str, npt.NDArray[Any]]

class _Workspace(TypedDict, total=False):
    """What a training forward keeps for its backward (``training=False``: None)."""

    backend: Literal["cython"]
    cell: _Cell
    batch_first: bool
    dims: tuple[int, int, int]                 # (batch, seq_len, hidden)
    gates: npt.NDArray[Any] | None             # (seq_len, batch, G*hidden)
    hgates: npt.NDArray[Any] | None            # GRU: (seq_len, batch, 3*hidden)
    hs: npt.NDArray[Any] | None                # (seq_len + 1, batch, hidden); lengths: 2-D
    steps: Any                                 # direction calls: lengths (sequence_steps),
    reverse: bool                              # the direction,
    out_col: int                               # the output's columns
    out_width: int
    cs: npt.NDArray[Any] | None                # LSTM: (seq_len + 1, batch, hidden)
    nonlinearity: _Nonlinearity                # RNN only
    lent: list[npt.NDArray[Any]]               # SharedBuffers' buffers, until backward
    consumed: bool                             # set by rnnfast.functional's backward

# Problems whose per-step product has up to this many multiply-adds run in the packed
# products; larger ones in BLAS (writable: 0 sends every product to BLAS).
packed_max_work: int
# Values of the packed product's scratch for its left operand (RF_MC * RF_KC).
A_PACKED_SIZE: int
# Cython's doctest table (empty).
__test__: dict[str, str]
# The cell kinds of the compiled loops, by their number (_forward's and _backward's kind).
KINDS: tuple[str, ...]
_NONLINEARITY_KINDS: dict[str, int]
# The thread policies (set_thread_policy); RNNFAST_THREAD_POLICY sets one at import.
THREAD_POLICIES: tuple[str, ...]
_ThreadPolicy = Literal["adaptive", "static"]

def rnn_forward(x: _Array[_F], h0: _Array[_F] | None, Wx: _Array[_F], Wh: _Array[_F],
                b: _Array[_F], nonlinearity: _Nonlinearity = "tanh", batch_first: bool = True,
                training: bool = True
                ) -> tuple[_Array[_F], _Array[_F], _Workspace | None]: ...
def rnn_backward(dout: _Array[_F] | None, dh_n: _Array[_F] | None, x: _Array[_F],
                 Wx: _Array[_F], Wh: _Array[_F], workspace: _Workspace,
                 nonlinearity: _Nonlinearity = "tanh", batch_first: bool = True, *,
                 input_grad: bool = True
                 ) -> tuple[_Array[_F] | None, _Array[_F], _Array[_F], _Array[_F],
                            _Array[_F]]: ...
def lstm_forward(x: _Array[_F], h0: _Array[_F] | None, c0: _Array[_F] | None, Wx: _Array[_F],
                 Wh: _Array[_F], b: _Array[_F], batch_first: bool = True, training: bool = True
                 ) -> tuple[_Array[_F], _Array[_F], _Array[_F], _Workspace | None]: ...
def lstm_backward(dout: _Array[_F] | None, dh_n: _Array[_F] | None, dc_n: _Array[_F] | None,
                  x: _Array[_F], Wx: _Array[_F], Wh: _Array[_F], workspace: _Workspace,
                  batch_first: bool = True, *, input_grad: bool = True
                  ) -> tuple[_Array[_F] | None, _Array[_F], _Array[_F], _Array[_F], _Array[_F],
                             _Array[_F]]: ...
def gru_forward(x: _Array[_F], h0: _Array[_F] | None, Wx: _Array[_F], Wh: _Array[_F],
                b: _Array[_F], b_hn: _Array[_F], batch_first: bool = True,
                training: bool = True
                ) -> tuple[_Array[_F], _Array[_F], _Workspace | None]: ...
def gru_backward(dout: _Array[_F] | None, dh_n: _Array[_F] | None, x: _Array[_F],
                 Wx: _Array[_F], Wh: _Array[_F], workspace: _Workspace, batch_first: bool = True,
                 *, input_grad: bool = True
                 ) -> tuple[_Array[_F] | None, _Array[_F], _Array[_F], _Array[_F], _Array[_F],
                            _Array[_F]]: ...

class SharedBuffers:
    """Flat buffers lent to calls without a pool of their own (rnnfast.functional, eval
    layers); at most MAX_COUNT buffers of MAX_BYTES in all are kept."""

    MAX_COUNT: int
    MAX_BYTES: int
    def __init__(self) -> None: ...
    def take(self, n: int, is_float: bool) -> npt.NDArray[Any]: ...
    def give_back(self, lent: list[npt.NDArray[Any]]) -> None: ...
    def release(self) -> None: ...
    def kept_bytes(self) -> int: ...

_shared: SharedBuffers

def release_shared_buffers() -> None: ...
def _give_back_workspace(workspace: _Workspace) -> None: ...

class BufferedKernels:
    """One layer's direction kernels and fast lane, keeping the training workspace and
    scratch between calls (a workspace is valid until the next training forward; one
    thread at a time)."""

    def __init__(self) -> None: ...
    def release(self) -> None: ...
    def kept_copy(self, x: _Array[_F]) -> _Array[_F]: ...
    def layer_forward(self, kind: str, x: object, states: tuple[object, ...],
                      weights: tuple[_Array[_F], ...], batch_first: bool, training: bool,
                      lengths: object = None
                      ) -> tuple[_Array[_F], tuple[_Array[_F], ...], _Workspace | None,
                                 _Array[_F] | None, _Steps | None] | None: ...
    def layer_backward(self, kind: str, dout: object, dstates: tuple[object, ...],
                       x: _Array[_F], weights: tuple[_Array[_F], ...], workspace: _Workspace,
                       batch_first: bool, grads: tuple[object, ...], into: bool,
                       need_dx: bool = True, need_dh0: bool = True
                       ) -> tuple[_Array[_F] | None, tuple[_Array[_F], ...], tuple[_Array[_F], ...],
                                  bool] | None: ...
    def direction_forward(self, kind: str, x: _Array[_F],
                          states: tuple[_Array[_F] | None, ...],
                          weights: tuple[_Array[_F], ...], batch_first: bool, training: bool,
                          steps: _Steps | None = None, reverse: bool = False,
                          out: _Array[_F] | None = None, out_col: int = 0,
                          cells_out: _Array[_F] | None = None
                          ) -> tuple[_Array[_F], tuple[_Array[_F], ...],
                                     _Workspace | None]: ...
    def direction_backward(self, kind: str, dout: _Array[_F] | None,
                           dstates: tuple[_Array[_F] | None, ...], x: _Array[_F],
                           Wx: _Array[_F], Wh: _Array[_F], workspace: _Workspace,
                           batch_first: bool, dx: _Array[_F] | None = None,
                           dcells: _Array[_F] | None = None,
                           grads_out: tuple[_Array[_F], ...] | None = None,
                           need_dx: bool = True, need_dh0: bool = True
                           ) -> tuple[_Array[_F] | None, tuple[_Array[_F], ...],
                                      tuple[_Array[_F], ...]]: ...

@disjoint_base
class Prepared:
    """A forward or backward call ready to run (its C arguments and carved scratch)."""

@disjoint_base
class StepKernel:
    """One time step of one layer and direction (layer.step), weights packed once."""

    def __init__(self, kind: str, Wx: _Array[_F], Wh: _Array[_F], b: _Array[_F],
                 b_hn: _Array[_F] | None = None) -> None: ...
    def step_ready(self, x_t: _Array[_F], state: Any, out: Any) -> tuple[Any, Any] | None: ...
    def step(self, x_t: _Array[_F], h: _Array[_F] | None, c: _Array[_F] | None,
             h_out: _Array[_F], c_out: _Array[_F] | None) -> None: ...

def set_thread_policy(policy: _ThreadPolicy) -> _ThreadPolicy: ...
def thread_policy() -> _ThreadPolicy: ...

# The shared implementation of the faces above, for a kind (an index of KINDS; c_n and
# dc0 None but for the LSTM, b_hn and db_hn but for the GRU).
def _forward(kind: int, x: _Array[_F], h0: _Array[_F] | None, c0: _Array[_F] | None,
             Wx: _Array[_F], Wh: _Array[_F], b: _Array[_F], b_hn: _Array[_F] | None,
             batch_first: bool, training: bool, pool: _Pool | None = None,
             steps: _Steps | None = None, reverse: bool = False, out: _Array[_F] | None = None,
             out_col: int = 0, cells_out: _Array[_F] | None = None
             ) -> tuple[_Array[_F], _Array[_F], _Array[_F] | None, _Workspace | None]: ...
def _backward(kind: int, dout: _Array[_F] | None, dh_n: _Array[_F] | None,
              dc_n: _Array[_F] | None, x: _Array[_F], Wx: _Array[_F], Wh: _Array[_F],
              workspace: _Workspace, batch_first: bool, pool: _Pool | None = None,
              dx: _Array[_F] | None = None, dcells: _Array[_F] | None = None,
              grads_out: tuple[_Array[_F], ...] | None = None, need_dx: bool = True,
              need_dh0: bool = True
              ) -> tuple[_Array[_F] | None, _Array[_F], _Array[_F] | None, _Array[_F], _Array[_F],
                         _Array[_F], _Array[_F] | None]: ...

# One direction of one layer (rnnfast._sequence): kind a registry kind ("lstm", ...),
# states and weights in the registry's order; lengths as sequence_steps() prepares them.
_Steps = tuple[npt.NDArray[np.int32], npt.NDArray[np.int32], npt.NDArray[np.int32],
               npt.NDArray[np.intp]]
def sequence_steps(lengths: npt.ArrayLike | None, T: int) -> _Steps | None | bool: ...
def direction_forward(kind: str, x: _Array[_F], states: tuple[_Array[_F] | None, ...],
                      weights: tuple[_Array[_F], ...], batch_first: bool, training: bool,
                      steps: _Steps | None = None, reverse: bool = False,
                      out: _Array[_F] | None = None, out_col: int = 0,
                      cells_out: _Array[_F] | None = None
                      ) -> tuple[_Array[_F], tuple[_Array[_F], ...], _Workspace | None]: ...
def direction_backward(kind: str, dout: _Array[_F] | None,
                       dstates: tuple[_Array[_F] | None, ...], x: _Array[_F], Wx: _Array[_F],
                       Wh: _Array[_F], workspace: _Workspace, batch_first: bool,
                       dx: _Array[_F] | None = None, dcells: _Array[_F] | None = None,
                       need_dx: bool = True, need_dh0: bool = True
                       ) -> tuple[_Array[_F] | None, tuple[_Array[_F], ...],
                                  tuple[_Array[_F], ...]]: ...
def directions_forward(kernels: Any, kind: str, x: _Array[_F],
                       states: Any, weights: Any, batch_first: bool, training: bool,
                       steps: _Steps | None = None, out: _Array[_F] | None = None,
                       cells_out: _Array[_F] | None = None
                       ) -> tuple[tuple[tuple[_Array[_F], ...], _Workspace | None], ...]: ...
@disjoint_base
class ParamsSnapshot:
    """A layer's checked parameter arrays, their objects and layout, as checked."""

    def __init__(self, names: tuple[str, ...], arrays: tuple[_Array[Any], ...]) -> None: ...
    def holds(self, params: object) -> bool: ...

def _set_pair_min_work(work: int, small: bool = False) -> int: ...
def _set_w_in_cache(nbytes: int) -> int: ...
def _set_interleave_aliased(mode: int) -> int: ...
def grads_fit(grads: tuple[object, ...], weights: tuple[_Array[_F], ...],
              dout: _Array[_F] | None, dstates: tuple[object, ...] = ()) -> int: ...
def stack_forward(kernels: Any, kind: str, x: object, states: tuple[object, ...],
                  weights: tuple[_Array[_F], ...], directions: int, batch_first: bool,
                  training: bool, lengths: object = None
                  ) -> tuple[_Array[_F], tuple[_Array[_F], ...],
                             list[tuple[_Array[_F], list[_Workspace | None]]],
                             _Array[_F] | None, _Steps | None] | None: ...
def stack_backward(kernels: Any, kind: str, dout: object, dstates: tuple[object, ...],
                   layers: list[tuple[_Array[_F], list[_Workspace]]],
                   weights: tuple[_Array[_F], ...], directions: int, batch_first: bool,
                   grads: tuple[object, ...] | None, into: bool, need_dx: bool = True,
                   need_dh0: bool = True
                   ) -> tuple[_Array[_F] | None, tuple[_Array[_F], ...],
                              tuple[_Array[_F], ...], bool] | None: ...
def directions_backward(kernels: Any, kind: str, dout: _Array[_F] | None, dstates: Any,
                        x: _Array[_F], Wx: Any, Wh: Any, workspaces: Any, batch_first: bool,
                        dcells: _Array[_F] | None = None, grads_out: Any = None,
                        need_dx: bool = True, need_dh0: bool = True
                        ) -> tuple[_Array[_F] | None, tuple[tuple[_Array[_F], ...], ...],
                                   tuple[tuple[_Array[_F], ...], ...]]: ...
def _direction_forward(kind: str, x: _Array[_F], states: tuple[_Array[_F] | None, ...],
                       weights: tuple[_Array[_F], ...], batch_first: bool, training: bool,
                       steps: _Steps | None, reverse: bool, out: _Array[_F] | None,
                       out_col: int, cells_out: _Array[_F] | None, pool: _Pool | None
                       ) -> tuple[_Array[_F], tuple[_Array[_F], ...], _Workspace | None]: ...
def _direction_backward(kind: str, dout: _Array[_F] | None,
                        dstates: tuple[_Array[_F] | None, ...], x: _Array[_F],
                        Wx: _Array[_F], Wh: _Array[_F], workspace: _Workspace,
                        batch_first: bool, dx: _Array[_F] | None, dcells: _Array[_F] | None,
                        pool: _Pool | None, grads_out: tuple[_Array[_F], ...] | None = None,
                        need_dx: bool = True, need_dh0: bool = True
                        ) -> tuple[_Array[_F] | None, tuple[_Array[_F], ...],
                                   tuple[_Array[_F], ...]]: ...
def _state_or_zeros(s: npt.ArrayLike | None, B: int, H: int,
                    dtype: npt.DTypeLike) -> npt.NDArray[Any]: ...

# For tests and benchmarks: the thread policy's state, a made-up back-off, a made-up region.
def _thread_state() -> dict[str, int]: ...
def _go_solo_for(seconds: float) -> None: ...
def _judge_region(finish_after_start_ns: list[int], cold: bool = False) -> bool: ...
def _cores_taken(team: int) -> bool: ...
def _small_pair_shares() -> bool: ...
def _judge_small_pair(finish_after_start_ns: list[int], work: int = ...) -> bool: ...
def _cold_call_solo(work: int) -> bool: ...
def _policy_from_environment() -> None: ...

# a.T as a new C-contiguous array (a tiled copy in C for 2-D C-contiguous float arrays).
def transposed(a: npt.ArrayLike) -> npt.NDArray[Any]: ...
def summed_biases(bias_ih: Any, bias_hh: Any, summed: int,
                  rest: bool) -> tuple[npt.NDArray[Any], ...] | None: ...
def split_bias_grads(db: Any, db_hn: Any, summed: int
                     ) -> tuple[npt.NDArray[Any], npt.NDArray[Any]] | None: ...

# Test and development aids: the compiled tanh and sigmoid over a C-contiguous 1-D array,
# and C = a @ w through the packed per-step product, `repeat` times.
def _tanh(x: _Array[_F]) -> _Array[_F]: ...
def _sigmoid(x: _Array[_F]) -> _Array[_F]: ...
def _packed_matmul_bench(a: npt.NDArray[np.float32], w: npt.NDArray[np.float32],
                         repeat: int, w_transposed: bool = ...) -> npt.NDArray[np.float32]: ...

# The SIMD paths of the C kernels (README, "SIMD paths"), best last.
_SimdPath = Literal["baseline", "avx2", "avx512"]
SIMD_PATHS: tuple[_SimdPath, ...]

def simd_paths() -> tuple[_SimdPath, ...]: ...
def simd_path() -> _SimdPath: ...
def set_simd_path(name: str) -> None: ...

# rnnfast.optim's updates in one pass (bit for bit its NumPy steps); False when the arrays
# do not qualify (one float dtype, C-contiguous, one size, no overlap), nothing done then.
def _adam_update(p: object, g: object, m: object, v: object, b1: float, b2: float,
                 step_size: float, eps: float, weight_decay: float) -> bool: ...
def _adagrad_update(p: object, g: object, acc: object, lr: float, eps: float,
                    weight_decay: float) -> bool: ...
def _sgd_update(p: object, g: object, buf: object, lr: float, momentum: float,
                nesterov: bool, weight_decay: float) -> bool: ...

# A classifier head's training step (logits h @ W + b, mean softmax cross-entropy at the
# class indices, dW and db written in place): (loss, correct, dh), or None when the
# arguments are not as the loops take them.
def dense_cross_entropy(h: _Array, W: _Array, b: _Array, labels: npt.NDArray[np.intp],
                        dW: _Array, db: _Array) -> tuple[float, int, _Array] | None: ...
