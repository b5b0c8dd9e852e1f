"""Run by tools/check_wheel.sh in a fresh virtual environment holding only the repaired wheel
(and numpy, scipy), from a directory outside the checkout: the installed compiled core loads
with its vendored OpenMP runtime, and a forward and a backward of an LSTM and an RNN agree with
the NumPy twin (float32 rtol 1e-5 atol 1e-6; float64 rtol 1e-12 atol 1e-13, as the tests;
the weight gradients, sums over every step and row, relative to the sum of their terms'
magnitudes, as in tests/test_parity.py).
"""
import os
import shutil
import sys

import numpy as np

import rnnfast
from rnnfast import functional

TOL = {np.float32: (1e-5, 1e-6), np.float64: (1e-12, 1e-13)}


def loaded_libraries():
    with open("/proc/self/maps") as f:
        return {line.split()[-1] for line in f if "/" in line.split()[-1]}


def flat(result):
    """The arrays of a forward's or backward's result, states unpacked, Nones dropped."""
    for r in result:
        if isinstance(r, tuple):
            yield from flat(r)
        elif r is not None:
            yield np.asarray(r)


def run(layer, x, dout):
    """``{name: array}``: a training forward and a backward (no initial state)."""
    fwd = list(flat(layer(x)))
    bwd = list(flat(layer.backward(dout)))
    names = ["out", "h_n", "c_n"][:len(fwd)] + ["dx"]
    return dict(zip(names, fwd + bwd)) | {f"d{k}": g for k, g in layer.grads.items()}


def weight_grad_scales(layer, x, dout):
    """For each entry of dWx, dWh, db: the sum of the |terms| it adds up (float64), as the
    tests' tolerance (tests/test_parity.py): ``dWx = x.T @ dG``, ``dWh = h_prev.T @ dG``,
    ``db = dG.sum(0)`` over all (step, batch) rows, dG the pre-activations' gradient. A
    backward given the identity for Wx (and zeros of its width for x) returns dG as dx."""
    p = {k: v.astype(np.float64) for k, v in layer.params.items()}
    x, dout = x.astype(np.float64), dout.astype(np.float64)
    B, T, _ = x.shape
    GH = p["Wh"].shape[1]
    zeros, eye = np.zeros((B, T, GH)), np.eye(GH)
    if isinstance(layer, rnnfast.LSTM):
        out, _, _, ws = functional.lstm_forward(x, None, None, p["Wx"], p["Wh"], p["b"],
                                                backend="numpy")
        dG = functional.lstm_backward(dout, None, None, zeros, eye, p["Wh"], ws,
                                      backend="numpy")[0]
    else:
        nl = layer.nonlinearity
        out, _, ws = functional.rnn_forward(x, None, p["Wx"], p["Wh"], p["b"], nl,
                                            backend="numpy")
        dG = functional.rnn_backward(dout, None, zeros, eye, p["Wh"], ws, nl,
                                     backend="numpy")[0]
    h_prev = np.concatenate([np.zeros_like(out[:, :1]), out[:, :-1]], axis=1)
    rows = lambda a: np.abs(a).reshape(B * T, -1)  # noqa: E731
    return {"dWx": rows(x).T @ rows(dG), "dWh": rows(h_prev).T @ rows(dG),
            "db": rows(dG).sum(0)}


def check(Layer, B, T, D, H, dtype, **kwargs):
    compiled = Layer(D, H, dtype=dtype, seed=0, **kwargs)
    twin = Layer(D, H, dtype=dtype, seed=0, backend="numpy", **kwargs)
    for name, p in compiled.params.items():
        twin.params[name][...] = p
    rng = np.random.default_rng(1)
    x = rng.standard_normal((B, T, D)).astype(dtype)
    dout = rng.standard_normal((B, T, H)).astype(dtype)
    got, want = run(compiled, x, dout), run(twin, x, dout)
    scales = weight_grad_scales(twin, x, dout)
    rtol, atol = TOL[dtype]
    assert got.keys() == want.keys(), (got.keys(), want.keys())
    what = f"{Layer.__name__}{kwargs or ''} B,T,D,H={B},{T},{D},{H} {np.dtype(dtype).name}"
    for name in want:
        assert got[name].dtype == want[name].dtype == dtype, (what, name)
        if name in scales:      # |got - want| <= atol + rtol * (sum of |terms|), per entry
            # (the sum of |terms| bounds the sum: else the scales were computed wrong)
            assert np.all(np.abs(want[name]) <= (1 + 1e-4) * scales[name] + atol), (what, name)
            err = np.abs(got[name].astype(np.float64) - want[name])
            tol = atol + rtol * scales[name]
            assert np.all(err <= tol), (f"{what} {name}: |diff| {err.max():.3g}, worst "
                                        f"{np.max(err / tol):.3g}x the tolerance")
        else:
            np.testing.assert_allclose(got[name], want[name], rtol=rtol, atol=atol,
                                       err_msg=f"{what} {name}")
    print(f"  {what}: {', '.join(got)} agree with the NumPy twin")


def main():
    compilers = [c for c in ("gcc", "cc", "c++", "g++", "clang") if shutil.which(c)]
    assert not compilers, f"a compiler is on PATH: {compilers}"
    core = functional.compiled_core()
    here = os.path.realpath(sys.prefix)
    for module in (rnnfast, core):
        assert os.path.realpath(module.__file__).startswith(here), (module.__file__, here)
    print(f"rnnfast {rnnfast.__version__}: compiled core {core.__file__}")
    for dtype in (np.float32, np.float64):
        check(rnnfast.LSTM, 4, 12, 8, 16, dtype)
        check(rnnfast.RNN, 4, 12, 8, 16, dtype)
        check(rnnfast.RNN, 3, 7, 5, 9, dtype, nonlinearity="relu")
    # 32 x 128 x 4*128 = 2^21 multiply-adds per step: large enough for the OpenMP split
    check(rnnfast.LSTM, 32, 6, 16, 128, np.float32)
    check(rnnfast.RNN, 64, 6, 16, 256, np.float32)
    gomp = sorted(p for p in loaded_libraries() if "libgomp" in os.path.basename(p))
    print(f"OpenMP runtime loaded: {gomp}")
    assert gomp and all("rnnfast.libs" in p for p in gomp), \
        f"expected the libgomp vendored in rnnfast.libs/, loaded {gomp}"
    return 0


if __name__ == "__main__":
    sys.exit(main())
