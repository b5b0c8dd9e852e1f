"""The class API: ``RNN``, ``LSTM`` and ``GRU`` layers holding parameters, gradients and
BPTT state. What each layer holds (its parameters, states, gate count) is its cell's entry
in the registry, ``rnnfast.cells``."""
import numpy as np

from . import _checks, cells, functional

__all__ = ["RNN", "LSTM", "GRU"]


def _layout(weights):
    """Shapes, dtypes and strides of the weights, flat (one tuple comparison checks all;
    the three of RNN/LSTM written out, 0.7 us where a generator took 1.7)."""
    if len(weights) == 3:
        Wx, Wh, b = weights
        return (Wx.shape, Wx.dtype, Wx.strides, Wh.shape, Wh.dtype, Wh.strides,
                b.shape, b.dtype, b.strides)
    return tuple(m for w in weights for m in (w.shape, w.dtype, w.strides))


class _Recurrent:
    """What RNN, LSTM and GRU share: parameters, gradients, train/eval, the BPTT cache."""

    _spec = None           # the cell's rnnfast.cells.CellSpec (RNN: per instance)

    def __init__(self, input_size, hidden_size, *, batch_first, dtype, backend, seed):
        self.input_size = _checks.check_size(input_size, "input_size")
        self.hidden_size = _checks.check_size(hidden_size, "hidden_size")
        self.batch_first = bool(batch_first)
        self.dtype = _checks.check_dtype(dtype)
        self.backend = _checks.check_compiled(self._spec, backend)
        self.training = True
        self._cache = None
        self._checked_weights = None
        self._kernels = functional.kernels(self.backend)
        if self.backend == "cython":    # training buffers kept between calls (see there)
            self._kernels = self._kernels.BufferedKernels()
        spec = self._spec
        # a layer no call could run (one row already too wide for 32-bit BLAS) is refused
        # before its parameters are allocated and filled
        _checks.check_blas_size(1, 1, self.input_size, self.hidden_size, spec.gates)
        # PyTorch's initialisation: every weight ~ U(-k, k), k = 1/sqrt(hidden), and so
        # both of its biases, which map to rnnfast's as the registry says: b is the sum of
        # two such draws in the gates where torch's two biases are summed (all of them for
        # the RNN and LSTM, r and z for the GRU), one draw elsewhere; the GRU's b_hn one draw
        rng = np.random.default_rng(seed)
        k = 1.0 / np.sqrt(self.hidden_size)
        uniform = lambda *shape: rng.uniform(-k, k, shape).astype(self.dtype)  # noqa: E731
        gh = spec.gates * self.hidden_size
        Wx = uniform(self.input_size, gh)
        Wh = uniform(self.hidden_size, gh)
        bias_ih = uniform(gh)
        bias_hh = uniform(gh)
        self.params = {"Wx": Wx, "Wh": Wh, **spec.biases_from_torch(bias_ih, bias_hh)}
        # stable arrays: each backward writes into them (an optimizer may hold them)
        self.grads = {name: np.zeros_like(p) for name, p in self.params.items()}
        self._param_shapes = spec.param_shapes(self.input_size, self.hidden_size)

    # ---------------------------------------------------------------- modes
    def train(self, mode=True):
        """Training mode (the default): forward keeps the workspace ``backward`` needs."""
        self.training = bool(mode)
        if not self.training:
            self.release_buffers()          # (which also drops the BPTT cache)
        return self

    def release_buffers(self):
        """Free the buffers a training layer keeps between calls (its BPTT workspace,
        the compiled backend's scratch and the copy of x: about ``T*B*(G+2)*H`` values for
        an LSTM). ``eval()`` does this; the next training forward allocates them again."""
        self._cache = None
        release = getattr(self._kernels, "release", None)
        if release is not None:
            release()

    def eval(self):
        """Inference mode: forward keeps no workspace; ``backward`` raises."""
        return self.train(False)

    def zero_grad(self):
        for g in self.grads.values():
            g[...] = 0

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def __repr__(self):
        extra = self._repr_extra()
        return (f"{type(self).__name__}({self.input_size}, {self.hidden_size}{extra}, "
                f"batch_first={self.batch_first}, dtype=np.{self.dtype}, "
                f"backend={self.backend!r})")

    def _repr_extra(self):
        return ""

    # ---------------------------------------------------------------- plumbing
    def _weights(self):
        """The parameters, checked: a user may have replaced an entry of ``params``.

        Checked arrays are remembered: while ``params`` holds the very same objects
        (writing into them keeps their shape, dtype and layout), no check is repeated.
        """
        p, remembered = self.params, self._checked_weights
        # the same objects are not enough: shape, dtype and strides can be set in place
        # (params["Wh"].shape = (4*H, H)), and the kernels trust them without bounds checks
        if remembered is not None:
            checked, meta = remembered
            if len(checked) == 3:
                Wx, Wh, b = checked
                same = p.get("Wx") is Wx and p.get("Wh") is Wh and p.get("b") is b
            else:
                same = all(p.get(n) is w for n, w in zip(self._spec.params, checked))
            if same and _layout(checked) == meta:
                return checked
        checked = _checks.check_params(p, self._spec, self.input_size, self.hidden_size,
                                       self.dtype)
        self._checked_weights = (checked, _layout(checked))
        return checked

    def _forward_inputs(self, x, states):
        weights = self._weights()
        x_user = x
        x, states, weights = _checks.check_forward(self._spec, x, states, weights,
                                                   self.batch_first, weights_checked=True)
        if self.training and np.may_share_memory(x, x_user):
            # backward needs x as it was: keep our own copy, not the caller's array (the
            # compiled backend keeps it with its workspace, reused by the next forward)
            kept_copy = getattr(self._kernels, "kept_copy", None)
            x = x.copy() if kept_copy is None else kept_copy(x)
        self._cache = None     # checks passed: this forward replaces the previous cache
        return x, states, weights

    def _backward_inputs(self, dout, dstates):
        if self._cache is None:
            raise ValueError("backward called without a training forward before it: call "
                             "forward in training mode (layer.train()) first; a workspace is "
                             "used once, so each backward needs its own forward")
        x, workspace, states_given = self._cache
        weights = self._weights()
        _checks.check_grads_store(self.grads, self._param_shapes, self.dtype)
        dout, dstates, x, (Wx, Wh), workspace = _checks.check_backward(
            self._spec, dout, dstates, x, weights[:2], workspace, self.batch_first,
            self.backend, weights_checked=True)
        return dout, dstates, x, Wx, Wh, workspace, states_given

    def _store_grads(self, grads, accumulate):
        """The gradients of the parameters (in ``spec.params`` order), written into the
        arrays of ``self.grads`` (stable objects: an optimizer may hold them), or added to
        them with ``accumulate``."""
        self._cache = None
        _checks.store_grads(self.grads, self._spec.params, grads, accumulate)

    # ---------------------------------------------------------------- pickle
    def __getstate__(self):
        """Parameters, gradients and settings; not the kernels' kept buffers nor a BPTT
        workspace (process-local scratch; the numpy backend's kernels are a module)."""
        state = dict(self.__dict__)
        for key in ("_kernels", "_cache", "_checked_weights"):
            state.pop(key, None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._cache = None
        self._checked_weights = None
        self._kernels = functional.kernels(self.backend)
        if self.backend == "cython":
            self._kernels = self._kernels.BufferedKernels()


class RNN(_Recurrent):
    """Elman RNN, ``h_t = act(x_t @ Wx + h_{t-1} @ Wh + b)``, act tanh, relu or sigmoid.

    ``out, h_n = rnn(x, h0=None)``; ``dx, dh0 = rnn.backward(dout, dh_n=None)``.
    ``backward`` writes the gradients into the arrays of ``rnn.grads`` (the same objects
    every time; ``accumulate=True`` adds to them instead); ``dh0`` is None when
    forward had no ``h0``. (The sigmoid RNN has no compiled kernels yet: it needs
    ``backend="numpy"``.)
    """

    def __init__(self, input_size, hidden_size, nonlinearity="tanh", *, batch_first=True,
                 dtype=np.float32, backend="cython", seed=None):
        self.nonlinearity = _checks.check_nonlinearity(nonlinearity)
        self._spec = cells.for_layer("rnn", self.nonlinearity)
        super().__init__(input_size, hidden_size, batch_first=batch_first, dtype=dtype,
                         backend=backend, seed=seed)

    def _repr_extra(self):
        return f", nonlinearity={self.nonlinearity!r}"

    def forward(self, x, h0=None):
        x, (h0,), (Wx, Wh, b) = self._forward_inputs(x, (h0,))
        out, h_n, workspace = self._kernels.rnn_forward(
            x, h0, Wx, Wh, b, self.nonlinearity, self.batch_first, self.training)
        if self.training:
            self._cache = (x, workspace, h0 is not None)
        return out, h_n

    def backward(self, dout, dh_n=None, *, accumulate=False):
        dout, (dh_n,), x, Wx, Wh, workspace, h0_given = self._backward_inputs(dout, (dh_n,))
        dx, dh0, dWx, dWh, db = self._kernels.rnn_backward(
            dout, dh_n, x, Wx, Wh, workspace, self.nonlinearity, self.batch_first)
        self._store_grads((dWx, dWh, db), accumulate)
        return dx, (dh0 if h0_given else None)


class LSTM(_Recurrent):
    """LSTM with gate order i, f, g, o (PyTorch's).

    ``out, (h_n, c_n) = lstm(x, (h0, c0))`` (state optional);
    ``dx, (dh0, dc0) = lstm.backward(dout, (dh_n, dc_n))`` (state gradient optional).
    ``backward`` writes into ``lstm.grads``' arrays (``accumulate=True`` adds); ``dh0``/``dc0``
    are None when forward had no state.
    """

    _spec = cells.get("lstm")

    def __init__(self, input_size, hidden_size, *, batch_first=True, dtype=np.float32,
                 backend="cython", seed=None):
        super().__init__(input_size, hidden_size, batch_first=batch_first, dtype=dtype,
                         backend=backend, seed=seed)

    @staticmethod
    def _pair(state, name):
        if state is None:
            return None, None
        if not isinstance(state, (tuple, list)) or len(state) != 2:
            raise TypeError(f"{name} must be a pair (h, c) of (batch, hidden) arrays or None, "
                            f"got {type(state).__name__}"
                            + (f" of length {len(state)}" if isinstance(state, (tuple, list))
                               else ""))
        return tuple(state)

    def forward(self, x, state=None):
        h0, c0 = self._pair(state, "state")
        x, (h0, c0), (Wx, Wh, b) = self._forward_inputs(x, (h0, c0))
        out, h_n, c_n, workspace = self._kernels.lstm_forward(
            x, h0, c0, Wx, Wh, b, self.batch_first, self.training)
        if self.training:
            self._cache = (x, workspace, (h0 is not None, c0 is not None))
        return out, (h_n, c_n)

    def backward(self, dout, dstate=None, *, accumulate=False):
        dh_n, dc_n = self._pair(dstate, "dstate")
        dout, (dh_n, dc_n), x, Wx, Wh, workspace, given = self._backward_inputs(
            dout, (dh_n, dc_n))
        dx, dh0, dc0, dWx, dWh, db = self._kernels.lstm_backward(
            dout, dh_n, dc_n, x, Wx, Wh, workspace, self.batch_first)
        self._store_grads((dWx, dWh, db), accumulate)
        return dx, (dh0 if given[0] else None, dc0 if given[1] else None)


class GRU(_Recurrent):
    """GRU, PyTorch's formulation, gate order r, z, n::

        r, z = sigmoid(x_t @ Wx_rz + h_{t-1} @ Wh_rz + b_rz)
        n = tanh(x_t @ Wx_n + b_n + r * (h_{t-1} @ Wh_n + b_hn))
        h_t = (1 - z) * n + z * h_{t-1}

    Parameters ``Wx (input_size, 3*hidden)``, ``Wh (hidden, 3*hidden)``, ``b (3*hidden,)``,
    ``b_hn (hidden,)``. ``out, h_n = gru(x, h0=None)``;
    ``dx, dh0 = gru.backward(dout, dh_n=None)``, as the RNN. The compiled GRU is not built
    yet: for now a GRU needs ``backend="numpy"`` (the NumPy twin).
    """

    _spec = cells.get("gru")

    def __init__(self, input_size, hidden_size, *, batch_first=True, dtype=np.float32,
                 backend="cython", seed=None):
        super().__init__(input_size, hidden_size, batch_first=batch_first, dtype=dtype,
                         backend=backend, seed=seed)

    def forward(self, x, h0=None):
        x, (h0,), (Wx, Wh, b, b_hn) = self._forward_inputs(x, (h0,))
        out, h_n, workspace = self._kernels.gru_forward(
            x, h0, Wx, Wh, b, b_hn, self.batch_first, self.training)
        if self.training:
            self._cache = (x, workspace, h0 is not None)
        return out, h_n

    def backward(self, dout, dh_n=None, *, accumulate=False):
        dout, (dh_n,), x, Wx, Wh, workspace, h0_given = self._backward_inputs(dout, (dh_n,))
        dx, dh0, dWx, dWh, db, db_hn = self._kernels.gru_backward(
            dout, dh_n, x, Wx, Wh, workspace, self.batch_first)
        self._store_grads((dWx, dWh, db, db_hn), accumulate)
        return dx, (dh0 if h0_given else None)


def from_torch(module, *, dtype=None, backend="cython"):
    """``rnnfast.interop.from_torch`` (kept here for code that imports it from layers)."""
    from .interop import from_torch
    return from_torch(module, dtype=dtype, backend=backend)
