"""The class API: ``RNN``, ``LSTM`` and ``GRU`` layers holding parameters, gradients and
BPTT state. What each layer holds (its parameters, states, gate count) is its cell's entry
in the registry, ``rnnfast.cells``."""
import operator

import numpy as np

from . import _checks, _sequence, cells, functional, reference

__all__ = ["RNN", "LSTM", "GRU"]

_META = operator.attrgetter("shape", "dtype", "strides")
_is = operator.is_


def _layout(weights):
    """Shapes, dtypes and strides of the weights (one tuple comparison checks all; map and
    attrgetter run in C: 0.6 us for the 6 arrays of a bidirectional RNN, where a generator
    took 2.5)."""
    return tuple(map(_META, weights))


def _by_group(arrays, n):
    """Arrays in ``_names`` order as one tuple per layer and direction (``n`` each)."""
    return [arrays[k:k + n] for k in range(0, len(arrays), n)]


class _Recurrent:
    """What RNN, LSTM and GRU share: parameters, gradients, train/eval, the BPTT cache."""

    _spec = None           # the cell's rnnfast.cells.CellSpec (RNN: per instance)

    def __init__(self, input_size, hidden_size, *, num_layers=1, bidirectional=False,
                 batch_first=True, stateful=False, dtype=np.float32, backend="cython",
                 seed=None):
        self.input_size = _checks.check_size(input_size, "input_size")
        self.hidden_size = _checks.check_size(hidden_size, "hidden_size")
        self.num_layers = _checks.check_size(num_layers, "num_layers")
        self.bidirectional = bool(bidirectional)
        self.num_directions = 2 if self.bidirectional else 1
        self.batch_first = bool(batch_first)
        self.stateful = bool(stateful)
        self._state = None              # stateful: the last forward's final states
        self.dtype = _checks.check_dtype(dtype)
        self.backend = _checks.check_compiled(self._spec, backend)
        self.training = True
        self._cache = None
        self._checked_weights = None
        self._grouped_weights = None    # (checked weights, per layer and direction)
        self._kernels_module = self._kernels = functional.kernels(self.backend)
        if self.backend == "cython":    # training buffers kept between calls (see there)
            self._kernels = self._kernels.BufferedKernels()
        # the compiled kernels' fast lane for one layer, one direction (see _forward)
        self._fast = hasattr(self._kernels, "layer_forward")
        self._snapshot = getattr(self._kernels_module, "ParamsSnapshot", None)
        spec = self._spec
        # a layer no call could run (one row already too wide for 32-bit BLAS) is refused
        # before its parameters are allocated and filled
        _checks.check_blas_size(1, 1, self.input_size, self.hidden_size, spec.gates)
        # PyTorch's initialisation: every weight ~ U(-k, k), k = 1/sqrt(hidden), and so
        # both of its biases, which map to rnnfast's as the registry says: b is the sum of
        # two such draws in the gates where torch's two biases are summed (all of them for
        # the RNN and LSTM, r and z for the GRU), one draw elsewhere; the GRU's b_hn one draw
        rng = np.random.default_rng(seed)
        k = 1.0 / np.sqrt(self.hidden_size)
        uniform = lambda *shape: rng.uniform(-k, k, shape).astype(self.dtype)  # noqa: E731
        gh = spec.gates * self.hidden_size
        self.params = {}
        # per layer and direction (PyTorch's order and names: Wx, Wx_reverse, Wx_l1, ...);
        # layer l > 0 reads the num_directions * hidden features of the layer below
        self._groups = []       # (suffix, input size) of each layer and direction
        for layer in range(self.num_layers):
            d_in = self.input_size if layer == 0 else self.num_directions * self.hidden_size
            if layer:
                _checks.check_blas_size(1, 1, d_in, self.hidden_size, spec.gates)
            for direction in range(self.num_directions):
                suffix = spec.suffix(layer, direction)
                Wx = uniform(d_in, gh)
                Wh = uniform(self.hidden_size, gh)
                bias_ih = uniform(gh)
                bias_hh = uniform(gh)
                group = {"Wx": Wx, "Wh": Wh, **spec.biases_from_torch(bias_ih, bias_hh)}
                self.params.update({name + suffix: p for name, p in group.items()})
                self._groups.append((suffix, d_in))
        # stable arrays: each backward writes into them (an optimizer may hold them)
        self.grads = {name: np.zeros_like(p) for name, p in self.params.items()}
        self._param_shapes = {name + suffix: shape for suffix, d_in in self._groups
                              for name, shape in spec.param_shapes(
                                  d_in, self.hidden_size).items()}
        self._single = self.num_layers == 1 and not self.bidirectional
        self._all_names = tuple(name + suffix for suffix, _ in self._groups
                                for name in spec.params)
        self._param_getter = operator.itemgetter(*self._all_names)
        self._plan = None           # the stacked path's kernels (built when first needed)
        self._step_kernels = None   # step()'s packed weights (eval mode), see params_changed

    # ---------------------------------------------------------------- modes
    def train(self, mode=True):
        """Training mode (the default): forward keeps the workspace ``backward`` needs."""
        self.training = bool(mode)
        self._step_kernels = None           # (packed again by the next step())
        if not self.training:
            self.release_buffers()          # (which also drops the BPTT cache)
        return self

    def release_buffers(self):
        """Free the buffers a training layer keeps between calls (its BPTT workspace,
        the compiled backend's scratch and the copy of x: about ``T*B*(G+2)*H`` values for
        an LSTM). ``eval()`` does this; the next training forward allocates them again."""
        self._cache = None
        for kernels in ([self._kernels] if self._plan is None else self._plan.kernels):
            release = getattr(kernels, "release", None)
            if release is not None:
                release()

    def eval(self):
        """Inference mode: forward keeps no workspace; ``backward`` raises."""
        return self.train(False)

    def zero_grad(self):
        for g in self.grads.values():
            g[...] = 0

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def __init_subclass__(cls, **kwargs):
        """``layer(...)`` is the class's own ``forward`` (a subclass that defines one gets it
        too): no extra frame and keyword repacking, ~0.5-1 us of a ~10 us tiny call."""
        super().__init_subclass__(**kwargs)
        if "forward" in cls.__dict__ and "__call__" not in cls.__dict__:
            cls.__call__ = cls.forward

    def __repr__(self):
        extra = self._repr_extra()
        if self.num_layers != 1:
            extra += f", num_layers={self.num_layers}"
        if self.bidirectional:
            extra += ", bidirectional=True"
        if self.stateful:
            extra += ", stateful=True"
        return (f"{type(self).__name__}({self.input_size}, {self.hidden_size}{extra}, "
                f"batch_first={self.batch_first}, dtype=np.{self.dtype}, "
                f"backend={self.backend!r})")

    # ---------------------------------------------------------------- stateful
    def reset_state(self):
        """Forget the carried state (stateful layers): the next forward starts from zeros,
        with any batch size."""
        self._state = None

    def set_state(self, state):
        """The state the next forward of a stateful layer starts from (as a forward's
        ``h0``, or the LSTM's ``(h0, c0)``); None: as reset_state()."""
        if state is None:
            self._state = None
            return
        states = self._state_tuple(state, "state")
        batch = next((np.shape(st)[-2] for st in states if st is not None), None)
        if batch is None:
            self._state = None
            return
        checked = self._check_states(states, batch)
        self._state = tuple(np.zeros(self._state_shape(batch), self.dtype) if st is None
                            else np.array(st, copy=True) for st in checked)

    def _state_shape(self, batch):
        if self._single:
            return (batch, self.hidden_size)
        return (self.num_layers * self.num_directions, batch, self.hidden_size)

    def _state_tuple(self, state, name):
        """A forward's state argument as one entry per state of the cell."""
        return (state,)

    def _check_states(self, states, batch):
        names = tuple(n + "0" for n in self._spec.states)
        if self._single:
            return tuple(_checks.check_state(st, n, batch, self.hidden_size, self.dtype)
                         for st, n in zip(states, names))
        return tuple(_checks.check_layer_state(st, n, self.num_layers * self.num_directions,
                                               batch, self.hidden_size, self.dtype)
                     for st, n in zip(states, names))

    def _carried(self, states, x):
        """A stateful layer's initial states: the given ones, else the carried ones (which
        must fit x's batch size: reset_state() first for another)."""
        if not self.stateful or self._state is None or any(st is not None for st in states):
            return states
        batch = np.shape(x)[0 if self.batch_first else 1] if np.ndim(x) == 3 else None
        carried = self._state[0].shape[-2]
        if batch is not None and batch != carried:
            raise ValueError(f"x has a batch of {batch} rows, but this stateful layer carries "
                             f"a state for {carried} rows from its last forward: call "
                             f"reset_state() (or set_state()) before a batch of another size")
        return self._state

    def _keep_state(self, finals):
        if self.stateful:           # detached: the next call's gradients stop here
            self._state = tuple(f.copy() for f in finals)

    def _repr_extra(self):
        return ""

    # ---------------------------------------------------------------- plumbing
    def _weights(self):
        """The parameters, checked: a user may have replaced an entry of ``params``.

        Checked arrays are remembered: while ``params`` holds the very same objects
        (writing into them keeps their shape, dtype and layout), no check is repeated.
        """
        p, remembered = self.params, self._checked_weights
        # the same objects are not enough: shape, dtype and strides can be set in place
        # (params["Wh"].shape = (4*H, H)), and the kernels trust them without bounds checks
        # (the compiled core's ParamsSnapshot compares both in C: ~0.1 us against ~1.4)
        snapshot = self._snapshot
        if remembered is not None:
            checked, meta = remembered
            if snapshot is not None:
                if meta.holds(p):
                    return checked
            elif self._same_objects(checked) and _layout(checked) == meta:
                return checked
        checked = ()
        for suffix, d_in in self._groups:
            checked += _checks.check_params(p, self._spec, d_in, self.hidden_size, self.dtype,
                                            suffix)
        self._checked_weights = (checked, _layout(checked) if snapshot is None
                                 else snapshot(self._all_names, checked))
        return checked

    def _same_objects(self, arrays):
        """Whether ``params`` holds these very arrays, in ``_names`` order."""
        try:
            current = self._param_getter(self.params)   # (a tuple: 3 names at least)
        except KeyError:
            return False
        return all(map(_is, current, arrays))

    @property
    def _names(self):
        """Every parameter name, group after group (layer, direction)."""
        return self._all_names

    def _grouped(self, weights):
        """The checked weights, one tuple per layer and direction (kept with the checked
        weights they are made of)."""
        kept = self._grouped_weights
        if kept is not None and kept[0] is weights:
            return kept[1]
        grouped = _by_group(weights, len(self._spec.params))
        self._grouped_weights = (weights, grouped)
        return grouped

    def _grads_into(self, weights, dout, dstates, dcells, accumulate):
        """The arrays of ``grads`` (in ``_names`` order) for the compiled kernels to write
        a stacked backward's gradients into (``_core.grads_fit``: writeable C-contiguous
        arrays of the right shapes and dtype overlapping no other, no weight, not the
        checked dout nor a state gradient, which the layers read each at its turn, after
        the layers above wrote theirs), or None: the checked way (new arrays, stored
        afterwards). Not with ``accumulate`` or ``dcells``."""
        if not self._fast or accumulate or dcells is not None:
            return None
        targets = self._grads_arrays()
        if targets is None or self._kernels_module.grads_fit(
                targets, weights, dout, tuple(dstates)) != 2:
            return None
        return targets

    def _grads_arrays(self):
        """The arrays of ``grads`` in ``_names`` order, or None when an entry is missing
        (or grads is not a dict): the checks say what, and put a new array there."""
        try:
            return self._param_getter(self.grads)
        except (KeyError, TypeError):
            return None

    def _forward_inputs(self, x, states, lengths):
        """The checked forward arguments of one layer and direction, with the lengths as
        ``steps`` (_steps_of), before anything of the layer changes."""
        weights = self._weights()
        x_user = x
        x, states, weights = _checks.check_forward(self._spec, x, states, weights,
                                                   self.batch_first, weights_checked=True)
        steps = self._steps_of(x, lengths)
        if self.training and np.may_share_memory(x, x_user):
            # backward needs x as it was: keep our own copy, not the caller's array (the
            # compiled backend keeps it with its workspace, reused by the next forward)
            kept_copy = getattr(self._kernels, "kept_copy", None)
            x = x.copy() if kept_copy is None else kept_copy(x)
        self._cache = None     # checks passed: this forward replaces the previous cache
        return x, states, weights, steps

    def _backward_inputs(self, dout, dstates):
        if self._cache is None:
            raise ValueError("backward called without a training forward before it: call "
                             "forward in training mode (layer.train()) first; a workspace is "
                             "used once, so each backward needs its own forward")
        x, workspace, states_given, _ = self._cache
        weights = self._weights()
        _checks.check_grads_store(self.grads, self._param_shapes, self.dtype)
        dout, dstates, x, (Wx, Wh), workspace = _checks.check_backward(
            self._spec, dout, dstates, x, weights[:2], workspace, self.batch_first,
            self.backend, weights_checked=True)
        return dout, dstates, x, Wx, Wh, workspace, states_given

    def _store_grads(self, grads, accumulate):
        """The gradients of the parameters (in ``spec.params`` order), written into the
        arrays of ``self.grads`` (stable objects: an optimizer may hold them), or added to
        them with ``accumulate``."""
        self._cache = None
        _checks.store_grads(self.grads, self._spec.params, grads, accumulate)

    # ---------------------------------------------------------------- the two paths
    def _forward(self, x, states, lengths, return_cells=False):
        """Forward of any configuration; returns ``(out, finals, cells)``. Compiled, with
        arguments ready as they are: one layer of one direction the kernels' layer_forward,
        any other the kernels' stack_forward (the fast lanes); else the checked path (one
        direction's kernels, or rnnfast._sequence)."""
        given = tuple([st is not None for st in states])
        if self.stateful:
            states = self._carried(states, x)
        # the compiled lanes take any x and lengths (and decline what is not ready)
        lane = self._fast and not return_cells
        if self._single and not return_cells:
            if lane:        # arguments the kernels take as they are: checked in C, no copy
                weights = self._weights()
                done = self._kernels.layer_forward(self._spec.kind, x, states, weights,
                                                   self.batch_first, self.training, lengths)
                if done is not None:
                    out, finals, workspace, x_kept, steps = done
                    self._cache = (self._single_cache(x_kept, workspace, given, weights,
                                                      steps, out.shape)
                                   if self.training else None)
                    if self.stateful:
                        self._keep_state(finals)
                    return out, finals, None
            x, states, weights, steps = self._forward_inputs(x, states, lengths)
            out, finals, workspace = self._kernels.direction_forward(
                self._spec.kind, x, states, weights, self.batch_first, self.training, steps)
            if self.training:
                self._cache = self._single_cache(x, workspace, given, weights, steps,
                                                 out.shape)
            self._keep_state(finals)
            return out, finals, None
        if lane:
            done = self._stack_forward(x, states, lengths, given)
            if done is not None:
                return done
        weights = self._weights()
        x_user = x
        # x against layer 0's weights (a quick look when it already is a checked array)
        x = _checks.check_forward(self._spec, x, (), weights[:len(self._spec.params)],
                                  self.batch_first, weights_checked=True)[0]
        batch = x.shape[0] if self.batch_first else x.shape[1]
        steps = self._steps_of(x, lengths)
        if any([st is not None for st in states]):
            states = self._check_states(states, batch)
            if self._single:                # the plan's shape: (1, batch, hidden)
                states = tuple(None if st is None else st[None] for st in states)
        if self.training and np.may_share_memory(x, x_user):
            x = x.copy()                    # (backward needs x as it was)
        self._cache = None
        out, finals, cache, cells = _sequence.forward(
            self._sequence_plan(), x, states, self._grouped(weights), self.batch_first,
            self.training, steps, return_cells)
        if self._single:
            finals = tuple(f[0] for f in finals)
        if self.training:
            self._cache = ("stacked", cache, given, out.shape)
        self._keep_state(finals)
        return out, finals, cells

    def _single_cache(self, x, workspace, given, weights, steps, out_shape):
        """A one-layer, one-direction training forward's BPTT cache, with the weights it
        ran on (the fast lane's backward runs while params still hold them): the single
        path's, or with lengths the stacked path's format (its backward needs them)."""
        if steps is None:
            return (x, workspace, given, weights)
        return (("stacked", ([(x, [workspace])], steps, self.batch_first, False), given,
                 out_shape, weights))

    def _stack_forward(self, x, states, lengths, given):
        """The fast lane of a layer of several layers or two directions (the kernels'
        stack_forward; see _forward): ``(out, finals, None)``, or None when the arguments
        are not ready as they are. Caches as the stacked path does, with the weights (see
        _backward_lane_stacked)."""
        weights = self._weights()
        done = self._kernels_module.stack_forward(
            self._sequence_plan().kernels, self._spec.kind, x, states, weights,
            self.num_directions, self.batch_first, self.training, lengths)
        if done is None:
            return None
        out, finals, layers, _, steps = done
        self._cache = (("stacked", (layers, steps, self.batch_first, False), given,
                        out.shape, weights) if self.training else None)
        self._keep_state(finals)
        return out, finals, None

    def _backward_lane_stacked(self, cache, dout, dstates, accumulate, input_grad):
        """The fast lane's backward of a lane forward cached as the stacked path caches
        (_stack_forward's call, the kernels' stack_backward; or one direction's with
        lengths, _backward_fast), while ``params`` still hold the weights it ran on; returns
        ``(dx, dstates0)`` as _backward, or None (the checked, stacked path follows)."""
        _, (layers, _, _, _), given, _, weights = cache
        if self._single:
            x, workspaces = layers[0]
            return self._backward_fast((x, workspaces[0], given, weights), dout, dstates,
                                       accumulate, input_grad)
        targets = self._lane_targets(weights)
        if targets is None:
            return None
        return self._lane_done(self._kernels_module.stack_backward(
            self._sequence_plan().kernels, self._spec.kind, dout, dstates, layers, weights,
            self.num_directions, self.batch_first, targets, not accumulate, input_grad,
            given[0]), given, accumulate)

    def _steps_of(self, x, lengths):
        """_steps of a 3-D input ``x``'s lengths (None without any)."""
        if lengths is None:
            return None
        T, B = (x.shape[1], x.shape[0]) if self.batch_first else x.shape[:2]
        return self._steps(lengths, B, T)

    def _steps(self, lengths, batch, seq_len):
        """The lengths as the kernels want them (the backend's sequence_steps), checked: an
        intp array of one entry per row goes straight there (which says False when a value
        is out of 1 .. seq_len), anything else through _checks first."""
        if (type(lengths) is np.ndarray and lengths.dtype == np.intp
                and lengths.shape == (batch,)):
            steps = self._kernels_module.sequence_steps(lengths, seq_len)
            if steps is not False:
                return steps
        return self._kernels_module.sequence_steps(
            _checks.check_lengths(lengths, batch, seq_len), seq_len)

    def _backward(self, dout, dstates, accumulate, dcells=None, input_grad=True):
        """Backward of any configuration; returns ``(dx, dstates0)`` (None where forward had
        no initial state; dx None without ``input_grad``) and stores the gradients."""
        cache = self._cache
        if cache is None or not isinstance(cache[0], str):     # the fast path's
            if dcells is not None:
                raise ValueError("dcells given, but the last forward did not return the cells "
                                 "(return_cells=True)")
            if self._fast and cache is not None:
                return self._backward_fast(cache, dout, dstates, accumulate, input_grad)
            return None
        if len(cache) == 5 and dcells is None and self._fast:   # with lengths, or a pair
            done = self._backward_lane_stacked(cache, dout, dstates, accumulate, input_grad)
            if done is not None:
                return done
        _, seq_cache, given, out_shape = cache[:4]
        weights = self._weights()
        dout = _checks.check_output_grad(dout, "dout", out_shape, self.dtype)
        dcells = _checks.check_output_grad(dcells, "dcells", out_shape, self.dtype)
        if dcells is not None and not seq_cache[3]:
            raise ValueError("dcells given, but the last forward did not return the cells "
                             "(return_cells=True)")
        batch = out_shape[0 if self.batch_first else 1]
        names = tuple(f"d{n}_n" for n in self._spec.states)
        if self._single:
            dstates = tuple(_checks.check_state(st, n, batch, self.hidden_size, self.dtype)
                            for st, n in zip(dstates, names))
            dstates = tuple(None if st is None else st[None] for st in dstates)
        else:
            dstates = tuple(_checks.check_layer_state(
                st, n, self.num_layers * self.num_directions, batch, self.hidden_size,
                self.dtype) for st, n in zip(dstates, names))
        targets = self._grads_into(weights, dout, dstates, dcells, accumulate)
        if targets is None:
            _checks.check_grads_store(self.grads, self._param_shapes, self.dtype)
        grouped = self._grouped(weights)
        dx, dstates0, grads = _sequence.backward(
            self._sequence_plan(), seq_cache, dout, dstates, grouped, dcells,
            None if targets is None else _by_group(targets, len(self._spec.params)),
            input_grad, given[0])
        self._cache = None
        if targets is None:
            _checks.store_grads(self.grads, self._names, [g for group in grads for g in group],
                                accumulate)
        if self._single:
            dstates0 = tuple(d[0] for d in dstates0)
        return dx, tuple(d if g else None for d, g in zip(dstates0, given))

    def _backward_any(self, dout, dstates, accumulate, dcells=None, input_grad=True):
        """The public backward's work for every cell: ``(dx, dstates0)``, None where
        forward had no initial state (dx None without ``input_grad``: the kernels skip its
        products, as they skip dh0's last one without an initial state), the gradients
        stored. The lanes and the stacked path (_backward), else the checked one-layer,
        one-direction path."""
        input_grad = bool(input_grad)
        done = self._backward(dout, dstates, accumulate, dcells, input_grad)
        if done is not None:
            return done
        dout, dstates, x, Wx, Wh, workspace, given = self._backward_inputs(dout, dstates)
        dx, dstates0, grads = self._kernels.direction_backward(
            self._spec.kind, dout, dstates, x, Wx, Wh, workspace, self.batch_first,
            need_dx=input_grad, need_dh0=given[0])
        self._store_grads(grads, accumulate)
        return dx, tuple(d if g else None for d, g in zip(dstates0, given))

    def _backward_fast(self, cache, dout, dstates, accumulate, input_grad):
        """The fast lane's backward (the kernels' layer_backward) of a one-layer,
        one-direction forward, while ``params`` still hold the weights it ran on (then the
        workspace fits them) and dout, the state gradients and ``grads`` are ready as they
        are; returns ``(dx, dstates0)`` as _backward, or None (the checked path follows)."""
        x, workspace, given, weights = cache
        targets = self._lane_targets(weights)
        if targets is None:
            return None
        return self._lane_done(self._kernels.layer_backward(
            self._spec.kind, dout, dstates, x, weights, workspace, self.batch_first, targets,
            not accumulate, input_grad, given[0]), given, accumulate)

    def _lane_targets(self, weights):
        """The ``grads`` arrays (in ``_names`` order) for a fast lane's backward of a
        forward on ``weights``, or None when ``params`` no longer hold those weights (then
        the workspace must be checked against the new ones) or an entry of ``grads`` is
        missing (the checked path puts one there)."""
        if self._weights() is not weights:
            return None
        return self._grads_arrays()

    def _lane_done(self, done, given, accumulate):
        """A fast lane backward's result ``(dx, dstates0, grads, written)`` as _backward's
        ``(dx, dstates0)`` (None where no state was given), the gradients stored unless the
        kernels wrote them in place; None when the lane declined."""
        if done is None:
            return None
        dx, dstates0, grads, written = done
        self._cache = None
        if not written:
            _checks.store_grads(self.grads, self._all_names, grads, accumulate)
        return dx, tuple([d if g else None for d, g in zip(dstates0, given)])

    # ---------------------------------------------------------------- streaming
    def params_changed(self):
        """Say that ``params`` were written into in place: step() re-packs the weights.

        ``step()`` of a layer in eval mode packs the weights once and reuses that copy; an
        in-place write into ``params`` (``p -= lr * g``) is invisible to it until this is
        called (replacing an entry of ``params`` is seen). In training mode every step()
        packs them anew, and ``eval()`` drops the packed copy."""
        self._step_kernels = None

    def step(self, x_t, state=None, *, out=None):
        """One time step for streaming inference: ``h_t, state = layer.step(x_t, state)``.

        ``x_t`` is ``(batch, input_size)``, ``state`` as a forward's (None: zeros; a
        stateful layer's carried state) and ``h_t`` the last layer's ``(batch, hidden)``
        output. ``out``: arrays shaped like the returned state to write it into (they may be
        ``state`` itself); then the step allocates nothing. Not for bidirectional layers."""
        kernels = self._step_kernels
        if kernels is None or self.training or not (
                kernels[0].holds(self.params) if self._snapshot is not None
                else self._same_objects(kernels[0])):
            kernels = self._make_step_kernels()
        elif kernels[2] is not None and not self.stateful:
            done = kernels[2](x_t, state, out)      # compiled, every argument ready as is
            if done is not None:
                return done
        dtype = self.dtype
        x_t = _checks.check_step_input(x_t, self.input_size, dtype)
        shape = self._state_shape(x_t.shape[0])
        has_c = self._spec.has_cell_state
        states = (state if has_c else (state,)) if state is not None else None
        if states is None or len(states) != len(self._spec.states) or not all(
                s is None or (type(s) is np.ndarray and s.dtype is dtype and s.shape == shape
                              and s.flags.c_contiguous) for s in states):
            if state is None and self.stateful and self._state is not None:
                state = self._state if has_c else self._state[0]
            states = self._check_states(self._state_tuple(state, "state"), shape[-2])
        if out is None:
            outs = (np.empty(shape, dtype), np.empty(shape, dtype)) if has_c else (
                np.empty(shape, dtype),)
        else:
            outs = _checks.check_step_out(out if has_c else (out,), shape, dtype)
        if self._single:
            kernels[1][0].step(x_t, states[0], states[1] if has_c else None, outs[0],
                               outs[1] if has_c else None)
            h_t = outs[0]
        else:
            h_t = x_t
            for layer, kernel in enumerate(kernels[1]):
                h_prev, h_next = states[0], outs[0][layer]
                h_prev = None if h_prev is None else h_prev[layer]
                c_prev = c_next = None
                if has_c:
                    c_prev, c_next = states[1], outs[1][layer]
                    c_prev = None if c_prev is None else c_prev[layer]
                kernel.step(h_t, h_prev, c_prev, h_next, c_next)
                h_t = h_next
        if self.stateful:
            self._keep_state(outs)
        return h_t, (outs if has_c else outs[0])

    def _make_step_kernels(self):
        """Per layer a packed step kernel (the compiled core), or the twin's 1-step call."""
        if self.bidirectional:
            raise ValueError("step() streams one direction; a bidirectional layer "
                             "(bidirectional=True) needs the whole sequence: call forward")
        weights = self._grouped(self._weights())
        if self.backend == "cython":
            made = [self._kernels_module.StepKernel(self._spec.kind, *w) for w in weights]
        else:
            made = [_TwinStep(self._spec, w) for w in weights]
        flat = tuple(w for group in weights for w in group)     # (in _names order)
        fast = made[0].step_ready if self._single and self.backend == "cython" else None
        # what step() compares params against: the arrays (a snapshot of them, compiled)
        held = flat if self._snapshot is None else self._snapshot(self._all_names, flat)
        self._step_kernels = (held, made, fast)
        return self._step_kernels

    def _sequence_plan(self):
        if self._plan is None:
            n = self.num_layers * self.num_directions
            module = self._kernels_module
            kernels = [module] * n
            if self.backend == "cython":    # each direction keeps its own buffers
                kernels = [self._kernels] + [module.BufferedKernels() for _ in range(n - 1)]
            self._plan = _sequence.Plan(self._spec.kind, self.num_layers,
                                        self.num_directions, kernels, module)
        return self._plan


    # ---------------------------------------------------------------- pickle
    def __getstate__(self):
        """Parameters, gradients, settings and a stateful layer's carried state; not the
        kernels' kept buffers, a BPTT workspace or step()'s packed weights (process-local;
        the numpy backend's kernels are a module)."""
        state = dict(self.__dict__)
        for key in ("_kernels", "_kernels_module", "_cache", "_checked_weights", "_plan",
                    "_step_kernels", "_grouped_weights", "_param_getter", "_snapshot"):
            state.pop(key, None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._cache = self._checked_weights = self._plan = self._step_kernels = None
        self._grouped_weights = None
        self._param_getter = operator.itemgetter(*self._all_names)
        self._kernels_module = self._kernels = functional.kernels(self.backend)
        if self.backend == "cython":
            self._kernels = self._kernels.BufferedKernels()
        self._snapshot = getattr(self._kernels_module, "ParamsSnapshot", None)


class _TwinStep:
    """The twin's step kernel: a one-step forward (backend="numpy")."""

    def __init__(self, spec, weights):
        self.spec, self.weights = spec, weights

    def step(self, x_t, h, c, h_out, c_out):
        states = (h, c) if c_out is not None else (h,)
        _, finals, _ = reference._forward(self.spec, x_t[None], states, self.weights, False,
                                          False)
        h_out[...] = finals[0]
        if c_out is not None:
            c_out[...] = finals[1]


class RNN(_Recurrent):
    """Elman RNN, ``h_t = act(x_t @ Wx + h_{t-1} @ Wh + b)``, act tanh, relu or sigmoid.

    ``out, h_n = rnn(x, h0=None, *, lengths=None)``;
    ``dx, dh0 = rnn.backward(dout, dh_n=None)``. ``backward`` writes the gradients into the
    arrays of ``rnn.grads`` (the same objects every time; ``accumulate=True`` adds to them
    instead); ``dh0`` is None when forward had no ``h0``. With ``num_layers > 1`` or
    ``bidirectional``, states are ``(num_layers * num_directions, batch, hidden)`` and the
    directions' outputs are concatenated on the last axis, as in PyTorch.
    """

    def __init__(self, input_size, hidden_size, nonlinearity="tanh", *, num_layers=1,
                 bidirectional=False, batch_first=True, stateful=False, dtype=np.float32,
                 backend="cython", seed=None):
        self.nonlinearity = _checks.check_nonlinearity(nonlinearity)
        self._spec = cells.for_layer("rnn", self.nonlinearity)
        super().__init__(input_size, hidden_size, num_layers=num_layers,
                         bidirectional=bidirectional, batch_first=batch_first,
                         stateful=stateful, dtype=dtype, backend=backend, seed=seed)

    def _repr_extra(self):
        return f", nonlinearity={self.nonlinearity!r}"

    def forward(self, x, h0=None, *, lengths=None):
        out, (h_n,), _ = self._forward(x, (h0,), lengths)
        return out, h_n

    def backward(self, dout, dh_n=None, *, accumulate=False, input_grad=True):
        dx, (dh0,) = self._backward_any(dout, (dh_n,), accumulate, None, input_grad)
        return dx, dh0


class LSTM(_Recurrent):
    """LSTM with gate order i, f, g, o (PyTorch's).

    ``out, (h_n, c_n) = lstm(x, (h0, c0), *, lengths=None)`` (state optional);
    ``dx, (dh0, dc0) = lstm.backward(dout, (dh_n, dc_n))`` (state gradient optional).
    ``backward`` writes into ``lstm.grads``' arrays (``accumulate=True`` adds); ``dh0``/``dc0``
    are None when forward had no state. ``return_cells=True``: forward returns
    ``out, (h_n, c_n), cells``, every c_t shaped like ``out``, and backward takes their
    gradient as ``dcells``.
    """

    _spec = cells.get("lstm")

    @staticmethod
    def _pair(state, name):
        if state is None:
            return None, None
        if not isinstance(state, (tuple, list)) or len(state) != 2:
            raise TypeError(f"{name} must be a pair (h, c) of (batch, hidden) arrays or None, "
                            f"got {type(state).__name__}"
                            + (f" of length {len(state)}" if isinstance(state, (tuple, list))
                               else ""))
        return tuple(state)

    def _state_tuple(self, state, name):
        return self._pair(state, name)

    def forward(self, x, state=None, *, lengths=None, return_cells=False):
        out, finals, cells_ = self._forward(x, self._pair(state, "state"), lengths,
                                            bool(return_cells))
        if return_cells:
            return out, finals, cells_
        return out, finals

    def backward(self, dout, dstate=None, *, dcells=None, accumulate=False, input_grad=True):
        return self._backward_any(dout, self._pair(dstate, "dstate"), accumulate, dcells,
                                  input_grad)


class GRU(_Recurrent):
    """GRU, PyTorch's formulation, gate order r, z, n::

        r, z = sigmoid(x_t @ Wx_rz + h_{t-1} @ Wh_rz + b_rz)
        n = tanh(x_t @ Wx_n + b_n + r * (h_{t-1} @ Wh_n + b_hn))
        h_t = (1 - z) * n + z * h_{t-1}

    Parameters ``Wx (input_size, 3*hidden)``, ``Wh (hidden, 3*hidden)``, ``b (3*hidden,)``,
    ``b_hn (hidden,)``. ``out, h_n = gru(x, h0=None, *, lengths=None)``;
    ``dx, dh0 = gru.backward(dout, dh_n=None)``, as the RNN.
    """

    _spec = cells.get("gru")

    def forward(self, x, h0=None, *, lengths=None):
        out, (h_n,), _ = self._forward(x, (h0,), lengths)
        return out, h_n

    def backward(self, dout, dh_n=None, *, accumulate=False, input_grad=True):
        dx, (dh0,) = self._backward_any(dout, (dh_n,), accumulate, None, input_grad)
        return dx, dh0


def from_torch(module, *, dtype=None, backend="cython"):
    """``rnnfast.interop.from_torch`` (kept here for code that imports it from layers)."""
    from .interop import from_torch
    return from_torch(module, dtype=dtype, backend=backend)
