"""Threads: the compiled kernels release the GIL; concurrent calls must give bitwise the
results of the same calls run one after another.

- 4 threads, each with its own layer and data (training: forward + backward);
- 4 threads sharing one layer's weights for inference (``layer.eval()``);
- 4 threads sharing one set of weights through the functional API in training (each
  call has its own workspace: the supported way to compute gradients concurrently).

A layer object in *training* mode keeps its BPTT cache on itself, so one training layer
must not be shared between threads (docs/reliability.md says what happens; not tested
here because the outcome is a race).

Every thread starts at a barrier and repeats its calls, so that kernels really overlap;
each result is compared bitwise with a serial run of the same call.
"""
import threading

import numpy as np
import pytest

import rnnfast
from rnnfast import cells
from rnnfast import functional as F
import cells_for_tests as reg
from cells_for_tests import COMPILED, random_problem
from conftest import RTOL

N_THREADS = 4
REPEATS = 5
# the compiled kernels' threads: the kinds the compiled core has
CELLS = COMPILED
# (batch, seq_len, input, hidden). "regular": big enough that a call spends its time in the
# kernels (GIL released) and BLAS. "blas-sensitive": a shape whose BLAS products round
# differently with 1 and 2 BLAS threads (scipy's OpenBLAS 0.3.30; see docs/reliability.md),
# so that a change of BLAS threading under concurrency would show as a bitwise difference.
SHAPES = {"regular": (8, 40, 32, 64), "blas-sensitive": (257, 3, 33, 65)}
B, T, D, H = SHAPES["regular"]


def make_layer(cell, dtype, seed, backend="cython", shape=SHAPES["regular"]):
    _, _, D, H = shape
    return reg.make_layer(cell, D, H, dtype=dtype, backend=backend, seed=seed)


def data(cell, dtype, seed, shape=SHAPES["regular"]):
    B, T, D, H = shape
    p = random_problem(cell, B, T, D, H, dtype, seed=seed)
    state = reg.state_arg(cell, reg.problem_states(cell, p))
    dstate = reg.state_arg(cell, reg.problem_states(cell, p, "d", "_n"))
    return p["x"], state, p["dout"], dstate


def flat(*items):
    """Every array in a nest of tuples/lists/dicts, in order."""
    out = []
    for it in items:
        if isinstance(it, dict):
            out += flat(*[it[k] for k in sorted(it)])
        elif isinstance(it, (tuple, list)):
            out += flat(*it)
        elif it is not None:
            out.append(np.array(it, copy=True))
    return out


def run_threads(work, n=N_THREADS):
    """Run work(i) in n threads started together; return their results in order."""
    barrier = threading.Barrier(n)
    results, errors = [None] * n, []

    def target(i):
        try:
            barrier.wait()
            results[i] = work(i)
        except BaseException as e:      # re-raised in the main thread
            errors.append(e)

    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    if errors:
        raise errors[0]
    return results


def assert_bitwise(got, want):
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        np.testing.assert_array_equal(g, w, err_msg=f"array {i} differs from the serial run")


