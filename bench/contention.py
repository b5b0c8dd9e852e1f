"""Threads against a busy machine and against each other (issue: threads never slower).

Three measurements, each against rnnfast's own 1-thread time in the same process:

1. ``busy``: another process keeps one of the two cores busy (a Python spin loop). Call
   times of the default threading and of 1 thread (threadpoolctl, every library), taken
   alternately, median and 90th percentile, for LSTM(8, 64) on a (450, 8, 8) batch (eval
   forward, training forward, forward+backward), the medium and large grid cells, and tiny
   bidirectional layers (whose two directions run side by side while the second thread is
   awake).
2. ``concurrent``: two Python threads calling one shared ``eval()`` layer (LSTM(64, 128),
   (32, 100, 64) batches), and two threads with layers of their own, against the same calls
   made one after another: throughput ratio (> 1: the threads overlap).
3. ``policy``: the same contention with ``set_thread_policy("static")`` (threads always
   shared, the behaviour before the adaptive policy) for comparison.

Run from anywhere with the package installed: ``python bench/contention.py`` (``--quick``
for fewer samples, ``--cases`` to pick). Prints a Markdown table.
"""
import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import threading
import time

import numpy as np
from threadpoolctl import threadpool_limits

import rnnfast
from rnnfast import _core
from rnnfast.bench import KINDS, SIZES

ROUNDS = 7      # the two-thread table: best of this many alternated rounds
SPIN = "import time\nend = time.time() + {seconds}\nwhile time.time() < end: pass\n"


def busy_process(seconds):
    """A process spinning on one core for ``seconds`` (or until killed)."""
    return subprocess.Popen([sys.executable, "-c", SPIN.format(seconds=seconds)])


def make_case(name, seed=0):
    """The callable of one case (it runs one call): ``digits-<mode>`` or
    ``<size>-<kind>-<mode>``, size from ``rnnfast.bench.SIZES``, kind ``rnn``, ``lstm`` or
    ``gru``, ``bi`` before it for a bidirectional layer, mode ``eval``, ``fwd`` (a training
    forward) or ``fwdbwd``."""
    rng = np.random.default_rng(seed)
    if name.startswith("digits-"):             # LSTM(8, 64) on a (450, 8, 8) batch
        B, T, D, H, kind = 450, 8, 8, 64, "lstm"
        mode = name.split("-", 1)[1]
    else:
        size, kind, mode = name.split("-")
        B, T, D, H = SIZES[size]
    bidirectional = kind.startswith("bi")
    kind = kind.removeprefix("bi")
    if kind not in KINDS:
        raise ValueError(f"case {name!r}: kind {kind!r} is not one of {KINDS}")
    x = rng.standard_normal((B, T, D)).astype(np.float32)
    layer = getattr(rnnfast, kind.upper())(D, H, seed=seed, bidirectional=bidirectional)
    if mode == "eval":
        layer.eval()
        return lambda: layer(x)
    if mode == "fwd":
        return lambda: layer(x)                  # a training forward
    dout = np.ones((B, T, (2 if bidirectional else 1) * H), np.float32)

    def fwd_bwd():
        layer(x)
        layer.backward(dout)
    return fwd_bwd


def time_alternating(fns, samples, min_seconds=0.02):
    """Per-call times (seconds) of each ``(callable, threads)`` (threads: a threadpoolctl
    limit, or None for the default), sampled in turn so that both see the same machine; a
    sample repeats a fast call until it lasts min_seconds, inside one limit (entering
    threadpoolctl's limit costs ~0.3 ms, more than a tiny call)."""
    def limited(threads):
        return threadpool_limits(threads) if threads else contextlib.nullcontext()
    for fn, threads in fns.values():
        with limited(threads):
            fn()                                 # warm-up (buffers, first-call costs)
    number = {}
    for k, (fn, threads) in fns.items():
        with limited(threads):
            t0 = time.perf_counter()
            fn()
            number[k] = max(1, int(min_seconds / max(time.perf_counter() - t0, 1e-7)))
    out = {k: [] for k in fns}
    for _ in range(samples):
        for k, (fn, threads) in fns.items():
            with limited(threads):
                t0 = time.perf_counter()
                for _ in range(number[k]):
                    fn()
                out[k].append((time.perf_counter() - t0) / number[k])
    return out


def p90(values):
    return float(np.percentile(values, 90))


def late_count():
    """Shared regions found late so far, and small pairs (a tiny bidirectional layer's
    directions side by side) found slower than one after the other."""
    state = _core._thread_state()
    return state["late_regions"] + state["small_pairs_late"]


