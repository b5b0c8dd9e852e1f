"""The compiled tanh and sigmoid (branch-free approximations in rnnfast/_simd.h) against
NumPy/SciPy: accuracy in ulps-scale relative error, exact saturation, NaN propagation."""
import numpy as np
import pytest
from scipy.special import expit

from rnnfast import _core

# relative error bounds, a few eps (no cancellation anywhere: tanh is expm1(2x)/(expm1(2x)+2)).
# Measured maxima on this grid: float32 tanh 1.8e-7, sigmoid 1.5e-7; float64 tanh 4.8e-16,
# sigmoid 3.1e-16 (over every float32, tanh's maximum is 2.4e-7).
BOUND = {np.float32: {"tanh": 5e-7, "sigmoid": 1e-6},
         np.float64: {"tanh": 1e-15, "sigmoid": 2e-15}}


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", ["tanh", "sigmoid"])
def test_relative_error(dtype, name):
    x = np.concatenate([np.linspace(-20, 20, 200001), np.geomspace(1e-30, 1, 2001),
                        -np.geomspace(1e-30, 1, 2001), [0.0, 0.125, -0.125]]).astype(dtype)
    ref = np.tanh(x.astype(np.float64)) if name == "tanh" else expit(x.astype(np.float64))
    got = (_core._tanh if name == "tanh" else _core._sigmoid)(x)
    assert got.dtype == dtype
    tiny = np.finfo(dtype).tiny
    rel = np.abs(got - ref) / np.maximum(np.abs(ref), tiny)
    # a float32 result cannot be closer than half an ulp of float32 to the float64 value
    assert rel.max() <= BOUND[dtype][name], (x[np.argmax(rel)], rel.max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_saturation_and_nan(dtype):
    x = np.array([-1e4, -50.0, 50.0, 1e4, -np.inf, np.inf, np.nan], dtype)
    t = _core._tanh(x)
    s = _core._sigmoid(x)
    np.testing.assert_array_equal(t[:6], [-1, -1, 1, 1, -1, 1])
    np.testing.assert_array_equal(s[[0, 3, 4, 5]], [0, 1, 0, 1])
    assert np.isnan(t[6]) and np.isnan(s[6])
