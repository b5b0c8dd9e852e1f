"""``rnnfast.optim``: each optimizer's update against a NumPy transcription of its published
definition over several steps, AdaGrad's accumulation of every parameter, in-place and
allocation-free steps, optimizers built before training seeing the layers' gradients,
``clip_grad_norm``, and the errors."""
import math
import tracemalloc

import numpy as np
import pytest

from rnnfast import losses, optim
from rnnfast.nn import Dense
from cells_for_tests import BACKENDS, make_layer

SHAPES = {"W": (4, 3), "b": (3,), "V": (2, 3, 2)}
STEPS = 5


def problem(dtype=np.float64, seed=0):
    """Parameters, and one gradient per step for each."""
    rng = np.random.default_rng(seed)
    params = {k: rng.standard_normal(s).astype(dtype) for k, s in SHAPES.items()}
    grads = [{k: rng.standard_normal(s).astype(dtype) for k, s in SHAPES.items()}
             for _ in range(STEPS)]
    return params, grads


def run(make, dtype=np.float64):
    """The optimizer's parameters after STEPS steps (gradients written into the arrays it
    holds, as a backward does)."""
    params, grads = problem(dtype)
    g_arrays = {k: np.zeros_like(p) for k, p in params.items()}
    opt = make({k: (params[k], g_arrays[k]) for k in params})
    for step in grads:
        for k, g in step.items():
            g_arrays[k][...] = g
        opt.step()
    return params


# ------------------------------------------------ the published updates, written out

def sgd_reference(lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    params, grads = problem()
    bufs = {k: None for k in params}
    for step in grads:
        for k, p in params.items():
            d = step[k] + weight_decay * p
            if momentum:
                bufs[k] = d.copy() if bufs[k] is None else momentum * bufs[k] + d
                d = d + momentum * bufs[k] if nesterov else bufs[k]
            params[k] = p - lr * d
    return params


def adagrad_reference(lr, eps, weight_decay=0.0, initial=0.0):
    params, grads = problem()
    G = {k: np.full_like(p, initial) for k, p in params.items()}
    for step in grads:
        for k, p in params.items():
            d = step[k] + weight_decay * p
            G[k] = G[k] + d * d
            params[k] = p - lr * d / (np.sqrt(G[k]) + eps)
    return params


def adam_reference(lr, b1, b2, eps, weight_decay=0.0):
    """Kingma & Ba, Algorithm 1 (bias-corrected moments; eps added to sqrt(v_hat))."""
    params, grads = problem()
    m = {k: np.zeros_like(p) for k, p in params.items()}
    v = {k: np.zeros_like(p) for k, p in params.items()}
    for t, step in enumerate(grads, start=1):
        for k, p in params.items():
            g = step[k] + weight_decay * p
            m[k] = b1 * m[k] + (1 - b1) * g
            v[k] = b2 * v[k] + (1 - b2) * g ** 2
            m_hat = m[k] / (1 - b1 ** t)
            v_hat = v[k] / (1 - b2 ** t)
            params[k] = p - lr * m_hat / (np.sqrt(v_hat) + eps)
    return params


CASES = {
    "sgd": (lambda ps: optim.SGD(ps, lr=0.1), sgd_reference(0.1)),
    "sgd_momentum": (lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9),
                     sgd_reference(0.1, momentum=0.9)),
    "sgd_nesterov": (lambda ps: optim.SGD(ps, lr=0.05, momentum=0.8, nesterov=True),
                     sgd_reference(0.05, momentum=0.8, nesterov=True)),
    "sgd_weight_decay": (lambda ps: optim.SGD(ps, lr=0.1, momentum=0.5, weight_decay=0.01),
                         sgd_reference(0.1, momentum=0.5, weight_decay=0.01)),
    "sgd_nesterov_weight_decay": (
        lambda ps: optim.SGD(ps, lr=0.1, momentum=0.5, nesterov=True, weight_decay=0.1),
        sgd_reference(0.1, momentum=0.5, nesterov=True, weight_decay=0.1)),
    "adagrad": (lambda ps: optim.AdaGrad(ps, lr=0.1, eps=1e-10),
                adagrad_reference(0.1, 1e-10)),
    "adagrad_options": (lambda ps: optim.AdaGrad(ps, lr=0.1, eps=1e-7, weight_decay=0.1,
                                                 initial_accumulator_value=0.5),
                        adagrad_reference(0.1, 1e-7, 0.1, 0.5)),
    "adam": (lambda ps: optim.Adam(ps, lr=0.01), adam_reference(0.01, 0.9, 0.999, 1e-8)),
    "adam_options": (lambda ps: optim.Adam(ps, lr=0.1, betas=(0.5, 0.9), eps=1e-3,
                                           weight_decay=0.1),
                     adam_reference(0.1, 0.5, 0.9, 1e-3, 0.1)),
}


