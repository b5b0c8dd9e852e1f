"""Smoke tests of the benchmark tooling itself (no timing assertions).

Run with ``pytest bench/test_cli.py``; ``--benchmark-only`` skips them.
"""
import json

import numpy as np
import pytest

from rnnfast import bench


def test_grid_has_16_cells_with_the_issue_sizes():
    assert len(bench.GRID) == 16
    assert {c.name for c in bench.GRID} >= {"tiny-lstm-fwd", "medium-rnn-fwdbwd"}
    medium = next(c for c in bench.GRID if c.name == "medium-lstm-fwd")
    B, T, D, H = medium.dims
    assert medium.flops == 2 * B * T * 4 * H * (D + H)
    assert next(c for c in bench.GRID if c.name == "medium-lstm-fwdbwd").flops == 3 * medium.flops


@pytest.mark.parametrize("spec, n", [(None, 16), ("tiny", 4), ("lstm", 8), ("fwdbwd", 8),
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
    results = {impl: bench._as_numpy(fn()) for impl, fn in fns.items()}
    for impl, r in results.items():
        np.testing.assert_allclose(r, results["rnnfast"], rtol=1e-4, atol=1e-5, err_msg=impl)


def test_main_writes_json_and_markdown(tmp_path, capsys):
    out_json, out_md = tmp_path / "r.json", tmp_path / "B.md"
    bench.main(["--cells", "tiny-rnn-fwd", "--repeat", "1", "--budget", "0", "--quiet",
                "--gemm-size", "256", "--json", str(out_json), "--markdown", str(out_md)])
    table = capsys.readouterr().out
    assert "tiny-rnn-fwd" in table and "% roofline" in table
    report = json.loads(out_json.read_text())
    row = report["runs"][0]["cells"][0]
    assert row["name"] == "tiny-rnn-fwd" and row["time_s"]["rnnfast"] > 0
    assert set(row) >= {"floor_s", "target_s", "target_met", "speedup", "memory_bytes"}
    md = out_md.read_text()
    assert md.startswith("# rnnfast benchmarks") and "| tiny-rnn-fwd |" in md
