"""A package without its compiled core says what happened and what to do.

Run from a source checkout's root (``python -m ...``, ``python -c``), Python imports the
source tree, which has no ``rnnfast._core``. These tests build such a tree from the
installed package's Python files in a temporary directory and run Python there.
"""
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

import rnnfast

INSTALLED = pathlib.Path(rnnfast.__file__).parent


def source_tree(root, *, checkout=True):
    """The installed package's Python files (no compiled module) in ``root/rnnfast``; with
    ``checkout``, a pyproject.toml beside them as in a clone."""
    pkg = root / "rnnfast"
    pkg.mkdir()
    for f in INSTALLED.glob("*.py"):
        shutil.copy(f, pkg)
    if checkout:
        (root / "pyproject.toml").write_text("[project]\nname = 'rnnfast'\n")
    return pkg


def run_in(cwd, code):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("call", ["rnnfast.LSTM(2, 3)",
                                  "rnnfast.functional.kernels('cython')",
                                  "from rnnfast import bench; bench.main(['--cells', 'tiny'])"])
def test_source_checkout_without_compiled_core_says_what_to_do(tmp_path, call):
    source_tree(tmp_path)
    r = run_in(tmp_path, f"import rnnfast; {call}")
    assert r.returncode != 0
    err = r.stderr
    assert "No module named" not in err and "cannot import name" not in err
    assert "source checkout" in err and str(tmp_path / "rnnfast") in err
    assert "pip install ." in err and "another directory" in err and "rnnfast-bench" in err
    # the installed rnnfast it shadows is named
    assert str(INSTALLED) in err


def test_source_checkout_still_runs_the_numpy_twin(tmp_path):
    source_tree(tmp_path)
    r = run_in(tmp_path, "import rnnfast, numpy as np; "
                         "out, _ = rnnfast.LSTM(2, 3, backend='numpy')(np.ones((1, 4, 2))); "
                         "print(out.shape, rnnfast.__file__)")
    assert r.returncode == 0, r.stderr
    assert "(1, 4, 3)" in r.stdout and str(tmp_path) in r.stdout


def test_incomplete_installation_says_reinstall(tmp_path):
    source_tree(tmp_path, checkout=False)
    r = run_in(tmp_path, "import rnnfast; rnnfast.RNN(2, 3)")
    assert r.returncode != 0
    assert "installation is incomplete" in r.stderr and "Reinstall" in r.stderr


def test_a_core_that_fails_to_load_keeps_its_own_error(tmp_path):
    """A compiled module that is there but does not load (a missing shared library) is not
    reported as missing: its own error says why."""
    pkg = source_tree(tmp_path)
    (pkg / "_core.py").write_text("raise ImportError('libgomp.so.1: cannot open shared "
                                  "object file')\n")
    r = run_in(tmp_path, "import rnnfast; rnnfast.RNN(2, 3)")
    assert r.returncode != 0
    assert "libgomp.so.1: cannot open shared object file" in r.stderr
    assert "source checkout" not in r.stderr
