"""pytest-benchmark suite over rnnfast.bench.GRID; not part of the test run (testpaths = tests).

    pytest bench/ --benchmark-only                       # thread count in force
    pytest bench/ --benchmark-only --bench-threads 1     # BLAS/OpenMP and torch at 1 thread
    pytest bench/ --benchmark-only -k "medium and lstm" --benchmark-json out.json

Each benchmark's ``extra_info`` holds the cell's FLOPs and its GEMM floor (FLOPs / the
sgemm or dgemm rate measured once per session), so a ``--benchmark-json`` file carries
the roofline too. ``rnnfast-bench --full`` prints the same grid as one table.
"""
import numpy as np
import pytest

from rnnfast import bench


def pytest_addoption(parser):
    group = parser.getgroup("rnnfast bench")
    group.addoption("--bench-threads", type=int, default=None,
                    help="BLAS/OpenMP threads (threadpoolctl) and torch.set_num_threads "
                         "(default: the BLAS count in force, torch matched to it)")
    group.addoption("--bench-dtype", choices=("float32", "float64"), default="float32")


@pytest.fixture(scope="session", autouse=True)
def bench_threads(request):
    """The thread count for the whole session, set once (threadpoolctl + torch)."""
    n = request.config.getoption("--bench-threads")
    with bench.limit_threads(n):
        yield n if n is not None else bench.blas_threads()


@pytest.fixture(scope="session")
def bench_dtype(request):
    return np.dtype(request.config.getoption("--bench-dtype"))


@pytest.fixture(scope="session")
def gemm_flops(bench_dtype, bench_threads):
    """sgemm/dgemm FLOP/s at the session's thread count: the roofline of the floors."""
    return bench.gemm_rate(bench_dtype)
