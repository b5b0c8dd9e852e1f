"""The seed notebooks' own classes and functions, on rnnfast's compiled core.

Each notebook of ``shared/seeds`` runs on the fast core by replacing its own definitions with
one import, ``from rnnfast.compat import ...``: the same names, signatures and attributes,
the notebook's math with its bugs corrected (each correction is listed in the docstring of
the class or function concerned, and in the README, "From a NumPy notebook"). The time loops
run in the compiled core (``backend="cython"``, the default) or in the NumPy twin
(``backend="numpy"``); results keep the notebooks' dtype (float64 for their float64
arrays, float32 for float32 weights).

- seed 000: ``ConstantInitializer``, ``Tanh``, ``AdaGrad``, ``ScratchRNNClassifier``;
- seed 001: ``Sigmoid``, ``Tanh``, ``ReLU``, ``Softmax``, ``SimpleInitializer``, ``SGD``,
  ``SimpleRNN``;
- seed 002: ``RNN`` (one step), ``TimeRNN``;
- seed 003: ``rnn_cell``, ``rnn_forward``, ``lstm_cell``, ``lstm_forward``, in the notebook's
  ``(features, batch, time)`` layout with left-multiplying parameters;
- seed 004: ``ScratchSimpleRNNClassifier`` (with ``fit`` and ``predict``).

The optimizers follow the notebooks' protocol: ``optimizer.update(layer)`` reads
``layer.W``, ``layer.dW``, ``layer.B``, ``layer.dB`` (``B``/``dB`` may be None: no bias),
updates ``W`` and ``B``, and returns the layer. The layers of this module call it once per
backward for each weight with the gradients summed over all steps and the batch.

Mapping to rnnfast's conventions (right-multiplying ``Wx (D, G*H)``, ``Wh (H, G*H)``,
``b (G*H,)``, LSTM gates i, f, g, o): seed 003's ``a_t = tanh(Waa a + Wax x + ba)`` is
``Wx = Wax.T``, ``Wh = Waa.T``, ``b = ba[:, 0]``; its LSTM's ``Wq [a_prev; x_t] + bq`` gives
gate q's columns ``Wh[:, q] = Wq[:, :n_a].T``, ``Wx[:, q] = Wq[:, n_a:].T``, ``b[q] = bq``
(f, i, c, o of the notebook are rnnfast's f, i, g, o).
"""
import numpy as np
from scipy.special import expit

from . import _checks, cells, functional, losses, nn, optim

__all__ = ["ConstantInitializer", "SimpleInitializer", "Sigmoid", "Tanh", "ReLU", "Softmax",
           "AdaGrad", "SGD", "ScratchRNNClassifier", "SimpleRNN", "RNN", "TimeRNN",
           "rnn_cell", "rnn_forward", "lstm_cell", "lstm_forward",
           "ScratchSimpleRNNClassifier"]

_LSTM = cells.get("lstm")


def _dtype_of(a):
    """The dtype compat computes in for weights ``a``: theirs when float32 or float64, else
    float64 (the notebooks' integer arrays, ``np.array([1, 1, 1, 1])``)."""
    dt = np.asarray(a).dtype
    return dt if dt in _checks.FLOAT_DTYPES else _checks.FLOAT_DTYPES[1]


def _as(a, name, dtype):
    return _checks.as_float_array(a, name, dtype)


# ------------------------------------------------------------------------- initializers

class ConstantInitializer:
    """Seed 000's: ``Wx()``, ``Wh()``, ``b()`` return the given values (``Wx_val``...).
    ``rnnfast.init.constant(layer, initializer)`` fills an rnnfast layer from it."""

    def __init__(self, Wx, Wh, b):
        self.Wx_val = Wx
        self.Wh_val = Wh
        self.b_val = b

    def Wx(self):
        return self.Wx_val

    def Wh(self):
        return self.Wh_val

    def b(self):
        return self.b_val


class SimpleInitializer:
    """Seed 001's: Gaussian weights of standard deviation ``sigma`` from NumPy's global
    random state (so that ``np.random.seed`` reproduces the notebook's draws):
    ``W(n_nodes1, n_nodes2)`` and ``B(n_nodes2)`` of shape ``(1, n_nodes2)``."""

    def __init__(self, sigma=0.01):
        self.sigma = sigma

    def W(self, n_nodes1, n_nodes2):
        return self.sigma * np.random.randn(n_nodes1, n_nodes2)

    def B(self, n_nodes2):
        return self.sigma * np.random.randn(1, n_nodes2)


# ------------------------------------------------------------------------- activations

class _Activation:
    """Seeds 000/001's activation classes: ``forward(A)`` keeps ``A`` and returns the
    activation, ``backward(dZ)`` the gradient through it; calling one applies the function
    (seed 004 passes a function, ``activation=np.tanh``). Given to a layer of this module,
    only its kind counts: the layer runs the compiled kernel of that nonlinearity."""

    nonlinearity = None

    def forward(self, A):
        self.A = A
        return self._f(A)

    def __call__(self, A):
        return self._f(A)

    def backward(self, dZ):
        return dZ * self._df(self.A)


class Tanh(_Activation):
    """``tanh``; ``backward(dZ) = dZ * (1 - tanh(A)**2)``."""

    nonlinearity = "tanh"

    def _f(self, A):
        return np.tanh(A)

    def _df(self, A):
        return 1 - np.tanh(A) ** 2


class Sigmoid(_Activation):
    """The logistic function, as ``scipy.special.expit`` (the notebook's ``1 / (1 +
    np.exp(-X))`` overflows, with a warning, below about -709);
    ``backward(dZ) = dZ * s * (1 - s)``."""

    nonlinearity = "sigmoid"

    def sigmoid(self, X):
        return expit(X)

    def _f(self, A):
        return expit(A)

    def _df(self, A):
        s = expit(A)
        return s * (1 - s)


