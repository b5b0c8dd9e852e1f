"""One training epoch on scikit-learn's digits: rnnfast against PyTorch, 1 thread.

The task of ``examples/digits.py``: each 8x8 image as 8 steps of 8 features (scaled to
[0, 1]), a stratified 25% test split (1347 training sequences), an LSTM(8, 64) and a
Linear(64, 10) head on the last step, softmax cross-entropy, Adam(lr=1e-2), shuffled
minibatches of 32 (43 per epoch), the running loss and accuracy recorded per minibatch
as both sides' history. Alternated round by round in one process, each sample a model
built anew (its layers, initial weights and optimizer: ``fit`` builds one, so the others
do too, each side paying for its own, ~0.25 ms here for rnnfast and ~0.3 for torch) and
trained for one epoch:

- ``rnnfast model``: ``SequenceClassifier(...).fit(X, y)`` with ``epochs=1`` (which also
  validates ``X`` and encodes ``y``);
- ``rnnfast blocks``: the same loop written by hand on ``rnnfast.LSTM``, ``nn.Dense``,
  ``losses.softmax_cross_entropy`` and ``optim.Adam`` (the README's loop);
- ``rnnfast LSTM fwd+bwd only``: the LSTM layer's forward and backward alone on the same
  minibatches (what the epoch would cost with a free head, loss and optimizer; one layer
  built before, the kernels' floor);
- ``torch``: ``torch.nn.LSTM(8, 64, batch_first=True)`` + ``torch.nn.Linear(64, 10)``,
  ``torch.optim.Adam(lr=1e-2)``, ``F.cross_entropy`` on the last step.

(Until session 14 the torch and blocks samples reused one model built before the timing,
while the model's sample built its own: rnnfast's side paid for a construction torch's
did not.)

Then the epoch as training runs it (``--fit-epochs``, default 30, the issue's and
``examples/digits.py``'s run; 0 skips it): ``SequenceClassifier(epochs=30).fit`` against
the same 30-epoch loop in torch, each sample one model built and trained for 30 epochs,
reported per epoch (the time / 30). Both sides pay their model's construction once, as a
user's training does, instead of once an epoch (~1 ms of the fresh-model epoch here for
rnnfast, whose building and first minibatch run cold after the other samples).

One thread everywhere: ``torch.set_num_threads(1)``, ``OMP_NUM_THREADS=1`` (set here
before anything is imported) and threadpoolctl's ``threadpool_limits(1)`` for BLAS.
Prints the median ms per epoch of each and torch / rnnfast (the ratio of the medians, and
the median of the per-round ratios). Target (issue 15): rnnfast's model at least 5x faster
per epoch. ``python bench/train_epoch.py [--rounds N]``, with the package, scikit-learn and
torch installed; run timings alone on the machine (``flock /tmp/rnnfast-bench.lock ...``).
"""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")      # before NumPy, torch and rnnfast load

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

import rnnfast  # noqa: E402
from rnnfast import losses, optim  # noqa: E402
from rnnfast.models import SequenceClassifier  # noqa: E402

HIDDEN, BATCH, LR = 64, 32, 1e-2


def digits_split():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    X = (digits.images / 16.0).astype(np.float32)
    return train_test_split(X, digits.target, test_size=0.25, stratify=digits.target,
                            random_state=0)


def rnnfast_model_epoch(X, y, seed, epochs=1):
    SequenceClassifier(cell="lstm", hidden_size=HIDDEN, batch_size=BATCH, optimizer="adam",
                       learning_rate=LR, epochs=epochs, random_state=seed).fit(X, y)


def rnnfast_blocks(X, y, seed):
    """The hand-written loop on rnnfast's blocks; returns a function building the model
    and running one epoch."""
    rng = np.random.default_rng(seed)

    def epoch():
        lstm = rnnfast.LSTM(X.shape[2], HIDDEN, seed=seed)
        head = rnnfast.nn.Dense(HIDDEN, 10, seed=seed + 1)
        opt = optim.Adam([lstm, head], lr=LR)
        perm = rng.permutation(len(X))
        total = correct = 0.0
        for s in range(0, len(X), BATCH):
            idx = perm[s:s + BATCH]
            xb, yb = X[idx], y[idx]
            _, (h, _) = lstm(xb)
            logits = head(h)
            loss, dlogits = losses.softmax_cross_entropy(logits, yb)
            lstm.backward(None, (head.backward(dlogits), None), input_grad=False)
            opt.step()
            total += loss * len(idx)
            correct += int((logits.argmax(axis=1) == yb).sum())
        return total / len(X), correct / len(X)

    return epoch


