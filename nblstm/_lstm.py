"""LSTM and LSTMCell: parameters, argument checks and the tape; the math is in nblstm.kernels."""
import math

import numpy as np

from . import _checks, backends
from ._grad import is_grad_enabled
from ._module import Module, _SequenceIO
from .kernels._math import ACTIVATIONS

_GATES = r"""
    .. math::

        i_t &= \sigma(W_{ii} x_t + b_{ii} + W_{hi} h_{t-1} + b_{hi}) \\
        f_t &= \sigma(W_{if} x_t + b_{if} + W_{hf} h_{t-1} + b_{hf}) \\
        g_t &= \tanh(W_{ig} x_t + b_{ig} + W_{hg} h_{t-1} + b_{hg}) \\
        o_t &= \sigma(W_{io} x_t + b_{io} + W_{ho} h_{t-1} + b_{ho}) \\
        c_t &= f_t \odot c_{t-1} + i_t \odot g_t \\
        h_t &= o_t \odot \mathrm{act}(c_t)

    with act = tanh (default) or relu, and the gate blocks stacked i, f, g, o in the weights.
"""


class _LSTMBase(Module):
    """Shared by LSTM and LSTMCell: one layer's parameters and the kernels' forward/backward on time-major arrays."""

    _suffix = ""

    def __init__(self, input_size, hidden_size, bias, dtype, seed, forget_bias, cell_activation, device):
        self.input_size = _checks.positive_int(input_size, "input_size")
        self.hidden_size = _checks.positive_int(hidden_size, "hidden_size")
        self.bias = bool(bias)
        self.dtype = _checks.as_float_dtype(dtype)
        if isinstance(forget_bias, (bool, np.bool_)) or not isinstance(forget_bias, (int, float, np.floating, np.integer)) \
                or not math.isfinite(forget_bias):
            raise ValueError(f"forget_bias: expected a finite real number, got {forget_bias!r}")
        self.forget_bias = float(forget_bias)
        self.cell_activation = _checks.choice(cell_activation, "cell_activation", ACTIVATIONS)
        self._act = ACTIVATIONS.index(cell_activation)
        I, H, s = self.input_size, self.hidden_size, self._suffix
        shapes = {f"weight_ih{s}": (4 * H, I), f"weight_hh{s}": (4 * H, H)}
        if self.bias:
            shapes.update({f"bias_ih{s}": (4 * H,), f"bias_hh{s}": (4 * H,)})
        self._init_params(shapes, np.random.default_rng(seed), 1.0 / math.sqrt(H))
        if self.bias:
            self._params[f"bias_ih{s}"][H:2 * H] += self.dtype.type(self.forget_bias)
        if not isinstance(device, str) or device not in backends.TARGETS:
            raise ValueError(f"device: expected one of {', '.join(map(repr, backends.TARGETS))}, got {device!r}")
        self._tape = None
        self.to(device)

    def _bias(self):
        s = self._suffix
        if not self.bias:
            return backends.zeros(self.device, (4 * self.hidden_size,), self.dtype)
        b = backends.copy(self._params[f"bias_ih{s}"])
        backends.add_into(b, self._params[f"bias_hh{s}"])
        return b

    def _forward(self, x, h0, c0):
        """x (T, B, I), h0, c0 (B, H), checked, on self.device -> y (T, B, H), h_n, c_n (B, H) on self.device;
        keeps the tape unless no_grad()."""
        T, B, _ = x.shape
        H, p, s = self.hidden_size, self._params, self._suffix
        keep = is_grad_enabled()
        y, h_n, c_n, G = self._empty(T, B, H), self._empty(B, H), self._empty(B, H), self._empty(T, B, 4 * H)
        C, TC = self._empty(T if keep else 1, B, H), self._empty(T if keep else 1, B, H)
        self._kernels.lstm_forward(y, h_n, c_n, G, C, TC, self._empty(B, 4 * H), x, h0, c0,
                                   p[f"weight_ih{s}"], p[f"weight_hh{s}"], self._bias(), self._act)
        self._tape = (x, h0, c0, G, C, TC, y) if keep else None
        # the tape keeps its own y: user edits can't corrupt backward
        return (backends.copy(y) if keep else y), h_n, c_n

    def _backward(self, dy, dh_n, dc_n):
        """dy (T, B, H), dh_n, dc_n (B, H), checked -> dx (T, B, I), dh0, dc0; adds into grads."""
        x, h0, c0, G, C, TC, y = self._tape
        p, g, s = self._params, self.grads, self._suffix
        db = backends.zeros(self.device, (4 * self.hidden_size,), self.dtype)
        dx, dh0, dc0 = self._empty(*x.shape), self._empty(*h0.shape), self._empty(*c0.shape)
        self._kernels.lstm_backward(dx, dh0, dc0, g[f"weight_ih{s}"], g[f"weight_hh{s}"], db, self._empty(*G.shape),
                                    dy, dh_n, dc_n, x, h0, c0, p[f"weight_ih{s}"], p[f"weight_hh{s}"],
                                    G, C, TC, y, self._act)
        if self.bias:
            backends.add_into(g[f"bias_ih{s}"], db)
            backends.add_into(g[f"bias_hh{s}"], db)
        return dx, dh0, dc0

    def _state(self, state, name, shape):
        """(h, c) checked against `shape`, or zeros when state is None."""
        if state is None:
            return backends.zeros(self.device, shape, self.dtype), backends.zeros(self.device, shape, self.dtype)
        if not isinstance(state, (tuple, list)) or len(state) != 2:
            raise ValueError(f"{name}: expected a pair (h, c) of arrays of shape {shape}, got {type(state).__name__}")
        return tuple(self._as(a, f"{name}[{k}]", shape) for k, a in enumerate(state))

    def _repr_args(self):
        args = [str(self.input_size), str(self.hidden_size)]
        for name, default in (("bias", True), ("batch_first", False), ("forget_bias", 0.0),
                              ("cell_activation", "tanh")):
            value = getattr(self, name, default)
            if value != default:
                args.append(f"{name}={value!r}")
        if self.dtype != np.float32:
            args.append(f"dtype={self.dtype.name}")
        if self.device != "cpu":
            args.append(f"device={self.device!r}")
        return args


