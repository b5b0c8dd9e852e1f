"""The examples run: ``examples/digits.py`` (a couple of epochs; the 96% check on the full
30 epochs is tests/test_models.py's) and ``examples/char_rnn.py`` (a few dozen iterations:
the loss falls, samples are printed), through their ``main`` functions, writing only under
``tmp_path``."""
import importlib.util
import math
import pathlib

import numpy as np
import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def example(name):
    path = EXAMPLES / f"{name}.py"
    if not path.exists():
        pytest.skip(f"{path} is not in this checkout (the tests run from one)")
    spec = importlib.util.spec_from_file_location(f"example_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run in tmp_path, matplotlib's cache there too: nothing written elsewhere."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "mpl"))
    return tmp_path


def test_digits_example_trains_prints_and_plots(in_tmp, capsys):
    pytest.importorskip("sklearn", reason="scikit-learn is not installed (the digits)")
    digits = example("digits")
    png = in_tmp / "curves.png"
    res = digits.main(["--epochs", "3", "--plot", str(png)])
    out = capsys.readouterr()
    lines = [line for line in out.out.splitlines() if line.startswith("epoch")]
    assert len(lines) == 3 and "loss" in lines[0] and "training accuracy" in lines[0]
    losses = res["model"].history_["loss"]
    assert losses[-1] < losses[0]
    assert f"test accuracy: {res['test_accuracy']:.2%}" in out.out
    assert res["test_accuracy"] > 0.5                     # ten classes; 3 epochs: ~85%
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert res["plot"] is None and "matplotlib is not installed" in out.err
        assert not png.exists()
    else:
        assert res["plot"] == str(png)
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {p.name for p in in_tmp.iterdir()} <= {"curves.png", "mpl"}


def test_digits_example_without_matplotlib(in_tmp, capsys, monkeypatch):
    pytest.importorskip("sklearn", reason="scikit-learn is not installed (the digits)")
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.split(".")[0] == "matplotlib":
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    digits = example("digits")
    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    res = digits.main(["--epochs", "1", "--plot", "x.png"])
    assert res["plot"] is None
    assert "matplotlib is not installed: no plot written" in capsys.readouterr().err
    assert not (in_tmp / "x.png").exists()


CHAR_ARGS = ["--iterations", "60", "--hidden", "32", "--seq-len", "16", "--batch", "8",
             "--print-every", "20", "--sample-every", "30", "--sample-length", "50"]


def test_char_rnn_example_loss_falls_and_samples_print(in_tmp, capsys):
    char_rnn = example("char_rnn")
    res = char_rnn.main(CHAR_ARGS)
    out = capsys.readouterr().out
    losses, vocab = res["losses"], res["vocab"]
    assert len(losses) == 60 and all(math.isfinite(v) for v in losses)
    # from a uniform guess (log of the vocabulary) to well below it
    assert abs(np.mean(losses[:3]) - math.log(len(vocab))) < 0.3
    assert np.mean(losses[-10:]) < np.mean(losses[:5]) - 0.8
    assert sorted(res["samples"]) == [0, 30, 60]
    for it, s in res["samples"].items():
        assert s.startswith("    def ") and len(s) == len("    def ") + 50
        assert set(s) <= set(vocab.chars)
        assert f"----- sample at iteration {it} " in out
    assert out.count("iteration ") >= 3 + 3              # loss lines and sample headers
    assert list(in_tmp.iterdir()) == []


def test_char_rnn_example_on_a_text_file_carries_the_state(in_tmp, capsys, monkeypatch):
    """--text FILE; the streams wrap around (state reset) and the state of one chunk is the
    initial state of the next (checked on the calls the model's LSTM receives)."""
    char_rnn = example("char_rnn")
    text = in_tmp / "text.txt"
    text.write_text("the quick brown fox jumps over the lazy dog.\n" * 40)
    calls = []
    real = char_rnn.CharLM.train_chunk

    def spy(self, inputs, targets, state, opt, clip):
        loss, final = real(self, inputs, targets, state, opt, clip)
        calls.append((state, final))
        return loss, final

    monkeypatch.setattr(char_rnn.CharLM, "train_chunk", spy)
    res = char_rnn.main(["--text", str(text), "--iterations", "80", "--hidden", "32",
                         "--seq-len", "20", "--batch", "4", "--print-every", "40",
                         "--sample-every", "80", "--sample-length", "30", "--prime", "the ",
                         "--lr", "1e-2"])
    capsys.readouterr()
    # 1800 characters in 4 streams of 440 (22 chunks of 20): a reset every 22 iterations
    resets = [i for i, (state, _) in enumerate(calls) if state is None]
    assert resets == [0, 22, 44, 66]
    for i in range(1, len(calls)):
        if i not in resets:
            assert calls[i][0] is calls[i - 1][1]           # the very (h_n, c_n) passed on
    # below the text's unigram entropy, which only a model using the context can beat
    _, counts = np.unique(list(text.read_text()), return_counts=True)
    freq = counts / counts.sum()
    assert np.mean(res["losses"][-10:]) < 0.5 * -(freq * np.log(freq)).sum()
