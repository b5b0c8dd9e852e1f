"""Property tests of rnnfast.torch against torch.nn on random configurations.

test_torch_backend.py checks a fixed grid (batch 3, 5 steps, input 4, hidden 6); here
Hypothesis draws the sizes too (batch, steps, input and hidden down to 1), with the cell,
num_layers (1 or 2), bidirectional, batch_first, bias, float32 or float64, whether the
initial states are given, and the input: padded, packed (random lengths, sorted or not, so
enforce_sorted True or False), or unbatched (2-D). The same weights run through torch.nn's
module and rnnfast.torch's, and the outputs, the final states and every gradient (input,
initial states, each parameter; a loss on every output and state) must agree within
conftest's tolerances, as in test_torch_backend. ~150 examples, a few seconds;
``RNNFAST_PROPERTY_EXAMPLES`` scales the count. On CI (``CI`` set) derandomized."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rnnfast import cells
from cells_for_tests import property_settings

torch = pytest.importorskip("torch", reason="PyTorch is not installed; rnnfast.torch needs it")
rt = pytest.importorskip("rnnfast.torch")
from test_torch_backend import TORCH_DTYPE, TORCH_KINDS, assert_same_results, run  # noqa: E402

PROFILE = property_settings(150)


@st.composite
def configurations(draw):
    B, T = draw(st.integers(1, 4)), draw(st.integers(1, 6))
    packing = draw(st.sampled_from(["padded", "packed", "unbatched"]))
    lengths = None
    if packing == "packed":
        lengths = draw(st.lists(st.integers(1, T), min_size=B, max_size=B))
        if draw(st.booleans()):
            lengths = sorted(lengths, reverse=True)       # enforce_sorted=True
    return dict(kind=draw(st.sampled_from(TORCH_KINDS)), B=B, T=T,
                D=draw(st.integers(1, 5)), H=draw(st.integers(1, 6)),
                num_layers=draw(st.integers(1, 2)), bidirectional=draw(st.booleans()),
                batch_first=draw(st.booleans()), bias=draw(st.booleans()),
                dtype=draw(st.sampled_from([np.float32, np.float64])),
                states=draw(st.booleans()), packing=packing, lengths=lengths,
                seed=draw(st.integers(0, 2**31 - 1)))


@PROFILE
@given(c=configurations())
def test_rnnfast_torch_equals_torch_nn(c):
    spec = cells.get(c["kind"])
    td = TORCH_DTYPE[c["dtype"]]
    kwargs = dict(num_layers=c["num_layers"], bidirectional=c["bidirectional"],
                  batch_first=c["batch_first"], bias=c["bias"], dtype=td)
    if spec.family == "rnn":
        kwargs["nonlinearity"] = spec.nonlinearity
    torch.manual_seed(c["seed"])
    ref = getattr(torch.nn, spec.torch_class)(c["D"], c["H"], **kwargs)
    ours = getattr(rt, spec.torch_class)(c["D"], c["H"], **kwargs)
    ours.load_state_dict(ref.state_dict())
    g = torch.Generator().manual_seed(c["seed"])
    B, T, D, H = c["B"], c["T"], c["D"], c["H"]
    batched = c["packing"] != "unbatched"
    shape = ((B, T, D) if c["batch_first"] else (T, B, D)) if batched else (T, D)
    x = torch.randn(shape, generator=g, dtype=td)
    hx = None
    if c["states"]:
        L = c["num_layers"] * (2 if c["bidirectional"] else 1)
        sshape = (L, B, H) if batched else (L, H)
        hs = tuple(torch.randn(sshape, generator=g, dtype=td) for _ in spec.states)
        hx = hs if len(hs) == 2 else hs[0]
    expected = run(ref, x, hx, lengths=c["lengths"])
    assert_same_results(run(ours, x, hx, lengths=c["lengths"]), expected, c["dtype"])
