"""The worked example of the seed notebooks (seeds 000 and 001, "Problem 2"), and the same
style of example for the sigmoid RNN and the GRU (below).

Inputs and expected hidden states are copied from the notebooks: the states were
printed by their own NumPy code (a plain ``np.tanh`` loop), so they are derived
independently of rnnfast. They are printed with 8 decimals, i.e. they are exact to
5e-9; the tolerances below allow for that rounding (float64) or for float32
arithmetic (float32), nothing more.
"""
import math

import numpy as np
import pytest

import rnnfast
from rnnfast import cells
from cells_for_tests import backends_for

# seed 001, In [4]: (batch_size=1, n_sequences=3, n_features=2), 4 nodes
X = np.array([[[1, 2], [2, 3], [3, 4]]]) / 100
W_X = np.array([[1, 3, 5, 7], [3, 5, 7, 8]]) / 100
W_H = np.array([[1, 3, 5, 7], [2, 4, 6, 8], [3, 5, 7, 8], [4, 6, 8, 10]]) / 100
B = np.array([1, 1, 1, 1])

# seed 001, Out [5]: the hidden state after each of the three steps; seed 000, Out [8]
# prints the last row alone.
EXPECTED_STATES = np.array([
    [0.76188798, 0.76213958, 0.76239095, 0.76255841],
    [0.792209, 0.8141834, 0.83404912, 0.84977719],
    [0.79494228, 0.81839002, 0.83939649, 0.85584174],
])

# printed to 8 decimals: |printed - exact| <= 5e-9; float32 adds a few ulp of ~0.8
ATOL = {np.float32: 1e-6, np.float64: 1e-8}


def seed_layer(backend, dtype):
    rnn = rnnfast.RNN(2, 4, "tanh", dtype=dtype, backend=backend, seed=0)
    rnn.params["Wx"][...] = W_X
    rnn.params["Wh"][...] = W_H
    rnn.params["b"][...] = B
    return rnn


def test_seed_forward_every_step(backend, dtype):
    rnn = seed_layer(backend, dtype)
    out, h_n = rnn(X.astype(dtype))
    assert out.shape == (1, 3, 4) and out.dtype == dtype
    assert h_n.shape == (1, 4) and h_n.dtype == dtype
    np.testing.assert_allclose(out[0], EXPECTED_STATES, rtol=0, atol=ATOL[dtype])
    np.testing.assert_allclose(h_n[0], EXPECTED_STATES[-1], rtol=0, atol=ATOL[dtype])


def test_seed_forward_time_major(backend, dtype):
    """The same example with batch_first=False: x as (seq_len, batch, features)."""
    rnn = rnnfast.RNN(2, 4, "tanh", batch_first=False, dtype=dtype, backend=backend)
    rnn.params["Wx"][...] = W_X
    rnn.params["Wh"][...] = W_H
    rnn.params["b"][...] = B
    out, h_n = rnn(X.transpose(1, 0, 2).astype(dtype))
    assert out.shape == (3, 1, 4)
    np.testing.assert_allclose(out[:, 0], EXPECTED_STATES, rtol=0, atol=ATOL[dtype])
    np.testing.assert_allclose(h_n[0], EXPECTED_STATES[-1], rtol=0, atol=ATOL[dtype])


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_seed_forward_both_modes(backend, dtype, mode):
    rnn = getattr(seed_layer(backend, dtype), mode)()
    out, _ = rnn(X)      # float64 input into a layer of either dtype
    np.testing.assert_allclose(out[0], EXPECTED_STATES, rtol=0, atol=ATOL[dtype])


# --------------------------------------------------------------------- the new cells
#
# The same style of worked example for the cells the notebooks' seeds do not print: the
# sigmoid RNN (the notebooks' Sigmoid activation on Problem 2's inputs and weights) and a
# GRU on Problem 2's inputs. The expected states were printed (8 decimals) by a plain-Python
# loop over the documented equations (math.exp, math.tanh: no NumPy, no rnnfast), written
# out again below and rerun by the tests; the GRU's were also printed by torch.nn.GRU
# (float64) with these weights mapped as DESIGN.md says (weight_ih = Wx.T,
# weight_hh = Wh.T, bias_ih = b, bias_hh = (0, 0, 0, 0, b_hn)), to the same 8 decimals.

SIGMOID_EXPECTED_STATES = np.array([
    [0.73119618, 0.73131410, 0.73143198, 0.73151055],
    [0.74540272, 0.75653041, 0.76732356, 0.77645995],
    [0.74614614, 0.75776722, 0.76902099, 0.77851485],
])

# GRU(2, 2): Wx (2, 3*2), Wh (2, 3*2), b (3*2,), b_hn (2,), gate columns r, z, n
GRU_W_X = np.array([[1, 3, 5, 7, 2, 4], [3, 5, 7, 8, 6, 1]]) / 10
GRU_W_H = np.array([[1, 3, 5, 7, 2, 4], [2, 4, 6, 8, 3, 5]]) / 10
GRU_B = np.array([1, 2, 3, 4, 5, 6]) / 10
GRU_B_HN = np.array([2, 3]) / 10
GRU_EXPECTED_STATES = np.array([
    [0.23178846, 0.25649426],
    [0.36342758, 0.40177156],
    [0.44953450, 0.49848940],
])


def _sigmoid(a):
    return 1 / (1 + math.exp(-a))


