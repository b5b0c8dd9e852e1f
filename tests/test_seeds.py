"""The worked example of the seed notebooks (seeds 000 and 001, "Problem 2").

Inputs and expected hidden states are copied from the notebooks: the states were
printed by their own NumPy code (a plain ``np.tanh`` loop), so they are derived
independently of rnnfast. They are printed with 8 decimals, i.e. they are exact to
5e-9; the tolerances below allow for that rounding (float64) or for float32
arithmetic (float32), nothing more.
"""
import numpy as np
import pytest

import rnnfast

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
