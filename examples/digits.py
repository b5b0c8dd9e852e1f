"""Handwritten digits with an LSTM: scikit-learn's digits read row by row.

Each 8x8 image of ``sklearn.datasets.load_digits`` (1797 of them, ten classes) becomes a
sequence of 8 steps of 8 features (one pixel row per step, scaled to [0, 1]); a stratified
25% of them is held out (450 test images, 1347 to train on). An
``rnnfast.models.SequenceClassifier`` (an LSTM with 64 hidden units, its last hidden state
-> a Dense layer -> softmax) is trained with Adam (learning rate 1e-2) on minibatches of
32 for 30 epochs. The script prints the loss and training accuracy of every epoch, the
test accuracy at the end (about 99%; PyTorch's LSTM with the same setup: 97.1%), and draws
both curves into a PNG (with matplotlib; without it the plot is skipped, with a message).

    pip install ".[examples]"          # scikit-learn, tqdm, matplotlib
    python examples/digits.py          # writes digits.png; --help for the options

Reproducible: the seed (``--seed``, default 0) fixes the split, the initial weights and
the shuffling, and with them every printed number (on one machine and backend).
"""
import argparse
import sys
import time

import numpy as np

from rnnfast.models import SequenceClassifier


def load(seed=0):
    """The digits as sequences, split: ``Xtr, Xte, ytr, yte`` (``X`` ``(n, 8, 8)``)."""
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        sys.exit("this example needs scikit-learn for its data set: pip install scikit-learn "
                 "(or the examples extra: pip install \".[examples]\")")
    digits = load_digits()
    X = (digits.images / 16.0).astype(np.float32)        # (1797, 8 steps, 8 features)
    return train_test_split(X, digits.target, test_size=0.25, stratify=digits.target,
                            random_state=seed)


def plot(history, test_accuracy, path):
    """The loss and the training accuracy per epoch, side by side, into ``path`` (PNG).
    Returns the path written, or None (with a message) when matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")                       # files only: no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot written (pip install matplotlib, or "
              "the examples extra: pip install \".[examples]\")", file=sys.stderr)
        return None
    epochs = np.arange(1, len(history["loss"]) + 1)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.4))
    ax_loss.plot(epochs, history["loss"], marker=".")
    ax_loss.set(xlabel="epoch", ylabel="training loss (cross-entropy)", yscale="log",
                title="loss")
    ax_acc.plot(epochs, np.asarray(history["accuracy"]) * 100, marker=".",
                label="training (running, per epoch)")
    ax_acc.axhline(test_accuracy * 100, color="C1", linestyle="--",
                   label=f"test after training: {test_accuracy:.1%}")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    ax_acc.legend(loc="lower right")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
    fig.suptitle("scikit-learn digits, rows as 8 steps: rnnfast LSTM(8, 64) + Dense(64, 10)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=30, help="training epochs (default 30)")
    ap.add_argument("--hidden", type=int, default=64, help="LSTM hidden units (default 64)")
    ap.add_argument("--seed", type=int, default=0, help="split, weights, shuffling (0)")
    ap.add_argument("--backend", default="cython", choices=("cython", "numpy"),
                    help="rnnfast's compiled core (default) or its NumPy twin")
    ap.add_argument("--plot", default="digits.png", metavar="PNG",
                    help="where to draw the curves (default digits.png); '' for no plot")
    ap.add_argument("--verbose", action="store_true", help="a progress bar per epoch")
    args = ap.parse_args(argv)

    Xtr, Xte, ytr, yte = load(args.seed)
    print(f"digits: {len(Xtr)} training and {len(Xte)} test images, each {Xtr.shape[1]} "
          f"steps of {Xtr.shape[2]} features")
    model = SequenceClassifier(cell="lstm", hidden_size=args.hidden, batch_size=32,
                               optimizer="adam", learning_rate=1e-2, epochs=args.epochs,
                               random_state=args.seed, backend=args.backend,
                               verbose=int(args.verbose))
    t0 = time.perf_counter()
    model.fit(Xtr, ytr)
    seconds = time.perf_counter() - t0
    for epoch, (loss, acc) in enumerate(zip(model.history_["loss"],
                                            model.history_["accuracy"]), start=1):
        print(f"epoch {epoch:3d}  loss {loss:.4f}  training accuracy {acc:.2%}")
    test_accuracy = model.score(Xte, yte)
    print(f"trained in {seconds:.2f} s ({1e3 * seconds / args.epochs:.1f} ms per epoch)")
    print(f"test accuracy: {test_accuracy:.2%} ({int(round(test_accuracy * len(yte)))} of "
          f"{len(yte)})")
    written = plot(model.history_, test_accuracy, args.plot) if args.plot else None
    if written:
        print(f"curves written to {written}")
    return {"model": model, "test_accuracy": test_accuracy, "plot": written}


if __name__ == "__main__":
    main()
