"""A character-level LSTM language model on Python's own standard library.

The text is the source of a few pure-Python standard-library modules (``argparse``,
``difflib``, ``textwrap``, ... read with ``inspect.getsource``: it ships with every Python,
no download), or any text file (``--text FILE``). Each character is a one-hot vector; an
``rnnfast.LSTM`` reads them and an ``rnnfast.nn.Dense`` head predicts the next character at
every step (softmax cross-entropy over every step), trained with ``rnnfast.optim.Adam`` and
the gradient norm clipped (``optim.clip_grad_norm``).

Truncated backpropagation through time: the text is cut into ``--batch`` streams read side
by side, ``--seq-len`` characters at a time. The final state ``(h_n, c_n)`` of one chunk's
forward is the initial state of the next chunk's forward, so the model reads each stream
as one long sequence, while the gradients stop at the chunk boundary (the backward of a
chunk ignores ``dh0, dc0``). At the end of the streams the state starts again from zeros.

Every ``--sample-every`` iterations it prints a sample: the LSTM is primed with
``--prime`` and then generates one character at a time, each a 1-step forward from the
carried state, drawn from ``softmax(logits / temperature)``. The samples go from noise
(iteration 0) to indented Python with ``def``, ``self.`` and ``return`` as the loss falls.

    python examples/char_rnn.py                    # ~2 minutes on one core
    python examples/char_rnn.py --iterations 5000 --hidden 256 --temperature 0.6

Needs only rnnfast (and NumPy). ``--help`` lists the options.
"""
import argparse
import importlib
import inspect
import math
import sys
import time

import numpy as np

import rnnfast
from rnnfast import losses, optim

MODULES = ("argparse", "difflib", "textwrap", "calendar", "shlex", "string", "fnmatch",
           "pprint", "contextlib")


def stdlib_text(modules=MODULES):
    """The source of ``modules`` (importable standard-library modules), one after another."""
    parts = []
    for name in modules:
        try:
            parts.append(inspect.getsource(importlib.import_module(name)))
        except (ImportError, OSError, TypeError) as e:   # e.g. a Python without sources
            print(f"skipping module {name!r}: {e}", file=sys.stderr)
    if not parts:
        sys.exit("no text: none of the modules had readable source (use --text FILE)")
    return "\n".join(parts)


class Vocabulary:
    """Characters <-> indices: every distinct character of the text (rare non-ASCII ones
    are mapped to ``?``, so that a few stray characters do not widen the one-hot inputs)."""

    def __init__(self, text):
        text = self.clean(text)
        self.chars = sorted(set(text))
        self.index = {c: i for i, c in enumerate(self.chars)}

    @staticmethod
    def clean(text):
        return "".join(c if c == "\n" or " " <= c <= "~" else "?" for c in text)

    def __len__(self):
        return len(self.chars)

    def encode(self, text):
        return np.array([self.index.get(c, self.index.get("?", 0)) for c in self.clean(text)],
                        dtype=np.intp)

    def decode(self, indices):
        return "".join(self.chars[i] for i in indices)


class CharLM:
    """An LSTM over one-hot characters with a Dense head on every step."""

    def __init__(self, vocab_size, hidden, *, seed, backend):
        self.V = vocab_size
        self.lstm = rnnfast.LSTM(vocab_size, hidden, seed=seed, backend=backend)
        self.head = rnnfast.nn.Dense(hidden, vocab_size, seed=seed + 1)
        self.eye = np.eye(vocab_size, dtype=np.float32)     # row i: the one-hot of i

    def train_chunk(self, inputs, targets, state, opt, clip):
        """One truncated-BPTT step on ``inputs``/``targets`` ``(batch, seq_len)`` indices
        from ``state`` (or None); returns ``(loss, final state)``."""
        out, final = self.lstm(self.eye[inputs], state)
        loss, dlogits = losses.softmax_cross_entropy(self.head(out), targets)
        # gradients stop at the chunk boundary: dh0, dc0 (returned when state is given)
        # are not passed on to the previous chunk; the one-hot inputs need no gradient
        self.lstm.backward(self.head.backward(dlogits), input_grad=False)
        optim.clip_grad_norm(opt, clip)
        opt.step()
        return loss, final

    def sample(self, vocab, prime, length, temperature, rng):
        """``prime`` followed by ``length`` generated characters."""
        self.lstm.eval()
        self.head.eval()
        try:
            idx = vocab.encode(prime)
            out, state = self.lstm(self.eye[idx][None], None)   # read the prime at once
            logits = self.head(out[:, -1])
            generated = []
            for _ in range(length):
                p = losses.softmax(logits[0].astype(np.float64) / temperature)
                nxt = int(rng.choice(self.V, p=p))
                generated.append(nxt)
                # one step: (1, 1, V) from the carried state
                out, state = self.lstm(self.eye[nxt][None, None], state)
                logits = self.head(out[:, 0])
            return prime + vocab.decode(generated)
        finally:
            self.lstm.train()
            self.head.train()


