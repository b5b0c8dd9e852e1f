"""The building blocks of training: ``rnnfast.nn.Dense`` and ``rnnfast.losses`` against
central finite differences in float64, and the layers' ``grads``: stable arrays that each
backward writes into (``accumulate=True`` adds), on every cell and backend."""
import numpy as np
import pytest

from rnnfast import losses
from rnnfast.nn import Dense
from cells_for_tests import (
    KIND_BACKENDS,
    central_differences,
    layer_backward,
    layer_forward,
    make_layer,
)

# --------------------------------------------------------------------------- Dense

@pytest.mark.parametrize("shape", [(5, 4), (3, 6, 4)], ids=["2d", "3d"])
def test_dense_gradients_match_finite_differences(shape):
    rng = np.random.default_rng(0)
    dense = Dense(4, 3, dtype=np.float64, seed=1)
    x = rng.standard_normal(shape)
    r = rng.standard_normal(shape[:-1] + (3,))     # loss = sum(out * r): dout = r

    def loss():
        return float(np.sum(dense(x) * r))

    out = dense(x)
    assert out.shape == shape[:-1] + (3,) and out.dtype == np.float64
    np.testing.assert_allclose(out, x @ dense.params["W"] + dense.params["b"], rtol=1e-14)
    dx = dense.backward(r)
    assert dx.shape == x.shape
    np.testing.assert_allclose(dx, central_differences(loss, x), rtol=1e-6, atol=1e-8)
    for name in ("W", "b"):
        np.testing.assert_allclose(dense.grads[name], central_differences(loss, dense.params[name]),
                                   rtol=1e-6, atol=1e-8, err_msg=name)


def test_dense_init_dtype_and_modes():
    d = Dense(16, 5, seed=0)
    assert d.params["W"].shape == (16, 5) and d.params["b"].shape == (5,)
    assert all(p.dtype == np.float32 for p in d.params.values())
    k = 1 / np.sqrt(16)                         # torch.nn.Linear's bound
    assert all(np.abs(p).max() <= k for p in d.params.values())
    np.testing.assert_array_equal(Dense(16, 5, seed=0).params["W"], d.params["W"])
    x = np.ones((2, 16))
    assert d(x).dtype == np.float32
    assert d.eval() is d and not d.training
    d(x)
    with pytest.raises(ValueError, match="training forward"):
        d.backward(np.ones((2, 5)))
    d.train()
    d(x)
    with pytest.raises(ValueError, match="shape of the forward output"):
        d.backward(np.ones((3, 5)))
    with pytest.raises(ValueError, match=r"\(batch, 16\)"):
        d(np.ones((2, 15)))
    with pytest.raises(ValueError, match=r"\(batch, 16\)"):
        d(np.ones(16))
    with pytest.raises(ValueError, match="in_features"):
        Dense(0, 3)


def test_dense_grads_are_stable_and_accumulate():
    rng = np.random.default_rng(0)
    d = Dense(4, 3, dtype=np.float64, seed=0)
    held = dict(d.grads)
    x, r = rng.standard_normal((5, 4)), rng.standard_normal((5, 3))
    d(x)
    d.backward(r)
    assert all(d.grads[k] is held[k] for k in held)
    once = {k: g.copy() for k, g in d.grads.items()}
    d(x)
    d.backward(r, accumulate=True)
    for k in held:
        assert d.grads[k] is held[k]
        np.testing.assert_allclose(d.grads[k], 2 * once[k], rtol=1e-14)
    d.zero_grad()
    assert not any(g.any() for g in d.grads.values())
    d.grads["W"] = np.zeros((3, 4))
    d(x)
    with pytest.raises(ValueError, match=r"dense.grads\['W'\] must have the shape"):
        d.backward(r)


def test_dense_does_not_keep_the_callers_array():
    d = Dense(4, 3, dtype=np.float64, seed=0)
    x = np.ones((2, 4))
    d(x)
    want = d.backward(np.ones((2, 3))).copy(), d.grads["W"].copy()
    d(x)
    x[...] = 5                                  # the caller reuses its buffer
    d.backward(np.ones((2, 3)))
    np.testing.assert_array_equal(d.grads["W"], want[1])




