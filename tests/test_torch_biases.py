"""``_core.summed_biases`` and ``_core.split_bias_grads``: the bias copies rnnfast.torch
makes per call (torch's two biases into rnnfast's ``b``/``b_hn``, and back for their
gradients), in C. Checked value for value against the registry's NumPy definitions
(``CellSpec.biases_from_torch`` / ``bias_grads_to_torch``) for every cell, both dtypes;
anything but 1-D C-contiguous float vectors of one dtype and the right lengths is declined
(None: the caller takes the registry's NumPy), never read out of bounds."""
import numpy as np
import pytest

from rnnfast import _core, cells

KINDS = [s.kind for s in cells.specs()]
DTYPES = [np.float32, np.float64]


def core_biases(spec, bias_ih, bias_hh):
    H = bias_ih.shape[0] // spec.gates
    return _core.summed_biases(bias_ih, bias_hh, spec.summed_bias(H).stop,
                               "b_hn" in spec.params)


def core_grads(spec, db, db_hn):
    H = db.shape[0] // spec.gates
    return _core.split_bias_grads(db, db_hn, spec.summed_bias(H).stop)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("H", [1, 3, 32, 33])
@pytest.mark.parametrize("kind", KINDS)
def test_summed_biases_are_the_registrys(kind, H, dtype):
    spec = cells.get(kind)
    rng = np.random.default_rng(H)
    bias_ih = rng.standard_normal(spec.gates * H).astype(dtype)
    bias_hh = rng.standard_normal(spec.gates * H).astype(dtype)
    before = bias_ih.copy(), bias_hh.copy()
    done = core_biases(spec, bias_ih, bias_hh)
    expected = spec.biases_from_torch(bias_ih, bias_hh)
    assert len(done) == len(expected)
    for got, (name, want) in zip(done, expected.items()):
        assert got.dtype == dtype and got.flags.c_contiguous, name
        assert not np.shares_memory(got, bias_ih) and not np.shares_memory(got, bias_hh)
        np.testing.assert_array_equal(got, want, err_msg=name)
    np.testing.assert_array_equal(bias_ih, before[0])      # only read
    np.testing.assert_array_equal(bias_hh, before[1])


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("H", [1, 3, 32, 33])
@pytest.mark.parametrize("kind", KINDS)
def test_split_bias_grads_are_the_registrys(kind, H, dtype):
    spec = cells.get(kind)
    rng = np.random.default_rng(H + 1)
    db = rng.standard_normal(spec.gates * H).astype(dtype)
    rest = spec.gates * H - spec.summed_bias_gates * H
    db_hn = rng.standard_normal(rest).astype(dtype) if "b_hn" in spec.params else None
    got = core_grads(spec, db, db_hn)
    want = spec.bias_grads_to_torch(db, db_hn)
    assert len(got) == 2
    for g, w in zip(got, want):
        assert g.dtype == dtype and g.flags.c_contiguous
        assert not np.shares_memory(g, db)
        np.testing.assert_array_equal(g, w)
    assert not np.shares_memory(got[0], got[1])             # two gradients, two arrays


def test_other_inputs_are_declined():
    spec = cells.get("gru")
    H = 4
    good = np.ones(3 * H, np.float32)
    summed = spec.summed_bias_gates * H
    for bias_ih, bias_hh in [
            (np.ones(6 * H, np.float32)[::2], good),          # strided
            (good, np.ones(3 * H, np.float64)),               # dtypes differ
            (good.astype(np.int64), good.astype(np.int64)),   # not float
            (good, good[:-1]),                                # lengths differ
            (good.reshape(3, H), good),                       # 2-D
            (list(good), good)]:                              # not an array
        assert _core.summed_biases(bias_ih, bias_hh, summed, True) is None
    assert _core.summed_biases(good, good, 3 * H + 1, True) is None    # summed too long
    assert _core.summed_biases(good, good, -1, True) is None
    assert _core.split_bias_grads(good, np.ones(H + 1, np.float32), summed) is None
    assert _core.split_bias_grads(good, np.ones(H, np.float64), summed) is None
    assert _core.split_bias_grads(good, None, 3 * H + 1) is None
    assert _core.split_bias_grads(good[::2], None, 0) is None
    assert _core.split_bias_grads([1.0], None, 0) is None
