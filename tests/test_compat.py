"""rnnfast.compat: each seed notebook's own example through compat, on both backends.

Expected values come from outside compat: the numbers the notebooks printed (copied from
their text, 8 decimals: exact to 5e-9), the notebooks' own code transcribed below where its
math is right (``Notebook*`` classes and ``nb_*`` functions, copied from the seeds with
their bugs noted), plain NumPy written here for the corrected math where the notebooks had
bugs, and central finite differences in float64 for every corrected gradient.
"""
import copy

import numpy as np
import pytest

from rnnfast import compat
from cells_for_tests import central_differences

# seeds 000/001/004's worked example (000 In [6], 001 In [4], 004 In [2])
X = np.array([[[1, 2], [2, 3], [3, 4]]]) / 100
W_X = np.array([[1, 3, 5, 7], [3, 5, 7, 8]]) / 100
W_H = np.array([[1, 3, 5, 7], [2, 4, 6, 8], [3, 5, 7, 8], [4, 6, 8, 10]]) / 100
B = np.array([1, 1, 1, 1])
# 001 Out [5] (every step); 000 Out [8] and 004 Out [2] print the last row
PRINTED_STATES = np.array([
    [0.76188798, 0.76213958, 0.76239095, 0.76255841],
    [0.792209, 0.8141834, 0.83404912, 0.84977719],
    [0.79494228, 0.81839002, 0.83939649, 0.85584174],
])
# 001 In [7] and Out [9]: the notebook's backward (its bugs included) printed this dx
DA = np.array([[[0.01, 0.02, 0.03, 0.04], [0.01, 0.02, 0.03, 0.04],
                [0.01, 0.02, 0.03, 0.04]]])
PRINTED_BUGGY_DX = np.array([[[4.75883037e-05, 6.05642872e-05],
                              [4.75883582e-05, 6.05643690e-05],
                              [4.75884400e-05, 6.05644781e-05]]])
PRINTED_ATOL = 5e-9
TIGHT = {"rtol": 1e-10, "atol": 1e-12}          # float64 against float64 NumPy


# ------------------------------------------------------------------ independent NumPy math

def np_rnn(x, Wx, Wh, b, act=np.tanh, h0=None):
    """h_t = act(x_t Wx + h_{t-1} Wh + b), batch-first; returns (hs (N, T, H), pre-acts)."""
    N, T, _ = x.shape
    h = np.zeros((N, Wh.shape[0])) if h0 is None else h0
    hs, pre = [], []
    for t in range(T):
        a = x[:, t] @ Wx + h @ Wh + b
        h = act(a)
        hs.append(h)
        pre.append(a)
    return np.stack(hs, axis=1), np.stack(pre, axis=1)


def np_rnn_bptt(x, Wx, Wh, b, dout, dact, dh_last=None):
    """Exact BPTT of np_rnn for dout on every step (+ dh_last on the last): dx, dWx, dWh, db,
    dh0. ``dact(a)``: the activation's derivative at the pre-activation."""
    hs, pre = np_rnn(x, Wx, Wh, b, act=_ACT_OF[dact])
    N, T, D = x.shape
    H = Wh.shape[0]
    dx, dWx, dWh, db = np.zeros_like(x), np.zeros_like(Wx), np.zeros_like(Wh), np.zeros(H)
    dh = np.zeros((N, H)) if dh_last is None else dh_last.copy()
    for t in reversed(range(T)):
        dh = dh + dout[:, t]
        da = dh * dact(pre[:, t])
        h_prev = hs[:, t - 1] if t > 0 else np.zeros((N, H))
        dWx += x[:, t].T @ da
        dWh += h_prev.T @ da
        db += da.sum(axis=0)
        dx[:, t] = da @ Wx.T
        dh = da @ Wh.T
    return dx, dWx, dWh, db, dh


def _sigmoid(a):
    return 1 / (1 + np.exp(-a))


def _dtanh(a):
    return 1 - np.tanh(a) ** 2


def _dsigmoid(a):
    return _sigmoid(a) * (1 - _sigmoid(a))


def _drelu(a):
    return (a > 0).astype(float)


_ACT_OF = {_dtanh: np.tanh, _dsigmoid: _sigmoid, _drelu: lambda a: np.maximum(a, 0)}


def snapshot(obj, names):
    return {n: copy.deepcopy(getattr(obj, n)) for n in names}


def assert_same(before, obj):
    for n, v in before.items():
        now = getattr(obj, n)
        if isinstance(v, np.ndarray):
            np.testing.assert_array_equal(now, v, err_msg=n)
        elif isinstance(v, list):
            for a, b in zip(now, v):
                np.testing.assert_array_equal(a, b, err_msg=n)
        else:
            assert now is v or now == v, n


def test_importable_as_documented():
    import rnnfast
    from rnnfast import compat as c
    assert c is rnnfast.compat
    assert set(c.__all__) >= {"ScratchRNNClassifier", "SimpleRNN", "RNN", "TimeRNN",
                              "rnn_forward", "lstm_forward", "ScratchSimpleRNNClassifier"}


# ======================================================================= seed 000

def test_seed000_example_prints_the_notebook_value(backend):
    """000 In [7]-[8]: the model's forward on the worked example returns the printed h."""
    initializer = compat.ConstantInitializer(Wx=W_X, Wh=W_H, b=B)
    model = compat.ScratchRNNClassifier(initializer=initializer, activator=compat.Tanh(),
                                        backend=backend)
    h = model.forward(X)
    assert h.shape == (1, 4) and h.dtype == np.float64
    np.testing.assert_allclose(h[0], PRINTED_STATES[-1], rtol=0, atol=PRINTED_ATOL)
    assert model.n_sequences == 3 and model.Wx is W_X
    assert initializer.Wx() is W_X and initializer.b_val is B


def test_seed000_sizes_from_the_model_not_a_global(backend):
    """Corrected: the notebook reads n_nodes from the global w_x; here from the model."""
    rng = np.random.default_rng(0)
    Wx, Wh, b = rng.standard_normal((5, 3)), rng.standard_normal((3, 3)) / 3, np.zeros(3)
    x = rng.standard_normal((2, 4, 5))
    model = compat.ScratchRNNClassifier(compat.ConstantInitializer(Wx, Wh, b), compat.Tanh(),
                                        backend=backend)
    np.testing.assert_allclose(model.forward(x), np_rnn(x, Wx, Wh, b)[0][:, -1], **TIGHT)


class _Layer:
    """A layer as seed 000's AdaGrad sees one: W, B, dW, dB."""

    def __init__(self, W, B):
        self.W, self.B = W.copy(), B.copy()


