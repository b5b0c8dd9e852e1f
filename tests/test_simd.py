"""Every SIMD path of the compiled kernels, on any machine that can run it.

The C kernels are compiled for AVX-512, AVX2 and baseline x86-64 (rnnfast/_simd_paths.h),
and a machine runs the best it has unless told otherwise, so without these tests a CI
machine with AVX-512 would never run the other two. Here each path the CPU can run
(``rnnfast.simd_paths()``) is forced in turn and held to the NumPy twin on shapes that take
each branch of the packed product (rnnfast/_simd_impl.h), and the tanh/sigmoid
approximations to their bounds; paths the CPU lacks are skipped, visibly. Then the switch
itself: RNNFAST_SIMD at import, set_simd_path, and their bad inputs. No test assumes which
path the machine picks by itself.
"""
import contextlib
import os
import subprocess
import sys

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import rnnfast
from rnnfast import _core, cells
import test_approximations as approximations
from cells_for_tests import COMPILED, random_problem, run
from test_parity import SHAPE_ID, assert_parity, assert_results_close, weight_grad_scales
from test_threads import threaded_shape

PATHS = ("avx512", "avx2", "baseline")
ACCEPTED = ("'auto'", "'avx512'", "'avx2'", "'baseline'")


@pytest.fixture
def keep_path():
    """The SIMD path in use before the test, restored after it."""
    before = rnnfast.simd_path()
    yield
    rnnfast.set_simd_path(before)


@pytest.fixture(params=PATHS)
def path(request, keep_path):
    """Each SIMD path in turn, forced for one test."""
    if request.param not in rnnfast.simd_paths():
        pytest.skip(f"this CPU cannot run the {request.param} path "
                    f"(it runs {', '.join(rnnfast.simd_paths())})")
    rnnfast.set_simd_path(request.param)
    return request.param


@pytest.fixture
def cpu_with(keep_path):
    """``cpu_with(*paths)``: from then on the rule that picks a path believes the CPU runs
    only ``paths`` (it asks simd_paths()); the real CPU is back after the test."""
    real = _core.simd_paths

    def limit(*paths):
        _core.simd_paths = lambda: paths
    yield limit
    _core.simd_paths = real


# --------------------------------------------------------------------- kernels per path

# (batch, seq_len, input, hidden), each for a branch of rf_packed_gemm and its blocks (float32
# panels of 32 columns, float64 of 16; 8-row blocks on the AVX-512 path, 6-row blocks on
# parts of a panel on the others)
SHAPES = [
    (1, 4, 3, 30),      # batch 1: the single-row product, four panels at once, the last partial
    (1, 3, 5, 300),     # batch 1, hidden over one k block (256): the blocked single-row path
    (7, 3, 5, 33),      # odd batch: 2-row blocks and a single-row remainder
    (13, 3, 6, 20),     # an 8-row block, then 2-row blocks and a remainder
    (27, 2, 4, 17),     # three 8-row blocks, a 2-row block, a remainder
    (9, 3, 1024, 16),   # x's rows 4 KiB apart (8 KiB in float64): 8-row blocks interleaved
    (11, 2, 3, 300),    # LSTM Wh over 1 MiB: streamed panels, prefetch; k blocks 256 + 44
    (16, 2, 10, 30),    # narrow paths: 6-row blocks and a 4-row one (batch 16, D 10, H 30)
    (8, 2, 5, 23),      # 6 + 2 rows, 4 + 1 (D), 3 x 6 + 4 + 1 (H); G = 92: a partial part
]