@pytest.mark.parametrize("case", CASES)
def test_update_matches_the_published_formula(case):
    make, want = CASES[case]
    got = run(make)
    for k in SHAPES:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-13, atol=1e-15, err_msg=k)
    got32 = run(make, np.float32)
    for k in SHAPES:
        assert got32[k].dtype == np.float32
        np.testing.assert_allclose(got32[k], want[k], rtol=2e-5, atol=2e-6, err_msg=k)


def test_adagrad_accumulates_every_parameter():
    """The sum of squared gradients over all steps, for the bias as for the weights (seed
    000's AdaGrad reassigns the bias's accumulator, HB = dB * dB, each step)."""
    g = {"W": np.full((3, 2), 2.0), "b": np.full(2, 2.0)}
    params = {"W": np.zeros((3, 2)), "b": np.zeros(2)}
    opt = optim.AdaGrad({k: (params[k], g[k]) for k in g}, lr=1.0, eps=0.0)
    for _ in range(4):
        opt.step()
    for acc in opt.accumulators:
        np.testing.assert_array_equal(acc, 4 * 2.0 ** 2)
    # steps 1/sqrt(1), 1/sqrt(2), ... of lr * g / sqrt(G): the bias's like the weights'
    want = -sum(2.0 / math.sqrt(4.0 * t) for t in range(1, 5))
    np.testing.assert_allclose(params["b"], want, rtol=1e-15)
    np.testing.assert_array_equal(params["W"][0], params["b"])
    # seed 000's bias update (accumulator reset every step) would have moved it by 4 * lr
    assert abs(params["b"][0]) < 4 * 0.75


@pytest.mark.parametrize("make", [
    lambda ps: optim.SGD(ps, lr=0.1),
    lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3),
    lambda ps: optim.AdaGrad(ps, lr=0.1, weight_decay=1e-3),
    lambda ps: optim.Adam(ps, lr=0.1, weight_decay=1e-3),
], ids=["sgd", "sgd_nesterov_wd", "adagrad_wd", "adam_wd"])
def test_steps_are_in_place_and_allocate_nothing(make):
    rng = np.random.default_rng(0)
    params = {k: rng.standard_normal((64, 64)).astype(np.float32) for k in "abc"}
    grads = {k: rng.standard_normal((64, 64)).astype(np.float32) for k in "abc"}
    ids = {k: id(p) for k, p in params.items()}
    opt = make({k: (params[k], grads[k]) for k in params})
    opt.step()                                      # warm up
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        for _ in range(10):
            opt.step()
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    # one temporary array of a parameter's size would be 16 KiB
    assert peak < 2048, f"a step allocated {peak} bytes"
    assert {k: id(p) for k, p in params.items()} == ids


@pytest.mark.parametrize("backend", BACKENDS)
def test_optimizer_built_before_training_sees_the_gradients(backend):
    """The optimizer holds layer.grads' arrays; every backward writes into them."""
    rng = np.random.default_rng(0)
    lstm = make_layer("lstm", 3, 8, backend=backend, seed=0)
    dense = Dense(8, 2, seed=1)
    opt = optim.Adam([lstm, dense], lr=0.05)
    assert opt.names == ["0.Wx", "0.Wh", "0.b", "1.W", "1.b"]
    assert opt.grads["0.Wh"] is lstm.grads["Wh"] and opt.params["1.W"] is dense.params["W"]
    x = rng.standard_normal((32, 6, 3)).astype(np.float32)
    y = (x.sum(axis=(1, 2)) > 0).astype(int)
    before = {k: p.copy() for k, p in opt.params.items()}
    first = None
    for _ in range(40):
        out, (h, _) = lstm(x)
        loss, dlogits = losses.softmax_cross_entropy(dense(h), y)
        first = loss if first is None else first
        lstm.backward(None, (dense.backward(dlogits), None))
        opt.step()
    for k, p in opt.params.items():
        assert not np.array_equal(p, before[k]), f"{k} was never updated"
    assert lstm.params["Wh"] is opt.params["0.Wh"]
    assert loss < 0.5 * first


def test_the_ways_to_name_parameters():
    a, b = Dense(3, 2, seed=0), Dense(2, 1, seed=1)
    assert optim.SGD(a, lr=1).names == ["W", "b"]
    assert optim.SGD((a, b), lr=1).names == ["0.W", "0.b", "1.W", "1.b"]
    assert optim.SGD([(a.params, a.grads)], lr=1).names == ["0.W", "0.b"]
    pairs = {"head.W": (a.params["W"], a.grads["W"])}
    opt = optim.SGD(pairs, lr=0.5)
    a.grads["W"][...] = 1.0
    w = a.params["W"].copy()
    opt.step()
    np.testing.assert_allclose(a.params["W"], w - 0.5)
    opt.zero_grad()
    assert not a.grads["W"].any()
    assert "SGD(1 parameters" in repr(opt)