def test_adagrad_accumulates_every_squared_gradient_bias_included():
    """Corrected AdaGrad: H += g*g for the bias as for the weights (the notebook resets the
    bias's: HB = dB*dB); checked against the formula over three steps."""
    rng = np.random.default_rng(1)
    W0, B0 = rng.standard_normal((3, 2)), rng.standard_normal(2)
    grads = [(rng.standard_normal((3, 2)), rng.standard_normal(2)) for _ in range(3)]
    lr, delta = 0.1, 1e-7
    layer, opt = _Layer(W0, B0), compat.AdaGrad(lr)
    W, Bb, HW, HB, HB_nb, B_nb = W0.copy(), B0.copy(), 0.0, 0.0, 0.0, B0.copy()
    for dW, dB in grads:
        layer.dW, layer.dB = dW, dB
        assert opt.update(layer) is layer
        HW, HB = HW + dW * dW, HB + dB * dB
        W -= lr * dW / (np.sqrt(HW) + delta)
        Bb -= lr * dB / (np.sqrt(HB) + delta)
        HB_nb = dB * dB                                   # the notebook's bias update
        B_nb -= lr * dB / (np.sqrt(HB_nb) + delta)
    np.testing.assert_allclose(layer.W, W, **TIGHT)
    np.testing.assert_allclose(layer.B, Bb, **TIGHT)
    np.testing.assert_allclose(opt.HW, HW, **TIGHT)
    np.testing.assert_allclose(opt.HB, HB, **TIGHT)
    assert np.abs(layer.B - B_nb).max() > 1e-3           # the bug would show


def test_adagrad_keeps_one_accumulator_per_parameter():
    """One instance updating two layers gives each layer what its own instance would."""
    rng = np.random.default_rng(2)
    a, b = _Layer(rng.standard_normal((2, 2)), np.zeros(2)), _Layer(np.ones((2, 2)),
                                                                    np.ones(2))
    a2, b2 = _Layer(a.W, a.B), _Layer(b.W, b.B)
    shared, own_a, own_b = compat.AdaGrad(0.05), compat.AdaGrad(0.05), compat.AdaGrad(0.05)
    for _ in range(3):
        for lay in (a, b, a2, b2):
            lay.dW, lay.dB = rng.standard_normal((2, 2)), rng.standard_normal(2)
        a2.dW, a2.dB, b2.dW, b2.dB = a.dW, a.dB, b.dW, b.dB
        shared.update(a)
        shared.update(b)
        own_a.update(a2)
        own_b.update(b2)
    for x, y in ((a, a2), (b, b2)):
        np.testing.assert_array_equal(x.W, y.W)
        np.testing.assert_array_equal(x.B, y.B)


def test_adagrad_bad_layer_changes_nothing():
    layer = _Layer(np.ones((2, 2)), np.ones(2))
    layer.dW, layer.dB = np.ones((2, 2)), np.ones(3)
    with pytest.raises(ValueError, match=r"layer.dB must have the shape of layer.B \(2,\)"):
        compat.AdaGrad(0.1).update(layer)
    np.testing.assert_array_equal(layer.W, np.ones((2, 2)))
    layer.dB, layer.W = np.ones(2), np.ones((2, 2), int)
    with pytest.raises(TypeError, match="layer.W must be a float32 or float64 ndarray"):
        compat.AdaGrad(0.1).update(layer)
    np.testing.assert_array_equal(layer.B, np.ones(2))


# ======================================================================= seed 001

def seed001_rnn(backend, optimizer=None, activation=None):
    optimizer = compat.SGD(0.01) if optimizer is None else optimizer
    return compat.SimpleRNN(W_X, 1, W_H, initializer=compat.SimpleInitializer(),
                            optimizer=optimizer,
                            activation=compat.Tanh() if activation is None else activation,
                            backend=backend)


def test_seed001_forward_prints_the_notebook_values(backend):
    """001 In [5]: every step's h as printed; Out [6]: answer[0, 2]."""
    rnn = seed001_rnn(backend)
    answer = rnn.forward(X)
    assert answer.shape == (1, 3, 4) and answer.dtype == np.float64
    np.testing.assert_allclose(answer[0], PRINTED_STATES, rtol=0, atol=PRINTED_ATOL)
    np.testing.assert_allclose(answer[0, 2], PRINTED_STATES[2], rtol=0, atol=PRINTED_ATOL)
    assert rnn.n_sequece == 3


class NotebookSGD:
    """001 In [2]'s SGD, as written."""

    def __init__(self, lr):
        self.lr = lr

    def update(self, layer):
        layer.B = layer.B - self.lr * np.average(layer.dA, axis=0)
        layer.W = layer.W - self.lr * layer.dW / layer.dA.shape[0]
        return layer


class NotebookTanh:
    def forward(self, A):
        self.A = A
        return np.tanh(A)

    def backward(self, dZ):
        return dZ * (1 - (np.tanh(self.A)) ** 2)


class NotebookSimpleRNN:
    """001 In [3]'s SimpleRNN, as written (its bugs included: it is what printed Out [9])."""

    def __init__(self, W_x, B_x, W_h, optimizer, activation):
        self.optimizer, self.activation = optimizer, activation
        self.Wx, self.Bx, self.Wh = W_x, B_x, W_h

    def forward(self, X):
        self.input_X_forward = X
        self.n_sequece = X.shape[1]
        tmp_prev_h = np.zeros((X.shape[1] + 1, X.shape[0], self.Wx.shape[1]))
        tmp_y = np.zeros((X.shape[1], X.shape[0], self.Wx.shape[1]))
        for i in range(self.n_sequece):
            tmp = np.dot(X[:, i], self.Wx) + self.Bx + tmp_prev_h[i]
            tmp_y[i] = self.activation.forward(tmp)
            tmp_prev_h[i + 1] = np.dot(tmp_y[i], self.Wh)
        self.input_prev_ht_forward = tmp_prev_h.transpose(1, 0, 2)
        return tmp_y.transpose(1, 0, 2)

    def backward(self, dA):
        dz = np.zeros_like(self.input_X_forward)
        tmp_dz = dz.transpose(1, 0, 2)
        loss_h = np.zeros((dA.shape[0], dA.shape[1] + 1, dA.shape[2]))
        for i in reversed(range(self.n_sequece)):
            loss = dA[:, i, :] + loss_h[:, i, :]
            loss = self.activation.backward(loss) * loss
            dW = np.dot(self.input_X_forward[:, i, :].T, loss)
            tmp_dz[i] = np.dot(loss, self.Wx.T)
            self.dA, self.dW, self.W, self.B = loss, dW, self.Wx, self.Bx
            self = self.optimizer.update(self)
            self.Wx, self.Bx = self.W, self.B
            loss_h[:, i + 1, :] = np.dot(loss, self.Wh.T)
            self.dA = loss
            self.dW = np.dot(self.input_prev_ht_forward[:, i, :].T, loss)
            self.W, self.B = self.Wh, 0
            self = self.optimizer.update(self)
            self.Wh = self.W
        return tmp_dz.transpose(1, 0, 2)