def busy_table(cases, samples, policy):
    rows = []
    previous = _core.set_thread_policy(policy)
    spinner = busy_process(3600)
    time.sleep(0.5)
    try:
        for name in cases:
            fn = make_case(name)
            late_before = late_count()
            t = time_alternating({"default": (fn, None), "1 thread": (fn, 1)}, samples)
            late = late_count() - late_before
            d, s = t["default"], t["1 thread"]
            rows.append((name, statistics.median(d), p90(d), statistics.median(s), p90(s),
                         statistics.median(d) / statistics.median(s), p90(d) / p90(s), late))
    finally:
        spinner.kill()
        spinner.wait()
        _core.set_thread_policy(previous)
    return rows


def concurrent_table(calls):
    """Throughput (calls per second, best of ROUNDS alternated rounds) of the same calls made
    one after another (default threading, and on 1 thread) and from two Python threads."""
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((32, 100, 64)).astype(np.float32) for _ in range(2)]
    shared = rnnfast.LSTM(64, 128, seed=0).eval()
    own = [rnnfast.LSTM(64, 128, seed=i).eval() for i in range(2)]
    rows = []
    for label, layers in (("one shared eval layer", [shared, shared]),
                          ("own eval layers", own)):
        for layer, x in zip(layers, xs):
            layer(x)

        def work(i, layers=layers):
            for _ in range(calls):
                layers[i](xs[i])

        def serial():
            work(0)
            work(1)

        def serial_1thread():
            with threadpool_limits(1):
                serial()

        def two_threads():
            threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
            for th in threads:
                th.start()
            for th in threads:
                th.join()

        best = {"serial": float("inf"), "serial, 1 thread": float("inf"),
                "2 threads": float("inf")}
        for _ in range(ROUNDS):
            for name, fn in (("serial", serial), ("serial, 1 thread", serial_1thread),
                             ("2 threads", two_threads)):
                t0 = time.perf_counter()
                fn()
                best[name] = min(best[name], time.perf_counter() - t0)
        rate = {k: 2 * calls / v for k, v in best.items()}
        rows.append((label, rate["serial"], rate["serial, 1 thread"], rate["2 threads"],
                     rate["2 threads"] / rate["serial"],
                     rate["2 threads"] / rate["serial, 1 thread"]))
    return rows


def ms(s):
    return f"{s * 1e3:.3g}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer samples")
    p.add_argument("--cases", default=None, help="comma-separated busy cases")
    p.add_argument("--no-static", action="store_true", help="skip the static-policy table")
    p.add_argument("--no-busy", action="store_true", help="only the two-thread table")
    args = p.parse_args(argv)
    cases = (args.cases.split(",") if args.cases else
             ["digits-eval", "digits-fwd", "digits-fwdbwd", "medium-lstm-eval",
              "medium-lstm-fwdbwd", "medium-rnn-eval", "medium-rnn-fwdbwd", "large-lstm-eval",
              "large-lstm-fwdbwd", "large-rnn-eval", "large-rnn-fwdbwd", "tiny-bilstm-eval",
              "tiny-bilstm-fwdbwd", "tiny-bigru-eval"])
    samples = 9 if args.quick else 21
    print(f"rnnfast {rnnfast.__version__}, {os.cpu_count()} cores, OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS', 'unset')}, policy {_core.thread_policy()}")
    policies = [] if args.no_busy else ["adaptive"] if args.no_static else ["adaptive", "static"]
    for policy in policies:
        print(f"\n### One core busy with another process, policy {policy!r} "
              f"({samples} alternated samples; ms per call)\n")
        print("| case | default median | default p90 | 1-thread median | 1-thread p90 | "
              "median ratio | p90 ratio | late regions or pairs |")
        print("|---|--:|--:|--:|--:|--:|--:|--:|")
        for r in busy_table(cases, samples, policy):
            print(f"| {r[0]} | {ms(r[1])} | {ms(r[2])} | {ms(r[3])} | {ms(r[4])} | "
                  f"{r[5]:.2f}x | {r[6]:.2f}x | {r[7]} |")
    print("\n### Two Python threads, idle machine (LSTM(64, 128) eval, (32, 100, 64) "
          f"batches; calls per second, best of {ROUNDS} alternated rounds)\n")
    print("| case | serial (default threads) | serial, 1 thread | 2 Python threads | "
          "vs serial | vs serial 1-thread |")
    print("|---|--:|--:|--:|--:|--:|")
    for label, serial, serial1, threaded, ratio, ratio1 in concurrent_table(
            10 if args.quick else 30):
        print(f"| {label} | {serial:.0f} | {serial1:.0f} | {threaded:.0f} | {ratio:.2f}x | "
              f"{ratio1:.2f}x |")


if __name__ == "__main__":
    main()