class ReLU(_Activation):
    """``max(A, 0)``; ``backward(dZ) = dZ * (A > 0)``."""

    nonlinearity = "relu"

    def _f(self, A):
        return np.clip(A, 0, None)

    def _df(self, A):
        return (np.asarray(A) > 0).astype(np.result_type(A, np.float32))


class Softmax:
    """Seed 001's output layer: ``forward(X)`` the softmax over the last axis (the classes),
    ``backward(Y)`` sets ``self.loss`` and returns ``Z - Y`` (the gradient of the summed
    cross-entropy: the notebook's ``SGD`` divides by the batch size), ``loss_func(Y, Z=None)``
    the mean cross-entropy ``-mean(sum(Y * log Z))``. ``Y`` is one-hot (or integer class
    indices).

    Corrected: the notebook's ``np.exp(X) / sum(np.exp(X))`` overflows to nan for logits
    above ~709; here it is shifted by the maximum (``rnnfast.losses.softmax``), and the loss
    of the forward's own ``Z`` comes from the log-softmax of its logits (finite where
    ``log(Z)`` would be ``log(0)``).
    """

    def forward(self, X):
        X = _checks.as_numeric_array(X, "X")
        self.X = X
        self.Z = losses.softmax(X, axis=-1)
        return self.Z

    def _labels(self, Y, Z):
        return _checks.check_seed_labels(Y, "Y", Z.shape[0], Z.shape[-1], Z.dtype) \
            if Z.ndim == 2 else np.asarray(Y, Z.dtype)

    def backward(self, Y):
        Y = self._labels(Y, self.Z)
        self.loss = self.loss_func(Y)
        return self.Z - Y

    def loss_func(self, Y, Z=None):
        if Z is None:
            return losses.softmax_cross_entropy(self.X, self._labels(Y, self.Z))[0]
        Z = _checks.as_numeric_array(Z, "Z")
        Y = self._labels(Y, Z)
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(Y != 0, Y * np.log(Z), 0.0)     # 0 * log(0) counts as 0
        return -float(np.mean(np.sum(terms, axis=-1)))


def _nonlinearity(activation, name="activation"):
    """The compiled kernel's nonlinearity for a notebook's activation."""
    found = None
    if isinstance(activation, str):
        found = activation if activation in _checks.NONLINEARITIES else None
    elif isinstance(activation, _Activation) or (isinstance(activation, type)
                                                 and issubclass(activation, _Activation)):
        found = activation.nonlinearity
    elif activation is np.tanh:
        found = "tanh"
    elif activation is expit:
        found = "sigmoid"
    return _checks.check_seed_activation(found, activation, name)


# ------------------------------------------------------------------------- optimizers

class AdaGrad:
    """Seed 000's AdaGrad: ``update(layer)`` does, for ``W`` and for ``B``::

        H += dW * dW
        W -= lr * dW / (sqrt(H) + 1e-7)

    in place, through ``rnnfast.optim.AdaGrad`` (``eps=1e-7``). ``HW`` and ``HB`` are the
    accumulators of the last update's ``W`` and ``B``.

    Corrected: the notebook assigns ``self.HB = layer.dB * layer.dB`` where it means ``+=``,
    so its bias accumulator holds only the latest squared gradient and the bias's step,
    ``lr * dB / (|dB| + 1e-7)`` ~ ``lr * sign(dB)``, never shrinks; here the bias's squared
    gradients accumulate as the weights'. And one ``HW``/``HB`` pair served every array the
    instance updated (a shared instance mixed the layers' squares): here each parameter
    array has its own accumulator (kept with it, since the update is in place).
    """

    def __init__(self, lr):
        self.lr = lr
        self.HW = 0.0
        self.HB = 0.0
        self._state = {}                # id(param) -> (param, grad buffer, optim.AdaGrad)

    def _step(self, p, g):
        entry = self._state.get(id(p))
        if entry is None or entry[0] is not p:
            buf = np.empty_like(p)
            entry = (p, buf, optim.AdaGrad({"W": (p, buf)}, lr=self.lr, eps=1e-7))
            self._state[id(p)] = entry
        _, buf, opt = entry
        np.copyto(buf, g)
        opt.lr = self.lr
        opt.step()
        return opt.accumulators[0]

    def update(self, layer):
        dW = _checks.check_update_pair(layer.W, layer.dW, "W")
        B, dB = getattr(layer, "B", None), getattr(layer, "dB", None)
        if B is not None and dB is not None:
            dB = _checks.check_update_pair(B, dB, "B")
        _checks.check_positive(self.lr, "lr")
        self.HW = self._step(layer.W, dW)
        if B is not None and dB is not None:
            self.HB = self._step(B, dB)
        return layer


class SGD:
    """Seed 001's SGD on the batch mean: ``W = W - lr * dW / n``, ``B = B - lr * dB / n``,
    ``n`` the batch size (``layer.batch_size``; for a layer of the notebook's own, which
    has ``dA`` instead of ``dB``, ``dB = dA.sum(axis=0)`` and ``n = dA.shape[0]``, the
    notebook's ``np.average(dA, axis=0)``). New arrays, as the notebook's (the caller's
    arrays are not written into)."""

    def __init__(self, lr):
        self.lr = lr

    def update(self, layer):
        dA = getattr(layer, "dA", None)
        n = getattr(layer, "batch_size", None)
        dB = getattr(layer, "dB", None)
        if n is None:
            n = _checks.check_seed_batch(dA)
        if dB is None and getattr(layer, "B", None) is not None and dA is not None:
            dB = np.sum(dA, axis=0)
        W = layer.W - self.lr * np.asarray(layer.dW) / n
        B = layer.B
        if B is not None and dB is not None:
            B = B - self.lr * np.asarray(dB) / n
        layer.W, layer.B = W, B
        return layer


