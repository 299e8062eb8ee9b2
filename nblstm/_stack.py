"""Stacked and bidirectional composition of one-layer recurrent kernels, shared by nblstm.LSTM and nblstm.RNN.

torch.nn.LSTM's and torch.nn.RNN's semantics: layer 0 reads x; layer k > 0 reads the outputs of layer k - 1 (both
directions side by side, forward first), times a dropout mask in training; the reverse direction reads each sequence
backwards from its own end (``lengths``) and its outputs go back in time order. A layer-direction is one kernel call
over the whole sequence (no per-step Python). A class using this mixin provides:

- ``_state_sizes``: the last dimension of each state array (LSTM: P for h, H for c; RNN: H for h);
- ``_layer_forward(x, s, state0, state_n, keep, lens) -> (y, tape)`` and
  ``_layer_backward(tape, dy, s, dstate_n, dstate0) -> dx`` for layer-direction suffix ``s``, where state0,
  state_n, dstate_n, dstate0 are tuples of (B, n) arrays (state_n and dstate0 written by the call);
  ``_layer_forward`` gets the arrays of its tape through ``_take`` (Module), which hands out the buffers of the tape
  this forward dropped;
- ``_tape_buffers(tape)``: the arrays of a layer tape that the layer allocated and nothing outside the tape holds
  (not x, not the states), free for the next forward's tape;
- ``_P``, the size of a direction's output.
"""
import warnings

import numpy as np

from . import _checks, backends
from ._grad import is_grad_enabled


