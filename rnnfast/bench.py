"""Benchmark grid: rnnfast (compiled) vs its NumPy twin vs PyTorch, against the GEMM roofline.

Run ``rnnfast-bench`` (installed with the package; ``python -m rnnfast.bench`` is the same
from any directory but the checkout's root; ``--help`` for options). For every cell of the
grid (size x cell type x pass) it times

- ``rnnfast``: the compiled core, ``backend="cython"``;
- ``numpy``:   the pure-NumPy twin, ``backend="numpy"``;
- ``torch``:   ``torch.nn.RNN`` / ``LSTM`` / ``GRU`` with the same weights, when importable;
- ``onnxruntime``: ONNX Runtime's RNN / LSTM / GRU operator with the same weights (inference
  only, so in the ``fwd`` cells), when ``onnx`` and ``onnxruntime`` are importable,

and prints the medians, how many times faster rnnfast is than each, and the GEMM floor:
the cell's FLOPs divided by the sgemm/dgemm rate measured in the same run (scipy's
OpenBLAS, which the compiled core calls, on large square matrices at the thread count in
force). ``% roofline`` is floor / rnnfast time. The target of the speed issue is
``rnnfast <= max(best peer / 10, floor / 0.89)`` at 1 thread, best peer being the faster of
NumPy and PyTorch. The GRU rows have their own target (the GRU issue's): faster than the
fastest peer by 1.1x (at tiny also 2x ONNX Runtime and 10x PyTorch), or floor / 0.89.

By default it runs in *quick* mode (``QUICK``: the tiny, small and medium cells, fewer
samples, a minute or so); ``--full`` times the whole grid with the full sampling budget
(``FULL``; several minutes). ``rnnfast-bench --full --threads 1,2 --markdown BENCHMARKS.md``
regenerates BENCHMARKS.md. The pytest-benchmark suite in ``bench/`` reuses ``GRID`` and
``build_callables`` from here.
"""
import argparse
import contextlib
import ctypes
import datetime
import gc
import json
import math
import os
import platform
import shlex
import statistics
import sys
import threading
import time
import tracemalloc
from dataclasses import dataclass

import numpy as np

import rnnfast
from rnnfast import cells

# ----------------------------------------------------------------------------- the grid
SIZES = {            # name: (batch, seq_len, input_size, hidden_size), batch-first
    "tiny": (1, 50, 8, 32),
    "small": (16, 100, 32, 64),
    "medium": (32, 100, 128, 256),
    "large": (64, 50, 512, 1024),
}
KINDS = ("rnn", "lstm", "gru")     # tanh RNN, LSTM, GRU
SPECS = {"rnn": cells.get("rnn_tanh"), "lstm": cells.get("lstm"),      # the registry's
         "gru": cells.get("gru")}
PASSES = ("fwd", "fwdbwd")         # inference forward; training forward + backward
IMPLS = ("rnnfast", "numpy", "torch", "onnxruntime")
PEERS = ("numpy", "torch", "onnxruntime")
ONE_THREAD = "rnnfast_1thread"     # rnnfast at 1 thread, timed within a multi-thread grid
TARGET_PEER_FACTOR = 10            # rnnfast <= best peer / 10 ...
TARGET_ROOFLINE = 0.89             # ... or <= floor / 0.89, whichever is larger
GRU_PEER_FACTOR = 1.1              # GRU: fastest peer / 1.1, at tiny also ORT / 2, torch / 10
GRU_TINY_FACTORS = {"onnxruntime": 2, "torch": 10}


@dataclass(frozen=True)
class Cell:
    size: str
    kind: str
    pass_: str

    @property
    def name(self):
        return f"{self.size}-{self.kind}-{self.pass_}"

    @property
    def dims(self):
        return SIZES[self.size]

    @property
    def flops(self):
        """Forward ``2*B*T*G*H*(D+H)``; forward + backward three times that."""
        B, T, D, H = self.dims
        fwd = 2 * B * T * SPECS[self.kind].gates * H * (D + H)
        return fwd if self.pass_ == "fwd" else 3 * fwd


GRID = tuple(Cell(s, k, p) for s in SIZES for k in KINDS for p in PASSES)


@dataclass(frozen=True)
class Mode:
    """What a run covers unless ``--cells``, ``--repeat`` or ``--budget`` say otherwise."""
    name: str
    cells: str             # a select_cells spec
    repeat: int            # at most this many timed rounds per cell
    budget: float          # seconds of sampling per implementation after which to stop
    one_thread_column: bool  # with > 1 thread, also time rnnfast at 1 thread in the same run
    gemm_every_cell: bool    # measure the GEMM rate before every cell (else before and after)

    def describe(self):
        what = ("the whole grid" if self.cells == "all" else
                f"the {self.cells.replace(',', ', ')} cells ({len(select_cells(self.cells))} of "
                f"{len(GRID)})")
        return (f"{what}, up to {self.repeat} timed rounds per cell (at least 3), fewer past "
                f"{self.budget:g} s of sampling per implementation"
                + ("" if self.one_thread_column else
                   ", without the same-run 1-thread column")
                + ("" if self.gemm_every_cell else
                   ", the GEMM roofline measured before and after the grid only"))


# The default: the table within about a minute on a 2-core machine. The large cells alone
# take longer than the rest of the grid (the NumPy twin's large LSTM fwd+bwd is seconds per
# call), and with more than one thread every sample waits SETTLE_S, which bounds the rounds.
QUICK = Mode("quick", "tiny,small,medium-gru", repeat=5, budget=0.5, one_thread_column=False,
             gemm_every_cell=False)
# BENCHMARKS.md: every cell, 20 rounds, and rnnfast at 1 thread beside every multi-thread run.
FULL = Mode("full", "all", repeat=20, budget=2.0, one_thread_column=True,
            gemm_every_cell=True)


