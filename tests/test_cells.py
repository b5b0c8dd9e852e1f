"""The cell registry (rnnfast.cells) against the pinned conventions of DESIGN.md, written out
here independently: this is the one test file that spells gate counts, gate orders and the
torch bias mapping; every other suite reads them from the registry."""
import dataclasses

import numpy as np
import pytest

from rnnfast import cells

# DESIGN.md, "Conventions (pinned)"
PINNED = {
    "rnn_tanh": dict(family="rnn", layer="RNN", nonlinearity="tanh", G=1, states=("h",),
                     params=("Wx", "Wh", "b")),
    "rnn_relu": dict(family="rnn", layer="RNN", nonlinearity="relu", G=1, states=("h",),
                     params=("Wx", "Wh", "b")),
    "rnn_sigmoid": dict(family="rnn", layer="RNN", nonlinearity="sigmoid", G=1,
                        states=("h",), params=("Wx", "Wh", "b")),
    "lstm": dict(family="lstm", layer="LSTM", nonlinearity=None, G=4, states=("h", "c"),
                 params=("Wx", "Wh", "b"), gate_names=("i", "f", "g", "o")),
    "gru": dict(family="gru", layer="GRU", nonlinearity=None, G=3, states=("h",),
                params=("Wx", "Wh", "b", "b_hn"), gate_names=("r", "z", "n")),
}


def test_kinds_and_lookups():
    assert cells.KINDS == tuple(PINNED)
    assert cells.FAMILIES == ("rnn", "lstm", "gru")
    assert cells.NONLINEARITIES == ("tanh", "relu", "sigmoid")
    assert [s.kind for s in cells.specs()] == list(cells.KINDS)
    for kind in cells.KINDS:
        s = cells.get(kind)
        assert cells.for_layer(s.family, s.nonlinearity) is s
    assert cells.for_layer("lstm") is cells.get("lstm")
    assert cells.for_layer("gru") is cells.get("gru")
    for bad in ("LSTM", "rnn", None, 3):
        with pytest.raises(ValueError, match="kind"):
            cells.get(bad)
    with pytest.raises(ValueError, match="nonlinearity"):
        cells.for_layer("rnn", "softsign")
    with pytest.raises(ValueError, match="family"):
        cells.for_layer("transformer")


@pytest.mark.parametrize("kind", PINNED)
def test_spec_is_the_pinned_convention(kind):
    s, want = cells.get(kind), PINNED[kind]
    assert (s.family, s.layer, s.nonlinearity) == (want["family"], want["layer"],
                                                   want["nonlinearity"])
    assert s.gates == want["G"] and len(s.gate_names) == want["G"]
    assert s.states == want["states"] and s.params == want["params"]
    if "gate_names" in want:
        assert s.gate_names == want["gate_names"]
    D, H = 5, 7
    G = want["G"]
    shapes = {"Wx": (D, G * H), "Wh": (H, G * H), "b": (G * H,), "b_hn": (H,)}
    assert s.param_shapes(D, H) == {n: shapes[n] for n in want["params"]}
    for k, name in enumerate(s.gate_names):
        assert s.gate(name, H) == slice(k * H, (k + 1) * H)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.kind = "other"


def torch_like(kind, H, D, seed):
    G = PINNED[kind]["G"]
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((G * H, D)), rng.standard_normal((G * H, H)),
            rng.standard_normal(G * H), rng.standard_normal(G * H))


@pytest.mark.parametrize("kind", PINNED)
def test_torch_mapping(kind):
    """DESIGN.md: Wx = weight_ih.T, Wh = weight_hh.T; b = bias_ih + bias_hh (RNN, LSTM);
    GRU b[:2H] = bias_ih[:2H] + bias_hh[:2H], b[2H:] = bias_ih[2H:], b_hn = bias_hh[2H:]."""
    s = cells.get(kind)
    D, H = 4, 3
    w_ih, w_hh, b_ih, b_hh = torch_like(kind, H, D, 0)
    p = s.params_from_torch(w_ih, w_hh, b_ih, b_hh)
    assert list(p) == list(s.params)
    np.testing.assert_array_equal(p["Wx"], w_ih.T)
    np.testing.assert_array_equal(p["Wh"], w_hh.T)
    if kind == "gru":
        np.testing.assert_array_equal(p["b"][:2 * H], b_ih[:2 * H] + b_hh[:2 * H])
        np.testing.assert_array_equal(p["b"][2 * H:], b_ih[2 * H:])
        np.testing.assert_array_equal(p["b_hn"], b_hh[2 * H:])
        assert s.summed_bias(H) == slice(0, 2 * H)
    else:
        np.testing.assert_array_equal(p["b"], b_ih + b_hh)
        assert s.summed_bias(H) == slice(0, PINNED[kind]["G"] * H)
    # no bias (bias=False): zeros
    p0 = s.params_from_torch(w_ih, w_hh)
    assert not any(p0[n].any() for n in s.params if n.startswith("b"))
    # and back: exact, both ways round for rnnfast's parameters
    t = s.params_to_torch(p)
    assert set(t) == {"weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"}
    back = s.params_from_torch(*t.values())
    for n in s.params:
        np.testing.assert_array_equal(back[n], p[n], err_msg=n)
    # gradients: torch's bias_ih.grad is rnnfast's db, bias_hh.grad[2H:] the GRU's db_hn
    g = s.grads_from_torch(w_ih, w_hh, b_ih, b_hh)
    np.testing.assert_array_equal(g["Wx"], w_ih.T)
    np.testing.assert_array_equal(g["b"], b_ih)
    if kind == "gru":
        np.testing.assert_array_equal(g["b_hn"], b_hh[2 * H:])
    assert set(g) == set(s.params)
    assert set(s.grads_from_torch(w_ih, w_hh)) == {"Wx", "Wh"}


def test_torch_and_keras_names():
    assert {k: cells.get(k).torch_class for k in PINNED} == {
        "rnn_tanh": "RNN", "rnn_relu": "RNN", "rnn_sigmoid": None, "lstm": "LSTM",
        "gru": "GRU"}
    assert {k: cells.get(k).keras_kind for k in PINNED} == {
        "rnn_tanh": "rnn", "rnn_relu": "rnn", "rnn_sigmoid": "rnn", "lstm": "lstm",
        "gru": "gru"}


@pytest.mark.parametrize("kind,keras_order", [("lstm", "ifco"), ("gru", "zrh")])
def test_keras_gate_order(kind, keras_order):
    """Keras' LSTM is i, f, c, o (rnnfast's i, f, g, o), its GRU z, r, h (rnnfast's r, z, n)."""
    s = cells.get(kind)
    H = 2
    rnnfast_of = {"i": "i", "f": "f", "c": "g", "o": "o", "z": "z", "r": "r", "h": "n"}
    a = np.concatenate([np.full((3, H), k) for k in range(len(keras_order))], axis=1)
    got = s.from_keras_gates(a, H)
    for k, keras_gate in enumerate(keras_order):
        np.testing.assert_array_equal(got[:, s.gate(rnnfast_of[keras_gate], H)], k)