class _Stacked:
    """num_layers, bidirectional and dropout for a recurrent layer (see the module docstring)."""

    def _init_stack(self, num_layers, dropout, bidirectional, batch_first):
        self.num_layers = _checks.positive_int(num_layers, "num_layers")
        if isinstance(dropout, (bool, np.bool_)) or not isinstance(dropout, (int, float, np.integer, np.floating)) \
                or not 0 <= dropout < 1:
            raise ValueError(f"dropout: expected a number in [0, 1), got {dropout!r}")
        self.dropout = float(dropout)
        if self.dropout > 0 and self.num_layers == 1:
            warnings.warn(f"dropout: dropout is applied between stacked layers (to the inputs of layers 1..L-1), so "
                          f"dropout={dropout!r} with num_layers=1 drops nothing", UserWarning, stacklevel=3)
        self.bidirectional = bool(bidirectional)
        self.batch_first = bool(batch_first)
        self.training = True
        self._last_masks = None

    def _init_params(self, shapes, rng, bound):
        super()._init_params(shapes, rng, bound)
        # The dropout masks' generator, seeded from the initialization's after the parameters are drawn: the
        # parameters are those of a model without dropout, and a seed gives one sequence of masks.
        self._dropout_rng = np.random.default_rng(rng.integers(2**62))

    @property
    def _D(self):
        return 2 if self.bidirectional else 1

    @property
    def _suffixes(self):
        """The parameter suffixes of the layer-directions, in order (_layer_inputs' first items; sizes are fixed at
        construction, so the list is made once)."""
        suffixes = self.__dict__.get("_suffix_list")
        if suffixes is None:
            suffixes = self.__dict__["_suffix_list"] = [s for s, _ in self._layer_inputs()]
        return suffixes

    def _layer_inputs(self):
        """(suffix, input size) of every layer-direction, in torch's parameter order."""
        D, P = self._D, self._P
        return [(f"_l{k}" + ("_reverse" if d else ""), self.input_size if k == 0 else D * P)
                for k in range(self.num_layers) for d in range(D)]

    def train(self, mode=True):
        """Training mode (``training = mode``): dropout on, outside ``nblstm.no_grad()``. Returns self."""
        self.training = bool(mode)
        return self

    def eval(self):
        """Inference mode (``training = False``): no dropout. Returns self."""
        return self.train(False)

    @property
    def dropout_masks(self):
        """The dropout masks the most recent forward applied (NumPy arrays in y's layout), or None."""
        if self._last_masks is None:
            return None
        masks = [backends.to_host(m, copy=True) for m in self._last_masks]
        return [np.ascontiguousarray(m.transpose(1, 0, 2)) for m in masks] if self.batch_first else masks

    def _masks(self, masks, T, B):
        """This forward's dropout masks, time-major on the device: the given ones checked, else drawn when
        training (see Notes), else None."""
        n, F = self.num_layers - 1, self._D * self._P
        if masks is not None:
            if not isinstance(masks, (list, tuple)) or len(masks) != n:
                got = f"{len(masks)} of them" if isinstance(masks, (list, tuple)) else type(masks).__name__
                raise ValueError(f"dropout_masks: expected a list of num_layers - 1 = {n} arrays shaped like y, "
                                 f"got {got}")
            return [self._seq(m, f"dropout_masks[{k}]", T, B, F) for k, m in enumerate(masks)]
        if n == 0 or self.dropout == 0 or not self.training or not is_grad_enabled():
            return None
        scale = self.dtype.type(1.0 / (1.0 - self.dropout))
        return [backends.to_device(self.device, (self._dropout_rng.random((T, B, F)) >= self.dropout)
                                   .astype(self.dtype) * scale) for _ in range(n)]

    def _stack_forward(self, x, states0, lengths, dropout_masks):
        """x time-major on the device, states0 a tuple of checked (L*D, B, n) arrays -> y (T, B, D*P) on the
        device, the tuple of final states (L*D, B, n); keeps the tape unless inside no_grad()."""
        T, B = x.shape[:2]
        L, D, P = self.num_layers, self._D, self._P
        lens = (self._default_lengths(B, T) if lengths is None
                else backends.to_device(self.device, _checks.lengths(lengths, B, T)))
        masks = self._masks(dropout_masks, T, B)
        keep = is_grad_enabled()
        # arguments checked: the old tape goes before the new one is built (peak memory), its buffers reused
        old, self._tape = self._tape, None
        self._spare = [a for tape in (old[1] if old else ()) for a in self._tape_buffers(tape)]
        states_n = tuple([self._empty(L * D, B, n) for n in self._state_sizes])
        suffixes = self._suffixes
        inp, tapes = x, []
        for layer in range(L):
            if layer and masks is not None:
                inp = backends.multiply(inp, masks[layer - 1])
            out = self._empty(T, B, D * P) if D == 2 else None
            for d in range(D):
                k = layer * D + d
                xin = inp
                if d:                               # the reverse direction reads each sequence from its end back
                    xin = self._take(*inp.shape)    # (kept in its tape: a dropped tape's buffer, or a new one)
                    backends.copy_steps(xin, inp, reverse=True, lengths=lens)
                y, tape = self._layer_forward(xin, suffixes[k], tuple([backends.row(a, k) for a in states0]),
                                              tuple([backends.row(a, k) for a in states_n]), keep, lens)
                tapes.append(tape)
                if D == 1:
                    out = y
                else:                               # ... and its outputs go back in time order, after forward's
                    backends.copy_steps(out, y, out_col=d * P, reverse=bool(d), lengths=lens)
            inp = out
        self._tape = (x, tapes, masks, lens) if keep else None
        self._last_masks = masks
        self._spare = ()                # spare buffers no layer took are freed
        # the tape keeps its own y (a one-direction top layer's y is in its tape): user edits can't corrupt backward
        return (backends.copy(inp) if keep and D == 1 else inp), states_n

    def _stack_backward(self, dy, dstates_n):
        """dy time-major on the device (checked), dstates_n a tuple of (L*D, B, n) -> dx (T, B, I) on the device,
        the tuple of state gradients (L*D, B, n); adds the parameter gradients into ``grads``."""
        x, tapes, masks, lens = self._check_tape()
        T, B = x.shape[:2]
        L, D, P = self.num_layers, self._D, self._P
        dstates0 = tuple([self._empty(L * D, B, n) for n in self._state_sizes])
        suffixes = self._suffixes
        dout = dy
        for layer in reversed(range(L)):            # top layer first
            dinp = None
            for d in range(D):
                k = layer * D + d
                dyd = dout
                if D == 2:                          # this direction's part of dL/dy, in its own time order
                    dyd = self._scratch("dy_direction", T, B, P)   # read by this direction's backward only
                    backends.copy_steps(dyd, dout, a_col=d * P, n=P, reverse=bool(d), lengths=lens)
                dx = self._layer_backward(tapes[k], dyd, suffixes[k], tuple([backends.row(a, k) for a in dstates_n]),
                                          tuple([backends.row(a, k) for a in dstates0]))
                if d == 0:
                    dinp = dx
                else:                               # both directions read the same input: their gradients add
                    backends.copy_steps(dinp, dx, reverse=True, accumulate=True, lengths=lens)
            if layer and masks is not None:
                dinp = backends.multiply(dinp, masks[layer - 1])
            dout = dinp
        return dout, dstates0
