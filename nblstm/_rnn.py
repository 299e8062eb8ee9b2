"""RNN: the vanilla (Elman) recurrent layer, the baseline the LSTM's gates are measured against."""
import math

import numpy as np

from . import _checks, backends
from ._module import Module, _SequenceIO
from ._stack import _Stacked
from .kernels._math import ACTIVATIONS


class RNN(_SequenceIO, _Stacked, Module):
    r"""A stack of Elman RNN layers over a sequence, one or both directions, shaped like ``torch.nn.RNN``:

    .. math::

        h_t = \mathrm{act}(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh})

    with act = tanh (default) or relu. Its gradient through time is a product of W_hh^T diag(act') factors,
    which vanishes (or explodes) with the time lag: the problem the LSTM's cell state was built to avoid.

    Parameters
    ----------
    input_size, hidden_size : int
        I and H.
    num_layers : int, default 1
        L, layers stacked; layer k > 0 reads the outputs of layer k - 1 (input size D*H).
    nonlinearity : {"tanh", "relu"}
    bias : bool, default True
    batch_first : bool, default False
        x and y are (B, T, .) instead of the time-major (T, B, .). The state stays (L*D, B, H).
    dropout : float in [0, 1), default 0.0
        Inverted dropout on the inputs of layers 1..L-1 in training, as nblstm.LSTM's (and torch's).
    bidirectional : bool, default False
        Add a reverse direction (suffix ``_reverse``) to every layer: D = 2, y (T, B, 2H), forward first.
    dtype : np.float32 (default) or np.float64
    seed : int or None
        Seed of torch's initialization: every parameter from U(-1/sqrt(H), 1/sqrt(H)).
    device : {"cpu", "cuda"}

    Notes
    -----
    Names and shapes as torch: ``weight_ih_l{k}`` (H, I or D*H), ``weight_hh_l{k}`` (H, H), ``bias_ih_l{k}``,
    ``bias_hh_l{k}`` (H,), with ``_reverse`` for the reverse direction, so a ``torch.nn.RNN``'s state_dict loads
    unchanged. ``forward(x, h0, lengths=None)`` -> ``y, h_n``, h0 and h_n (L*D, B, H); with ``lengths`` (B,)
    sequence b stops after lengths[b] steps: y is zero past its end, h_n is its state at its last step and the
    reverse direction starts at its own end (torch's packed sequences). ``backward(dy, dh_n=None)`` -> ``dx,
    dh0``, adding into ``grads``. Inside ``nblstm.no_grad()`` no tape is kept. Stacking, directions and dropout
    (training mode, ``dropout_masks``) work as in nblstm.LSTM: one kernel call per layer and direction.

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
    >>> deep = nblstm.RNN(3, 4, num_layers=2, bidirectional=True, seed=0)
    >>> y, h_n = deep(np.ones((6, 2, 3), np.float32))
    >>> y.shape, h_n.shape, deep.state_dict()["weight_ih_l1_reverse"].shape
    ((6, 2, 8), (4, 2, 4), (4, 8))
    """

    single_state = True             # the state is one array h, not a pair (nblstm.gradcheck reads this)

    def __init__(self, input_size, hidden_size, *, num_layers=1, nonlinearity="tanh", bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, dtype=np.float32, seed=None, device="cpu"):
        self._init_stack(num_layers, dropout, bidirectional, batch_first)
        self.input_size = _checks.positive_int(input_size, "input_size")
        self.hidden_size = _checks.positive_int(hidden_size, "hidden_size")
        self.nonlinearity = _checks.choice(nonlinearity, "nonlinearity", ACTIVATIONS)
        self._act = ACTIVATIONS.index(nonlinearity)
        self.bias = bool(bias)
        self.dtype = _checks.as_float_dtype(dtype)
        H = self.hidden_size
        shapes = {}
        for s, n_in in self._layer_inputs():       # torch's order: l0, l0_reverse, l1, ...
            shapes.update({f"weight_ih{s}": (H, n_in), f"weight_hh{s}": (H, H)})
            if self.bias:
                shapes.update({f"bias_ih{s}": (H,), f"bias_hh{s}": (H,)})
        self._init_params(shapes, np.random.default_rng(seed), 1.0 / math.sqrt(H))
        self._tape = None
        self.to(_checks.choice(device, "device", tuple(backends.TARGETS)))

    _P = property(lambda self: self.hidden_size)                    # the size of a direction's output
    _state_sizes = property(lambda self: (self.hidden_size,))       # h (., B, H)

    def _layer_forward(self, x, s, state0, state_n, keep, lens):
        """Layer-direction `s` over x (T, B, I) from state0 = (h0 (B, H),): one kernel call; writes state_n = (h_n,)
        -> y (T, B, H) and its tape (None unless keep)."""
        T, B, _ = x.shape
        p, y = self._params, self._take(T, B, self.hidden_size)
        self._kernels.rnn_forward(y, state_n[0], self._scratch("hw", B, self.hidden_size), x, state0[0],
                                  p[f"weight_ih{s}"], p[f"weight_hh{s}"], self._bias(s), lens, self._act)
        return y, ((x, state0[0], y, lens) if keep else None)

    def _tape_buffers(self, tape):
        return tape[2:3]                    # y

    def _layer_backward(self, tape, dy, s, dstate_n, dstate0):
        """BPTT through layer-direction `s`: dy (T, B, H), dstate_n = (dh_n (B, H),) in; writes dstate0 = (dh0,)
        -> dx (T, B, I); adds into grads."""
        x, h0, y, lens = tape
        T, B, _ = x.shape
        H, p, g = self.hidden_size, self._params, self.grads
        dx, db = self._empty(*x.shape), backends.zeros(self.device, (H,), self.dtype)
        self._kernels.rnn_backward(dx, dstate0[0], g[f"weight_ih{s}"], g[f"weight_hh{s}"], db,
                                   self._scratch("dA", T, B, H), self._scratch("dhw", B, H), dy, dstate_n[0], x, h0,
                                   p[f"weight_ih{s}"], p[f"weight_hh{s}"], y, lens, self._act)
        if self.bias:
            backends.add_into(g[f"bias_ih{s}"], db)
            backends.add_into(g[f"bias_hh{s}"], db)
        return dx

    def _h(self, h, name, B):
        """(h,): h (L*D, B, H) checked, or zeros when None."""
        shape = (self.num_layers * self._D, B, self.hidden_size)
        return (backends.zeros(self.device, shape, self.dtype) if h is None else self._as(h, name, shape),)

    def forward(self, x, h0=None, lengths=None, *, dropout_masks=None):
        """x (T, B, I) [batch_first: (B, T, I)], h0 (L*D, B, H) or None for zeros, lengths (B,) or None
        -> y (T, B, D*H) [batch_first: (B, T, D*H)], h_n (L*D, B, H); state index k*D + d is layer k, direction
        d (1: reverse). ``dropout_masks`` as nblstm.LSTM's."""
        like = x
        x = self._seq(x, "x", None, None, self.input_size)
        y, (h_n,) = self._stack_forward(x, self._h(h0, "h0", x.shape[1]), lengths, dropout_masks)
        return self._out(y, like), self._host(h_n, like)

    __call__ = forward

    def backward(self, dy, dh_n=None):
        """dL/dy like y, dL/dh_n (L*D, B, H) or None for zeros -> dL/dx like x, dL/dh0 (L*D, B, H).
        Adds the parameter gradients into ``grads``."""
        T, B = self._check_tape()[0].shape[:2]
        like = dy
        dy = self._seq(dy, "dy", T, B, self._D * self.hidden_size)
        dx, (dh0,) = self._stack_backward(dy, self._h(dh_n, "dh_n", B))
        return self._out(dx, like), self._host(dh0, like)

    def _repr_args(self):
        return self._sizes_repr((("num_layers", 1), ("nonlinearity", "tanh"), ("bias", True), ("batch_first", False),
                                 ("dropout", 0.0), ("bidirectional", False)))