# ------------------------------------------------------------------------- seed 000

class ScratchRNNClassifier:
    """Seed 000's model: ``ScratchRNNClassifier(initializer, activator)`` takes ``Wx``,
    ``Wh``, ``b`` from ``initializer`` (``ConstantInitializer``); ``forward(x)``, ``x``
    ``(batch_size, n_sequences, n_features)``, returns the last hidden state ``(batch_size,
    n_nodes)`` of ``h_t = activator(x_t @ Wx + h_{t-1} @ Wh + b)``, ``h_{-1} = 0``.

    Corrected: the notebook's forward takes ``n_nodes`` from the global ``w_x`` of its
    example (``w_x.shape[1]``), not from the model's ``Wx``: here the model's own weights
    set every size.
    """

    def __init__(self, initializer, activator, *, backend="cython"):
        self.Wx = initializer.Wx()
        self.Wh = initializer.Wh()
        self.b = initializer.b()
        self.dB = 0
        self.dWx = 0
        self.dWh = 0
        self.activator = activator
        self.backend = _checks.check_backend(backend)

    def forward(self, x):
        nonlinearity = _nonlinearity(self.activator, "activator")
        dtype = _dtype_of(self.Wx)
        Wx, Wh, b = (_as(w, n, dtype) for w, n in ((self.Wx, "Wx"), (self.Wh, "Wh"),
                                                    (self.b, "b")))
        _, h, _ = functional.rnn_forward(x, None, Wx, Wh, b, nonlinearity, training=False,
                                         backend=self.backend)
        self.x = np.array(x, copy=True)
        self.n_sequences = self.x.shape[1]
        return h


# ------------------------------------------------------------------------- seed 001

class SimpleRNN:
    """Seed 001's layer: ``SimpleRNN(W_x, B_x, W_h, initializer, optimizer, activation)``,
    ``h_t = activation(x_t @ W_x + B_x + h_{t-1} @ W_h)``, ``h_{-1} = 0``. ``forward(X)``,
    ``X (batch, n_sequences, n_features)``, returns every step's ``h``, ``(batch,
    n_sequences, n_nodes)``. ``backward(dA)``, ``dA`` the gradient on every step's output,
    returns ``dX`` and applies ``optimizer`` once, with the gradients summed over all steps:
    ``update`` sees ``W=Wx, B=Bx, dW=dWx, dB=dBx``, then ``W=Wh, B=None, dW=dWh`` (and
    ``batch_size``); the gradients stay as ``dWx``, ``dWh``, ``dBx``. ``optimizer=None``
    computes them without an update. ``initializer`` is not used (nor is it in the
    notebook). The weights are copied (the model's own, in the dtype of ``W_x``:
    float64 for integer arrays); ``B_x`` may be a scalar, ``(n_nodes,)`` or ``(1,
    n_nodes)``.

    Corrected, in ``backward``: the notebook multiplies the upstream gradient in twice
    (``activation.backward(loss) * loss``); writes the recurrent gradient to ``loss_h[:,
    i+1]``, a step already done, and reads ``loss_h[:, i]``, always zero, so no gradient
    flows back through time; computes ``dWh`` from ``h_{t-1} @ W_h`` (what it kept as the
    previous state) instead of ``h_{t-1}``; and updates the weights inside the time loop,
    twice per step, so that earlier steps' gradients use weights already changed. Here:
    exact BPTT, one update.
    """

    def __init__(self, W_x, B_x, W_h, initializer, optimizer, activation, *,
                 backend="cython"):
        dtype = _dtype_of(W_x)
        Wx, Wh = _checks.check_seed_shapes([("W_x", W_x, ("n_features", "n_nodes")),
                                            ("W_h", W_h, ("n_nodes", "n_nodes"))])
        H = Wx.shape[1]
        B = _checks.as_numeric_array(B_x, "B_x")
        if B.shape not in ((), (H,), (1, H)):
            raise ValueError(f"B_x must be a scalar or have shape (n_nodes,) = ({H},) or "
                             f"(1, n_nodes) = (1, {H}), got shape {B.shape}")
        self._nonlinearity = _nonlinearity(activation)
        self.backend = _checks.check_backend(backend)
        self.Wx = np.array(Wx, dtype=dtype, copy=True)
        self.Bx = np.array(np.broadcast_to(B, (H,) if B.ndim < 2 else B.shape), dtype=dtype)
        self.Wh = np.array(Wh, dtype=dtype, copy=True)
        self.initializer = initializer
        self.optimizer = optimizer
        self.activation = activation
        self.dWx = self.dWh = self.dBx = None
        self.W = self.B = self.dW = self.dB = None
        self.batch_size = None
        self.input_X_forward = None
        self.n_sequece = 0            # (sic: the notebook's name)
        self._cache = None

    def forward(self, X):
        nonlinearity = _nonlinearity(self.activation)
        dtype = self.Wx.dtype
        out, _, workspace = functional.rnn_forward(
            X, None, self.Wx, self.Wh, self.Bx.reshape(-1), nonlinearity, training=True,
            backend=self.backend)
        x = _as(X, "X", dtype)
        self.input_X_forward = x if x is not X else x.copy()
        self.n_sequece = x.shape[1]
        self._cache = (self.input_X_forward, workspace, nonlinearity)
        return out

    def backward(self, dA):
        if self._cache is None:
            raise ValueError("SimpleRNN.backward needs a forward before it (each forward "
                             "serves one backward)")
        x, workspace, nonlinearity = self._cache
        dx, _, dWx, dWh, db = functional.rnn_backward(
            dA, None, x, self.Wx, self.Wh, workspace, nonlinearity, backend=self.backend)
        self._cache = None
        self.dWx, self.dWh, self.dBx = dWx, dWh, db.reshape(self.Bx.shape)
        self.batch_size = x.shape[0]
        if self.optimizer is not None:
            self.W, self.B, self.dW, self.dB = self.Wx, self.Bx, self.dWx, self.dBx
            self.optimizer.update(self)
            self.Wx, self.Bx = self.W, self.B
            self.W, self.B, self.dW, self.dB = self.Wh, None, self.dWh, None
            self.optimizer.update(self)
            self.Wh = self.W
        return dx