def streams(data, batch, seq_len):
    """``data`` cut into ``batch`` rows read side by side: ``(batch, L + 1)`` with ``L``
    a multiple of ``seq_len`` (the extra column: the targets of the last inputs)."""
    L = (len(data) - 1) // batch // seq_len * seq_len
    if L < seq_len:
        sys.exit(f"the text ({len(data)} characters) is too short for --batch {batch} and "
                 f"--seq-len {seq_len}")
    return np.stack([data[b * L:b * L + L + 1] for b in range(batch)])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--text", metavar="FILE", help="train on this text file instead")
    ap.add_argument("--hidden", type=int, default=128, help="LSTM hidden units (128)")
    ap.add_argument("--seq-len", type=int, default=64, help="characters per chunk (64)")
    ap.add_argument("--batch", type=int, default=32, help="streams read side by side (32)")
    ap.add_argument("--iterations", type=int, default=2000, help="training chunks (2000)")
    ap.add_argument("--lr", type=float, default=3e-3, help="Adam's learning rate (3e-3)")
    ap.add_argument("--clip", type=float, default=5.0, help="gradient norm clip (5)")
    ap.add_argument("--sample-every", type=int, default=500,
                    help="print a sample every N iterations (500)")
    ap.add_argument("--print-every", type=int, default=100,
                    help="print the loss every N iterations (100)")
    ap.add_argument("--sample-length", type=int, default=300, help="characters (300)")
    ap.add_argument("--temperature", type=float, default=0.7,
                    help="sampling temperature: lower is more conservative (0.7)")
    ap.add_argument("--prime", default="    def ", help="the text a sample starts from")
    ap.add_argument("--seed", type=int, default=0, help="weights and sampling (0)")
    ap.add_argument("--backend", default="cython", choices=("cython", "numpy"))
    args = ap.parse_args(argv)
    if args.temperature <= 0:
        ap.error("--temperature must be > 0")
    if not args.prime:
        ap.error("--prime must not be empty (a sample starts from its state)")

    if args.text:
        with open(args.text, encoding="utf-8", errors="replace") as f:
            text = f.read()
        source = args.text
    else:
        text = stdlib_text()
        source = "the source of " + ", ".join(MODULES)
    vocab = Vocabulary(text)
    data = vocab.encode(text)
    rows = streams(data, args.batch, args.seq_len)
    L = rows.shape[1] - 1
    print(f"text: {source}: {len(data):,} characters, {len(vocab)} distinct; {args.batch} "
          f"streams of {L:,}, chunks of {args.seq_len}")
    print(f"model: LSTM({len(vocab)}, {args.hidden}) + Dense({args.hidden}, {len(vocab)}), "
          f"Adam lr={args.lr}, clip {args.clip}; a uniform guess scores "
          f"{math.log(len(vocab)):.3f} nats per character")

    model = CharLM(len(vocab), args.hidden, seed=args.seed, backend=args.backend)
    opt = optim.Adam([model.lstm, model.head], lr=args.lr)
    rng = np.random.default_rng(args.seed)
    history, samples = [], {}

    def show_sample(iteration):
        s = model.sample(vocab, args.prime, args.sample_length, args.temperature, rng)
        samples[iteration] = s
        print(f"----- sample at iteration {iteration} (temperature {args.temperature})")
        print(s)
        print("-----", flush=True)

    show_sample(0)
    state, pos, smooth = None, 0, None
    t0 = t_last = time.perf_counter()
    it_last = 0
    for it in range(1, args.iterations + 1):
        if pos + args.seq_len > L:              # the end of the streams: from the start
            state, pos = None, 0
        chunk = rows[:, pos:pos + args.seq_len + 1]
        loss, state = model.train_chunk(chunk[:, :-1], chunk[:, 1:], state, opt, args.clip)
        pos += args.seq_len
        history.append(loss)
        smooth = loss if smooth is None else 0.95 * smooth + 0.05 * loss
        if it % args.print_every == 0 or it == args.iterations:
            now = time.perf_counter()           # the rate since the last line
            rate = (it - it_last) * args.batch * args.seq_len / (now - t_last)
            t_last, it_last = now, it
            print(f"iteration {it:5d}  loss {loss:.3f} (smoothed {smooth:.3f}) nats/char  "
                  f"{rate:,.0f} chars/s", flush=True)
        if it % args.sample_every == 0 or it == args.iterations:
            show_sample(it)
    print(f"trained {args.iterations} iterations in {time.perf_counter() - t0:.1f} s")
    return {"losses": history, "samples": samples, "vocab": vocab, "model": model}


if __name__ == "__main__":
    main()
