"""``rnnfast.models``: SequenceClassifier and SequenceRegressor learn small synthetic tasks
on every cell and backend, are reproducible to the bit, pickle and save/load exactly, follow
scikit-learn's conventions (clone, cross_val_score, GridSearchCV, Pipeline; skipped,
visibly, without scikit-learn), refuse bad input with clear errors, and reach 96% on
scikit-learn's digits."""
import io
import pickle

import numpy as np
import pytest

from rnnfast import models
from rnnfast.models import SequenceClassifier, SequenceRegressor
from cells_for_tests import BACKENDS, KIND_BACKENDS, central_difference

FAST = dict(hidden_size=16, epochs=8, batch_size=32)


def sign_task(n, seed, T=8, F=3):
    """The sign of each sequence's sum: learnable by every cell in a few epochs."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, T, F)).astype(np.float32)
    return X, (X.sum(axis=(1, 2)) > 0).astype(int)


@pytest.fixture(scope="module")
def data():
    return sign_task(300, 0), sign_task(200, 1)


def fitted(backend="numpy", **kw):
    (X, y), _ = sign_task(300, 0), None
    kw = {**FAST, "random_state": 0, **kw}
    return SequenceClassifier(backend=backend, **kw).fit(X, y)


def params_of(model):
    return {f"{k}{n}": p.copy() for k in ("rnn_", "dense_")
            for n, p in getattr(model, k).params.items()}


# --------------------------------------------------------------------------- learning

@pytest.mark.parametrize("backend", BACKENDS)
def test_classifier_learns_the_sign_of_a_sum(backend, data):
    (X, y), (Xt, yt) = data
    labels = np.array(["neg", "pos"])
    m = SequenceClassifier(random_state=0, backend=backend, **FAST).fit(X, labels[y])
    assert m.classes_.tolist() == ["neg", "pos"]
    assert m.n_features_in_ == 3
    assert len(m.history_["loss"]) == len(m.history_["accuracy"]) == FAST["epochs"]
    assert m.history_["loss"][-1] < 0.5 * m.history_["loss"][0]
    assert m.history_["accuracy"][-1] > 0.9
    assert m.score(Xt, labels[yt]) >= 0.9
    proba = m.predict_proba(Xt)
    assert proba.shape == (200, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-6)
    assert set(m.predict(Xt)) <= {"neg", "pos"}


@pytest.mark.parametrize("cell,backend", KIND_BACKENDS)
def test_every_cell_learns(cell, backend, data):
    (X, y), (Xt, yt) = data
    m = SequenceClassifier(cell=cell, random_state=0, backend=backend, **FAST).fit(X, y)
    assert m.history_["loss"][-1] < m.history_["loss"][0]
    assert m.score(Xt, yt) >= 0.75
    assert m.rnn_._spec.kind == cell


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("optimizer,lr", [("sgd", 0.5), ("adagrad", 0.05), ("adam", 1e-2)])
def test_each_optimizer_and_clipping(optimizer, lr, backend, data):
    (X, y), (Xt, yt) = data
    m = SequenceClassifier(optimizer=optimizer, learning_rate=lr, random_state=0,
                           backend=backend, **FAST).fit(X, y)
    assert m.history_["loss"][-1] < 0.6 * m.history_["loss"][0]
    clipped = SequenceClassifier(optimizer=optimizer, learning_rate=lr, clip_norm=0.05,
                                 random_state=0, backend=backend, **FAST).fit(X, y)
    assert clipped.history_["loss"] != m.history_["loss"]
    assert clipped.history_["loss"][-1] < clipped.history_["loss"][0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_regressor_many_to_one_and_many_to_many(backend, data):
    (X, _), (Xt, _) = data
    m = SequenceRegressor(random_state=0, backend=backend, hidden_size=16, epochs=15)
    y = X.sum(axis=(1, 2)) / 5
    m.fit(X, y)
    assert m.predict(Xt).shape == (200,)
    assert m.score(Xt, Xt.sum(axis=(1, 2)) / 5) > 0.9
    assert list(m.history_) == ["loss"] and len(m.history_["loss"]) == 15
    y2 = np.stack([y, -y], axis=1)
    assert m.fit(X, y2).predict(Xt).shape == (200, 2)
    cum = np.cumsum(X.sum(axis=2), axis=1)[..., None] / 3       # (n, seq_len, 1)
    m.fit(X, cum)
    assert m.predict(Xt).shape == (200, 8, 1)
    assert m.score(Xt, np.cumsum(Xt.sum(axis=2), axis=1)[..., None] / 3) > 0.9
    # R^2 is scikit-learn's
    sk = pytest.importorskip("sklearn.metrics")
    pred = m.predict(Xt).reshape(-1, 1)
    want = sk.r2_score((np.cumsum(Xt.sum(axis=2), axis=1)[..., None] / 3).reshape(-1, 1),
                       pred)
    np.testing.assert_allclose(m.score(Xt, np.cumsum(Xt.sum(axis=2), axis=1)[..., None] / 3),
                               want, rtol=1e-6)      # (scikit-learn sums in float32 here)


# --------------------------------------------------------------------------- determinism

@pytest.mark.parametrize("backend", BACKENDS)
def test_seeded_fit_is_reproducible_to_the_bit(backend, data):
    (X, y), (Xt, _) = data
    a = fitted(backend)
    b = fitted(backend)
    assert a.history_ == b.history_
    for k, p in params_of(a).items():
        np.testing.assert_array_equal(p, params_of(b)[k], err_msg=k)
    np.testing.assert_array_equal(a.predict_proba(Xt), b.predict_proba(Xt))
    c = fitted(backend, random_state=1)
    assert c.history_ != a.history_


# --------------------------------------------------------------------------- persistence

@pytest.mark.parametrize("labels", ["int", "str", "object"])
def test_save_load_round_trip(labels, tmp_path, data):
    (X, y), (Xt, _) = data
    lab = {"int": np.array([3, 7]), "str": np.array(["no", "yes"]),
           "object": np.array(["no", "yes"], dtype=object)}[labels]
    m = SequenceClassifier(random_state=0, backend="numpy", **FAST).fit(X, lab[y])
    path = m.save(tmp_path / "model")
    assert path.endswith(".npz")
    back = SequenceClassifier.load(path)
    assert back.get_params() == m.get_params()
    assert back.history_ == m.history_ and back.n_features_in_ == 3
    assert back.classes_.dtype == m.classes_.dtype
    assert back.classes_.tolist() == m.classes_.tolist()
    np.testing.assert_array_equal(back.predict_proba(Xt), m.predict_proba(Xt))
    assert back.predict(Xt).tolist() == m.predict(Xt).tolist()
    for k, p in params_of(m).items():
        np.testing.assert_array_equal(params_of(back)[k], p)
        assert params_of(back)[k].dtype == p.dtype


def test_regressor_save_load_and_file_objects(tmp_path, data):
    (X, _), (Xt, _) = data
    cum = np.cumsum(X.sum(axis=2), axis=1)[..., None]
    m = SequenceRegressor(random_state=0, backend="numpy", epochs=2, hidden_size=8,
                          cell="gru", dtype=np.float64).fit(X, cum)
    buf = io.BytesIO()
    m.save(buf)
    buf.seek(0)
    back = SequenceRegressor.load(buf)
    assert back.get_params() == m.get_params() and back.y_ndim_ == 3
    np.testing.assert_array_equal(back.predict(Xt), m.predict(Xt))
    path = m.save(str(tmp_path / "reg.npz"))
    with pytest.raises(ValueError, match="holds a SequenceRegressor, not a SequenceClassifier"):
        SequenceClassifier.load(path)


def test_load_refuses_files_that_are_not_models(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    npy = tmp_path / "a.npy"
    np.save(npy, np.zeros(3))
    other = tmp_path / "other.npz"
    np.savez(other, W=np.zeros(3))
    bad_config = tmp_path / "bad.npz"
    np.savez(bad_config, __rnnfast_config__=np.array('{"format": "something else"}'))
    for path, match in [(text, "not an rnnfast model file"), (npy, "single array"),
                        (other, "no '__rnnfast_config__' entry"),
                        (bad_config, "not one that SequenceClassifier.save writes"),
                        (tmp_path / "missing.npz", "not an rnnfast model file")]:
        with pytest.raises(ValueError, match=match) as info:
            SequenceClassifier.load(path)
        assert str(path.name) in str(info.value)


def test_pickle_round_trip(data):
    (_, _), (Xt, _) = data
    m = fitted()
    back = pickle.loads(pickle.dumps(m))
    np.testing.assert_array_equal(back.predict_proba(Xt), m.predict_proba(Xt))
    assert back.get_params() == m.get_params() and back.history_ == m.history_
    unfitted = pickle.loads(pickle.dumps(SequenceClassifier(hidden_size=3)))
    assert unfitted.hidden_size == 3 and not hasattr(unfitted, "rnn_")


# --------------------------------------------------------------------------- scikit-learn

def test_hyperparameters_are_stored_as_given():
    m = SequenceClassifier()
    assert m.get_params() == dict(
        cell="lstm", hidden_size=64, num_layers=1, bidirectional=False, optimizer="adam",
        learning_rate=1e-2, epochs=30, batch_size=32, clip_norm=None, random_state=None,
        verbose=0, dtype=np.float32, backend="cython", check_finite=True)
    assert SequenceRegressor().get_params() == m.get_params()
    m.set_params(hidden_size=5, cell="anything")        # validated by fit, not here
    assert m.hidden_size == 5 and m.cell == "anything"
    with pytest.raises(ValueError, match="Invalid parameter"):
        m.set_params(hidden=5)


def test_fallback_base_without_scikit_learn():
    """The base used when scikit-learn is missing has the same get_params/set_params."""
    class Small(models._EstimatorBase):
        def __init__(self, a=1, b="x"):
            self.a, self.b = a, b

    s = Small(a=2)
    assert s.get_params() == {"a": 2, "b": "x"}
    assert s.set_params(b="y") is s and s.b == "y"
    with pytest.raises(ValueError, match="Invalid parameter 'c'"):
        s.set_params(c=1)
    assert repr(s) == "Small(a=2, b='y')"
    assert issubclass(models.NotFittedError, ValueError)


@pytest.mark.parametrize("backend", BACKENDS)
def test_scikit_learn_clone_cross_val_score_grid_search_pipeline(backend, data):
    sklearn = pytest.importorskip("sklearn", reason="scikit-learn is not installed")
    from sklearn.base import clone, is_classifier, is_regressor
    from sklearn.model_selection import GridSearchCV, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    (X, y), _ = data
    m = SequenceClassifier(random_state=0, backend=backend, hidden_size=8, epochs=4)
    assert is_classifier(m) and is_regressor(SequenceRegressor())
    c = clone(m)
    assert c.get_params() == m.get_params() and not hasattr(c, "rnn_")
    scores = cross_val_score(m, X, y, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.7
    grid = GridSearchCV(m, {"hidden_size": [4, 8], "learning_rate": [1e-2, 3e-2]}, cv=2)
    grid.fit(X, y)
    assert set(grid.best_params_) == {"hidden_size", "learning_rate"}
    assert grid.best_estimator_.score(X, y) > 0.7
    flat = X.reshape(len(X), -1)                          # a Pipeline reshaping 2-D rows
    pipe = make_pipeline(FunctionTransformer(lambda a: a.reshape(len(a), 8, 3)), clone(m))
    assert pipe.fit(flat, y).score(flat, y) > 0.7
    assert sklearn.__version__


# --------------------------------------------------------------------------- bad input

def test_bad_input_is_a_clear_error(data):
    (X, y), (Xt, yt) = data
    backend = "numpy"
    m = SequenceClassifier(backend=backend, **FAST, random_state=0)
    with pytest.raises(models.NotFittedError, match="not fitted"):
        m.predict(Xt)
    with pytest.raises(ValueError, match="y has 299 labels but X has 300 sequences"):
        m.fit(X, y[:-1])
    bad = X.copy()
    bad[4, 2, 1] = np.nan
    with pytest.raises(ValueError, match=r"NaN or infinity \(in sequence\(s\) \[4\]"):
        m.fit(bad, y)
    bad[4, 2, 1] = np.inf
    with pytest.raises(ValueError, match="NaN or infinity"):
        m.fit(bad, y)
    with pytest.raises(ValueError, match="X must be 3-D"):
        m.fit(X[0], y[:8])
    with pytest.raises(ValueError, match="at least 2 classes"):
        m.fit(X, np.zeros(300, int))
    for param, value, exc, match in [
            ("cell", "lstmm", ValueError, "cell must be one of"),
            ("optimizer", "rmsprop", ValueError, "optimizer must be one of"),
            ("num_layers", 0, ValueError, "num_layers"),
            ("num_layers", 1.5, TypeError, "num_layers"),
            ("bidirectional", "yes", TypeError, "bidirectional must be True or False"),
            ("backend", "gpu", ValueError, "backend must be one of"),
            ("learning_rate", -1.0, ValueError, "learning_rate"),
            ("batch_size", 0, ValueError, "batch_size"),
            ("dtype", np.int32, TypeError, "dtype"),
            ("random_state", "seed", TypeError, "random_state")]:
        with pytest.raises(exc, match=match):
            SequenceClassifier(**{**FAST, "backend": backend, param: value}).fit(X, y)
    m.fit(X, y)
    with pytest.raises(ValueError, match="X has 4 features per step, but SequenceClassifier "
                                         "was fitted with 3"):
        m.predict(np.zeros((2, 8, 4)))
    with pytest.raises(ValueError, match=r"not seen in fit: \[5\]"):
        m.score(Xt, np.where(yt == 1, 5, 0))
    with pytest.raises(ValueError, match="y has 2 labels but X has 200"):
        m.score(Xt, yt[:2])
    # a different number of steps is fine
    assert m.predict(np.zeros((2, 3, 3))).shape == (2,)
    r = SequenceRegressor(backend=backend, **FAST)
    with pytest.raises(ValueError, match="y has 3 targets"):
        r.fit(X, np.zeros(3))
    with pytest.raises(ValueError, match="X's seq_len 8"):
        r.fit(X, np.zeros((300, 5, 1)))


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")   # NaN/Inf, opted in
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_X_is_refused_unless_check_finite_is_false(value, tmp_path, data):
    (X, y), (Xt, yt) = data
    bad = X.copy()
    bad[[7, 250], 3, 0] = value
    kw = dict(backend="numpy", hidden_size=4, epochs=2, random_state=0)
    for model, target in [(SequenceClassifier(**kw), y),
                          (SequenceRegressor(**kw), X.sum(axis=(1, 2)))]:
        with pytest.raises(ValueError, match=r"NaN or infinity \(in sequence\(s\) \[7, 250\]"
                                             r"\); check_finite=False skips this check"):
            model.fit(bad, target)
        assert not hasattr(model, "rnn_")          # a refused fit leaves nothing fitted
        model.fit(X, target)
        before = params_of(model)
        for method in ("predict", "score") + (("predict_proba",)
                                              if hasattr(model, "predict_proba") else ()):
            args = (bad, target) if method == "score" else (bad,)
            with pytest.raises(ValueError, match="check_finite=False"):
                getattr(model, method)(*args)
        for k, p in params_of(model).items():
            np.testing.assert_array_equal(p, before[k])
        # opted out: no error, NaN/Inf go through the network and stay in their rows
        raw = getattr(model, "predict_proba", model.predict)
        clean = raw(X)
        model.set_params(check_finite=False)
        out = raw(bad)
        others = np.ones(len(X), bool)
        others[[7, 250]] = False
        np.testing.assert_array_equal(out[others], clean[others])
        if np.isnan(value):
            assert np.isnan(out[[7, 250]]).all()
        np.testing.assert_array_equal(raw(X), clean)
        model.set_params(check_finite=False).fit(bad, target)
        assert not np.isfinite(model.history_["loss"]).all()
        # kept by get_params, clone and save/load
        assert model.get_params()["check_finite"] is False
        back = type(model).load(model.save(tmp_path / type(model).__name__))
        assert back.check_finite is False
        assert pickle.loads(pickle.dumps(model)).check_finite is False
    sklearn_base = pytest.importorskip("sklearn.base", reason="scikit-learn is not installed")
    assert sklearn_base.clone(model).check_finite is False
    with pytest.raises(TypeError, match="check_finite must be True or False, got 'no'"):
        SequenceClassifier(check_finite="no", **kw).fit(X, y)


def test_verbose_shows_a_progress_bar_per_epoch(capsys, monkeypatch, data):
    (X, y), _ = data
    if models._tqdm is not None:
        SequenceClassifier(backend="numpy", hidden_size=4, epochs=2, verbose=1).fit(X, y)
        err = capsys.readouterr().err
        assert "epoch 1/2" in err and "epoch 2/2" in err
        assert "loss=" in err and "accuracy=" in err
    monkeypatch.setattr(models, "_tqdm", None)              # without tqdm: a line per epoch
    SequenceClassifier(backend="numpy", hidden_size=4, epochs=2, verbose=1).fit(X, y)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and lines[1].startswith("epoch 2/2: loss ")
    SequenceClassifier(backend="numpy", hidden_size=4, epochs=2).fit(X, y)
    assert capsys.readouterr().err == ""


# --------------------------------------------------------------------------- real data

@pytest.mark.parametrize("backend", BACKENDS)
def test_digits_lstm_reaches_96_percent(backend):
    """Issue 15's real-data check: scikit-learn's digits, each 8x8 image as 8 steps of 8
    features (scaled to [0, 1]), a stratified 25% test split, LSTM hidden 64, batch 32,
    Adam 1e-2, 30 epochs (PyTorch with that setup: 97.1%)."""
    pytest.importorskip("sklearn", reason="scikit-learn is not installed")
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    X = (digits.images / 16.0).astype(np.float32)
    Xtr, Xte, ytr, yte = train_test_split(X, digits.target, test_size=0.25,
                                          stratify=digits.target, random_state=0)
    m = SequenceClassifier(cell="lstm", hidden_size=64, batch_size=32, optimizer="adam",
                           learning_rate=1e-2, epochs=30, random_state=0, backend=backend)
    m.fit(Xtr, ytr)
    assert m.score(Xte, yte) >= 0.96


# --------------------------------------------------------------------------- lengths, stacks

CONFIGS = [(1, False), (2, False), (1, True), (2, True)]     # (num_layers, bidirectional)
CONFIG_IDS = ["L1", "L2", "L1-bi", "L2-bi"]


def padded_task(n, seed, T=8, F=3):
    """Sequences of lengths 1..T padded to T; the label is the sign of the sum over the
    valid steps, the padding holds large values of the other sign (a model reading it is
    wrong: the lengths matter)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, T, F))
    lengths = rng.integers(1, T + 1, n)
    valid = np.arange(T)[None, :] < lengths[:, None]
    total = (X * valid[..., None]).sum(axis=(1, 2))
    y = (total > 0).astype(int)
    X[~valid] = (-3.0 * np.sign(total))[:, None, None].repeat(T, 1)[~valid]
    return X, y, lengths


