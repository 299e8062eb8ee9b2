"""The attention oracle: plain NumPy score, masked softmax and context steps, forward and backward, and an
attention decoder built from them, written to be read. No numba here; the kernels of
:mod:`nblstm.kernels.attention_cpu` and ``attention_cuda`` are tested against these functions.

Shapes: S source (encoder) steps, B batch, D memory features (the encoder's outputs), N key and query features,
T decoder steps, E decoder input features, H decoder hidden size, A additive attention size. The memory and
the keys are time-major like every sequence in nblstm, (S, B, .); scores and attention weights of one decoder step
are (B, S), stacked over the steps as (T, B, S). ``lengths`` (B,) integers: source b has lengths[b] valid steps;
positions s >= lengths[b] are padding and get zero attention (and so zero gradient).

One decoder step (Luong et al. 2015, "global attention" with input feeding; the query is the new h_t)::

    h_t, c_t = LSTMCell([x_t ; o_{t-1}], (h_{t-1}, c_{t-1}))     o_0 = 0: the previous attentional output, fed back
    e_ts = score(h_t, m_s)                                       s < lengths[b]
        dot:      h_t . m_s                                      (D = H)
        general:  h_t . (W_a m_s)                                W_a (H, D)
        additive: v . tanh(W_q h_t + W_k m_s)                    Bahdanau et al. 2015's score; W_q (A, H), W_k (A, D)
    a_t = softmax(e_t) over the valid positions, 0 on padding
    ctx_t = sum_s a_ts m_s                                       (B, D)
    o_t = tanh(W_cc ctx_t + W_ch h_t + b_c)                      Luong's W_c [ctx_t ; h_t], split in two
"""
import numpy as np

from . import reference

__all__ = ["dot_score", "dot_score_backward", "additive_score", "additive_score_backward", "masked_softmax",
           "masked_softmax_backward", "context", "context_backward", "SCORES", "decoder_forward",
           "decoder_backward"]

#: the score functions, by the name AttentionDecoder takes
SCORES = ("dot", "general", "additive")


def _valid(lengths, S):
    """(B, S) bools: position s of source b is valid (s < lengths[b])."""
    return np.arange(S)[None, :] < np.asarray(lengths)[:, None]


def dot_score(keys, q, lengths):
    """keys (S, B, N), q (B, N) -> e (B, S), e[b, s] = q[b] . keys[s, b] (0 on padding)."""
    e = np.einsum("sbn,bn->bs", keys, q)
    return np.where(_valid(lengths, keys.shape[0]), e, 0).astype(keys.dtype)


def dot_score_backward(de, keys, q):
    """dL/de (B, S) -> dL/dq (B, N), dL/dkeys (S, B, N)."""
    return np.einsum("bs,sbn->bn", de, keys), np.einsum("bs,bn->sbn", de, q)


def additive_score(keys, q, v, lengths):
    """keys (S, B, A) = m W_k^T, q (B, A) = h W_q^T, v (A,) -> e (B, S) = v . tanh(keys + q) (0 on padding),
    and P = tanh(keys + q) (S, B, A), what backward needs."""
    P = np.tanh(keys + q[None])
    e = np.einsum("sba,a->bs", P, v)
    return np.where(_valid(lengths, keys.shape[0]), e, 0).astype(keys.dtype), P


def additive_score_backward(de, P, v):
    """dL/de (B, S), P, v -> dL/dq (B, A), dL/dkeys (S, B, A), dL/dv (A,)."""
    dP = de.T[:, :, None] * v * (1 - P * P)                 # (S, B, A): through v . P and P = tanh(.)
    return dP.sum(axis=0), dP, np.einsum("bs,sba->a", de, P)


def masked_softmax(e, lengths):
    """e (B, S) -> a (B, S): softmax over the valid positions s < lengths[b], exactly 0 on padding (a row of a
    length-0 source is all 0). The maximum over the valid positions is subtracted first."""
    valid = _valid(lengths, e.shape[1])
    z = np.where(valid, e, -np.inf)
    z = z - np.where(valid.any(axis=1, keepdims=True), z.max(axis=1, keepdims=True), 0)
    p = np.where(valid, np.exp(z), 0)
    total = p.sum(axis=1, keepdims=True)
    return (p / np.where(total > 0, total, 1)).astype(e.dtype)


def masked_softmax_backward(da, a):
    """dL/da (B, S), a -> dL/de = a * (da - sum_s a da); 0 on padding, where a is 0."""
    return a * (da - (a * da).sum(axis=1, keepdims=True))


def context(a, values):
    """a (B, S), values (S, B, D) -> ctx (B, D) = sum_s a[b, s] values[s, b]."""
    return np.einsum("bs,sbd->bd", a, values)


