"""``rnnfast.init``: every initialiser fills the parameters in place (the same arrays), with
the distribution it names, for every cell of the registry and for Dense."""
import numpy as np
import pytest

from rnnfast import cells, init
from rnnfast.nn import Dense
from cells_for_tests import KINDS, make_layer

D, H = 5, 16


def layer(kind, **kw):
    kw.setdefault("dtype", np.float64)
    return make_layer(kind, D, H, backend="numpy", **kw)


def same_arrays(lay):
    ids = {k: id(p) for k, p in lay.params.items()}
    return lambda: {k: id(p) for k, p in lay.params.items()} == ids


@pytest.mark.parametrize("kind", KINDS)
def test_torch_default_is_the_constructors_initialisation(kind):
    lay = layer(kind, dtype=np.float32, seed=None)
    kept = same_arrays(lay)
    assert init.torch_default(lay, seed=3) is lay
    want = layer(kind, dtype=np.float32, seed=3)
    for k, p in lay.params.items():
        np.testing.assert_array_equal(p, want.params[k], err_msg=k)
    assert kept()
    d = Dense(D, 3)
    init.torch_default(d, seed=0)
    np.testing.assert_array_equal(d.params["W"], Dense(D, 3, seed=0).params["W"])


@pytest.mark.parametrize("kind", KINDS)
def test_xavier_uniform(kind):
    lay = layer(kind)
    kept = same_arrays(lay)
    init.xavier_uniform(lay, seed=0, gain=2.0)
    G = cells.get(kind).gates
    for name, fans in (("Wx", (D, G * H)), ("Wh", (H, G * H))):
        a = 2.0 * np.sqrt(6 / sum(fans))
        w = lay.params[name]
        assert np.abs(w).max() <= a and np.abs(w).max() > 0.9 * a, name
        # U(-a, a) has variance a^2 / 3
        np.testing.assert_allclose(w.var(), a * a / 3, rtol=0.25)
    for name in cells.get(kind).params[2:]:
        assert not lay.params[name].any(), name
    assert kept()
    d = init.xavier_uniform(Dense(40, 10), seed=0)
    assert np.abs(d.params["W"]).max() <= np.sqrt(6 / 50) and not d.params["b"].any()


@pytest.mark.parametrize("kind", KINDS)
def test_orthogonal_per_gate_block(kind):
    lay = layer(kind, seed=0)
    wx = lay.params["Wx"].copy()
    kept = same_arrays(lay)
    init.orthogonal(lay, seed=1)
    s = cells.get(kind)
    blocks = [lay.params["Wh"][:, s.gate(g, H)] for g in s.gate_names]
    for q in blocks:
        np.testing.assert_allclose(q.T @ q, np.eye(H), atol=1e-12)
        np.testing.assert_allclose(q @ q.T, np.eye(H), atol=1e-12)
    for a, b in zip(blocks, blocks[1:]):
        assert not np.allclose(a, b)                # each block its own draw
    np.testing.assert_array_equal(lay.params["Wx"], wx)
    assert kept()
    d = init.orthogonal(Dense(8, 3), seed=0, gain=0.5)
    w = d.params["W"].astype(np.float64)
    np.testing.assert_allclose(w.T @ w, 0.25 * np.eye(3), atol=1e-6)


def test_constant_as_the_seed_notebooks_initializer():
    """Seed 000's ConstantInitializer and its forward of a tanh RNN."""
    w_x = np.array([[1, 3, 5, 7], [3, 5, 7, 8]]) / 100
    w_h = np.array([[1, 3, 5, 7], [2, 4, 6, 8], [3, 5, 7, 8], [4, 6, 8, 10]]) / 100
    b = np.array([1, 1, 1, 1])
    x = np.array([[[1, 2], [2, 3], [3, 4]]]) / 100

    class ConstantInitializer:
        def __init__(self, Wx, Wh, b):
            self.Wx_val, self.Wh_val, self.b_val = Wx, Wh, b

        def Wx(self):
            return self.Wx_val

        def Wh(self):
            return self.Wh_val

        def b(self):
            return self.b_val

    want = [[0.79494228, 0.81839002, 0.83939649, 0.85584174]]
    for how in ("keywords", "initializer"):
        rnn = make_layer("rnn_tanh", 2, 4, backend="numpy", dtype=np.float64)
        kept = same_arrays(rnn)
        if how == "keywords":
            init.constant(rnn, Wx=w_x, Wh=w_h, b=b)
        else:
            init.constant(rnn, ConstantInitializer(w_x, w_h, b))
        assert kept()
        np.testing.assert_allclose(rnn(x)[1], want, rtol=1e-8)
    init.constant(rnn, b=0.5)                        # a scalar broadcasts
    assert np.all(rnn.params["b"] == 0.5)
    with pytest.raises(ValueError, match=r"no parameter\(s\) \['W'\]"):
        init.constant(rnn, W=w_x)
    with pytest.raises(ValueError, match=r"shape \(2, 4\)"):
        init.constant(rnn, Wx=w_h)
    with pytest.raises(ValueError, match="none of the methods"):
        init.constant(rnn, object())


def test_lstm_forget_bias():
    lay = layer("lstm", seed=0)
    b = lay.params["b"].copy()
    s = cells.get("lstm")
    init.lstm_forget_bias(lay, 1.0)
    np.testing.assert_array_equal(lay.params["b"][s.gate("f", H)], 1.0)
    for g in ("i", "g", "o"):
        np.testing.assert_array_equal(lay.params["b"][s.gate(g, H)], b[s.gate(g, H)])
    with pytest.raises(ValueError, match="needs an LSTM"):
        init.lstm_forget_bias(layer("gru"))
    with pytest.raises(ValueError, match="needs an LSTM"):
        init.lstm_forget_bias(Dense(3, 2))


def test_lists_and_bad_layers():
    a, d = layer("lstm", seed=0), Dense(H, 3, seed=0)
    init.xavier_uniform([a, d], seed=0)
    assert not a.params["b"].any() and not d.params["b"].any()
    with pytest.raises(TypeError, match="expected an rnnfast"):
        init.orthogonal(object())