def unpadded_rows(X, lengths):
    return [X[i:i + 1, :k] for i, k in enumerate(lengths)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_many_to_one_features_are_h_n_and_the_outputs_at_each_rows_ends(cell, backend):
    """The head reads the last layer's h_n, forward then reverse: with lengths those are
    out[b, length - 1, :H] and out[b, 0, H:] (the reverse direction starts at each row's
    end and finishes at step 0), PyTorch's h_n of packed sequences."""
    X, y, lengths = padded_task(20, 3)
    m = SequenceClassifier(cell=cell, hidden_size=5, num_layers=2, bidirectional=True,
                           epochs=1, random_state=0, backend=backend,
                           dtype=np.float64).fit(X, y, lengths=lengths)
    out, state = m.rnn_(X, lengths=lengths)
    feats = m._last_hidden(state)
    rows = np.arange(len(X))
    H = m.rnn_.hidden_size
    assert feats.shape == (20, 2 * H) and m.dense_.in_features == 2 * H
    np.testing.assert_array_equal(feats[:, :H], out[rows, lengths - 1, :H])
    np.testing.assert_array_equal(feats[:, H:], out[rows, 0, H:])
    assert np.abs(feats).min() > 0                          # not zeros from padding


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_padded_rows_with_lengths_predict_what_each_row_alone_does(config, backend):
    """A model fitted on padded data with lengths: predict/predict_proba of the padded
    batch equal the model run on each row alone, unpadded (classifier, many-to-one and
    many-to-many regressor); float64, so the tolerance is the kernels' rounding."""
    L, bi = config
    X, y, lengths = padded_task(40, 4)
    kw = dict(hidden_size=6, num_layers=L, bidirectional=bi, epochs=2, batch_size=16,
              random_state=0, backend=backend, dtype=np.float64)
    tol = dict(rtol=1e-10, atol=1e-12)
    clf = SequenceClassifier(cell="lstm", **kw).fit(X, y, lengths=lengths)
    proba = clf.predict_proba(X, lengths=lengths)
    alone = np.concatenate([clf.predict_proba(r) for r in unpadded_rows(X, lengths)])
    np.testing.assert_allclose(proba, alone, **tol)
    assert clf.predict(X, lengths=lengths).tolist() == clf.classes_[alone.argmax(1)].tolist()
    # without lengths the padding is read: other probabilities
    assert np.abs(clf.predict_proba(X) - proba).max() > 1e-3

    reg = SequenceRegressor(cell="gru", **kw).fit(X, X[:, 0, :2], lengths=lengths)
    pred = reg.predict(X, lengths=lengths)
    np.testing.assert_allclose(pred, np.concatenate(
        [reg.predict(r) for r in unpadded_rows(X, lengths)]), **tol)

    cum = np.cumsum(X.sum(axis=2), axis=1)[..., None] / 3
    seq = SequenceRegressor(cell="rnn_tanh", **kw).fit(X, cum, lengths=lengths)
    pred = seq.predict(X, lengths=lengths)
    assert pred.shape == (40, 8, 1)
    for i, row in enumerate(unpadded_rows(X, lengths)):
        np.testing.assert_allclose(pred[i, :lengths[i]], seq.predict(row)[0], **tol)
        assert np.all(pred[i, lengths[i]:] == 0)            # documented: zeros past the end


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
@pytest.mark.parametrize("config", CONFIGS[1:], ids=CONFIG_IDS[1:])
def test_stacked_and_bidirectional_models_learn(config, cell, backend):
    L, bi = config
    X, y, lengths = padded_task(300, 5)
    Xt, yt, lt = padded_task(200, 6)
    m = SequenceClassifier(cell=cell, hidden_size=12, num_layers=L, bidirectional=bi,
                           epochs=8, random_state=0, backend=backend).fit(X, y, lengths=lengths)
    assert m.rnn_.num_layers == L and m.rnn_.bidirectional == bi
    assert m.history_["loss"][-1] < 0.6 * m.history_["loss"][0]
    assert m.score(Xt, yt, lengths=lt) >= 0.8
    assert m.score(Xt, yt) < m.score(Xt, yt, lengths=lt)    # the padding misleads


@pytest.mark.parametrize("config", [(2, True), (1, True), (2, False)],
                         ids=["L2-bi", "L1-bi", "L2"])
def test_compiled_model_fit_matches_the_twins(config):
    """float64: the same seed on both backends gives the same training to rounding."""
    L, bi = config
    X, y, lengths = padded_task(64, 7)
    kw = dict(cell="lstm", hidden_size=6, num_layers=L, bidirectional=bi, epochs=3,
              batch_size=16, random_state=0, dtype=np.float64)
    a = SequenceClassifier(backend="cython", **kw).fit(X, y, lengths=lengths)
    b = SequenceClassifier(backend="numpy", **kw).fit(X, y, lengths=lengths)
    np.testing.assert_allclose(a.history_["loss"], b.history_["loss"], rtol=1e-10)
    for k, p in params_of(a).items():
        np.testing.assert_allclose(p, params_of(b)[k], rtol=1e-8, atol=1e-10, err_msg=k)


def central_difference_check(model, loss, names, rng, eps=1e-6, n_entries=4):
    """The model's gradients (``rnn_``/``dense_`` grads after one ``loss()``) against
    central differences of ``loss`` at a few random entries of each named parameter."""
    loss()
    grads = {f"{k}{n}": g.copy() for k in ("rnn_", "dense_")
             for n, g in getattr(model, k).grads.items()}
    checked = 0
    for full in names:
        key, name = ("rnn_", full[4:]) if full.startswith("rnn_") else ("dense_", full[6:])
        p = getattr(model, key).params[name]
        for flat in rng.choice(p.size, size=min(n_entries, p.size), replace=False):
            idx = np.unravel_index(flat, p.shape)
            numeric = central_difference(loss, p, idx, eps)
            np.testing.assert_allclose(grads[full][idx], numeric, rtol=1e-6, atol=1e-9,
                                       err_msg=f"{full}{idx}")
            checked += abs(numeric) > 1e-6
    assert checked >= len(names)                # not a comparison of zeros


@pytest.mark.parametrize("backend", BACKENDS)
def test_model_loss_gradients_with_lengths_match_central_differences(backend):
    """float64: the gradient the training step uses (features at each row's last valid
    step, both directions, two layers; the many-to-many loss over the valid steps only)
    against central differences of the model's own loss."""
    X, y, lengths = padded_task(6, 8, T=5, F=2)
    kw = dict(hidden_size=3, num_layers=2, bidirectional=True, epochs=1, random_state=0,
              backend=backend, dtype=np.float64)
    rng = np.random.default_rng(9)
    names = ["rnn_Wx", "rnn_Wh_reverse", "rnn_b_l1", "rnn_Wx_l1_reverse", "rnn_Wh_l1",
             "dense_W", "dense_b"]
    clf = SequenceClassifier(cell="lstm", **kw).fit(X, y, lengths=lengths)
    clf.rnn_.train(), clf.dense_.train()
    encoded = np.searchsorted(clf.classes_, y)
    central_difference_check(clf, lambda: clf._loss_and_grads(X, encoded, lengths)["loss"],
                             names, rng)

    cum = np.cumsum(X.sum(axis=2), axis=1)[..., None]
    reg = SequenceRegressor(cell="gru", **kw).fit(X, cum, lengths=lengths)
    reg.rnn_.train(), reg.dense_.train()
    padded_nan = cum.copy()
    padded_nan[np.arange(5)[None, :] >= lengths[:, None]] = np.nan   # never read
    loss = lambda: reg._loss_and_grads(X, padded_nan, lengths)["loss"]  # noqa: E731
    value = loss()
    valid = np.arange(5)[None, :] < lengths[:, None]
    pred = reg.dense_(reg.rnn_(X, lengths=lengths)[0])
    np.testing.assert_allclose(value, np.mean((pred[valid] - cum[valid]) ** 2), rtol=1e-12)
    central_difference_check(reg, loss, names + ["rnn_b_hn_l1_reverse"], rng)


@pytest.mark.parametrize("backend", BACKENDS)
def test_seeded_fit_with_lengths_and_stacks_is_reproducible(backend):
    X, y, lengths = padded_task(100, 10)
    kw = dict(cell="gru", hidden_size=8, num_layers=2, bidirectional=True, epochs=3,
              backend=backend)
    a = SequenceClassifier(random_state=3, **kw).fit(X, y, lengths=lengths)
    b = SequenceClassifier(random_state=3, **kw).fit(X, y, lengths=lengths)
    assert a.history_ == b.history_
    for k, p in params_of(a).items():
        np.testing.assert_array_equal(p, params_of(b)[k], err_msg=k)
    np.testing.assert_array_equal(a.predict_proba(X, lengths=lengths),
                                  b.predict_proba(X, lengths=lengths))
    c = SequenceClassifier(random_state=4, **kw).fit(X, y, lengths=lengths)
    assert c.history_ != a.history_


@pytest.mark.parametrize("backend", BACKENDS)
def test_minibatches_take_their_rows_lengths(backend):
    """At a learning rate too small to move the weights, an epoch's loss is the mean of
    every row's own loss (read to its own length) whatever the minibatches: a minibatch
    given other rows' lengths would count other features."""
    X, y, lengths = padded_task(30, 11)
    kw = dict(cell="lstm", hidden_size=4, epochs=1, random_state=0, backend=backend,
              dtype=np.float64, learning_rate=1e-12)
    for batch_size in (7, 30):
        m = SequenceClassifier(batch_size=batch_size, **kw).fit(X, y, lengths=lengths)
        proba = m.predict_proba(X, lengths=lengths)          # (the weights as fitted)
        own = -np.log(proba[np.arange(30), y]).mean()
        np.testing.assert_allclose(m.history_["loss"][0], own, rtol=1e-8)
        wrong = -np.log(m.predict_proba(X)[np.arange(30), y]).mean()
        assert abs(wrong - own) > 1e-3                       # (the lengths matter here)


@pytest.mark.parametrize("cls", [SequenceClassifier, SequenceRegressor])
def test_save_load_and_pickle_keep_stacks_and_directions(cls, tmp_path):
    X, y, lengths = padded_task(50, 12)
    target = y if cls is SequenceClassifier else X[:, :, :1].cumsum(axis=1)
    m = cls(cell="gru", hidden_size=4, num_layers=2, bidirectional=True, epochs=2,
            random_state=0, backend="cython").fit(X, target, lengths=lengths)
    names = set(m.rnn_.params)
    assert {"Wx", "Wx_reverse", "Wx_l1", "Wh_l1_reverse", "b_hn_l1_reverse"} <= names
    want = m.predict(X, lengths=lengths)
    path = m.save(tmp_path / "stacked")
    with np.load(path) as f:
        import json
        assert json.loads(str(f["__rnnfast_config__"][()]))["format_version"] == 2
    for back in (cls.load(path), pickle.loads(pickle.dumps(m))):
        assert back.get_params() == m.get_params()
        assert (back.rnn_.num_layers, back.rnn_.bidirectional) == (2, True)
        assert set(back.rnn_.params) == names
        for k, p in params_of(m).items():
            np.testing.assert_array_equal(params_of(back)[k], p, err_msg=k)
            assert params_of(back)[k].dtype == p.dtype
        np.testing.assert_array_equal(back.predict(X, lengths=lengths), want)
    # a file missing one of the parameters is refused (rather than keeping random weights)
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files if k != "rnn_Wh_l1_reverse"}
    np.savez(tmp_path / "broken.npz", **arrays)
    with pytest.raises(ValueError, match=r"\['Wh_l1_reverse'\] of the gru layer are missing"):
        cls.load(tmp_path / "broken.npz")
    # one layer, one direction: still format 1 (readable by the previous rnnfast)
    one = cls(cell="gru", hidden_size=4, epochs=1, random_state=0).fit(X, target)
    with np.load(one.save(tmp_path / "one")) as f:
        assert json.loads(str(f["__rnnfast_config__"][()]))["format_version"] == 1


