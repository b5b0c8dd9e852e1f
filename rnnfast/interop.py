"""Weights from and to other libraries: PyTorch modules and Keras weight arrays.

- ``from_torch(module, *, dtype=None, backend="cython")``: an rnnfast layer with the
  weights of a ``torch.nn.RNN`` (tanh or relu), ``LSTM`` (without projection:
  ``proj_size > 0`` is a ValueError) or ``GRU``; its ``num_layers``, ``bidirectional``,
  ``batch_first`` and ``bias`` are the module's (``bias=False``: zero biases), and so is
  its dtype when ``dtype`` is None: a float64 module gives a float64 layer. A float16 or
  bfloat16 module is a TypeError unless ``dtype`` is given (its weights are then
  converted). Every layer and direction maps as the registry's layer 0 does, torch's
  suffix becoming rnnfast's (``cells.CellSpec.suffix``): ``weight_ih_l1_reverse.T`` is
  ``Wx_l1_reverse``, ``bias_ih_l0 + bias_hh_l0`` is ``b``, and so on. torch's
  ``dropout`` between layers (training mode only) has no rnnfast counterpart: a module
  with ``dropout > 0`` and more than one layer gives a warning, and the layer computes what
  the module computes in eval mode.
- ``to_torch(layer)``: the torch.nn module with the layer's weights, ``num_layers``,
  ``bidirectional``, ``batch_first`` and dtype, always with biases (there is no torch
  module for the sigmoid RNN: ValueError). ``from_torch(to_torch(layer))`` has bitwise
  the layer's parameters; ``to_torch(from_torch(module))`` computes what ``module``
  computes and has its weights bitwise, but its biases only in rnnfast's form: where torch
  sums its two biases, ``bias_ih`` holds the sum and ``bias_hh`` zeros (rnnfast keeps one
  bias there, so the split between the two is not kept); the GRU's n-gate biases come
  back as they were.
- ``from_keras_weights(kind, kernel, recurrent_kernel, bias=None, *, nonlinearity=None,
  batch_first=True, dtype=None, backend="cython")``: a layer from Keras' arrays in the
  order of ``layer.get_weights()`` (``bias=None`` for ``use_bias=False``):

  ========  =========================================  =======================  ========
  kind      Keras layer                                kernel / recurrent        bias
  ========  =========================================  =======================  ========
  "rnn"     SimpleRNN (activation: ``nonlinearity``,   (D, H) / (H, H)           (H,)
            "tanh" by default)
  "lstm"    LSTM, gates i, f, c, o (rnnfast's          (D, 4H) / (H, 4H)         (4H,)
            i, f, g, o)
  "gru"     GRU with ``reset_after=True`` (Keras'      (D, 3H) / (H, 3H)         (2, 3H)
            default), gates z, r, h, reordered to
            rnnfast's r, z, n; bias row 0 the input
            bias, row 1 the recurrent bias
  ========  =========================================  =======================  ========

  Keras' kernels are right-multiplying as rnnfast's are: ``Wx = kernel``, ``Wh =
  recurrent_kernel`` (gate columns reordered for the GRU). The LSTM's and SimpleRNN's bias is
  ``b``; the GRU's maps as PyTorch's two biases do (``rnnfast.cells``): ``b[:2H]`` the sum of
  both rows' r, z parts, ``b[2H:]`` the input bias of h, ``b_hn`` the recurrent bias of h.
  A Keras GRU with reset_after=True computes ``h' = z * h + (1 - z) * hh``, PyTorch's GRU.
  Keras' default activations are assumed (tanh, and sigmoid for the recurrent activation).
  ``dtype`` None: the kernel's dtype when it is float32 or float64 (a list of Python
  floats: float64), else float32 (Keras' default floatx; a float16 kernel, say).
"""
import warnings

import numpy as np

from . import _checks
from .layers import GRU, LSTM, RNN, _Recurrent

__all__ = ["from_torch", "to_torch", "from_keras_weights"]

_LAYERS = {"RNN": RNN, "LSTM": LSTM, "GRU": GRU}


def _layer(spec, input_size, hidden_size, **kwargs):
    """A new layer of the kind ``spec`` (its parameters then to be overwritten)."""
    if spec.family == "rnn":
        return RNN(input_size, hidden_size, spec.nonlinearity, **kwargs)
    return _LAYERS[spec.layer](input_size, hidden_size, **kwargs)


def _fill(layer, params):
    for name, value in params.items():
        layer.params[name][...] = value
    return layer


def _torch_suffix(layer, direction):
    """torch's parameter-name suffix of a layer and direction: "_l0", "_l0_reverse",
    "_l1", ... (rnnfast's, ``CellSpec.suffix``, leaves out "_l0")."""
    return f"_l{layer}" + ("_reverse" if direction else "")


