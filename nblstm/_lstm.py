"""LSTM and LSTMCell: parameters, argument checks and the tape; the math is in nblstm.kernels."""
import math

import numpy as np

from . import _checks, backends
from ._grad import is_grad_enabled
from ._module import Module, _SequenceIO
from ._stack import _Stacked
from .kernels._math import ACTIVATIONS

_PEEPHOLES = ("ci", "cf", "co")   # weight_ci, weight_cf, weight_co: the input, forget and output gates' peepholes

_GATES = r"""
    .. math::

        i_t &= \sigma(W_{ii} x_t + b_{ii} + W_{hi} h_{t-1} + b_{hi} + w_{ci} \odot c_{t-1}) \\
        f_t &= \sigma(W_{if} x_t + b_{if} + W_{hf} h_{t-1} + b_{hf} + w_{cf} \odot c_{t-1}) \\
        g_t &= \tanh(W_{ig} x_t + b_{ig} + W_{hg} h_{t-1} + b_{hg}) \\
        c_t &= f_t \odot c_{t-1} + i_t \odot g_t \\
        o_t &= \sigma(W_{io} x_t + b_{io} + W_{ho} h_{t-1} + b_{ho} + w_{co} \odot c_t) \\
        h_t &= o_t \odot \mathrm{act}(c_t) \quad (\text{with a projection: } h_t = W_{hr} (o_t \odot \mathrm{act}(c_t)))

    with act = tanh (default) or relu, the gate blocks stacked i, f, g, o in the weights, and the peephole terms
    (w_ci, w_cf, w_co, per-unit weights; Gers & Schmidhuber 2000) only with ``peephole=True``.
"""


