"""Calls without a pool of their own (rnnfast.functional, eval layers) borrow their scratch
and training workspace from _core.SharedBuffers: pages stay mapped between calls. A
borrowed buffer must never be lent to a second caller while the first can still read it:
a live workspace, a view the caller kept, a concurrent call."""
import weakref

import numpy as np
import pytest

from rnnfast import _core
from rnnfast import functional as F

B, T, D, H = 16, 100, 32, 64          # every workspace array above the 128 KiB threshold


def weights(seed=0):
    rng = np.random.default_rng(seed)
    k = 1 / np.sqrt(H)
    return [rng.uniform(-k, k, s).astype(np.float32) for s in ((D, 4 * H), (H, 4 * H), (4 * H,))]


def inputs(seed):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((B, T, D)).astype(np.float32),
            rng.standard_normal((B, T, H)).astype(np.float32))


def forward(x, w):
    return F.lstm_forward(x, None, None, *w)


def backward(dout, x, w, ws):
    return F.lstm_backward(dout, None, None, x, w[0], w[1], ws)


def base(a):
    return a.base if a.base is not None else a


@pytest.fixture(autouse=True)
def empty_stock():
    _core.release_shared_buffers()
    yield
    _core.release_shared_buffers()


def test_a_consumed_workspace_is_reused_by_the_next_forward():
    w = weights()
    x, dout = inputs(1)
    ws = forward(x, w)[-1]
    # weak references: holding the buffers would (rightly) keep them from being reused
    lent = [weakref.ref(base(ws[k])) for k in ("gates", "hs", "cs")]
    backward(dout, x, w, ws)
    assert _core._shared.kept_bytes() > 0
    ws2 = forward(x, w)[-1]
    buffers = [r() for r in lent]
    assert all(b is not None for b in buffers)     # kept by the stock, not freed
    for k in ("gates", "hs", "cs"):
        assert any(base(ws2[k]) is b for b in buffers), f"{k} was not reused"


def test_a_live_workspace_is_never_lent_again():
    """Two forwards before their backwards: distinct buffers; each backward gives the
    gradients of a forward computed on its own."""
    w = weights()
    (x1, d1), (x2, d2) = inputs(1), inputs(2)
    ws1 = forward(x1, w)[-1]
    ws2 = forward(x2, w)[-1]
    for k in ("gates", "hs", "cs"):
        for j in ("gates", "hs", "cs"):
            assert not np.shares_memory(ws1[k], ws2[j])
    got1 = backward(d1, x1, w, ws1)
    ws3 = forward(x1, w)[-1]              # may take ws1's buffers, never ws2's
    for k in ("gates", "hs", "cs"):
        for j in ("gates", "hs", "cs"):
            assert not np.shares_memory(ws3[k], ws2[j])
    got2 = backward(d2, x2, w, ws2)
    got3 = backward(d1, x1, w, ws3)
    _core.release_shared_buffers()
    want1 = backward(d1, x1, w, forward(x1, w)[-1])
    want2 = backward(d2, x2, w, forward(x2, w)[-1])
    for got, want in ((got1, want1), (got2, want2), (got3, want1)):
        for g, v in zip(got, want):
            if v is not None:
                np.testing.assert_array_equal(g, v)


def test_a_view_kept_by_the_caller_is_not_reused():
    w = weights()
    x, dout = inputs(1)
    ws = forward(x, w)[-1]
    kept = ws["gates"]                    # the caller keeps a view of the workspace
    backward(dout, x, w, ws)
    snapshot = kept.copy()
    for seed in range(3):                 # more calls: none may write into `kept`
        xs, ds = inputs(10 + seed)
        backward(ds, xs, w, forward(xs, w)[-1])
        F.lstm_forward(xs, None, None, *w, training=False)
    np.testing.assert_array_equal(kept, snapshot)


def test_a_workspace_is_consumed_once():
    w = weights()
    x, dout = inputs(1)
    ws = forward(x, w)[-1]
    backward(dout, x, w, ws)
    with pytest.raises(ValueError, match="already used"):
        backward(dout, x, w, ws)
    with pytest.raises(ValueError, match="already used"):   # the kernel's own guard
        _core.lstm_backward(dout, None, None, x, w[0], w[1], ws)


def test_outputs_are_never_lent():
    """Outputs and gradients are new arrays: a later call cannot overwrite them."""
    w = weights()
    x, dout = inputs(1)
    out, h_n, c_n, ws = forward(x, w)
    grads = backward(dout, x, w, ws)
    saved = [a.copy() for a in (out, h_n, c_n) + tuple(g for g in grads if g is not None)]
    for seed in range(3):
        xs, ds = inputs(20 + seed)
        backward(ds, xs, w, forward(xs, w)[-1])
    for a, s in zip((out, h_n, c_n) + tuple(g for g in grads if g is not None), saved):
        np.testing.assert_array_equal(a, s)


def test_the_stock_is_bounded_and_released():
    w = weights()
    for seed in range(40):                # many live workspaces, all given back
        x, dout = inputs(seed)
        backward(dout, x, w, forward(x, w)[-1])
    assert len(_core._shared._free) <= _core.SharedBuffers.MAX_COUNT
    assert _core._shared.kept_bytes() <= _core.SharedBuffers.MAX_BYTES
    F.release_buffers()
    assert _core._shared.kept_bytes() == 0