def select_cells(spec):
    """The cells named by a comma-separated ``spec``; each item is a cell name
    (``tiny-lstm-fwd``), a prefix of one (``tiny-lstm``), or a size, kind or pass
    (``tiny``, ``lstm``, ``fwdbwd``). ``None`` or ``"all"``: the whole grid."""
    if spec is None or spec.strip() in ("", "all"):
        return list(GRID)
    chosen = set()
    for item in (s.strip().replace("fwd+bwd", "fwdbwd") for s in spec.split(",")):
        hits = {c for c in GRID if item == c.name or c.name.startswith(item + "-")
                or item in (c.size, c.kind, c.pass_)}
        if not hits:
            raise ValueError(f"--cells: {item!r} names no cell; cells are "
                             f"{', '.join(c.name for c in GRID)} (or a size, kind or pass)")
        chosen |= hits
    return [c for c in GRID if c in chosen]


def _import_torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def _have_onnxruntime():
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


# ----------------------------------------------------------------------------- callables
def build_callables(cell, dtype=np.float32, impls=IMPLS, seed=0, threads=1):
    """``{impl: fn}``: zero-argument callables running one pass of ``cell``.

    All implementations share the weights of one ``torch.nn`` module (mapped with
    ``rnnfast.from_torch``: ``Wx = weight_ih_l0.T``, ``Wh = weight_hh_l0.T``,
    ``b = bias_ih + bias_hh``) when torch is importable, else of an rnnfast layer, and the
    same input. ``fwd`` is an inference forward returning all outputs (eval mode, torch under
    ``no_grad``); ``fwdbwd`` a training forward and a backward from a gradient of ones on the
    last step's output, computing dx and every parameter gradient. Each callable returns
    ``out`` (fwd) or ``dx`` (fwdbwd) as a NumPy array or tensor, so results can be compared.
    ``torch`` is left out when torch is not importable; ``onnxruntime`` (with ``threads``
    intra-op threads) when onnx/onnxruntime are not, and from ``fwdbwd`` cells. ONNX
    Runtime's CPU kernels take time-major x only: it gets x so, prepared outside the timed
    call (its best case), and its callable's ``to_batch_first`` turns its result back.
    """
    B, T, D, H = cell.dims
    dtype = np.dtype(dtype)
    torch = _import_torch() if "torch" in impls else None
    x = np.random.default_rng(seed).standard_normal((B, T, D)).astype(dtype)
    fns = {}

    if torch is not None:
        torch.manual_seed(seed)
        Module = getattr(torch.nn, SPECS[cell.kind].torch_class)
        module = Module(D, H, batch_first=True)
        if dtype == np.float64:
            module = module.double()
        layers = {impl: rnnfast.from_torch(module, dtype=dtype, backend=backend)
                  for impl, backend in (("rnnfast", "cython"), ("numpy", "numpy"))}
        xt = torch.from_numpy(x.copy())
        if cell.pass_ == "fwd":
            module.eval()

            def torch_fn():
                with torch.no_grad():
                    return module(xt)[0]
        else:
            module.train()
            xt.requires_grad_(True)

            def torch_fn():
                xt.grad = None
                module.zero_grad(set_to_none=True)
                out, _ = module(xt)
                out[:, -1].sum().backward()
                return xt.grad
        fns["torch"] = torch_fn
    else:
        Layer = getattr(rnnfast, SPECS[cell.kind].layer)
        layers = {impl: Layer(D, H, dtype=dtype, backend=backend, seed=seed)  # same seed,
                  for impl, backend in (("rnnfast", "cython"), ("numpy", "numpy"))}  # weights

    dout = np.zeros((B, T, H), dtype)
    dout[:, -1] = 1
    for impl, layer in layers.items():
        if cell.pass_ == "fwd":
            layer.eval()
            fns[impl] = lambda layer=layer: layer(x)[0]
        else:
            layer.train()

            def train_step(layer=layer):
                layer(x)
                return layer.backward(dout)[0]
            # memory is measured from a layer without kept buffers (see _run_cell)
            train_step.release = layer.release_buffers
            fns[impl] = train_step
    if "onnxruntime" in impls and cell.pass_ == "fwd" and _have_onnxruntime():
        from rnnfast import _onnx_peer
        try:
            _, run_onnx = _onnx_peer.session(cell.kind, layers["rnnfast"], threads=threads)
        except Exception as e:      # its CPU provider has RNN and GRU in float32 only
            print(f"rnnfast.bench: no ONNX Runtime peer for {cell.name} in {dtype}: "
                  f"{str(e).splitlines()[0][:120]}", file=sys.stderr)
            return {impl: fns[impl] for impl in impls if impl in fns}
        x_tm = np.ascontiguousarray(x.transpose(1, 0, 2))

        def onnx_fn():
            return run_onnx(x_tm)[0]
        onnx_fn.to_batch_first = lambda y: np.asarray(y).transpose(1, 0, 2)
        fns["onnxruntime"] = onnx_fn
    return {impl: fns[impl] for impl in impls if impl in fns}


# ----------------------------------------------------------------------------- measuring
@dataclass
class Timing:
    median: float          # seconds per call
    samples: list          # seconds per call, one entry per timed sample
    number: int            # calls per sample
    first: object          # what the first (warm-up) call returned

    @property
    def spread(self):
        """Interquartile range over median: how noisy the samples were."""
        if len(self.samples) < 4:
            return (max(self.samples) - min(self.samples)) / self.median
        q = statistics.quantiles(self.samples, n=4)
        return (q[2] - q[0]) / self.median


def _sample(fn, number):
    t0 = time.perf_counter()
    for _ in range(number):
        fn()
    return time.perf_counter() - t0


