"""The class API: ``RNN`` and ``LSTM`` layers holding parameters, gradients and BPTT state."""
import numpy as np

from . import _checks, functional

__all__ = ["RNN", "LSTM"]


def _layout(Wx, Wh, b):
    """Shapes, dtypes and strides of the weights, flat (one tuple comparison checks all;
    written out, 0.7 us where a generator took 1.7)."""
    return (Wx.shape, Wx.dtype, Wx.strides, Wh.shape, Wh.dtype, Wh.strides,
            b.shape, b.dtype, b.strides)


class _Recurrent:
    """What RNN and LSTM share: parameters, gradients, train/eval, the BPTT cache."""

    _cell = None           # "rnn" or "lstm"

    def __init__(self, input_size, hidden_size, *, batch_first, dtype, backend, seed):
        self.input_size = _checks.check_size(input_size, "input_size")
        self.hidden_size = _checks.check_size(hidden_size, "hidden_size")
        self.batch_first = bool(batch_first)
        self.dtype = _checks.check_dtype(dtype)
        self.backend = _checks.check_backend(backend)
        self.training = True
        self._cache = None
        self._checked_weights = None
        self._kernels = functional.kernels(self.backend)
        if self.backend == "cython":    # training buffers kept between calls (see there)
            self._kernels = self._kernels.BufferedKernels()
        gh = _checks.GATES[self._cell] * self.hidden_size
        # a layer no call could run (one row already too wide for 32-bit BLAS) is refused
        # before its parameters are allocated and filled
        _checks.check_blas_size(1, 1, self.input_size, self.hidden_size,
                                _checks.GATES[self._cell])
        # PyTorch's initialisation: every weight ~ U(-k, k), k = 1/sqrt(hidden). Its two
        # biases (b_ih + b_hh) are one bias here, so b is the sum of two such draws.
        rng = np.random.default_rng(seed)
        k = 1.0 / np.sqrt(self.hidden_size)
        uniform = lambda *shape: rng.uniform(-k, k, shape).astype(self.dtype)  # noqa: E731
        self.params = {"Wx": uniform(self.input_size, gh),
                       "Wh": uniform(self.hidden_size, gh),
                       "b": uniform(gh) + uniform(gh)}
        self.grads = {name: np.zeros_like(p) for name, p in self.params.items()}

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
            Wx, Wh, b = checked
            if (p["Wx"] is Wx and p["Wh"] is Wh and p["b"] is b
                    and _layout(Wx, Wh, b) == meta):
                return checked
        checked = _checks.check_params(p, self._cell, self.input_size, self.hidden_size,
                                       self.dtype)
        self._checked_weights = (checked, _layout(*checked))
        return checked

    def _forward_inputs(self, x, states):
        Wx, Wh, b = self._weights()
        x_user = x
        x, states, Wx, Wh, b = _checks.check_forward(self._cell, x, states, Wx, Wh, b,
                                                     self.batch_first, weights_checked=True)
        if self.training and np.may_share_memory(x, x_user):
            # backward needs x as it was: keep our own copy, not the caller's array (the
            # compiled backend keeps it with its workspace, reused by the next forward)
            kept_copy = getattr(self._kernels, "kept_copy", None)
            x = x.copy() if kept_copy is None else kept_copy(x)
        self._cache = None     # checks passed: this forward replaces the previous cache
        return x, states, Wx, Wh, b

    def _backward_inputs(self, dout, dstates):
        if self._cache is None:
            raise ValueError("backward called without a training forward before it: call "
                             "forward in training mode (layer.train()) first; a workspace is "
                             "used once, so each backward needs its own forward")
        x, workspace, states_given = self._cache
        Wx, Wh, _ = self._weights()
        dout, dstates, x, Wx, Wh, workspace = _checks.check_backward(
            self._cell, dout, dstates, x, Wx, Wh, workspace, self.batch_first, self.backend,
            weights_checked=True)
        return dout, dstates, x, Wx, Wh, workspace, states_given

    def _store_grads(self, dWx, dWh, db):
        self._cache = None
        self.grads["Wx"], self.grads["Wh"], self.grads["b"] = dWx, dWh, db