def test_dense_sees_every_change_to_its_params_after_remembering_them():
    """Dense remembers its checked weights between calls: writes into them, replaced
    entries (converted or refused) and in-place reshapes must all still be seen."""
    d = Dense(4, 3, seed=0)
    x = np.ones((2, 4), np.float32)
    d.eval()
    first = d(x)
    d.params["W"][...] = 0                      # written in place: the next call sees it
    np.testing.assert_array_equal(d(x), np.broadcast_to(d.params["b"], (2, 3)))
    w64 = np.full((4, 3), 0.5)                  # replaced by float64: converted per call
    d.params["W"] = w64
    np.testing.assert_allclose(d(x), np.tile(2.0 + d.params["b"], (2, 1)), rtol=1e-6)
    w64[...] = 0.25                             # the converted copy is not remembered
    np.testing.assert_allclose(d(x), np.tile(1.0 + d.params["b"], (2, 1)), rtol=1e-6)
    d.params["W"] = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match=r"params\['W'\] must have shape \(4, 3\)"):
        d(x)
    w = np.ones((4, 3), np.float32)
    d.params["W"] = w
    d(x)
    w.shape = (3, 4)                            # reshaped in place after being remembered
    with pytest.raises(ValueError, match=r"params\['W'\] must have shape \(4, 3\)"):
        d(x)
    assert first.shape == (2, 3)
# --------------------------------------------------------------------------- losses

def test_softmax_is_stable_and_normalised():
    z = np.array([[1e4, 0.0, -1e4], [1.0, 2.0, 3.0], [-800.0, -800.0, -800.0]])
    p = losses.softmax(z)
    assert np.all(np.isfinite(p))
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-15)
    np.testing.assert_allclose(p[1], np.exp([1, 2, 3]) / np.exp([1, 2, 3]).sum(), rtol=1e-15)
    np.testing.assert_allclose(p[2], 1 / 3, rtol=1e-15)
    assert p[0, 0] == 1.0
    assert losses.softmax(z.astype(np.float32)).dtype == np.float32
    np.testing.assert_allclose(np.exp(losses.log_softmax(z[1:])), p[1:], rtol=1e-14)


@pytest.mark.parametrize("target", ["indices", "one_hot", "soft", "3d"])
def test_cross_entropy_matches_its_formula_and_finite_differences(target):
    rng = np.random.default_rng(1)
    shape = (4, 5, 3) if target == "3d" else (6, 3)
    z = rng.standard_normal(shape) * 2
    n = z.size // 3
    idx = rng.integers(0, 3, shape[:-1])
    if target in ("indices", "3d"):
        labels = idx
        t = np.eye(3)[idx]
    elif target == "one_hot":
        t = labels = np.eye(3)[idx]
    else:
        t = labels = rng.dirichlet(np.ones(3), shape[:-1])
    loss, dz = losses.softmax_cross_entropy(z, labels)
    assert isinstance(loss, float) and dz.shape == z.shape
    logp = np.log(np.exp(z) / np.exp(z).sum(-1, keepdims=True))
    np.testing.assert_allclose(loss, -(t * logp).sum() / n, rtol=1e-13)
    num = central_differences(lambda: losses.softmax_cross_entropy(z, labels)[0], z)
    np.testing.assert_allclose(dz, num, rtol=1e-6, atol=1e-9)


def test_cross_entropy_indices_equal_one_hot_and_extremes():
    rng = np.random.default_rng(2)
    z = rng.standard_normal((8, 4)).astype(np.float32)
    y = rng.integers(0, 4, 8)
    a = losses.softmax_cross_entropy(z, y)
    b = losses.softmax_cross_entropy(z, np.eye(4, dtype=np.int64)[y])
    np.testing.assert_allclose(a[0], b[0], rtol=1e-6)
    np.testing.assert_allclose(a[1], b[1], rtol=1e-6, atol=1e-7)
    assert a[1].dtype == np.float32
    # huge logits: finite loss and gradient (log-sum-exp), the right answer ~0, wrong ~1e4
    big = np.array([[1e4, -1e4], [-1e4, 1e4]])
    loss, d = losses.softmax_cross_entropy(big, np.array([0, 1]))
    assert loss == 0.0 and np.all(np.isfinite(d))
    loss, d = losses.softmax_cross_entropy(big, np.array([1, 0]))
    np.testing.assert_allclose(loss, 2e4)
    np.testing.assert_allclose(d, [[0.5, -0.5], [-0.5, 0.5]])