def test_clone_and_get_params_keep_the_new_hyperparameters():
    pytest.importorskip("sklearn", reason="scikit-learn is not installed")
    from sklearn.base import clone
    m = SequenceClassifier(num_layers=3, bidirectional=True, hidden_size=4)
    c = clone(m)
    assert c.get_params() == m.get_params()
    assert (c.num_layers, c.bidirectional) == (3, True)
    X, y, lengths = padded_task(40, 13)
    c.set_params(num_layers=2, epochs=1, backend="numpy").fit(X, y, lengths=lengths)
    assert c.rnn_.num_layers == 2 and not hasattr(m, "rnn_")
    assert "num_layers=3" in repr(m) and "bidirectional=True" in repr(m)


def test_scikit_learn_cross_validation_with_lengths():
    """What scikit-learn does with ``lengths`` (the module docstring): ``params=`` reaches
    fit only, sliced; with metadata routing, fit and score both get their folds' lengths."""
    sklearn = pytest.importorskip("sklearn", reason="scikit-learn is not installed")
    from sklearn.model_selection import KFold, cross_val_score
    if tuple(int(v) for v in sklearn.__version__.split(".")[:2]) < (1, 4):
        pytest.skip(f"cross_val_score(params=) is scikit-learn >= 1.4's; this is "
                    f"{sklearn.__version__}")

    X, y, lengths = padded_task(240, 14)
    m = SequenceClassifier(hidden_size=8, epochs=6, random_state=0, backend="cython")
    cv = KFold(3)
    folds = list(cv.split(X))

    def manual(score_lengths):
        return [SequenceClassifier(**m.get_params()).fit(X[tr], y[tr], lengths=lengths[tr])
                .score(X[te], y[te], lengths=lengths[te] if score_lengths else None)
                for tr, te in folds]

    with_lengths, fit_only = manual(True), manual(False)
    assert min(with_lengths) > 0.75 and max(fit_only) < min(with_lengths)
    plain = cross_val_score(m, X, y, cv=cv, params={"lengths": lengths})
    np.testing.assert_array_equal(plain, fit_only)          # score ran without lengths
    with sklearn.config_context(enable_metadata_routing=True):
        routed = SequenceClassifier(**m.get_params()).set_fit_request(
            lengths=True).set_score_request(lengths=True)
        scores = cross_val_score(routed, X, y, cv=cv, params={"lengths": lengths})
    np.testing.assert_array_equal(scores, with_lengths)


