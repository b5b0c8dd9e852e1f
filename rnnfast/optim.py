"""Optimizers that update parameters in place: ``SGD`` (momentum, Nesterov, weight decay),
``AdaGrad``, ``Adam``, and ``clip_grad_norm``.

An optimizer is built over named ``(parameter, gradient)`` array pairs, collected *by
reference* when it is built, from any of:

- a layer, or anything with ``params`` and ``grads`` dicts (``rnnfast.RNN/LSTM/GRU``,
  ``rnnfast.nn.Dense``): its parameters under their own names (``"Wx"``);
- a list or tuple of such objects (or of ``(params_dict, grads_dict)`` pairs): names
  prefixed with their position, ``"0.Wx"``, ``"1.W"``;
- a dict ``{name: (parameter, gradient)}`` of arrays.

So ``opt = Adam([lstm, dense], lr=1e-2)`` once, then per minibatch: forward, backward (which
writes the gradients into ``layer.grads``' arrays: the same objects every time), ``opt.step()``.
``step()`` allocates nothing: its state (momentum buffers, accumulators, moments) and
scratch are allocated when the optimizer is built, and every operation writes into them
(``np.multiply(..., out=...)``). ``zero_grad()`` zeroes the gradients (needed only with
``backward(..., accumulate=True)``: a plain backward overwrites them). ``lr`` may be changed
between steps (a schedule). If a layer's ``params`` or ``grads`` entry is replaced by another
array after the optimizer was built, ``step()`` raises instead of silently updating the old
one.

The updates follow the published definitions, in PyTorch's formulation (``torch.optim``)
where it has one; the tests hold each to a NumPy transcription of the formula. With the
compiled core, a parameter that is a C-contiguous float32/float64 array is updated in one
compiled pass that gives the NumPy steps' values bit for bit (Adam over a 19k-parameter
model: one pass instead of 14 ufunc calls per array); anything else takes the NumPy steps.
"""
import math

import numpy as np

from . import _checks, functional

__all__ = ["Optimizer", "SGD", "AdaGrad", "Adam", "clip_grad_norm"]

# rnnfast._core, whose ``_*_update`` functions do a step's update of one parameter in one
# pass (bit for bit the NumPy steps below, which remain the twin and the fallback), or None
# without the compiled core
try:
    _FUSED = functional.compiled_core()
except ImportError:
    _FUSED = None


def _is_layer_like(obj):
    return isinstance(getattr(obj, "params", None), dict) and isinstance(
        getattr(obj, "grads", None), dict)


def _describe(owner, prefix):
    if owner is None:
        return "the optimizer's"
    where = f" {prefix[:-1]}" if prefix else ""
    return f"{type(owner).__name__}{where}'s"


class _Entry:
    """One parameter: its arrays, and where they came from (to detect replacements)."""

    __slots__ = ("name", "param", "grad", "owner", "pdict", "gdict", "key", "prefix")

    def __init__(self, name, param, grad, owner=None, pdict=None, gdict=None, key=None,
                 prefix=""):
        self.name, self.param, self.grad = name, param, grad
        self.owner, self.pdict, self.gdict, self.key = owner, pdict, gdict, key
        self.prefix = prefix


def _from_dicts(owner, pdict, gdict, prefix):
    entries = []
    for key in pdict:
        if key not in gdict:
            raise ValueError(f"{_describe(owner, prefix)} grads has no entry {key!r} for "
                             f"params[{key!r}]")
        entries.append(_Entry(prefix + key, pdict[key], gdict[key], owner, pdict, gdict, key,
                              prefix))
    return entries