class LSTM(_SequenceIO, _LSTMBase):
    __doc__ = r"""One LSTM layer over a sequence, shaped like ``torch.nn.LSTM``.

    At each step t, from the input x_t and the previous state (h_{t-1}, c_{t-1}):
    """ + _GATES + r"""
    Parameters
    ----------
    input_size, hidden_size : int
        I and H.
    bias : bool, default True
        With ``bias_ih_l0`` and ``bias_hh_l0``; without them the gates have no bias.
    batch_first : bool, default False
        x and y are (B, T, .) instead of the time-major (T, B, .). States stay (1, B, H).
    dtype : np.float32 (default) or np.float64
        Parameters, outputs, gradients and all arithmetic use this dtype. Input of another real dtype
        (bool, int, float) is converted to it; non-contiguous input is copied; complex, string or object
        input raises TypeError.
    seed : int or None
        Seed of the initialization U(-1/sqrt(H), 1/sqrt(H)) of every parameter (torch's scheme).
    forget_bias : float, default 0.0
        Added to the forget-gate block of ``bias_ih_l0`` after initialization (1.0 is the value
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

    Notes
    -----
    ``forward`` keeps a tape of what ``backward`` needs (the gate activations, cell states and outputs);
    inside ``nblstm.no_grad()`` it keeps none. ``backward`` goes back through the most recent forward.
    Parameter names and shapes are torch's (``weight_ih_l0`` (4H, I), ``weight_hh_l0`` (4H, H),
    ``bias_ih_l0``, ``bias_hh_l0`` (4H,)), so ``lstm.load_state_dict({k: v.numpy() for k, v in
    torch_lstm.state_dict().items()})`` reproduces a one-layer ``torch.nn.LSTM``.

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
    """

    _suffix = "_l0"

    def __init__(self, input_size, hidden_size, *, bias=True, batch_first=False, dtype=np.float32, seed=None,
                 forget_bias=0.0, cell_activation="tanh", device="cpu"):
        self.batch_first = bool(batch_first)
        super().__init__(input_size, hidden_size, bias, dtype, seed, forget_bias, cell_activation, device)

    def forward(self, x, state=None):
        """x (T, B, I) [batch_first: (B, T, I)], state (h0, c0) each (1, B, H) or None for zeros
        -> y (T, B, H) [batch_first: (B, T, H)], (h_n, c_n) each (1, B, H)."""
        like = x
        x = self._seq(x, "x", None, None, self.input_size)
        B, H = x.shape[1], self.hidden_size
        h0, c0 = self._state(state, "state", (1, B, H))
        y, h_n, c_n = self._forward(x, h0[0], c0[0])
        return self._out(y, like), (self._host(h_n, like).reshape(1, B, H), self._host(c_n, like).reshape(1, B, H))

    __call__ = forward

    def backward(self, dy, state_grad=None):
        """dL/dy like y, state_grad (dL/dh_n, dL/dc_n) each (1, B, H) or None for zeros
        -> dL/dx like x, (dL/dh0, dL/dc0) each (1, B, H). Adds the parameter gradients into ``grads``."""
        T, B = self._check_tape()[0].shape[:2]
        like, H = dy, self.hidden_size
        dy = self._seq(dy, "dy", T, B, H)
        dh_n, dc_n = self._state(state_grad, "state_grad", (1, B, H))
        dx, dh0, dc0 = self._backward(dy, dh_n[0], dc_n[0])
        return self._out(dx, like), (self._host(dh0, like).reshape(1, B, H), self._host(dc0, like).reshape(1, B, H))


