"""Layers, blocks and models pickle (distributed inference ships them to worker processes):
the clone computes what the original computes, forward and backward, on either backend, and
leaves behind what is process-local (the compiled backend's kept buffers, a BPTT workspace)."""
import pickle

import numpy as np
import pytest

from rnnfast import nn
from cells_for_tests import KINDS, kind_backends, make_layer


@pytest.mark.parametrize("kind,backend", kind_backends(KINDS))
def test_layer_round_trip(kind, backend):
    layer = make_layer(kind, 3, 5, backend=backend, dtype=np.float64, seed=0)
    x = np.random.default_rng(1).standard_normal((2, 4, 3))
    out = layer(x)[0]                   # a training forward: buffers and a workspace kept
    size_trained = len(pickle.dumps(layer))
    clone = pickle.loads(pickle.dumps(layer))
    assert size_trained < 4096          # parameters and gradients only (5x(4x5) + ...)
    np.testing.assert_array_equal(clone(x)[0], out)
    dout = np.ones_like(out)
    np.testing.assert_array_equal(clone.backward(dout)[0], layer.backward(dout)[0])
    for name in layer.grads:
        np.testing.assert_array_equal(clone.grads[name], layer.grads[name])
    clone.params["Wh"][...] = 0         # the clone's own arrays
    assert not np.array_equal(layer.params["Wh"], 0)
    with pytest.raises(ValueError, match="without a training forward"):
        pickle.loads(pickle.dumps(layer)).backward(dout)     # no workspace came along


def test_dense_round_trip():
    dense = nn.Dense(4, 2, seed=0)
    x = np.ones((3, 4), np.float32)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(dense))(x), dense(x))
