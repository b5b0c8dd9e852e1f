"""The classifier head's training step in one call, ``dense_cross_entropy`` (the compiled
core's and the twin's): against rnnfast.nn.Dense and rnnfast.losses composed (bitwise for
the twin, within tolerance for the compiled one), against central differences in float64,
what it declines, and that the models' fit takes it."""
import inspect

import numpy as np
import pytest

import rnnfast
from rnnfast import _core, losses, nn, reference
from rnnfast.models import SequenceClassifier
from cells_for_tests import central_differences
from conftest import ATOL, RTOL

MODULES = {"cython": _core, "numpy": reference}


def problem(B, F, C, dtype, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    h = (rng.standard_normal((B, F)) * scale).astype(dtype)
    W = rng.standard_normal((F, C)).astype(dtype)
    b = rng.standard_normal(C).astype(dtype)
    labels = rng.integers(0, C, B).astype(np.intp)
    return h, W, b, labels


def composed(h, W, b, labels):
    """Dense's forward and backward around the public loss: the head as a user writes it."""
    dense = nn.Dense(W.shape[0], W.shape[1], dtype=W.dtype)
    dense.params["W"][...] = W
    dense.params["b"][...] = b
    logits = dense(h)
    loss, dlogits = losses.softmax_cross_entropy(logits, labels)
    dh = dense.backward(dlogits)
    correct = int(np.count_nonzero(logits.argmax(axis=1) == labels))
    return loss, correct, dh, dense.grads["W"].copy(), dense.grads["b"].copy()


def fused(module, h, W, b, labels):
    dW, db = np.full_like(W, np.nan), np.full_like(b, np.nan)   # (all overwritten)
    done = module.dense_cross_entropy(h, W, b, labels, dW, db)
    assert done is not None
    loss, correct, dh = done
    return loss, correct, dh, dW, db


def test_the_two_have_one_signature():
    assert (inspect.signature(_core.dense_cross_entropy).parameters.keys()
            == inspect.signature(reference.dense_cross_entropy).parameters.keys())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("B,F,C", [(1, 1, 1), (1, 3, 2), (32, 64, 10), (7, 5, 13),
                                   (50, 17, 3)])
@pytest.mark.parametrize("scale", [1.0, 1e3], ids=["plain", "large_logits"])
def test_equals_dense_and_the_loss(dtype, B, F, C, scale):
    h, W, b, labels = problem(B, F, C, dtype, seed=B * F + C, scale=scale)
    want = composed(h, W, b, labels)
    got_twin = fused(reference, h, W, b, labels)
    assert got_twin[0] == want[0] and got_twin[1] == want[1]    # the twin: to the bit
    for u, v in zip(got_twin[2:], want[2:]):
        assert u.dtype == v.dtype and u.shape == v.shape
        np.testing.assert_array_equal(u, v)
    got = fused(_core, h, W, b, labels)
    assert np.isfinite(got[0])
    np.testing.assert_allclose(got[0], want[0], rtol=RTOL[dtype] * 10, atol=ATOL[dtype])
    assert got[1] == want[1]
    for u, v in zip(got[2:], want[2:]):
        assert u.dtype == v.dtype and u.shape == v.shape
        scale_v = max(1.0, float(np.max(np.abs(v))))
        np.testing.assert_allclose(u, v, rtol=RTOL[dtype] * 10, atol=ATOL[dtype] * scale_v)


def test_nan_features_propagate_as_numpy_s():
    h, W, b, labels = problem(4, 3, 5, np.float64, seed=3)
    h[1, 0] = np.nan
    want = composed(h, W, b, labels)
    for module in MODULES.values():
        got = fused(module, h, W, b, labels)
        assert np.isnan(got[0]) and np.isnan(want[0])
        assert got[1] == want[1]        # np.argmax's rule: the NaN is the maximum
        np.testing.assert_array_equal(np.isnan(got[2]), np.isnan(want[2]))


@pytest.mark.parametrize("module", ["cython", "numpy"])
def test_gradients_match_central_differences(module):
    """float64: dW, db and dh against central differences of the loss."""
    core = MODULES[module]
    h, W, b, labels = problem(5, 4, 3, np.float64, seed=11)
    loss, _, dh, dW, db = fused(core, h, W, b, labels)
    def loss_at():
        return core.dense_cross_entropy(h, W, b, labels, np.empty_like(W),
                                        np.empty_like(b))[0]
    for arr, grad in ((W, dW), (b, db), (h, dh)):
        np.testing.assert_allclose(grad, central_differences(loss_at, arr), rtol=1e-6,
                                   atol=1e-9)
    assert loss_at() == loss


def _declined_cases():
    h, W, b, labels = problem(4, 3, 5, np.float32)
    dW, db = np.zeros_like(W), np.zeros_like(b)
    ro = np.zeros_like(W)
    ro.flags.writeable = False
    big = np.zeros(W.size + 1, np.float32)
    return {
        "h_other_dtype": (h.astype(np.float64), W, b, labels, dW, db),
        "h_fortran": (np.asfortranarray(np.zeros((4, 3), np.float32)), W, b, labels, dW, db),
        "h_list": (h.tolist(), W, b, labels, dW, db),
        "h_wrong_width": (np.zeros((4, 2), np.float32), W, b, labels, dW, db),
        "b_wrong_size": (h, W, b[:-1], labels, dW, db),
        "labels_int32": (h, W, b, labels.astype(np.int32), dW, db),
        "labels_wrong_count": (h, W, b, labels[:-1], dW, db),
        "dW_readonly": (h, W, b, labels, ro, db),
        "dW_is_W": (h, W, b, labels, W, db),
        "db_inside_dW": (h, W, b, labels, big[:W.size].reshape(W.shape), big[1:1 + 5]),
        "no_rows": (np.zeros((0, 3), np.float32), W, b, labels[:0], dW, db),
    }


@pytest.mark.parametrize("case", list(_declined_cases()))
def test_the_compiled_one_declines_what_it_cannot_take_as_it_is(case):
    args = _declined_cases()[case]
    before = [np.array(a, copy=True) for a in args]
    assert _core.dense_cross_entropy(*args) is None
    for a, b in zip(args, before):      # nothing written
        np.testing.assert_array_equal(np.asarray(a), b)


@pytest.mark.parametrize("case", ["h_other_dtype", "h_list", "h_wrong_width", "b_wrong_size",
                                  "labels_int32", "labels_wrong_count", "no_rows"])
def test_the_twin_declines_what_it_cannot_take(case):
    assert reference.dense_cross_entropy(*_declined_cases()[case]) is None


@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_fit_takes_the_one_call_and_trains_as_dense_and_the_loss_do(backend, monkeypatch):
    core = rnnfast.functional.kernels(backend)
    calls = []
    real = core.dense_cross_entropy
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 5, 3))
    y = (X.sum(axis=(1, 2)) > 0).astype(int)
    kw = dict(cell="gru", hidden_size=4, epochs=2, batch_size=16, random_state=0,
              backend=backend, dtype=np.float64)

    def spy(*args):
        done = real(*args)
        calls.append(done is not None)
        return done
    monkeypatch.setattr(core, "dense_cross_entropy", spy)
    one_call = SequenceClassifier(**kw).fit(X, y)
    assert calls == [True] * 6                  # 3 minibatches x 2 epochs, each in one call
    monkeypatch.setattr(core, "dense_cross_entropy", lambda *args: None)
    composed_fit = SequenceClassifier(**kw).fit(X, y)     # Dense and the loss, as before
    for k in ("loss", "accuracy"):
        if backend == "numpy":                  # the twin's: the same values to the bit
            assert one_call.history_[k] == composed_fit.history_[k]
        else:
            np.testing.assert_allclose(one_call.history_[k], composed_fit.history_[k],
                                       rtol=1e-12)
    for name in ("W", "b"):
        np.testing.assert_allclose(one_call.dense_.params[name],
                                   composed_fit.dense_.params[name], rtol=1e-10, atol=1e-12)