def train_step(layer, x, state, dout, dstate):
    out, s = layer(x, state)
    dx, ds = layer.backward(dout, dstate)
    # layer.grads' arrays are overwritten by the next backward: a snapshot of them
    return flat(out, s, dx, ds, {k: g.copy() for k, g in layer.grads.items()})


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize("cell", CELLS)
def test_threads_with_own_layers_match_serial(dtype, cell, shape):
    layers = [make_layer(cell, dtype, seed=i, shape=shape) for i in range(N_THREADS)]
    inputs = [data(cell, dtype, seed=100 + i, shape=shape) for i in range(N_THREADS)]
    serial = [train_step(layers[i], *inputs[i]) for i in range(N_THREADS)]

    def work(i):
        return [train_step(layers[i], *inputs[i]) for _ in range(REPEATS)]

    for i, reps in enumerate(run_threads(work)):
        for got in reps:
            assert_bitwise(got, serial[i])


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize("cell", CELLS)
def test_threads_sharing_an_eval_layer_match_serial(dtype, cell, shape):
    layer = make_layer(cell, dtype, seed=1, shape=shape).eval()
    inputs = [data(cell, dtype, seed=200 + i, shape=shape) for i in range(N_THREADS)]
    serial = [flat(layer(x, state)) for x, state, _, _ in inputs]
    params = {k: v.copy() for k, v in layer.params.items()}

    def work(i):
        x, state, _, _ = inputs[i]
        return [flat(layer(x, state)) for _ in range(REPEATS)]

    for i, reps in enumerate(run_threads(work)):
        for got in reps:
            assert_bitwise(got, serial[i])
    for k, v in params.items():
        np.testing.assert_array_equal(layer.params[k], v)


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize("cell", CELLS)
def test_threads_sharing_weights_functional_training_match_serial(dtype, cell, shape):
    """Shared weights, one workspace per call: concurrent training is fine this way."""
    layer = make_layer(cell, dtype, seed=2, shape=shape)
    weights = tuple(layer.params[k] for k in reg.param_names(cell))
    inputs = [data(cell, dtype, seed=300 + i, shape=shape) for i in range(N_THREADS)]

    def step(i):
        x, state, dout, dstate = inputs[i]
        out, finals, ws = reg.kernel_forward(F, cell, x, reg.as_states(cell, state), weights)
        grads = reg.kernel_backward(F, cell, dout, reg.as_states(cell, dstate), x, weights[0],
                                    weights[1], ws)
        return flat(out, finals, grads)

    serial = [step(i) for i in range(N_THREADS)]
    for i, reps in enumerate(run_threads(lambda i: [step(i) for _ in range(REPEATS)])):
        for got in reps:
            assert_bitwise(got, serial[i])


def _long_call(min_seconds=0.2, max_steps=1 << 20):
    """An eval LSTM call and its input, lengthened (doubling seq_len) until one call lasts at
    least ``min_seconds`` on this machine: the verdict below must not depend on how fast the
    machine is. Batch 1 and a wide hidden size keep the output small for the time it takes."""
    import time

    layer = rnnfast.LSTM(8, 256, seed=0).eval()
    rng = np.random.default_rng(0)
    steps = 256
    while True:
        x = rng.standard_normal((1, steps, 8)).astype(np.float32)
        t0 = time.perf_counter()
        layer(x)
        if time.perf_counter() - t0 >= min_seconds or steps >= max_steps:
            return layer, x
        steps *= 2


def test_kernels_release_the_gil():
    """While one long compiled call runs in a thread, the main thread keeps running Python.

    The call is an LSTM inference forward, lengthened until it lasts at least 0.2 s here
    (nearly all of it inside the kernel). The main thread stamps the clock in a loop
    meanwhile. A kernel holding the GIL would stop that loop for the whole call: one gap as
    long as the call. Released, the gaps are scheduling noise. The bound is relative (half
    the call's own duration, measured in the same run), and the call is made long enough
    by construction, so neither a fast nor a slow machine decides the verdict."""
    import time

    from threadpoolctl import threadpool_limits

    span = {}
    done = threading.Event()
    with threadpool_limits(1):                # 2 cores: the kernel thread and this one
        layer, x = _long_call()

        def call():
            span["start"] = time.perf_counter()
            layer(x)
            span["end"] = time.perf_counter()
            done.set()

        stamps = []
        th = threading.Thread(target=call)
        th.start()
        while not done.is_set():
            stamps.append(time.perf_counter())
        th.join()
    stamps = np.array(stamps)
    inside = stamps[(stamps > span["start"]) & (stamps < span["end"])]
    duration = span["end"] - span["start"]
    gaps = np.diff(np.concatenate([[span["start"]], inside, [span["end"]]]))
    # the same call lasted >= 0.2 s when timed alone; a kernel holding the GIL would leave
    # one gap of nearly the whole call
    assert len(inside) > 10, (len(inside), duration)
    assert gaps.max() < 0.5 * duration, (gaps.max(), duration)


