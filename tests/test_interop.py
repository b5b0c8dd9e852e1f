"""rnnfast.interop.from_keras_weights: Keras' ``layer.get_weights()`` arrays (Keras is not
installed: the arrays are made here in Keras' layout and gate orders) give a layer that
computes what Keras computes. The Keras-style forwards below are written from Keras'
documented equations, straight from the Keras-ordered arrays (no reordering, no rnnfast):

- SimpleRNN: ``h = activation(x @ kernel + h @ recurrent_kernel + bias)``;
- LSTM: ``z = x @ kernel + h @ recurrent_kernel + bias``, split in i, f, c, o;
  ``c = sigmoid(f) * c + sigmoid(i) * tanh(c~)``, ``h = sigmoid(o) * tanh(c)``;
- GRU, ``reset_after=True``: ``x @ kernel + bias[0]`` and ``h @ recurrent_kernel +
  bias[1]``, each split in z, r, h; ``z = sigmoid(x_z + h_z)``, ``r = sigmoid(x_r + h_r)``,
  ``hh = tanh(x_h + r * h_h)``, ``h = z * h + (1 - z) * hh``.

The torch side of interop (from_torch / to_torch) is in test_torch.py.
"""
import numpy as np
import pytest

import rnnfast
from rnnfast import cells
from cells_for_tests import backends_for
from conftest import ATOL, RTOL

B, T, D, H = 3, 6, 4, 5
UNITS = {"rnn": 1, "lstm": 4, "gru": 3}       # Keras' kernel widths, in units (its layout)


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def keras_arrays(kind, dtype, seed=0, use_bias=True):
    """Random arrays shaped as Keras' get_weights() for ``kind``."""
    rng = np.random.default_rng(seed)
    w = UNITS[kind] * H
    kernel = rng.uniform(-0.6, 0.6, (D, w))
    recurrent = rng.uniform(-0.6, 0.6, (H, w))
    bias = rng.uniform(-0.5, 0.5, (2, w) if kind == "gru" else (w,))
    arrays = [kernel.astype(dtype), recurrent.astype(dtype)]
    return arrays + ([bias.astype(dtype)] if use_bias else [])


def keras_forward(kind, x, kernel, recurrent, bias=None, activation=np.tanh):
    """Keras' forward (batch-first x) from its own arrays; returns (out, h_n)."""
    x, kernel, recurrent = (np.asarray(a, np.float64) for a in (x, kernel, recurrent))
    if bias is None:
        bias = np.zeros((2, kernel.shape[1]) if kind == "gru" else kernel.shape[1])
    bias = np.asarray(bias, np.float64)
    h = np.zeros((x.shape[0], recurrent.shape[0]))
    c = np.zeros_like(h)
    out = []
    for t in range(x.shape[1]):
        xt = x[:, t]
        if kind == "rnn":
            h = activation(xt @ kernel + h @ recurrent + bias)
        elif kind == "lstm":
            zz = xt @ kernel + h @ recurrent + bias
            i, f, cc, o = np.split(zz, 4, axis=1)
            c = sigmoid(f) * c + sigmoid(i) * np.tanh(cc)
            h = sigmoid(o) * np.tanh(c)
        else:
            x_z, x_r, x_h = np.split(xt @ kernel + bias[0], 3, axis=1)
            h_z, h_r, h_h = np.split(h @ recurrent + bias[1], 3, axis=1)
            z = sigmoid(x_z + h_z)
            r = sigmoid(x_r + h_r)
            hh = np.tanh(x_h + r * h_h)
            h = z * h + (1 - z) * hh
        out.append(h)
    return np.stack(out, axis=1), h


CASES = [pytest.param(kind, nl, backend, id=f"{kind}{'-' + nl if nl else ''}-{backend}")
         for kind, nl, spec in [("rnn", "tanh", cells.get("rnn_tanh")),
                                ("rnn", "relu", cells.get("rnn_relu")),
                                ("rnn", "sigmoid", cells.get("rnn_sigmoid")),
                                ("lstm", None, cells.get("lstm")),
                                ("gru", None, cells.get("gru"))]
         for backend in backends_for(spec.kind)]
ACTIVATIONS = {"tanh": np.tanh, "relu": lambda a: np.maximum(a, 0), "sigmoid": sigmoid}