# With more than one thread, a library's worker threads keep spinning after its call
# returns (OpenBLAS for up to 2^28 cycles, ~0.1 s; OpenMP pools for a while too), and on a
# 2-core machine they then take a core from whichever implementation is timed next (seen:
# rnnfast's single-threaded medium RNN forward 2.4x slower right after a NumPy sample).
# Each sample then waits this long after another implementation's sample.
SETTLE_S = 0.2
# After that sleep the cores are idle and come back slow: the first milliseconds of a
# sample ran up to 1.4x slower (tiny and small cells at 2 threads: rnnfast 0.69-0.73x "its
# own 1-thread time", the same code, because entering the 1-thread context did some work
# between sleep and sample). Busy waiting on the calling thread woke its core only: the
# first calls that woke a library's sleeping worker after it then took several times their
# time, both threads slow for ~10 ms (a Zen 5 VM, small bidirectional LSTM: the first
# shared region's faster thread 2.3-5.3 ms for 0.45 ms of work, the next one's 4.0-4.4 ms;
# torch's bidirectional LSTM 1.3-13 ms against 1.2; samples of 2-3 calls measured that
# wake-up, not the calls). So every sample is preceded by this long of the callable's own
# calls, untimed: a sample measures calls in a stream, as a loop makes them (a call after
# a pause: bench/contention.py and BENCHMARKS.md's cold-gap tables).
WAKE_S = 0.02


def _warm_up(fn, seconds):
    """Calls ``fn`` (at least once) until ``seconds`` went by."""
    end = time.perf_counter() + seconds
    fn()
    while time.perf_counter() < end:
        fn()


def time_callables(fns, repeat=20, budget=2.0, min_sample=1e-3, min_samples=3,
                   on_start=None, settle=0.0, contexts=None):
    """``{name: Timing}``: median seconds per call of each zero-argument callable in ``fns``.

    Each gets one warm-up call and (if fast) an inner loop calibrated so that one sample
    lasts ``>= min_sample`` seconds. Then the samples are taken round-robin, one per
    callable per round, starting one callable later each round, so that a burst of other
    work on the machine, or the one before it in the order, hits every implementation alike
    rather than whichever was being timed. Rounds stop at ``repeat``, or once ``budget``
    seconds per callable went by with at least ``min_samples`` rounds.
    The garbage collector is off while sampling, as in ``timeit``. ``on_start(name)`` is
    called before each warm-up (progress). ``settle``: seconds to wait before a sample that
    follows another callable's (SETTLE_S), then WAKE_S of that callable's own calls,
    untimed (neither counted in ``budget``). ``contexts``:
    ``{name: factory}`` of a context manager to run that callable's calls in (a thread
    count).
    """
    contexts = contexts or {}
    within = lambda name: contexts.get(name, contextlib.nullcontext)()  # noqa: E731
    settling = settle > 0 and len(fns) > 1
    first, number = {}, {}
    for name, fn in fns.items():
        if on_start is not None:
            on_start(name)
        with within(name):
            t0 = time.perf_counter()
            first[name] = fn()
            elapsed = time.perf_counter() - t0
            number[name] = 1
            if elapsed < 100 * min_sample:       # fast: calibrate, which also warms up more
                while (t := _sample(fn, number[name])) < min_sample:
                    number[name] = max(2 * number[name], math.ceil(
                        1.2 * number[name] * min_sample / max(t, 1e-9)))
    samples = {name: [] for name in fns}
    names = list(fns)
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        start, rounds, slept = time.perf_counter(), 0, 0.0
        while rounds < max(repeat, 1) and (rounds < min_samples or
                                           time.perf_counter() - start - slept
                                           < budget * len(fns)):
            # the order rotates by one each round: a sample's predecessor (whose worker
            # threads may still spin) is not always the same implementation (the 1-thread
            # rnnfast sample always followed PyTorch's, the 2-thread one always rnnfast's)
            for name in names[rounds % len(names):] + names[:rounds % len(names)]:
                fn = fns[name]
                if settling:
                    time.sleep(settle)
                    slept += settle
                with within(name):
                    if settling:
                        t_warm = time.perf_counter()
                        _warm_up(fn, WAKE_S)
                        slept += time.perf_counter() - t_warm
                    samples[name].append(_sample(fn, number[name]) / number[name])
            rounds += 1
    finally:
        if gc_was_enabled:
            gc.enable()
    return {name: Timing(statistics.median(samples[name]), samples[name], number[name],
                         first[name]) for name in fns}


def gemm_rate(dtype=np.float32, n=2048, repeat=5):
    """FLOP/s of scipy's sgemm/dgemm (the OpenBLAS the compiled core calls) on ``n x n``
    Fortran-ordered matrices at the thread count in force: the best of ``repeat`` calls
    after a warm-up, i.e. the roofline."""
    from scipy.linalg import blas
    gemm = blas.sgemm if np.dtype(dtype) == np.float32 else blas.dgemm
    rng = np.random.default_rng(0)
    a, b = (np.asfortranarray(rng.standard_normal((n, n)).astype(dtype)) for _ in range(2))
    c = np.zeros((n, n), dtype, order="F")
    gemm(1.0, a, b, beta=0.0, c=c, overwrite_c=1)
    best = min(_sample(lambda: gemm(1.0, a, b, beta=0.0, c=c, overwrite_c=1), 1)
               for _ in range(repeat))
    return 2 * n**3 / best


def traced_peak(fn):
    """Peak bytes allocated during one call of ``fn``, by tracemalloc (which sees NumPy's
    array allocations, hence the compiled core's, which allocates through NumPy)."""
    gc.collect()
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _malloc_trim():
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).malloc_trim(0)