def python_sigmoid_rnn(x, W_x, W_h, b):
    """h_t = sigmoid(x_t W_x + h_{t-1} W_h + b), one number at a time."""
    D, H = len(W_x), len(W_x[0])
    h, states = [0.0] * H, []
    for x_t in x:
        h = [_sigmoid(sum(x_t[d] * W_x[d][j] for d in range(D))
                      + sum(h[k] * W_h[k][j] for k in range(H)) + b[j]) for j in range(H)]
        states.append(h)
    return states


def python_gru(x, W_x, W_h, b, b_hn):
    """PyTorch's GRU equations (DESIGN.md), one number at a time: r, z = sigmoid(x W_x_rz +
    h W_h_rz + b_rz), n = tanh(x W_x_n + b_n + r * (h W_h_n + b_hn)), h = (1 - z) n + z h."""
    D, H = len(W_x), len(b_hn)
    h, states = [0.0] * H, []
    for x_t in x:
        a_x = [sum(x_t[d] * W_x[d][j] for d in range(D)) + b[j] for j in range(3 * H)]
        a_h = [sum(h[k] * W_h[k][j] for k in range(H)) for j in range(3 * H)]
        r = [_sigmoid(a_x[j] + a_h[j]) for j in range(H)]
        z = [_sigmoid(a_x[H + j] + a_h[H + j]) for j in range(H)]
        n = [math.tanh(a_x[2 * H + j] + r[j] * (a_h[2 * H + j] + b_hn[j])) for j in range(H)]
        h = [(1 - z[j]) * n[j] + z[j] * h[j] for j in range(H)]
        states.append(h)
    return states


def test_new_cells_expected_states_from_the_equations():
    """The printed expectations are what the equations give (to their 8 decimals)."""
    got = python_sigmoid_rnn(X[0].tolist(), W_X.tolist(), W_H.tolist(), B.tolist())
    np.testing.assert_allclose(got, SIGMOID_EXPECTED_STATES, rtol=0, atol=5e-9)
    got = python_gru(X[0].tolist(), GRU_W_X.tolist(), GRU_W_H.tolist(), GRU_B.tolist(),
                     GRU_B_HN.tolist())
    np.testing.assert_allclose(got, GRU_EXPECTED_STATES, rtol=0, atol=5e-9)


def new_cell_layer(kind, backend, dtype, batch_first=True):
    if kind == "rnn_sigmoid":
        layer = rnnfast.RNN(2, 4, "sigmoid", batch_first=batch_first, dtype=dtype,
                            backend=backend, seed=0)
        weights = {"Wx": W_X, "Wh": W_H, "b": B}
    else:
        layer = rnnfast.GRU(2, 2, batch_first=batch_first, dtype=dtype, backend=backend,
                            seed=0)
        weights = {"Wx": GRU_W_X, "Wh": GRU_W_H, "b": GRU_B, "b_hn": GRU_B_HN}
    assert layer.params.keys() == weights.keys()
    for name, w in weights.items():
        layer.params[name][...] = w
    return layer


NEW = {"rnn_sigmoid": SIGMOID_EXPECTED_STATES, "gru": GRU_EXPECTED_STATES}
NEW_PARAMS = [pytest.param(k, b, id=f"{k}-{b}") for k in NEW for b in backends_for(k)]


@pytest.mark.parametrize("kind,backend", NEW_PARAMS)
def test_new_cell_forward_every_step(kind, backend, dtype):
    layer = new_cell_layer(kind, backend, dtype)
    H = NEW[kind].shape[1]
    out, h_n = layer(X.astype(dtype))
    assert out.shape == (1, 3, H) and out.dtype == dtype
    assert h_n.shape == (1, H) and h_n.dtype == dtype
    np.testing.assert_allclose(out[0], NEW[kind], rtol=0, atol=ATOL[dtype])
    np.testing.assert_allclose(h_n[0], NEW[kind][-1], rtol=0, atol=ATOL[dtype])


@pytest.mark.parametrize("kind,backend", NEW_PARAMS)
def test_new_cell_forward_time_major(kind, backend, dtype):
    layer = new_cell_layer(kind, backend, dtype, batch_first=False)
    out, h_n = layer(X.transpose(1, 0, 2).astype(dtype))
    assert out.shape == (3, 1, NEW[kind].shape[1])
    np.testing.assert_allclose(out[:, 0], NEW[kind], rtol=0, atol=ATOL[dtype])
    np.testing.assert_allclose(h_n[0], NEW[kind][-1], rtol=0, atol=ATOL[dtype])


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("kind,backend", NEW_PARAMS)
def test_new_cell_forward_both_modes(kind, backend, dtype, mode):
    layer = getattr(new_cell_layer(kind, backend, dtype), mode)()
    out, _ = layer(X)      # float64 input into a layer of either dtype
    np.testing.assert_allclose(out[0], NEW[kind], rtol=0, atol=ATOL[dtype])


def test_new_cells_are_the_registrys():
    assert cells.get("gru").param_shapes(2, 2) == {
        "Wx": GRU_W_X.shape, "Wh": GRU_W_H.shape, "b": GRU_B.shape, "b_hn": GRU_B_HN.shape}
    assert cells.get("rnn_sigmoid").param_shapes(2, 4) == {
        "Wx": W_X.shape, "Wh": W_H.shape, "b": B.shape}