def test_a_replaced_array_is_an_error_at_step():
    d = Dense(3, 2, seed=0)
    opt = optim.Adam(d, lr=0.1)
    d.params["W"] = d.params["W"].copy()
    with pytest.raises(ValueError, match=r"params\['W'\] was replaced"):
        opt.step()
    d = Dense(3, 2, seed=0)
    opt = optim.SGD([d], lr=0.1)
    d.grads["b"] = np.zeros(2, np.float32)
    with pytest.raises(ValueError, match=r"grads\['b'\] was replaced"):
        opt.step()
    d = Dense(3, 2, seed=0)
    opt = optim.SGD(d, lr=0.1)
    d.grads = {k: g.copy() for k, g in d.grads.items()}
    with pytest.raises(ValueError, match="dict was replaced"):
        opt.step()


def test_construction_errors():
    p, g = np.zeros(3), np.zeros(3)
    with pytest.raises(ValueError, match="lr"):
        optim.SGD({"p": (p, g)}, lr=0)
    with pytest.raises(ValueError, match="lr"):
        optim.Adam({"p": (p, g)}, lr=float("nan"))
    with pytest.raises(TypeError, match="lr"):
        optim.Adam({"p": (p, g)}, lr="0.1")
    with pytest.raises(ValueError, match="nesterov"):
        optim.SGD({"p": (p, g)}, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="momentum"):
        optim.SGD({"p": (p, g)}, lr=0.1, momentum=1.0)
    with pytest.raises(ValueError, match=r"betas\[1\]"):
        optim.Adam({"p": (p, g)}, betas=(0.9, 1.0))
    with pytest.raises(TypeError, match="betas"):
        optim.Adam({"p": (p, g)}, betas=0.9)
    with pytest.raises(ValueError, match="shape and dtype"):
        optim.SGD({"p": (p, np.zeros(4))}, lr=0.1)
    with pytest.raises(ValueError, match="shape and dtype"):
        optim.SGD({"p": (p, np.zeros(3, np.float32))}, lr=0.1)
    with pytest.raises(TypeError, match="float32 or float64"):
        optim.SGD({"p": (np.zeros(3, int), np.zeros(3, int))}, lr=0.1)
    with pytest.raises(ValueError, match="twice"):
        optim.SGD({"p": (p, g), "q": (p, g)}, lr=0.1)
    ro = np.zeros(3)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        optim.SGD({"p": (ro, g)}, lr=0.1)
    with pytest.raises(TypeError, match="params must be"):
        optim.SGD(np.zeros(3), lr=0.1)
    with pytest.raises(TypeError, match=r"params\[0\]"):
        optim.SGD([np.zeros(3)], lr=0.1)
    with pytest.raises(ValueError, match="no parameters"):
        optim.SGD({}, lr=0.1)
    opt = optim.SGD({"p": (p, g)}, lr=0.1)
    opt.lr = 0.01                                   # a schedule may change it
    assert opt.lr == 0.01
    with pytest.raises(ValueError, match="lr"):
        opt.lr = -1


def test_clip_grad_norm():
    d = Dense(3, 2, seed=0)
    d.grads["W"][...] = 3.0
    d.grads["b"][...] = 4.0
    want = math.sqrt(6 * 9 + 2 * 16)
    held = d.grads["W"]
    total = optim.clip_grad_norm(d, max_norm=1.0)
    np.testing.assert_allclose(total, want, rtol=1e-6)
    assert d.grads["W"] is held
    now = math.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in d.grads.values()))
    np.testing.assert_allclose(now, 1.0, rtol=1e-5)
    # below the bound: untouched; the other ways to pass gradients
    before = {k: g.copy() for k, g in d.grads.items()}
    for grads in (d, [d], d.grads, list(d.grads.values()), optim.SGD(d, lr=1)):
        np.testing.assert_allclose(optim.clip_grad_norm(grads, 10.0), 1.0, rtol=1e-5)
        for k, g in d.grads.items():
            np.testing.assert_array_equal(g, before[k])
    # a non-finite norm is returned and the gradients left for the caller to skip
    d.grads["b"][0] = np.nan
    assert math.isnan(optim.clip_grad_norm(d, 1.0))
    np.testing.assert_array_equal(d.grads["W"], before["W"])
    with pytest.raises(ValueError, match="max_norm"):
        optim.clip_grad_norm(d, 0)
    with pytest.raises(TypeError, match="grads must be"):
        optim.clip_grad_norm("W", 1.0)