class RNN(_Recurrent):
    """Elman RNN, ``h_t = act(x_t @ Wx + h_{t-1} @ Wh + b)``, act tanh or relu.

    ``out, h_n = rnn(x, h0=None)``; ``dx, dh0 = rnn.backward(dout, dh_n=None)``.
    ``backward`` sets ``rnn.grads`` (it does not accumulate); ``dh0`` is None when
    forward had no ``h0``.
    """

    _cell = "rnn"

    def __init__(self, input_size, hidden_size, nonlinearity="tanh", *, batch_first=True,
                 dtype=np.float32, backend="cython", seed=None):
        self.nonlinearity = _checks.check_nonlinearity(nonlinearity)
        super().__init__(input_size, hidden_size, batch_first=batch_first, dtype=dtype,
                         backend=backend, seed=seed)

    def _repr_extra(self):
        return f", nonlinearity={self.nonlinearity!r}"

    def forward(self, x, h0=None):
        x, (h0,), Wx, Wh, b = self._forward_inputs(x, (h0,))
        out, h_n, workspace = self._kernels.rnn_forward(
            x, h0, Wx, Wh, b, self.nonlinearity, self.batch_first, self.training)
        if self.training:
            self._cache = (x, workspace, h0 is not None)
        return out, h_n

    def backward(self, dout, dh_n=None):
        dout, (dh_n,), x, Wx, Wh, workspace, h0_given = self._backward_inputs(dout, (dh_n,))
        dx, dh0, dWx, dWh, db = self._kernels.rnn_backward(
            dout, dh_n, x, Wx, Wh, workspace, self.nonlinearity, self.batch_first)
        self._store_grads(dWx, dWh, db)
        return dx, (dh0 if h0_given else None)


class LSTM(_Recurrent):
    """LSTM with gate order i, f, g, o (PyTorch's).

    ``out, (h_n, c_n) = lstm(x, (h0, c0))`` (state optional);
    ``dx, (dh0, dc0) = lstm.backward(dout, (dh_n, dc_n))`` (state gradient optional).
    ``backward`` sets ``lstm.grads``; ``dh0``/``dc0`` are None when forward had no state.
    """

    _cell = "lstm"

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
        x, (h0, c0), Wx, Wh, b = self._forward_inputs(x, (h0, c0))
        out, h_n, c_n, workspace = self._kernels.lstm_forward(
            x, h0, c0, Wx, Wh, b, self.batch_first, self.training)
        if self.training:
            self._cache = (x, workspace, (h0 is not None, c0 is not None))
        return out, (h_n, c_n)

    def backward(self, dout, dstate=None):
        dh_n, dc_n = self._pair(dstate, "dstate")
        dout, (dh_n, dc_n), x, Wx, Wh, workspace, given = self._backward_inputs(
            dout, (dh_n, dc_n))
        dx, dh0, dc0, dWx, dWh, db = self._kernels.lstm_backward(
            dout, dh_n, dc_n, x, Wx, Wh, workspace, self.batch_first)
        self._store_grads(dWx, dWh, db)
        return dx, (dh0 if given[0] else None, dc0 if given[1] else None)


def from_torch(module, *, dtype=np.float32, backend="cython"):
    """An rnnfast layer with the weights of a one-layer, unidirectional ``torch.nn.RNN``/``LSTM``.

    ``Wx = weight_ih_l0.T``, ``Wh = weight_hh_l0.T``, ``b = bias_ih_l0 + bias_hh_l0``.
    """
    kind = type(module).__name__
    if kind not in ("RNN", "LSTM"):
        raise TypeError(f"module must be a torch.nn.RNN or torch.nn.LSTM, got {kind}")
    if module.num_layers != 1 or module.bidirectional or getattr(module, "proj_size", 0):
        raise ValueError("only one-layer, unidirectional modules without projection map to "
                         "rnnfast layers")
    numpy = lambda name: getattr(module, name).detach().cpu().double().numpy()  # noqa: E731
    if kind == "RNN":
        layer = RNN(module.input_size, module.hidden_size, module.nonlinearity,
                    batch_first=module.batch_first, dtype=dtype, backend=backend)
    else:
        layer = LSTM(module.input_size, module.hidden_size, batch_first=module.batch_first,
                     dtype=dtype, backend=backend)
    layer.params["Wx"][...] = numpy("weight_ih_l0").T
    layer.params["Wh"][...] = numpy("weight_hh_l0").T
    b = np.zeros(layer.params["b"].shape)
    for name in ("bias_ih_l0", "bias_hh_l0"):
        if getattr(module, name, None) is not None:
            b += numpy(name)
    layer.params["b"][...] = b
    return layer
