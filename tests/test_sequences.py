"""Stacked and bidirectional layers, variable lengths, every LSTM cell state, stateful calls:
the compiled core against the twin, the twin against central finite differences in
float64, both against PyTorch (``pack_padded_sequence(..., enforce_sorted=False)`` for the
lengths)."""
import numpy as np
import pytest

import rnnfast
from rnnfast import cells
from cells_for_tests import TORCH_KINDS, central_differences, kind_backends
from conftest import ATOL, RTOL

# (num_layers, bidirectional)
CONFIGS = [(1, True), (2, False), (2, True), (3, True)]
CONFIG_IDS = [f"L{n}{'-bi' if bi else ''}" for n, bi in CONFIGS]


def make_layer(kind, input_size, hidden, *, num_layers=1, bidirectional=False,
               batch_first=True, dtype=np.float64, backend="cython", seed=0, **kw):
    spec = cells.get(kind)
    cls = getattr(rnnfast, spec.layer)
    extra = {"nonlinearity": spec.nonlinearity} if spec.family == "rnn" else {}
    return cls(input_size, hidden, num_layers=num_layers, bidirectional=bidirectional,
               batch_first=batch_first, dtype=dtype, backend=backend, seed=seed, **extra, **kw)


def state_arg(kind, states):
    """A forward's state argument from a tuple of states ((h,) or (h, c))."""
    return states if cells.get(kind).family == "lstm" else states[0]


def state_tuple(kind, state):
    return tuple(state) if cells.get(kind).family == "lstm" else (state,)


def problem(kind, B, T, D, H, L, nd, batch_first, dtype, seed=1, lengths=True):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((B, T, D) if batch_first else (T, B, D)).astype(dtype)
    n = len(cells.get(kind).states)
    states = tuple(rng.standard_normal((L * nd, B, H) if (L, nd) != (1, 1)
                                       else (B, H)).astype(dtype) for _ in range(n))
    lens = None
    if lengths:
        lens = rng.integers(1, T + 1, B)
        lens[0] = T                         # one full row, the others any
        lens = rng.permutation(lens)
    return x, states, lens


def run(layer, kind, x, states, lengths, dout_seed=2, with_state_grads=True):
    """forward + backward with random output and state gradients; every result in one
    dict."""
    out, finals = layer(x, state_arg(kind, states), lengths=lengths)[:2]
    finals = state_tuple(kind, finals)
    rng = np.random.default_rng(dout_seed)
    dout = rng.standard_normal(out.shape).astype(out.dtype)
    if lengths is not None:                 # the padding's outputs are constants (zero)
        mask = np.arange(out.shape[1 if layer.batch_first else 0])[None, :] < lengths[:, None]
        if not layer.batch_first:
            mask = mask.T
        assert np.all(out[~mask] == 0)
    dfinals = tuple(rng.standard_normal(f.shape).astype(f.dtype) for f in finals)
    dx, dstates = layer.backward(dout, state_arg(kind, dfinals) if with_state_grads else None)
    res = {"out": out, "dx": dx}
    for k, f in enumerate(finals):
        res[f"final{k}"] = f
    for k, d in enumerate(state_tuple(kind, dstates)):
        res[f"dstate{k}"] = d
    for name, g in layer.grads.items():
        res["d" + name] = g.copy()
    return res, dout, dfinals


def assert_close(got, want, dtype, what=""):
    for key in want:
        scale = max(1.0, float(np.max(np.abs(want[key])))) if want[key].size else 1.0
        np.testing.assert_allclose(got[key], want[key], rtol=RTOL[dtype] * 10,
                                   atol=ATOL[dtype] * 10 * scale, err_msg=f"{what} {key}")


# ----------------------------------------------------------------------------- compiled vs twin

