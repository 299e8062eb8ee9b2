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

__all__ = ["sigmoid", "cell_forward", "cell_backward", "lstm_forward", "lstm_backward", "rnn_forward",
           "rnn_backward", "reverse_padded", "stacked_lstm_forward", "stacked_lstm_backward"]


def sigmoid(x):
    """Logistic function; exp only of -|x|, so 1e30 inputs raise no overflow warning."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1, e) / (1 + e)


def _act(c, activation):
    return np.tanh(c) if activation == "tanh" else np.maximum(c, 0)


def _act_grad(tc, activation):
    """act'(c) written in terms of act(c)."""
    return 1 - tc**2 if activation == "tanh" else (tc > 0).astype(tc.dtype)


def cell_forward(x, h, c, w_ih, w_hh, b_ih, b_hh, activation="tanh", peephole=None, w_hr=None):
    """One step. x (B, I), h (B, P) and c (B, H) -> h_next (B, P), c_next (B, H) and the cache backward needs.

    P = H unless ``w_hr`` (P, H) projects the hidden state (LSTMP, Sak et al. 2014): h_t = W_hr (o_t * act(c_t)).
    ``peephole`` = (w_ci, w_cf, w_co), each (H,): the gates also see the cell (Gers & Schmidhuber 2000),
    i_t and f_t through w_ci * c_{t-1} and w_cf * c_{t-1}, o_t through w_co * c_t.
    """
    H = c.shape[1]
    a = x @ w_ih.T + b_ih + h @ w_hh.T + b_hh        # (B, 4H) pre-activations
    ai, af, ag, ao = (a[:, k * H:(k + 1) * H] for k in range(4))
    if peephole is not None:
        ai, af = ai + peephole[0] * c, af + peephole[1] * c
    i = sigmoid(ai)
    f = sigmoid(af)
    g = np.tanh(ag)
    c_next = f * c + i * g
    if peephole is not None:
        ao = ao + peephole[2] * c_next
    o = sigmoid(ao)
    tc = _act(c_next, activation)
    m = o * tc
    h_next = m if w_hr is None else m @ w_hr.T
    cache = (x, h, c, w_ih, w_hh, i, f, g, o, tc, activation, peephole, w_hr, c_next, m)
    return h_next, c_next, cache


def cell_backward(dh_next, dc_next, cache):
    """Backward of one step: dL/dh_next, dL/dc_next -> dx, dh, dc and the parameter gradients.

    Returns a dict with keys x, h, c, w_ih, w_hh, b_ih, b_hh (and w_ci, w_cf, w_co with peepholes, w_hr
    with a projection), and a: the gradient of the (B, 4H) gate pre-activations.
    """
    x, h, c, w_ih, w_hh, i, f, g, o, tc, activation, peephole, w_hr, c_next, m = cache
    grads = {}
    dm = dh_next
    if w_hr is not None:
        dm = dh_next @ w_hr
        grads["w_hr"] = dh_next.T @ m
    dao = dm * tc * o * (1 - o)
    dc_t = dc_next + dm * o * _act_grad(tc, activation)
    if peephole is not None:
        dc_t = dc_t + peephole[2] * dao
    dai = dc_t * g * i * (1 - i)                       # through the sigmoids and tanh
    daf = dc_t * c * f * (1 - f)
    dag = dc_t * i * (1 - g**2)
    da = np.concatenate([dai, daf, dag, dao], axis=1)  # (B, 4H)
    dc = dc_t * f
    if peephole is not None:
        dc = dc + peephole[0] * dai + peephole[1] * daf
        grads.update(w_ci=(dai * c).sum(0), w_cf=(daf * c).sum(0), w_co=(dao * c_next).sum(0))
    db = da.sum(axis=0)
    grads.update({"a": da, "x": da @ w_ih, "h": da @ w_hh, "c": dc,
                  "w_ih": da.T @ x, "w_hh": da.T @ h, "b_ih": db, "b_hh": db.copy()})
    return grads