# ------------------------------------------------------------------------- seed 002

def _carried_state(h, batch, hidden, dtype, owner):
    if h is None:
        return None
    h = _checks.as_numeric_array(h, f"{owner}.h")
    if h.shape != (batch, hidden):
        raise ValueError(f"{owner}.h (the state carried from the last forward, or "
                         f"set_state's) must have shape (N={batch}, H={hidden}) for this "
                         f"batch, got shape {h.shape}; call reset_state() before a batch of "
                         f"another size")
    return _as(h, f"{owner}.h", dtype)


class RNN:
    """Seed 002's one-step tanh cell: ``RNN(wx, wh, b)``, ``params = [wx, wh, b]`` (the given
    arrays themselves, so that an optimizer updating them in place updates the cell),
    ``grads`` arrays of the same shapes written in place by ``backward``.
    ``forward(x, h_prev)``: ``h_next = tanh(h_prev @ wh + x @ wx + b)``, ``x (N, D)``,
    ``h_prev (N, H)``; ``backward(dh_next) -> (dx, dh_prev)``. One forward serves one
    backward. The step runs in the compiled kernel (one time step), in the dtype of ``wx``.
    (The notebook's ``grads`` are ``np.zeros_like`` of the weights, integers for integer
    weights, which truncate every gradient: here the compute dtype.)
    """

    def __init__(self, wx, wh, b, *, backend="cython"):
        self.params = [wx, wh, b]
        dtype = _dtype_of(wx)
        self.grads = [np.zeros(np.shape(w), dtype) for w in self.params]
        self.cache = None               # (x, h_prev, h_next), as the notebook's
        self._step = None               # what the kernel's backward needs
        self.backend = _checks.check_backend(backend)

    def forward(self, x, h_prev):
        wx, wh, b = self.params
        dtype = _dtype_of(wx)
        x = _checks.as_numeric_array(x, "x")
        if x.ndim != 2:
            raise ValueError(f"x must be (N, D) (one time step), got shape {x.shape}")
        x3 = _as(x, "x", dtype)[:, None, :]
        if h_prev is None:
            h_prev = np.zeros((x.shape[0], np.shape(wh)[0]), dtype)
        _, h_next, workspace = functional.rnn_forward(x3, h_prev, wx, wh, b, "tanh",
                                                      training=True, backend=self.backend)
        self.cache = (x3[:, 0], _as(h_prev, "h_prev", dtype), h_next)
        self._step = (x3, workspace)
        return h_next

    def backward(self, dh_next):
        if self._step is None:
            raise ValueError("RNN.backward needs a forward before it (each forward serves one "
                             "backward)")
        wx, wh, _ = self.params
        x3, workspace = self._step
        dx, dh_prev, dwx, dwh, db = functional.rnn_backward(
            None, dh_next, x3, wx, wh, workspace, "tanh", backend=self.backend)
        self._step = None
        for g, d in zip(self.grads, (dwx, dwh, db)):
            g[...] = d
        return dx[:, 0], dh_prev


class TimeRNN:
    """Seed 002's layer over T steps: ``TimeRNN(wx, wh, b, stateful=False)``; ``forward(xs)``,
    ``xs (N, T, D)``, returns ``hs (N, T, H)``; ``backward(dhs)`` returns ``dxs (N, T, D)``,
    writes ``grads`` (``[dwx, dwh, db]``, summed over the steps) in place and sets ``dh``,
    the gradient at the initial state. ``stateful=True``: each forward starts from the last
    one's final state ``h`` (gradients stop at the call boundary: truncated BPTT);
    ``set_state(h)``, ``reset_state()``. ``params`` are the given arrays themselves. The T
    steps are one compiled call.

    Corrected: the notebook computes in float32 (``dtype='f'`` for ``hs``, ``h`` and ``dxs``)
    whatever the weights; here in the weights' dtype (``wx``'s: float32 or float64).
    """

    def __init__(self, wx, wh, b, stateful=False, *, backend="cython"):
        self.params = [wx, wh, b]
        dtype = _dtype_of(wx)
        self.grads = [np.zeros(np.shape(w), dtype) for w in self.params]
        self.layers = None              # (no per-step cells: the T steps are one call)
        self.h, self.dh = None, None
        self.stateful = stateful
        self.backend = _checks.check_backend(backend)
        self._cache = None

    def set_state(self, h):
        self.h = h

    def reset_state(self):
        self.h = None

    def forward(self, xs):
        wx, wh, b = self.params
        dtype = _dtype_of(wx)
        xs_arr = _checks.as_numeric_array(xs, "xs")
        hidden = np.shape(wh)[0]
        h0 = None
        if self.stateful and self.h is not None:
            h0 = (_carried_state(self.h, xs_arr.shape[0], hidden, dtype, "TimeRNN")
                  if xs_arr.ndim == 3 else self.h)    # (else forward's error is about xs)
        hs, h_n, workspace = functional.rnn_forward(xs_arr, h0, wx, wh, b, "tanh",
                                                    training=True, backend=self.backend)
        x = _as(xs_arr, "xs", dtype)
        self._cache = (x if x is not xs else x.copy(), workspace)
        self.h = h_n
        return hs

    def backward(self, dhs):
        if self._cache is None:
            raise ValueError("TimeRNN.backward needs a forward before it (each forward serves "
                             "one backward)")
        wx, wh, _ = self.params
        x, workspace = self._cache
        dxs, dh0, dwx, dwh, db = functional.rnn_backward(
            dhs, None, x, wx, wh, workspace, "tanh", backend=self.backend)
        self._cache = None
        for g, d in zip(self.grads, (dwx, dwh, db)):
            g[...] = d
        self.dh = dh0
        return dxs


