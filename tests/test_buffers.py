"""A compiled training layer keeps its workspace and scratch between calls
(_core.BufferedKernels): its results must be bitwise those of the module functions, which
allocate afresh, whatever the order of shapes, and nothing it returns may be overwritten
by a later call."""
import numpy as np
import pytest

from rnnfast import _core
import cells_for_tests as reg
from cells_for_tests import COMPILED

H, D = 64, 32
CELLS = COMPILED             # the compiled layers' kept buffers
# (batch, seq_len): every workspace array above the pooling threshold (128 KiB), shrinking,
# growing and coming back
SHAPES = [(16, 100), (16, 40), (8, 130), (16, 100)]


def make(cell, batch_first=True):
    return reg.make_layer(cell, D, H, batch_first=batch_first, backend="cython", seed=1)


def problem(seed, B, T, batch_first):
    rng = np.random.default_rng(seed)
    shape = (B, T) if batch_first else (T, B)
    x = rng.standard_normal(shape + (D,)).astype(np.float32)
    dout = rng.standard_normal(shape + (H,)).astype(np.float32)
    return x, dout


def fresh(layer, x, dout):
    """Forward and backward through the module functions (new buffers every call)."""
    kind = layer._spec.kind
    weights = tuple(layer.params[k] for k in reg.param_names(kind))
    none = (None,) * len(reg.state_names(kind))
    out, _, ws = reg.kernel_forward(_core, kind, x, none, weights, layer.batch_first)
    dx, _, dparams = reg.kernel_backward(_core, kind, dout, none, x, weights[0], weights[1],
                                         ws, layer.batch_first)
    return (out, dx) + dparams


def pooled(layer, x, dout):
    out = layer(x)[0]
    dx = layer.backward(dout)[0]
    return (out, dx) + tuple(layer.grads[k] for k in reg.param_names(layer._spec.kind))


N_RETURNED = 2      # out, dx: new arrays every call; layer.grads' arrays are the same ones,
                    # overwritten by each backward (so that an optimizer may hold them)


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("cell", CELLS)
def test_kept_buffers_give_the_fresh_results_and_never_overwrite_returned_arrays(cell,
                                                                                batch_first):
    layer = make(cell, batch_first)
    returned, grads = [], None
    for i, (B, T) in enumerate(SHAPES):
        x, dout = problem(i, B, T, batch_first)
        got = pooled(layer, x, dout)
        assert layer._kernels._pool, "the layer kept no buffers: nothing was tested"
        names = ["out", "dx"] + ["d" + k for k in reg.param_names(cell)]
        for name, g, want in zip(names, got, fresh(layer, x, dout), strict=True):
            np.testing.assert_array_equal(g, want, err_msg=f"call {i}: {name}")
        if grads is not None:                # the gradients: the same arrays every call
            assert all(g is h for g, h in zip(got[N_RETURNED:], grads, strict=True))
        grads = got[N_RETURNED:]
        returned.append(([a.copy() for a in got[:N_RETURNED]], got[:N_RETURNED]))
    for i, (copies, arrays) in enumerate(returned):     # later calls left earlier results alone
        for c, a in zip(copies, arrays):
            np.testing.assert_array_equal(a, c, err_msg=f"call {i}'s result was overwritten")


@pytest.mark.parametrize("cell", CELLS)
def test_a_second_forward_supersedes_the_first(cell):
    layer = make(cell)
    x1, _ = problem(1, 16, 100, True)
    x2, dout = problem(2, 16, 100, True)
    layer(x1)
    got = pooled(layer, x2, dout)
    for g, want in zip(got, fresh(layer, x2, dout)):
        np.testing.assert_array_equal(g, want)


@pytest.mark.parametrize("cell", CELLS)
def test_the_callers_x_is_copied_and_the_copy_reused(cell):
    layer = make(cell)
    x, dout = problem(3, 16, 100, True)
    want = fresh(layer, x.copy(), dout)
    layer(x)
    copy = layer._cache[0]                   # the x backward will use
    assert not np.shares_memory(copy, x)
    x[...] = 0                               # the caller reuses its array before backward
    dx = layer.backward(dout)[0]
    np.testing.assert_array_equal(dx, want[1])
    np.testing.assert_array_equal(layer.grads["Wx"], want[2])
    x, dout = problem(4, 16, 100, True)
    layer(x)
    assert np.shares_memory(layer._cache[0], copy)   # same shape: the buffer was reused


@pytest.mark.parametrize("cell", CELLS)
def test_a_refused_call_leaves_the_pending_backward_intact(cell):
    layer = make(cell)
    x, dout = problem(5, 16, 100, True)
    want = fresh(layer, x, dout)
    layer(x)
    with pytest.raises(ValueError):
        layer(np.zeros((16, 100, D + 1), np.float32))
    dx = layer.backward(dout)[0]
    np.testing.assert_array_equal(dx, want[1])


@pytest.mark.parametrize("cell", CELLS)
def test_eval_and_release_free_the_kept_buffers(cell):
    layer = make(cell)
    x, dout = problem(6, 16, 100, True)
    pooled(layer, x, dout)
    assert "x" in layer._kernels._pool and "gates" in layer._kernels._pool
    layer.release_buffers()
    assert not layer._kernels._pool
    with pytest.raises(ValueError, match="without a training forward"):
        layer.backward(dout)
    pooled(layer, x, dout)
    assert layer._kernels._pool
    out_train = layer(x)[0]
    layer.eval()
    assert not layer._kernels._pool
    np.testing.assert_array_equal(layer(x)[0], out_train)
    assert not layer._kernels._pool          # inference keeps nothing (threads may share it)
