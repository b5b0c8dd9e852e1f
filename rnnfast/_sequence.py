"""Stacks and directions over the kernels' one-direction calls (``direction_forward`` /
``direction_backward`` of ``rnnfast._core`` and ``rnnfast.reference``).

A layer of ``num_layers`` x ``num_directions`` runs one kernel call per layer and direction:
the layers depend on each other over the whole sequence, so fusing them would save only the
call overhead. Both directions of a layer write the halves of one output (the kernels take
an output column offset) and the reverse direction adds its input gradient into the forward
direction's (no flipped copies). Every layer's activations are in the user's layout (the
kernels gather batch-first rows per chunk, as a transposed copy would). Lengths are the
kernels' business (the compiled core sorts once per call and shrinks the batch step by
step; the twin masks).

Arguments are checked by the caller (``rnnfast._checks``); here they are trusted. The compiled
core has this same loop in C (``_core.stack_forward``/``stack_backward``), which a layer takes
when its arguments are ready as they are; this one is the twin's and the checked path's (the
lane's results equal it to the bit: tests/test_layers.py, tests/test_lane_properties.py).
"""
import numpy as np

__all__ = ["Plan", "forward", "backward"]


class Plan:
    """What a stacked call needs to know of its layer: the cell kind, the layers and
    directions, per (layer, direction) the kernels to call (a backend module, or a
    ``BufferedKernels`` of the compiled core holding that direction's buffers), and the
    backend module's calls that run both directions of a layer at once (None: the twin has
    none, its directions run one after the other)."""

    __slots__ = ("kind", "num_layers", "num_directions", "kernels", "pair_forward",
                 "pair_backward")

    def __init__(self, kind, num_layers, num_directions, kernels, module):
        self.kind = kind
        self.num_layers = num_layers
        self.num_directions = num_directions
        self.kernels = kernels          # [layer * num_directions + direction]
        two = num_directions == 2
        self.pair_forward = getattr(module, "directions_forward", None) if two else None
        self.pair_backward = getattr(module, "directions_backward", None) if two else None


def _empty_output(shape, dtype, steps):
    # rows past their end are never written by the kernels: zeros there
    return np.zeros(shape, dtype) if steps is not None else np.empty(shape, dtype)


def forward(plan, x, states, weights, batch_first, training, steps=None, cells_out=False):
    """Runs the stack; returns ``(out, finals, cache, cells)``.

    ``states``: per state of the cell ((h,) or (h, c)) a ``(L*D, batch, hidden)`` array or
    None; ``weights``: per (layer, direction) the checked weights in the registry's order;
    ``finals`` like ``states``; ``cache`` what backward needs (None unless training);
    ``cells`` the last layer's every c_t (LSTM, with ``cells_out``) shaped like out;
    ``steps`` the lengths as the backend's ``sequence_steps`` prepared them, or None."""
    L, nd = plan.num_layers, plan.num_directions
    T = x.shape[1] if batch_first else x.shape[0]
    B = x.shape[0] if batch_first else x.shape[1]
    H = weights[0][1].shape[0]
    dtype = weights[0][0].dtype
    n_states = len(states)
    # (list comprehensions: a generator costs ~1 us more per call, a tiny call takes ~20)
    no_states = (None,) * n_states if all([s is None for s in states]) else None
    finals = [np.empty((L * nd, B, H), dtype) for _ in range(n_states)]
    layers = []             # per layer: (its input, its layout, the directions' workspaces)
    layer_in = x
    shape = (B, T, nd * H) if batch_first else (T, B, nd * H)
    out = None
    for layer in range(L):
        last = layer == L - 1
        out = _empty_output(shape, dtype, steps)
        cells = _empty_output(shape, dtype, steps) if last and cells_out else None
        workspaces = []
        j0 = layer * nd
        pair = plan.pair_forward
        if pair is not None:            # both directions at once (side by side if 2 threads)
            done = pair(plan.kernels[j0:j0 + 2], plan.kind, layer_in,
                        [no_states or tuple(None if s is None else s[j0 + d] for s in states)
                         for d in range(2)], weights[j0:j0 + 2], batch_first, training,
                        steps, out, cells)
        else:
            done = []
            for d in range(nd):
                s0 = no_states or tuple(None if s is None else s[j0 + d] for s in states)
                _, fin, ws = plan.kernels[j0 + d].direction_forward(
                    plan.kind, layer_in, s0, weights[j0 + d], batch_first, training, steps,
                    d == 1, out, d * H, cells)
                done.append((fin, ws))
        for d, (fin, ws) in enumerate(done):
            for k in range(n_states):
                finals[k][j0 + d] = fin[k]
            workspaces.append(ws)
        layers.append((layer_in, workspaces))
        layer_in = out
    cache = (layers, steps, batch_first, cells is not None) if training else None
    return out, tuple(finals), cache, cells


def backward(plan, cache, dout, dstates, weights, dcells=None, grads_out=None, need_dx=True,
             need_dh0=True):
    """BPTT of a stacked forward; returns ``(dx, dstates0, grads)``: ``dx`` in the layout of
    the forward's x, ``dstates0`` per state a ``(L*D, batch, hidden)`` array, ``grads`` per
    (layer, direction) the parameter gradients in the registry's order. ``dcells``: the
    gradient of the forward's cells (LSTM), or None. ``grads_out`` (compiled kernels): per
    (layer, direction) the arrays to write the gradients into (checked by the caller:
    ``_core.grads_fit``), or None: new ones. ``need_dx`` False: no input gradient of the
    first layer (dx None); ``need_dh0`` False: the caller drops dstates0's h (the kernels'
    direction_backward)."""
    layers, steps, batch_first, _ = cache
    L, nd = plan.num_layers, plan.num_directions
    n_states = len(dstates)
    x0 = layers[0][0]
    B = x0.shape[0] if batch_first else x0.shape[1]
    H = weights[0][1].shape[0]
    dtype = weights[0][0].dtype
    dstates0 = [np.empty((L * nd, B, H), dtype) for _ in range(n_states)]
    grads = [None] * (L * nd)
    d_above = dout                  # gradient of this layer's output (None: zeros)
    for layer in reversed(range(L)):
        layer_in, workspaces = layers[layer]
        j0 = layer * nd
        dc = dcells if layer == L - 1 else None
        pair = plan.pair_backward
        into = {} if grads_out is None else {"grads_out": grads_out[j0:j0 + nd]}
        needs = {"need_dx": need_dx or layer > 0, "need_dh0": need_dh0}
        if pair is not None:
            dx, d0s, gs = pair(plan.kernels[j0:j0 + 2], plan.kind, d_above,
                               [tuple(None if s is None else s[j0 + d] for s in dstates)
                                for d in range(2)], layer_in,
                               [weights[j0 + d][0] for d in range(2)],
                               [weights[j0 + d][1] for d in range(2)], workspaces,
                               batch_first, dc, **into, **needs)
        else:
            dx, d0s, gs = None, [], []
            for d in range(nd):
                ds = tuple(None if s is None else s[j0 + d] for s in dstates)
                if grads_out is not None:
                    into = {"grads_out": grads_out[j0 + d]}
                dx, d0, g = plan.kernels[j0 + d].direction_backward(
                    plan.kind, d_above, ds, layer_in, weights[j0 + d][0], weights[j0 + d][1],
                    workspaces[d], batch_first, dx, dc, **into, **needs)
                d0s.append(d0)
                gs.append(g)
        for d in range(nd):
            for k in range(n_states):
                dstates0[k][j0 + d] = d0s[d][k]
            grads[j0 + d] = gs[d]
        d_above = dx
    return d_above, tuple(dstates0), grads
