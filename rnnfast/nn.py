"""Building blocks around the recurrent layers: ``Dense``, the head of a classifier or a
regressor. It holds ``params`` and ``grads`` dicts as the layers do (stable arrays that each
backward writes into, so an optimizer of ``rnnfast.optim`` may hold them), and has the
layers' ``train()`` / ``eval()``."""
import numpy as np

from . import _checks

__all__ = ["Dense"]


class Dense:
    """A fully connected layer ``y = x @ W + b``, right-multiplying as the recurrent layers:
    ``W (in_features, out_features)``, ``b (out_features,)``.

    ``forward(x)`` takes ``(batch, in_features)`` or ``(batch, seq_len, in_features)`` (the
    same weights at every step) and returns ``(..., out_features)``;
    ``backward(dout, *, accumulate=False) -> dx`` writes ``dW`` and ``db`` into the arrays of
    ``grads`` (or adds to them). Initialised as PyTorch's ``nn.Linear``: ``W`` and ``b``
    uniform in ``±1/sqrt(in_features)``; ``seed`` makes it reproducible. From PyTorch,
    ``W = linear.weight.T``, ``b = linear.bias``.
    """

    def __init__(self, in_features, out_features, *, dtype=np.float32, seed=None):
        self.in_features = _checks.check_size(in_features, "in_features")
        self.out_features = _checks.check_size(out_features, "out_features")
        self.dtype = _checks.check_dtype(dtype)
        self.training = True
        self._x = None
        rng = np.random.default_rng(seed)
        k = 1.0 / np.sqrt(self.in_features)
        self.params = {
            "W": rng.uniform(-k, k, (self.in_features, self.out_features)).astype(self.dtype),
            "b": rng.uniform(-k, k, self.out_features).astype(self.dtype),
        }
        self.grads = {name: np.zeros_like(p) for name, p in self.params.items()}
        self._param_shapes = {name: p.shape for name, p in self.params.items()}
        self._checked = None

    # ---------------------------------------------------------------- modes
    def train(self, mode=True):
        """Training mode (the default): forward keeps the input ``backward`` needs."""
        self.training = bool(mode)
        if not self.training:
            self._x = None
        return self

    def eval(self):
        """Inference mode: forward keeps nothing; ``backward`` raises."""
        return self.train(False)

    def zero_grad(self):
        for g in self.grads.values():
            g[...] = 0

    def __call__(self, x):
        return self.forward(x)

    def __repr__(self):
        return (f"Dense({self.in_features}, {self.out_features}, "
                f"dtype=np.{self.dtype})")

    # ---------------------------------------------------------------- the math
    def _weights(self):
        """``W`` and ``b``, checked. While ``params`` holds the very arrays checked last
        time, with the same shape, dtype and strides (writing into them changes none of
        these), the check is not repeated (as the recurrent layers do)."""
        p = self.params
        W, b = p.get("W"), p.get("b")
        memo = self._checked
        if (memo is not None and memo[0] is W and memo[1] is b
                and (W.shape, W.dtype, W.strides, b.shape, b.dtype, b.strides) == memo[2]):
            return W, b
        self._checked = None
        for name, shape in self._param_shapes.items():
            if name not in p:
                raise ValueError(f"params[{name!r}] is missing: it must be an array of shape "
                                 f"{shape}")
            got = _checks.as_numeric_array(p[name], f"params[{name!r}]").shape
            if got != shape:
                raise ValueError(f"params[{name!r}] must have shape {shape} (in_features="
                                 f"{self.in_features}, out_features={self.out_features}), "
                                 f"got shape {got}")
        W = _checks.as_float_array(p["W"], "params['W']", self.dtype)
        b = _checks.as_float_array(p["b"], "params['b']", self.dtype)
        if W is p["W"] and b is p["b"]:     # remembered only when nothing was converted
            self._checked = (W, b, (W.shape, W.dtype, W.strides, b.shape, b.dtype, b.strides))
        return W, b

    def forward(self, x):
        x_user = x
        x = _checks.check_features(x, "x", self.in_features, self.dtype)
        W, b = self._weights()
        x2 = x.reshape(-1, self.in_features)
        out = x2 @ W
        out += b
        if self.training:
            # backward needs x as it was: our own copy, not the caller's array
            self._x = x.copy() if np.may_share_memory(x, x_user) else x
        return out.reshape(x.shape[:-1] + (self.out_features,))

    def backward(self, dout, *, accumulate=False):
        """``dx`` for ``dout`` (the gradient on forward's output, its shape); ``dW`` and
        ``db`` go into ``grads`` (overwritten, or added to with ``accumulate=True``)."""
        if self._x is None:
            raise ValueError("backward called without a training forward before it: call "
                             "forward in training mode (dense.train()) first; each backward "
                             "needs its own forward")
        x = self._x
        want = x.shape[:-1] + (self.out_features,)
        dout = _checks.check_features(dout, "dout", self.out_features, self.dtype)
        if dout.shape != want:
            raise ValueError(f"dout must have the shape of the forward output {want}, got "
                             f"shape {dout.shape}")
        W, _ = self._weights()
        _checks.check_grads_store(self.grads, self._param_shapes, self.dtype, owner="dense")
        x2 = x.reshape(-1, self.in_features)
        d2 = dout.reshape(-1, self.out_features)
        dx = (d2 @ W.T).reshape(x.shape)
        self._x = None
        _checks.store_grads(self.grads, ("W", "b"), (x2.T @ d2, np.add.reduce(d2, axis=0)),
                            accumulate)
        return dx