# ------------------------------------------------------------------------- seed 003

_RNN_PARAMS = {"Waa": ("n_a", "n_a"), "Wax": ("n_a", "n_x"), "ba": ("n_a", 1),
               "Wya": ("n_y", "n_a"), "by": ("n_y", 1)}
# the notebook's gate names, in rnnfast's gate order (i, f, g, o): its c is rnnfast's g
_SEED003_GATE_NAMES = {"i": "i", "f": "f", "g": "c", "o": "o"}
_LSTM_PARAMS = {"Wy": ("n_y", "n_a"), "by": ("n_y", 1),
                **{f"W{q}": ("n_a", "n_a+n_x") for q in ("f", "i", "o", "c")},
                **{f"b{q}": ("n_a", 1) for q in ("f", "i", "o", "c")}}


def _rnn_weights(parameters, func):
    """Seed 003's RNN parameters, checked, as rnnfast's ``(Wx, Wh, b)`` and the output
    projection ``(Wy.T, by)``; returns ``(weights, head, dims, dtype)``."""
    _checks.check_seed_keys(parameters, _RNN_PARAMS, func)
    dims = {}
    Waa, Wax, ba, Wya, by = _checks.check_seed_shapes(
        [(f"parameters[{k!r}]", parameters[k], s) for k, s in _RNN_PARAMS.items()], dims)
    dtype = _dtype_of(Waa)
    weights = (_as(Wax.T, "Wax", dtype), _as(Waa.T, "Waa", dtype), _as(ba[:, 0], "ba", dtype))
    return weights, (_as(Wya.T, "Wya", dtype), _as(by[:, 0], "by", dtype)), dims, dtype


def _lstm_weights(parameters, func):
    """Seed 003's LSTM parameters, checked, as rnnfast's ``(Wx, Wh, b)`` (gates i, f, g, o)
    and the output projection ``(Wy.T, by)``; returns ``(weights, head, dims, dtype)``."""
    _checks.check_seed_keys(parameters, _LSTM_PARAMS, func)
    dims = {}
    arrays = dict(zip(_LSTM_PARAMS, _checks.check_seed_shapes(
        [(f"parameters[{k!r}]", parameters[k], s) for k, s in _LSTM_PARAMS.items()], dims)))
    n_a = dims["n_a"]
    n_x = dims["n_a+n_x"] - n_a
    if n_x < 1:
        raise ValueError(f"parameters['Wf'] must have shape (n_a, n_a + n_x) = ({n_a}, "
                         f"{n_a} + n_x) with n_x >= 1 (the concatenation [a_prev; x_t]), got "
                         f"shape {arrays['Wf'].shape}")
    dims["n_x"] = n_x
    dtype = _dtype_of(arrays["Wf"])
    Wx = np.empty((n_x, _LSTM.gates * n_a), dtype)
    Wh = np.empty((n_a, _LSTM.gates * n_a), dtype)
    b = np.empty(_LSTM.gates * n_a, dtype)
    for gate, q in _SEED003_GATE_NAMES.items():
        cols = _LSTM.gate(gate, n_a)
        W = arrays[f"W{q}"]
        Wh[:, cols] = W[:, :n_a].T          # concat[:n_a] is a_prev
        Wx[:, cols] = W[:, n_a:].T          # concat[n_a:] is x_t
        b[cols] = arrays[f"b{q}"][:, 0]
    head = (_as(arrays["Wy"].T, "Wy", dtype), _as(arrays["by"][:, 0], "by", dtype))
    return (Wx, Wh, b), head, dims, dtype


def _column_state(a, name, dims, m, dtype):
    """A ``(n_a, m)`` state of seed 003 as rnnfast's ``(m, n_a)`` rows."""
    (a,) = _checks.check_seed_shapes([(name, a, ("n_a", "m"))], {**dims, "m": m})
    return _as(a.T, name, dtype)


def _step_input(xt, name, dims, dtype):
    """A ``(n_x, m)`` input of one step as rnnfast's time-major ``(1, m, n_x)``."""
    xt = _checks.as_numeric_array(xt, name)
    hint = ""
    if xt.ndim == 2 and xt.shape[0] != dims["n_x"] and xt.shape[1] == dims["n_x"]:
        hint = f"the notebook's layout is (features, batch): pass {name}.T"
    (xt,) = _checks.check_seed_shapes([(name, xt, ("n_x", "m"), hint)], dims)
    return _as(xt.T[None], name, dtype)


def _sequence_input(x, dims, func, dtype):
    """A ``(n_x, m, T_x)`` input, checked, and as rnnfast's time-major ``(T_x, m, n_x)``."""
    x = _checks.check_seed_sequence(x, "x", dims["n_x"], func)
    return x, _as(x.transpose(2, 1, 0), "x", dtype)


