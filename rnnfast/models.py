"""Trainable models with scikit-learn's conventions: ``SequenceClassifier`` and
``SequenceRegressor``.

A recurrent layer (any cell of ``rnnfast.cells``, ``num_layers`` deep, one or two
directions) reads ``X (n_sequences, seq_len, features)``; a ``rnnfast.nn.Dense`` head maps
its last layer's final hidden state (many-to-one; both directions concatenated) or, for a
regressor with ``y (n, seq_len, outputs)``, every step's output (many-to-many) to the
outputs; softmax cross-entropy or the mean squared error is minimised with an optimizer of
``rnnfast.optim`` over shuffled minibatches.

Padded sequences of different lengths: ``fit(X, y, lengths=...)``, ``predict(X,
lengths=...)``, ``predict_proba`` and ``score`` take one length per sequence (1 ..
seq_len, any order; the layers' ``lengths``). A row is then read up to its own end only:
its many-to-one features are the final states at its last valid step (the reverse
direction's, at its step 0, having started at the row's end: PyTorch's ``h_n`` of packed
sequences), so a padded row predicts what the row alone, unpadded, does; a many-to-many
regressor's loss and R^2 count the valid steps only, and its predictions past a row's end
are zero. Minibatches take their rows' lengths with them.

scikit-learn and ``lengths``: ``fit``/``predict``/``score`` called directly take it. In
scikit-learn's own loops (``cross_val_score``, ``GridSearchCV``), ``params={"lengths":
L}`` reaches ``fit`` only (sliced to the training rows), while the scorer calls ``score``
without it, which then reads every row to seq_len: silently another model. With metadata
routing on (``sklearn.set_config(enable_metadata_routing=True)`` and
``model.set_fit_request(lengths=True).set_score_request(lengths=True)``), scikit-learn
slices ``lengths`` for both ``fit`` and ``score``; tests/test_models.py checks that.

Every hyperparameter is an argument of ``__init__``, stored as given and validated by
``fit`` (scikit-learn's rules), so ``get_params``/``set_params``, ``sklearn.base.clone``,
``Pipeline``, ``cross_val_score`` and ``GridSearchCV`` work. scikit-learn is optional: when
it is installed the models are its ``BaseEstimator`` and ``ClassifierMixin`` /
``RegressorMixin``, otherwise a small base with the same ``get_params``/``set_params``.
Fitted models pickle, and ``save(path)`` / ``load(path)`` round-trip them exactly through
one ``.npz`` file (the weights, plus the configuration as JSON inside it).
"""
import json
import os
import sys
import zipfile

import numpy as np

from . import _checks, cells, layers, losses, optim
from .nn import Dense

try:                                    # scikit-learn is optional
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.exceptions import NotFittedError
    HAVE_SKLEARN = True
except ImportError:                     # pragma: no cover - exercised without scikit-learn
    HAVE_SKLEARN = False

try:
    from tqdm.auto import tqdm as _tqdm
except ImportError:                     # pragma: no cover - exercised without tqdm
    _tqdm = None

__all__ = ["SequenceClassifier", "SequenceRegressor", "NotFittedError", "HAVE_SKLEARN"]

OPTIMIZERS = ("adam", "sgd", "adagrad")
FORMAT = "rnnfast.models"
FORMAT_VERSION = 2                      # 2: stacked/bidirectional layers (their records)
_CONFIG_KEY = "__rnnfast_config__"
_PREDICT_CHUNK = 1024                   # rows per forward at predict time
_ALIGN = 16                             # parameters start at 64-byte offsets (float32)


# --------------------------------------------------------------------------- fallback base

class _EstimatorBase:
    """``get_params`` / ``set_params`` / ``repr`` as scikit-learn's ``BaseEstimator`` has
    them, for when scikit-learn is not installed."""

    @classmethod
    def _get_param_names(cls):
        import inspect
        sig = inspect.signature(cls.__init__)
        return sorted(p.name for p in sig.parameters.values()
                      if p.name != "self" and p.kind != p.VAR_KEYWORD)

    def get_params(self, deep=True):
        out = {}
        for name in self._get_param_names():
            value = getattr(self, name)
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                out.update((f"{name}__{k}", v) for k, v in value.get_params().items())
            out[name] = value
        return out

    def set_params(self, **params):
        valid = self._get_param_names()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(f"Invalid parameter {name!r} for estimator "
                                 f"{type(self).__name__}. Valid parameters are: {valid!r}.")
            setattr(self, name, value)
        return self

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params(deep=False).items())
        return f"{type(self).__name__}({args})"


class _ClassifierBase:
    _estimator_type = "classifier"


