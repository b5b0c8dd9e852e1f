"""Shared fixtures: every kernel test runs on both backends and both dtypes."""
import os

import numpy as np
import pytest

import rnnfast

BACKENDS = ("cython", "numpy")
DTYPES = (np.float32, np.float64)
# compiled vs twin, per dtype (DESIGN.md): float32 rtol ~1e-5, float64 ~1e-12
RTOL = {np.float32: 1e-5, np.float64: 1e-12}
ATOL = {np.float32: 1e-6, np.float64: 1e-13}


def pytest_report_header(config):
    import rnnfast._core
    return (f"rnnfast {rnnfast.__version__} from {os.path.dirname(rnnfast.__file__)}; "
            f"compiled core {rnnfast._core.__file__}; SIMD path {rnnfast.simd_path()} "
            f"(this CPU runs {', '.join(rnnfast.simd_paths())})")


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


@pytest.fixture(params=DTYPES, ids=["float32", "float64"])
def dtype(request):
    return request.param


def random_problem(cell, B, T, D, H, dtype, *, batch_first=True, seed=0, scale=None):
    """Inputs, states, weights and output gradients for one call, PyTorch-scaled weights
    (U(-1/sqrt(H), 1/sqrt(H))) so that the recurrence is stable and comparisons are
    well conditioned."""
    rng = np.random.default_rng(seed)
    G = 4 if cell == "lstm" else 1
    k = 1 / np.sqrt(H) if scale is None else scale
    xshape = (B, T, D) if batch_first else (T, B, D)
    p = {
        "x": rng.standard_normal(xshape),
        "h0": rng.standard_normal((B, H)) * 0.5,
        "c0": rng.standard_normal((B, H)) * 0.5,
        "Wx": rng.uniform(-k, k, (D, G * H)),
        "Wh": rng.uniform(-k, k, (H, G * H)),
        "b": rng.uniform(-k, k, G * H),
        "dout": rng.standard_normal(xshape[:2] + (H,)),
        "dh_n": rng.standard_normal((B, H)),
        "dc_n": rng.standard_normal((B, H)),
    }
    return {name: a.astype(dtype) for name, a in p.items()}
