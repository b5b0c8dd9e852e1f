"""rnnfast as PyTorch's CPU backend: ``RNN``, ``LSTM`` and ``GRU`` modules that are torch.nn's
own, with the forward and backward of rnnfast's compiled core.

``rnnfast.torch.RNN/LSTM/GRU`` subclass ``torch.nn.RNN/LSTM/GRU``: the same constructor
arguments, parameters (names, shapes, initialisation), ``state_dict``, ``repr``, ``.double()``
and pickling, so state_dicts load both ways between them and torch.nn's modules. Only
``forward(input, hx=None)`` differs: it returns what torch.nn's returns, computed by the
compiled kernels, with autograd through one ``torch.autograd.Function`` per call (gradients
for the input, the initial states and every parameter). ``convert(model)`` turns every
``torch.nn.RNN/LSTM/GRU`` of a model into these, in place (the same module and parameter
objects: an optimizer built before still updates them).

How a call maps onto the kernels (``rnnfast._core``, called directly on arrays validated
here once):

- parameters: the kernels multiply on the right, ``Wx = weight_ih.T``, ``Wh = weight_hh.T``:
  they read torch's weights in place, as F-ordered ``.T`` views of zero-copy NumPy views of
  the tensors (kept while the parameter's storage stays the same); each call sums the biases
  as the registry says (``rnnfast.cells``: ``b = bias_ih + bias_hh``; the GRU's ``b_hn =
  bias_hh[2H:]``), and backward transposes the weight gradients into torch's layout. Saved
  for backward as torch.nn saves them: an in-place change of a parameter between forward
  and backward is torch's error, not a gradient of other weights.
- one workspace per call, kept in the autograd context until backward (so a module may run
  several times in one graph). The compiled backward overwrites a workspace's gates with
  their gradients: when the graph is retained (``retain_graph=True``) backward runs on a
  copy of them, so that a second backward gives the same gradients.
- ``torch.no_grad()``, and any call where nothing needs a gradient (``eval()`` with frozen
  parameters, say), run the inference kernels: no workspace, no autograd node. In eval mode
  with parameters that require gradients, forward keeps a workspace (torch.nn's modules
  backpropagate in eval mode too); eval only turns dropout off.
- ``num_layers > 1``: one kernel call per layer, layer l's output the input of layer l + 1,
  all in the kernels' stack loop (``_core.stack_forward`` / ``stack_backward``: no Python
  per layer); with dropout between layers in training (torch's: each element zeroed with
  probability ``dropout``, the rest scaled by ``1 / (1 - dropout)``, drawn from torch's
  generator) layer by layer here, the mask applied between the calls.
- ``bidirectional=True``: per layer both directions in one kernel call
  (``_core.directions_forward``, side by side on two threads when the thread policy gives
  two), writing the two column halves of one ``(.., 2 * hidden)`` output; the reverse
  direction adds its input gradient into the forward one's. Parameters, states
  ``(num_layers * 2, batch, hidden)`` and outputs as torch.nn's.
- ``PackedSequence`` input: unpacked (a gather, torch's own op and autograd) into a padded
  time-major tensor in the caller's row order, run with the batch's lengths in the kernels
  (rows sorted once per call, the active batch shrinking step by step; the reverse
  direction starts at each row's own end), and the output packed back by the inverse
  gather: a PackedSequence with the input's ``batch_sizes``, ``sorted_indices`` and
  ``unsorted_indices``, ``h_n``/``c_n`` each sequence's state at its last step, in the
  caller's order (as torch.nn's, with ``enforce_sorted`` True or False). Dropout is drawn
  over the packed rows, as torch.nn draws it.
- an LSTM with ``proj_size`` is refused at construction (no such kernel).

Only CPU tensors of float32 or float64 run; anything else is a clear error.
"""
from __future__ import annotations

import functools

import numpy as np

from . import _checks, cells
from .functional import compiled_core

try:
    import torch
    from torch import nn
    from torch.autograd.function import once_differentiable
    from torch.nn.utils.rnn import PackedSequence