def _softmax_columns(rows, head):
    """``softmax(Wy @ a + by)`` over the output axis, for rows ``(..., n_a)``; returns
    ``(..., n_y)``."""
    Wy_T, by = head
    return losses.softmax(rows @ Wy_T + by, axis=-1)


def _lstm_cells_and_gates(workspace):
    """Every step's cell state and activated gates from a training LSTM forward's workspace,
    as copies: ``cs (T+1, m, n_a)`` time-major with ``cs[0] = c0``, and ``gates (T, m, 4*n_a)``
    (i, f, g, o after their activations), on both backends. The only place compat reads a
    workspace: to be replaced by the LSTM layer's ``return_cells=True``."""
    return workspace["cs"].copy(), workspace["gates"].copy()


def _to_columns(rows_tm):
    """rnnfast's time-major ``(T, m, n)`` as seed 003's ``(n, m, T)`` (C-contiguous)."""
    return np.ascontiguousarray(rows_tm.transpose(2, 1, 0))


def rnn_cell(xt, a_prev, parameters, *, backend="cython"):
    """Seed 003's RNN step: ``a_next = tanh(Waa @ a_prev + Wax @ xt + ba)``, ``y_pred =
    softmax(Wya @ a_next + by)`` over the output axis; ``xt (n_x, m)``, ``a_prev (n_a, m)``.
    Returns ``(a_next, y_pred, cache)``, ``cache = (a_next, y_pred, xt, parameters)``.

    Corrected: the notebook's softmax subtracts the maximum of the whole array, not each
    column's: a column far below it underflows to ``0 / 0`` (nan); here each column is
    shifted by its own maximum.
    """
    weights, head, dims, dtype = _rnn_weights(parameters, "rnn_cell")
    x1 = _step_input(xt, "xt", dims, dtype)
    h0 = _column_state(a_prev, "a_prev", dims, x1.shape[1], dtype)
    _, h, _ = functional.rnn_forward(x1, h0, *weights, "tanh", batch_first=False,
                                     training=False, backend=backend)
    a_next = np.ascontiguousarray(h.T)
    y_pred = np.ascontiguousarray(_softmax_columns(h, head).T)
    return a_next, y_pred, (a_next, y_pred, xt, parameters)


def rnn_forward(x, a0, parameters, *, backend="cython"):
    """Seed 003's RNN over ``x (n_x, m, T_x)`` from ``a0 (n_a, m)``: returns ``a (n_a, m,
    T_x)``, ``y_pred (n_y, m, T_x)`` and ``caches = (list of rnn_cell's caches, x)``. The
    time loop is one compiled call. (The softmax is corrected as in ``rnn_cell``.)"""
    weights, head, dims, dtype = _rnn_weights(parameters, "rnn_forward")
    x, xs = _sequence_input(x, dims, "rnn_forward", dtype)
    h0 = _column_state(a0, "a0", dims, xs.shape[1], dtype)
    out, _, _ = functional.rnn_forward(xs, h0, *weights, "tanh", batch_first=False,
                                       training=False, backend=backend)
    a = _to_columns(out)
    y_pred = _to_columns(_softmax_columns(out, head))
    caches = [(a[:, :, t], y_pred[:, :, t], x[:, :, t], parameters) for t in range(a.shape[2])]
    return a, y_pred, (caches, x)


def _lstm_run(xs, h0, c0, weights, backend):
    out, h_n, c_n, workspace = functional.lstm_forward(xs, h0, c0, *weights,
                                                       batch_first=False, training=True,
                                                       backend=backend)
    cs, gates = _lstm_cells_and_gates(workspace)
    del workspace                       # (the compiled core lends its arrays until then)
    n_a = h_n.shape[1]
    split = {g: gates[:, :, _LSTM.gate(g, n_a)] for g in _SEED003_GATE_NAMES}
    return out, cs, split


def lstm_cell(xt, a_prev, c_prev, parameters, *, backend="cython"):
    """Seed 003's LSTM step on the concatenation ``[a_prev; xt]``::

        ft = sigmoid(Wf @ concat + bf);  it = sigmoid(Wi @ concat + bi)
        cct = tanh(Wc @ concat + bc);    ot = sigmoid(Wo @ concat + bo)
        c_next = ft * c_prev + it * cct; a_next = ot * tanh(c_next)
        yt_pred = softmax(Wy @ a_next + by)

    ``xt (n_x, m)``, ``a_prev``/``c_prev (n_a, m)``, ``Wq (n_a, n_a + n_x)``, ``bq (n_a,
    1)``. Returns ``(a_next, c_next, yt_pred, cache)``, ``cache = (a_next, c_next, a_prev,
    c_prev, ft, it, cct, ot, xt, parameters)``. (The softmax is corrected as in
    ``rnn_cell``.)"""
    weights, head, dims, dtype = _lstm_weights(parameters, "lstm_cell")
    x1 = _step_input(xt, "xt", dims, dtype)
    m = x1.shape[1]
    h0 = _column_state(a_prev, "a_prev", dims, m, dtype)
    c0 = _column_state(c_prev, "c_prev", dims, m, dtype)
    out, cs, g = _lstm_run(x1, h0, c0, weights, backend)
    a_next = np.ascontiguousarray(out[0].T)
    c_next = np.ascontiguousarray(cs[1].T)
    yt_pred = np.ascontiguousarray(_softmax_columns(out[0], head).T)
    ft, it, cct, ot = (np.ascontiguousarray(g[q][0].T) for q in ("f", "i", "g", "o"))
    cache = (a_next, c_next, a_prev, c_prev, ft, it, cct, ot, xt, parameters)
    return a_next, c_next, yt_pred, cache


