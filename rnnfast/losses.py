"""Losses with their gradients: each returns ``(loss, dinput)``, the loss a Python float
(the mean over the batch) and its gradient with respect to the first argument, in that
argument's float dtype (integer inputs compute in float64)."""
import numpy as np

from . import _checks

__all__ = ["softmax", "log_softmax", "softmax_cross_entropy", "mse"]


def _float(a, name):
    a = _checks.as_numeric_array(a, name)
    dtype = a.dtype if a.dtype in _checks.FLOAT_DTYPES else np.float64
    return np.asarray(a, dtype=dtype)


def log_softmax(logits, axis=-1):
    """``log(softmax(logits))``, computed as ``z - max(z) - log(sum(exp(z - max(z))))`` (no
    overflow for large logits, no ``log(0)`` for very negative ones)."""
    return _log_softmax(_float(logits, "logits"), axis)[0]


def _log_softmax(z, axis=-1):
    """``log_softmax`` of a float array ``z`` (a new array), and ``exp(z - max(z))`` in a
    second new array of that shape (scratch for the caller: ``np.exp(logp, out=it)``).
    In place where it can be: a minibatch's loss is a dozen tiny NumPy calls, and their
    count is its cost (same values as written out plainly)."""
    shifted = z - np.maximum.reduce(z, axis=axis, keepdims=True)
    e = np.exp(shifted)
    total = np.add.reduce(e, axis=axis, keepdims=True)
    np.log(total, out=total)
    np.subtract(shifted, total, out=shifted)
    return shifted, e


def softmax(logits, axis=-1):
    """The softmax along ``axis``, shifted by the maximum (no overflow: logits of 1e4 are
    fine); rows sum to 1."""
    z = _float(logits, "logits")
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    e /= e.sum(axis=axis, keepdims=True)
    return e


def softmax_cross_entropy(logits, labels):
    """The cross-entropy of ``softmax(logits)`` against ``labels``, and its gradient.

    ``logits``: ``(n, classes)``, or any ``(..., classes)`` (a many-to-many output, say);
    the mean is over every position but the last axis. ``labels``: integer class indices
    of shape ``logits.shape[:-1]`` in ``[0, classes)``, or a one-hot (or any target
    distribution) array of ``logits``' shape. Returns ``(loss, dlogits)``, ``loss =
    mean(-sum(t * log_softmax(logits)))`` and ``dlogits = (softmax(logits) * sum(t) - t) /
    n`` (``(p - t) / n`` for one-hot targets).
    """
    z = _float(logits, "logits")
    if z.ndim < 1 or z.shape[-1] < 1 or z.size == 0:
        raise ValueError(f"logits must be (n, classes) with n, classes >= 1, got shape "
                         f"{z.shape}")
    labels = _checks.as_numeric_array(labels, "labels")
    n = z.size // z.shape[-1]
    if labels.shape == z.shape:                 # one-hot / target distributions
        logp, e = _log_softmax(z)
        p = np.exp(logp, out=e)
        t = np.asarray(labels, dtype=z.dtype)
        loss = -float(np.sum(t * logp, dtype=np.float64)) / n
        dlogits = p * t.sum(axis=-1, keepdims=True)
        dlogits -= t
        dlogits /= n
        return loss, dlogits
    if labels.shape == z.shape[:-1]:            # class indices
        if labels.dtype.kind not in "iu":
            raise TypeError(f"labels of shape {labels.shape} are class indices and must be "
                            f"integers, got dtype {labels.dtype} (or pass one-hot labels of "
                            f"logits' shape {z.shape})")
        classes = z.shape[-1]
        if labels.size and (labels.min() < 0 or labels.max() >= classes):
            raise ValueError(f"labels must be class indices in [0, {classes}), got values "
                             f"from {labels.min()} to {labels.max()}")
        return _cross_entropy_indices(z, labels.reshape(-1))
    raise ValueError(f"labels must be class indices of shape {z.shape[:-1]} or one-hot of "
                     f"logits' shape {z.shape}, got shape {labels.shape}")


def _cross_entropy_indices(z, labels):
    """``softmax_cross_entropy`` for float ``logits`` ``z (..., classes)`` and valid integer
    class indices ``labels`` (flat, one per row of ``z``), unchecked: the public function
    checks, and a model whose labels were checked once in ``fit`` calls this per
    minibatch."""
    classes = z.shape[-1]
    n = z.size // classes
    logp, e = _log_softmax(z)
    flat = np.arange(0, n * classes, classes)   # each row's entry in the flat arrays
    flat += labels.astype(np.intp, copy=False)
    picked = logp.reshape(-1)[flat]
    loss = -float(np.add.reduce(picked, dtype=np.float64)) / n
    dlogits = np.exp(logp, out=e)
    d = dlogits.reshape(-1)
    d[flat] = d[flat] - 1                       # (p - onehot): one entry per row
    dlogits /= n
    return loss, dlogits


def mse(pred, target):
    """The mean squared error over every element, ``mean((pred - target)**2)`` (PyTorch's
    ``MSELoss()``), and ``dpred = 2 * (pred - target) / pred.size``."""
    pred = _float(pred, "pred")
    target = _checks.as_numeric_array(target, "target")
    if target.shape != pred.shape:
        raise ValueError(f"target must have pred's shape {pred.shape}, got shape "
                         f"{target.shape}")
    if pred.size == 0:
        raise ValueError("pred must not be empty")
    diff = pred - np.asarray(target, dtype=pred.dtype)
    loss = float(np.sum(np.square(diff, dtype=np.float64))) / diff.size
    diff *= 2.0 / diff.size
    return loss, diff