except ImportError as e:                    # pragma: no cover - exercised without torch
    raise ImportError(_checks.missing_torch_message(), name="torch") from e

__all__ = ["RNN", "LSTM", "GRU", "convert"]

_SPEC_OF_MODE = {"RNN_TANH": cells.get("rnn_tanh"), "RNN_RELU": cells.get("rnn_relu"),
                 "LSTM": cells.get("lstm"), "GRU": cells.get("gru")}
_NUMPY_OF_TORCH = {torch.float32: np.dtype(np.float32), torch.float64: np.dtype(np.float64)}
_TORCH_OF_NUMPY = {v: k for k, v in _NUMPY_OF_TORCH.items()}
# whether the running backward keeps its graph (retain_graph=True); torch has no public
# way to ask, and without this one a backward must assume it does (and copy the gates)
_keep_graph = getattr(torch._C._autograd, "_get_current_graph_task_keep_graph",
                      lambda: True)
_core = compiled_core()         # (its ImportError says what to do when it is missing)


# ----------------------------------------------------------------------------- kernels

def _forward_layer(core, call, x, states, layer, training):
    """One layer, every direction, over ``x`` (its input, in the call's layout) from
    ``states`` (per direction a tuple in the registry's order: (h0,) or (h0, c0), each
    ``(batch, hidden)`` or None). Returns ``(out, done)``: the layer's output ``(.., nd*H)``
    (the directions write their column halves of one array) and per direction ``(finals,
    workspace)`` (workspace None unless ``training``)."""
    kind, bf, steps, nd = call.spec.kind, call.batch_first, call.steps, call.directions
    weights = call.layers[layer * nd:(layer + 1) * nd]
    if nd == 1:
        out, finals, ws = core.direction_forward(kind, x, states[0], weights[0], bf,
                                                 training, steps)
        return out, ((finals, ws),)
    B, T = (x.shape[0], x.shape[1]) if bf else (x.shape[1], x.shape[0])
    shape = (B, T, 2 * weights[0][1].shape[0]) if bf else (T, B, 2 * weights[0][1].shape[0])
    # rows past their end are never written by the kernels: zeros there
    out = np.empty(shape, call.dtype) if steps is None else np.zeros(shape, call.dtype)
    # both directions at once (side by side when the thread policy gives two threads);
    # buffers lent per call (a module may run several times in one graph)
    done = core.directions_forward((core, core), kind, x, states, weights, bf, training,
                                   steps, out)
    return out, done


def _backward_layer(core, call, dout, dstates, x, workspaces, layer, need_dx=True,
                    need_dh0=True):
    """BPTT of one layer's :func:`_forward_layer`: ``dout`` the gradient of its whole
    output (or None), ``dstates`` per direction a tuple like the forward's states (each
    ``(batch, hidden)`` or None). Returns ``(dx, dstates0, grads)``, per direction the
    initial states' gradients and the parameter gradients (registry order); dx None
    without ``need_dx``, dh0 unfinished without ``need_dh0`` (the kernels skip their
    products). Consumes the workspaces."""
    kind, bf, nd = call.spec.kind, call.batch_first, call.directions
    weights = call.layers[layer * nd:(layer + 1) * nd]
    if nd == 1:
        dx, d0, g = core.direction_backward(kind, dout, dstates[0], x, weights[0][0],
                                            weights[0][1], workspaces[0], bf,
                                            need_dx=need_dx, need_dh0=need_dh0)
        return dx, (d0,), (g,)
    return core.directions_backward((core, core), kind, dout, dstates, x,
                                    (weights[0][0], weights[1][0]),
                                    (weights[0][1], weights[1][1]), workspaces, bf,
                                    need_dx=need_dx, need_dh0=need_dh0)


def _pristine(ws, spec):
    """A workspace for one more backward, leaving ``ws`` intact for the next: the compiled
    backward overwrites the gates (and the GRU's hidden-side gates) with their gradients and
    reads the states, so only those are copied; the copy lends no buffers (``ws`` gives its
    back when the last backward consumes it)."""
    copy = {k: v for k, v in ws.items() if k != "lent"}
    copy["gates"] = ws["gates"].copy()
    if spec.family == "gru":
        copy["hgates"] = ws["hgates"].copy()
    return copy


