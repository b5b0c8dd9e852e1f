"""Shared fixtures: every kernel test runs on both backends and both dtypes (the cells, and
which backend runs which, come from the registry: cells_for_tests.py)."""
import os

import numpy as np
import pytest

import rnnfast
from cells_for_tests import BACKENDS, random_problem  # noqa: F401  (the registry's helpers)

DTYPES = (np.float32, np.float64)
# compiled vs twin, per dtype (DESIGN.md): float32 rtol ~1e-5, float64 ~1e-12
RTOL = {np.float32: 1e-5, np.float64: 1e-12}
ATOL = {np.float32: 1e-6, np.float64: 1e-13}


def pytest_configure(config):
    # run from a source tree without the compiled core (python -m pytest in the checkout):
    # one error that says so and what to do, instead of every test failing to import it
    try:
        rnnfast.functional.compiled_core()
    except ImportError as e:
        raise pytest.UsageError(str(e)) from None


def pytest_report_header(config):
    core = rnnfast.functional.compiled_core()
    return (f"rnnfast {rnnfast.__version__} from {os.path.dirname(rnnfast.__file__)}; "
            f"compiled core {core.__file__}; SIMD path {core.simd_path()} "
            f"(this CPU runs {', '.join(core.simd_paths())})")


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


@pytest.fixture(params=DTYPES, ids=["float32", "float64"])
def dtype(request):
    return request.param
