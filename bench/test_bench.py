"""One benchmark per (cell, implementation) of the grid; grouped by cell."""
import pytest

from rnnfast.bench import GRID, IMPLS, build_callables


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("cell", GRID, ids=lambda c: c.name)
def test_grid(benchmark, cell, impl, bench_dtype, bench_threads, gemm_flops):
    if impl == "torch":
        pytest.importorskip("torch")
    fns = build_callables(cell, bench_dtype, impls=(impl,))
    if impl not in fns:         # (ONNX Runtime does not train; a peer not installed)
        pytest.skip(f"{impl} has no {cell.pass_} call here")
    fn = fns[impl]
    benchmark.group = f"{cell.name} ({bench_dtype.name}, {bench_threads} threads)"
    benchmark.extra_info.update(
        cell=cell.name, impl=impl, dims=cell.dims, dtype=bench_dtype.name,
        threads=bench_threads, flops=cell.flops, gemm_flops_per_s=gemm_flops,
        floor_s=cell.flops / gemm_flops)
    benchmark(fn)
