"""ONNX Runtime's RNN, LSTM and GRU operators (an implementation of its own, with other gate
orders and the GRU's linear_before_reset) computing an rnnfast layer's forward from its
weights (rnnfast._onnx_peer, the benchmark's peer): the same outputs and final states, so
the mapping is right and both compute the same cells."""
import numpy as np
import pytest

import rnnfast
from rnnfast import cells
from cells_for_tests import KINDS, make_layer

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install .[onnx])")
from rnnfast import _onnx_peer  # noqa: E402


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("cell", KINDS)
def test_onnxruntime_computes_the_same_forward(cell, batch_first):
    """float32: ONNX Runtime's CPU provider has its RNN and GRU in float32 only."""
    dtype = np.float32
    spec = cells.get(cell)
    B, T, D, H = 5, 7, 6, 9
    layer = make_layer(cell, D, H, dtype=dtype, batch_first=batch_first).eval()
    rng = np.random.default_rng(3)
    x = rng.standard_normal((B, T, D) if batch_first else (T, B, D)).astype(dtype)
    out, state = layer(x)
    h_n = state[0] if "c" in spec.states else state
    _, run = _onnx_peer.session(spec.family, layer)
    x_tm = np.ascontiguousarray(x.transpose(1, 0, 2) if batch_first else x)
    y_tm, y_h = run(x_tm)
    rtol, atol = 1e-5, 1e-6
    np.testing.assert_allclose(y_tm, out.transpose(1, 0, 2) if batch_first else out,
                               rtol=rtol, atol=atol)
    np.testing.assert_allclose(y_h, h_n, rtol=rtol, atol=atol)
    assert isinstance(layer, getattr(rnnfast, spec.layer))