def lstm_forward(x, a0, parameters, *, backend="cython"):
    """Seed 003's LSTM over ``x (n_x, m, T_x)`` from ``a0 (n_a, m)`` and ``c = 0``, the
    notebook's ``lstm_forward`` completed: returns ``a (n_a, m, T_x)``, ``y (n_y, m, T_x)``,
    ``c (n_a, m, T_x)`` (the cell state of every step) and ``caches = (list of lstm_cell's
    caches, x)``. The time loop is one compiled call. (The notebook's cell stops after
    allocating ``a``, ``c`` and ``y``: no loop, no return.)"""
    weights, head, dims, dtype = _lstm_weights(parameters, "lstm_forward")
    x, xs = _sequence_input(x, dims, "lstm_forward", dtype)
    h0 = _column_state(a0, "a0", dims, xs.shape[1], dtype)
    out, cs, g = _lstm_run(xs, h0, None, weights, backend)
    a = _to_columns(out)
    c = _to_columns(cs[1:])
    y = _to_columns(_softmax_columns(out, head))
    f, i, cc, o = (_to_columns(g[q]) for q in ("f", "i", "g", "o"))
    c_prev = _to_columns(cs[:-1])                       # c_{t-1}: cs[0] is c0 = 0
    a_prev = np.concatenate([_to_columns(h0[None]), a[:, :, :-1]], axis=2)
    caches = [(a[:, :, t], c[:, :, t], a_prev[:, :, t], c_prev[:, :, t], f[:, :, t],
               i[:, :, t], cc[:, :, t], o[:, :, t], x[:, :, t], parameters)
              for t in range(a.shape[2])]
    return a, y, c, (caches, x)


# ------------------------------------------------------------------------- seed 004

