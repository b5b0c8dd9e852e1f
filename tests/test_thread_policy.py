"""The thread policy (rnnfast/_threads.h): when a step may share OpenMP's threads.

None of these tests times anything: the rule that judges a region late is tested on
made-up finish times, the calls-in-flight count by observing overlapping calls, and the
results by comparing bits (whatever the policy decides, the results must not change).
"""
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import rnnfast
from rnnfast import _core
from test_threads import assert_bitwise, data, make_layer, threaded_shape, train_step


@pytest.fixture(autouse=True)
def fresh_policy():
    previous = _core.set_thread_policy("adaptive")
    yield
    _core.set_thread_policy(previous)


def test_unknown_policy_is_a_value_error_naming_the_choices():
    with pytest.raises(ValueError, match="adaptive.*static.*got 'fast'"):
        _core.set_thread_policy("fast")
    assert _core.thread_policy() == "adaptive"


def test_set_policy_returns_the_previous_one():
    assert _core.set_thread_policy("static") == "adaptive"
    assert _core.thread_policy() == "static"
    assert rnnfast.thread_policy() == "static"
    assert rnnfast.set_thread_policy("adaptive") == "static"


@pytest.mark.parametrize("value, expected, warns", [
    ("static", "static", False), ("ADAPTIVE", "adaptive", False), ("bogus", "adaptive", True)])
def test_environment_variable(value, expected, warns):
    code = ("import warnings; warnings.simplefilter('always')\n"
            "import rnnfast._core as c; print(c.thread_policy())")
    env = dict(os.environ, RNNFAST_THREAD_POLICY=value)
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, cwd="/", timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == expected
    assert ("RuntimeWarning" in run.stderr and "RNNFAST_THREAD_POLICY" in run.stderr) == warns


def test_the_late_region_rule():
    """Equal finishing times are on time; one thread finishing long after the others
    (descheduled) is late, and then steps go solo until the back-off has passed."""
    with threadpool_limits(2, user_api="openmp"):
        _core._go_solo_for(0)
        us = 1000
        assert not _core._judge_region([50 * us, 52 * us])        # balanced
        assert not _core._judge_region([50 * us, 80 * us])        # under half + 100 us late
        assert _core._thread_state()["team_threads"] == 2
        assert _core._judge_region([50 * us, 5000 * us])          # 5 ms late: descheduled
        assert _core._thread_state()["team_threads"] == 1
        assert _core._judge_region([5000 * us, 50 * us])          # the caller itself slowed
        _core._go_solo_for(0)
        assert _core._thread_state()["team_threads"] == 2
        _core.set_thread_policy("static")                          # static never goes solo
        assert not _core._judge_region([50 * us, 5000 * us])
        assert _core._thread_state()["team_threads"] == 2


def test_the_cold_region_rule():
    """A late region that found the worker asleep (cold) is its wake-up, not a busy core:
    no back-off, but small calls that start cold then run solo (large ones share), for a
    while (a cold region on time does not end it) or until _go_solo_for(0) starts afresh."""
    with threadpool_limits(2, user_api="openmp"):
        _core._go_solo_for(0)
        us = 1000
        assert _core._judge_region([50 * us, 3000 * us], cold=True)     # a 3 ms wake-up
        state = _core._thread_state()
        assert state["team_threads"] == 2 and state["cold_wakeups_slow"]
        time.sleep(0.03)                    # (no shared region for 30 ms: calls start cold)
        assert _core._cold_call_solo(1 << 20)
        assert not _core._cold_call_solo(1 << 32)
        rnnfast.RNN(2, 3, seed=0).eval()(np.zeros((1, 2, 2), np.float32))
        assert not _core._cold_call_solo(1 << 20)   # right after a call: a stream shares
        assert not _core._judge_region([50 * us, 52 * us], cold=True)   # on time
        assert _core._thread_state()["cold_wakeups_slow"]
        time.sleep(0.03)
        assert _core._cold_call_solo(1 << 20)
        _core._go_solo_for(0)
        assert not _core._cold_call_solo(1 << 20)
        assert not _core._thread_state()["cold_wakeups_slow"]
        _core._judge_region([50 * us, 3000 * us], cold=True)
        time.sleep(0.03)
        _core.set_thread_policy("static")                          # static never goes solo
        try:
            assert not _core._cold_call_solo(1 << 20)
        finally:
            _core.set_thread_policy("adaptive")
            _core._go_solo_for(0)