class _Call:
    """What one forward runs: the cell, the layout, the directions, the kernels' weights
    per (layer, direction) in torch's order (NumPy, right-multiplying: ``(Wx, Wh, b,
    b_hn)``, b_hn None but for the GRU) and the same as one flat tuple in the registry's order
    (``flat``: the kernels' stack_forward takes them so), dropout, and a PackedSequence's
    lengths (intp, the caller's row order) with their sequence steps
    (``_core.sequence_steps``), or None."""

    __slots__ = ("spec", "batch_first", "layers", "flat", "dropout", "bias", "dtype",
                 "directions", "steps", "packing", "lengths")

    def __init__(self, spec, batch_first, layers, dropout, bias, dtype, directions=1,
                 steps=None, packing=None, lengths=None):
        self.spec, self.batch_first, self.layers = spec, batch_first, layers
        self.dropout, self.bias, self.dtype = dropout, bias, dtype
        self.directions, self.steps, self.packing = directions, steps, packing
        self.lengths = lengths
        n = len(spec.params)
        flat = ()
        for weights in layers:
            flat += weights[:n]
        self.flat = flat


def _dropout_mask(shape, p, dtype, batch_first, packing=None):
    """torch's dropout mask for a layer output of ``shape``, from torch's generator: 0 with
    probability p, else 1/(1-p). Drawn as torch.nn draws it, so that under one seed both
    modules drop the same elements: time-major (its layers run time-major), or for a
    PackedSequence over the packed rows only (``packing``: the padded row of each packed
    row), scattered here into the padded layout (zeros past each row's end)."""
    td = _TORCH_OF_NUMPY[dtype]
    if packing is not None:
        rows = torch.empty((len(packing), shape[2]), dtype=td).bernoulli_(1.0 - p)
        mask = np.zeros((shape[0] * shape[1], shape[2]), dtype)
        mask[packing] = rows.div_(1.0 - p).numpy()
        return mask.reshape(shape)
    if batch_first:
        shape = (shape[1], shape[0], shape[2])
    mask = torch.empty(shape, dtype=td).bernoulli_(1.0 - p)
    mask = mask.div_(1.0 - p).numpy()
    return np.ascontiguousarray(mask.transpose(1, 0, 2)) if batch_first else mask


def _per_direction(states, j0, nd):
    """Per direction of the layer whose first direction is ``j0``: the states' slices
    ``(batch, hidden)`` (each None when the state is)."""
    return [tuple(None if s is None else s[j0 + d] for s in states) for d in range(nd)]


def _stacked(per_layer):
    """``(num_layers * num_directions, batch, hidden)`` from a list of ``(batch, hidden)``
    arrays (a view when there is one)."""
    return per_layer[0][None] if len(per_layer) == 1 else np.stack(per_layer)


def _torch_order(grads):
    """One direction's parameter gradients (the registry's order) as ``(dWx, dWh, db,
    db_hn)``, db_hn None but for the GRU."""
    return (grads[0], grads[1], grads[2], grads[3] if len(grads) == 4 else None)