class _LSTMBase(Module):
    """Shared by LSTM and LSTMCell: one layer's parameters and the kernels' forward/backward on time-major arrays."""

    _suffix = ""

    def __init__(self, input_size, hidden_size, bias, dtype, seed, forget_bias, cell_activation, device, peephole,
                 proj_size=0):
        self.input_size = _checks.positive_int(input_size, "input_size")
        self.hidden_size = _checks.positive_int(hidden_size, "hidden_size")
        if isinstance(proj_size, (bool, np.bool_)) or not isinstance(proj_size, (int, np.integer)) \
                or not 0 <= proj_size < self.hidden_size:
            raise ValueError(f"proj_size: expected an integer in 0..hidden_size - 1 = {self.hidden_size - 1} "
                             f"(0: no projection), got {proj_size!r}")
        self.proj_size = int(proj_size)
        self.peephole = bool(peephole)
        self.bias = bool(bias)
        self.dtype = _checks.as_float_dtype(dtype)
        if isinstance(forget_bias, (bool, np.bool_)) or not isinstance(forget_bias, (int, float, np.floating, np.integer)) \
                or not math.isfinite(forget_bias):
            raise ValueError(f"forget_bias: expected a finite real number, got {forget_bias!r}")
        self.forget_bias = float(forget_bias)
        self.cell_activation = _checks.choice(cell_activation, "cell_activation", ACTIVATIONS)
        self._act = ACTIVATIONS.index(cell_activation)
        H, P = self.hidden_size, self._P
        shapes = {}
        for s, n_in in self._layer_inputs():       # torch's order: l0, l0_reverse, l1, ...; peepholes last
            shapes.update({f"weight_ih{s}": (4 * H, n_in), f"weight_hh{s}": (4 * H, P)})
            if self.bias:
                shapes.update({f"bias_ih{s}": (4 * H,), f"bias_hh{s}": (4 * H,)})
            if self.proj_size:
                shapes[f"weight_hr{s}"] = (P, H)
            if self.peephole:
                shapes.update({f"weight_{k}{s}": (H,) for k in _PEEPHOLES})
        self._init_params(shapes, np.random.default_rng(seed), 1.0 / math.sqrt(H))
        if self.bias:
            for s, _ in self._layer_inputs():
                self._params[f"bias_ih{s}"][H:2 * H] += self.dtype.type(self.forget_bias)
        self._tape = None
        self.to(_checks.choice(device, "device", tuple(backends.TARGETS)))

    @property
    def _P(self):
        """The size of h: proj_size with a projection, else hidden_size."""
        return self.proj_size or self.hidden_size

    def _layer_inputs(self):
        """(suffix, input size) of every layer-direction, in torch's parameter order; one for a cell."""
        return [(self._suffix, self.input_size)]

    def _peepholes(self, s):
        """(3, H): the rows w_ci, w_cf, w_co of layer-direction `s`, or zeros without peepholes (the same math)."""
        if not self.peephole:
            return self._const_zeros(3, self.hidden_size)
        wp = self._scratch(f"wp{s}", 3, self.hidden_size)
        for k, name in enumerate(_PEEPHOLES):
            backends.copy_into(backends.row(wp, k), self._params[f"weight_{name}{s}"])
        return wp

    def _w_hr(self, arrays, s):
        """weight_hr of `s` from `arrays` (params or grads), or a (0, H) array: no projection."""
        return arrays[f"weight_hr{s}"] if self.proj_size else self._const_zeros(0, self.hidden_size)

    _state_sizes = property(lambda self: (self._P, self.hidden_size))     # h (., B, P), c (., B, H)

    def _layer_forward(self, x, s, state0, state_n, keep, lens):
        """Layer-direction `s` (parameter suffix) over x (T, B, I) from state0 = (h0 (B, P), c0 (B, H)), sequence b
        running lens[b] steps: one kernel call; writes state_n = (h_n, c_n) -> y (T, B, P) and its tape (None
        unless keep)."""
        (h0, c0), (h_n, c_n) = state0, state_n
        T, B, _ = x.shape
        H, P, p = self.hidden_size, self._P, self._params
        # the gates: in the tape, or (no tape) scratch kept for the next call
        y, G = self._take(T, B, P), self._take(T, B, 4 * H) if keep else self._scratch("G", T, B, 4 * H)
        # without a tape: C two steps (c_t beside c_{t-1}), TC and M one (nblstm/kernels/cpu.py, first comment)
        C, TC = self._take(T if keep else min(T, 2), B, H), self._take(T if keep else 1, B, H)
        M = self._take(T if keep else 1, B, H) if self.proj_size else y
        self._kernels.lstm_forward(y, h_n, c_n, G, C, TC, M, self._scratch("hw", B, 4 * H), x, h0, c0,
                                   p[f"weight_ih{s}"], p[f"weight_hh{s}"], self._bias(s), self._peepholes(s),
                                   self._w_hr(p, s), lens, self._act)
        return y, ((x, h0, c0, G, C, TC, M, y, lens) if keep else None)

    def _tape_buffers(self, tape):
        G, C, TC, M, y = tape[3:8]
        return (G, C, TC, y) + ((M,) if self.proj_size else ())

    def _layer_backward(self, tape, dy, s, dstate_n, dstate0):
        """BPTT through layer-direction `s` from its tape: dy (T, B, P), dstate_n = (dh_n (B, P), dc_n (B, H)) in;
        writes dstate0 = (dh0, dc0) -> dx (T, B, I); adds into grads."""
        (dh_n, dc_n), (dh0, dc0) = dstate_n, dstate0
        x, h0, c0, G, C, TC, M, y, lens = tape
        T, B, _ = x.shape
        H, P, p, g = self.hidden_size, self._P, self._params, self.grads
        db, dwp = self._scratch("db", 4 * H), self._scratch("dwp", 3 if self.peephole else 0, H)
        backends.fill_zeros(db)
        backends.fill_zeros(dwp)
        n = T if self.proj_size else 0              # the projection's scratch
        dx = self._empty(*x.shape)
        self._kernels.lstm_backward(dx, dh0, dc0, g[f"weight_ih{s}"], g[f"weight_hh{s}"], db, dwp, self._w_hr(g, s),
                                    self._scratch("dG", *G.shape), self._scratch("dH", n, B, P),
                                    self._scratch("dm", B if n else 0, H), self._scratch("dhw", B, P), dy, dh_n, dc_n,
                                    x, h0, c0, p[f"weight_ih{s}"], p[f"weight_hh{s}"], self._peepholes(s),
                                    self._w_hr(p, s), G, C, TC, M, y, lens, self._act)
        if self.bias:
            backends.add_into(g[f"bias_ih{s}"], db)
            backends.add_into(g[f"bias_hh{s}"], db)
        if self.peephole:
            for k, name in enumerate(_PEEPHOLES):
                backends.add_into(g[f"weight_{name}{s}"], backends.row(dwp, k))
        return dx

    def _state(self, state, name, B, n=None):
        """(h, c), h (n, B, P) and c (n, B, H) (n None: (B, P), (B, H)) checked, or zeros when state is None."""
        P, H = self._P, self.hidden_size
        hs, cs = ((B, P), (B, H)) if n is None else ((n, B, P), (n, B, H))
        if state is None:
            return self._const_zeros(*hs), self._const_zeros(*cs)
        if not isinstance(state, (tuple, list)) or len(state) != 2:
            raise ValueError(f"{name}: expected a pair (h, c) of arrays of shapes {hs} and {cs}, got "
                             f"{type(state).__name__}")
        return self._as(state[0], f"{name}[0]", hs), self._as(state[1], f"{name}[1]", cs)

    def _repr_args(self):
        return self._sizes_repr((("num_layers", 1), ("bias", True), ("batch_first", False), ("dropout", 0.0),
                                 ("bidirectional", False), ("proj_size", 0), ("peephole", False),
                                 ("forget_bias", 0.0), ("cell_activation", "tanh")))


