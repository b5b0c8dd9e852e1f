"""Smoke tests of the benchmark tooling itself (no timing assertions).

Run with ``pytest bench/test_cli.py``; ``--benchmark-only`` skips them.
"""
import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from rnnfast import bench


def test_grid_has_24_cells_with_the_issue_sizes():
    assert len(bench.GRID) == 24
    assert {c.name for c in bench.GRID} >= {"tiny-lstm-fwd", "medium-rnn-fwdbwd",
                                            "large-gru-fwdbwd"}
    medium = next(c for c in bench.GRID if c.name == "medium-lstm-fwd")
    B, T, D, H = medium.dims
    assert medium.flops == 2 * B * T * 4 * H * (D + H)
    gru = next(c for c in bench.GRID if c.name == "medium-gru-fwd")
    assert gru.flops == 2 * B * T * 3 * H * (D + H)
    assert next(c for c in bench.GRID if c.name == "medium-lstm-fwdbwd").flops == 3 * medium.flops


@pytest.mark.parametrize("spec, n", [(None, 24), ("tiny", 6), ("lstm", 8), ("fwdbwd", 12),
                                     ("tiny-lstm", 2), ("tiny-lstm-fwd+bwd,large-rnn-fwd", 2)])
def test_select_cells(spec, n):
    assert len(bench.select_cells(spec)) == n


def test_select_cells_rejects_unknown_names():
    with pytest.raises(ValueError, match="names no cell"):
        bench.select_cells("tiny,huge")


@pytest.mark.parametrize("cell", [c for c in bench.GRID if c.size == "tiny"], ids=str)
def test_implementations_agree(cell):
    """The same weights and input give the same output (fwd) or dx (fwd+bwd) everywhere."""
    fns = bench.build_callables(cell, np.float32)
    results = {impl: bench._as_numpy(getattr(fn, "to_batch_first", lambda y: y)(fn()))
               for impl, fn in fns.items()}
    for impl, r in results.items():
        np.testing.assert_allclose(r, results["rnnfast"], rtol=1e-4, atol=1e-5, err_msg=impl)


def test_main_writes_json_and_markdown(tmp_path, capsys):
    out_json, out_md = tmp_path / "r.json", tmp_path / "B.md"
    bench.main(["--cells", "tiny-rnn-fwd", "--repeat", "1", "--budget", "0", "--quiet",
                "--gemm-size", "256", "--json", str(out_json), "--markdown", str(out_md)])
    table = capsys.readouterr().out
    assert "tiny-rnn-fwd" in table and "% roofline" in table
    report = json.loads(out_json.read_text())
    assert report["mode"] == "quick" and report["cells"] == ["tiny-rnn-fwd"]
    row = report["runs"][0]["cells"][0]
    assert row["name"] == "tiny-rnn-fwd" and row["time_s"]["rnnfast"] > 0
    assert set(row) >= {"floor_s", "target_s", "target_met", "speedup", "memory_bytes"}
    md = out_md.read_text()
    assert md.startswith("# rnnfast benchmarks") and "| tiny-rnn-fwd |" in md


def test_quick_is_the_default_and_full_the_whole_grid():
    quick = bench.parse_args([])
    assert quick.mode is bench.QUICK is bench.parse_args(["--quick"]).mode
    assert {c.size for c in quick.cells} == {"tiny", "small", "medium"} and len(quick.cells) == 14
    assert (quick.repeat, quick.budget) == (bench.QUICK.repeat, bench.QUICK.budget)
    full = bench.parse_args(["--full"])
    assert full.mode is bench.FULL and full.cells == list(bench.GRID)
    assert (full.repeat, full.budget) == (20, 2.0)
    # --cells, --repeat and --budget override the mode's choice, one by one
    narrowed = bench.parse_args(["--full", "--cells", "large-lstm", "--repeat", "7"])
    assert [c.name for c in narrowed.cells] == ["large-lstm-fwd", "large-lstm-fwdbwd"]
    assert (narrowed.repeat, narrowed.budget) == (7, 2.0)
    assert len(bench.parse_args(["--cells", "all"]).cells) == 24
    assert bench.parse_args(["--budget", "0"]).repeat == bench.QUICK.repeat