@pytest.mark.parametrize("blas_threads", [1, 2])
@pytest.mark.parametrize("cell", CELLS)
def test_repeatable_for_a_fixed_blas_thread_count(dtype, cell, blas_threads):
    """Same call, same BLAS thread count: bitwise the same result, every time. (Across
    *different* thread counts results can differ in the last bits: not promised; measured
    by bench/thread_determinism.py.) The shape is one where 1 and 2 threads do differ."""
    from threadpoolctl import threadpool_limits

    shape = SHAPES["blas-sensitive"]
    layer = make_layer(cell, dtype, seed=3, shape=shape)
    inputs = data(cell, dtype, seed=400, shape=shape)
    with threadpool_limits(blas_threads, user_api="blas"):
        first = train_step(layer, *inputs)
        for _ in range(3):
            assert_bitwise(train_step(layer, *inputs), first)


# (batch, seq_len, input, hidden) whose per-step product has >= 2^21 multiply-adds
# (_simd.h RF_THREADS_MIN_WORK): there the products' panels and the elementwise pass's batch
# rows are shared among OpenMP's threads. Odd batch and hidden sizes: uneven row parts and
# partial panels.
# Batch 1: a single-row product, whose panels go four at a time (rf_micro_1x4) at any thread
# count; hidden over one k block (256), and a partial last panel.
THREADED_SHAPES = {"rnn_tanh": (40, 4, 17, 241), "rnn_relu": (40, 4, 17, 241),
                   "lstm": (33, 4, 17, 130)}
THREADED_BATCH_1 = {"rnn_tanh": (1, 3, 5, 1450), "rnn_relu": (1, 3, 5, 1450),
                    "lstm": (1, 3, 5, 730)}


def threaded_shape(cell, batch):
    """The shape above for the cell, or for a kind compiled later one derived the same way:
    hidden just past the 2^21 threshold (with a partial last panel), input 17 or 5."""
    table = THREADED_SHAPES if batch == "odd" else THREADED_BATCH_1
    if cell in table:
        return table[cell]
    B, T, D = (33, 4, 17) if batch == "odd" else (1, 3, 5)
    H = int(np.ceil(np.sqrt(1.1 * 2**21 / (B * cells.get(cell).gates)))) | 1
    return (B, T, D, H)


@pytest.mark.parametrize("batch", ["odd", "one"])
@pytest.mark.parametrize("cell", CELLS)
def test_openmp_split_products_match_one_thread_and_the_twin(dtype, cell, batch):
    """The threaded per-step path (2 OpenMP threads) gives bitwise the 1-thread result (each
    output value is computed by one thread, in the same order) and the NumPy twin's."""
    from threadpoolctl import threadpool_limits

    shape = threaded_shape(cell, batch)
    B, _, _, H = shape
    assert B * H * H * cells.get(cell).gates >= 2**21
    inputs = data(cell, dtype, seed=500, shape=shape)
    results = {}
    for threads in (1, 2):
        with threadpool_limits(threads, user_api="openmp"):
            layer = make_layer(cell, dtype, seed=5, shape=shape)
            results[threads] = train_step(layer, *inputs)
    assert_bitwise(results[2], results[1])
    twin = train_step(make_layer(cell, dtype, seed=5, backend="numpy", shape=shape), *inputs)
    # relative to each array's largest value (weight gradients are sums of B*T terms of
    # both signs); measured: at most 5.2e-7 (float32) and 7.4e-16 (float64)
    for i, (got, want) in enumerate(zip(results[2], twin)):
        scale = np.abs(want).max()
        np.testing.assert_allclose(got, want, rtol=RTOL[dtype], atol=RTOL[dtype] * scale,
                                   err_msg=f"array {i} differs from the NumPy twin")