def test_seed001_printed_backward_is_the_bugs_and_compat_corrects_it(backend):
    """The notebook's own backward reproduces its printed dx (so the transcription is
    faithful); compat gives the exact BPTT instead, ~50x larger here."""
    nb = NotebookSimpleRNN(W_X, 1, W_H, NotebookSGD(0.01), NotebookTanh())
    nb.forward(X)
    np.testing.assert_allclose(nb.backward(DA), PRINTED_BUGGY_DX, rtol=1e-8, atol=0)
    rnn = seed001_rnn(backend)
    rnn.forward(X)
    dx = rnn.backward(DA)
    expected = np_rnn_bptt(X, W_X, W_H, np.ones(4), DA, _dtanh)[0]
    np.testing.assert_allclose(dx, expected, **TIGHT)
    assert np.abs(dx - PRINTED_BUGGY_DX).min() > 1e-3


@pytest.mark.parametrize("act,dact", [(compat.Tanh, _dtanh), (compat.Sigmoid, _dsigmoid),
                                      (compat.ReLU, _drelu)], ids=["tanh", "sigmoid", "relu"])
def test_seed001_backward_exact_bptt_and_one_sgd_update(backend, act, dact):
    """Corrected backward: exact gradients (NumPy BPTT, and central differences of the
    loss sum(dA * h)), and one SGD update with the batch-mean gradients summed over steps."""
    rng = np.random.default_rng(3)
    N, T, D, H = 3, 5, 2, 4
    x = rng.standard_normal((N, T, D))
    Wx, Wh, b = rng.standard_normal((D, H)), rng.standard_normal((H, H)) / 2, \
        rng.standard_normal(H) / 4
    dA = rng.standard_normal((N, T, H))
    lr = 0.1
    rnn = compat.SimpleRNN(Wx, b, Wh, compat.SimpleInitializer(), compat.SGD(lr), act(),
                           backend=backend)
    fwd = _ACT_OF[dact]
    np.testing.assert_allclose(rnn.forward(x), np_rnn(x, Wx, Wh, b, fwd)[0], **TIGHT)
    dx = rnn.backward(dA)
    e_dx, e_dWx, e_dWh, e_db, _ = np_rnn_bptt(x, Wx, Wh, b, dA, dact)
    for got, want in ((dx, e_dx), (rnn.dWx, e_dWx), (rnn.dWh, e_dWh), (rnn.dBx, e_db)):
        np.testing.assert_allclose(got, want, **TIGHT)
    # finite differences of an independent forward
    wx, wh, bb, xx = Wx.copy(), Wh.copy(), b.copy(), x.copy()

    def loss():
        return float(np.sum(dA * np_rnn(xx, wx, wh, bb, fwd)[0]))
    for got, arr in ((rnn.dWx, wx), (rnn.dWh, wh), (rnn.dBx, bb), (dx, xx)):
        np.testing.assert_allclose(got, central_differences(loss, arr), rtol=1e-6, atol=1e-8)
    # one update, the seed's SGD on the batch mean
    np.testing.assert_allclose(rnn.Wx, Wx - lr * e_dWx / N, **TIGHT)
    np.testing.assert_allclose(rnn.Wh, Wh - lr * e_dWh / N, **TIGHT)
    np.testing.assert_allclose(rnn.Bx, b - lr * e_db / N, **TIGHT)


def test_seed001_adagrad_as_the_optimizer(backend):
    rnn = seed001_rnn(backend, optimizer=compat.AdaGrad(0.1))
    rnn.forward(X)
    rnn.backward(DA)
    _, dWx, dWh, db, _ = np_rnn_bptt(X, W_X, W_H, np.ones(4), DA, _dtanh)
    for got, w, g in ((rnn.Wx, W_X, dWx), (rnn.Wh, W_H, dWh), (rnn.Bx, np.ones(4), db)):
        np.testing.assert_allclose(got, w - 0.1 * g / (np.abs(g) + 1e-7), **TIGHT)


def test_seed001_weights_are_the_models_own(backend):
    w_x = W_X.copy()
    rnn = compat.SimpleRNN(w_x, 1, W_H, None, compat.SGD(0.5), compat.Tanh(), backend=backend)
    rnn.forward(X)
    rnn.backward(DA)
    np.testing.assert_array_equal(w_x, W_X)       # the caller's array is not written into
    assert np.abs(rnn.Wx - W_X).max() > 0


def test_seed001_sgd_on_a_layer_of_the_notebooks_own():
    """compat.SGD keeps the notebook's protocol for its own layers (dA, no dB)."""
    rng = np.random.default_rng(4)
    layer = _Layer(rng.standard_normal((3, 2)), rng.standard_normal(2))
    layer.dW, layer.dA = rng.standard_normal((3, 2)), rng.standard_normal((5, 2))
    W0, B0 = layer.W.copy(), layer.B.copy()
    compat.SGD(0.1).update(layer)
    np.testing.assert_allclose(layer.W, W0 - 0.1 * layer.dW / 5, **TIGHT)
    np.testing.assert_allclose(layer.B, B0 - 0.1 * np.average(layer.dA, axis=0), **TIGHT)


def test_seed001_activations_and_softmax():
    rng = np.random.default_rng(5)
    A, dZ = rng.standard_normal((4, 3)) * 3, rng.standard_normal((4, 3))
    for act, f, df in ((compat.Tanh(), np.tanh, _dtanh), (compat.Sigmoid(), _sigmoid,
                                                          _dsigmoid),
                       (compat.ReLU(), lambda a: np.maximum(a, 0), _drelu)):
        np.testing.assert_allclose(act.forward(A), f(A), **TIGHT)
        np.testing.assert_allclose(act.backward(dZ), dZ * df(A), **TIGHT)
        np.testing.assert_allclose(act(A), f(A), **TIGHT)
    with np.errstate(over="raise"):
        assert compat.Sigmoid().forward(np.array([-1000.0]))[0] == 0.0
    sm = compat.Softmax()
    Y = np.eye(3)[[0, 2, 1, 1]]
    Z = sm.forward(A)
    np.testing.assert_allclose(Z, np.exp(A) / np.exp(A).sum(axis=1, keepdims=True), **TIGHT)
    np.testing.assert_allclose(sm.backward(Y), Z - Y, **TIGHT)
    want = -np.mean(np.sum(Y * np.log(Z), axis=1))
    np.testing.assert_allclose(sm.loss, want, **TIGHT)
    np.testing.assert_allclose(sm.loss_func(Y, Z), want, **TIGHT)
    # corrected: large logits (the notebook's exp overflows to nan)
    big = np.array([[1000.0, 0.0, -1000.0]])
    with np.errstate(over="raise", invalid="raise"):
        Zb = sm.forward(big)
        np.testing.assert_allclose(Zb, [[1.0, 0.0, 0.0]], atol=1e-300)
        assert np.isclose(sm.loss_func(np.array([[0, 1, 0]])), 1000.0)
    with pytest.raises(ValueError, match=r"one-hot labels of shape \(batch=1, n_output=3\)"):
        sm.backward(np.eye(3)[[0, 1]])