def _valid(t, lengths, x):
    """(B, 1) mask, 1 for the sequences still running at step t (all of them without lengths), in x's dtype."""
    B = x.shape[1]
    return np.ones((B, 1), x.dtype) if lengths is None else (t < np.asarray(lengths))[:, None].astype(x.dtype)


def lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, activation="tanh", peephole=None, w_hr=None, lengths=None):
    """One layer over a sequence. x (T, B, I), h0 (B, P), c0 (B, H) -> y (T, B, P), h_T, c_T, caches.

    With ``lengths`` (B,), sequence b stops after lengths[b] steps: from then on its state is frozen and
    its y is zero, so h_T, c_T are the states at each sequence's last valid step.
    """
    h, c, ys, caches = h0, c0, [], []
    for t in range(x.shape[0]):
        h_new, c_new, cache = cell_forward(x[t], h, c, w_ih, w_hh, b_ih, b_hh, activation, peephole, w_hr)
        v = _valid(t, lengths, x)
        h, c = v * h_new + (1 - v) * h, v * c_new + (1 - v) * c
        ys.append(v * h_new)
        caches.append((cache, v))
    return np.stack(ys), h, c, caches


def lstm_backward(dy, dh_n, dc_n, caches):
    """Backpropagation through time. dy (T, B, P), dh_n, dc_n -> dict as cell_backward.

    ``grads["x"]`` is (T, B, I); ``h`` and ``c`` are the gradients of h0 and c0.
    """
    dh, dc = dh_n, dc_n
    dxs = [None] * len(caches)
    grads = {}
    for t in reversed(range(len(caches))):
        cache, v = caches[t]
        step = cell_backward(v * (dy[t] + dh), v * dc, cache)
        dh, dc, dxs[t] = step["h"] + (1 - v) * dh, step["c"] + (1 - v) * dc, step["x"]
        for k, g in step.items():
            if k not in ("a", "x", "h", "c"):
                grads[k] = grads.get(k, 0) + g
    grads.update(x=np.stack(dxs), h=dh, c=dc)
    return grads


def rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity="tanh", lengths=None):
    """Vanilla (Elman) RNN, torch.nn.RNN: h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh) (or relu).

    x (T, B, I), h0 (B, H), weights (H, I), (H, H), (H,) -> y (T, B, H), h_T, caches. ``lengths`` as lstm_forward.
    """
    h, ys, caches = h0, [], []
    for t in range(x.shape[0]):
        a = x[t] @ w_ih.T + b_ih + h @ w_hh.T + b_hh
        h_new = np.tanh(a) if nonlinearity == "tanh" else np.maximum(a, 0)
        v = _valid(t, lengths, x)
        caches.append((x[t], h, h_new, v))
        h = v * h_new + (1 - v) * h
        ys.append(v * h_new)
    return np.stack(ys), h, (caches, w_ih, w_hh, nonlinearity)


def rnn_backward(dy, dh_n, caches):
    """BPTT of rnn_forward: dy (T, B, H), dh_n (B, H) -> dict with x, h, w_ih, w_hh, b_ih, b_hh."""
    caches, w_ih, w_hh, nonlinearity = caches
    dh, dxs, grads = dh_n, [None] * len(caches), {}
    for t in reversed(range(len(caches))):
        x, h, h_new, v = caches[t]
        dout = v * (dy[t] + dh)
        da = dout * (1 - h_new**2 if nonlinearity == "tanh" else (h_new > 0).astype(h_new.dtype))
        for k, g in (("w_ih", da.T @ x), ("w_hh", da.T @ h), ("b_ih", da.sum(0)), ("b_hh", da.sum(0))):
            grads[k] = grads.get(k, 0) + g
        dxs[t] = da @ w_ih
        dh = da @ w_hh + (1 - v) * dh
    grads.update(x=np.stack(dxs), h=dh)
    return grads


def reverse_padded(x, lengths=None):
    """Reverse each sequence of x (T, B, ...) within its own length; steps past a sequence's end stay put."""
    if lengths is None:
        return x[::-1].copy()
    out = x.copy()
    for b, n in enumerate(lengths):
        out[:n, b] = x[:n, b][::-1]
    return out