@pytest.mark.parametrize("batch_first", [True, False], ids=["batch_first", "time_major"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: SHAPE_ID % s)
@pytest.mark.parametrize("kind", COMPILED)
def test_kernels_match_the_twin(path, kind, shape, batch_first, dtype):
    """Outputs, final states, dx, dh0, dc0 and every parameter gradient (test_parity's
    tolerances). Weights scaled by the larger fan-in: with input 1024 and U(+-1/sqrt(H))
    weights, float32 pre-activations of ~10 cancel to ~0.01, beyond what even the float32
    twin computes to RTOL."""
    D, H = shape[2:]
    p = random_problem(kind, *shape, dtype, batch_first=batch_first, seed=sum(shape),
                       scale=1 / np.sqrt(max(D, H)))
    twin = assert_parity(kind, p, dtype, batch_first=batch_first)
    assert np.abs(twin["dWx"]).max() > 0 and np.abs(twin["dx"]).max() > 0


# (m, k, n) of rf_packed_gemm on its own, for the blocks of the narrow paths (AVX2: parts of
# 16 columns, 6-row blocks, then a 4-row block, 2-row blocks, one row; baseline: parts of 8
# columns) beside the AVX-512 path's: every row remainder of 6 and of 8, columns ending
# inside a part, between parts and at a panel's edge, k of one term, about one k block, and
# the shapes that take the other branches (a single row, rows 4 KiB apart, W over 1 MiB)
PRODUCTS = [(m, 2 * m + 1, 40) for m in range(1, 14)] + [
    (16, 3, 8), (17, 2, 15), (10, 1, 16), (8, 5, 17), (9, 7, 24), (5, 4, 31), (12, 9, 32),
    (15, 3, 33), (6, 2, 48), (4, 6, 100), (11, 1, 129),
    (7, 256, 50), (14, 257, 64), (5, 300, 70), (1, 1, 200), (1, 300, 129), (1, 64, 512),
    (31, 1024, 40), (20, 1024, 300),
    # parts of one vector (6 x 1 and 4 x 1 blocks): 8 columns (the digits LSTM's dx), a
    # last panel of 8 after a whole one, and of 3
    (256, 256, 8), (16, 64, 40), (10, 7, 35),
]


@contextlib.contextmanager
def kernel_setting(setter, value):
    """A development setting of the kernels (``setter``, one of _core's ``_set_*``, which
    returns the value before) at ``value``; the value before is back afterwards."""
    before = setter(value)
    try:
        yield
    finally:
        setter(before)


# The packed product's two loop orders (rf_packed_gemm), whatever this CPU's L2, by the
# W-in-cache threshold: every W fetched ahead panel by panel with k blocks outermost (1
# byte), or every W taken as held in L2, row chunks outermost (2^62 bytes)
LOOP_ORDERS = {"fetch_ahead": 1, "in_cache": 1 << 62}


def w_in_cache(threshold):
    """The packed products' W-in-cache threshold at ``threshold`` bytes, as a context."""
    return kernel_setting(_core._set_w_in_cache, threshold)


# The packed product's two ways of reading A rows a multiple of 4 KiB apart (rf_packed_gemm,
# when W is held in cache): copied into its interleaved scratch (1) or in place (0),
# whatever this CPU's L1 would choose
ALIASED_ROWS = {"copied": 1, "in_place": 0}


def aliased_rows(mode):
    """The packed products' reading of 4 KiB-strided A rows at ``mode``, as a context."""
    return kernel_setting(_core._set_interleave_aliased, mode)


@pytest.fixture(params=list(LOOP_ORDERS))
def loop_order(request):
    """Each loop order in turn (LOOP_ORDERS), for one test."""
    with w_in_cache(LOOP_ORDERS[request.param]):
        yield request.param


@pytest.fixture(params=list(ALIASED_ROWS))
def aliased_rows_mode(request):
    """Each way of reading 4 KiB-strided A rows in turn (ALIASED_ROWS), for one test."""
    with aliased_rows(ALIASED_ROWS[request.param]):
        yield request.param


def test_packed_product_blocks(path, loop_order, aliased_rows_mode):
    """rf_packed_gemm (through _core._packed_matmul_bench, float32) on small-integer
    operands, whose products and sums float32 holds exactly in any order: so the result
    must equal the integer product bit for bit, whatever the blocking and loop order. A
    value summed from a wrong row, column or term of k, or a column written past n,
    cannot pass. W also packed from its transpose (as the backward packs Wh.T: square
    blocks through registers, the edges value by value), to the same bits."""
    rng = np.random.default_rng(7)
    for m, k, n in PRODUCTS:
        a = rng.integers(-3, 4, (m, k)).astype(np.float32)
        w = rng.integers(-3, 4, (k, n)).astype(np.float32)
        want = (a.astype(np.int64) @ w.astype(np.int64)).astype(np.float32)
        np.testing.assert_array_equal(_core._packed_matmul_bench(a, w, 1), want,
                                      err_msg=f"m, k, n = {m}, {k}, {n}")
        np.testing.assert_array_equal(
            _core._packed_matmul_bench(a, np.ascontiguousarray(w.T), 1, True), want,
            err_msg=f"m, k, n = {m}, {k}, {n}, W packed from W.T")


@pytest.mark.parametrize("kind", COMPILED)
def test_loop_orders_sum_alike(path, kind, dtype):
    """The W-in-cache threshold picks only the loop order and the prefetches, not the sums:
    a forward and backward whose products have several row chunks and k blocks (180 rows
    of 300 inputs, gates of 384 and more) give the same bits under both orders."""
    p = random_problem(kind, 20, 9, 300, 96, dtype, seed=11)
    results = {}
    for order, threshold in LOOP_ORDERS.items():
        with w_in_cache(threshold):
            results[order] = run(kind, p, "cython")
    for name, want in results["fetch_ahead"].items():
        np.testing.assert_array_equal(results["in_cache"][name], want, err_msg=name)


def aliasing_hidden(kind, dtype):
    """The least hidden size whose gate rows (G = gates * hidden values) lie a multiple of
    4 KiB apart for this cell and dtype."""
    gates = cells.get(kind).gates
    values = 4096 // np.dtype(dtype).itemsize           # a row of 4 KiB
    return values // np.gcd(values, gates)


@pytest.mark.parametrize("kind", COMPILED)
def test_aliased_rows_sum_alike(path, kind, dtype):
    """Reading A rows that lie a multiple of 4 KiB apart in place or copied changes only
    where they are read from, not the sums: a forward and backward whose products read such
    rows in whole row blocks (x with 4 KiB rows in the forward; dG in the backward's dh, 9
    rows a step, and dx, 36 rows), with W held in cache, give the same bits both ways."""
    H = aliasing_hidden(kind, dtype)
    D = 4096 // np.dtype(dtype).itemsize
    p = random_problem(kind, 9, 4, D, H, dtype, seed=12)
    results = {}
    with w_in_cache(LOOP_ORDERS["in_cache"]):
        for way, mode in ALIASED_ROWS.items():
            with aliased_rows(mode):
                results[way] = run(kind, p, "cython")
    for name, want in results["copied"].items():
        np.testing.assert_array_equal(results["in_place"][name], want, err_msg=name)


def l1_data_ways():
    """The L1 data cache's ways as the C library reports them (what rf_interleave_aliased_use
    asks, through sysconf), or None where getconf cannot say."""
    try:
        done = subprocess.run(["getconf", "LEVEL1_DCACHE_ASSOC"], capture_output=True,
                              text=True, timeout=30)
        return int(done.stdout.strip()) if done.returncode == 0 else None
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None


def test_aliased_rows_setting_is_set_and_restored():
    """_set_interleave_aliased returns the setting before it; -1 restores this machine's
    default: in place (0) where the L1 data cache has at least 12 ways, else copied (1)."""
    with aliased_rows(1):
        assert _core._set_interleave_aliased(0) == 1
        assert _core._set_interleave_aliased(-1) == 0
        default = _core._set_interleave_aliased(-1)
    ways = l1_data_ways()
    if ways is None:
        pytest.skip("getconf LEVEL1_DCACHE_ASSOC gave no answer: the default is unchecked")
    assert default == (0 if ways >= 12 else 1), f"L1 data cache of {ways} ways"


def test_w_in_cache_is_set_and_restored():
    """_set_w_in_cache returns the value before it; 0 restores the default, 1 MiB."""
    with w_in_cache(12345):
        assert _core._set_w_in_cache(0) == 12345
        assert _core._set_w_in_cache(0) == 1 << 20


@pytest.mark.parametrize("batch", ["odd", "one"])
@pytest.mark.parametrize("kind", COMPILED)
def test_threaded_split_matches_one_thread_and_the_twin(path, kind, batch, dtype):
    """Problems large enough for the OpenMP split of each step (test_threads' shapes): at 2
    threads bitwise the 1-thread result of the same path, and the twin's."""
    shape = threaded_shape(kind, batch)
    p = random_problem(kind, *shape, dtype, seed=sum(shape))
    results = {}
    for threads in (1, 2):
        with threadpool_limits(threads, user_api="openmp"):
            results[threads] = run(kind, p, "cython")
    for name, want in results[1].items():
        np.testing.assert_array_equal(results[2][name], want, err_msg=name)
    assert_results_close(results[2], run(kind, p, "numpy"), dtype,
                         weight_grad_scales(kind, p))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", ["tanh", "sigmoid"])
def test_approximations(path, name, dtype):
    """_core._tanh and _core._sigmoid: test_approximations' error bounds, saturation and NaN."""
    approximations.test_relative_error(dtype, name)
    approximations.test_saturation_and_nan(dtype)


# --------------------------------------------------------------------- the switch

def test_simd_paths_are_the_cpus_best_last():
    paths = rnnfast.simd_paths()
    assert paths == ("baseline", "avx2", "avx512")[:len(paths)] and paths
    assert rnnfast.simd_path() in paths
    assert rnnfast.simd_paths is _core.simd_paths and rnnfast.set_simd_path is _core.set_simd_path


def test_simd_path_reports_what_was_set(keep_path):
    for name in rnnfast.simd_paths():
        assert rnnfast.set_simd_path(name) is None
        assert rnnfast.simd_path() == name
    rnnfast.set_simd_path("auto")
    assert rnnfast.simd_path() == rnnfast.simd_paths()[-1]


@pytest.mark.parametrize("name", ["bogus", "AVX2", "", " avx2", "x86-64-v3", None, 2])
def test_set_simd_path_refuses_unknown_names(keep_path, name):
    rnnfast.set_simd_path("baseline")
    with pytest.raises(ValueError, match="unknown SIMD path") as err:
        rnnfast.set_simd_path(name)
    assert all(value in str(err.value) for value in ACCEPTED), err.value
    assert rnnfast.simd_path() == "baseline"


def test_set_simd_path_refuses_paths_the_cpu_lacks(cpu_with):
    """On any machine: the rule, with a CPU that (it is told) runs the baseline only."""
    cpu_with("baseline")
    rnnfast.set_simd_path("baseline")
    for name in ("avx2", "avx512"):
        with pytest.raises(ValueError, match=f"cannot run the SIMD path '{name}'"):
            rnnfast.set_simd_path(name)
        assert rnnfast.simd_path() == "baseline"
    rnnfast.set_simd_path("auto")
    assert rnnfast.simd_path() == "baseline"


@pytest.mark.parametrize("name", PATHS)
def test_set_simd_path_refuses_what_this_cpu_lacks(keep_path, name):
    """The real CPU: a path it lacks is refused (never an illegal instruction)."""
    if name in rnnfast.simd_paths():
        pytest.skip(f"this CPU runs {name}")
    with pytest.raises(ValueError, match="cannot run"):
        rnnfast.set_simd_path(name)


def select_from_environment(monkeypatch, value):
    """What importing _core does with RNNFAST_SIMD=value (None: unset): the path it selects."""
    if value is None:
        monkeypatch.delenv("RNNFAST_SIMD", raising=False)
    else:
        monkeypatch.setenv("RNNFAST_SIMD", value)
    _core._simd_from_environment()
    return rnnfast.simd_path()


@pytest.mark.parametrize("value", ["bogus", "avx", "x86-64-v4", "sse2"])
def test_environment_unknown_value_warns_and_is_ignored(cpu_with, monkeypatch, value):
    cpu_with("baseline")
    with pytest.warns(RuntimeWarning, match=f"RNNFAST_SIMD='{value}' ignored") as record:
        assert select_from_environment(monkeypatch, value) == "baseline"
    assert all(name in str(record[0].message) for name in ACCEPTED), record[0].message


@pytest.mark.parametrize("value", ["avx2", "avx512"])
def test_environment_path_the_cpu_lacks_warns_and_takes_the_best(cpu_with, monkeypatch, value):
    cpu_with("baseline")
    with pytest.warns(RuntimeWarning, match=f"cannot run the SIMD path '{value}'"):
        assert select_from_environment(monkeypatch, value) == "baseline"


@pytest.mark.parametrize("value", [None, "", "auto", " Auto "])
def test_environment_auto(keep_path, monkeypatch, recwarn, value):
    assert select_from_environment(monkeypatch, value) == rnnfast.simd_paths()[-1]
    assert not recwarn.list


def test_environment_names_any_case(keep_path, monkeypatch, recwarn):
    for name in rnnfast.simd_paths():
        assert select_from_environment(monkeypatch, f" {name.upper()}\n") == name
    assert not recwarn.list


CHILD = """
import warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import rnnfast
    path = rnnfast.simd_path()
print(path)
for w in caught:
    print(w.category.__name__, w.message)
"""


def import_with(value, tmp_path):
    """(path, warnings) of a fresh interpreter importing rnnfast with RNNFAST_SIMD=value."""
    env = dict(os.environ, RNNFAST_SIMD=value)
    # from tmp_path: the checkout's source tree (no compiled module) must not come first
    lines = subprocess.run([sys.executable, "-c", CHILD], env=env, cwd=tmp_path, check=True,
                           capture_output=True, text=True, timeout=120).stdout.splitlines()
    return lines[0], lines[1:]


@pytest.mark.parametrize("name", PATHS)
def test_environment_variable_at_import(tmp_path, name):
    path, warned = import_with(name, tmp_path)
    if name in rnnfast.simd_paths():
        assert (path, warned) == (name, [])
    else:
        assert path == rnnfast.simd_paths()[-1]
        assert len(warned) == 1 and warned[0].startswith("RuntimeWarning"), warned
        assert f"cannot run the SIMD path '{name}'" in warned[0]


def test_environment_variable_bogus_at_import(tmp_path):
    path, warned = import_with("bogus", tmp_path)
    assert path == rnnfast.simd_paths()[-1]
    assert len(warned) == 1 and warned[0].startswith("RuntimeWarning"), warned
    assert "RNNFAST_SIMD='bogus' ignored" in warned[0]
    assert all(name in warned[0] for name in ACCEPTED), warned[0]


def test_forced_path_is_the_one_running():
    """Under RNNFAST_SIMD=<path> (CI's extra runs) the kernels run that path: a CPU without it
    would make such a run test another path, with only a warning to say so."""
    value = os.environ.get("RNNFAST_SIMD", "").strip().lower()
    if value in ("", "auto"):
        pytest.skip("RNNFAST_SIMD is not set")
    if value not in rnnfast.simd_paths():
        pytest.skip(f"RNNFAST_SIMD={value}: this CPU cannot run it "
                    f"(it runs {', '.join(rnnfast.simd_paths())})")
    assert rnnfast.simd_path() == value