def _run_forward(call, x, h0, c0, training):
    """Every layer and direction of ``call`` over ``x`` (a C-contiguous array in the call's
    layout) from the states ``h0``/``c0`` (``(num_layers * num_directions, batch, hidden)``
    arrays or None). Returns ``(out, h_n, c_n, tape)``: ``h_n``/``c_n`` shaped like the
    states (c_n None but for the LSTM) and, when ``training``, the tape backward reads (per
    layer its input, its directions' workspaces and the dropout mask applied to its
    output; for one layer of one direction just ``(input, workspace)``), else None."""
    core = _core
    spec, nd = call.spec, call.directions
    has_c = spec.has_cell_state
    states = (h0, c0) if has_c else (h0,)
    if len(call.layers) == 1:
        # one layer, one direction (the common case): the kernels directly, no per-layer
        # lists, per-direction tuples or tape entries (their Python was ~15% of the wrapper's
        # own share of a tiny training step, session 16)
        first = ((None if h0 is None else h0[0], None if c0 is None else c0[0]) if has_c
                 else (None if h0 is None else h0[0],))
        out, finals, ws = core.direction_forward(spec.kind, x, first, call.layers[0],
                                                 call.batch_first, training, call.steps)
        return (out, finals[0][None], finals[1][None] if has_c else None,
                (x, ws) if training else None)
    if not call.dropout:
        # every layer and direction in the kernels' stack loop (C), no per-layer Python
        # (the arrays are ready: declined only if they were not); its tape ("stack",
        # layers), each layer's input and its directions' workspaces
        done = core.stack_forward((core,) * len(call.layers), spec.kind, x, states,
                                  call.flat, nd, call.batch_first, training,
                                  call.lengths)
        if done is not None:
            out, finals = done[0], done[1]
            return (out, finals[0], finals[1] if has_c else None,
                    ("stack", done[2]) if training else None)
    L = len(call.layers) // nd
    tape = [] if training else None
    hs, cs = [], []
    inp = x
    for layer in range(L):
        out, done = _forward_layer(core, call, inp, _per_direction(states, layer * nd, nd),
                                   layer, training)
        for finals, _ in done:
            hs.append(finals[0])
            if has_c:
                cs.append(finals[1])
        mask = None
        if call.dropout and layer < L - 1:
            mask = _dropout_mask(out.shape, call.dropout, call.dtype, call.batch_first,
                                 call.packing)
            out = out * mask
        if training:
            tape.append((inp, [ws for _, ws in done], mask))
        inp = out
    return inp, _stacked(hs), _stacked(cs) if has_c else None, tape


def _run_backward(call, tape, dout, dh_n, dc_n, keep, need_dx=True, need_dh0=True):
    """BPTT through every layer of a training :func:`_run_forward`, from the gradients on its
    outputs (each an array or None). Returns ``(dx, dh0, dc0, weight_grads)`` with ``dh0``/
    ``dc0`` shaped like the states and ``weight_grads`` a list, per (layer, direction) in
    torch's order, of ``(dWx, dWh, db, db_hn)`` (db_hn None but for the GRU). ``keep``:
    leave the tape's workspaces intact (the graph is retained for another backward).
    ``need_dx`` False: dx None; ``need_dh0`` False: dh0 not to be used (unfinished)."""
    core = _core
    spec, nd = call.spec, call.directions
    has_c = spec.has_cell_state
    dstates = (dh_n, dc_n) if has_c else (dh_n,)
    if len(call.layers) == 1:               # (see _run_forward)
        x, ws = tape
        Wx, Wh = call.layers[0][0], call.layers[0][1]
        last = ((None if dh_n is None else dh_n[0], None if dc_n is None else dc_n[0])
                if has_c else (None if dh_n is None else dh_n[0],))
        dx, d0, g = core.direction_backward(spec.kind, dout, last, x, Wx, Wh,
                                            _pristine(ws, spec) if keep else ws,
                                            call.batch_first, need_dx=need_dx,
                                            need_dh0=need_dh0)
        return (dx, d0[0][None], d0[1][None] if has_c else None, [_torch_order(g)])
    if tape[0] == "stack":                  # (see _run_forward)
        layers = tape[1]
        if keep:
            layers = [(inp, [_pristine(ws, spec) for ws in workspaces])
                      for inp, workspaces in layers]
        dx, d0, flat, _ = core.stack_backward(
            (core,) * len(call.layers), spec.kind, dout, dstates, layers, call.flat,
            nd, call.batch_first, None, False, need_dx, need_dh0)
        n = len(spec.params)
        return (dx, d0[0], d0[1] if has_c else None,
                [_torch_order(flat[j:j + n]) for j in range(0, len(flat), n)])
    L = len(call.layers) // nd
    dhs, dcs, grads = [None] * (L * nd), [None] * (L * nd), [None] * (L * nd)
    d = dout
    for layer in range(L - 1, -1, -1):
        inp, workspaces, mask = tape[layer]
        if mask is not None and d is not None:
            d = d * mask
        if keep:
            workspaces = [_pristine(ws, spec) for ws in workspaces]
        j0 = layer * nd
        dx, d0s, gs = _backward_layer(core, call, d, _per_direction(dstates, j0, nd), inp,
                                      workspaces, layer, need_dx or layer > 0, need_dh0)
        for k in range(nd):
            dhs[j0 + k] = d0s[k][0]
            if has_c:
                dcs[j0 + k] = d0s[k][1]
            grads[j0 + k] = _torch_order(gs[k])
        d = dx
    return d, _stacked(dhs), _stacked(dcs) if has_c else None, grads


