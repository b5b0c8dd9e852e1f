"""The cell registry: one :class:`CellSpec` per kind of recurrent cell.

Everything else reads it: ``_checks`` (parameter shapes, gate counts, nonlinearities),
``layers`` (which parameters a layer holds, how they are initialised), ``functional`` and
``reference`` (which kernels exist, which backend runs them), ``interop`` (the torch and
Keras mappings), the benchmark and the tests. No other Python file spells a gate count.

==============  ======  =====  ==========  ======================  ==============
kind            family  G      states      parameters              gate order
==============  ======  =====  ==========  ======================  ==============
``rnn_tanh``    rnn     1      h           Wx, Wh, b               (a)
``rnn_relu``    rnn     1      h           Wx, Wh, b               (a)
``rnn_sigmoid`` rnn     1      h           Wx, Wh, b               (a)
``lstm``        lstm    4      h, c        Wx, Wh, b               i, f, g, o
``gru``         gru     3      h           Wx, Wh, b, b_hn         r, z, n
==============  ======  =====  ==========  ======================  ==============

Shapes, right-multiplying (DESIGN.md, pinned): ``Wx (input_size, G*hidden)``,
``Wh (hidden, G*hidden)``, ``b (G*hidden,)``, and for the GRU ``b_hn (hidden,)``.

The torch mapping (``torch.nn.RNN/LSTM/GRU``, layer 0, forward direction):
``Wx = weight_ih_l0.T``, ``Wh = weight_hh_l0.T``; of the two torch biases, the first
``summed_bias_gates`` gates are summed into ``b`` and the rest of ``bias_hh`` is ``b_hn``:

- RNN, LSTM: ``b = bias_ih + bias_hh`` (all G gates summed);
- GRU: ``b[:2H] = bias_ih[:2H] + bias_hh[:2H]``, ``b[2H:] = bias_ih[2H:]``,
  ``b_hn = bias_hh[2H:]`` (the reset gate multiplies ``h @ Wh_n + b_hn``, so that bias
  cannot be folded into ``b``).

Back to torch, ``bias_ih = b`` and ``bias_hh`` is zero in the summed gates and ``b_hn``
elsewhere (a round trip rnnfast -> torch -> rnnfast is exact). Gradients map the same way:
``grads["b"]`` is ``bias_ih.grad``, and in the summed gates also ``bias_hh.grad``;
``grads["b_hn"]`` is ``bias_hh.grad[2H:]``. torch's gate orders are rnnfast's.

``compiled`` says whether the compiled core (``backend="cython"``) has the kind's kernels;
the NumPy twin (``backend="numpy"``) has every kind. When a compiled kernel lands, flipping
its flag switches on the layers' cython backend and the compiled-vs-twin tests.
"""
from dataclasses import dataclass

import numpy as np

__all__ = ["CellSpec", "KINDS", "FAMILIES", "NONLINEARITIES", "get", "for_layer", "specs"]


