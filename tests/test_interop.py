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

The torch side: test_torch.py holds one-layer modules against rnnfast in detail (both dtypes,
the explicit mapping of the design notes); here ``from_torch``/``to_torch`` of stacked and
bidirectional modules: outputs, final states and every gradient equal torch's (float64),
for every torch cell x num_layers {1, 2} x bidirectional x batch_first (x bias), and the
round trips.
"""
import numpy as np
import pytest

import rnnfast
from rnnfast import cells
from cells_for_tests import TORCH_KINDS, backends_for, kind_backends
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


# ----------------------------------------------------------------------------- PyTorch

def torch_or_skip():
    torch = pytest.importorskip(
        "torch", reason="PyTorch is not installed; from_torch/to_torch need it "
                        "(pip install torch==2.13.0 --index-url "
                        "https://download.pytorch.org/whl/cpu)")
    torch.set_num_threads(1)
    return torch


def torch_suffix(layer, direction):
    return f"_l{layer}" + ("_reverse" if direction else "")


def torch_rnn(kind, num_layers, bidirectional, batch_first, *, bias=True, seed=0,
              dtype="float64"):
    torch = torch_or_skip()
    spec = cells.get(kind)
    torch.manual_seed(seed)
    kwargs = {"nonlinearity": spec.nonlinearity} if spec.family == "rnn" else {}
    module = getattr(torch.nn, spec.torch_class)(
        D, H, num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first,
        bias=bias, **kwargs)
    with torch.no_grad():           # biases away from torch's tiny default init: visible
        for name, t in module.named_parameters():
            if name.startswith("bias"):
                t.uniform_(-0.5, 0.5)
    return module.to(getattr(torch, dtype))


LAYER_CONFIGS = [(1, False), (1, True), (2, False), (2, True)]
LAYER_IDS = ["L1", "L1-bi", "L2", "L2-bi"]


@pytest.mark.parametrize("batch_first", [True, False], ids=["bf", "tm"])
@pytest.mark.parametrize("config", LAYER_CONFIGS, ids=LAYER_IDS)
@pytest.mark.parametrize("kind,backend", kind_backends(TORCH_KINDS))
def test_from_torch_stacks_and_directions_compute_what_torch_does(kind, backend, config,
                                                                  batch_first):
    """from_torch(module): the same outputs, final states and gradients (x, initial
    states, every parameter of every layer and direction) as the module, float64."""
    torch = torch_or_skip()
    L, bi = config
    nd = 2 if bi else 1
    spec = cells.get(kind)
    module = torch_rnn(kind, L, bi, batch_first)
    layer = rnnfast.from_torch(module, backend=backend)
    assert (type(layer).__name__, layer._spec) == (spec.layer, spec)
    assert (layer.num_layers, layer.bidirectional, layer.batch_first) == (L, bi, batch_first)
    assert (layer.input_size, layer.hidden_size, layer.dtype) == (D, H, np.float64)
    assert layer.backend == backend
    rng = np.random.default_rng(3)
    x = rng.standard_normal((B, T, D) if batch_first else (T, B, D))
    states = tuple(rng.standard_normal((L * nd, B, H)) for _ in spec.states)
    single = (L, nd) == (1, 1)             # rnnfast's states are then (batch, hidden)

    def arg(st):
        st = tuple(a[0] if single else a for a in st)
        return st if len(st) == 2 else st[0]

    out, finals = layer(x, arg(states))
    finals = tuple(a[None] if single else a for a in
                   (finals if len(spec.states) == 2 else (finals,)))
    dout = rng.standard_normal(out.shape)
    dfinals = tuple(rng.standard_normal(f.shape) for f in finals)
    dx, dstates = layer.backward(dout, arg(dfinals))
    dstates = tuple(a[None] if single else a for a in
                    (dstates if len(spec.states) == 2 else (dstates,)))

    xt = torch.tensor(x, requires_grad=True)
    st = tuple(torch.tensor(a, requires_grad=True) for a in states)
    out_t, fin_t = module(xt, st if len(st) == 2 else st[0])
    fin_t = fin_t if isinstance(fin_t, tuple) else (fin_t,)
    loss = (out_t * torch.tensor(dout)).sum() + sum(
        (f * torch.tensor(d)).sum() for f, d in zip(fin_t, dfinals))
    loss.backward()
    got = {"out": out, "dx": dx}
    want = {"out": out_t.detach().numpy(), "dx": xt.grad.numpy()}
    for k in range(len(spec.states)):
        got[f"final{k}"], want[f"final{k}"] = finals[k], fin_t[k].detach().numpy()
        got[f"dstate{k}"], want[f"dstate{k}"] = dstates[k], st[k].grad.numpy()
    summed = spec.summed_bias(H)
    for k, d in [(k, d) for k in range(L) for d in range(nd)]:
        t = torch_suffix(k, d)
        tg = {n: getattr(module, n + t).grad.numpy()
              for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
        for name, g in spec.grads_from_torch(*tg.values()).items():
            got["d" + name + spec.suffix(k, d)] = layer.grads[name + spec.suffix(k, d)]
            want["d" + name + spec.suffix(k, d)] = g
        # where b is torch's two biases summed, db is the gradient of both
        got["db_hh" + t] = layer.grads["b" + spec.suffix(k, d)][summed]
        want["db_hh" + t] = tg["bias_hh"][summed]
    assert set(got) >= {"d" + n for n in layer.params}      # every parameter compared
    for key in want:
        scale = max(1.0, float(np.abs(want[key]).max()))
        np.testing.assert_allclose(got[key], want[key], rtol=RTOL[np.float64] * 10,
                                   atol=ATOL[np.float64] * 10 * scale, err_msg=key)
    assert np.abs(want["out"]).max() > 0.1                  # not a vacuous comparison


@pytest.mark.parametrize("kind", TORCH_KINDS)
def test_from_torch_without_biases_stacked_and_bidirectional(kind):
    torch = torch_or_skip()
    module = torch_rnn(kind, 2, True, True, bias=False)
    layer = rnnfast.from_torch(module, backend="cython")
    for name, p in layer.params.items():
        if name.startswith("b"):
            assert not p.any(), name
    x = np.random.default_rng(4).standard_normal((B, T, D))
    out, _ = layer(x)
    with torch.no_grad():
        want = module(torch.tensor(x))[0].numpy()
    np.testing.assert_allclose(out, want, rtol=RTOL[np.float64] * 10, atol=1e-12)


@pytest.mark.parametrize("config", LAYER_CONFIGS, ids=LAYER_IDS)
@pytest.mark.parametrize("kind", TORCH_KINDS)
def test_torch_round_trips_stacked_and_bidirectional(kind, config):
    """to_torch(from_torch(m)): the same state_dict keys; the weights bitwise; the biases
    in rnnfast's form (the pinned mapping keeps one bias where torch sums two: there
    bias_ih is the sum and bias_hh zeros, so only the sum is m's; the GRU's n-gate
    biases are m's bitwise); outputs as m's. from_torch(to_torch(layer)) is the layer's
    parameters bitwise."""
    torch = torch_or_skip()
    L, bi = config
    spec = cells.get(kind)
    for dtype in ("float64", "float32"):
        m = torch_rnn(kind, L, bi, False, seed=5, dtype=dtype)
        back = rnnfast.to_torch(rnnfast.from_torch(m, backend="numpy"))
        assert (back.num_layers, back.bidirectional, back.batch_first) == (L, bi, False)
        assert back.weight_ih_l0.dtype == m.weight_ih_l0.dtype
        a, b = m.state_dict(), back.state_dict()
        assert list(a) == list(b)
        summed = spec.summed_bias(H)
        for name in a:
            if name.startswith("weight"):
                assert torch.equal(a[name], b[name]), name
        for t in sorted({n[len("bias_ih"):] for n in a if n.startswith("bias_ih")}):
            ih, hh = a["bias_ih" + t], a["bias_hh" + t]
            ih2, hh2 = b["bias_ih" + t], b["bias_hh" + t]
            assert torch.equal(ih2[summed], ih[summed] + hh[summed]), t
            assert not hh2[summed].any(), t
            assert torch.equal(ih2[summed.stop:], ih[summed.stop:]), t
            assert torch.equal(hh2[summed.stop:], hh[summed.stop:]), t
        x = torch.tensor(np.random.default_rng(6).standard_normal((T, B, D)),
                         dtype=getattr(torch, dtype))
        with torch.no_grad():
            (out_a, fin_a), (out_b, fin_b) = m(x), back(x)
        npd = np.dtype(dtype).type
        for u, v in zip([out_a, *(fin_a if isinstance(fin_a, tuple) else [fin_a])],
                        [out_b, *(fin_b if isinstance(fin_b, tuple) else [fin_b])],
                        strict=True):
            np.testing.assert_allclose(v.numpy(), u.numpy(), rtol=RTOL[npd] * 10,
                                       atol=ATOL[npd] * 10)
    layer = rnnfast.from_torch(torch_rnn(kind, L, bi, True, seed=7), backend="numpy")
    rng = np.random.default_rng(8)
    for p in layer.params.values():                # any values, biases included
        p[...] = rng.standard_normal(p.shape)
    again = rnnfast.from_torch(rnnfast.to_torch(layer), backend="numpy")
    assert set(again.params) == set(layer.params)
    for name, p in layer.params.items():
        np.testing.assert_array_equal(again.params[name], p, err_msg=name)
    assert rnnfast.to_torch(layer.eval()).training is False


def test_from_torch_refuses_projections_and_warns_about_dropout():
    torch = torch_or_skip()
    with pytest.raises(ValueError, match=r"module.proj_size must be 0 .* got 2"):
        rnnfast.from_torch(torch.nn.LSTM(D, H, num_layers=2, proj_size=2))
    with pytest.warns(UserWarning, match=r"module.dropout=0.5.*eval mode"):
        layer = rnnfast.from_torch(torch.nn.GRU(D, H, num_layers=2, dropout=0.5))
    assert layer.num_layers == 2
    module = torch.nn.GRU(D, H, num_layers=2, dropout=0.5).double().eval()
    x = np.random.default_rng(9).standard_normal((T, B, D))
    with pytest.warns(UserWarning):
        out, _ = rnnfast.from_torch(module, backend="numpy")(x)
    with torch.no_grad():
        np.testing.assert_allclose(out, module(torch.tensor(x))[0].numpy(), rtol=1e-11,
                                   atol=1e-13)