@pytest.mark.parametrize("config", CONFIGS + [(1, False)], ids=CONFIG_IDS + ["L1"])
@pytest.mark.parametrize("kind", cells.KINDS)
@pytest.mark.parametrize("batch_first", [True, False], ids=["bf", "tm"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_compiled_matches_twin(kind, config, batch_first, dtype):
    L, bi = config
    nd = 2 if bi else 1
    B, T, D, H = 7, 9, 5, 6
    x, states, lengths = problem(kind, B, T, D, H, L, nd, batch_first, dtype)
    results = []
    for backend in ("cython", "numpy"):
        layer = make_layer(kind, D, H, num_layers=L, bidirectional=bi, batch_first=batch_first,
                           dtype=dtype, backend=backend)
        results.append(run(layer, kind, x, states, lengths)[0])
    assert_close(results[0], results[1], dtype, f"{kind} L={L} bi={bi}")


@pytest.mark.parametrize("kind", ["rnn_tanh", "lstm", "gru"])
def test_large_batch_threads_and_packed_path(kind):
    """A batch big enough for the packed products and (with 2 threads) split rows."""
    B, T, D, H = 67, 12, 24, 40
    x, states, lengths = problem(kind, B, T, D, H, 2, 2, True, np.float32)
    results = []
    for backend in ("cython", "numpy"):
        layer = make_layer(kind, D, H, num_layers=2, bidirectional=True, dtype=np.float32,
                           backend=backend)
        results.append(run(layer, kind, x, states, lengths)[0])
    assert_close(results[0], results[1], np.float32, kind)


@pytest.mark.parametrize("kind", cells.KINDS)
def test_lengths_all_full_equal_no_lengths(kind):
    """lengths == seq_len everywhere is the padded call, to the bit."""
    B, T, D, H = 4, 6, 3, 5
    x, states, _ = problem(kind, B, T, D, H, 2, 2, True, np.float64)
    a = run(make_layer(kind, D, H, num_layers=2, bidirectional=True), kind, x, states, None)[0]
    b = run(make_layer(kind, D, H, num_layers=2, bidirectional=True), kind, x, states,
            np.full(B, T))[0]
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.parametrize("kind", cells.KINDS)
@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_row_with_lengths_equals_the_row_alone(kind, backend):
    """A row of length n in a padded batch gives what the row's first n steps give alone
    (forward, and the reverse direction starting at the row's own end)."""
    B, T, D, H = 5, 8, 3, 4
    x, states, lengths = problem(kind, B, T, D, H, 1, 2, True, np.float64)
    layer = make_layer(kind, D, H, bidirectional=True, backend=backend).eval()
    out, finals = layer(x, state_arg(kind, states), lengths=lengths)[:2]
    finals = state_tuple(kind, finals)
    for b in range(B):
        n = lengths[b]
        row_states = tuple(s[:, b:b + 1] for s in states)
        o, f = layer(x[b:b + 1, :n], state_arg(kind, row_states))[:2]
        np.testing.assert_allclose(out[b:b + 1, :n], o, rtol=1e-12, atol=1e-13)
        assert np.all(out[b, n:] == 0)
        for got, want in zip(finals, state_tuple(kind, f)):
            np.testing.assert_allclose(got[:, b:b + 1], want, rtol=1e-12, atol=1e-13)


# ----------------------------------------------------------------------------- finite differences

@pytest.mark.parametrize("config", [(2, True), (1, True), (2, False)], ids=["L2-bi", "L1-bi",
                                                                              "L2"])
@pytest.mark.parametrize("kind", ["rnn_tanh", "rnn_sigmoid", "lstm", "gru"])
def test_twin_gradients_match_central_differences(kind, config):
    L, bi = config
    nd = 2 if bi else 1
    B, T, D, H = 3, 4, 2, 3
    x, states, lengths = problem(kind, B, T, D, H, L, nd, False, np.float64, seed=5)
    layer = make_layer(kind, D, H, num_layers=L, bidirectional=bi, batch_first=False,
                       backend="numpy", seed=3)
    res, dout, dfinals = run(layer, kind, x, states, lengths, dout_seed=4)

    def loss():
        out, finals = layer(x, state_arg(kind, states), lengths=lengths)[:2]
        layer._cache = None
        return float(np.sum(out * dout) + sum(np.sum(f * d) for f, d in
                                              zip(state_tuple(kind, finals), dfinals)))

    def numeric(a):
        return central_differences(loss, a)

    layer.eval()
    checks = {"dx": x, **{f"dstate{k}": s for k, s in enumerate(states)},
              **{"d" + n: p for n, p in layer.params.items()}}
    for key, arr in checks.items():
        np.testing.assert_allclose(res[key], numeric(arr), rtol=1e-6, atol=1e-8, err_msg=key)


# ----------------------------------------------------------------------------- PyTorch

def torch_pair(kind, D, H, L, bi, batch_first, dtype, backend):
    torch = pytest.importorskip("torch", reason="PyTorch parity needs torch")
    spec = cells.get(kind)
    cls = getattr(torch.nn, spec.torch_class)
    kw = {"nonlinearity": spec.nonlinearity} if spec.family == "rnn" else {}
    torch.manual_seed(0)
    module = cls(D, H, num_layers=L, bidirectional=bi, batch_first=batch_first, **kw).to(
        torch.float64 if dtype == np.float64 else torch.float32)
    layer = make_layer(kind, D, H, num_layers=L, bidirectional=bi, batch_first=batch_first,
                       dtype=dtype, backend=backend)
    for layer_i in range(L):
        for d in range(2 if bi else 1):
            t_suffix = f"_l{layer_i}" + ("_reverse" if d else "")
            p = spec.params_from_torch(
                *(getattr(module, n + t_suffix).detach().numpy()
                  for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")))
            for name, value in p.items():
                layer.params[name + spec.suffix(layer_i, d)][...] = value
    return torch, module, layer


@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
@pytest.mark.parametrize("kind, backend", kind_backends(TORCH_KINDS))
@pytest.mark.parametrize("batch_first", [True, False], ids=["bf", "tm"])
@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
def test_matches_torch(kind, backend, config, batch_first, packed):
    L, bi = config
    nd = 2 if bi else 1
    B, T, D, H = 5, 7, 4, 6
    dtype = np.float64
    torch, module, layer = torch_pair(kind, D, H, L, bi, batch_first, dtype, backend)
    x, states, lengths = problem(kind, B, T, D, H, L, nd, batch_first, dtype,
                                 lengths=packed)
    res, dout, dfinals = run(layer, kind, x, states, lengths)
    xt = torch.tensor(x, requires_grad=True)
    st = tuple(torch.tensor(s, requires_grad=True) for s in states)
    hx = st if len(st) == 2 else st[0]
    if packed:
        from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
        seq = pack_padded_sequence(xt, torch.tensor(lengths), batch_first=batch_first,
                                   enforce_sorted=False)
        out_p, fin = module(seq, hx)
        out_t = pad_packed_sequence(out_p, batch_first=batch_first, total_length=T)[0]
    else:
        out_t, fin = module(xt, hx)
    fin = fin if isinstance(fin, tuple) else (fin,)
    loss = (out_t * torch.tensor(dout)).sum() + sum(
        (f * torch.tensor(d)).sum() for f, d in zip(fin, dfinals))
    loss.backward()
    want = {"out": out_t.detach().numpy(), "dx": xt.grad.numpy()}
    for k, f in enumerate(fin):
        want[f"final{k}"] = f.detach().numpy()
    for k, s in enumerate(st):
        want[f"dstate{k}"] = s.grad.numpy()
    spec = cells.get(kind)
    for layer_i in range(L):
        for d in range(nd):
            t_suffix = f"_l{layer_i}" + ("_reverse" if d else "")
            g = spec.grads_from_torch(*(getattr(module, n + t_suffix).grad.numpy()
                                        for n in ("weight_ih", "weight_hh", "bias_ih",
                                                  "bias_hh")))
            for name, value in g.items():
                want["d" + name + spec.suffix(layer_i, d)] = value
    assert_close(res, want, dtype, f"{kind} L={L} bi={bi} packed={packed}")


# ----------------------------------------------------------------------------- return_cells

@pytest.mark.parametrize("backend", ["cython", "numpy"])
@pytest.mark.parametrize("config", [(1, False), (1, True), (2, True)], ids=["L1", "L1-bi",
                                                                             "L2-bi"])
@pytest.mark.parametrize("with_lengths", [False, True], ids=["padded", "lengths"])
def test_return_cells(backend, config, with_lengths):
    """cells are every c_t of the last layer (each step's c, checked against one-step
    calls carrying the state), and their gradient (dcells) is exact: against central
    differences of sum(cells * dcells) on the twin, and compiled against twin."""
    L, bi = config
    nd = 2 if bi else 1
    B, T, D, H = 4, 6, 3, 5
    x, states, lengths = problem("lstm", B, T, D, H, L, nd, True, np.float64,
                                 lengths=with_lengths)
    layer = make_layer("lstm", D, H, num_layers=L, bidirectional=bi, backend=backend)
    out, (h_n, c_n), cs = layer(x, states, lengths=lengths, return_cells=True)
    assert cs.shape == out.shape
    if (L, nd) == (1, 1):                   # c_t by stepping: a 1-step call per step
        h, c = states
        for t in range(T):
            o, (h, c) = layer.eval()(x[:, t:t + 1], (h, c))
            valid = t < (lengths if lengths is not None else np.full(B, T))
            np.testing.assert_allclose(cs[valid, t], c[valid], rtol=1e-12, atol=1e-13)
        layer.train()
        out, (h_n, c_n), cs = layer(x, states, lengths=lengths, return_cells=True)
    if lengths is not None:
        for b in range(B):
            assert np.all(cs[b, lengths[b]:] == 0)
    rng = np.random.default_rng(9)
    dout = rng.standard_normal(out.shape)
    dcells = rng.standard_normal(out.shape)
    dx, _ = layer.backward(dout, dcells=dcells)
    got = {"dx": dx, **{k: g.copy() for k, g in layer.grads.items()}}
    twin = make_layer("lstm", D, H, num_layers=L, bidirectional=bi, backend="numpy")
    for k, p in layer.params.items():
        twin.params[k][...] = p
    out2, _, cs2 = twin(x, states, lengths=lengths, return_cells=True)
    np.testing.assert_allclose(cs, cs2, rtol=1e-12, atol=1e-13)
    dx2, _ = twin.backward(dout, dcells=dcells)
    np.testing.assert_allclose(dx, dx2, rtol=1e-11, atol=1e-12)
    for k in layer.grads:
        np.testing.assert_allclose(got[k], twin.grads[k], rtol=1e-11, atol=1e-12, err_msg=k)
    # central differences of the twin's loss in x
    twin.eval()

    def loss(xx):
        o, _, c = twin(xx, states, lengths=lengths, return_cells=True)
        return float(np.sum(o * dout) + np.sum(c * dcells))

    eps = 1e-6
    num = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[i] += eps
        xm[i] -= eps
        num[i] = (loss(xp) - loss(xm)) / (2 * eps)
    np.testing.assert_allclose(dx2, num, rtol=1e-6, atol=1e-8)


# ----------------------------------------------------------------------------- stateful

@pytest.mark.parametrize("kind", ["rnn_tanh", "lstm", "gru"])
@pytest.mark.parametrize("backend", ["cython", "numpy"])
@pytest.mark.parametrize("config", [(1, False), (2, False)], ids=["L1", "L2"])
def test_stateful_chunks_equal_one_call(kind, backend, config):
    L, _ = config
    B, T, D, H = 3, 12, 4, 5
    x, _, _ = problem(kind, B, T, D, H, L, 1, True, np.float64, lengths=False)
    whole = make_layer(kind, D, H, num_layers=L, backend=backend).eval()
    out, finals = whole(x)[:2]
    stream = make_layer(kind, D, H, num_layers=L, backend=backend, stateful=True).eval()
    parts = [stream(x[:, a:a + 4])[0] for a in range(0, T, 4)]
    np.testing.assert_allclose(np.concatenate(parts, axis=1), out, rtol=1e-12, atol=1e-13)
    for got, want in zip(state_tuple(kind, stream(x[:, :0])[1]), state_tuple(kind, finals)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)
    # another batch size: an error until the state is reset
    with pytest.raises(ValueError, match="reset_state"):
        stream(x[:2, :3])
    stream.reset_state()
    np.testing.assert_allclose(stream(x[:2, :3])[0], whole(x[:2, :3])[0], rtol=1e-12,
                               atol=1e-13)


@pytest.mark.parametrize("kind", ["rnn_tanh", "lstm"])
def test_stateful_gradients_stop_at_the_call_boundary(kind):
    """Truncated BPTT: the second chunk's gradients are those of a non-stateful call given
    the first chunk's final state as a constant initial state."""
    B, T, D, H = 2, 6, 3, 4
    x, _, _ = problem(kind, B, T, D, H, 1, 1, True, np.float64, lengths=False)
    stream = make_layer(kind, D, H, stateful=True)
    stream(x[:, :3])
    carried = stream._state
    stream(x[:, 3:])
    dout = np.ones((B, 3, H))
    dx, dstate = stream.backward(dout)
    plain = make_layer(kind, D, H)
    plain(x[:, 3:], state_arg(kind, tuple(c.copy() for c in carried)))
    dx2, _ = plain.backward(dout)
    np.testing.assert_array_equal(dx, dx2)
    for k in stream.grads:
        np.testing.assert_array_equal(stream.grads[k], plain.grads[k])
    # set_state is the same as the carried state
    stream.set_state(state_arg(kind, carried))
    np.testing.assert_array_equal(stream.eval()(x[:, 3:])[0], plain.eval()(
        x[:, 3:], state_arg(kind, carried))[0])


# ----------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_bad_lengths_and_states(backend):
    layer = make_layer("lstm", 3, 4, num_layers=2, bidirectional=True, backend=backend)
    x = np.zeros((5, 6, 3))
    before = {k: p.copy() for k, p in layer.params.items()}
    cases = [
        ({"lengths": [1, 2, 3]}, ValueError, r"one entry per batch row.*\(5,\).*\(3,\)"),
        ({"lengths": [1.5, 2, 3, 4, 5]}, TypeError, "integers"),
        ({"lengths": [True] * 5}, TypeError, "integers"),
        ({"lengths": [0, 2, 3, 4, 5]}, ValueError, "between 1 and seq_len=6, got 0"),
        ({"lengths": [7, 2, 3, 4, 5]}, ValueError, "between 1 and seq_len=6, got 7"),
        ({"state": (np.zeros((2, 5, 4)), np.zeros((2, 5, 4)))}, ValueError,
         r"num_layers \* num_directions=4.*\(4, 5, 4\).*\(2, 5, 4\)"),
    ]
    for kwargs, err, match in cases:
        state = kwargs.pop("state", None)
        with pytest.raises(err, match=match):
            layer(x, state, **kwargs)
    for k, p in layer.params.items():
        np.testing.assert_array_equal(p, before[k])
    layer(x, lengths=[6, 2, 3, 4, 5])
    with pytest.raises(ValueError, match="return_cells"):
        layer.backward(np.zeros((5, 6, 8)), dcells=np.zeros((5, 6, 8)))
    with pytest.raises(ValueError, match=r"dout must have the shape.*\(5, 6, 8\)"):
        layer.backward(np.zeros((5, 6, 4)))


@pytest.mark.parametrize("kind", cells.KINDS)
@pytest.mark.parametrize("backend", ["cython", "numpy"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_bad_lengths_of_one_direction_change_nothing(kind, backend, dtype):
    """One layer, one direction, arguments the compiled lane takes as they are (intp
    lengths of each row): a bad length is the checked path's error, and the last training
    forward's cache (x kept in the layer's buffer included) still gives its backward."""
    B, T, D, H = 3, 5, 2, 4
    layer = make_layer(kind, D, H, dtype=dtype, backend=backend)
    x, _, lens = problem(kind, B, T, D, H, 1, 1, True, dtype)
    dout = np.random.default_rng(3).standard_normal((B, T, H)).astype(dtype)
    layer(x, lengths=lens)
    want_dx = layer.backward(dout)[0].copy()
    want = {k: g.copy() for k, g in layer.grads.items()}
    layer(x, lengths=lens)
    other = x[::-1].copy()      # (the lane would copy it into the buffer that holds x)
    cases = [
        (np.array([T, 1], np.intp), ValueError, r"one entry per batch row.*\(3,\).*\(2,\)"),
        (np.array([T, 0, 1], np.intp), ValueError, f"between 1 and seq_len={T}, got 0"),
        (np.array([T + 1, 1, 1], np.intp), ValueError, f"between 1 and seq_len={T}, got {T + 1}"),
        (np.array([T, 1.5, 2]), TypeError, "integers"),
    ]
    for lengths, err, match in cases:
        with pytest.raises(err, match=match):
            layer(other, lengths=lengths)
    dx = layer.backward(dout)[0]
    np.testing.assert_array_equal(dx, want_dx)
    for k, g in layer.grads.items():
        np.testing.assert_array_equal(g, want[k])


# ----------------------------------------------------------------------------- step()

@pytest.mark.parametrize("kind", cells.KINDS)
@pytest.mark.parametrize("backend", ["cython", "numpy"])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_step_equals_forward(kind, backend, num_layers, dtype):
    B, T, D, H = 3, 5, 4, 6
    x, states, _ = problem(kind, B, T, D, H, num_layers, 1, True, dtype, lengths=False)
    layer = make_layer(kind, D, H, num_layers=num_layers, dtype=dtype, backend=backend).eval()
    out, finals = layer(x, state_arg(kind, states))[:2]
    state = state_arg(kind, tuple(s.copy() for s in states))
    for t in range(T):
        h, state = layer.step(x[:, t], state)
        np.testing.assert_allclose(h, out[:, t], rtol=RTOL[dtype] * 10, atol=ATOL[dtype] * 10)
    for got, want in zip(state_tuple(kind, state), state_tuple(kind, finals)):
        np.testing.assert_allclose(got, want, rtol=RTOL[dtype] * 10, atol=ATOL[dtype] * 10)
    # in place: out= the state itself, the same values
    state2 = state_arg(kind, tuple(s.copy() for s in states))
    for t in range(T):
        h2, state2 = layer.step(x[:, t], state2, out=state2)
    for got, want in zip(state_tuple(kind, state2), state_tuple(kind, state)):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("kind", ["rnn_tanh", "lstm", "gru"])
def test_step_with_out_allocates_nothing(kind):
    import tracemalloc
    layer = make_layer(kind, 8, 16, dtype=np.float32).eval()
    x_t = np.ones((1, 8), np.float32)
    _, state = layer.step(x_t)
    for _ in range(3):
        layer.step(x_t, state, out=state)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for _ in range(100):
        layer.step(x_t, state, out=state)
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert grown < 1024, grown      # (no array per step: one would be 64+ bytes each)


@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_step_sees_weight_changes_as_documented(backend):
    layer = make_layer("lstm", 4, 5, backend=backend).eval()
    x_t = np.ones((2, 4))
    h0, _ = layer.step(x_t)
    layer.params["Wx"] *= 0.5               # in place: invisible until params_changed()
    layer.params_changed()
    h1, _ = layer.step(x_t)
    fresh = make_layer("lstm", 4, 5, backend=backend).eval()
    for k, p in layer.params.items():
        fresh.params[k][...] = p
    np.testing.assert_array_equal(h1, fresh.step(x_t)[0])
    layer.params["Wx"] = layer.params["Wx"] * 2     # a replaced entry is seen
    np.testing.assert_allclose(layer.step(x_t)[0], layer(x_t[:, None])[0][:, 0], rtol=1e-12)
    layer.train()                           # training mode: packed anew at every step
    layer.params["b"] += 1
    np.testing.assert_allclose(layer.step(x_t)[0], layer.eval()(x_t[:, None])[0][:, 0],
                               rtol=1e-12)
    assert not np.array_equal(h0, h1)


def test_step_refuses_what_cannot_stream():
    layer = make_layer("gru", 3, 4, bidirectional=True)
    with pytest.raises(ValueError, match="bidirectional"):
        layer.step(np.zeros((2, 3)))
    layer = make_layer("lstm", 3, 4).eval()
    with pytest.raises(ValueError, match=r"x_t must have shape \(batch, input_size=3\)"):
        layer.step(np.zeros((2, 5)))
    with pytest.raises(ValueError, match=r"h0 must have shape"):
        layer.step(np.zeros((2, 3)), (np.zeros((3, 4)), np.zeros((3, 4))))
    with pytest.raises(ValueError, match=r"out\[0\] must be a writable"):
        layer.step(np.zeros((2, 3)), out=(np.zeros((2, 4), np.float32), np.zeros((2, 4))))


@pytest.mark.parametrize("kind", ["rnn_tanh", "lstm", "gru"])
@pytest.mark.parametrize("shape", [(3, 9, 5, 8), (40, 12, 24, 96)], ids=["small", "larger"])
def test_bidirectional_threads_give_the_same_bits(kind, shape):
    """Both directions side by side on two threads, or one after the other on one: the same
    results to the bit (each direction's loop is the same serial code)."""
    threadpoolctl = pytest.importorskip("threadpoolctl", reason="needs threadpoolctl")
    B, T, D, H = shape
    x, states, lengths = problem(kind, B, T, D, H, 2, 2, True, np.float32)
    results = []
    for threads in (1, 2):
        with threadpoolctl.threadpool_limits(threads):
            layer = make_layer(kind, D, H, num_layers=2, bidirectional=True, dtype=np.float32)
            results.append(run(layer, kind, x, states, lengths)[0])
    for key in results[0]:
        np.testing.assert_array_equal(results[0][key], results[1][key], err_msg=key)


@pytest.mark.parametrize("backend", ["cython", "numpy"])
@pytest.mark.filterwarnings("ignore::DeprecationWarning")     # setting shape (NumPy 2.4)
def test_stacked_params_replaced_or_reshaped_after_a_call_are_seen(backend):
    """A stacked bidirectional layer remembers its checked params between calls; a removed
    or replaced entry of any layer and direction, or one reshaped in place, is seen at the
    next call (a clear error, or the new values), never trusted."""
    layer = rnnfast.LSTM(3, 4, num_layers=2, bidirectional=True, backend=backend).eval()
    x = np.random.default_rng(0).standard_normal((2, 5, 3)).astype(np.float32)
    want = layer(x)[0]
    saved = layer.params.pop("Wh_l1_reverse")
    with pytest.raises(ValueError, match=r"params\['Wh_l1_reverse'\] is missing"):
        layer(x)
    layer.params["Wh_l1_reverse"] = saved
    np.testing.assert_array_equal(layer(x)[0], want)
    layer.params["Wx_reverse"] = 2 * layer.params["Wx_reverse"]      # replaced: new values
    assert not np.array_equal(layer(x)[0], want)
    layer.params["Wx_reverse"] = layer.params["Wx_reverse"] / 2
    np.testing.assert_array_equal(layer(x)[0], want)
    w = layer.params["Wx_reverse"]
    w.shape = (16, 3)                                           # in place: the same object
    with pytest.raises(ValueError, match=r"params\['Wx_reverse'\] must have shape \(3, 16\)"):
        layer(x)