class _RegressorBase:
    _estimator_type = "regressor"


if not HAVE_SKLEARN:                    # pragma: no cover - exercised without scikit-learn
    BaseEstimator = _EstimatorBase
    ClassifierMixin = _ClassifierBase
    RegressorMixin = _RegressorBase

    class NotFittedError(ValueError, AttributeError):
        """The model was used before ``fit``."""


# --------------------------------------------------------------------------- helpers

def _random_generator(random_state):
    """A ``np.random.Generator`` from ``random_state``: None (fresh entropy), an int, a
    Generator (used as is) or a legacy ``RandomState`` (a seed drawn from it)."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(0, 2**31 - 1))
    if random_state is None or (isinstance(random_state, (int, np.integer))
                                and not isinstance(random_state, (bool, np.bool_))):
        return np.random.default_rng(random_state)
    raise TypeError(f"random_state must be None, an int, a np.random.Generator or a "
                    f"RandomState, got {type(random_state).__name__} {random_state!r}")


def _make_layer(kind, input_size, hidden_size, dtype, backend, seed, num_layers=1,
                bidirectional=False):
    spec = cells.get(kind)
    cls = getattr(layers, spec.layer)
    kwargs = dict(num_layers=num_layers, bidirectional=bidirectional, dtype=dtype,
                  backend=backend, seed=seed)
    if spec.family == "rnn":
        return cls(input_size, hidden_size, spec.nonlinearity, **kwargs)
    return cls(input_size, hidden_size, **kwargs)


def _valid_steps(lengths, seq_len):
    """``(n, seq_len)`` bools: True at each row's steps before its length."""
    return np.arange(seq_len)[None, :] < lengths[:, None]