def test_seed001_simple_initializer_uses_numpys_global_state():
    init = compat.SimpleInitializer(0.5)
    np.random.seed(7)
    W, Bb = init.W(3, 2), init.B(2)
    np.random.seed(7)
    np.testing.assert_array_equal(W, 0.5 * np.random.randn(3, 2))
    np.testing.assert_array_equal(Bb, 0.5 * np.random.randn(1, 2))
    assert Bb.shape == (1, 2)


def test_seed001_bad_input_changes_nothing(backend):
    rnn = seed001_rnn(backend)
    with pytest.raises(ValueError, match=r"W_h must have shape \(n_nodes, n_nodes\) = "
                                         r"\(4, 4\), got shape \(4, 3\)"):
        compat.SimpleRNN(W_X, 1, W_H[:, :3], None, None, compat.Tanh())
    with pytest.raises(TypeError, match="activation must be one the compiled core runs"):
        compat.SimpleRNN(W_X, 1, W_H, None, None, compat.Softmax())
    with pytest.raises(ValueError, match="backward needs a forward"):
        rnn.backward(DA)
    rnn.forward(X)
    before = snapshot(rnn, ["Wx", "Bx", "Wh"])
    with pytest.raises(ValueError, match="dout must have the shape of the forward output"):
        rnn.backward(DA[:, :2])
    assert_same(before, rnn)
    np.testing.assert_allclose(rnn.backward(DA),
                               np_rnn_bptt(X, W_X, W_H, np.ones(4), DA, _dtanh)[0], **TIGHT)


# ======================================================================= seed 002

class NotebookCell:
    """002's RNN cell as written (its math is right), float64 as its weights."""

    def __init__(self, wx, wh, b):
        self.params = [wx, wh, b]
        self.grads = [np.zeros_like(wx), np.zeros_like(wh), np.zeros_like(b)]

    def forward(self, x, h_prev):
        wx, wh, b = self.params
        h_next = np.tanh(np.matmul(h_prev, wh) + np.matmul(x, wx) + b)
        self.cache = (x, h_prev, h_next)
        return h_next

    def backward(self, dh_next):
        wx, wh, b = self.params
        x, h_prev, h_next = self.cache
        dt = dh_next * (1 - h_next ** 2)
        self.grads[0][...] = np.dot(x.T, dt)
        self.grads[1][...] = np.dot(h_prev.T, dt)
        self.grads[2][...] = np.sum(dt, axis=0)
        return np.dot(dt, wx.T), np.dot(dt, wh.T)


class NotebookTimeRNN:
    """002's TimeRNN as written, but in float64 (the notebook's dtype='f' is its bug)."""

    def __init__(self, wx, wh, b, stateful=False):
        self.params = [wx, wh, b]
        self.grads = [np.zeros_like(wx), np.zeros_like(wh), np.zeros_like(b)]
        self.h, self.dh, self.stateful = None, None, stateful

    def forward(self, xs):
        N, T, D = xs.shape
        H = self.params[0].shape[1]
        self.layers = []
        hs = np.empty((N, T, H))
        if not self.stateful or self.h is None:
            self.h = np.zeros((N, H))
        for t in range(T):
            layer = NotebookCell(*self.params)
            self.h = layer.forward(xs[:, t, :], self.h)
            hs[:, t, :] = self.h
            self.layers.append(layer)
        return hs

    def backward(self, dhs):
        N, T, H = dhs.shape
        D = self.params[0].shape[0]
        dxs = np.empty((N, T, D))
        dh, grads = 0, [0, 0, 0]
        for t in reversed(range(T)):
            layer = self.layers[t]
            dx, dh = layer.backward(dhs[:, t, :] + dh)
            dxs[:, t, :] = dx
            for i, grad in enumerate(layer.grads):
                grads[i] += grad
        for i, grad in enumerate(grads):
            self.grads[i][...] = grad
        self.dh = dh
        return dxs


def seed002_problem(seed=6, N=3, T=4, D=5, H=6):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((D, H)) / 2, rng.standard_normal((H, H)) / 3,
            rng.standard_normal(H) / 4, rng.standard_normal((N, T, D)),
            rng.standard_normal((N, T, H)))


def test_seed002_cell_matches_the_notebooks(backend):
    wx, wh, b, xs, dhs = seed002_problem()
    h_prev = np.tanh(np.random.default_rng(0).standard_normal((3, 6)))
    cell, nb = compat.RNN(wx, wh, b, backend=backend), NotebookCell(wx, wh, b)
    grads = list(cell.grads)
    np.testing.assert_allclose(cell.forward(xs[:, 0], h_prev), nb.forward(xs[:, 0], h_prev),
                               **TIGHT)
    assert len(cell.cache) == 3                           # (x, h_prev, h_next)
    for got, want in zip(cell.cache, nb.cache):
        np.testing.assert_allclose(got, want, **TIGHT)
    for got, want in zip(cell.backward(dhs[:, 0]), nb.backward(dhs[:, 0])):
        np.testing.assert_allclose(got, want, **TIGHT)
    for g, keep, want in zip(cell.grads, grads, nb.grads):
        assert g is keep                                  # written in place
        np.testing.assert_allclose(g, want, **TIGHT)
    assert all(p is q for p, q in zip(cell.params, (wx, wh, b)))
    wx[...] *= 2                                          # params are the caller's arrays
    np.testing.assert_allclose(cell.forward(xs[:, 0], h_prev),
                               NotebookCell(wx, wh, b).forward(xs[:, 0], h_prev), **TIGHT)


@pytest.mark.parametrize("stateful", [False, True])
def test_seed002_time_rnn_matches_the_notebooks(backend, stateful):
    wx, wh, b, xs, dhs = seed002_problem()
    layer, nb = compat.TimeRNN(wx, wh, b, stateful, backend=backend), \
        NotebookTimeRNN(wx, wh, b, stateful)
    grads = list(layer.grads)
    for _ in range(2):                                    # the second call carries h if stateful
        same_time_rnn_call(layer, nb, grads, xs, dhs)


def same_time_rnn_call(layer, nb, grads, xs, dhs):
    """compat's TimeRNN ``layer`` and the notebook's ``nb``: one forward and backward each,
    the same results, h, dh and gradients (written into the arrays ``grads``)."""
    np.testing.assert_allclose(layer.forward(xs), nb.forward(xs), **TIGHT)
    np.testing.assert_allclose(layer.h, nb.h, **TIGHT)
    np.testing.assert_allclose(layer.backward(dhs), nb.backward(dhs), **TIGHT)
    np.testing.assert_allclose(layer.dh, nb.dh, **TIGHT)
    for g, keep, want in zip(layer.grads, grads, nb.grads):
        assert g is keep
        np.testing.assert_allclose(g, want, **TIGHT)