@pytest.mark.parametrize("argv, message", [
    (["--quick", "--full"], "not allowed with argument"),
    (["--full=yes"], "ignored explicit argument"),
    (["--repeat", "0"], "--repeat: must be >= 1"),
    (["--repeat", "many"], "--repeat: expected a whole number"),
    (["--budget", "-1"], "--budget: must be a finite number >= 0"),
    (["--budget", "inf"], "--budget: must be a finite number >= 0"),
    (["--gemm-size", "0"], "--gemm-size: must be >= 1"),
    (["--cells", "huge"], "names no cell"),
    (["--mode", "fast"], "unrecognized arguments"),
])
def test_bad_options_are_argparse_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        bench.parse_args(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "rnnfast-bench: error:" in err and message in err


@pytest.mark.parametrize("mode, full", [([], False), (["--full"], True)])
def test_full_mode_adds_the_1thread_timing_and_the_roofline_before_each_cell(tmp_path, mode,
                                                                             full):
    out_json = tmp_path / "r.json"
    bench.main([*mode, "--threads", "2", "--cells", "tiny-rnn-fwd", "--repeat", "1",
                "--budget", "0", "--quiet", "--no-memory", "--no-torch", "--gemm-size", "128",
                "--json", str(out_json)])
    run = json.loads(out_json.read_text())["runs"][0]
    row = run["cells"][0]
    assert (bench.ONE_THREAD in row["time_s"]) is full and ("vs_1thread" in row) is full
    # before the grid, (with --full) before the one cell, after the grid
    assert len(run["gemm_flops_per_s_measured"]) == (3 if full else 2)
    assert ("gemm_flops_per_s_before" in row) is full


REPO = pathlib.Path(__file__).resolve().parents[1]
SMOKE = ["--cells", "tiny-rnn-fwd", "--repeat", "1", "--budget", "0", "--quiet", "--no-memory",
         "--no-torch", "--gemm-size", "128"]


def _run(cmd, cwd):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_console_script_runs_from_the_checkout_root():
    """The README's command: rnnfast-bench imports the installed package even from the root
    of the checkout, whose source tree has no compiled core."""
    script = (shutil.which("rnnfast-bench", path=os.path.dirname(sys.executable))
              or shutil.which("rnnfast-bench"))
    assert script, "rnnfast-bench is not installed (pip install .)"
    r = _run([script, *SMOKE], REPO)
    assert r.returncode == 0, r.stderr
    assert "tiny-rnn-fwd" in r.stdout and "% roofline" in r.stdout


def test_python_m_runs_from_another_directory(tmp_path):
    r = _run([sys.executable, "-m", "rnnfast.bench", *SMOKE], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "tiny-rnn-fwd" in r.stdout
    help_ = _run([sys.executable, "-m", "rnnfast.bench", "--help"], tmp_path)
    assert help_.returncode == 0 and "--full" in help_.stdout and "quick" in help_.stdout.lower()


def test_train_epoch_script_prints_its_table():
    """bench/train_epoch.py (one digits epoch, rnnfast vs torch; then 2-epoch fits): one
    round, no timing checked; torch's rows only when torch is installed."""
    pytest.importorskip("sklearn", reason="scikit-learn is not installed (the digits)")
    pytest.importorskip("threadpoolctl", reason="threadpoolctl is not installed")
    try:
        import torch  # noqa: F401
        extra = []
    except ImportError:
        extra = ["--no-torch"]
    r = subprocess.run([sys.executable, str(REPO / "bench" / "train_epoch.py"), "--rounds",
                        "1", "--warmup", "0", "--fit-epochs", "2", *extra], cwd=REPO,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rows = [line for line in r.stdout.splitlines() if line.startswith("| rnnfast")]
    assert [row.split("|")[1].strip() for row in rows] == [
        "rnnfast model", "rnnfast blocks", "rnnfast LSTM fwd+bwd only",
        "rnnfast model, 2-epoch fit"]
    assert ("| torch |" in r.stdout) == (not extra)
    assert ("| torch, 2-epoch fit |" in r.stdout) == (not extra)
    assert "43 minibatches" in r.stdout


def test_sequences_script_prints_its_four_tables(tmp_path):
    """bench/sequences.py (lengths, bidirectional, stacked, step against torch): the tiny
    shape, one round, no timing checked."""
    pytest.importorskip("threadpoolctl", reason="threadpoolctl is not installed")
    md = tmp_path / "seq.md"
    r = subprocess.run([sys.executable, str(REPO / "bench" / "sequences.py"), "--sizes", "tiny",
                        "--kinds", "gru", "--repeat", "1", "--budget", "0.01", "--markdown",
                        str(md)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    for title in ("Variable lengths", "Bidirectional", "Stacked", "Streaming step"):
        assert title in r.stdout
    assert "| tiny-gru-fwd |" in r.stdout and "| tiny-gru-fwdbwd |" in r.stdout
    assert md.read_text().strip() == r.stdout.strip()


def test_bidirectional_ratio_script_prints_each_cell():
    """bench/bidirectional_steady.py --ratio (bidirectional against one direction at 1
    thread): the tiny shape, no timing checked."""
    pytest.importorskip("threadpoolctl", reason="threadpoolctl is not installed")
    r = subprocess.run([sys.executable, str(REPO / "bench" / "bidirectional_steady.py"), "tiny",
                        "--ratio"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert [line.split(" 1 thread")[0] for line in lines] == ["tiny RNN", "tiny LSTM", "tiny GRU"]
    assert all(line.count("bi/one") == 2 for line in lines)


def test_seed004_script_checks_and_prints_both_ways():
    """bench/compat_seed004.py --steady: compat and the notebook agree after one step (the
    script exits otherwise), both backends, alternated samples and steady groups."""
    pytest.importorskip("threadpoolctl", reason="threadpoolctl is not installed")
    r = subprocess.run([sys.executable, str(REPO / "bench" / "compat_seed004.py"), "--repeats",
                        "2", "--steady"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("notebook loops") == 2 and r.stdout.count("steady (groups") == 2
