"""Property tests of the models: the compiled backend's seeded fit against the twin's, on
random configurations.

test_models compares the two backends for the LSTM on a fixed task; here Hypothesis draws the
model (classifier or regressor, many-to-one or many-to-many), the cell (every kind), one or
two layers, one or two directions, the optimizer (SGD, AdaGrad, Adam), gradient clipping,
the batch size, whether the rows have lengths, and the data's sizes and seed. float64, two
epochs: the two fits' loss histories agree to 1e-9 relative and every fitted parameter to
1e-7 (the kernels round differently in the last bits; nothing else may differ), and the
fitted models' predictions agree likewise. ~40 examples, ~10 s; ``RNNFAST_PROPERTY_EXAMPLES``
scales the count; derandomized on CI."""
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from rnnfast import cells
from rnnfast.models import SequenceClassifier, SequenceRegressor
from cells_for_tests import property_settings

PROFILE = property_settings(40)


@st.composite
def fits(draw):
    model = draw(st.sampled_from(["classifier", "regressor", "regressor_many"]))
    n, T, F = draw(st.integers(2, 24)), draw(st.integers(1, 6)), draw(st.integers(1, 3))
    return dict(model=model, n=n, T=T, F=F,
                cell=draw(st.sampled_from([s.kind for s in cells.specs()])),
                hidden=draw(st.integers(1, 5)), num_layers=draw(st.integers(1, 2)),
                bidirectional=draw(st.booleans()),
                optimizer=draw(st.sampled_from(["sgd", "adagrad", "adam"])),
                clip=draw(st.sampled_from([None, 0.5])),
                batch=draw(st.integers(1, 16)),
                lengths=draw(st.booleans()) and model != "regressor_many",
                classes=draw(st.integers(2, 4)), seed=draw(st.integers(0, 2**31 - 1)))


def _data(f):
    rng = np.random.default_rng(f["seed"])
    X = rng.standard_normal((f["n"], f["T"], f["F"]))
    lengths = rng.integers(1, f["T"] + 1, f["n"]) if f["lengths"] else None
    if f["model"] == "classifier":
        y = rng.integers(0, f["classes"], f["n"])
        y[:2] = [0, 1]                          # (at least two classes)
    elif f["model"] == "regressor":
        y = rng.standard_normal((f["n"], 2))
    else:
        y = rng.standard_normal((f["n"], f["T"], 2))
    return X, y, lengths


def _fit(f, backend, X, y, lengths):
    cls = SequenceClassifier if f["model"] == "classifier" else SequenceRegressor
    m = cls(cell=f["cell"], hidden_size=f["hidden"], num_layers=f["num_layers"],
            bidirectional=f["bidirectional"], optimizer=f["optimizer"], learning_rate=0.05,
            clip_norm=f["clip"], epochs=2, batch_size=f["batch"], random_state=0,
            dtype=np.float64, backend=backend)
    return m.fit(X, y, lengths=lengths)


def _params(m):
    return {f"{k}{n}": p for k in ("rnn_", "dense_") for n, p in getattr(m, k).params.items()}


@PROFILE
@given(f=fits())
def test_compiled_fit_equals_the_twins(f):
    X, y, lengths = _data(f)
    a, b = _fit(f, "cython", X, y, lengths), _fit(f, "numpy", X, y, lengths)
    assert a.history_.keys() == b.history_.keys()
    for k in a.history_:
        np.testing.assert_allclose(a.history_[k], b.history_[k], rtol=1e-9, atol=1e-12,
                                   err_msg=k)
    pa, pb = _params(a), _params(b)
    assert pa.keys() == pb.keys()
    for k in pa:
        np.testing.assert_allclose(pa[k], pb[k], rtol=1e-7, atol=1e-9, err_msg=k)
    if f["model"] == "classifier":
        np.testing.assert_allclose(a.predict_proba(X, lengths=lengths),
                                   b.predict_proba(X, lengths=lengths), rtol=1e-7, atol=1e-9)
    else:
        np.testing.assert_allclose(a.predict(X, lengths=lengths),
                                   b.predict(X, lengths=lengths), rtol=1e-7, atol=1e-9)