def test_bad_lengths_are_clear_errors_and_change_nothing():
    X, y, lengths = padded_task(30, 15)
    m = SequenceClassifier(hidden_size=4, epochs=1, random_state=0, backend="numpy")
    for bad, exc, match in [
            (lengths[:-1], ValueError, r"one entry per batch row, expected shape \(30,\), got "
                                       r"shape \(29,\) \(X has 30 sequences of 8 steps"),
            (np.where(lengths == lengths[0], 9, lengths), ValueError,
             "between 1 and seq_len=8, got 9"),
            (np.where(np.arange(30) == 3, 0, lengths), ValueError, "got 0"),
            (lengths.astype(float), TypeError, "lengths must be integers"),
            (lengths[:, None], ValueError, "lengths")]:
        with pytest.raises(exc, match=match):
            m.fit(X, y, lengths=bad)
        assert not hasattr(m, "rnn_")
    m.fit(X, y, lengths=lengths)
    r = SequenceRegressor(hidden_size=4, epochs=1, random_state=0, backend="numpy")
    r.fit(X, X[:, :, :1], lengths=lengths)
    for model, target in ((m, y), (r, X[:, :, :1])):
        before = params_of(model)
        for method, args, bad in (("predict", (X,), lengths[:5]),
                                  ("score", (X, target), lengths + 8),
                                  ("fit", (X, target), lengths[::2])):
            with pytest.raises(ValueError, match="lengths"):
                getattr(model, method)(*args, lengths=bad)
        for k, p in params_of(model).items():           # (a refused fit keeps the model)
            np.testing.assert_array_equal(p, before[k])
    # NaN only in the padding is fine with lengths (never read); at a valid step it is not
    Xn = X.copy()
    Xn[np.arange(8)[None, :] >= lengths[:, None]] = np.nan
    np.testing.assert_array_equal(m.predict_proba(Xn, lengths=lengths),
                                  m.predict_proba(X, lengths=lengths))
    with pytest.raises(ValueError, match="NaN or infinity"):
        m.predict(Xn)
    Xn[5, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"sequence\(s\) \[5\], at valid steps"):
        m.predict(Xn, lengths=lengths)
    yn = X[:, :, :1].copy()
    yn[0, lengths[0]:] = np.nan if lengths[0] < 8 else 0
    assert np.isfinite(r.score(X, yn, lengths=lengths))
    yn[0, 0] = np.nan
    with pytest.raises(ValueError, match="y contains NaN or infinity"):
        r.score(X, yn, lengths=lengths)