class LSTM(_SequenceIO, _Stacked, _LSTMBase):
    __doc__ = r"""A stack of LSTM layers over a sequence, one or both directions, shaped like ``torch.nn.LSTM``.

    At each step t, from the input x_t and the previous state (h_{t-1}, c_{t-1}):
    """ + _GATES + r"""
    Layer 0 reads x; layer k > 0 reads the outputs of layer k - 1 (both directions' h concatenated, forward
    first), times a dropout mask in training. With ``bidirectional=True`` each layer also runs a reverse direction
    (its own parameters, suffix ``_reverse``) over the time-reversed sequence, and y holds both directions'
    h_t side by side: y (T, B, D*P), D = 2 (D = 1 otherwise), P = ``proj_size`` or H, the size of h.

    Parameters
    ----------
    input_size, hidden_size : int
        I and H.
    num_layers : int, default 1
        L, layers stacked; layer k > 0 has input size D*H.
    bias : bool, default True
        With ``bias_ih_l{k}`` and ``bias_hh_l{k}``; without them the gates have no bias.
    batch_first : bool, default False
        x and y are (B, T, .) instead of the time-major (T, B, .). States stay (L*D, B, H).
    dropout : float in [0, 1), default 0.0
        Probability p of zeroing each input feature of layers 1..L-1 (the outputs of the layer below, not x and not
        y), with the kept ones scaled by 1/(1-p) (inverted dropout, torch's). Only in training: see Notes. p > 0
        with num_layers=1 has nothing to drop and warns, as torch does.
    bidirectional : bool, default False
        Add a reverse direction to every layer (D = 2).
    proj_size : int, default 0
        P > 0 (and < H): LSTM with a projection (LSTMP, Sak et al. 2014), as torch's: h_t = W_hr (o_t * act(c_t)),
        ``weight_hr_l{k}`` (P, H); h, y and ``weight_hh_l{k}`` (4H, P) use P. 0: no projection.
    peephole : bool, default False
        Peephole connections (Gers & Schmidhuber 2000): per-unit weights ``weight_ci_l{k}``, ``weight_cf_l{k}``,
        ``weight_co_l{k}`` (H,) through which the input and forget gates see c_{t-1} and the output gate sees c_t
        (torch has none; they are initialized like the other parameters).
    dtype : np.float32 (default) or np.float64
        Parameters, outputs, gradients and all arithmetic use this dtype. Input of another real dtype
        (bool, int, float) is converted to it; non-contiguous input is copied; complex, string or object
        input raises TypeError.
    seed : int or None
        Seed of the initialization U(-1/sqrt(H), 1/sqrt(H)) of every parameter (torch's scheme), and of the
        generator of the dropout masks (drawn after the parameters; each forward in training advances it).
    forget_bias : float, default 0.0
        Added to the forget-gate block of every ``bias_ih_l{k}[_reverse]`` after initialization (1.0 is the value
        Jozefowicz et al. 2015 recommend).
    cell_activation : {"tanh", "relu"}
        act in h_t = o_t * act(c_t).
    device : {"cpu", "cuda"}
        Where parameters, gradients, the tape and the arithmetic live. "cuda" runs numba-cuda kernels on an NVIDIA
        GPU (or on Numba's CUDA simulator); without numba-cuda or a GPU it raises
        ``nblstm.backends.CudaUnavailableError`` saying how to install them. ``to(device)`` moves a model.

    Attributes
    ----------
    grads : dict
        Gradients with the keys of ``state_dict()``, added to by every ``backward`` until ``zero_grad()``.
    training : bool
        True (default) after ``train()``, False after ``eval()``, as torch's; it only switches dropout.
    dropout_masks : list of arrays or None
        The L - 1 masks (in y's layout, values 0 or 1/(1-p) when drawn) that the most recent forward applied, or
        None when it applied none.

    Notes
    -----
    Variable-length sequences: ``forward(x, state, lengths=lengths)``, lengths (B,) integers in 0..T. Sequence b
    runs its first lengths[b] steps; past its end its state is frozen and its y is zero, so h_n, c_n are the states
    at its last valid step (h0, c0 for length 0), and the reverse direction starts at its own end: torch's packed
    sequences (``pack_padded_sequence``), without the packing. ``backward`` follows the same semantics (dy past an
    end is ignored). The padded batch costs what a full one does: every step is computed for the whole batch and
    masked (benchmarks/bench_padded.py).

    ``forward`` keeps a tape of what ``backward`` needs (per layer and direction: the gate activations, cell
    states and outputs); inside ``nblstm.no_grad()`` it keeps none. ``backward`` goes back through the most
    recent forward. Each layer and direction is one call of the one-layer kernel over the whole sequence; the
    reverse direction runs it on the time-reversed input and reverses its output (and, in backward, its
    gradients) back.

    Training vs inference: dropout masks are drawn when ``training`` is True *and* gradients are enabled, i.e.
    outside ``nblstm.no_grad()``, nblstm's inference mode (so evaluation under ``no_grad()`` never drops);
    ``eval()`` switches it off with gradients on, as torch's ``eval()``. ``forward(x, state,
    dropout_masks=masks)`` applies given masks instead, in every mode: the way to repeat a forward exactly (e.g.
    ``nblstm.gradcheck(lstm, x, dropout_masks=lstm.dropout_masks)``, whose finite-difference forwards run under
    ``no_grad()``).

    Parameter names and shapes are torch's (``weight_ih_l{k}`` (4H, I or D*H), ``weight_hh_l{k}`` (4H, H),
    ``bias_ih_l{k}``, ``bias_hh_l{k}`` (4H,), ``_reverse`` for the reverse direction), so ``lstm.load_state_dict({k:
    v.numpy() for k, v in torch_lstm.state_dict().items()})`` reproduces a ``torch.nn.LSTM`` of the same shape.

    On device "cuda", inputs may be NumPy arrays or device arrays; outputs are NumPy arrays unless x (for
    ``forward``) or dy (for ``backward``) is a device array, in which case they stay on the device (time-major
    C-contiguous device input of the model's dtype is used without a copy; batch_first transposes go through the
    host). ``parameters()`` and ``grads`` hold numba-cuda device arrays; ``state_dict()`` returns NumPy copies.

    Examples
    --------
    >>> import numpy as np, nblstm
    >>> lstm = nblstm.LSTM(3, 5, seed=0)
    >>> x = np.random.default_rng(0).standard_normal((7, 2, 3)).astype(np.float32)  # (T, B, I)
    >>> y, (h_n, c_n) = lstm(x)
    >>> y.shape, h_n.shape
    ((7, 2, 5), (1, 2, 5))
    >>> dx, (dh0, dc0) = lstm.backward(np.ones_like(y))
    >>> dx.shape, sorted(lstm.grads)
    ((7, 2, 3), ['bias_hh_l0', 'bias_ih_l0', 'weight_hh_l0', 'weight_ih_l0'])
    >>> deep = nblstm.LSTM(3, 5, num_layers=2, bidirectional=True, dropout=0.2, seed=0)
    >>> y, (h_n, c_n) = deep(x)
    >>> y.shape, h_n.shape, deep.state_dict()["weight_ih_l1_reverse"].shape
    ((7, 2, 10), (4, 2, 5), (20, 10))
    >>> lstmp = nblstm.LSTM(3, 5, proj_size=2, peephole=True, bidirectional=True, seed=0)
    >>> y, (h_n, c_n) = lstmp(x, lengths=[7, 4])
    >>> y.shape, h_n.shape, c_n.shape, bool(y[4:, 1].any())
    ((7, 2, 4), (2, 2, 2), (2, 2, 5), False)
    """

    def __init__(self, input_size, hidden_size, *, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, proj_size=0, peephole=False, dtype=np.float32, seed=None, forget_bias=0.0,
                 cell_activation="tanh", device="cpu"):
        self._init_stack(num_layers, dropout, bidirectional, batch_first)
        super().__init__(input_size, hidden_size, bias, dtype, seed, forget_bias, cell_activation, device, peephole,
                         proj_size)

    def forward(self, x, state=None, *, lengths=None, dropout_masks=None):
        """x (T, B, I) [batch_first: (B, T, I)], state (h0, c0), h0 (L*D, B, P) and c0 (L*D, B, H), or None for
        zeros -> y (T, B, D*P) [batch_first: (B, T, D*P)], (h_n (L*D, B, P), c_n (L*D, B, H)); P = proj_size or H;
        state index k*D + d is layer k, direction d (1: reverse). ``lengths`` (B,) integers in 0..T: sequence b
        runs lengths[b] steps (see Notes). ``dropout_masks``: L - 1 arrays shaped like the layers' inputs (T, B,
        D*P) [batch_first: (B, T, D*P)], applied instead of drawn ones."""
        like = x
        x = self._seq(x, "x", None, None, self.input_size)
        T, B = x.shape[:2]
        y, (h_n, c_n) = self._stack_forward(x, self._state(state, "state", B, self.num_layers * self._D), lengths,
                                            dropout_masks)
        return self._out(y, like), (self._host(h_n, like), self._host(c_n, like))

    __call__ = forward

    def backward(self, dy, state_grad=None):
        """dL/dy like y, state_grad (dL/dh_n, dL/dc_n) shaped like (h_n, c_n), or None for zeros
        -> dL/dx like x, (dL/dh0, dL/dc0) shaped like (h0, c0). Adds the parameter gradients into ``grads``."""
        x = self._check_tape()[0]
        T, B = x.shape[:2]
        L, D, like = self.num_layers, self._D, dy
        dy = self._seq(dy, "dy", T, B, D * self._P)
        dx, (dh0, dc0) = self._stack_backward(dy, self._state(state_grad, "state_grad", B, L * D))
        return self._out(dx, like), (self._host(dh0, like), self._host(dc0, like))


