"""``_core.transposed``: the tiled transposing copy rnnfast.torch makes of every weight and
weight gradient per call (torch keeps ``weight_ih`` as ``(G, D)``, the kernels read
``Wx = (D, G)``). Checked against NumPy's ``a.T`` value for value on shapes around its
register blocks (one vector a side: 8 floats or 4 doubles, 4 and 2 on SSE2) and its tiles
(32 x 32) and their multiples, both dtypes; anything but a 2-D C-contiguous float
array takes NumPy's route and gives the same. Also in CI's reruns on every SIMD path."""
import numpy as np
import pytest

from rnnfast import _core

SHAPES = [(1, 1), (1, 7), (7, 1), (2, 2), (3, 5), (4, 4), (8, 8), (9, 9), (16, 16), (15, 17),
          (17, 15), (31, 33), (32, 32), (64, 40), (40, 64), (128, 8), (8, 128), (128, 32),
          (33, 250), (256, 64), (0, 4), (4, 0)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "%dx%d" % s)
def test_transposed_equals_a_dot_T(shape, dtype):
    a = np.random.default_rng(sum(shape)).standard_normal(shape).astype(dtype)
    before = a.copy()
    t = _core.transposed(a)
    assert t.shape == shape[::-1] and t.dtype == dtype and t.flags.c_contiguous
    assert not np.shares_memory(t, a)
    np.testing.assert_array_equal(t, a.T)
    np.testing.assert_array_equal(a, before)           # the source is only read


@pytest.mark.parametrize("a", [
    np.arange(24.0).reshape(4, 6)[:, ::2],              # not C-contiguous
    np.arange(24.0).reshape(6, 4).T,                    # Fortran order
    np.arange(12, dtype=np.int64).reshape(3, 4),        # not a float dtype
    np.arange(6, dtype=np.float32),                     # 1-D
    [[1.0, 2.0], [3.0, 4.0]],                           # not an array
], ids=["strided", "fortran", "int64", "1d", "list"])
def test_other_inputs_take_the_fallback(a):
    t = _core.transposed(a)
    expected = np.asarray(a).T
    assert t.flags.c_contiguous and t.dtype == expected.dtype
    np.testing.assert_array_equal(t, expected)