def rss_peak_delta(fn, interval=2e-4):
    """Peak resident-memory growth during one call of ``fn`` (psutil, sampled by a thread
    every ``interval`` s after returning freed heap memory to the OS), or None without
    psutil. Approximate: page-granular and blind to spikes shorter than ``interval``."""
    try:
        import psutil
    except ImportError:
        return None
    proc = psutil.Process()
    gc.collect()
    _malloc_trim()
    base = peak = proc.memory_info().rss
    done = threading.Event()

    def sampler():
        nonlocal peak
        while not done.is_set():
            peak = max(peak, proc.memory_info().rss)
            time.sleep(interval)

    thread = threading.Thread(target=sampler, daemon=True)
    thread.start()
    try:
        fn()
    finally:
        done.set()
        thread.join()
    return max(peak, proc.memory_info().rss) - base


def _as_numpy(a):
    return a.detach().numpy() if hasattr(a, "detach") else np.asarray(a)


# ----------------------------------------------------------------------------- threads
def blas_threads():
    """The BLAS thread count in force (the largest over the loaded BLAS libraries: scipy's
    OpenBLAS for the compiled core, NumPy's for the twin), or None without threadpoolctl."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    counts = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
    return max(counts) if counts else None


@contextlib.contextmanager
def limit_threads(n):
    """Run with ``n`` threads in every BLAS/OpenMP pool (threadpoolctl) and in torch;
    ``n=None`` keeps the BLAS count in force and matches torch to it."""
    torch = _import_torch()
    torch_before = torch.get_num_threads() if torch is not None else None
    if n is None:
        limiter = contextlib.nullcontext()
    else:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            raise SystemExit("rnnfast.bench: --threads needs threadpoolctl to set the BLAS "
                             "thread count: pip install threadpoolctl (or rnnfast[bench])"
                             ) from None
        limiter = threadpool_limits(limits=n)
    with limiter:
        if torch is not None:
            matched = n if n is not None else blas_threads()
            if matched:
                torch.set_num_threads(matched)
        try:
            yield
        finally:
            if torch is not None:
                torch.set_num_threads(torch_before)


# ----------------------------------------------------------------------------- running
class _Progress:
    """tqdm on stderr if installed, else a plain stderr line rewritten in place."""

    def __init__(self, total, enabled=True):
        self.total, self.count, self.enabled, self.bar = total, 0, enabled, None
        if enabled:
            try:
                from tqdm import tqdm
                self.bar = tqdm(total=total, file=sys.stderr, unit="run", leave=False)
            except ImportError:
                pass

    def step(self, label):
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_description(label, refresh=False)
            self.bar.update(1)
        else:
            self.count += 1
            print(f"\r[{self.count}/{self.total}] {label:<48}", end="", file=sys.stderr,
                  flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()
        elif self.enabled:
            print(file=sys.stderr)


def run_grid(cells, dtype=np.float32, threads=None, impls=IMPLS, repeat=20, budget=2.0,
             gemm_size=2048, measure_memory=True, progress=True, one_thread_column=True,
             gemm_every_cell=True):
    """Time ``cells`` at ``threads`` threads; a JSON-able dict (see ``main``).
    ``one_thread_column``: with more than one thread, also time rnnfast at 1 thread in the
    same round-robin (``vs_1thread``). ``gemm_every_cell``: measure the GEMM rate before
    each cell too, not only before and after the grid."""
    dtype = np.dtype(dtype)
    if _import_torch() is None:
        impls = tuple(i for i in impls if i != "torch")
    result = {"threads": threads, "dtype": dtype.name, "impls": list(impls), "cells": []}
    with limit_threads(threads):
        torch = _import_torch()
        result["blas_threads"] = blas_threads()
        result["torch_threads"] = torch.get_num_threads() if torch is not None else None
        result["gemm_size"] = gemm_size
        result["load_avg_1min"] = _load_avg()
        # The GEMM rate is measured before the grid, before each cell and after the grid;
        # the highest is the roofline: neither another process busy on the cores nor this
        # virtual machine's drifting speed during one measurement can lower it.
        rates = [gemm_rate(dtype, gemm_size)]
        bar = _Progress(len(cells) * len(impls), progress)
        try:
            for cell in cells:
                if gemm_every_cell:
                    rates.append(gemm_rate(dtype, gemm_size, repeat=2))
                result["cells"].append(_run_cell(cell, dtype, impls, repeat, budget,
                                                 measure_memory, bar, threads,
                                                 one_thread_column))
                if gemm_every_cell:
                    result["cells"][-1]["gemm_flops_per_s_before"] = rates[-1]
        finally:
            bar.close()
        rates.append(gemm_rate(dtype, gemm_size))
        result["load_avg_1min_after"] = _load_avg()
    result["gemm_flops_per_s_measured"] = rates
    result["gemm_every_cell"] = gemm_every_cell
    result["gemm_flops_per_s"] = rate = max(rates)
    if min(rates) < 0.9 * rate:
        print(f"rnnfast.bench: the GEMM rate varied during the run ({min(rates) / 1e9:.0f} to "
              f"{rate / 1e9:.0f} GFLOP/s): the machine's speed drifted or something else used "
              "the cores; absolute timings are noisy", file=sys.stderr)
    for row in result["cells"]:
        row["floor_s"] = row["flops"] / rate
        _targets(row)
    return result


def _load_avg():
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def _run_cell(cell, dtype, impls, repeat, budget, measure_memory, bar, threads,
              one_thread_column=True):
    B, T, D, H = cell.dims
    n_threads = threads or blas_threads() or 1
    fns = build_callables(cell, dtype, impls, threads=n_threads)
    row = {"name": cell.name, "size": cell.size, "kind": cell.kind, "pass": cell.pass_,
           "batch": B, "seq_len": T, "input_size": D, "hidden_size": H,
           "flops": cell.flops,
           "time_s": {}, "min_s": {}, "spread": {}, "samples_s": {}, "number": {},
           "memory_bytes": {}, "memory_method": {}, "max_abs_diff": {}}
    label = f" ({threads} thr)" if threads else ""
    contexts = {}
    if one_thread_column and n_threads > 1 and "rnnfast" in fns:
        # rnnfast at 1 thread in the same round-robin: the issue's "never slower than its own
        # 1-thread time" compared at the same moment (this VM's speed drifts between grids)
        fns[ONE_THREAD] = fns["rnnfast"]
        contexts[ONE_THREAD] = lambda: limit_threads(1)
    timings = time_callables(fns, repeat=repeat, budget=budget,
                             on_start=lambda impl: bar.step(f"{cell.name} {impl}{label}"),
                             settle=SETTLE_S if n_threads > 1 else 0.0, contexts=contexts)
    reference = _as_numpy(timings["rnnfast"].first)
    for impl, timing in timings.items():
        row["time_s"][impl] = timing.median
        row["min_s"][impl] = min(timing.samples)
        row["spread"][impl] = timing.spread
        row["samples_s"][impl] = timing.samples
        row["number"][impl] = timing.number
        if impl != "rnnfast":      # the same weights and input must give the same numbers
            result = getattr(fns[impl], "to_batch_first", lambda y: y)(timing.first)
            row["max_abs_diff"][impl] = float(np.max(np.abs(_as_numpy(result) - reference)))
    del timings
    if measure_memory:
        for impl, fn in fns.items():
            if impl == ONE_THREAD:
                continue
            if impl in ("torch", "onnxruntime"):     # native allocations: RSS
                row["memory_bytes"][impl], row["memory_method"][impl] = rss_peak_delta(fn), "rss"
            else:
                # a training layer keeps its workspace between calls: counted by measuring
                # a call that has to allocate it again
                getattr(fn, "release", lambda: None)()
                row["memory_bytes"][impl] = traced_peak(fn)
                row["memory_method"][impl] = "tracemalloc"
    tol = 1e-3 if dtype == np.float32 else 1e-9
    scale = max(1.0, float(np.max(np.abs(reference))))
    for impl, diff in row["max_abs_diff"].items():
        if diff > tol * scale:
            print(f"\nrnnfast.bench: WARNING {cell.name}: {impl} differs from rnnfast by "
                  f"{diff:.3g} (max abs); the implementations do not compute the same thing",
                  file=sys.stderr)
    return row


def _targets(row):
    """Ratios, % of roofline and the issue's target, added to a cell's row (with floor_s)."""
    t = row["time_s"]
    ours = t["rnnfast"]
    row["speedup"] = {impl: t[impl] / ours for impl in t if impl not in ("rnnfast", ONE_THREAD)}
    if ONE_THREAD in t:
        row["vs_1thread"] = t[ONE_THREAD] / ours       # > 1: faster than at 1 thread
    row["roofline_fraction"] = row["floor_s"] / ours
    every_peer = {impl: t[impl] for impl in PEERS if impl in t}
    row["fastest_peer"] = fastest = min(every_peer, key=every_peer.get)
    row["vs_fastest_peer"] = every_peer[fastest] / ours
    by_floor = row["floor_s"] / TARGET_ROOFLINE
    if row["kind"] == "gru":
        # the GRU issue's target: ahead of the fastest peer (ONNX Runtime included) by 1.1x,
        # at tiny also 2x ONNX Runtime and 10x PyTorch
        bounds = {fastest: every_peer[fastest] / GRU_PEER_FACTOR}
        if row["size"] == "tiny":
            bounds.update({p: t[p] / f for p, f in GRU_TINY_FACTORS.items() if p in t})
        best = min(bounds, key=bounds.get)
        by_peer = bounds[best]
    else:
        # the speed issue's: a tenth of the faster of NumPy and PyTorch
        peers = {impl: t[impl] for impl in ("numpy", "torch") if impl in t}
        best = min(peers, key=peers.get)
        by_peer = peers[best] / TARGET_PEER_FACTOR
    row["best_peer"] = best
    row["target_s"] = max(by_peer, by_floor)
    row["target_bound"] = "peer" if by_peer >= by_floor else "roofline"
    row["target_met"] = bool(ours <= row["target_s"])


# ----------------------------------------------------------------------------- reporting
def _ms(seconds):
    if seconds is None:
        return "n/a"
    ms = seconds * 1e3
    return f"{ms:.0f}" if ms >= 100 else f"{ms:.3g}"


def _mem(nbytes):
    if nbytes is None:
        return "n/a"
    if nbytes < 1024**2:
        return f"{nbytes / 1024:.0f} KB"
    return f"{nbytes / 1024**2:.1f} MB"


COLUMNS = ("cell", "B,T,D,H", "rnnfast ms", "NumPy ms", "PyTorch ms", "ORT ms", "vs NumPy",
           "vs PyTorch", "vs ORT", "vs fastest peer", "floor ms", "% roofline", "target ms",
           "met?", "mem rnnfast", "mem NumPy", "mem PyTorch (RSS)", "noise")


ONE_THREAD_COLUMNS = ("rnnfast 1-thread ms (same run)", "vs 1 thread")


def format_table(run, markdown=False):
    """The grid of one run as an aligned text table or a markdown table."""
    same_run_1thread = all("vs_1thread" in r for r in run["cells"])
    columns = COLUMNS + (ONE_THREAD_COLUMNS if same_run_1thread else ())
    rows = []
    for r in run["cells"]:
        t, x, mem = r["time_s"], r["speedup"], r["memory_bytes"]
        rows.append((
            r["name"].replace("fwdbwd", "fwd+bwd"),
            f"{r['batch']},{r['seq_len']},{r['input_size']},{r['hidden_size']}",
            _ms(t["rnnfast"]), _ms(t.get("numpy")), _ms(t.get("torch")),
            _ms(t.get("onnxruntime")),
            f"{x['numpy']:.2f}x" if "numpy" in x else "n/a",
            f"{x['torch']:.2f}x" if "torch" in x else "n/a",
            f"{x['onnxruntime']:.2f}x" if "onnxruntime" in x else "n/a",
            f"{r['vs_fastest_peer']:.2f}x ({r['fastest_peer']})",
            _ms(r["floor_s"]), f"{100 * r['roofline_fraction']:.0f}%",
            _ms(r["target_s"]), "yes" if r["target_met"] else "NO",
            _mem(mem.get("rnnfast")), _mem(mem.get("numpy")), _mem(mem.get("torch")),
            f"{100 * max(r['spread'].values()):.0f}%")
            + ((_ms(t[ONE_THREAD]), f"{r['vs_1thread']:.2f}x") if same_run_1thread else ()))
    if markdown:
        lines = ["| " + " | ".join(columns) + " |",
                 "|" + "|".join("---" if i < 2 or i == COLUMNS.index("met?") else "--:"
                                for i in range(len(columns))) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(str(v)) for v in col) for col in zip(columns, *rows)]
    fmt = lambda vals: "  ".join(  # noqa: E731
        str(v).ljust(w) if i < 2 else str(v).rjust(w) for i, (v, w) in enumerate(zip(vals, widths)))
    return "\n".join([fmt(columns), fmt("-" * w for w in widths)] + [fmt(r) for r in rows])


def _run_header(run):
    gemm = "sgemm" if run["dtype"] == "float32" else "dgemm"
    rates = run["gemm_flops_per_s_measured"]
    load = "/".join("n/a" if run[k] is None else f"{run[k]:.2f}"
                    for k in ("load_avg_1min", "load_avg_1min_after"))
    return (f"{run['blas_threads'] or '?'} BLAS thread(s), torch threads "
            f"{run['torch_threads'] if run['torch_threads'] is not None else 'n/a'}, "
            f"{run['dtype']}; roofline {run['gemm_flops_per_s'] / 1e9:.1f} GFLOP/s (best {gemm} "
            f"{run['gemm_size']}x{run['gemm_size']} rate measured before"
            f"{', during' if run.get('gemm_every_cell', True) else ''} and after the "
            f"grid; lowest {min(rates) / 1e9:.1f}); 1-min load average before/after: {load}")


def environment():
    """Machine and versions, for the report."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            info = dict(ln.split(":", 1) for ln in f.read().split("\n\n")[0].splitlines()
                        if ":" in ln)
        info = {k.strip(): v.strip() for k, v in info.items()}
        flags = set(info.get("flags", "").split())
        isa = next((name for flag, name in (("avx512f", "AVX-512"), ("avx2", "AVX2"))
                    if flag in flags), "no AVX2")
        cpu = (f"{info.get('model name', cpu)} (family {info.get('cpu family', '?')} model "
               f"{info.get('model', '?')}, {isa}"
               f"{', hypervisor' if 'hypervisor' in flags else ''})")
    import scipy
    torch = _import_torch()
    commit = None
    with contextlib.suppress(Exception):
        import subprocess
        git = lambda *a: subprocess.run(  # noqa: E731
            ["git", "-C", os.path.dirname(rnnfast.__file__), *a], capture_output=True,
            text=True, timeout=10, check=True).stdout.strip()
        commit = git("rev-parse", "--short", "HEAD")
        if git("status", "--porcelain", "--untracked-files=no"):
            commit += " (with uncommitted changes)"
    env = {"cpu": cpu, "cpu_count": os.cpu_count(), "platform": platform.platform(),
           "python": platform.python_version(), "numpy": np.__version__,
           "scipy": scipy.__version__, "torch": torch.__version__ if torch else None,
           "rnnfast": rnnfast.__version__, "rnnfast_path": os.path.dirname(rnnfast.__file__),
           "rnnfast_commit": commit,
           "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
    with contextlib.suppress(ImportError):
        from threadpoolctl import threadpool_info
        owner = lambda path: next((lib for lib in ("scipy", "numpy")  # noqa: E731
                                   if f"{os.sep}{lib}" in path), os.path.basename(path))
        env["blas"] = sorted({f"{owner(p['filepath'])}'s {p['internal_api']} {p['version']} "
                              f"({p.get('architecture')})"
                              for p in threadpool_info() if p["user_api"] == "blas"})
    return env


def format_markdown(report):
    """A ready BENCHMARKS.md: environment, the command, how to read, one table per run."""
    env = report["environment"]
    out = [
        "# rnnfast benchmarks",
        "",
        "Regenerate with (after `pip install \".[bench]\"` in the checkout; from any "
        "directory):",
        "",
        "```",
        report["command"],
        "```",
        "",
        *([f"- Quick mode: {len(report['cells'])} of {len(GRID)} cells "
           f"({', '.join(report['cells'])}) and a small sampling budget; `--full` times the "
           "whole grid"] if report.get("mode") == "quick" else []),
        f"- Machine: {env['cpu']}, {env['cpu_count']} logical CPUs; {env['platform']}",
        f"- Python {env['python']}, numpy {env['numpy']}, scipy {env['scipy']}, "
        f"torch {env['torch'] or 'not installed'}, rnnfast {env['rnnfast']}"
        + (f" at commit {env['rnnfast_commit']}" if env.get("rnnfast_commit") else ""),
        f"- BLAS: {'; '.join(env.get('blas', ['unknown (no threadpoolctl)']))} (the compiled "
        "core calls scipy's, the NumPy twin NumPy's)",
        f"- Run {env['date']}. Each section gives the 1-minute load average before and after "
        f"its grid: anything well above 0 means other work shared the {env['cpu_count']} "
        "cores and the timings are noisy (see also the `noise` column)",
        f"- Timing: dtype {report['dtype']}; per cell, after a warm-up of each "
        f"implementation, up to {report['repeat']} rounds of one sample per implementation "
        "(round-robin, starting one implementation later each round, so that load from "
        "other processes and the previous sample's spinning threads hit all alike; at least "
        f"3 rounds, fewer past {report['budget']} s per implementation); each sample >= 1 "
        "ms (inner loop for fast calls); the median is reported. With more than one thread, each "
        f"sample waits {SETTLE_S} s after the previous implementation's, so that its idle "
        "worker threads (which spin for a while after a call) have gone to sleep, then "
        f"makes {WAKE_S * 1e3:.0f} ms of its own calls, untimed (a sample measures calls "
        "in a stream, not the wake-up of sleeping workers)",
        "",
        "Columns: median time per call of rnnfast (compiled core, `backend=\"cython\"`), its "
        "NumPy twin (`backend=\"numpy\"`) and `torch.nn.RNN`/`LSTM` with the same weights; "
        "`vs X` = X's time / rnnfast's (how many times faster rnnfast is); `floor` = FLOPs / "
        "the best sgemm (dgemm) rate measured in the same run on large square matrices "
        "(forward `2*B*T*G*H*(D+H)`, forward+backward 3x that); `% roofline` = floor / "
        "rnnfast time; `target` = max(best peer / 10, floor / 0.89), the faster of NumPy and "
        "PyTorch being the best peer (the issue's target is defined at 1 thread; at other "
        "thread counts it is shown for information); `mem` = peak extra memory of one call "
        "(tracemalloc for rnnfast and NumPy, resident-set growth sampled by psutil for "
        "PyTorch, approximate); `noise` = the largest interquartile range / median of the "
        "cell's samples over the three implementations (range / median below 4 samples). "
        "`fwd` is an inference forward returning all outputs; "
        "`fwd+bwd` a training forward and backward from a gradient on the last step's "
        "output, computing dx and all parameter gradients. Cells: tanh RNN and LSTM, "
        "batch-first, sizes `B,T,D,H` = batch, seq_len, input, hidden.",
    ]
    for run in report["runs"]:
        n = run["threads"] if run["threads"] is not None else run["blas_threads"]
        title = f"{n} thread{'s' if n != 1 else ''}" if n else "Default thread count"
        met = sum(r["target_met"] for r in run["cells"])
        out += ["", f"## {title}", "", _run_header(run) + ".",
                f"Targets met: {met} of {len(run['cells'])}." + _one_thread_summary(run), "",
                format_table(run, True)]
    return "\n".join(out) + "\n"


def _one_thread_summary(run):
    """The multi-thread targets, from the same-run 1-thread timings, or ''."""
    rows = run["cells"]
    if not rows or not all("vs_1thread" in r for r in rows):
        return ""
    not_slower = sum(r["vs_1thread"] >= 1 for r in rows)
    worst = min(rows, key=lambda r: r["vs_1thread"])
    large = [r for r in rows if r["size"] == "large"]
    text = (f" Against rnnfast at 1 thread in the same round-robin (`vs 1 thread` = 1-thread "
            f"time / this time): not slower in {not_slower} of {len(rows)} cells (lowest "
            f"{worst['vs_1thread']:.2f}x, {worst['name'].replace('fwdbwd', 'fwd+bwd')})")
    if large:
        text += ("; large cells " + ", ".join(f"{r['vs_1thread']:.2f}x" for r in large)
                 + " (target >= 1.6x)")
    return text + "."


def plot(report, path):
    """Bar chart of the medians per cell (log scale) with the floor and target marked."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("rnnfast.bench: --plot needs matplotlib: pip install matplotlib "
                         "(or rnnfast[bench])") from None
    runs = report["runs"]
    n_cells = len(runs[0]["cells"])
    fig, axes = plt.subplots(1, len(runs), figsize=(7 * len(runs), 0.45 * n_cells + 1.5),
                             squeeze=False)
    for ax, run in zip(axes[0], runs):
        names = [r["name"] for r in run["cells"]]
        y = np.arange(len(names))
        impls = run["impls"]
        h = 0.8 / len(impls)
        for i, impl in enumerate(impls):
            ax.barh(y + (i - (len(impls) - 1) / 2) * h,
                    [r["time_s"].get(impl, np.nan) * 1e3 for r in run["cells"]], h, label=impl)
        ax.scatter([r["floor_s"] * 1e3 for r in run["cells"]], y, marker="|", s=200,
                   color="k", label="GEMM floor", zorder=3)
        ax.scatter([r["target_s"] * 1e3 for r in run["cells"]], y, marker="x", color="r",
                   label="target", zorder=3)
        ax.set_xscale("log")
        ax.set_yticks(y, names)
        ax.invert_yaxis()
        ax.set_xlabel("median time per call (ms, log)")
        n = run["blas_threads"]
        ax.set_title(f"{n or '?'} thread{'' if n == 1 else 's'}, {run['dtype']}")
        ax.grid(axis="x", which="both", alpha=0.3)
    fig.legend(*axes[0][0].get_legend_handles_labels(), loc="upper center",
               ncol=len(runs[0]["impls"]) + 2, fontsize="small")
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / fig.get_figheight()))
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------------- CLI
def _thread_list(text):
    try:
        counts = [int(t) for t in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or N,M,..., got {text!r}") from None
    if any(n < 1 for n in counts):
        raise argparse.ArgumentTypeError("thread counts must be >= 1")
    return counts


def _positive_int(text):
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {n}")
    return n


def _seconds(text):
    try:
        t = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not t >= 0 or math.isinf(t):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return t


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="rnnfast-bench",
        description="Time rnnfast (compiled), its NumPy twin and PyTorch on a grid of tanh "
                    "RNN/LSTM cells and compare with the GEMM roofline. Also runs as "
                    "python -m rnnfast.bench (from any directory but a source checkout's "
                    f"root). Quick mode (the default): {QUICK.describe()}. --full: "
                    f"{FULL.describe()}.",
        epilog="Cells: " + ", ".join(c.name for c in GRID) + ". Regenerate BENCHMARKS.md: "
               "rnnfast-bench --full --threads 1,2 --markdown BENCHMARKS.md")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", dest="mode", action="store_const", const=QUICK,
                      help=f"the default: {QUICK.describe()} (about a minute on 2 cores)")
    mode.add_argument("--full", dest="mode", action="store_const", const=FULL,
                      help=f"{FULL.describe()}: several minutes; what BENCHMARKS.md holds")
    p.add_argument("--threads", type=_thread_list, default=None, metavar="N[,M...]",
                   help="BLAS/OpenMP threads (threadpoolctl) and torch.set_num_threads; a "
                        "comma list runs the grid once per count (default: the BLAS count "
                        "in force, torch matched to it)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--cells", default=None,
                   help="comma-separated cells, prefixes, sizes, kinds or passes, e.g. "
                        "'tiny-lstm-fwd,medium-rnn-fwdbwd' or 'tiny,small', or 'all' "
                        f"(default: {QUICK.cells}; with --full, all {len(GRID)})")
    p.add_argument("--repeat", type=_positive_int, default=None,
                   help="timed samples per implementation and cell, taken round-robin over "
                        "the implementations; the median is reported (default "
                        f"{QUICK.repeat}, with --full {FULL.repeat}; fewer, but at least 3, "
                        "past --budget)")
    p.add_argument("--budget", type=_seconds, default=None,
                   help="seconds of sampling per implementation and cell after which to stop "
                        f"once 3 samples are in (default {QUICK.budget:g}, with --full "
                        f"{FULL.budget:g})")
    p.add_argument("--no-torch", action="store_true", help="skip PyTorch even if importable")
    p.add_argument("--no-onnx", action="store_true",
                   help="skip ONNX Runtime even if onnx and onnxruntime are importable")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory calls")
    p.add_argument("--gemm-size", type=_positive_int, default=2048,
                   help="n of the n x n GEMM that measures the roofline (default 2048)")
    p.add_argument("--json", metavar="FILE", help="write all results (with samples) as JSON")
    p.add_argument("--plot", metavar="FILE.png", help="bar chart of the results (matplotlib)")
    p.add_argument("--markdown", metavar="FILE.md",
                   help="also write the results as a complete markdown document (e.g. "
                        "BENCHMARKS.md; '-' prints it to stdout instead of the text tables)")
    p.add_argument("--quiet", action="store_true", help="no progress line on stderr")
    args = p.parse_args(argv)
    args.mode = args.mode or QUICK
    try:
        args.cells = select_cells(args.mode.cells if args.cells is None else args.cells)
    except ValueError as e:
        p.error(str(e))
    args.repeat = args.mode.repeat if args.repeat is None else args.repeat
    args.budget = args.mode.budget if args.budget is None else args.budget
    return args


def _command(argv):
    """The command line that reproduces this report, without output-only options."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("--json", "--plot"):
            skip = True
        elif not (arg == "--quiet" or arg.startswith(("--json=", "--plot="))):
            kept.append(arg)
    return " ".join(["rnnfast-bench", *map(shlex.quote, kept)])


def main(argv=None):
    """The ``rnnfast-bench`` command: prints the tables (and writes the files asked for);
    returns 0 (its exit status). ``run`` does the same and returns the report."""
    run(argv)
    return 0


def run(argv=None):
    """Parse ``argv`` (default: ``sys.argv[1:]``), time, print and write as ``main``;
    returns the report: ``{"command", "environment", "mode", "dtype", "repeat", "budget",
    "runs": [one run_grid result per thread count]}``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    try:
        rnnfast.functional.compiled_core()
    except ImportError as e:
        raise SystemExit(f"rnnfast-bench: {e}") from None
    if args.plot:                               # fail now, not after minutes of timing
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise SystemExit("rnnfast.bench: --plot needs matplotlib: pip install matplotlib "
                             "(or rnnfast[bench])") from None
    impls = tuple(i for i in IMPLS if not (i == "torch" and args.no_torch)
                  and not (i == "onnxruntime" and (args.no_onnx or not _have_onnxruntime())))
    if "torch" in impls and _import_torch() is None:
        print("rnnfast.bench: torch is not importable; timing rnnfast and NumPy only",
              file=sys.stderr)
    report = {"command": _command(argv),
              "environment": environment(), "mode": args.mode.name,
              "cells": [c.name for c in args.cells], "dtype": args.dtype,
              "repeat": args.repeat, "budget": args.budget, "runs": []}
    if args.mode is QUICK and not args.quiet and args.markdown != "-":
        print(f"rnnfast-bench: quick mode, {QUICK.describe()}; --full for the whole grid "
              "(several minutes)", file=sys.stderr)
    for n in args.threads or [None]:
        grid = run_grid(args.cells, np.dtype(args.dtype), n, impls, args.repeat, args.budget,
                        args.gemm_size, not args.no_memory, not args.quiet,
                        args.mode.one_thread_column, args.mode.gemm_every_cell)
        report["runs"].append(grid)
        if args.markdown != "-":
            print(f"\n{_run_header(grid)}\n{format_table(grid)}", flush=True)
    if args.markdown == "-":
        print(format_markdown(report), end="")
    elif args.markdown:
        with open(args.markdown, "w") as f:
            f.write(format_markdown(report))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    if args.plot:
        plot(report, args.plot)
    return report


if __name__ == "__main__":
    sys.exit(main())