class ScratchSimpleRNNClassifier:
    """Seed 004's classifier: an RNN (``Wx (n_features, n_nodes)``, ``Wh (n_nodes,
    n_nodes)``, ``B (n_nodes,)``) whose last hidden state goes through a dense layer
    (``W_out (n_nodes, n_output)``, ``B_out (n_output,)``) and a softmax.

    ``forward(X)``, ``X (batch_size, n_sequences, n_features)``, returns the class
    probabilities ``(batch_size, n_output)`` and keeps ``h_states`` (every step's hidden
    state, time-major: ``h_states[t]`` is ``(batch_size, n_nodes)``, ``h_states[-1]`` the
    last). ``backward(X, y_true, y_pred)`` (``y_true`` one-hot, or class indices) back-
    propagates the mean cross-entropy, ``dz = (y_pred - y_true) / batch_size``, through the
    dense layer and through time, and applies its SGD step, ``p -= learning_rate * dp`` to
    all five (``rnnfast.optim.SGD``, in place). ``fit(X, y, epochs=1, batch_size=None)``
    repeats forward and backward over minibatches (in order) and records ``loss`` (the mean
    cross-entropy of each epoch); ``predict(X)`` returns class indices, ``predict_proba(X)``
    the probabilities (neither disturbs a pending backward). (There is no ``a_states``:
    the pre-activations stay inside the compiled core.)

    The weights are drawn as the notebook's (``np.random.randn(...) * 0.01``, NumPy's global
    random state; zero biases), float64 unless ``dtype=np.float32``. Assigned weights
    (``model.Wx = w_x``) are converted to that dtype at the next forward. The time loops and
    their gradients run in the compiled core (``rnnfast.functional``), the head in
    ``rnnfast.nn.Dense``.

    Corrected: the notebook's backward uses tanh's derivative ``1 - tanh(a)**2`` whatever
    ``activation`` is; here the activation's own (np.tanh, compat's Tanh/Sigmoid/ReLU,
    scipy.special.expit, or "tanh"/"sigmoid"/"relu"). For tanh its math is kept as it is.
    """

    _PARAMS = ("Wx", "Wh", "B", "W_out", "B_out")

    def __init__(self, n_features, n_nodes, n_output, activation=np.tanh,
                 learning_rate=0.01, *, dtype=np.float64, backend="cython"):
        self.n_features = _checks.check_size(n_features, "n_features")
        self.n_nodes = _checks.check_size(n_nodes, "n_nodes")
        self.n_output = _checks.check_size(n_output, "n_output")
        _nonlinearity(activation)
        self.activation = activation
        self.learning_rate = learning_rate
        self.dtype = _checks.check_dtype(dtype)
        self.backend = _checks.check_backend(backend)
        self.Wx = (np.random.randn(n_features, n_nodes) * 0.01).astype(self.dtype)
        self.Wh = (np.random.randn(n_nodes, n_nodes) * 0.01).astype(self.dtype)
        self.B = np.zeros(n_nodes, self.dtype)
        self.W_out = (np.random.randn(n_nodes, n_output) * 0.01).astype(self.dtype)
        self.B_out = np.zeros(n_output, self.dtype)
        self.h_states = None
        self.loss = []
        # the head's math is Dense's; its params point at W_out/B_out before each use
        self._head = nn.Dense(self.n_nodes, self.n_output, dtype=self.dtype)
        self._head_eval = nn.Dense(self.n_nodes, self.n_output, dtype=self.dtype).eval()
        self._grads = {n: np.zeros_like(getattr(self, n)) for n in ("Wx", "Wh", "B")}
        self._opt = None                # (optim.SGD, the parameter arrays it holds)
        self._cache = None
        self._logits_last = None

    # ---------------------------------------------------------------- plumbing
    def _params(self):
        """The five parameters, checked against the sizes and converted to the model's dtype
        (an assigned array of another dtype is replaced by its converted copy)."""
        shapes = {"Wx": (self.n_features, self.n_nodes), "Wh": (self.n_nodes, self.n_nodes),
                  "B": (self.n_nodes,), "W_out": (self.n_nodes, self.n_output),
                  "B_out": (self.n_output,)}
        labels = {"n_features": self.n_features, "n_nodes": self.n_nodes,
                  "n_output": self.n_output}
        names = {"Wx": ("n_features", "n_nodes"), "Wh": ("n_nodes", "n_nodes"),
                 "B": ("n_nodes",), "W_out": ("n_nodes", "n_output"), "B_out": ("n_output",)}
        arrays = {}
        for name in self._PARAMS:
            a = getattr(self, name)
            if not (type(a) is np.ndarray and a.dtype == self.dtype
                    and a.shape == shapes[name] and a.flags.c_contiguous
                    and a.flags.writeable):
                (a,) = _checks.check_seed_shapes([(name, a, names[name])], dict(labels))
                a = np.array(a, dtype=self.dtype, order="C", copy=True)
            arrays[name] = a
        for name, a in arrays.items():  # every check passed: now the conversions take effect
            setattr(self, name, a)
        return arrays

    def _logits(self, head, h, p):
        head.params["W"], head.params["b"] = p["W_out"], p["B_out"]
        return head(h)

    def _forward(self, X, training):
        p = self._params()
        nonlinearity = _nonlinearity(self.activation)
        out, h_n, workspace = functional.rnn_forward(
            X, None, p["Wx"], p["Wh"], p["B"], nonlinearity, training=training,
            backend=self.backend)
        logits = self._logits(self._head if training else self._head_eval, h_n, p)
        return out, workspace, nonlinearity, logits

    def _optimizer(self, p):
        held = self._opt[1] if self._opt is not None else None
        if held is None or any(held[n] is not p[n] for n in self._PARAMS):
            g = self._grads
            self._opt = (optim.SGD({"Wx": (p["Wx"], g["Wx"]), "Wh": (p["Wh"], g["Wh"]),
                                    "B": (p["B"], g["B"]),
                                    "W_out": (p["W_out"], self._head.grads["W"]),
                                    "B_out": (p["B_out"], self._head.grads["b"])},
                                   lr=self.learning_rate), dict(p))
        opt = self._opt[0]
        opt.lr = self.learning_rate
        return opt

    # ---------------------------------------------------------------- the notebook's API
    def forward(self, X):
        out, workspace, nonlinearity, logits = self._forward(X, True)
        self.h_states = out.transpose(1, 0, 2)
        # (backward takes X again, as the notebook's: only its shape is kept)
        self._cache = (np.shape(X), workspace, nonlinearity)
        self._logits_last = logits
        return losses.softmax(logits, axis=-1)

    def backward(self, X, y_true, y_pred):
        if self._cache is None:
            raise ValueError("backward needs a forward before it (each forward serves one "
                             "backward)")
        shape, workspace, nonlinearity = self._cache
        X = _checks.as_numeric_array(X, "X")
        if X.shape != shape:
            raise ValueError(f"X must be the forward's input, of shape {shape} (batch_size, "
                             f"n_sequences, n_features), got shape {X.shape}")
        batch = shape[0]
        t = _checks.check_seed_labels(y_true, "y_true", batch, self.n_output, self.dtype)
        (y_pred,) = _checks.check_seed_shapes(
            [("y_pred", y_pred, ("batch_size", "n_output"))],
            {"batch_size": batch, "n_output": self.n_output})
        p = self._params()
        opt = self._optimizer(p)        # (before anything changes: it may raise)
        dz = (np.asarray(y_pred, self.dtype) - t) / batch
        self._head.params["W"], self._head.params["b"] = p["W_out"], p["B_out"]
        dh = self._head.backward(dz)
        _, _, dWx, dWh, dB = functional.rnn_backward(None, dh, X, p["Wx"], p["Wh"], workspace,
                                                     nonlinearity, backend=self.backend,
                                                     input_grad=False)
        self._cache = None
        for name, d in (("Wx", dWx), ("Wh", dWh), ("B", dB)):
            np.copyto(self._grads[name], d)
        opt.step()

    def fit(self, X, y, epochs=1, batch_size=None):
        """Train with the notebook's forward/backward over minibatches of ``batch_size``
        (None: the whole set), in order, for ``epochs`` epochs; ``y`` one-hot or class
        indices. Appends each epoch's mean cross-entropy to ``loss``; returns self."""
        X = _checks.as_numeric_array(X, "X")
        if X.ndim != 3 or X.shape[0] < 1 or X.shape[2] != self.n_features:
            raise ValueError(f"X must have shape (n_samples, n_sequences, n_features="
                             f"{self.n_features}), got shape {X.shape}")
        n = X.shape[0]
        Y = _checks.check_seed_labels(y, "y", n, self.n_output, self.dtype)
        epochs = _checks.check_size(epochs, "epochs")
        size = n if batch_size is None else _checks.check_size(batch_size, "batch_size")
        for _ in range(epochs):
            total = 0.0
            for start in range(0, n, size):
                xb, yb = X[start:start + size], Y[start:start + size]
                y_pred = self.forward(xb)
                total += losses.softmax_cross_entropy(self._logits_last, yb)[0] * len(xb)
                self.backward(xb, yb, y_pred)
            self.loss.append(total / n)
        return self

    def predict_proba(self, X):
        _, _, _, logits = self._forward(X, False)
        return losses.softmax(logits, axis=-1)

    def predict(self, X):
        return np.argmax(self.predict_proba(X), axis=1)