@pytest.mark.parametrize("use_bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("kind,nl,backend", CASES)
def test_from_keras_weights_computes_what_keras_does(kind, nl, backend, dtype, use_bias):
    arrays = keras_arrays(kind, dtype, use_bias=use_bias)
    kwargs = {} if nl is None or nl == "tanh" else {"nonlinearity": nl}
    layer = rnnfast.from_keras_weights(kind, *arrays, backend=backend, **kwargs)
    assert layer.dtype == dtype and layer.backend == backend and layer.batch_first
    assert (layer.input_size, layer.hidden_size) == (D, H)
    assert type(layer).__name__ == {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}[kind]
    if kind == "rnn":
        assert layer.nonlinearity == (nl or "tanh")
    x = np.random.default_rng(1).standard_normal((B, T, D)).astype(dtype)
    want_out, want_h = keras_forward(kind, x, *arrays,
                                     activation=ACTIVATIONS[nl or "tanh"])
    out, finals = layer(x)
    h_n = finals[0] if kind == "lstm" else finals
    np.testing.assert_allclose(out, want_out, rtol=RTOL[dtype], atol=ATOL[dtype])
    np.testing.assert_allclose(h_n, want_h, rtol=RTOL[dtype], atol=ATOL[dtype])
    assert np.abs(want_out).max() > 0.1                  # not a vacuous comparison


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_from_keras_weights_mapping_is_exact(kind):
    """The LSTM's and SimpleRNN's arrays are rnnfast's as they are; the GRU's columns move
    from z, r, h to r, z, n and its biases split as PyTorch's do."""
    kernel, recurrent, bias = keras_arrays(kind, np.float64, seed=2)
    layer = rnnfast.from_keras_weights(kind, kernel, recurrent, bias, backend="numpy")
    p = layer.params
    if kind != "gru":
        for name, a in (("Wx", kernel), ("Wh", recurrent), ("b", bias)):
            np.testing.assert_array_equal(p[name], a, err_msg=name)
        return
    z, r, h = (slice(k * H, (k + 1) * H) for k in range(3))   # Keras' blocks
    for name, a in (("Wx", kernel), ("Wh", recurrent)):
        np.testing.assert_array_equal(p[name], np.concatenate([a[:, r], a[:, z], a[:, h]], 1))
    np.testing.assert_array_equal(p["b"][:H], bias[0, r] + bias[1, r])
    np.testing.assert_array_equal(p["b"][H:2 * H], bias[0, z] + bias[1, z])
    np.testing.assert_array_equal(p["b"][2 * H:], bias[0, h])
    np.testing.assert_array_equal(p["b_hn"], bias[1, h])


def test_from_keras_weights_dtypes():
    k, r, b = keras_arrays("lstm", np.float64)
    assert rnnfast.from_keras_weights("lstm", k, r, b).dtype == np.float64
    k32, r32, b32 = (a.astype(np.float32) for a in (k, r, b))
    assert rnnfast.from_keras_weights("lstm", k32, r32, b32).dtype == np.float32
    # a float16 kernel: float32 (Keras' default floatx) unless dtype= says otherwise
    assert rnnfast.from_keras_weights("lstm", k.astype(np.float16), r, b).dtype == np.float32
    assert rnnfast.from_keras_weights("lstm", k32, r32, b32, dtype=np.float64).dtype == \
        np.float64
    # lists of Python floats are float64
    layer = rnnfast.from_keras_weights("lstm", k.tolist(), r.tolist(), b.tolist(),
                                       batch_first=False)
    assert layer.dtype == np.float64 and layer.batch_first is False
    np.testing.assert_array_equal(layer.params["Wx"], k)


def shape_str(shape):
    return str(tuple(shape))


BAD = [
    # (kind, which array, bad shape, expected shape spelled in the message)
    ("rnn", "kernel", (D, H + 1), f"(input_dim, {H})"),
    ("rnn", "kernel", (D,), f"(input_dim, {H})"),
    ("rnn", "recurrent_kernel", (H, H + 1), "(units, 1*units)"),
    ("rnn", "recurrent_kernel", (H * H,), "(units, 1*units)"),
    ("rnn", "bias", (H + 1,), f"({H},)"),
    ("lstm", "kernel", (D, 3 * H), f"(input_dim, {4 * H})"),
    ("lstm", "kernel", (D, 4 * H, 1), f"(input_dim, {4 * H})"),
    ("lstm", "recurrent_kernel", (4 * H, H), "(units, 4*units)"),
    ("lstm", "bias", (2, 4 * H), f"({4 * H},)"),
    ("gru", "kernel", (D, 4 * H), f"(input_dim, {3 * H})"),
    ("gru", "recurrent_kernel", (3 * H, H), "(units, 3*units)"),
    ("gru", "bias", (3 * H,), f"(2, {3 * H})"),             # reset_after=False
    ("gru", "bias", (2, 3 * H + 1), f"(2, {3 * H})"),
    ("gru", "bias", (1, 3 * H), f"(2, {3 * H})"),
]


@pytest.mark.parametrize("kind,name,shape,expected", BAD,
                         ids=[f"{k}-{n}-{s}" for k, n, s, _ in BAD])
def test_from_keras_weights_wrong_shapes(kind, name, shape, expected):
    arrays = dict(zip(("kernel", "recurrent_kernel", "bias"), keras_arrays(kind, np.float32)))
    arrays[name] = np.zeros(shape, np.float32)
    with pytest.raises(ValueError) as info:
        rnnfast.from_keras_weights(kind, arrays["kernel"], arrays["recurrent_kernel"],
                                   arrays["bias"], backend="numpy")
    message = str(info.value)
    assert message.startswith(name + " "), message
    assert expected in message and "got shape " + shape_str(shape) in message, message
    if kind == "gru" and shape == (3 * H,):
        assert "reset_after" in message


def test_from_keras_weights_bad_arguments():
    k, r, b = keras_arrays("lstm", np.float32)
    with pytest.raises(ValueError, match=r"kind must be one of \('rnn', 'lstm', 'gru'\)"):
        rnnfast.from_keras_weights("simplernn", k, r, b)
    with pytest.raises(ValueError, match="nonlinearity"):
        rnnfast.from_keras_weights("lstm", k, r, b, nonlinearity="relu")
    with pytest.raises(ValueError, match="nonlinearity"):
        rnnfast.from_keras_weights("rnn", *keras_arrays("rnn", np.float32),
                                   nonlinearity="softsign")
    for i, name in enumerate(("kernel", "recurrent_kernel", "bias")):
        args = [k, r, b]
        args[i] = "weights"
        with pytest.raises(TypeError, match=name):
            rnnfast.from_keras_weights("lstm", *args)
    with pytest.raises(TypeError, match="kernel"):
        rnnfast.from_keras_weights("lstm", None, r, b)
    with pytest.raises(ValueError, match="backend"):
        rnnfast.from_keras_weights("lstm", k, r, b, backend="cuda")