def test_seed002_time_rnn_gradients_by_central_differences(backend):
    wx, wh, b, xs, dhs = seed002_problem(N=2, T=3, D=2, H=3)
    h0 = np.random.default_rng(9).standard_normal((2, 3)) / 2
    layer = compat.TimeRNN(wx, wh, b, stateful=True, backend=backend)
    layer.set_state(h0)
    layer.forward(xs)
    dxs = layer.backward(dhs)
    w = [wx.copy(), wh.copy(), b.copy()]
    xx, hh = xs.copy(), h0.copy()

    def loss():
        return float(np.sum(dhs * np_rnn(xx, *w, h0=hh)[0]))
    for got, arr in zip(layer.grads + [dxs, layer.dh], w + [xx, hh]):
        np.testing.assert_allclose(got, central_differences(loss, arr), rtol=1e-6, atol=1e-8)


def test_seed002_state_carrying(backend):
    wx, wh, b, xs, _ = seed002_problem(T=6)
    whole = np_rnn(xs, wx, wh, b)[0]
    layer = compat.TimeRNN(wx, wh, b, stateful=True, backend=backend)
    np.testing.assert_allclose(np.concatenate([layer.forward(xs[:, :3]),
                                               layer.forward(xs[:, 3:])], axis=1),
                               whole, **TIGHT)
    layer.reset_state()
    np.testing.assert_allclose(layer.forward(xs[:, 3:]), np_rnn(xs[:, 3:], wx, wh, b)[0],
                               **TIGHT)
    h0 = np.full((3, 6), 0.5)
    layer.set_state(h0)
    np.testing.assert_allclose(layer.forward(xs), np_rnn(xs, wx, wh, b, h0=h0)[0], **TIGHT)
    plain = compat.TimeRNN(wx, wh, b, backend=backend)     # stateful=False: always from 0
    plain.forward(xs[:, :3])
    np.testing.assert_allclose(plain.forward(xs[:, 3:]), np_rnn(xs[:, 3:], wx, wh, b)[0],
                               **TIGHT)


def test_seed002_dtype_of_the_weights(backend):
    """Corrected: the notebook computes in float32 whatever the weights."""
    wx, wh, b, xs, dhs = seed002_problem()
    for dt in (np.float32, np.float64):
        layer = compat.TimeRNN(wx.astype(dt), wh.astype(dt), b.astype(dt), backend=backend)
        hs = layer.forward(xs)
        dxs = layer.backward(dhs)
        assert hs.dtype == dt and dxs.dtype == dt and layer.h.dtype == dt
        assert all(g.dtype == dt for g in layer.grads)
        cell = compat.RNN(wx.astype(dt), wh.astype(dt), b.astype(dt), backend=backend)
        assert cell.forward(xs[:, 0], np.zeros((3, 6))).dtype == dt
    tol = {"rtol": 1e-5, "atol": 1e-6}
    np.testing.assert_allclose(compat.TimeRNN(wx.astype(np.float32), wh.astype(np.float32),
                                              b.astype(np.float32), backend=backend)
                               .forward(xs), np_rnn(xs, wx, wh, b)[0], **tol)


def test_seed002_bad_input_changes_nothing(backend):
    wx, wh, b, xs, dhs = seed002_problem()
    layer = compat.TimeRNN(wx, wh, b, stateful=True, backend=backend)
    layer.forward(xs)
    h = layer.h.copy()
    with pytest.raises(ValueError, match=r"TimeRNN.h .* must have shape \(N=2, H=6\) for "
                                         r"this batch, got shape \(3, 6\)"):
        layer.forward(xs[:2])
    np.testing.assert_array_equal(layer.h, h)
    with pytest.raises(ValueError, match="x must have 5 features"):
        layer.forward(xs[:, :, :4])
    np.testing.assert_array_equal(layer.h, h)
    np.testing.assert_allclose(layer.backward(dhs), _time_rnn_dx(wx, wh, b, xs, dhs),
                               **TIGHT)        # the forward before the errors still serves
    cell = compat.RNN(wx, wh, b, backend=backend)
    with pytest.raises(ValueError, match="RNN.backward needs a forward"):
        cell.backward(dhs[:, 0])
    with pytest.raises(ValueError, match=r"h0 must have shape \(batch=3, hidden_size=6\)"):
        cell.forward(xs[:, 0], np.zeros((2, 6)))


def _time_rnn_dx(wx, wh, b, xs, dhs):
    nb = NotebookTimeRNN(wx, wh, b)
    nb.forward(xs)
    return nb.backward(dhs)


# ======================================================================= seed 003

def nb_softmax(x):
    """003 In [9]'s softmax, as written (the global maximum)."""
    e_x = np.exp(x - np.max(x))
    return e_x / e_x.sum(axis=0)


def nb_rnn_cell(x, a, parameters):
    """003 In [11], as written."""
    p = parameters
    a_next = np.tanh(np.dot(p["Waa"], a) + np.dot(p["Wax"], x) + p["ba"])
    y_pred = nb_softmax(np.dot(p["Wya"], a_next) + p["by"])
    return a_next, y_pred, (a_next, y_pred, x, parameters)


def nb_rnn_forward(x, a0, parameters):
    """003 In [13], as written."""
    caches = []
    n_x, m, T_x = x.shape
    n_y, n_a = parameters["Wya"].shape
    a = np.zeros([n_a, m, T_x])
    y_pred = np.zeros([n_y, m, T_x])
    a_next = a0
    for t in range(T_x):
        a_next, yt_pred, cache = nb_rnn_cell(x[:, :, t], a_next, parameters)
        a[:, :, t] = a_next
        y_pred[:, :, t] = yt_pred
        caches.append(cache)
    return a, y_pred, (caches, x)


def nb_lstm_cell(xt, a_prev, c_prev, parameters):
    """003 In [15], as written."""
    p = parameters
    n_x, m = xt.shape
    n_y, n_a = p["Wy"].shape
    concat = np.zeros([n_x + n_a, m])
    concat[:n_a, :] = a_prev
    concat[n_a:, :] = xt
    ft = _sigmoid(np.dot(p["Wf"], concat) + p["bf"])
    it = _sigmoid(np.dot(p["Wi"], concat) + p["bi"])
    cct = np.tanh(np.dot(p["Wc"], concat) + p["bc"])
    c_next = ft * c_prev + it * cct
    ot = _sigmoid(np.dot(p["Wo"], concat) + p["bo"])
    a_next = ot * np.tanh(c_next)
    yt_pred = nb_softmax(np.dot(p["Wy"], a_next) + p["by"])
    cache = (a_next, c_next, a_prev, c_prev, ft, it, cct, ot, xt, parameters)
    return a_next, c_next, yt_pred, cache