@dataclass(frozen=True)
class CellSpec:
    """What one kind of cell is: gates, states, parameters, mappings to other libraries."""

    kind: str                       # "rnn_tanh", ..., "gru"
    family: str                     # "rnn" | "lstm" | "gru": layer, kernel names, workspace
    layer: str                      # the rnnfast layer class: "RNN", "LSTM", "GRU"
    nonlinearity: str | None        # the RNN's activation; None for the gated cells
    gate_names: tuple[str, ...]     # the gate blocks of Wx/Wh/b, in order
    states: tuple[str, ...]         # ("h",) or ("h", "c")
    params: tuple[str, ...]         # ("Wx", "Wh", "b") (+ ("b_hn",))
    summed_bias_gates: int          # leading gates of b that are bias_ih + bias_hh
    compiled: bool                  # the compiled core has this kind's kernels
    torch_class: str | None         # torch.nn class name, None if torch has no such cell
    keras_kind: str | None          # from_keras_weights' kind

    @property
    def has_cell_state(self) -> bool:
        """Whether the cell carries a cell state c beside h (the LSTM's ``(h, c)``)."""
        return len(self.states) == 2
    keras_gate_order: tuple[int, ...] | None    # rnnfast gate j is Keras' gate order[j]

    @property
    def gates(self):
        """G: the number of gate blocks in Wx, Wh and b."""
        return len(self.gate_names)

    # ------------------------------------------------------------------ parameters
    def param_shapes(self, input_size, hidden):
        """``{name: shape}`` for every parameter, in ``params`` order."""
        gh = self.gates * hidden
        shapes = {"Wx": (input_size, gh), "Wh": (hidden, gh), "b": (gh,), "b_hn": (hidden,)}
        return {name: shapes[name] for name in self.params}

    @staticmethod
    def suffix(layer, direction):
        """The parameter-name suffix of a layer and direction, as PyTorch's: "" for layer 0
        forward, "_l1", "_reverse", "_l1_reverse", ... (``Wx_l1_reverse``)."""
        return (f"_l{layer}" if layer else "") + ("_reverse" if direction else "")

    def summed_bias(self, hidden):
        """The slice of ``b`` that is the sum of torch's two biases (``bias_ih + bias_hh``);
        the rest of ``b`` is ``bias_ih`` alone."""
        return slice(0, self.summed_bias_gates * hidden)

    def gate(self, name, hidden):
        """The column slice of gate ``name`` in Wx, Wh and b."""
        k = self.gate_names.index(name)
        return slice(k * hidden, (k + 1) * hidden)

    def biases_from_torch(self, bias_ih, bias_hh):
        """rnnfast's bias parameters (``b``, and ``b_hn`` for the GRU) from torch's two
        ``(G*hidden,)`` biases, computed in their dtype."""
        if self.summed_bias_gates == self.gates:       # all of it: one sum
            return {"b": np.add(bias_ih, bias_hh)}
        hidden = bias_ih.shape[0] // self.gates
        s = self.summed_bias(hidden)
        b = np.array(bias_ih, copy=True)
        b[s] += bias_hh[s]
        out = {"b": b}
        if "b_hn" in self.params:
            out["b_hn"] = np.array(bias_hh[s.stop:], copy=True)
        return out

    def biases_to_torch(self, params):
        """``(bias_ih, bias_hh)`` giving back ``params``' biases exactly under
        :meth:`biases_from_torch`: ``bias_ih = b``; ``bias_hh`` is zero in the summed gates,
        ``b_hn`` in the others."""
        b = np.asarray(params["b"])
        hidden = b.shape[0] // self.gates
        s = self.summed_bias(hidden)
        bias_hh = np.zeros_like(b)
        if "b_hn" in self.params:
            bias_hh[s.stop:] = params["b_hn"]
        return np.array(b, copy=True), bias_hh

    def params_from_torch(self, weight_ih, weight_hh, bias_ih=None, bias_hh=None):
        """rnnfast's parameters from torch's layer-0 arrays (NumPy arrays; a missing bias,
        ``bias=False``, is zeros), computed in their dtype."""
        weight_ih, weight_hh = np.asarray(weight_ih), np.asarray(weight_hh)
        zeros = np.zeros(weight_hh.shape[0], weight_hh.dtype)
        bias_ih = zeros if bias_ih is None else np.asarray(bias_ih)
        bias_hh = zeros if bias_hh is None else np.asarray(bias_hh)
        return {"Wx": weight_ih.T.copy(), "Wh": weight_hh.T.copy(),
                **self.biases_from_torch(bias_ih, bias_hh)}

    def params_to_torch(self, params):
        """torch's ``{weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0}`` (NumPy arrays)
        for rnnfast's ``params``; :meth:`params_from_torch` of them gives ``params`` back."""
        bias_ih, bias_hh = self.biases_to_torch(params)
        return {"weight_ih_l0": np.asarray(params["Wx"]).T.copy(),
                "weight_hh_l0": np.asarray(params["Wh"]).T.copy(),
                "bias_ih_l0": bias_ih, "bias_hh_l0": bias_hh}

    def grads_from_torch(self, grad_weight_ih, grad_weight_hh, grad_bias_ih=None,
                         grad_bias_hh=None):
        """rnnfast's gradients (``{"Wx", "Wh", "b"(, "b_hn")}``) from the gradients of
        torch's layer-0 parameters: ``dWx = weight_ih.grad.T``, ``dWh = weight_hh.grad.T``,
        ``db = bias_ih.grad`` (in the summed gates ``bias_hh.grad`` equals it),
        ``db_hn = bias_hh.grad[2H:]``. Without biases only the weights."""
        grads = {"Wx": np.asarray(grad_weight_ih).T, "Wh": np.asarray(grad_weight_hh).T}
        if grad_bias_ih is not None:
            grads["b"] = np.asarray(grad_bias_ih)
            if "b_hn" in self.params:
                hidden = grads["b"].shape[0] // self.gates
                grads["b_hn"] = np.asarray(grad_bias_hh)[self.summed_bias(hidden).stop:]
        return grads

    def bias_grads_to_torch(self, db, db_hn=None):
        """``(bias_ih.grad, bias_hh.grad)`` from rnnfast's ``db`` (and the GRU's ``db_hn``),
        two new arrays: ``bias_ih.grad = db``; ``bias_hh.grad`` is ``db`` in the summed gates
        and ``db_hn`` in the others (the inverse of :meth:`grads_from_torch`)."""
        db = np.asarray(db)
        grad_ih = np.array(db, copy=True)
        if "b_hn" not in self.params:
            return grad_ih, np.array(db, copy=True)
        hidden = db.shape[0] // self.gates
        grad_hh = np.empty_like(db)
        s = self.summed_bias(hidden)
        grad_hh[s] = db[s]
        grad_hh[s.stop:] = db_hn
        return grad_ih, grad_hh

    # ------------------------------------------------------------------ Keras
    def from_keras_gates(self, a, hidden):
        """``a`` (last axis G*hidden, Keras' gate order) in rnnfast's gate order."""
        order = self.keras_gate_order
        if order == tuple(range(self.gates)):
            return np.array(a, copy=True)
        return np.concatenate([a[..., k * hidden:(k + 1) * hidden] for k in order], axis=-1)


