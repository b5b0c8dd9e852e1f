"""Memory: many calls keep memory flat and leak no references.

- 20,000 forward + backward calls of a small problem (per cell) after a warm-up: resident
  memory (psutil RSS) grows by less than 5 MB;
- tracemalloc (which sees NumPy's buffers): the Python-visible allocations do not grow
  over 2,000 more calls;
- reference counts of every input array, of the params and of the layer are the same
  before and after many calls, on both backends and through the functional API, also
  when calls fail validation.
"""
import gc
import os
import sys
import tracemalloc

import numpy as np
import psutil
import pytest

from rnnfast import functional as F
import cells_for_tests as reg
from cells_for_tests import COMPILED, REPRESENTATIVES, kind_backends, random_problem

B, T, D, H = 2, 5, 4, 8
# one kind per family (its code path, not its activation, is what could leak)
CELLS = REPRESENTATIVES
MB = 2**20
# AddressSanitizer keeps freed blocks in a quarantine (256 MB by default) before reusing
# them, so under it RSS grows with every free: it measures ASan, not rnnfast
ASAN_QUARANTINE = ("asan" in os.environ.get("LD_PRELOAD", "")
                   and "quarantine_size_mb=0" not in os.environ.get("ASAN_OPTIONS", ""))


def make(cell, backend="cython", dtype=np.float32):
    layer = reg.make_layer(cell, D, H, dtype=dtype, backend=backend, seed=0)
    p = random_problem(cell, B, T, D, H, dtype)
    state = reg.state_arg(cell, reg.problem_states(cell, p))
    dstate = reg.state_arg(cell, reg.problem_states(cell, p, "d", "_n"))
    return layer, p["x"], state, p["dout"], dstate


def calls(layer, x, state, dout, dstate, n):
    for _ in range(n):
        layer(x, state)
        layer.backward(dout, dstate)


def rss():
    gc.collect()
    return psutil.Process().memory_info().rss


@pytest.mark.skipif(ASAN_QUARANTINE, reason="ASan's free quarantine grows RSS by design "
                    "(run with ASAN_OPTIONS=quarantine_size_mb=0 to measure)")
@pytest.mark.parametrize("cell", [k for k in CELLS if k in COMPILED])   # the compiled core's
def test_rss_flat_over_20000_calls(cell):
    layer, x, state, dout, dstate = make(cell)
    calls(layer, x, state, dout, dstate, 2_000)          # warm-up: allocator pools, caches
    before = rss()
    calls(layer, x, state, dout, dstate, 20_000)
    growth = rss() - before
    print(f"{cell}: RSS growth over 20,000 forward+backward calls: {growth / MB:.3f} MB")
    assert growth < 5 * MB, growth / MB


@pytest.mark.parametrize("cell,backend", kind_backends(CELLS))
def test_traced_allocations_flat(cell, backend):
    layer, x, state, dout, dstate = make(cell, backend)
    calls(layer, x, state, dout, dstate, 200)
    tracemalloc.start()
    try:
        calls(layer, x, state, dout, dstate, 200)
        gc.collect()
        first, _ = tracemalloc.get_traced_memory()
        calls(layer, x, state, dout, dstate, 2_000)
        gc.collect()
        second, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # one leaked float32 array of this problem per call would be >= 2,000 * 32 bytes
    # (plus its ~100-byte header); the bound allows for interpreter noise only
    assert second - first < 32 * 1024, (first, second)


def refcounts(*objs):
    return [sys.getrefcount(o) for o in objs]


@pytest.mark.parametrize("cell,backend", kind_backends(CELLS))
def test_no_reference_leaks_layer(cell, backend):
    layer, x, state, dout, dstate = make(cell, backend)
    arrays = [x, dout] + list(reg.as_states(cell, state)) + list(reg.as_states(cell, dstate))
    gc.collect()
    untouched = refcounts(*arrays)
    layer(x, state)
    # the layer keeps no reference to the caller's arrays, not even in its BPTT cache
    assert refcounts(*arrays) == untouched
    layer.backward(dout, dstate)
    calls(layer, x, state, dout, dstate, 10)
    watched = arrays + list(layer.params.values()) + [layer]
    gc.collect()
    before = refcounts(*watched)
    calls(layer, x, state, dout, dstate, 500)
    for _ in range(100):                                   # failing calls leak nothing either
        with pytest.raises(ValueError):
            layer(x[:, :, :-1], state)
        with pytest.raises(ValueError):
            layer.backward(dout[:, :-1], dstate)
    layer.eval()
    for _ in range(100):
        layer(x, state)
    layer.train()
    gc.collect()
    assert refcounts(*watched) == before


@pytest.mark.parametrize("cell,backend", kind_backends(CELLS))
def test_no_reference_leaks_functional(cell, backend):
    p = random_problem(cell, B, T, D, H, np.float64)
    weights = tuple(p[n] for n in reg.param_names(cell))

    def step():
        out, finals, ws = reg.kernel_forward(F, cell, p["x"], reg.problem_states(cell, p),
                                             weights, backend=backend)
        reg.kernel_backward(F, cell, p["dout"], reg.problem_states(cell, p, "d", "_n"),
                            p["x"], p["Wx"], p["Wh"], ws, backend=backend)

    for _ in range(10):
        step()
    watched = list(p.values())
    gc.collect()
    before = refcounts(*watched)
    for _ in range(500):
        step()
    gc.collect()
    assert refcounts(*watched) == before