def nb_lstm_forward(x, a0, parameters):
    """003's unfinished lstm_forward, completed as its rnn_forward is (c0 = 0)."""
    n_x, m, T_x = x.shape
    n_y, n_a = parameters["Wy"].shape
    a, c, y = np.zeros([n_a, m, T_x]), np.zeros([n_a, m, T_x]), np.zeros([n_y, m, T_x])
    a_next, c_next, caches = a0, np.zeros([n_a, m]), []
    for t in range(T_x):
        a_next, c_next, yt, cache = nb_lstm_cell(x[:, :, t], a_next, c_next, parameters)
        a[:, :, t], c[:, :, t], y[:, :, t] = a_next, c_next, yt
        caches.append(cache)
    return a, y, c, (caches, x)


def seed003_rnn_example():
    """003 In [10] (the cell's) and In [14] (rnn_forward's), as the notebook draws them."""
    np.random.seed(42)
    x_input = np.random.randn(3, 10)
    a_prev = np.random.randn(5, 10)
    parameters = {"Waa": np.random.randn(5, 5), "Wax": np.random.randn(5, 3),
                  "ba": np.random.randn(5, 1), "Wya": np.random.randn(2, 5),
                  "by": np.random.randn(2, 1)}
    np.random.seed(42)
    a = np.random.randn(3, 10, 5)
    x = np.random.randn(5, 10)
    p14 = {}
    p14["Waa"] = np.random.randn(5, 5)
    p14["Wax"] = np.random.randn(5, 3)
    p14["Wya"] = np.random.randn(2, 5)
    p14["ba"] = np.random.randn(5, 1)
    p14["by"] = np.random.randn(2, 1)
    return (x_input, a_prev, parameters), (a, x, p14)


def seed003_lstm_example(T=None):
    """003 In [17] (T None: the cell's xt (3, 10)) and the last cell's x (3, 10, 7)."""
    np.random.seed(42)
    x = np.random.randn(3, 10) if T is None else np.random.randn(3, 10, T)
    a = np.random.randn(5, 10)
    c = np.random.randn(5, 10) if T is None else None
    p = {}
    for k in ("Wf", "Wi", "Wo", "Wc"):
        p[k] = np.random.randn(5, 5 + 3)
    p["Wy"] = np.random.randn(2, 5)
    for k in ("bf", "bi", "bo", "bc"):
        p[k] = np.random.randn(5, 1)
    p["by"] = np.random.randn(2, 1)
    return x, a, c, p


def test_seed003_rnn_cell_and_forward_on_the_notebooks_examples(backend):
    (x_input, a_prev, parameters), (a_in, x_in, p14) = seed003_rnn_example()
    a_next, yt_pred, cache = compat.rnn_cell(x_input, a_prev, parameters, backend=backend)
    assert a_next.shape == (5, 10)                                   # printed: (5, 10)
    want = nb_rnn_cell(x_input, a_prev, parameters)
    np.testing.assert_allclose(a_next, want[0], **TIGHT)
    np.testing.assert_allclose(yt_pred, want[1], **TIGHT)
    assert cache[2] is x_input and cache[3] is parameters
    # In [14]: rnn_forward(a, x, parameters), a (3, 10, 5) the input, x (5, 10) the state
    a, y, caches = compat.rnn_forward(a_in, x_in, p14, backend=backend)
    assert a.shape == (5, 10, 5)                                     # printed: (5, 10, 5)
    wa, wy, wcaches = nb_rnn_forward(a_in, x_in, p14)
    np.testing.assert_allclose(a, wa, **TIGHT)
    np.testing.assert_allclose(y, wy, **TIGHT)
    assert y.shape == (2, 10, 5) and a.dtype == np.float64
    assert len(caches[0]) == 5 and caches[1] is a_in
    for (ga, gy, gx, gp), (wa_t, wy_t, wx_t, _) in zip(caches[0], wcaches[0]):
        np.testing.assert_allclose(ga, wa_t, **TIGHT)
        np.testing.assert_allclose(gy, wy_t, **TIGHT)
        np.testing.assert_array_equal(gx, wx_t)
        assert gp is p14


def test_seed003_lstm_cell_and_forward_on_the_notebooks_examples(backend):
    xt, a_prev, c_prev, p = seed003_lstm_example()
    got = compat.lstm_cell(xt, a_prev, c_prev, p, backend=backend)
    want = nb_lstm_cell(xt, a_prev, c_prev, p)
    assert got[0].shape == (5, 10)
    for g, w in zip(got[:3], want[:3]):
        np.testing.assert_allclose(g, w, **TIGHT)
    for g, w in zip(got[3][:8], want[3][:8]):      # a_next, c_next, a_prev, c_prev, f, i, c, o
        np.testing.assert_allclose(g, w, **TIGHT)
    assert got[3][8] is xt and got[3][9] is p
    x, a0, _, p = seed003_lstm_example(T=7)
    a, y, c, caches = compat.lstm_forward(x, a0, p, backend=backend)
    wa, wy, wc, wcaches = nb_lstm_forward(x, a0, p)
    assert a.shape == (5, 10, 7) and c.shape == (5, 10, 7) and y.shape == (2, 10, 7)
    for g, w in ((a, wa), (y, wy), (c, wc)):
        np.testing.assert_allclose(g, w, **TIGHT)
    assert len(caches[0]) == 7 and caches[1] is x
    for gc, wc_t in zip(caches[0], wcaches[0]):
        for g, w in zip(gc[:9], wc_t[:9]):
            np.testing.assert_allclose(g, w, **TIGHT)


def test_seed003_gate_mapping_is_checked_gate_by_gate(backend):
    """Each gate's parameters land where the notebook's math puts them: perturbing one
    gate's weight changes compat's result exactly as it changes the notebook's."""
    xt, a_prev, c_prev, p = seed003_lstm_example()
    for q in ("f", "i", "o", "c"):
        p2 = dict(p)
        p2[f"W{q}"] = p[f"W{q}"] + 0.3 * np.eye(5, 8, k=2)
        p2[f"b{q}"] = p[f"b{q}"] - 0.2
        got = compat.lstm_cell(xt, a_prev, c_prev, p2, backend=backend)
        want = nb_lstm_cell(xt, a_prev, c_prev, p2)
        np.testing.assert_allclose(got[0], want[0], **TIGHT)
        np.testing.assert_allclose(got[1], want[1], **TIGHT)


def test_seed003_softmax_per_column(backend):
    """Corrected: the notebook's softmax shifts by the global maximum, so a column whose
    logits lie ~750 below it gives 0/0 (nan); compat shifts each column by its own."""
    (x_input, a_prev, parameters), _ = seed003_rnn_example()
    p = dict(parameters, Wya=np.array([[2000.0, 0, 0, 0, 0], [0, 0, 0, 0, 0]]))
    a_next, y, _ = compat.rnn_cell(x_input, a_prev, p, backend=backend)
    z = p["Wya"] @ a_next + p["by"]
    with np.errstate(invalid="ignore", under="ignore"):
        assert np.isnan(nb_softmax(z)).any()          # the notebook's, on these logits
    e = np.exp(z - z.max(axis=0))
    np.testing.assert_allclose(y, e / e.sum(axis=0), **TIGHT)
    assert np.isfinite(y).all()
    a, y_seq, _ = compat.rnn_forward(x_input[:, :, None], a_prev, p, backend=backend)
    np.testing.assert_allclose(y_seq[:, :, 0], y, **TIGHT)