def _rnn(nonlinearity):
    return CellSpec(kind=f"rnn_{nonlinearity}", family="rnn", layer="RNN",
                    nonlinearity=nonlinearity, gate_names=("a",), states=("h",),
                    params=("Wx", "Wh", "b"), summed_bias_gates=1,
                    compiled=True,
                    torch_class="RNN" if nonlinearity in ("tanh", "relu") else None,
                    keras_kind="rnn", keras_gate_order=(0,))


_SPECS = (
    _rnn("tanh"),
    _rnn("relu"),
    _rnn("sigmoid"),
    CellSpec(kind="lstm", family="lstm", layer="LSTM", nonlinearity=None,
             gate_names=("i", "f", "g", "o"), states=("h", "c"), params=("Wx", "Wh", "b"),
             summed_bias_gates=4, compiled=True, torch_class="LSTM", keras_kind="lstm",
             keras_gate_order=(0, 1, 2, 3)),        # Keras: i, f, c, o
    CellSpec(kind="gru", family="gru", layer="GRU", nonlinearity=None,
             gate_names=("r", "z", "n"), states=("h",), params=("Wx", "Wh", "b", "b_hn"),
             summed_bias_gates=2, compiled=True, torch_class="GRU", keras_kind="gru",
             keras_gate_order=(1, 0, 2)),           # Keras: z, r, h
)

_BY_KIND = {s.kind: s for s in _SPECS}
KINDS = tuple(_BY_KIND)
FAMILIES = tuple(dict.fromkeys(s.family for s in _SPECS))
NONLINEARITIES = tuple(s.nonlinearity for s in _SPECS if s.nonlinearity is not None)
_BY_LAYER = {(s.family, s.nonlinearity): s for s in _SPECS}


def specs():
    """Every CellSpec, in ``KINDS`` order."""
    return _SPECS


def get(kind):
    """The CellSpec of ``kind`` (one of ``KINDS``)."""
    try:
        return _BY_KIND[kind]
    except (KeyError, TypeError):
        raise ValueError(f"cell kind must be one of {KINDS}, got {kind!r}") from None


def for_layer(family, nonlinearity=None):
    """The CellSpec of a layer family (``"rnn"``, ``"lstm"``, ``"gru"``) and, for ``"rnn"``,
    its nonlinearity (``"tanh"``, ``"relu"``, ``"sigmoid"``)."""
    if family == "rnn" and nonlinearity not in NONLINEARITIES:
        raise ValueError(f"nonlinearity must be one of {NONLINEARITIES}, got {nonlinearity!r}")
    if family != "rnn":
        nonlinearity = None
    try:
        return _BY_LAYER[(family, nonlinearity)]
    except (KeyError, TypeError):
        raise ValueError(f"cell family must be one of {FAMILIES}, got {family!r}") from None