@pytest.mark.skipif(not sys.platform.startswith("linux"),
                    reason="the run queue is read from Linux's /proc (elsewhere: never taken)")
def test_a_process_spinning_takes_a_core():
    """The look at the run queue that ends a back-off (_threads.h, rf_cores_taken): with a
    process of another's spinning, a team as large as the CPUs this process may use finds
    a core taken. (Not the converse: the machine may be busy with anything.)"""
    cpus = len(os.sched_getaffinity(0))
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        deadline = time.monotonic() + 30
        while not _core._cores_taken(cpus):     # (once the spinner has started)
            assert time.monotonic() < deadline, "a spinning process was never seen"
            time.sleep(0.01)
    finally:
        spinner.kill()
        spinner.wait()


def shares_right_after(event, tries=5):
    """Whether a small pair would run side by side right after ``event`` (a region or a
    call ended): tried a few times, since "right after" means within 1 ms, and a busy
    machine may set this thread aside for longer between the two."""
    for _ in range(tries):
        event()                             # (a judged pair found late: False after)
        if _core._small_pair_shares():
            return True
    return False


def test_the_small_pair_rule():
    """A tiny bidirectional layer's directions (a small pair) run side by side only while
    the second thread is awake (a region or a call ended within 1 ms) and while that has
    saved time over the recent pairs, judged against the directions' own times at the
    fastest time per multiply-add seen: pairs on time keep it; a pair whose worker finished
    long after (descheduled), or whose two threads both finished late (the caller itself
    set aside), sends small pairs one after the other until the back-off has passed or
    _go_solo_for(0) starts afresh; never under the static policy or at 1 thread."""
    us = 1000
    with threadpool_limits(2, user_api="openmp"):
        _core._go_solo_for(0)
        assert not _core._judge_small_pair([10 * us, 11 * us])     # (sets the pace)
        assert not _core._judge_small_pair([10 * us, 11 * us])     # saved ~9 us
        assert shares_right_after(lambda: _core._judge_small_pair([10 * us, 11 * us]))
        time.sleep(0.005)
        assert not _core._small_pair_shares()                      # the worker may sleep
        layer = rnnfast.RNN(2, 3, seed=0).eval()
        assert shares_right_after(lambda: layer(np.zeros((1, 2, 2), np.float32)))
        late = _core._thread_state()["small_pairs_late"]
        assert _core._judge_small_pair([10 * us, 200 * us])        # the worker set aside
        assert _core._thread_state()["small_pairs_late"] == late + 1
        assert not _core._small_pair_shares()
        _core._go_solo_for(0)
        assert shares_right_after(lambda: _core._judge_small_pair([10 * us, 11 * us]))
        assert _core._judge_small_pair([4000 * us, 4000 * us])     # both 4 ms late
        assert not _core._small_pair_shares()
        _core._go_solo_for(0)
        # a lone late pair among many on time is jitter: the running mean absorbs it
        for _ in range(40):
            assert not _core._judge_small_pair([10 * us, 11 * us])
        assert shares_right_after(lambda: _core._judge_small_pair([10 * us, 60 * us]))
        _core.set_thread_policy("static")
        try:
            assert not _core._small_pair_shares()
        finally:
            _core.set_thread_policy("adaptive")
        _core._go_solo_for(0)
    with threadpool_limits(1, user_api="openmp"):
        assert not _core._small_pair_shares()


def test_small_pair_threshold_is_set_and_restored():
    default = _core._set_pair_min_work(1 << 10, small=True)
    try:
        assert _core._set_pair_min_work(default, small=True) == 1 << 10
    finally:
        _core._set_pair_min_work(default, small=True)
    assert _core._set_pair_min_work(default, small=True) == default


