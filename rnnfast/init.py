"""Initialisers: each fills a layer's ``params`` in place (the arrays stay the same objects,
so an optimizer built before still holds them) and returns the layer.

They take a recurrent layer (``rnnfast.RNN/LSTM/GRU``: what its parameters are comes from
its cell's entry in ``rnnfast.cells``), an ``rnnfast.nn.Dense``, or a list of these; ``seed``
is anything ``np.random.default_rng`` takes (a list is filled in order from one generator).

- ``torch_default``: PyTorch's defaults, what the layers' constructors do (``seed`` for
  ``seed``, the same draws: ``torch_default(LSTM(..., seed=None), seed=3)`` gives the
  parameters of ``LSTM(..., seed=3)``).
- ``xavier_uniform``: Glorot and Bengio (2010), weights ``U(-a, a)``, ``a = gain *
  sqrt(6 / (fan_in + fan_out))`` over the whole matrix as Keras' ``glorot_uniform`` and
  torch's ``xavier_uniform_`` compute the fans (``Wx``: ``input_size`` and ``G*hidden``);
  biases zero.
- ``orthogonal``: the recurrent weights ``Wh``, each ``(hidden, hidden)`` gate block its own
  random orthogonal matrix (Saxe et al. 2014: QR of a Gaussian matrix, signs fixed);
  a Dense layer's ``W`` (semi-)orthogonal. Other parameters unchanged.
- ``constant``: given arrays (or scalars), as the seed notebooks' ``ConstantInitializer``.
- ``lstm_forget_bias``: the forget-gate block of an LSTM's ``b`` set to a value (1.0, as
  Jozefowicz et al. 2015 and Keras' ``unit_forget_bias``).
"""
import numpy as np

from .nn import Dense

__all__ = ["torch_default", "xavier_uniform", "orthogonal", "constant", "lstm_forget_bias"]

_BASES = ("Wx", "Wh", "b_hn", "b")      # b_hn before b: the longer prefix first


def _split(name):
    """``(base, suffix)`` of a parameter name: ``"Wh_l1_reverse"`` -> ``("Wh",
    "_l1_reverse")`` (PyTorch's suffixes, DESIGN.md)."""
    for base in _BASES:
        if name == base or name.startswith(base + "_l") or name.startswith(base + "_reverse"):
            return base, name[len(base):]
    raise ValueError(f"unknown parameter name {name!r}")


def _layers(layer):
    if isinstance(layer, (list, tuple)):
        return list(layer)
    return [layer]


def _kind(layer):
    """"recurrent" (with its CellSpec) or "dense"; anything else is a TypeError."""
    spec = getattr(layer, "_spec", None)
    if spec is not None and isinstance(getattr(layer, "params", None), dict):
        return "recurrent", spec
    if isinstance(layer, Dense):
        return "dense", None
    raise TypeError(f"expected an rnnfast RNN, LSTM, GRU or nn.Dense layer (or a list of "
                    f"them), got {type(layer).__name__}")


def _fill(param, value):
    """Write ``value`` into ``param`` in place (its dtype), keeping the object."""
    np.copyto(param, np.asarray(value), casting="unsafe")


def _groups(params):
    """``{suffix: {base: name}}``: the parameters of each layer and direction."""
    groups = {}
    for name in params:
        base, suffix = _split(name)
        groups.setdefault(suffix, {})[base] = name
    return groups


def torch_default(layer, *, seed=None):
    """PyTorch's default initialisation: recurrent weights and both torch biases
    ``U(-1/sqrt(hidden), 1/sqrt(hidden))`` (``b`` is the sum of two draws where it is
    torch's ``bias_ih + bias_hh``, as the registry maps them); Dense ``W`` and ``b``
    ``U(-1/sqrt(in_features), 1/sqrt(in_features))`` (``nn.Linear``)."""
    rng = np.random.default_rng(seed)
    for lay in _layers(layer):
        kind, spec = _kind(lay)
        p = lay.params
        if kind == "dense":
            k = 1.0 / np.sqrt(lay.in_features)
            _fill(p["W"], rng.uniform(-k, k, p["W"].shape))
            _fill(p["b"], rng.uniform(-k, k, p["b"].shape))
            continue
        for names in _groups(p).values():
            Wh = p[names["Wh"]]
            k = 1.0 / np.sqrt(Wh.shape[0])
            # the layers' own order of draws: Wx, Wh, bias_ih, bias_hh
            wx = rng.uniform(-k, k, p[names["Wx"]].shape)
            wh = rng.uniform(-k, k, Wh.shape)
            gh = Wh.shape[1]
            bias_ih, bias_hh = rng.uniform(-k, k, gh), rng.uniform(-k, k, gh)
            _fill(p[names["Wx"]], wx.astype(lay.dtype))
            _fill(p[names["Wh"]], wh.astype(lay.dtype))
            biases = spec.biases_from_torch(bias_ih.astype(lay.dtype),
                                            bias_hh.astype(lay.dtype))
            for base, value in biases.items():
                _fill(p[names[base]], value)
    return layer