def rnnfast_kernel_only(X, y, seed):
    """Only the LSTM layer's forward and backward on the same minibatches (no head, loss,
    optimizer or shuffling): the floor the model's epoch stands on."""
    lstm = rnnfast.LSTM(X.shape[2], HIDDEN, seed=seed)
    rng = np.random.default_rng(seed)
    dh = np.zeros((BATCH, HIDDEN), np.float32)

    def epoch():
        perm = rng.permutation(len(X))
        for s in range(0, len(X), BATCH):
            idx = perm[s:s + BATCH]
            lstm(X[idx])
            lstm.backward(None, (dh[:len(idx)], None), input_grad=False)

    return epoch


def torch_epoch_fn(X, y, seed, epochs=1):
    """The same model and loop in PyTorch; returns a function building the model and
    running ``epochs`` epochs (returning the last one's loss and accuracy)."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(1)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y.astype(np.int64))
    gen = torch.Generator().manual_seed(seed)

    def epoch():
        torch.manual_seed(seed)
        lstm = torch.nn.LSTM(X.shape[2], HIDDEN, batch_first=True)
        head = torch.nn.Linear(HIDDEN, 10)
        opt = torch.optim.Adam(list(lstm.parameters()) + list(head.parameters()), lr=LR)
        for _ in range(epochs):
            perm = torch.randperm(len(Xt), generator=gen)
            total = correct = 0.0
            for s in range(0, len(Xt), BATCH):
                idx = perm[s:s + BATCH]
                xb, yb = Xt[idx], yt[idx]
                opt.zero_grad()
                out, _ = lstm(xb)
                logits = head(out[:, -1])
                loss = F.cross_entropy(logits, yb)
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
                correct += int((logits.argmax(dim=1) == yb).sum())
        return total / len(Xt), correct / len(Xt)

    return epoch


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15, help="timed epochs of each (default 15)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed rounds first (default 2)")
    ap.add_argument("--no-torch", action="store_true", help="rnnfast only")
    ap.add_argument("--fit-epochs", type=int, default=30,
                    help="the second table's fits: epochs a sample (default 30; 0: none)")
    args = ap.parse_args(argv)

    Xtr, _, ytr, _ = digits_split()
    n_batches = -(-len(Xtr) // BATCH)
    print(f"digits, one epoch: {len(Xtr)} sequences of 8 steps x 8 features, LSTM(8, {HIDDEN})"
          f" + Linear({HIDDEN}, 10), Adam lr={LR}, batch {BATCH} ({n_batches} minibatches), "
          f"1 thread; median of {args.rounds} samples each, alternated")
    runs = {"rnnfast model": lambda: rnnfast_model_epoch(Xtr, ytr, 0),
            "rnnfast blocks": rnnfast_blocks(Xtr, ytr, 0),
            "rnnfast LSTM fwd+bwd only": rnnfast_kernel_only(Xtr, ytr, 0)}
    if not args.no_torch:
        runs["torch"] = torch_epoch_fn(Xtr, ytr, 0)
    print("\nA model built anew and trained for one epoch:")
    med = table(runs, args, 1)
    if args.fit_epochs > 0:
        e = args.fit_epochs
        runs = {f"rnnfast model, {e}-epoch fit": lambda: rnnfast_model_epoch(Xtr, ytr, 0, e)}
        if not args.no_torch:
            runs[f"torch, {e}-epoch fit"] = torch_epoch_fn(Xtr, ytr, 0, e)
        print(f"\nAn epoch of a {e}-epoch fit (one model built a sample; the time / {e}):")
        med.update(table(runs, args, e))
    return med


def table(runs, args, epochs):
    """Times each of ``runs`` (alternated round by round) and prints their table, ms per
    epoch (a sample's time / ``epochs``), each rnnfast row's ratio to the torch row."""
    with threadpool_limits(1):
        times = {k: [] for k in runs}
        for r in range(args.warmup + args.rounds):
            for k, fn in runs.items():
                ms = timed(fn) / epochs
                if r >= args.warmup:
                    times[k].append(ms)
    med = {k: statistics.median(v) for k, v in times.items()}
    torch_row = next((k for k in runs if k.startswith("torch")), None)
    print("| | ms per epoch | min | max | torch / this |")
    print("|---|--:|--:|--:|--:|")
    for k, v in times.items():
        ratio = ""
        if torch_row is not None and k != torch_row:
            per_round = statistics.median(t / s for t, s in zip(times[torch_row], v))
            ratio = f"{med[torch_row] / med[k]:.2f}x (per round {per_round:.2f}x)"
        print(f"| {k} | {med[k]:.2f} | {min(v):.2f} | {max(v):.2f} | {ratio} |")
    return med


if __name__ == "__main__":
    main()