def stacked_lstm_forward(x, h0, c0, params, num_layers=1, bidirectional=False, activation="tanh", lengths=None,
                         dropout_masks=None):
    """torch.nn.LSTM's stacked and bidirectional composition of lstm_forward.

    params: torch's state_dict names (``weight_ih_l{k}[_reverse]``, ``weight_hh_l{k}``, ``bias_ih_l{k}``,
    ``bias_hh_l{k}``, ``weight_hr_l{k}``, and for peepholes ``weight_ci_l{k}``, ``weight_cf_l{k}``,
    ``weight_co_l{k}``). h0 (L*D, B, P), c0 (L*D, B, H), D = 2 if bidirectional else 1, index l*D + d.
    The reverse direction reads each sequence backwards from its own end. Layer l > 0 reads the
    concatenated outputs of layer l - 1 (forward, then reverse) times ``dropout_masks[l - 1]`` (T, B, D*P).
    -> y (T, B, D*P), h_n, c_n (L*D, B, .), caches.
    """
    D = 2 if bidirectional else 1
    inp, hs, cs, caches = x, [], [], []
    for layer in range(num_layers):
        if layer > 0 and dropout_masks is not None:
            inp = inp * dropout_masks[layer - 1]
        outs = []
        for d in range(D):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            peep = tuple(params[f"weight_c{k}{sfx}"] for k in "ifo") if f"weight_ci{sfx}" in params else None
            zero = np.zeros(params[f"weight_ih{sfx}"].shape[0], x.dtype)
            xin = reverse_padded(inp, lengths) if d else inp
            y, h, c, cache = lstm_forward(xin, h0[layer * D + d], c0[layer * D + d], params[f"weight_ih{sfx}"],
                                          params[f"weight_hh{sfx}"], params.get(f"bias_ih{sfx}", zero),
                                          params.get(f"bias_hh{sfx}", zero), activation, peep,
                                          params.get(f"weight_hr{sfx}"), lengths)
            outs.append(reverse_padded(y, lengths) if d else y)
            hs.append(h)
            cs.append(c)
            caches.append((sfx, cache, peep is not None, f"bias_ih{sfx}" in params))
        inp = np.concatenate(outs, axis=2)
    return inp, np.stack(hs), np.stack(cs), (caches, num_layers, D, lengths, dropout_masks)


def stacked_lstm_backward(dy, dh_n, dc_n, caches):
    """Backward of stacked_lstm_forward -> dict: "x", "h0", "c0" and a gradient for every parameter name."""
    caches, num_layers, D, lengths, dropout_masks = caches
    grads, dh0, dc0 = {}, [None] * (num_layers * D), [None] * (num_layers * D)
    dout = dy
    for layer in reversed(range(num_layers)):
        P = dout.shape[2] // D
        dinp = 0
        for d in range(D):
            sfx, cache, peep, bias = caches[layer * D + d]
            dyd = dout[:, :, d * P:(d + 1) * P]
            g = lstm_backward(reverse_padded(dyd, lengths) if d else dyd, dh_n[layer * D + d],
                              dc_n[layer * D + d], cache)
            dinp = dinp + (reverse_padded(g["x"], lengths) if d else g["x"])
            dh0[layer * D + d], dc0[layer * D + d] = g["h"], g["c"]
            names = {"w_ih": "weight_ih", "w_hh": "weight_hh", "w_hr": "weight_hr", "w_ci": "weight_ci",
                     "w_cf": "weight_cf", "w_co": "weight_co"}
            if bias:
                names.update(b_ih="bias_ih", b_hh="bias_hh")
            grads.update({names[k] + sfx: v for k, v in g.items() if k in names})
        if layer > 0 and dropout_masks is not None:
            dinp = dinp * dropout_masks[layer - 1]
        dout = dinp
    grads.update(x=dout, h0=np.stack(dh0), c0=np.stack(dc0))
    return grads