@pytest.mark.parametrize("cell", ["rnn_tanh", "lstm", "gru"])
def test_results_do_not_depend_on_what_the_policy_decides(dtype, cell):
    """The threaded shapes, with the steps solo (as after a late thread), shared (static)
    and at 1 thread: bitwise the same."""
    shape = threaded_shape(cell, "odd")
    inputs = data(cell, dtype, seed=600, shape=shape)
    results = {}
    with threadpool_limits(2, user_api="openmp"):
        _core.set_thread_policy("static")
        results["static"] = train_step(make_layer(cell, dtype, seed=6, shape=shape), *inputs)
        _core.set_thread_policy("adaptive")
        _core._go_solo_for(3600)
        assert _core._thread_state()["team_threads"] == 1
        results["solo"] = train_step(make_layer(cell, dtype, seed=6, shape=shape), *inputs)
        _core._go_solo_for(0)
    with threadpool_limits(1, user_api="openmp"):
        results["1 thread"] = train_step(make_layer(cell, dtype, seed=6, shape=shape), *inputs)
    assert_bitwise(results["solo"], results["static"])
    assert_bitwise(results["1 thread"], results["static"])


def test_overlapping_calls_run_single_threaded():
    """While two calls are in flight, a step gets one thread; afterwards, none is in flight.
    The calls are lengthened until one lasts 0.2 s (as in the GIL test), so they overlap."""
    from test_threads import _long_call

    with threadpool_limits(1):
        layer, x = _long_call()
    seen = []
    barrier = threading.Barrier(3)
    done = []

    def call():
        barrier.wait()
        layer(x)
        done.append(1)

    with threadpool_limits(2, user_api="openmp"):
        threads = [threading.Thread(target=call) for _ in range(2)]
        for t in threads:
            t.start()
        barrier.wait()
        while len(done) < 2:
            state = _core._thread_state()
            if state["calls_in_flight"] == 2:
                seen.append(state["team_threads"])
        for t in threads:
            t.join()
        assert seen, "the two calls never overlapped"
        assert set(seen) == {1}, seen
        assert _core._thread_state()["calls_in_flight"] == 0
        _core._go_solo_for(0)
        assert _core._thread_state()["team_threads"] == 2


def test_no_call_left_counted_after_errors():
    layer = rnnfast.LSTM(4, 8)
    with pytest.raises(ValueError):
        layer(np.zeros((2, 3, 5), np.float32))
    layer(np.zeros((2, 3, 4), np.float32))
    assert _core._thread_state()["calls_in_flight"] == 0


@pytest.mark.parametrize("cell", ["rnn_tanh", "lstm", "gru"])
def test_bidirectional_results_do_not_depend_on_running_the_directions_side_by_side(cell):
    """A tiny bidirectional layer's directions side by side on two threads (run_two's
    threshold at 0) and one after the other (the threshold past any call): bitwise the
    same, forward and backward, and the threshold restored."""
    layer = rnnfast.LSTM if cell == "lstm" else (rnnfast.GRU if cell == "gru" else rnnfast.RNN)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 7, 4)).astype(np.float32)
    dout = rng.standard_normal((3, 7, 2 * 5)).astype(np.float32)
    results = {}
    with threadpool_limits(2, user_api="openmp"):
        _core._go_solo_for(0)               # (two threads for the call: run_two may pair)
        assert _core._thread_state()["team_threads"] == 2
        default = _core._set_pair_min_work(0)
        try:
            for name, work in (("side by side", 0), ("one after the other", 1 << 62)):
                assert _core._set_pair_min_work(work) in (0, 1 << 62)
                m = layer(4, 5, seed=6, bidirectional=True)
                out, _ = m(x)
                dx, _ = m.backward(dout)
                results[name] = [out, dx] + [m.grads[n].copy() for n in m._names]
        finally:
            _core._set_pair_min_work(default)
    assert _core._set_pair_min_work(default) == default
    assert_bitwise(results["side by side"], results["one after the other"])