def _collect(params):
    if _is_layer_like(params):
        entries = _from_dicts(params, params.params, params.grads, "")
    elif isinstance(params, dict):
        entries = []
        for name, pair in params.items():
            if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
                raise TypeError(f"params[{name!r}] must be a (parameter, gradient) pair of "
                                f"arrays, got {type(pair).__name__}")
            entries.append(_Entry(str(name), pair[0], pair[1]))
    elif isinstance(params, (list, tuple)):
        entries = []
        for i, item in enumerate(params):
            if _is_layer_like(item):
                entries += _from_dicts(item, item.params, item.grads, f"{i}.")
            elif (isinstance(item, (tuple, list)) and len(item) == 2
                  and all(isinstance(d, dict) for d in item)):
                entries += _from_dicts(None, item[0], item[1], f"{i}.")
            else:
                raise TypeError(f"params[{i}] must be a layer (an object with params and "
                                f"grads dicts) or a (params_dict, grads_dict) pair, got "
                                f"{type(item).__name__}")
    else:
        raise TypeError("params must be a layer (an object with params and grads dicts), a "
                        "list of layers, or a dict {name: (parameter, gradient)}, got "
                        f"{type(params).__name__}")
    if not entries:
        raise ValueError("the optimizer got no parameters")
    seen = set()
    for e in entries:
        for what, a in (("parameter", e.param), ("gradient", e.grad)):
            if not isinstance(a, np.ndarray):
                raise TypeError(f"{what} {e.name!r} must be an ndarray (updated in place), "
                                f"got {type(a).__name__}")
        if e.param.dtype not in _checks.FLOAT_DTYPES:
            raise TypeError(f"parameter {e.name!r} must be float32 or float64, got "
                            f"{e.param.dtype}")
        if not e.param.flags.writeable:
            raise ValueError(f"parameter {e.name!r} is read-only: the optimizer updates it "
                             f"in place")
        if e.grad.shape != e.param.shape or e.grad.dtype != e.param.dtype:
            raise ValueError(f"gradient {e.name!r} must have its parameter's shape and dtype "
                             f"{e.param.shape} {e.param.dtype}, got {e.grad.shape} "
                             f"{e.grad.dtype}")
        if id(e.param) in seen:
            raise ValueError(f"parameter {e.name!r} appears twice (it would be updated twice "
                             f"per step)")
        seen.add(id(e.param))
    return entries


class Optimizer:
    """What the optimizers share: the collected ``(parameter, gradient)`` pairs, ``lr``,
    ``step()``, ``zero_grad()``. Subclasses allocate their state in ``__init__`` and
    implement ``_update(i, param, grad)`` with in-place operations only."""

    def __init__(self, params, lr):
        self._entries = _collect(params)
        self.lr = lr
        self.steps = 0          # the number of step() calls so far (Adam's t)

    @property
    def lr(self):
        return self._lr

    @lr.setter
    def lr(self, value):
        self._lr = _checks.check_positive(value, "lr")

    @property
    def names(self):
        """The parameters' names, in update order."""
        return [e.name for e in self._entries]

    @property
    def params(self):
        """``{name: parameter array}`` (the very arrays the optimizer updates)."""
        return {e.name: e.param for e in self._entries}

    @property
    def grads(self):
        """``{name: gradient array}`` (the very arrays the optimizer reads)."""
        return {e.name: e.grad for e in self._entries}

    def _scratch(self):
        return [np.empty_like(e.param) for e in self._entries]

    def _zeros(self, fill=0.0):
        return [np.full_like(e.param, fill) for e in self._entries]

    def _check_sources(self):
        for e in self._entries:
            if e.pdict is None:
                continue
            o = e.owner
            if o is not None and (o.params is not e.pdict or o.grads is not e.gdict):
                raise ValueError(f"{_describe(o, e.prefix)} params or grads dict was replaced "
                                 f"after the optimizer was built: the optimizer would update "
                                 f"arrays the layer no longer uses; write into the arrays "
                                 f"instead, or build a new optimizer")
            for what, d, a in (("params", e.pdict, e.param), ("grads", e.gdict, e.grad)):
                if d.get(e.key) is not a:
                    raise ValueError(f"{_describe(o, e.prefix)} {what}[{e.key!r}] was replaced "
                                     f"by another array after the optimizer was built: write "
                                     f"into it instead ({what}[{e.key!r}][...] = value), or "
                                     f"build a new optimizer")

    def step(self):
        """Update every parameter in place from its gradient."""
        self._check_sources()
        self.steps += 1
        for i, e in enumerate(self._entries):
            self._update(i, e.param, e.grad)

    def zero_grad(self):
        """Zero every gradient array (in place)."""
        for e in self._entries:
            e.grad[...] = 0

    def _update(self, i, p, g):
        raise NotImplementedError

    # the compiled one-pass updates (False: the NumPy steps only; the tests compare both)
    _fused = True

    def _decayed(self, p, g, out):
        """``g + weight_decay * p`` in ``out`` (or ``g`` itself without weight decay)."""
        if not self.weight_decay:
            return g
        np.multiply(p, self.weight_decay, out=out)
        np.add(out, g, out=out)
        return out

    def __repr__(self):
        return (f"{type(self).__name__}({len(self._entries)} parameters, "
                f"{self._hyper_repr()})")

    def _hyper_repr(self):
        return f"lr={self.lr}"


