"""RNN: the vanilla (Elman) recurrent layer, the baseline the LSTM's gates are measured against."""
import math

import numpy as np

from . import _checks, backends
from ._grad import is_grad_enabled
from ._module import Module, _SequenceIO
from .kernels._math import ACTIVATIONS


class RNN(_SequenceIO, Module):
    r"""One Elman RNN layer over a sequence, shaped like ``torch.nn.RNN``:

    .. math::

        h_t = \mathrm{act}(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh})

    with act = tanh (default) or relu. Its gradient through time is a product of W_hh^T diag(act') factors,
    which vanishes (or explodes) with the time lag: the problem the LSTM's cell state was built to avoid.

    Parameters
    ----------
    input_size, hidden_size : int
        I and H.
    nonlinearity : {"tanh", "relu"}
    bias : bool, default True
    batch_first : bool, default False
        x and y are (B, T, .) instead of the time-major (T, B, .). The state stays (1, B, H).
    dtype : np.float32 (default) or np.float64
    seed : int or None
        Seed of torch's initialization: every parameter from U(-1/sqrt(H), 1/sqrt(H)).
    device : {"cpu", "cuda"}

    Notes
    -----
    Names and shapes as torch: ``weight_ih_l0`` (H, I), ``weight_hh_l0`` (H, H), ``bias_ih_l0``,
    ``bias_hh_l0`` (H,). ``forward(x, h0, lengths=None)`` -> ``y, h_n``; with ``lengths`` (B,) sequence b
    stops after lengths[b] steps: y is zero past its end and h_n is its state at its last step (torch's packed
    sequences). ``backward(dy, dh_n=None)`` -> ``dx, dh0``, adding into ``grads``. Inside
    ``nblstm.no_grad()`` no tape is kept.

    Examples
    --------
    >>> import numpy as np, nblstm
    >>> rnn = nblstm.RNN(3, 4, seed=0)
    >>> y, h_n = rnn(np.ones((6, 2, 3), np.float32), lengths=[6, 2])
    >>> y.shape, h_n.shape, bool((y[2:, 1] == 0).all())
    ((6, 2, 4), (1, 2, 4), True)
    >>> dx, dh0 = rnn.backward(np.ones_like(y))
    >>> dx.shape, dh0.shape
    ((6, 2, 3), (1, 2, 4))
    """

    single_state = True             # the state is one array h, not a pair (nblstm.gradcheck reads this)

    def __init__(self, input_size, hidden_size, *, nonlinearity="tanh", bias=True, batch_first=False,
                 dtype=np.float32, seed=None, device="cpu"):
        self.input_size = _checks.positive_int(input_size, "input_size")
        self.hidden_size = _checks.positive_int(hidden_size, "hidden_size")
        self.nonlinearity = _checks.choice(nonlinearity, "nonlinearity", ACTIVATIONS)
        self._act = ACTIVATIONS.index(nonlinearity)
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.dtype = _checks.as_float_dtype(dtype)
        I, H = self.input_size, self.hidden_size
        shapes = {"weight_ih_l0": (H, I), "weight_hh_l0": (H, H)}
        if self.bias:
            shapes.update({"bias_ih_l0": (H,), "bias_hh_l0": (H,)})
        self._init_params(shapes, np.random.default_rng(seed), 1.0 / math.sqrt(H))
        if not isinstance(device, str) or device not in backends.TARGETS:
            raise ValueError(f"device: expected one of {', '.join(map(repr, backends.TARGETS))}, got {device!r}")
        self._tape = None
        self.to(device)

    def _bias(self):
        if not self.bias:
            return backends.zeros(self.device, (self.hidden_size,), self.dtype)
        b = backends.copy(self._params["bias_ih_l0"])
        backends.add_into(b, self._params["bias_hh_l0"])
        return b

    def forward(self, x, h0=None, lengths=None):
        """x (T, B, I) [batch_first: (B, T, I)], h0 (1, B, H) or None for zeros, lengths (B,) or None
        -> y (T, B, H) [batch_first: (B, T, H)], h_n (1, B, H)."""
        like = x
        x = self._seq(x, "x", None, None, self.input_size)
        T, B, _ = x.shape
        H, p = self.hidden_size, self._params
        h0 = backends.zeros(self.device, (B, H), self.dtype) if h0 is None else \
            self._as(h0, "h0", (1, B, H)).reshape(B, H)
        lens = backends.to_device(self.device, _checks.lengths(lengths, B, T))
        self._tape = None               # arguments checked: the old tape goes before the new one is built (peak memory)
        y, h_n = self._empty(T, B, H), self._empty(B, H)
        self._kernels.rnn_forward(y, h_n, self._empty(B, H), x, h0, p["weight_ih_l0"], p["weight_hh_l0"],
                                  self._bias(), lens, self._act)
        keep = is_grad_enabled()
        self._tape = (x, h0, y, lens) if keep else None
        return self._out(backends.copy(y) if keep else y, like), self._host(h_n, like).reshape(1, B, H)

    __call__ = forward

    def backward(self, dy, dh_n=None):
        """dL/dy like y, dL/dh_n (1, B, H) or None for zeros -> dL/dx like x, dL/dh0 (1, B, H).
        Adds the parameter gradients into ``grads``."""
        x, h0, y, lens = self._check_tape()
        T, B, _ = x.shape
        H, p, g = self.hidden_size, self._params, self.grads
        like = dy
        dy = self._seq(dy, "dy", T, B, H)
        dh_n = backends.zeros(self.device, (B, H), self.dtype) if dh_n is None else \
            self._as(dh_n, "dh_n", (1, B, H)).reshape(B, H)
        dx, dh0, db = self._empty(*x.shape), self._empty(B, H), backends.zeros(self.device, (H,), self.dtype)
        self._kernels.rnn_backward(dx, dh0, g["weight_ih_l0"], g["weight_hh_l0"], db, self._empty(T, B, H),
                                   self._empty(B, H), dy, dh_n, x, h0, p["weight_ih_l0"], p["weight_hh_l0"], y,
                                   lens, self._act)
        if self.bias:
            backends.add_into(g["bias_ih_l0"], db)
            backends.add_into(g["bias_hh_l0"], db)
        return self._out(dx, like), self._host(dh0, like).reshape(1, B, H)

    def _repr_args(self):
        return self._sizes_repr((("nonlinearity", "tanh"), ("bias", True), ("batch_first", False)))