def test_seed003_float32_parameters_stay_float32(backend):
    x, a0, _, p = seed003_lstm_example(T=4)
    p32 = {k: v.astype(np.float32) for k, v in p.items()}
    a, y, c, _ = compat.lstm_forward(x, a0, p32, backend=backend)
    assert a.dtype == y.dtype == c.dtype == np.float32
    wa, wy, wc, _ = nb_lstm_forward(x, a0, p)
    for g, w in ((a, wa), (y, wy), (c, wc)):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


def test_seed003_bad_input_changes_nothing(backend):
    (x_input, a_prev, parameters), (a_in, x_in, p14) = seed003_rnn_example()
    x, a0, _, p = seed003_lstm_example(T=7)
    saved = {k: v.copy() for k, v in p.items()}
    missing = {k: v for k, v in p.items() if k != "Wc"}
    with pytest.raises(ValueError, match=r"parameters\['Wc'\] is missing: lstm_forward "
                                         r"needs it, an array of shape \(n_a, n_a\+n_x\)"):
        compat.lstm_forward(x, a0, missing, backend=backend)
    bad = dict(p, bi=p["bi"][:, 0])
    with pytest.raises(ValueError, match=r"parameters\['bi'\] must have shape \(n_a, 1\) = "
                                         r"\(5, 1\), got shape \(5,\)"):
        compat.lstm_forward(x, a0, bad, backend=backend)
    bad = dict(p, Wo=p["Wo"][:, :7])
    with pytest.raises(ValueError, match=r"parameters\['Wo'\] must have shape \(n_a, "
                                         r"n_a\+n_x\) = \(5, 8\), got shape \(5, 7\)"):
        compat.lstm_forward(x, a0, bad, backend=backend)
    with pytest.raises(ValueError, match=r"x must have shape \(n_x, m, T_x\) = \(3, m, T_x\),"
                                         r" got shape \(10, 7, 3\).*x.transpose\(2, 0, 1\)"):
        compat.lstm_forward(x.transpose(1, 2, 0), a0, p, backend=backend)
    with pytest.raises(ValueError, match=r"a0 must have shape \(n_a, m\) = \(5, 10\)"):
        compat.lstm_forward(x, a0.T, p, backend=backend)
    with pytest.raises(TypeError, match="parameters must be a dict"):
        compat.lstm_forward(x, a0, list(p.values()), backend=backend)
    for k, v in saved.items():
        np.testing.assert_array_equal(p[k], v)
    with pytest.raises(ValueError, match=r"parameters\['Waa'\] must have shape \(n_a, n_a\)"):
        compat.rnn_forward(a_in, x_in, dict(p14, Waa=p14["Waa"][:4]), backend=backend)
    with pytest.raises(ValueError, match=r"parameters\['by'\] is missing: rnn_cell"):
        compat.rnn_cell(x_input, a_prev, {k: v for k, v in parameters.items() if k != "by"})
    with pytest.raises(ValueError, match=r"x must have shape \(n_x, m, T_x\) = \(3, m, T_x\)"
                                         r", got shape \(10, 5, 3\)"):
        compat.rnn_forward(a_in.transpose(1, 2, 0), x_in, p14, backend=backend)
    with pytest.raises(ValueError, match=r"xt must have shape \(n_x, m\) = \(3, m\), got "
                                         r"shape \(10, 3\).*xt.T"):
        compat.rnn_cell(x_input.T, a_prev, parameters, backend=backend)


# ======================================================================= seed 004

class NotebookClassifier:
    """004 In [3]'s ScratchSimpleRNNClassifier, forward and backward as written (its math
    is right for tanh)."""

    def __init__(self, Wx, Wh, B, W_out, B_out, lr):
        self.Wx, self.Wh, self.B = Wx.copy(), Wh.copy(), B.copy()
        self.W_out, self.B_out, self.learning_rate = W_out.copy(), B_out.copy(), lr

    def forward(self, X):
        batch_size, n_sequences, _ = X.shape
        h_t = np.zeros((batch_size, self.Wh.shape[0]))
        self.h_states, self.a_states = [], []
        for t in range(n_sequences):
            a_t = np.dot(X[:, t, :], self.Wx) + np.dot(h_t, self.Wh) + self.B
            h_t = np.tanh(a_t)
            self.h_states.append(h_t)
            self.a_states.append(a_t)
        z = np.dot(self.h_states[-1], self.W_out) + self.B_out
        e = np.exp(z - np.max(z, axis=1, keepdims=True))
        return e / np.sum(e, axis=1, keepdims=True)

    def backward(self, X, y_true, y_pred):
        batch_size, n_sequences, _ = X.shape
        dz = (y_pred - y_true) / batch_size
        dW_out = np.dot(self.h_states[-1].T, dz)
        dB_out = np.sum(dz, axis=0)
        dh = np.dot(dz, self.W_out.T)
        dWx, dWh, dB = np.zeros_like(self.Wx), np.zeros_like(self.Wh), np.zeros_like(self.B)
        for t in reversed(range(n_sequences)):
            h_prev = self.h_states[t - 1] if t > 0 else np.zeros_like(self.h_states[0])
            da = dh * (1 - np.tanh(self.a_states[t]) ** 2)
            dWx += np.dot(X[:, t, :].T, da)
            dWh += np.dot(h_prev.T, da)
            dB += np.sum(da, axis=0)
            dh = np.dot(da, self.Wh.T)
        for name, g in (("Wx", dWx), ("Wh", dWh), ("B", dB), ("W_out", dW_out),
                        ("B_out", dB_out)):
            setattr(self, name, getattr(self, name) - self.learning_rate * g)


NAMES004 = ("Wx", "Wh", "B", "W_out", "B_out")


def seed004_problem(seed=0, batch=4, T=6, D=3, H=5, C=2):
    """004 In [3]'s example sizes, with seeded draws (the notebook's are unseeded)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((batch, T, D))
    y = np.eye(C)[rng.integers(0, C, batch)]
    return X, y


def test_seed004_worked_example_prints_the_notebook_value(backend):
    """004 In [2]: the worked example's final hidden state."""
    model = compat.ScratchSimpleRNNClassifier(2, 4, 3, backend=backend)
    model.Wx, model.Wh, model.B = W_X, W_H, B          # B is an integer array, as there
    probs = model.forward(X)
    np.testing.assert_allclose(model.h_states[-1][0], PRINTED_STATES[-1], rtol=0,
                               atol=PRINTED_ATOL)
    np.testing.assert_allclose(model.h_states[:, 0], PRINTED_STATES, rtol=0,
                               atol=PRINTED_ATOL)
    assert probs.shape == (1, 3) and np.isclose(probs.sum(), 1)
    assert model.B.dtype == np.float64 and W_X.dtype == np.float64