def _layers_and_directions(num_layers, bidirectional):
    return [(k, d) for k in range(num_layers) for d in range(2 if bidirectional else 1)]


def from_torch(module, *, dtype=None, backend="cython"):
    """An rnnfast layer with the weights of a ``torch.nn.RNN``, ``LSTM`` or ``GRU`` of any
    ``num_layers``, ``bidirectional``, ``batch_first`` and ``bias`` (see the module
    docstring)."""
    spec, dtype = _checks.check_torch_recurrent(module, dtype)
    _checks.check_backend(backend)
    if module.num_layers > 1 and module.dropout > 0:
        warnings.warn(f"module.dropout={module.dropout!r}: torch drops outputs between its "
                      f"layers in training mode; rnnfast layers have no dropout, so this "
                      f"layer computes what the module computes in eval mode", stacklevel=2)

    def numpy(name):
        t = getattr(module, name, None)
        return None if t is None else t.detach().cpu().double().numpy()

    params = {}
    for k, d in _layers_and_directions(module.num_layers, module.bidirectional):
        t = _torch_suffix(k, d)
        group = spec.params_from_torch(numpy("weight_ih" + t), numpy("weight_hh" + t),
                                       numpy("bias_ih" + t), numpy("bias_hh" + t))
        params.update((name + spec.suffix(k, d), value) for name, value in group.items())
    layer = _layer(spec, module.input_size, module.hidden_size,
                   num_layers=module.num_layers, bidirectional=module.bidirectional,
                   batch_first=module.batch_first, dtype=dtype, backend=backend)
    return _fill(layer, params)


def to_torch(layer):
    """The ``torch.nn.RNN``/``LSTM``/``GRU`` with ``layer``'s weights, ``num_layers``,
    ``bidirectional``, ``batch_first`` and dtype, in the layer's training mode."""
    import torch

    spec = _checks.check_torch_layer(layer, _Recurrent)
    # checked: the shapes are the layer's
    weights = dict(zip(layer._names, layer._weights()))
    kwargs = dict(num_layers=layer.num_layers, bidirectional=layer.bidirectional,
                  batch_first=layer.batch_first,
                  dtype={np.dtype(np.float32): torch.float32,
                         np.dtype(np.float64): torch.float64}[layer.dtype])
    if spec.family == "rnn":
        kwargs["nonlinearity"] = spec.nonlinearity
    module = getattr(torch.nn, spec.torch_class)(layer.input_size, layer.hidden_size, **kwargs)
    with torch.no_grad():
        for k, d in _layers_and_directions(layer.num_layers, layer.bidirectional):
            params = {name: weights[name + spec.suffix(k, d)] for name in spec.params}
            for name, value in spec.params_to_torch(params).items():
                # (the registry names layer 0's tensors: "weight_ih_l0", ...)
                target = getattr(module, name.removesuffix("_l0") + _torch_suffix(k, d))
                target.copy_(torch.from_numpy(np.ascontiguousarray(value)))
    return module.train(layer.training)


def from_keras_weights(kind, kernel, recurrent_kernel, bias=None, *, nonlinearity=None,
                       batch_first=True, dtype=None, backend="cython"):
    """An rnnfast layer from a Keras SimpleRNN ("rnn"), LSTM ("lstm") or GRU ("gru",
    ``reset_after=True``) layer's ``get_weights()`` arrays (see the module docstring)."""
    spec = _checks.check_keras_kind(kind, nonlinearity)
    kernel = _checks.as_numeric_array(kernel, "kernel")
    if dtype is None:
        dtype = kernel.dtype if kernel.dtype in _checks.FLOAT_DTYPES else np.float32
    dtype = _checks.check_dtype(dtype)
    _checks.check_backend(backend)
    kernel, recurrent_kernel, bias, input_size, H = _checks.check_keras_weights(
        spec, kernel, recurrent_kernel, bias)
    GH = spec.gates * H
    if bias is None:
        bias_ih = bias_hh = np.zeros(GH)
    elif bias.ndim == 2:                   # the GRU's input and recurrent biases
        bias_ih, bias_hh = (spec.from_keras_gates(row, H) for row in bias)
    else:
        bias_ih, bias_hh = spec.from_keras_gates(bias, H), np.zeros(GH)
    params = {"Wx": spec.from_keras_gates(kernel, H),
              "Wh": spec.from_keras_gates(recurrent_kernel, H),
              **spec.biases_from_torch(bias_ih, bias_hh)}
    layer = _layer(spec, input_size, H, batch_first=batch_first, dtype=dtype, backend=backend)
    return _fill(layer, params)
