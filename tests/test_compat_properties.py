"""Property tests of rnnfast.compat against the seed notebooks' own code (test_compat's
transcriptions, as written where their math is right) on random sizes, down to 1.

test_compat runs each notebook's own example; here Hypothesis draws the sizes (batch, steps,
features, hidden, outputs), the seed and the backend, for: seed 002's ``TimeRNN`` (stateful
or not, two or three calls, forward and backward, ``h`` and ``dh``, the gradients written in
place), seed 003's ``rnn_forward`` and ``lstm_forward`` in its ``(features, batch, time)``
layout with its parameters dicts (softmax over the output axis: the notebook takes the
global maximum, which does not change the values), and seed 004's classifier (forward, then
backward's SGD update of all five weights). float64 throughout; within test_compat's
tolerance. ~100 examples each; ``RNNFAST_PROPERTY_EXAMPLES`` scales; derandomized on CI."""
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from rnnfast import compat
from cells_for_tests import property_settings
from test_compat import (
    NAMES004,
    TIGHT,
    NotebookClassifier,
    NotebookTimeRNN,
    nb_lstm_forward,
    nb_rnn_forward,
    same_time_rnn_call,
)

PROFILE = property_settings(100)
SIZES = dict(B=st.integers(1, 4), T=st.integers(1, 5), D=st.integers(1, 4),
             H=st.integers(1, 5), C=st.integers(1, 4), seed=st.integers(0, 2**32 - 1),
             backend=st.sampled_from(["cython", "numpy"]))


@PROFILE
@given(st.fixed_dictionaries(dict(SIZES, stateful=st.booleans(), calls=st.integers(2, 3))))
def test_seed002_time_rnn_any_size(p):
    rng = np.random.default_rng(p["seed"])
    B, T, D, H = p["B"], p["T"], p["D"], p["H"]
    wx, wh, b = (rng.standard_normal((D, H)) / 2, rng.standard_normal((H, H)) / 3,
                 rng.standard_normal(H) / 4)
    layer = compat.TimeRNN(wx, wh, b, p["stateful"], backend=p["backend"])
    nb = NotebookTimeRNN(wx.copy(), wh.copy(), b.copy(), p["stateful"])
    grads = list(layer.grads)
    for _ in range(p["calls"]):
        xs, dhs = rng.standard_normal((B, T, D)), rng.standard_normal((B, T, H))
        same_time_rnn_call(layer, nb, grads, xs, dhs)


def _seed003_parameters(rng, n_x, n_a, n_y, lstm):
    if not lstm:
        return {"Waa": rng.standard_normal((n_a, n_a)) / 2,
                "Wax": rng.standard_normal((n_a, n_x)) / 2, "ba": rng.standard_normal((n_a, 1)),
                "Wya": rng.standard_normal((n_y, n_a)), "by": rng.standard_normal((n_y, 1))}
    p = {k: rng.standard_normal((n_a, n_a + n_x)) / 2 for k in ("Wf", "Wi", "Wo", "Wc")}
    p.update({k: rng.standard_normal((n_a, 1)) for k in ("bf", "bi", "bo", "bc")})
    p["Wy"], p["by"] = rng.standard_normal((n_y, n_a)), rng.standard_normal((n_y, 1))
    return p


@PROFILE
@given(st.fixed_dictionaries(dict(SIZES, lstm=st.booleans())))
def test_seed003_forward_any_size(p):
    rng = np.random.default_rng(p["seed"])
    n_x, m, T_x, n_a, n_y = p["D"], p["B"], p["T"], p["H"], p["C"]
    params = _seed003_parameters(rng, n_x, n_a, n_y, p["lstm"])
    x = rng.standard_normal((n_x, m, T_x))
    a0 = rng.standard_normal((n_a, m))
    before = {k: v.copy() for k, v in params.items()}
    if p["lstm"]:
        a, y, c, _ = compat.lstm_forward(x, a0, params, backend=p["backend"])
        wa, wy, wc, _ = nb_lstm_forward(x, a0, params)
        np.testing.assert_allclose(c, wc, **TIGHT)          # every step's cell state
    else:
        a, y, _ = compat.rnn_forward(x, a0, params, backend=p["backend"])
        wa, wy, _ = nb_rnn_forward(x, a0, params)
    assert a.shape == (n_a, m, T_x) and y.shape == (n_y, m, T_x)
    np.testing.assert_allclose(a, wa, **TIGHT)
    np.testing.assert_allclose(y, wy, **TIGHT)
    for k, v in before.items():                             # the caller's dict untouched
        np.testing.assert_array_equal(params[k], v)


@PROFILE
@given(st.fixed_dictionaries(SIZES))
def test_seed004_classifier_any_size(p):
    B, T, D, H, C = p["B"], p["T"], p["D"], p["H"], p["C"] + 1     # (two classes at least)
    np.random.seed(p["seed"] % 2**31)
    model = compat.ScratchSimpleRNNClassifier(D, H, C, backend=p["backend"])
    nb = NotebookClassifier(*(getattr(model, n) for n in NAMES004), 0.01)
    rng = np.random.default_rng(p["seed"])
    X = rng.standard_normal((B, T, D))
    y = np.eye(C)[rng.integers(0, C, B)]
    out, want = model.forward(X), nb.forward(X)
    np.testing.assert_allclose(out, want, **TIGHT)
    for t in range(T):
        np.testing.assert_allclose(model.h_states[t], nb.h_states[t], **TIGHT)
    model.backward(X, y, out)
    nb.backward(X, y, want)
    for n in NAMES004:
        np.testing.assert_allclose(getattr(model, n), getattr(nb, n), **TIGHT, err_msg=n)
