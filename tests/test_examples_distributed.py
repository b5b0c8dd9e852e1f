"""The distributed examples at a small size: examples/ddp_train.py (DistributedDataParallel,
gloo, 2 processes) and examples/dask_inference.py (a dask.distributed LocalCluster of 2 worker
processes). Each result is checked against the same computation in one process."""
import os
import sys

import numpy as np
import pytest

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "examples")


def import_example(name, monkeypatch):
    # by name from examples/ on sys.path: spawned processes import it again (their
    # sys.path is the parent's)
    monkeypatch.syspath_prepend(EXAMPLES)
    monkeypatch.delitem(sys.modules, name, raising=False)
    return __import__(name)


def test_ddp_matches_one_process_on_the_whole_batch(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (DDP example)")
    import torch.distributed as dist
    if not (dist.is_available() and dist.is_gloo_available()):
        pytest.skip("torch.distributed with the gloo backend is not available in this build")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    ddp_train = import_example("ddp_train", monkeypatch)
    steps = 3
    ddp = ddp_train.distributed(2, steps, "float64", str(tmp_path))
    one = ddp_train.single(steps, "float64")
    initial = ddp_train.make_problem(torch.float64)[0].state_dict()
    assert ddp.keys() == one.keys() and any("lstm" in k for k in one)
    assert ddp_train.max_difference(one, initial) > 1e-3       # the steps did train
    for name in one:
        torch.testing.assert_close(ddp[name], one[name], rtol=0, atol=1e-12)


def test_dask_inference_matches_local_run(monkeypatch):
    pytest.importorskip("dask.distributed", reason="dask[distributed] is not installed "
                                                   "(pip install 'rnnfast[dask]')")
    import cloudpickle
    dask_inference = import_example("dask_inference", monkeypatch)
    # the example's functions travel by value (the workers need not import it)
    cloudpickle.register_pickle_by_value(dask_inference)
    try:
        results = dask_inference.run(n_workers=2, n_batches=6, batch_size=16)
    finally:
        cloudpickle.unregister_pickle_by_value(dask_inference)
    assert "classifier" in results
    for name, (remote, local) in results.items():
        assert remote.shape[0] == 6 * 16, name
        np.testing.assert_allclose(remote, local, rtol=1e-6, atol=1e-7, err_msg=name)