class LSTMCell(_LSTMBase):
    __doc__ = r"""One LSTM step, shaped like ``torch.nn.LSTMCell``:
    """ + _GATES + r"""
    Parameters are as :class:`LSTM` (without ``batch_first`` and ``proj_size``); their names are torch's LSTMCell
    ones: ``weight_ih`` (4H, I), ``weight_hh`` (4H, H), ``bias_ih``, ``bias_hh`` (4H,), and with ``peephole=True``
    ``weight_ci``, ``weight_cf``, ``weight_co`` (H,).

    ``forward(x, (h, c))`` with x (B, I) and h, c (B, H) returns (h_next, c_next); ``backward(dh_next,
    dc_next)`` goes back through the most recent forward and returns dx, (dh, dc). Inside
    ``nblstm.no_grad()`` no tape is kept.

    Examples
    --------
    >>> import numpy as np, nblstm
    >>> cell = nblstm.LSTMCell(3, 4, seed=0)
    >>> h, c = cell(np.ones((2, 3), np.float32))
    >>> dx, (dh, dc) = cell.backward(np.ones_like(h))
    >>> h.shape, dx.shape
    ((2, 4), (2, 3))
    """

    def __init__(self, input_size, hidden_size, *, bias=True, peephole=False, dtype=np.float32, seed=None,
                 forget_bias=0.0, cell_activation="tanh", device="cpu"):
        super().__init__(input_size, hidden_size, bias, dtype, seed, forget_bias, cell_activation, device, peephole)

    def forward(self, x, state=None):
        """x (B, I), state (h, c) each (B, H) or None for zeros -> (h_next, c_next) each (B, H)."""
        like = x
        x = self._as(x, "x", (None, self.input_size))
        B, H = x.shape[0], self.hidden_size
        h, c = self._state(state, "state", B)
        h_next, c_next = self._empty(B, H), self._empty(B, H)
        ones = backends.to_device(self.device, np.ones(B, np.int64))
        _, self._tape = self._layer_forward(x.reshape(1, *x.shape), "", (h, c), (h_next, c_next), is_grad_enabled(),
                                            ones)
        return self._host(h_next, like), self._host(c_next, like)

    __call__ = forward

    def backward(self, dh_next, dc_next=None):
        """dL/dh_next, dL/dc_next (B, H) (None: zeros) -> dL/dx (B, I), (dL/dh, dL/dc) each (B, H)."""
        B = self._check_tape()[0].shape[1]
        shape, like = (B, self.hidden_size), dh_next
        dh_next = self._as(dh_next, "dh_next", shape)
        zeros = lambda: backends.zeros(self.device, shape, self.dtype)  # noqa: E731
        dc_next = zeros() if dc_next is None else self._as(dc_next, "dc_next", shape)
        dh, dc = self._empty(*shape), self._empty(*shape)
        dx = self._layer_backward(self._tape, dh_next.reshape(1, *shape), "", (zeros(), dc_next), (dh, dc))
        return self._host(dx[0], like), (self._host(dh, like), self._host(dc, like))
