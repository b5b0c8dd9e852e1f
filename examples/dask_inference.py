"""Distributed inference with Dask: trained rnnfast models run over many batches on the
worker processes of a ``dask.distributed`` LocalCluster, checked against a local run.

Two models go to the workers (pickled, once to each, ``client.scatter(..., broadcast=True)``):
an ``rnnfast.models.SequenceClassifier`` (class probabilities) and an ``rnnfast.torch.GRU``
(its last hidden state, under ``torch.no_grad()``). Each batch is one task; the results come
back in order and must equal what this process computes. Dask is an optional extra
(``pip install "rnnfast[dask]"``); torch is used when installed.

    python examples/dask_inference.py [--workers 2] [--batches 24] [--batch-size 64]

(``tests/test_examples_distributed.py`` runs it at a small size.)
"""
import argparse

import numpy as np

from rnnfast.models import SequenceClassifier

SEQ_LEN, FEATURES = 12, 5


def make_data(n_batches, batch_size, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((batch_size, SEQ_LEN, FEATURES)).astype(np.float32)
            for _ in range(n_batches)]


def train_classifier(seed=0):
    """A small classifier: does a sequence's first feature sum to more than zero?"""
    rng = np.random.default_rng(seed + 1)
    X = rng.standard_normal((256, SEQ_LEN, FEATURES)).astype(np.float32)
    y = (X[:, :, 0].sum(axis=1) > 0).astype(int)
    return SequenceClassifier(hidden_size=16, epochs=3, random_state=seed).fit(X, y)


def torch_model(seed=0):
    """An rnnfast.torch GRU (batch first), or None without torch."""
    try:
        import torch

        import rnnfast.torch as rt
    except ImportError:
        return None
    torch.manual_seed(seed)
    return rt.GRU(FEATURES, 16, num_layers=2, batch_first=True).eval()


class Pickled:
    """A model that travels to the workers by pickle. (Dask's own serializer for a
    ``torch.nn.Module`` walks its ``__dict__``, where torch.nn's recurrent modules, and so
    rnnfast.torch's, keep weak references that cannot be serialized; pickle goes through
    the modules' ``__getstate__``.)"""

    def __init__(self, model):
        self.model = model


def classify(shipped, X):
    return shipped.model.predict_proba(X)


def last_hidden(shipped, X):
    import torch
    with torch.no_grad():
        return shipped.model(torch.from_numpy(X))[1][-1].numpy()


def run(n_workers=2, n_batches=24, batch_size=64):
    """``{name: (distributed, local)}`` results (arrays, every batch's rows in order)."""
    from dask.distributed import Client, LocalCluster

    batches = make_data(n_batches, batch_size)
    models = {"classifier": (train_classifier(), classify)}
    module = torch_model()
    if module is not None:
        models["torch GRU"] = (module, last_hidden)
    # one thread per worker process, and one OpenMP thread in each (they share the cores)
    with LocalCluster(n_workers=n_workers, processes=True, threads_per_worker=1,
                      dashboard_address=None, env={"OMP_NUM_THREADS": "1"}) as cluster, \
            Client(cluster) as client:
        data = client.scatter(batches)
        results = {}
        for name, (model, fn) in models.items():
            remote = client.scatter(Pickled(model), broadcast=True)
            futures = client.map(fn, [remote] * len(data), data, pure=False)
            results[name] = np.concatenate(client.gather(futures))
    return {name: (results[name],
                   np.concatenate([fn(Pickled(model), X) for X in batches]))
            for name, (model, fn) in models.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batches", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    for name, (remote, local) in run(args.workers, args.batches, args.batch_size).items():
        print(f"{name}: {remote.shape[0]} rows on {args.workers} workers, max |difference| "
              f"from the local run {float(np.abs(remote - local).max()):.3g}")


if __name__ == "__main__":
    main()