def _share_storage(parts, dtype):
    """Put the parameters (and gradients) of ``parts`` (layers) into one flat array each,
    every entry of ``params``/``grads`` becoming a view of it (values kept), so that one
    optimizer update runs a few NumPy calls over all of them instead of a few per
    parameter. Returns ``(flat_params, flat_grads)``."""
    sizes = [(lay, k, p) for lay in parts for k, p in lay.params.items()]
    offsets, total = [], 0
    for _, _, p in sizes:
        offsets.append(total)
        total += -(-p.size // _ALIGN) * _ALIGN
    flat_p = np.zeros(total, dtype)
    flat_g = np.zeros(total, dtype)
    for (lay, k, p), off in zip(sizes, offsets):
        view = flat_p[off:off + p.size].reshape(p.shape)
        view[...] = p
        lay.params[k] = view
        lay.grads[k] = flat_g[off:off + p.size].reshape(p.shape)
    return flat_p, flat_g


def _layer_record(layer):
    """What rebuilds a fitted layer (pickle, save): its class, sizes and parameters."""
    if isinstance(layer, Dense):
        return {"type": "Dense", "sizes": [layer.in_features, layer.out_features],
                "dtype": layer.dtype.name, "params": dict(layer.params)}
    return {"type": layer._spec.kind, "sizes": [layer.input_size, layer.hidden_size],
            "num_layers": layer.num_layers, "bidirectional": layer.bidirectional,
            "dtype": layer.dtype.name, "backend": layer.backend,
            "params": dict(layer.params)}


def _layer_from_record(rec):
    dtype = np.dtype(rec["dtype"])
    if rec["type"] == "Dense":
        lay = Dense(*rec["sizes"], dtype=dtype)
    else:
        # (records of format 1 have no num_layers/bidirectional: one layer, one direction)
        lay = _make_layer(rec["type"], *rec["sizes"], dtype, rec["backend"], seed=0,
                          num_layers=rec.get("num_layers", 1),
                          bidirectional=rec.get("bidirectional", False))
    missing = sorted(set(lay.params) - set(rec["params"]))
    if missing:                         # (else they would keep their random initial values)
        raise ValueError(f"parameter(s) {missing} of the {rec['type']} layer are missing "
                         f"(it has {sorted(lay.params)})")
    for k, v in rec["params"].items():
        if k not in lay.params or lay.params[k].shape != np.shape(v):
            raise ValueError(f"parameter {k!r} of shape {np.shape(v)} does not fit a "
                             f"{rec['type']} layer of sizes {rec['sizes']}")
        lay.params[k][...] = v
    return lay.eval()


def _json_value(value):
    """A hyperparameter as JSON (numbers, strings, bools, None; a dtype by name)."""
    if isinstance(value, (type, np.dtype)) and value is not bool:
        try:
            return {"dtype": np.dtype(value).name}
        except TypeError:
            pass
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return {"unsaved": repr(value)}


def _from_json_value(value):
    if isinstance(value, dict):
        if "dtype" in value:
            return getattr(np, value["dtype"])
        return None                     # e.g. a Generator random_state: not restorable
    return value


# --------------------------------------------------------------------------- the models

class _SequenceModel(BaseEstimator):
    """What both models share: hyperparameters, validation, the training loop, predict's
    forward, pickling, save and load."""

    _history_keys = ("loss",)

    def __init__(self, cell="lstm", hidden_size=64, num_layers=1, bidirectional=False,
                 optimizer="adam", learning_rate=1e-2, epochs=30, batch_size=32,
                 clip_norm=None, random_state=None, verbose=0, dtype=np.float32,
                 backend="cython", check_finite=True):
        self.cell = cell
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.epochs = epochs
        self.batch_size = batch_size
        self.clip_norm = clip_norm
        self.random_state = random_state
        self.verbose = verbose
        self.dtype = dtype
        self.backend = backend
        self.check_finite = check_finite

    if HAVE_SKLEARN and hasattr(BaseEstimator, "__sklearn_tags__"):
        def __sklearn_tags__(self):
            tags = super().__sklearn_tags__()
            tags.input_tags.three_d_array = True
            return tags

    # ------------------------------------------------------------ validation
    def _checked_hyperparameters(self):
        """The hyperparameters, validated (scikit-learn validates in fit, not __init__)."""
        name = type(self).__name__
        if self.cell not in cells.KINDS:
            raise ValueError(f"{name}: cell must be one of {cells.KINDS}, got {self.cell!r}")
        spec = cells.get(self.cell)
        hidden = _checks.check_size(self.hidden_size, "hidden_size")
        num_layers = _checks.check_size(self.num_layers, "num_layers")
        if not isinstance(self.bidirectional, (bool, np.bool_)):
            raise TypeError(f"{name}: bidirectional must be True or False, got "
                            f"{self.bidirectional!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"{name}: optimizer must be one of {OPTIMIZERS}, got "
                             f"{self.optimizer!r}")
        lr = _checks.check_positive(self.learning_rate, "learning_rate")
        epochs = _checks.check_size(self.epochs, "epochs")
        batch = _checks.check_size(self.batch_size, "batch_size")
        clip = (None if self.clip_norm is None
                else _checks.check_positive(self.clip_norm, "clip_norm"))
        if isinstance(self.verbose, bool) or not isinstance(self.verbose, (int, np.integer)):
            raise TypeError(f"{name}: verbose must be an int, got {self.verbose!r}")
        dtype = _checks.check_dtype(self.dtype)
        backend = _checks.check_compiled(spec, self.backend)
        if not isinstance(self.check_finite, (bool, np.bool_)):
            raise TypeError(f"{name}: check_finite must be True or False, got "
                            f"{self.check_finite!r}")
        return dict(spec=spec, hidden=hidden, num_layers=num_layers,
                    bidirectional=bool(self.bidirectional), lr=lr, epochs=epochs, batch=batch,
                    clip=clip, dtype=dtype, backend=backend, verbose=int(self.verbose))

    def _check_X(self, X, dtype, fitting=False, lengths=None):
        """``(X, lengths)`` checked: X 3-D, of the fitted features, as ``dtype``, finite
        (``check_finite``; with lengths at the valid steps only, the padding being read by
        no layer), lengths one per sequence or None."""
        X = _checks.as_numeric_array(X, "X")
        if X.ndim != 3:
            hint = " (one sequence: X[None])" if X.ndim == 2 else ""
            raise ValueError(f"X must be 3-D (n_sequences, seq_len, features), got shape "
                             f"{X.shape}{hint}")
        if min(X.shape) < 1:
            raise ValueError(f"X must have at least one sequence, step and feature, got shape "
                             f"{X.shape}")
        if not fitting:
            self._check_fitted()
            if X.shape[2] != self.n_features_in_:
                raise ValueError(f"X has {X.shape[2]} features per step, but "
                                 f"{type(self).__name__} was fitted with "
                                 f"{self.n_features_in_} (n_features_in_)")
        X = np.ascontiguousarray(X, dtype=dtype)
        lengths = self._check_lengths(lengths, X)
        if self.check_finite is False or self.check_finite is np.False_:
            return X, lengths           # the user's choice: NaN/Inf propagate as in layers
        finite = np.isfinite(X)
        if not finite.all():
            if lengths is not None:     # the padding is never read: it may hold anything
                finite |= ~_valid_steps(lengths, X.shape[1])[:, :, None]
            if not finite.all():
                bad = np.flatnonzero(~finite.all(axis=(1, 2)))
                raise ValueError(f"X contains NaN or infinity (in sequence(s) "
                                 f"{bad[:5].tolist()}{'...' if bad.size > 5 else ''}"
                                 f"{', at valid steps' if lengths is not None else ''}); "
                                 f"check_finite=False skips this check")
        return X, lengths

    def _check_fitted(self):
        if not hasattr(self, "rnn_"):
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet: "
                                 f"call fit(X, y) first")

    @staticmethod
    def _check_length(y, X, what):
        if len(y) != X.shape[0]:
            raise ValueError(f"y has {len(y)} {what} but X has {X.shape[0]} sequences: "
                             f"they must be the same")

    @staticmethod
    def _check_lengths(lengths, X):
        """None, or one length per sequence of ``X`` (the layers' check, on the whole X
        before anything runs, its message saying what X is)."""
        try:
            return _checks.check_lengths(lengths, X.shape[0], X.shape[1])
        except (TypeError, ValueError) as e:
            raise type(e)(f"{e} (X has {X.shape[0]} sequences of {X.shape[1]} steps: "
                          f"lengths has one entry per sequence)") from None

    # ------------------------------------------------------------ training
    def _build(self, hp, n_features, n_outputs, rng):
        seeds = rng.integers(0, 2**63 - 1, size=2)
        self.rnn_ = _make_layer(hp["spec"].kind, n_features, hp["hidden"], hp["dtype"],
                                hp["backend"], int(seeds[0]), hp["num_layers"],
                                hp["bidirectional"])
        width = self.rnn_.num_directions * hp["hidden"]     # the directions concatenated
        self.dense_ = Dense(width, n_outputs, dtype=hp["dtype"], seed=int(seeds[1]))

    def _make_optimizer(self, hp):
        flat = _share_storage([self.rnn_, self.dense_], hp["dtype"])
        pairs = {"parameters": flat}
        if self.optimizer == "adam":
            return optim.Adam(pairs, lr=hp["lr"])
        if self.optimizer == "adagrad":
            return optim.AdaGrad(pairs, lr=hp["lr"])
        return optim.SGD(pairs, lr=hp["lr"])

    def _last_hidden(self, state):
        """The many-to-one features ``(batch, num_directions * hidden)``: the last layer's
        final hidden state, forward then reverse direction (PyTorch users' ``h_n[-2:]``
        concatenated). With lengths, the forward one is ``out[b, length - 1, :H]`` and the
        reverse one ``out[b, 0, H:]`` (tests/test_models.py checks it)."""
        h = state[0] if self.rnn_._spec.has_cell_state else state
        if h.ndim == 2:                 # one layer, one direction: (batch, hidden)
            return h
        nd = self.rnn_.num_directions
        return h[-1] if nd == 1 else np.concatenate(h[-nd:], axis=1)

    def _state_gradient(self, d):
        """The gradient of the final states for the gradient ``d`` of the features: ``d``
        in the last layer's slots, zero elsewhere (and none for the LSTM's c)."""
        rnn = self.rnn_
        if rnn.num_layers == 1 and rnn.num_directions == 1:
            dh = d
        else:
            nd, H = rnn.num_directions, rnn.hidden_size
            dh = np.zeros((rnn.num_layers * nd, d.shape[0], H), d.dtype)
            dh[-nd:] = d.reshape(d.shape[0], nd, H).transpose(1, 0, 2)
        return (dh, None) if rnn._spec.has_cell_state else dh

    def _train_step(self, xb, yb, lb, opt, clip):
        """One minibatch: the loss and its gradients, then an optimizer step."""
        stats = self._loss_and_grads(xb, yb, lb)
        if clip is not None:
            optim.clip_grad_norm(opt, clip)
        opt.step()
        return stats

    def _fit(self, X, y, hp, n_outputs, lengths=None):
        """The training loop over shuffled minibatches; ``y`` already encoded, ``lengths``
        checked (or None)."""
        rng = _random_generator(self.random_state)
        self._build(hp, X.shape[2], n_outputs, rng)
        opt = self._make_optimizer(hp)
        n, batch = X.shape[0], hp["batch"]
        n_batches = -(-n // batch)
        history = {k: [] for k in self._history_keys}
        for epoch in range(hp["epochs"]):
            perm = rng.permutation(n)
            bar = self._progress_bar(hp, epoch, n_batches)
            total = {k: 0.0 for k in self._history_keys}
            seen = 0
            for start in range(0, n, batch):
                idx = perm[start:start + batch]
                stats = self._train_step(X[idx], y[idx], None if lengths is None
                                         else lengths[idx], opt, hp["clip"])
                seen += len(idx)
                for k, v in stats.items():
                    total[k] += v * len(idx)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix({k: f"{v / seen:.4f}" for k, v in total.items()},
                                    refresh=False)
            for k in self._history_keys:
                history[k].append(total[k] / n)
            self._report(bar, hp, epoch, history)
        self.rnn_.eval()
        self.dense_.eval()
        self.n_features_in_ = X.shape[2]
        self.history_ = history
        return self

    def _progress_bar(self, hp, epoch, n_batches):
        if hp["verbose"] <= 0 or _tqdm is None:
            return None
        return _tqdm(total=n_batches, desc=f"epoch {epoch + 1}/{hp['epochs']}",
                     unit="batch", leave=True)

    def _report(self, bar, hp, epoch, history):
        if hp["verbose"] <= 0:
            return
        last = {k: f"{v[-1]:.4f}" for k, v in history.items()}
        if bar is not None:
            bar.set_postfix(last)
            bar.close()
        else:                           # no tqdm: one line per epoch
            print(f"epoch {epoch + 1}/{hp['epochs']}: "
                  + ", ".join(f"{k} {v}" for k, v in last.items()), file=sys.stderr)

    def _forward_train(self, xb, lb=None):
        out, state = self.rnn_(xb, lengths=lb)
        return out, self._last_hidden(state)

    def _predict_raw(self, X, lengths=None):
        """The head's outputs for every sequence (eval mode, in chunks; ``lengths``
        checked, or None)."""
        res = []
        for s in range(0, X.shape[0], _PREDICT_CHUNK):
            chunk = slice(s, s + _PREDICT_CHUNK)
            out, state = self.rnn_(X[chunk], lengths=None if lengths is None
                                   else lengths[chunk])
            res.append(self.dense_(self._head_input(out, state)))
        return np.concatenate(res, axis=0)

    def _head_input(self, out, state):
        return self._last_hidden(state)

    # ------------------------------------------------------------ pickle, save, load
    def __getstate__(self):
        state = dict(self.__dict__)
        for key in ("rnn_", "dense_"):
            if key in state:
                state[key] = _layer_record(state[key])
        return state

    def __setstate__(self, state):
        state = dict(state)
        for key in ("rnn_", "dense_"):
            if key in state:
                state[key] = _layer_from_record(state[key])
        self.__dict__.update(state)

    def _fitted_config(self):
        return {}

    def _fitted_arrays(self):
        return {}

    def save(self, path):
        """Write the fitted model to ``path`` (``.npz``, added if missing): the weights as
        arrays, the hyperparameters and fitted attributes as JSON inside the file. Returns
        the path written. ``load`` gives the model back exactly (same predictions, bit for
        bit, on the same backend)."""
        self._check_fitted()
        from . import __version__
        params = {k: _json_value(v) for k, v in self.get_params(deep=False).items()}
        # a one-layer, one-direction model stays readable by format-1 readers
        rnn = self.rnn_
        version = 1 if rnn.num_layers == 1 and not rnn.bidirectional else FORMAT_VERSION
        config = {"format": FORMAT, "format_version": version,
                  "class": type(self).__name__, "rnnfast_version": __version__,
                  "params": params, "n_features_in_": int(self.n_features_in_),
                  "history_": self.history_, **self._fitted_config(),
                  "layers": {}}
        arrays = {}
        for key in ("rnn_", "dense_"):
            rec = _layer_record(getattr(self, key))
            for name, a in rec.pop("params").items():
                arrays[f"{key}{name}"] = np.asarray(a)
            config["layers"][key] = rec
        arrays.update(self._fitted_arrays())
        if isinstance(path, (str, os.PathLike)):
            path = os.fspath(path)
            if not path.endswith(".npz"):
                path += ".npz"
        np.savez(path, **{_CONFIG_KEY: np.array(json.dumps(config))}, **arrays)
        return path

    @classmethod
    def load(cls, path):
        """The model saved at ``path`` by ``save``; a file that is not an rnnfast model (or
        holds the other kind of model) is a ValueError naming it."""
        try:
            data = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise ValueError(f"{path!r} is not an rnnfast model file (an .npz written by "
                             f"{cls.__name__}.save): {e}") from None
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ValueError(f"{path!r} is not an rnnfast model file (an .npz written by "
                             f"{cls.__name__}.save): it holds a single array")
        with data:
            if _CONFIG_KEY not in data.files:
                raise ValueError(f"{path!r} is not an rnnfast model file: it has no "
                                 f"{_CONFIG_KEY!r} entry (it holds {sorted(data.files)[:5]})")
            try:
                config = json.loads(str(data[_CONFIG_KEY][()]))
                ok = isinstance(config, dict) and config.get("format") == FORMAT
            except (ValueError, TypeError):
                ok = False
            if not ok:
                raise ValueError(f"{path!r} is not an rnnfast model file: its configuration "
                                 f"is not one that {cls.__name__}.save writes")
            if config.get("format_version", 0) > FORMAT_VERSION:
                raise ValueError(f"{path!r} was written by a newer rnnfast (model format "
                                 f"{config['format_version']}); this one reads up to "
                                 f"{FORMAT_VERSION}")
            if config.get("class") != cls.__name__:
                raise ValueError(f"{path!r} holds a {config.get('class')}, not a "
                                 f"{cls.__name__}: load it with {config.get('class')}.load")
            arrays = {k: data[k] for k in data.files if k != _CONFIG_KEY}
        model = cls(**{k: _from_json_value(v) for k, v in config["params"].items()})
        for key, rec in config["layers"].items():
            rec = dict(rec, params={k[len(key):]: a for k, a in arrays.items()
                                    if k.startswith(key)})
            setattr(model, key, _layer_from_record(rec))
        model.n_features_in_ = config["n_features_in_"]
        model.history_ = config["history_"]
        model._restore_fitted(config, arrays)
        return model

    def _restore_fitted(self, config, arrays):
        pass


class SequenceClassifier(ClassifierMixin, _SequenceModel):
    """Many-to-one sequence classification: the last hidden state of a recurrent layer ->
    ``Dense`` -> softmax, trained with cross-entropy.

    ``SequenceClassifier(cell="lstm", hidden_size=64, num_layers=1, bidirectional=False,
    optimizer="adam", learning_rate=1e-2, epochs=30, batch_size=32, clip_norm=None,
    random_state=None, verbose=0, dtype=np.float32, backend="cython", check_finite=True)``

    - ``cell``: a kind of ``rnnfast.cells`` (``"rnn_tanh"``, ``"rnn_relu"``,
      ``"rnn_sigmoid"``, ``"lstm"``, ``"gru"``); ``num_layers``: stacked layers (each
      reads the one below's outputs); ``bidirectional``: both directions, the head reading
      the last layer's final forward and reverse hidden states side by side (``Dense`` of
      ``2 * hidden_size`` inputs).
    - ``optimizer``: ``"adam"``, ``"sgd"`` or ``"adagrad"`` (``rnnfast.optim``'s defaults
      but ``lr=learning_rate``); ``clip_norm``: clip the global gradient norm per step.
    - ``random_state``: the initial weights and the shuffling (a seed makes ``fit``
      reproducible to the bit on one machine and backend).
    - ``verbose > 0``: a tqdm progress bar per epoch with the running loss and accuracy (a
      line per epoch without tqdm).
    - ``check_finite``: ``fit``, ``predict``, ``predict_proba`` and ``score`` refuse an ``X``
      holding NaN or infinity (a ValueError naming the sequences); ``False`` skips that
      pass over ``X``, and NaN/Inf then propagate as in the layers (a NaN loss and
      weights).

    ``fit(X, y, lengths=None)``: ``X (n_sequences, seq_len, features)`` (finite, see
    ``check_finite``; with lengths, the padding past each row's end is never read and may
    hold anything), ``y`` ``n`` labels of any type (``classes_ =
    np.unique(y)``), ``lengths`` None or one length per sequence (each row read up to its
    end: see the module docstring). After it: ``classes_``, ``n_features_in_``,
    ``history_`` (``{"loss": [...], "accuracy": [...]}``, per epoch, over its minibatches),
    ``rnn_`` and ``dense_`` (the fitted layers). ``predict``, ``predict_proba`` and
    ``score`` take ``lengths`` too.
    """

    _history_keys = ("loss", "accuracy")

    def fit(self, X, y, lengths=None):
        """Train on ``X`` and labels ``y`` (``lengths``: one per sequence, or None)."""
        hp = self._checked_hyperparameters()
        X, lengths = self._check_X(X, hp["dtype"], True, lengths)
        y = np.asarray(y)
        if y.ndim != 1:
            raise ValueError(f"y must be 1-D, one label per sequence, got shape {y.shape}")
        self._check_length(y, X, "labels")
        try:
            classes, encoded = np.unique(y, return_inverse=True)
        except TypeError as e:
            raise TypeError(f"the labels in y must be comparable with each other (sorted by "
                            f"np.unique): {e}") from None
        if classes.size < 2:
            raise ValueError(f"{type(self).__name__} needs at least 2 classes in y, got "
                             f"{classes.size} ({classes.tolist()})")
        self.classes_ = classes
        return self._fit(X, encoded.reshape(-1), hp, classes.size, lengths)

    def _loss_and_grads(self, xb, yb, lb):
        """The mean cross-entropy of a minibatch (and its accuracy); the gradients of every
        parameter into the layers' ``grads``."""
        out, h = self._forward_train(xb, lb)
        dense = self.dense_
        # the head, the loss and their gradients in one call of the layer's backend (yb:
        # class indices checked once in fit, np.unique's, so unchecked there)
        done = self.rnn_._kernels_module.dense_cross_entropy(
            h, dense.params["W"], dense.params["b"], yb, dense.grads["W"], dense.grads["b"])
        if done is not None:
            loss, correct, dh = done
        else:                           # (arrays it cannot take as they are: Dense checks)
            logits = dense(h)
            loss, dlogits = losses._cross_entropy_indices(logits, yb)
            dh = dense.backward(dlogits)
            correct = np.count_nonzero(logits.argmax(axis=1) == yb)
        # (the data needs no gradient: its products are skipped)
        self.rnn_.backward(None, self._state_gradient(dh), input_grad=False)
        # (count / n is np.mean's value of the bools, bit for bit, without its overhead)
        return {"loss": loss, "accuracy": correct / len(yb)}

    def predict_proba(self, X, lengths=None):
        """Class probabilities, ``(n, n_classes)`` in ``classes_`` order."""
        X, lengths = self._check_X(X, self.rnn_.dtype if hasattr(self, "rnn_")
                                   else np.float32, False, lengths)
        return losses.softmax(self._predict_raw(X, lengths))

    def predict(self, X, lengths=None):
        """The most probable class of each sequence (labels from ``classes_``)."""
        self._check_fitted()
        return self.classes_[np.argmax(self.predict_proba(X, lengths), axis=1)]

    def score(self, X, y, sample_weight=None, lengths=None):
        """The accuracy of ``predict(X, lengths)`` against ``y`` (weighted by
        ``sample_weight``); labels not seen in ``fit`` are a ValueError."""
        self._check_fitted()
        y = np.asarray(y)
        if y.ndim != 1:
            raise ValueError(f"y must be 1-D, one label per sequence, got shape {y.shape}")
        self._check_length(y, _checks.as_numeric_array(X, "X"), "labels")
        known = np.isin(y, self.classes_)
        if not known.all():
            unknown = np.unique(y[~known])
            raise ValueError(f"y contains label(s) not seen in fit: {unknown[:5].tolist()} "
                             f"(classes_ are {self.classes_.tolist()[:20]})")
        correct = self.predict(X, lengths) == y
        return float(np.average(correct, weights=sample_weight))

    def _fitted_config(self):
        if self.classes_.dtype == object:
            values = self.classes_.tolist()
            if not all(isinstance(v, (str, int, float, bool)) for v in values):
                raise TypeError("save: classes_ of Python objects other than str, int, float "
                                "and bool cannot be written without pickle")
            return {"classes_object": values}
        return {}

    def _fitted_arrays(self):
        return {} if self.classes_.dtype == object else {"classes_": self.classes_}

    def _restore_fitted(self, config, arrays):
        if "classes_object" in config:
            self.classes_ = np.array(config["classes_object"], dtype=object)
        else:
            self.classes_ = arrays["classes_"]


class SequenceRegressor(RegressorMixin, _SequenceModel):
    """Sequence regression with the mean squared error: ``y (n,)`` or ``(n, outputs)``
    from the last layer's final hidden state (many-to-one), or ``y (n, seq_len, outputs)``
    from every step's output (many-to-many; ``X``'s ``seq_len``). Hyperparameters as
    ``SequenceClassifier``'s; ``score`` is R^2 (averaged over outputs, and over steps for a
    many-to-many ``y``); ``history_`` is ``{"loss": [...]}``.

    With ``lengths``, a many-to-many ``y``'s entries past a row's end are ignored (the loss
    is the mean over the valid steps; they may hold anything, NaN included), ``predict``
    gives zeros there and ``score`` counts the valid steps only."""

    def fit(self, X, y, lengths=None):
        """Train on ``X`` and targets ``y`` (``lengths``: one per sequence, or None)."""
        hp = self._checked_hyperparameters()
        X, lengths = self._check_X(X, hp["dtype"], True, lengths)
        y = self._check_y(y, X, lengths=lengths)
        self.y_ndim_ = y.ndim
        y3 = y.reshape(y.shape[0], -1) if y.ndim == 1 else y
        self.n_outputs_ = y3.shape[-1]
        return self._fit(X, y3, hp, self.n_outputs_, lengths)

    def _check_y(self, y, X, dtype=None, lengths=None):
        y = _checks.as_numeric_array(y, "y")
        self._check_length(y, X, "targets")
        if y.ndim == 3 and y.shape[1] != X.shape[1]:
            raise ValueError(f"a many-to-many y (n, seq_len, outputs) must have X's seq_len "
                             f"{X.shape[1]}, got shape {y.shape}")
        if y.ndim not in (1, 2, 3) or y.size == 0:
            raise ValueError(f"y must be (n,), (n, outputs) or (n, seq_len, outputs), got "
                             f"shape {y.shape}")
        y = np.asarray(y, dtype=X.dtype if dtype is None else dtype)
        valid = y if y.ndim < 3 or lengths is None else y[_valid_steps(lengths, y.shape[1])]
        if not np.isfinite(valid).all():
            raise ValueError("y contains NaN or infinity"
                             + (" (at valid steps)" if valid is not y else ""))
        return y

    def _many_to_many(self):
        return self.y_ndim_ == 3

    def _head_input(self, out, state):
        return out if self._many_to_many() else self._last_hidden(state)

    def _loss_and_grads(self, xb, yb, lb):
        """The minibatch's mean squared error (over the valid steps with lengths); the
        gradients of every parameter into the layers' ``grads``."""
        out, h = self._forward_train(xb, lb)
        pred = self.dense_(out if self._many_to_many() else h)
        if self._many_to_many() and lb is not None:
            valid = _valid_steps(lb, pred.shape[1])
            loss, dvalid = losses.mse(pred[valid], yb[valid])
            dpred = np.zeros_like(pred)
            dpred[valid] = dvalid
        else:
            loss, dpred = losses.mse(pred, yb)
        d = self.dense_.backward(dpred)
        if self._many_to_many():
            self.rnn_.backward(d, input_grad=False)
        else:
            self.rnn_.backward(None, self._state_gradient(d), input_grad=False)
        return {"loss": loss}

    def predict(self, X, lengths=None):
        """Predictions shaped as ``y`` was in ``fit``: ``(n,)``, ``(n, outputs)`` or
        ``(n, seq_len, outputs)`` (zeros past each row's end with ``lengths``)."""
        X, lengths = self._check_X(X, self.rnn_.dtype if hasattr(self, "rnn_")
                                   else np.float32, False, lengths)
        pred = self._predict_raw(X, lengths)
        if self._many_to_many() and lengths is not None:
            pred[~_valid_steps(lengths, pred.shape[1])] = 0
        return pred[:, 0] if self.y_ndim_ == 1 else pred

    def score(self, X, y, sample_weight=None, lengths=None):
        """R^2 (scikit-learn's ``r2_score``, outputs averaged uniformly; a many-to-many
        ``y``'s steps count as samples, the valid ones only with ``lengths``)."""
        self._check_fitted()
        Xc, lengths = self._check_X(X, self.rnn_.dtype, False, lengths)
        y = self._check_y(y, Xc, np.float64, lengths)
        pred = self.predict(Xc, lengths).astype(np.float64)
        if y.shape != pred.shape:
            raise ValueError(f"y must have the shape of the predictions {pred.shape}, got "
                             f"shape {y.shape}")
        w = None if sample_weight is None else np.asarray(sample_weight, np.float64)
        if self._many_to_many():
            if lengths is None:
                y2, p2 = y.reshape(-1, y.shape[-1]), pred.reshape(-1, y.shape[-1])
                w = None if w is None else np.repeat(w, y.shape[1])
            else:                       # the valid steps, row after row
                valid = _valid_steps(lengths, y.shape[1])
                y2, p2 = y[valid], pred[valid]
                w = None if w is None else np.repeat(w, lengths)
        else:
            y2 = y.reshape(y.shape[0], -1)
            p2 = pred.reshape(y2.shape)
        mean = np.average(y2, axis=0, weights=w)
        ww = np.ones(y2.shape[0]) if w is None else w
        ss_res = (ww[:, None] * (y2 - p2) ** 2).sum(axis=0)
        ss_tot = (ww[:, None] * (y2 - mean) ** 2).sum(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            r2 = np.where(ss_tot > 0, 1 - ss_res / ss_tot, np.where(ss_res == 0, 1.0, 0.0))
        return float(np.mean(r2))

    def _fitted_config(self):
        return {"y_ndim_": int(self.y_ndim_), "n_outputs_": int(self.n_outputs_)}

    def _restore_fitted(self, config, arrays):
        self.y_ndim_ = config["y_ndim_"]
        self.n_outputs_ = config["n_outputs_"]