def context_backward(dctx, a, values):
    """dL/dctx (B, D) -> dL/da (B, S), dL/dvalues (S, B, D)."""
    return np.einsum("bd,sbd->bs", dctx, values), np.einsum("bs,bd->sbd", a, dctx)


def _keys(memory, p, score):
    """The keys of every source position, computed once per sequence: (S, B, N)."""
    if score == "dot":
        return memory
    return memory @ (p["attn.weight_a"] if score == "general" else p["attn.weight_k"]).T


def decoder_forward(x, memory, lengths, h0, c0, o0, p, score):
    """The attention decoder over T steps. x (T, B, E), memory (S, B, D), lengths (B,), h0, c0, o0 (B, H); p a dict
    of the parameters named as AttentionDecoder.state_dict(): cell.weight_ih (4H, E+H), cell.weight_hh,
    cell.bias_ih, cell.bias_hh, attn.weight_cc (H, D), attn.weight_ch (H, H), attn.bias_c (H,), and
    attn.weight_a (general) or attn.weight_q, attn.weight_k, attn.weight_v (additive)
    -> y (T, B, H) the attentional outputs o_t, attn (T, B, S), (h_n, c_n, o_n), and the caches for backward."""
    keys = _keys(memory, p, score)
    h, c, o = h0, c0, o0
    ys, attn, caches = [], [], []
    for t in range(len(x)):
        u = np.concatenate([x[t], o], axis=1)                # input feeding
        h, c, cell_cache = reference.cell_forward(u, h, c, p["cell.weight_ih"], p["cell.weight_hh"],
                                                  p["cell.bias_ih"], p["cell.bias_hh"])
        P = None
        if score == "additive":
            e, P = additive_score(keys, h @ p["attn.weight_q"].T, p["attn.weight_v"], lengths)
        else:
            e = dot_score(keys, h, lengths)
        a = masked_softmax(e, lengths)
        ctx = context(a, memory)
        o = np.tanh(ctx @ p["attn.weight_cc"].T + h @ p["attn.weight_ch"].T + p["attn.bias_c"])
        ys.append(o)
        attn.append(a)
        caches.append((cell_cache, h, P, a, ctx, o))
    return np.stack(ys), np.stack(attn), (h, c, o), (memory, keys, caches, score)


def decoder_backward(dy, dattn, dh_n, dc_n, do_n, p, cache):
    """Backward of decoder_forward: dL/dy (T, B, H), dL/dattn (T, B, S) or None, dL/d(h_n, c_n, o_n)
    -> dx (T, B, E), dmemory (S, B, D), (dh0, dc0, do0), and a dict of parameter gradients keyed as p."""
    memory, keys, caches, score = cache
    E = caches[0][0][0].shape[1] - p["attn.weight_ch"].shape[0]
    g = {k: np.zeros_like(v) for k, v in p.items()}
    dmemory, dkeys = np.zeros_like(memory), np.zeros_like(keys)
    dh, dc, do = dh_n, dc_n, do_n
    dxs = []
    for t in reversed(range(len(caches))):
        cell_cache, h, P, a, ctx, o = caches[t]
        dpre = (dy[t] + do) * (1 - o * o)                    # through o_t = tanh(.)
        g["attn.weight_cc"] += dpre.T @ ctx
        g["attn.weight_ch"] += dpre.T @ h
        g["attn.bias_c"] += dpre.sum(axis=0)
        dctx, dh = dpre @ p["attn.weight_cc"], dh + dpre @ p["attn.weight_ch"]
        da, dm = context_backward(dctx, a, memory)
        dmemory += dm
        de = masked_softmax_backward(da + (0 if dattn is None else dattn[t]), a)
        if score == "additive":
            dq, dk, dv = additive_score_backward(de, P, p["attn.weight_v"])
            g["attn.weight_v"] += dv
            g["attn.weight_q"] += dq.T @ h
            dh = dh + dq @ p["attn.weight_q"]
        else:
            dq, dk = dot_score_backward(de, keys, h)
            dh = dh + dq
        dkeys += dk
        cg = reference.cell_backward(dh, dc, cell_cache)
        for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            g[f"cell.{k}"] += cg[k.replace("weight", "w").replace("bias", "b")]
        dxs.append(cg["x"][:, :E])
        do, dh, dc = cg["x"][:, E:], cg["h"], cg["c"]
    if score == "dot":
        dmemory += dkeys
    else:
        w = "attn.weight_a" if score == "general" else "attn.weight_k"
        dmemory += dkeys @ p[w]
        g[w] += np.einsum("sbn,sbd->nd", dkeys, memory)
    return np.stack(dxs[::-1]), dmemory, (dh, dc, do), g
