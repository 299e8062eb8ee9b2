"""The oracle: a plain NumPy LSTM, forward and backward, written to be read.

No numba here. Every fast kernel in :mod:`nblstm.kernels` is tested against these functions.

Shapes: T time steps, B batch, I input size, H hidden size; time-major arrays.
Weights as ``torch.nn.LSTM``: ``w_ih`` (4H, I), ``w_hh`` (4H, H), ``b_ih``/``b_hh`` (4H,),
the four gate blocks stacked in the order i, f, g, o.

One step of the cell (sigma is the logistic function, * is elementwise)::

    i_t = sigma(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)     input gate
    f_t = sigma(W_if x_t + b_if + W_hf h_{t-1} + b_hf)     forget gate
    g_t = tanh (W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)     cell candidate
    o_t = sigma(W_io x_t + b_io + W_ho h_{t-1} + b_ho)     output gate
    c_t = f_t * c_{t-1} + i_t * g_t                         cell state (the long-term memory)
    h_t = o_t * act(c_t)                                    hidden state; act is tanh (or relu)
"""
import numpy as np

__all__ = ["sigmoid", "cell_forward", "cell_backward", "lstm_forward", "lstm_backward"]


def sigmoid(x):
    """Logistic function; exp only of -|x|, so 1e30 inputs raise no overflow warning."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1, e) / (1 + e)


def _act(c, activation):
    return np.tanh(c) if activation == "tanh" else np.maximum(c, 0)


def _act_grad(tc, activation):
    """act'(c) written in terms of act(c)."""
    return 1 - tc**2 if activation == "tanh" else (tc > 0).astype(tc.dtype)


def cell_forward(x, h, c, w_ih, w_hh, b_ih, b_hh, activation="tanh"):
    """One step. x (B, I), h and c (B, H) -> h_next, c_next (B, H) and the cache backward needs."""
    H = h.shape[1]
    a = x @ w_ih.T + b_ih + h @ w_hh.T + b_hh        # (B, 4H) pre-activations
    i = sigmoid(a[:, 0 * H:1 * H])
    f = sigmoid(a[:, 1 * H:2 * H])
    g = np.tanh(a[:, 2 * H:3 * H])
    o = sigmoid(a[:, 3 * H:4 * H])
    c_next = f * c + i * g
    tc = _act(c_next, activation)
    h_next = o * tc
    cache = (x, h, c, w_ih, w_hh, i, f, g, o, tc, activation)
    return h_next, c_next, cache


def cell_backward(dh_next, dc_next, cache):
    """Backward of one step: dL/dh_next, dL/dc_next (B, H) -> dx, dh, dc and the parameter gradients.

    Returns a dict with keys x, h, c, w_ih, w_hh, b_ih, b_hh, and a: the gradient of the (B, 4H)
    gate pre-activations.
    """
    x, h, c, w_ih, w_hh, i, f, g, o, tc, activation = cache
    do = dh_next * tc
    dc_t = dc_next + dh_next * o * _act_grad(tc, activation)
    di = dc_t * g
    df = dc_t * c
    dg = dc_t * i
    da = np.concatenate([di * i * (1 - i),            # through the sigmoids and tanh
                         df * f * (1 - f),
                         dg * (1 - g**2),
                         do * o * (1 - o)], axis=1)   # (B, 4H)
    db = da.sum(axis=0)
    return {"a": da, "x": da @ w_ih, "h": da @ w_hh, "c": dc_t * f,
            "w_ih": da.T @ x, "w_hh": da.T @ h, "b_ih": db, "b_hh": db.copy()}


def lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, activation="tanh"):
    """One layer over a sequence. x (T, B, I), h0 and c0 (B, H) -> y (T, B, H), h_T, c_T, caches."""
    h, c, ys, caches = h0, c0, [], []
    for t in range(x.shape[0]):
        h, c, cache = cell_forward(x[t], h, c, w_ih, w_hh, b_ih, b_hh, activation)
        ys.append(h)
        caches.append(cache)
    return np.stack(ys), h, c, caches


def lstm_backward(dy, dh_n, dc_n, caches):
    """Backpropagation through time. dy (T, B, H), dh_n and dc_n (B, H) -> dict as cell_backward.

    ``grads["x"]`` is (T, B, I); ``h`` and ``c`` are the gradients of h0 and c0.
    """
    dh, dc = dh_n, dc_n
    dxs = [None] * len(caches)
    grads = {}
    for t in reversed(range(len(caches))):
        step = cell_backward(dy[t] + dh, dc, caches[t])
        dh, dc, dxs[t] = step["h"], step["c"], step["x"]
        for k in ("w_ih", "w_hh", "b_ih", "b_hh"):
            grads[k] = grads.get(k, 0) + step[k]
    grads.update(x=np.stack(dxs), h=dh, c=dc)
    return grads