class LSTMCell(_LSTMBase):
    __doc__ = r"""One LSTM step, shaped like ``torch.nn.LSTMCell``:
    """ + _GATES + r"""
    Parameters are as :class:`LSTM` (without ``batch_first``); their names are torch's LSTMCell ones:
    ``weight_ih`` (4H, I), ``weight_hh`` (4H, H), ``bias_ih``, ``bias_hh`` (4H,).

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

    def __init__(self, input_size, hidden_size, *, bias=True, dtype=np.float32, seed=None, forget_bias=0.0,
                 cell_activation="tanh", device="cpu"):
        super().__init__(input_size, hidden_size, bias, dtype, seed, forget_bias, cell_activation, device)

    def forward(self, x, state=None):
        """x (B, I), state (h, c) each (B, H) or None for zeros -> (h_next, c_next) each (B, H)."""
        like = x
        x = self._as(x, "x", (None, self.input_size))
        h, c = self._state(state, "state", (x.shape[0], self.hidden_size))
        _, h_next, c_next = self._forward(x.reshape(1, *x.shape), h, c)
        return self._host(h_next, like), self._host(c_next, like)

    __call__ = forward

    def backward(self, dh_next, dc_next=None):
        """dL/dh_next, dL/dc_next (B, H) (None: zeros) -> dL/dx (B, I), (dL/dh, dL/dc) each (B, H)."""
        B = self._check_tape()[0].shape[1]
        shape, like = (B, self.hidden_size), dh_next
        dh_next = self._as(dh_next, "dh_next", shape)
        zeros = lambda: backends.zeros(self.device, shape, self.dtype)  # noqa: E731
        dc_next = zeros() if dc_next is None else self._as(dc_next, "dc_next", shape)
        dx, dh, dc = self._backward(dh_next.reshape(1, *shape), zeros(), dc_next)
        return self._host(dx[0], like), (self._host(dh, like), self._host(dc, like))