def test_seed004_example_matches_the_notebooks_code(backend):
    """004 In [3]'s example (n_features 3, n_nodes 5, n_output 2, batch 4, 6 steps): forward,
    and the weights after backward, equal the notebook's (its math is right for tanh)."""
    np.random.seed(0)
    model = compat.ScratchSimpleRNNClassifier(3, 5, 2, backend=backend)
    assert model.Wx.shape == (3, 5) and model.B_out.shape == (2,)
    nb = NotebookClassifier(*(getattr(model, n) for n in NAMES004), 0.01)
    X_, y_ = seed004_problem()
    out = model.forward(X_)
    want = nb.forward(X_)
    np.testing.assert_allclose(out, want, **TIGHT)
    for t in range(6):
        np.testing.assert_allclose(model.h_states[t], nb.h_states[t], **TIGHT)
    model.backward(X_, y_, out)
    nb.backward(X_, y_, want)
    for n in NAMES004:
        np.testing.assert_allclose(getattr(model, n), getattr(nb, n), **TIGHT)


@pytest.mark.parametrize("activation,fwd", [(compat.Sigmoid(), _sigmoid),
                                            ("relu", lambda a: np.maximum(a, 0)),
                                            (np.tanh, np.tanh)],
                         ids=["sigmoid", "relu", "tanh"])
def test_seed004_backward_is_the_true_gradient(backend, activation, fwd):
    """Corrected for other activations (the notebook's backward always uses tanh's
    derivative): the update is lr times the central-difference gradient of the mean
    cross-entropy."""
    X_, y_ = seed004_problem(seed=1)
    lr = 0.5
    np.random.seed(1)
    model = compat.ScratchSimpleRNNClassifier(3, 5, 2, activation=activation,
                                              learning_rate=lr, backend=backend)
    for n in NAMES004:                            # larger weights: a real test of BPTT
        setattr(model, n, getattr(model, n) * 40 + 0.1)
    before = {n: getattr(model, n).copy() for n in NAMES004}
    w = {n: v.copy() for n, v in before.items()}

    def loss():
        hs = np_rnn(X_, w["Wx"], w["Wh"], w["B"], fwd)[0]
        z = hs[:, -1] @ w["W_out"] + w["B_out"]
        logp = z - z.max(axis=1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
        return float(-np.mean(np.sum(y_ * logp, axis=1)))
    model.backward(X_, y_, model.forward(X_))
    for n in NAMES004:
        step = (before[n] - getattr(model, n)) / lr
        np.testing.assert_allclose(step, central_differences(loss, w[n]), rtol=1e-6, atol=1e-9)


def test_seed004_fit_predict(backend):
    rng = np.random.default_rng(2)
    n = 64
    labels = rng.integers(0, 2, n)
    X_ = rng.standard_normal((n, 5, 3)) * 0.3
    X_[:, :, 0] += np.where(labels == 1, 1.0, -1.0)[:, None]
    np.random.seed(2)
    model = compat.ScratchSimpleRNNClassifier(3, 8, 2, learning_rate=0.5, backend=backend)
    assert model.fit(X_, labels, epochs=30, batch_size=16) is model
    assert len(model.loss) == 30 and model.loss[-1] < model.loss[0] / 4
    pred = model.predict(X_)
    assert pred.shape == (n,) and pred.dtype.kind == "i"
    assert np.mean(pred == labels) > 0.95
    np.testing.assert_allclose(model.predict_proba(X_).sum(axis=1), 1, **TIGHT)
    # predict between forward and backward leaves the pending backward as it was
    twin = copy.deepcopy(model)
    out = model.forward(X_[:4])
    model.predict(X_[10:])
    model.backward(X_[:4], labels[:4], out)
    twin.backward(X_[:4], labels[:4], twin.forward(X_[:4]))
    for name in NAMES004:
        np.testing.assert_array_equal(getattr(model, name), getattr(twin, name))


def test_seed004_float32_model(backend):
    X_, y_ = seed004_problem()
    np.random.seed(0)
    model = compat.ScratchSimpleRNNClassifier(3, 5, 2, dtype=np.float32, backend=backend)
    out = model.forward(X_)
    model.backward(X_, y_, out)
    assert out.dtype == np.float32 and all(getattr(model, n).dtype == np.float32
                                           for n in NAMES004)


def test_seed004_bad_input_changes_nothing(backend):
    X_, y_ = seed004_problem()
    np.random.seed(0)
    model = compat.ScratchSimpleRNNClassifier(3, 5, 2, backend=backend)
    with pytest.raises(ValueError, match="backward needs a forward"):
        model.backward(X_, y_, np.full((4, 2), 0.5))
    out = model.forward(X_)
    before = snapshot(model, NAMES004)
    with pytest.raises(ValueError, match=r"y_true must be one-hot labels of shape "
                                         r"\(batch=4, n_output=2\) or class indices of shape "
                                         r"\(4,\), got shape \(3, 2\)"):
        model.backward(X_, y_[:3], out)
    with pytest.raises(ValueError, match=r"y_pred must have shape \(batch_size, n_output\) = "
                                         r"\(4, 2\), got shape \(3, 2\)"):
        model.backward(X_, y_, out[:3])
    with pytest.raises(ValueError, match=r"X must be the forward's input, of shape "
                                         r"\(4, 6, 3\)"):
        model.backward(X_[:2], y_, out)
    with pytest.raises(ValueError, match=r"class indices in \[0, 2\)"):
        model.backward(X_, np.array([0, 1, 2, 0]), out)
    with pytest.raises(ValueError, match=r"y must be one-hot labels of shape \(batch=4"):
        model.fit(X_, y_[:3])
    assert_same(before, model)
    model.Wx = np.zeros((2, 5))
    with pytest.raises(ValueError, match=r"Wx must have shape \(n_features, n_nodes\) = "
                                         r"\(3, 5\), got shape \(2, 5\)"):
        model.forward(X_)
    model.Wx = before["Wx"].copy()
    with pytest.raises(TypeError, match="activation must be one the compiled core runs"):
        compat.ScratchSimpleRNNClassifier(3, 5, 2, activation=np.sin)
    model.backward(X_, y_, out)                   # the forward is still there, and serves
    nb = NotebookClassifier(*(before[n] for n in NAMES004), 0.01)
    nb.backward(X_, y_, nb.forward(X_))
    for n in NAMES004:
        np.testing.assert_allclose(getattr(model, n), getattr(nb, n), **TIGHT)