def _biases(spec, bias_ih, bias_hh):
    """``(b, b_hn)`` (b_hn None but for the GRU) from torch's two biases, as
    ``spec.biases_from_torch`` defines them: the core's copy in C (~0.3 us, each call)
    when they are the 1-D vectors torch's parameters are."""
    # (the count of spec.summed_bias(hidden), without its slice: ~0.1 us a call)
    done = _core.summed_biases(bias_ih, bias_hh, spec.summed_bias_gates * (
        bias_ih.shape[0] // spec.gates), "b_hn" in spec.params)
    if done is None:
        done = tuple(spec.biases_from_torch(bias_ih, bias_hh).values())
    return done[0], (done[1] if len(done) == 2 else None)


def _bias_grads(spec, db, db_hn):
    """``(bias_ih.grad, bias_hh.grad)`` from the kernels' ``db`` (and ``db_hn``), as
    ``spec.bias_grads_to_torch`` defines them (the core's copies, as in _biases)."""
    done = _core.split_bias_grads(db, db_hn, spec.summed_bias_gates * (
        db.shape[0] // spec.gates))
    return spec.bias_grads_to_torch(db, db_hn) if done is None else done


# ``a.T`` (2-D) as a new C-contiguous array: the core's tiled copy (1.5-5x NumPy's strided
# one and torch's from 256 x 64 floats up, measured on a Zen 3; tests/test_transpose.py)
_transposed = _core.transposed


def _array(t):
    """A tensor's values as a C-contiguous NumPy array (a view when it already is one)."""
    a = t.numpy(force=True) if t.requires_grad else t.numpy()
    return a if a.flags.c_contiguous else np.ascontiguousarray(a)


def _once_differentiable(backward):
    """torch's ``once_differentiable`` without its cost in the usual backward: that one runs
    in grad mode off (``create_graph=False``), where torch's wrapper only adds a no_grad
    block (~5 us; the backward records no torch op); with grad mode on (``create_graph=True``)
    torch's wrapper runs, and a double backward is its error."""
    guarded = once_differentiable(backward)
    is_grad_enabled = torch.is_grad_enabled

    @functools.wraps(backward)
    def wrapper(ctx, *grads):
        if is_grad_enabled():
            return guarded(ctx, *grads)
        return backward(ctx, *grads)
    return wrapper


class _RecurrentFunction(torch.autograd.Function):
    """Autograd over :func:`_run_forward` / :func:`_run_backward`: inputs ``(call, x, h0,
    c0, *params)`` (params in torch's flat order, ``module._flat_weights``), outputs
    ``(out, h_n)`` and for the LSTM ``c_n`` too."""

    @staticmethod
    def forward(ctx, call, x, h0, c0, *params):
        ctx.set_materialize_grads(False)    # unused outputs: None, not zeros (less work)
        xa = _array(x)
        out, h_n, c_n, tape = _run_forward(call, xa, None if h0 is None else _array(h0),
                                           None if c0 is None else _array(c0), True)
        ctx.call, ctx.tape = call, tape
        ctx.given = (h0 is not None, c0 is not None)
        # x and the parameters through save_for_backward: torch refuses the backward if one
        # was modified in place since (the tape holds views of them, as torch.nn's saves them)
        ctx.save_for_backward(x, *params)
        if c_n is None:
            return torch.from_numpy(out), torch.from_numpy(h_n)
        return torch.from_numpy(out), torch.from_numpy(h_n), torch.from_numpy(c_n)

    @staticmethod
    @_once_differentiable
    def backward(ctx, dout, dh_n, dc_n=None):
        _ = ctx.saved_tensors               # torch's own error on a graph already freed
        keep = _keep_graph()
        call, tape = ctx.call, ctx.tape
        if not keep:
            ctx.tape = None                 # the workspaces go with this backward
        need = ctx.needs_input_grad
        h_given, c_given = ctx.given
        dx, dh0, dc0, grads = _run_backward(
            call, tape, None if dout is None else _array(dout),
            None if dh_n is None else _array(dh_n), None if dc_n is None else _array(dc_n),
            keep, need[1], h_given and need[2])
        spec = call.spec
        params = []
        for k, (dWx, dWh, db, db_hn) in enumerate(grads):
            first = 4 + k * (4 if call.bias else 2)
            # C-contiguous, as the parameters: torch takes them as .grad without a copy
            params.append(torch.from_numpy(_transposed(dWx)) if need[first] else None)
            params.append(torch.from_numpy(_transposed(dWh)) if need[first + 1] else None)
            if call.bias:
                g_ih, g_hh = _bias_grads(spec, db, db_hn)
                params.append(torch.from_numpy(g_ih))
                params.append(torch.from_numpy(g_hh))
        return (None, torch.from_numpy(dx) if need[1] else None,
                torch.from_numpy(dh0) if h_given and need[2] else None,
                torch.from_numpy(dc0) if c_given and need[3] else None, *params)


# torch.autograd.Function.apply's own C entry, without the Python wrapper's functorch
# plumbing (~3-5 us of a ~40 us tiny call); used only while no functorch transform is active
# (under vmap/grad the wrapper runs, and says this Function does not support them)
_apply_direct = super(torch.autograd.Function, _RecurrentFunction).apply
_functorch_active = torch._C._are_functorch_transforms_active


def _apply(*args):
    if _functorch_active():
        return _RecurrentFunction.apply(*args)
    return _apply_direct(*args)


def _packing(batch_sizes, sorted_indices):
    """A PackedSequence's layout: ``(lengths, rows)``, each batch row's length in the
    caller's order (intp) and, per packed row, its row in the padded time-major
    ``(seq_len * batch, features)`` view (int64, the index torch's gathers take)."""
    bs = batch_sizes.numpy()
    T, B = len(bs), int(bs[0])
    order = np.arange(B) if sorted_indices is None else sorted_indices.numpy()
    # the k-th longest row has the steps whose batch size exceeds k (batch_sizes is
    # non-increasing)
    sorted_lengths = np.searchsorted(-bs, -np.arange(B), side="left")
    lengths = np.empty(B, np.intp)
    lengths[order] = sorted_lengths
    rows = (np.arange(T)[:, None] * B + order[None, :])[np.arange(B)[None, :] < bs[:, None]]
    return lengths, rows.astype(np.int64, copy=False)


# ----------------------------------------------------------------------------- modules

class _Recurrent:
    """What rnnfast.torch's RNN, LSTM and GRU add to torch.nn's: the forward. Everything
    else (arguments, parameters, initialisation, state_dict) is the torch.nn base class's;
    this holds no state of its own but a cache of NumPy views of the parameters, so that
    ``convert`` can turn a torch.nn module into one by its class alone."""

    _rf_owner = "rnnfast.torch module"        # (each class: its own name, for errors)

    def _rf_check_config(self):
        _checks.check_torch_options(self._rf_owner, getattr(self, "proj_size", 0))

    def _rf_views(self, owner):
        """The parameters in torch's flat order and their NumPy views (checked: CPU, one
        dtype, torch.nn's shapes). A view is kept while its parameter object and storage
        stay the same (``module.double()``, ``p.data = ...`` change the storage)."""
        P = self._parameters
        names = self._flat_weights_names
        params = [P[n] if n in P else getattr(self, n, None) for n in names]
        cache = self.__dict__.get("_rf_cache")
        if cache is not None and len(cache[0]) == len(params):
            kept, ptrs, views = cache
            for p, q, ptr in zip(params, kept, ptrs):
                if p is not q or p.data_ptr() != ptr:
                    break
            else:
                return params, views
        dtype = None
        gh = _SPEC_OF_MODE[self.mode].gates * self.hidden_size
        inner = (2 if self.bidirectional else 1) * self.hidden_size     # layer l > 0's input
        views = []
        for n, p in zip(names, params):
            layer = int(n.split("_l")[1].split("_")[0])
            if n.startswith("weight_ih"):
                shape = (gh, self.input_size if layer == 0 else inner)
            elif n.startswith("weight_hh"):
                shape = (gh, self.hidden_size)
            else:
                shape = (gh,)
            dtype = _checks.check_torch_parameter(p, n, shape, dtype, owner)
            views.append(p.detach().numpy())
        self.__dict__["_rf_cache"] = (params, [p.data_ptr() for p in params], views)
        return params, views

    def _rf_call(self, spec, views, dtype, batch_first, steps=None, packing=None,
                 lengths=None):
        """The kernels' weights for this call (views of torch's, read in place; the summed
        biases), per (layer, direction) in torch's order."""
        per = 4 if self.bias else 2
        layers = []
        zeros = None
        for k in range(0, len(views), per):
            # the kernels read torch's (G, in) weights in place as F-ordered (in, G) views
            Wx = views[k].T
            Wh = views[k + 1].T
            if self.bias:
                biases = _biases(spec, views[k + 2], views[k + 3])
            else:                               # zero biases that get no gradient
                if zeros is None:
                    zeros = _biases(spec, np.zeros(Wh.shape[1], dtype),
                                    np.zeros(Wh.shape[1], dtype))
                biases = zeros
            layers.append((Wx, Wh, *biases))
        dropout = self.dropout if self.training and self.num_layers > 1 else 0.0
        return _Call(spec, batch_first, layers, dropout, self.bias, dtype,
                     2 if self.bidirectional else 1, steps, packing, lengths)

    def forward(self, input, hx=None):
        if getattr(self, "proj_size", 0):
            self._rf_check_config()
        spec = _SPEC_OF_MODE[self.mode]
        owner = self._rf_owner
        params, views = self._rf_views(owner)
        dtype = views[0].dtype
        packed = isinstance(input, PackedSequence)
        steps = packing = lengths = None
        if packed:
            # padded time-major (the kernels' cheapest layout; a PackedSequence has no
            # batch_first) with the rows in the caller's order, as torch.nn's hx and h_n
            data, batch_sizes, sorted_indices, unsorted_indices = input
            _checks.check_torch_packed(owner, data, batch_sizes, self.input_size, dtype)
            lengths, packing = _packing(batch_sizes, sorted_indices)
            batch, T = len(lengths), len(batch_sizes)
            steps = _core.sequence_steps(lengths, T)
            index = torch.from_numpy(packing)
            # torch's own autograd carries the gradient back to the packed rows
            x = data.new_zeros((T * batch, data.shape[1])).index_copy(0, index, data)
            x = x.view(T, batch, data.shape[1])
            batched, batch_first = True, False
        else:
            batch_first = self.batch_first
            batched = _checks.check_torch_input(owner, input, self.input_size, batch_first,
                                                dtype, _TORCH_OF_NUMPY[dtype])
        n_states = len(spec.states)
        states = _checks.check_torch_hx(owner, hx, n_states)
        LD, H = self.num_layers * (2 if self.bidirectional else 1), self.hidden_size
        if packed:
            shape = (LD, batch, H)
        elif batched:
            x = input
            batch = input.shape[0] if batch_first else input.shape[1]
            shape = (LD, batch, H)
        else:                                   # (seq_len, features): a batch of one
            x = input.unsqueeze(0 if batch_first else 1)
            shape = (LD, H)
        for name, s in zip(("h0", "c0"), states):
            if s is not None:
                _checks.check_torch_state(owner, f"hx {name}" if n_states > 1 else "hx", s,
                                          shape, dtype)
        if not batched:
            states = tuple(None if s is None else s.unsqueeze(1) for s in states)
        h0, c0 = states if n_states == 2 else (states[0], None)
        call = self._rf_call(spec, views, dtype, batch_first, steps, packing, lengths)
        need_grad = torch.is_grad_enabled() and (
            x.requires_grad or any(p.requires_grad for p in params)
            or any(s is not None and s.requires_grad for s in states))
        if need_grad:
            outs = _apply(call, x, h0, c0, *params)
        else:                                   # inference: no workspace, no graph
            out, h_n, c_n, _ = _run_forward(call, _array(x),
                                            None if h0 is None else _array(h0),
                                            None if c0 is None else _array(c0), False)
            outs = tuple(torch.from_numpy(a) for a in (out, h_n, c_n) if a is not None)
        if packed:
            out = outs[0]
            out = out.view(-1, out.shape[2]).index_select(0, index)
            outs = (PackedSequence(out, batch_sizes, sorted_indices, unsorted_indices),
                    *outs[1:])
        elif not batched:
            outs = (outs[0].squeeze(0 if batch_first else 1),
                    *(s.squeeze(1) for s in outs[1:]))
        if n_states == 2:
            return outs[0], (outs[1], outs[2])
        return outs[0], outs[1]

    def __getstate__(self):
        state = dict(super().__getstate__())   # (torch.nn's drops its weak references)
        state.pop("_rf_cache", None)            # NumPy views of this process's tensors
        return state


class RNN(_Recurrent, nn.RNN):
    """``torch.nn.RNN`` (tanh or relu) on rnnfast's compiled core: the same arguments
    (``input_size, hidden_size, num_layers=1, nonlinearity='tanh', bias=True,
    batch_first=False, dropout=0.0, bidirectional=False, device=None, dtype=None``),
    parameters and returns (``output, h_n``)."""

    _rf_owner = "rnnfast.torch.RNN"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._rf_check_config()


class LSTM(_Recurrent, nn.LSTM):
    """``torch.nn.LSTM`` on rnnfast's compiled core: the same arguments (``input_size,
    hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
    bidirectional=False, device=None, dtype=None``; ``proj_size`` must be 0), parameters and
    returns (``output, (h_n, c_n)``)."""

    _rf_owner = "rnnfast.torch.LSTM"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._rf_check_config()


class GRU(_Recurrent, nn.GRU):
    """``torch.nn.GRU`` on rnnfast's compiled core: the same arguments, parameters and
    returns (``output, h_n``)."""

    _rf_owner = "rnnfast.torch.GRU"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._rf_check_config()


_CONVERSIONS = ((nn.LSTM, LSTM), (nn.GRU, GRU), (nn.RNN, RNN))


def convert(model):
    """Turn every ``torch.nn.RNN``, ``LSTM`` and ``GRU`` of ``model`` (itself included) into
    its rnnfast.torch counterpart, in place, and return ``model``.

    The modules stay the same objects (their class changes), with the same parameter
    objects, hooks and attributes: an optimizer built before still updates them, and the
    outputs are what the torch.nn modules computed (to the kernels' rounding). Subclasses of
    the torch.nn modules (which may have a forward of their own) and modules already
    converted are left alone. A module rnnfast.torch cannot run (proj_size, a configuration
    not supported yet, a parameter on another device or of another dtype) is an error, and
    then nothing is converted."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"convert: model must be a torch.nn.Module, got "
                        f"{type(model).__name__}")
    todo = []
    for path, module in model.named_modules():
        for torch_class, ours in _CONVERSIONS:
            if type(module) is torch_class:
                _checks.check_torch_convertible(module, path)
                todo.append((module, ours))
    for module, ours in todo:
        module.__class__ = ours
    return model