# ------------------------------------------------ the compiled one-pass updates vs NumPy's

def _core_or_skip():
    core = pytest.importorskip("rnnfast._core", reason="the compiled core is not built")
    assert optim._FUSED is core         # (so the fused runs below do run compiled)
    return core


def _paired_runs(make, dtype, shapes, steps=6, seed=3, special=False):
    """The same steps through the compiled updates and through the NumPy ones (``_fused``
    False); returns both sets of parameters and optimizer states."""
    rng = np.random.default_rng(seed)
    init = {k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}
    grads = [{k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}
             for _ in range(steps)]
    if special:     # zeros, signed zeros, huge and tiny values, a NaN and an Inf
        for k in init:
            flat = grads[0][k].reshape(-1)
            flat[:6] = [0.0, -0.0, 1e30, 1e-30, np.nan, np.inf][:flat.size]
            init[k].reshape(-1)[:2] = [0.0, -0.0][:init[k].size]
    out = []
    for fused in (True, False):
        params = {k: v.copy() for k, v in init.items()}
        g_arrays = {k: np.zeros_like(p) for k, p in params.items()}
        opt = make({k: (params[k], g_arrays[k]) for k in params})
        opt._fused = fused
        with np.errstate(over="ignore", invalid="ignore"):     # (the special values)
            for step in grads:
                for k, g in step.items():
                    g_arrays[k][...] = g
                opt.step()
        state = [a for name in ("m", "v", "accumulators", "_buf")
                 for a in (getattr(opt, name, None) or [])]
        out.append((params, state))
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES)
def test_compiled_update_is_the_numpy_update_bit_for_bit(case, dtype):
    """The one-pass compiled update of every optimizer and option gives the NumPy steps'
    values to the bit, parameters and optimizer state, float32 and float64, on sizes that
    leave a vector remainder; also through zeros, signed zeros, huge and tiny values, NaN
    and Inf."""
    _core_or_skip()
    make = CASES[case][0]
    for special in (False, True):
        (p1, s1), (p2, s2) = _paired_runs(make, dtype, {"W": (7, 5), "b": (13,), "s": (1,)},
                                          special=special)
        for k in p1:
            np.testing.assert_array_equal(p1[k], p2[k], err_msg=f"{case} {k}")
            assert np.array_equal(np.signbit(p1[k]), np.signbit(p2[k])), k
        assert len(s1) == len(s2)
        for a, b in zip(s1, s2):
            np.testing.assert_array_equal(a, b)


def test_compiled_updates_take_only_arrays_they_can_run():
    """The compiled updates say False, doing nothing, unless the arrays are C-contiguous,
    of one float dtype and size, not overlapping, and the written ones writeable: the
    optimizer then takes its NumPy steps, which give the same values."""
    core = _core_or_skip()
    rng = np.random.default_rng(0)
    p, g, m, v = (rng.standard_normal(10).astype(np.float32) for _ in range(4))
    args = (0.9, 0.999, 0.01, 1e-8, 0.0)
    before = p.copy()
    strided = np.zeros(20, np.float32)[::2]
    readonly = m.copy()
    readonly.flags.writeable = False
    refused = [
        (p, g, m, v.astype(np.float64)),       # two dtypes
        (p, g, m, np.zeros(11, np.float32)),    # two sizes
        (p, g, m, strided),                     # not contiguous
        (p, g, readonly, v),                    # state not writeable
        (p, g, p, v),                           # overlapping
        (p, g, m[:], m),                        # overlapping views
        (p.astype(np.int32), g, m, v),          # not a float
        (list(p), g, m, v),                     # not an array
    ]
    for arrays in refused:
        assert core._adam_update(*arrays, *args) is False
    np.testing.assert_array_equal(p, before)
    readonly_g = g.copy()
    readonly_g.flags.writeable = False         # only read: fine
    assert core._adam_update(p, readonly_g, m, v, *args) is True
    assert core._sgd_update(p, g, None, 0.1, 0.0, False, 0.0) is True
    assert core._sgd_update(p, g, p, 0.1, 0.9, False, 0.0) is False
    assert core._adagrad_update(p, g, strided, 0.1, 1e-10, 0.0) is False
    # and an optimizer over such arrays still steps (the NumPy way), like one on copies
    W = np.asfortranarray(rng.standard_normal((4, 3)).astype(np.float32))
    gW = np.asfortranarray(rng.standard_normal((4, 3)).astype(np.float32))
    W2 = np.ascontiguousarray(W)
    a = optim.Adam({"W": (W, gW)}, lr=0.1)
    b = optim.Adam({"W": (W2, np.ascontiguousarray(gW))}, lr=0.1)
    for _ in range(3):
        a.step()
        b.step()
    np.testing.assert_array_equal(W, W2)