def _glorot(rng, shape, gain):
    fan_in, fan_out = shape
    a = gain * np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-a, a, shape)


def xavier_uniform(layer, *, gain=1.0, seed=None):
    """Glorot/Xavier uniform weights (``Wx`` and ``Wh``, or Dense ``W``), zero biases."""
    rng = np.random.default_rng(seed)
    for lay in _layers(layer):
        kind, _ = _kind(lay)
        for name, param in lay.params.items():
            base = name if kind == "dense" else _split(name)[0]
            if base in ("Wx", "Wh", "W"):
                _fill(param, _glorot(rng, param.shape, gain))
            else:
                _fill(param, 0.0)
    return layer


def _orthogonal(rng, rows, cols, gain):
    a = rng.standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q *= np.sign(np.diag(r))            # a uniform (Haar) draw, not QR's sign convention
    q = q if rows >= cols else q.T
    return gain * q[:rows, :cols]


def orthogonal(layer, *, gain=1.0, seed=None):
    """Each ``(hidden, hidden)`` gate block of every ``Wh`` its own random orthogonal matrix
    (times ``gain``); a Dense layer's ``W`` (semi-)orthogonal. Nothing else changes."""
    rng = np.random.default_rng(seed)
    for lay in _layers(layer):
        kind, spec = _kind(lay)
        p = lay.params
        if kind == "dense":
            _fill(p["W"], _orthogonal(rng, *p["W"].shape, gain))
            continue
        for name, param in p.items():
            if _split(name)[0] != "Wh":
                continue
            hidden = param.shape[0]
            for gate in spec.gate_names:
                block = _orthogonal(rng, hidden, hidden, gain)
                _fill(param[:, spec.gate(gate, hidden)], block)
    return layer


def constant(layer, source=None, **values):
    """Copy given values into parameters: ``constant(rnn, Wx=w_x, Wh=w_h, b=b)`` (arrays of
    the parameters' shapes, or anything that broadcasts to them, a scalar say), or
    ``constant(rnn, initializer)`` with an object whose methods of the parameters' names
    return them (the seed notebooks' ``ConstantInitializer``: ``initializer.Wx()``...).
    Parameters not named keep their values; an unknown name is a ValueError."""
    for lay in _layers(layer):
        _kind(lay)
        p = lay.params
        given = dict(values)
        if source is not None:
            for name in p:
                method = getattr(source, name, None)
                if callable(method) and name not in given:
                    given[name] = method()
            if not given:
                raise ValueError(f"{type(source).__name__} has none of the methods "
                                 f"{tuple(p)} (one per parameter, returning its value)")
        unknown = sorted(set(given) - set(p))
        if unknown:
            raise ValueError(f"constant: no parameter(s) {unknown} in this "
                             f"{type(lay).__name__} (it has {tuple(p)})")
        for name, value in given.items():
            value = np.asarray(value)
            try:
                np.broadcast_to(value, p[name].shape)
            except ValueError:
                raise ValueError(f"constant: {name} must have shape {p[name].shape} (or "
                                 f"broadcast to it), got shape {value.shape}") from None
            _fill(p[name], value)
    return layer


def lstm_forget_bias(layer, value=1.0):
    """Set the forget-gate block of every LSTM bias ``b`` (``b[H:2H]``, gate order i, f, g,
    o) to ``value``; the other gates keep theirs. (rnnfast's ``b`` is torch's ``bias_ih +
    bias_hh``: ``value`` is the total forget bias.)"""
    for lay in _layers(layer):
        kind, spec = _kind(lay)
        if kind != "recurrent" or "f" not in spec.gate_names:
            raise ValueError(f"lstm_forget_bias needs an LSTM layer, got "
                             f"{type(lay).__name__}")
        for name, param in lay.params.items():
            if _split(name)[0] == "b":
                hidden = param.shape[0] // spec.gates
                _fill(param[spec.gate("f", hidden)], value)
    return layer