def test_cross_entropy_errors():
    z = np.zeros((3, 4))
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        losses.softmax_cross_entropy(z, np.array([0, 4, 1]))
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        losses.softmax_cross_entropy(z, np.array([0, -1, 1]))
    with pytest.raises(TypeError, match="integers"):
        losses.softmax_cross_entropy(z, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="shape"):
        losses.softmax_cross_entropy(z, np.array([0, 1]))
    with pytest.raises(TypeError):
        losses.softmax_cross_entropy(z, "abc")


def test_mse_matches_finite_differences():
    rng = np.random.default_rng(3)
    pred, target = rng.standard_normal((4, 3, 2)), rng.standard_normal((4, 3, 2))
    loss, d = losses.mse(pred, target)
    np.testing.assert_allclose(loss, np.mean((pred - target) ** 2), rtol=1e-14)
    np.testing.assert_allclose(d, central_differences(lambda: losses.mse(pred, target)[0], pred),
                               rtol=1e-6, atol=1e-10)
    assert losses.mse(pred.astype(np.float32), target)[1].dtype == np.float32
    with pytest.raises(ValueError, match="shape"):
        losses.mse(pred, target[:, :2])


# --------------------------------------------------------------------------- layer grads

def _problem(seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((3, 5, 4)), rng.standard_normal((3, 5, 6))


@pytest.mark.parametrize("cell,backend", KIND_BACKENDS)
def test_layer_grads_are_stable_objects_written_in_place(cell, backend):
    layer = make_layer(cell, 4, 6, backend=backend, dtype=np.float64, seed=0)
    held = dict(layer.grads)
    x, dout = _problem()
    layer_forward(layer, x)
    layer_backward(layer, dout)
    assert layer.grads.keys() == held.keys()
    for k, g in held.items():
        assert layer.grads[k] is g, k
        assert np.abs(g).max() > 0, k
    once = {k: g.copy() for k, g in held.items()}
    # a second backward overwrites (the same values), accumulate=True adds
    layer_forward(layer, x)
    layer_backward(layer, dout)
    for k, g in held.items():
        assert layer.grads[k] is g
        np.testing.assert_array_equal(g, once[k])
    x2, dout2 = _problem(1)
    layer_forward(layer, x2)
    layer_backward(layer, dout2)
    second = {k: g.copy() for k, g in held.items()}
    layer_forward(layer, x)
    layer_backward(layer, dout)
    layer_forward(layer, x2)
    layer.backward(dout2, None, accumulate=True)
    for k, g in held.items():
        assert layer.grads[k] is g
        np.testing.assert_allclose(g, once[k] + second[k], rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("cell,backend", KIND_BACKENDS)
def test_a_replaced_grads_entry_of_the_wrong_shape_is_an_error(cell, backend):
    layer = make_layer(cell, 4, 6, backend=backend, seed=0)
    x, dout = _problem()
    layer_forward(layer, x)
    good = layer.grads["Wh"]
    for bad, match in [(np.zeros((5, 5), np.float32), "shape"),
                       (np.zeros(good.shape, np.float64), "dtype"),
                       ([[0.0]], "ndarray")]:
        layer.grads["Wh"] = bad
        with pytest.raises((ValueError, TypeError), match=match) as info:
            layer_backward(layer, dout)
        assert "grads['Wh']" in str(info.value)
    ro = np.zeros_like(good)
    ro.flags.writeable = False
    layer.grads["Wh"] = ro
    with pytest.raises(ValueError, match="read-only"):
        layer_backward(layer, dout)
    # nothing was consumed: with a right-shaped replacement, backward writes into it
    mine = np.full_like(good, 7.0)
    layer.grads["Wh"] = mine
    layer_backward(layer, dout)
    assert layer.grads["Wh"] is mine and not np.all(mine == 7.0)
    # a missing entry is filled with a new array
    del layer.grads["Wx"]
    layer_forward(layer, x)
    layer_backward(layer, dout)
    assert layer.grads["Wx"].shape == layer.params["Wx"].shape