class SGD(Optimizer):
    """Stochastic gradient descent, with momentum (Polyak's heavy ball, as PyTorch) and
    Nesterov momentum (Sutskever et al. 2013, as PyTorch)::

        d = g + weight_decay * p
        buf = momentum * buf + d           (buf = d at the first step)
        d = d + momentum * buf  if nesterov  else  buf        (when momentum > 0)
        p = p - lr * d
    """

    def __init__(self, params, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(params, lr)
        self.momentum = _checks.check_fraction(momentum, "momentum")
        self.nesterov = bool(nesterov)
        self.weight_decay = _checks.check_positive(weight_decay, "weight_decay",
                                                   allow_zero=True)
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs a momentum > 0")
        self._buf = self._zeros() if self.momentum else None
        self._s1 = self._scratch()
        self._s2 = self._scratch() if self.nesterov else None

    def _update(self, i, p, g):
        if self._fused and _FUSED is not None and _FUSED._sgd_update(
                p, g, self._buf[i] if self.momentum else None, self.lr, self.momentum,
                self.nesterov, self.weight_decay):
            return
        s1 = self._s1[i]
        d = self._decayed(p, g, s1)
        if self.momentum:
            buf = self._buf[i]
            np.multiply(buf, self.momentum, out=buf)
            np.add(buf, d, out=buf)
            if self.nesterov:
                s2 = self._s2[i]
                np.multiply(buf, self.momentum, out=s2)
                np.add(d, s2, out=s2)
                d = s2
            else:
                d = buf
        out = d if (d is s1 or (self._s2 is not None and d is self._s2[i])) else s1
        np.multiply(d, self.lr, out=out)
        np.subtract(p, out, out=p)

    def _hyper_repr(self):
        return (f"lr={self.lr}, momentum={self.momentum}, nesterov={self.nesterov}, "
                f"weight_decay={self.weight_decay}")


class AdaGrad(Optimizer):
    """AdaGrad (Duchi, Hazan and Singer 2011; PyTorch's ``Adagrad`` without lr decay)::

        d = g + weight_decay * p
        G = G + d * d                      (every parameter has its own accumulator)
        p = p - lr * d / (sqrt(G) + eps)

    ``G`` starts at ``initial_accumulator_value``. Every parameter's squared gradients are
    *summed* over all steps, the bias's as the weights'. (Seed notebook 000's ``AdaGrad``
    assigns ``self.HB = layer.dB * layer.dB`` where it means ``+=``: its bias accumulator
    holds only the latest squared gradient, so the bias's step, ``lr * dB / (|dB| + delta)``
    ~ ``lr * sign(dB)``, never shrinks; and one ``HW``/``HB`` pair is shared by every layer
    the instance updates. Here each parameter has its own, and none is reset.)
    """

    def __init__(self, params, lr=1e-2, eps=1e-10, weight_decay=0.0,
                 initial_accumulator_value=0.0):
        super().__init__(params, lr)
        self.eps = _checks.check_positive(eps, "eps", allow_zero=True)
        self.weight_decay = _checks.check_positive(weight_decay, "weight_decay",
                                                   allow_zero=True)
        self.initial_accumulator_value = _checks.check_positive(
            initial_accumulator_value, "initial_accumulator_value", allow_zero=True)
        self.accumulators = self._zeros(self.initial_accumulator_value)
        self._s1 = self._scratch()
        self._s2 = self._scratch() if self.weight_decay else None

    def _update(self, i, p, g):
        acc = self.accumulators[i]
        if self._fused and _FUSED is not None and _FUSED._adagrad_update(
                p, g, acc, self.lr, self.eps, self.weight_decay):
            return
        s1 = self._s1[i]
        d = self._decayed(p, g, self._s2[i] if self._s2 is not None else None)
        np.multiply(d, d, out=s1)
        np.add(acc, s1, out=acc)
        np.sqrt(acc, out=s1)
        np.add(s1, self.eps, out=s1)
        np.divide(d, s1, out=s1)
        np.multiply(s1, self.lr, out=s1)
        np.subtract(p, s1, out=p)

    def _hyper_repr(self):
        return f"lr={self.lr}, eps={self.eps}, weight_decay={self.weight_decay}"


class Adam(Optimizer):
    """Adam (Kingma and Ba 2015, Algorithm 1, with PyTorch's placement of ``eps``)::

        d = g + weight_decay * p           (L2 as torch.optim.Adam, not AdamW)
        m = beta1 * m + (1 - beta1) * d
        v = beta2 * v + (1 - beta2) * d * d
        p = p - (lr / (1 - beta1**t)) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    ``t`` is the step count, from 1. Computed as Kingma and Ba's Section 2 rewrites the
    last line: the same value in exact arithmetic, rounded otherwise than torch.optim.Adam
    in the last bits, one division a parameter fewer (divisions and square roots bound the
    update: digits' 19k float32 parameters, 13.4 -> 8.8 us a step on AVX-512, an Intel
    Xeon)::

        c = sqrt(1 - beta2**t)
        p = p - (m / (sqrt(v) + eps * c)) * (lr * c / (1 - beta1**t))
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr)
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
            raise TypeError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        self.betas = (_checks.check_fraction(betas[0], "betas[0]"),
                      _checks.check_fraction(betas[1], "betas[1]"))
        self.eps = _checks.check_positive(eps, "eps", allow_zero=True)
        self.weight_decay = _checks.check_positive(weight_decay, "weight_decay",
                                                   allow_zero=True)
        self.m = self._zeros()
        self.v = self._zeros()
        self._s1 = self._scratch()
        self._s2 = self._scratch() if self.weight_decay else None

    def _update(self, i, p, g):
        b1, b2 = self.betas
        t = self.steps
        m, v = self.m[i], self.v[i]
        bias2_sqrt = math.sqrt(1.0 - b2 ** t)
        step_size = self.lr * bias2_sqrt / (1.0 - b1 ** t)
        eps = self.eps * bias2_sqrt
        if self._fused and _FUSED is not None and _FUSED._adam_update(
                p, g, m, v, b1, b2, step_size, eps, self.weight_decay):
            return
        s1 = self._s1[i]
        d = self._decayed(p, g, self._s2[i] if self._s2 is not None else None)
        np.multiply(m, b1, out=m)
        np.multiply(d, 1.0 - b1, out=s1)
        np.add(m, s1, out=m)
        np.multiply(v, b2, out=v)
        np.multiply(d, d, out=s1)
        np.multiply(s1, 1.0 - b2, out=s1)
        np.add(v, s1, out=v)
        np.sqrt(v, out=s1)
        np.add(s1, eps, out=s1)
        np.divide(m, s1, out=s1)
        np.multiply(s1, step_size, out=s1)
        np.subtract(p, s1, out=p)

    def _hyper_repr(self):
        return (f"lr={self.lr}, betas={self.betas}, eps={self.eps}, "
                f"weight_decay={self.weight_decay}")


def _grad_arrays(grads):
    if isinstance(grads, Optimizer):
        return [e.grad for e in grads._entries]
    if _is_layer_like(grads):
        return list(grads.grads.values())
    if isinstance(grads, dict):
        return list(grads.values())
    if isinstance(grads, np.ndarray):
        return [grads]
    if isinstance(grads, (list, tuple)):
        out = []
        for g in grads:
            out += _grad_arrays(g)
        return out
    raise TypeError("grads must be an optimizer, a layer, a dict of arrays or a list of "
                    f"them, got {type(grads).__name__}")


def clip_grad_norm(grads, max_norm):
    """Scale the gradients in place so that their global L2 norm (over all of them, as one
    vector) is at most ``max_norm``; returns the norm before clipping (a float).

    ``grads``: an optimizer (its gradients), a layer, a dict of arrays, or a list of any of
    these. As PyTorch's ``clip_grad_norm_``: the factor is ``max_norm / (norm + 1e-6)``,
    applied only when it is below 1. A non-finite norm (a NaN or Inf gradient) is returned
    without touching the gradients, so that the caller can skip the step.
    """
    max_norm = _checks.check_positive(max_norm, "max_norm")
    arrays = _grad_arrays(grads)
    for g in arrays:
        if not isinstance(g, np.ndarray) or g.dtype.kind != "f":
            raise TypeError(f"gradients must be floating ndarrays, got "
                            f"{type(g).__name__} {getattr(g, 'dtype', '')}")
    total = 0.0
    for g in arrays:
        flat = g.reshape(-1)
        total += float(np.dot(flat, flat))
    total = math.sqrt(total)
    if math.isfinite(total):
        coef = max_norm / (total + 1e-6)
        if coef < 1.0:
            for g in arrays:
                np.multiply(g, coef, out=g)
    return total
