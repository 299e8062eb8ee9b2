"""AttentionDecoder (an LSTM decoder with Luong/Bahdanau attention and input feeding) and Seq2Seq (bidirectional
LSTM encoder + attention decoder, teacher forcing, greedy and beam-search decoding).

The math of one step is in :mod:`nblstm.reference_attention` (the oracle); the score, masked-softmax, context and
output kernels are :mod:`nblstm.kernels.attention_cpu` (@njit) and ``attention_cuda`` (@cuda.jit twins).
"""
import importlib
import math

import numpy as np

from . import _checks, backends, losses
from ._grad import is_grad_enabled, no_grad
from ._layers import Embedding, Linear, SequenceModel
from ._lstm import LSTM, LSTMCell
from ._module import Module
from .reference_attention import SCORES

__all__ = ["AttentionDecoder", "Seq2Seq"]

_TARGETS = {"cpu": "nblstm.kernels.attention_cpu", "cuda": "nblstm.kernels.attention_cuda"}


def attention_kernels(device):
    """The attention kernel module of `device`, imported on first use (attention_cuda only for "cuda", after
    nblstm.backends.kernels has checked that the cuda backend is there)."""
    backends.kernels(device)
    return importlib.import_module(_TARGETS[device])


def _seed_sequence(seed):
    """A SeedSequence from an int, None or a SeedSequence: the parts of a composite get independent streams."""
    return seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)


def _out(a, like):
    """A result where the caller wants it: on the device when `like` is a device array, else NumPy."""
    return a if backends.is_device_array(like) else backends.to_host(a)


class _Composite:
    """Parameter bookkeeping of an object made of parts (``_parts()`` -> [(name, part)]): SequenceModel's methods,
    so names are ``part.name`` and ``load_state_dict`` checks every key and shape before it changes anything."""

    parameters = SequenceModel.parameters
    grads = SequenceModel.grads
    zero_grad = SequenceModel.zero_grad
    state_dict = SequenceModel.state_dict
    load_state_dict = SequenceModel.load_state_dict


class _AttentionParams(Module):
    """The attention decoder's own parameters (the LSTMCell has the others): the score's and the output's."""

    def __init__(self, hidden_size, memory_size, score, attention_size, dtype, rng):
        self.dtype = dtype
        H, D, A = hidden_size, memory_size, attention_size
        shapes = {"weight_cc": ((H, D), D + H), "weight_ch": ((H, H), D + H), "bias_c": ((H,), D + H)}
        if score == "general":
            shapes["weight_a"] = ((H, D), D)
        elif score == "additive":
            shapes.update({"weight_q": ((A, H), H), "weight_k": ((A, D), D), "weight_v": ((A,), A)})
        # torch's nn.Linear initialization, U(-1/sqrt(fan_in), 1/sqrt(fan_in)); W_cc, W_ch and b_c are one Linear
        # over [ctx; h] (Luong's W_c).
        self._params = {k: rng.uniform(-1 / math.sqrt(n), 1 / math.sqrt(n), s).astype(dtype)
                        for k, (s, n) in shapes.items()}
        self.grads = {k: np.zeros_like(p) for k, p in self._params.items()}


_EQUATIONS = r"""
    .. math::

        h_t, c_t &= \mathrm{LSTMCell}([x_t; o_{t-1}], (h_{t-1}, c_{t-1})) \qquad o_0 \text{ from the state} \\
        e_{ts} &= \mathrm{score}(h_t, m_s) \qquad s < \mathrm{lengths}[b] \\
        a_t &= \mathrm{softmax}(e_t) \text{ over the valid positions, } 0 \text{ on padding} \\
        \mathrm{ctx}_t &= \textstyle\sum_s a_{ts} m_s \\
        o_t &= \tanh(W_{cc}\,\mathrm{ctx}_t + W_{ch} h_t + b_c)

    with score "dot" :math:`h_t^\top m_s` (D = H), "general" :math:`h_t^\top W_a m_s` (Luong et al. 2015) or
    "additive" :math:`v^\top \tanh(W_q h_t + W_k m_s)` (Bahdanau et al. 2015's score).
"""


class AttentionDecoder(_Composite):
    __doc__ = r"""An LSTM decoder with global attention over a memory (the encoder's outputs) and input feeding
    (Luong, Pham & Manning 2015): at each step t, from the input x_t and the state (h, c, o):
    """ + _EQUATIONS + r"""
    The query is the new h_t (Luong's placement); the additive score is Bahdanau, Cho & Bengio (2015)'s score
    function. o_t, the attentional output, is the step's output (a vocabulary head goes on top) and is fed back
    into the next step's input.

    Parameters
    ----------
    input_size, hidden_size, memory_size : int
        E (features of x_t), H (of h, c and o) and D (of the memory); "dot" needs D = H.
    score : {"general", "dot", "additive"}
    attention_size : int, optional
        A of the additive score (default H).
    dtype : np.float32 (default) or np.float64
    seed : int or None
        Seeds the cell's and the attention's initialization (torch's U(-1/sqrt(fan_in), 1/sqrt(fan_in))).
    forget_bias : float, default 1.0
        Added to the cell's forget-gate bias.
    device : {"cpu", "cuda"}

    Notes
    -----
    Parameters: the cell's (``cell.weight_ih`` (4H, E+H), ``cell.weight_hh``, ``cell.bias_ih``, ``cell.bias_hh``,
    torch.nn.LSTMCell's), ``attn.weight_cc`` (H, D) and ``attn.weight_ch`` (H, H) (Luong's W_c = [W_cc W_ch]),
    ``attn.bias_c`` (H,), and ``attn.weight_a`` (H, D) for "general" or ``attn.weight_q`` (A, H), ``attn.weight_k``
    (A, D), ``attn.weight_v`` (A,) for "additive".

    The keys (W_a m or W_k m) are computed once per forward for all source positions (one GEMM). The time loop is
    Python, one LSTMCell call and a few kernel launches per step: input feeding makes each step need the previous
    one's output, and decoders run ~10-50 steps. Padded positions s >= lengths[b] of the memory are never read:
    they get exactly zero attention, and zero gradient.

    Examples
    --------
    >>> import numpy as np, nblstm
    >>> dec = nblstm.AttentionDecoder(3, 8, 6, score="additive", seed=0)
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((4, 2, 3)).astype(np.float32)             # (T, B, E) decoder inputs
    >>> memory = rng.standard_normal((5, 2, 6)).astype(np.float32)        # (S, B, D) encoder outputs
    >>> y, attn, (h, c, o) = dec(x, memory, lengths=[5, 3])
    >>> y.shape, attn.shape, float(attn[:, 1, 3:].max()), bool(np.allclose(attn.sum(-1), 1))
    ((4, 2, 8), (4, 2, 5), 0.0, True)
    >>> dx, dmemory, (dh0, dc0, do0) = dec.backward(np.ones_like(y))
    >>> dmemory.shape, float(np.abs(dmemory[3:, 1]).max())                 # padding: zero gradient
    ((5, 2, 6), 0.0)
    """

    def __init__(self, input_size, hidden_size, memory_size, *, score="general", attention_size=None,
                 dtype=np.float32, seed=None, forget_bias=1.0, device="cpu"):
        self.input_size = _checks.positive_int(input_size, "input_size")
        self.hidden_size = _checks.positive_int(hidden_size, "hidden_size")
        self.memory_size = _checks.positive_int(memory_size, "memory_size")
        self.score = _checks.choice(score, "score", SCORES)
        if score == "dot" and memory_size != hidden_size:
            raise ValueError(f"memory_size: the dot score needs memory_size == hidden_size ({hidden_size}), got "
                             f"{memory_size}; use score='general' or 'additive'")
        self.attention_size = hidden_size if attention_size is None else \
            _checks.positive_int(attention_size, "attention_size")
        self.dtype = _checks.as_float_dtype(dtype)
        cell_seed, attn_seed = _seed_sequence(seed).spawn(2)
        self.cell = LSTMCell(input_size + hidden_size, hidden_size, dtype=self.dtype, seed=cell_seed,
                             forget_bias=forget_bias, device="cpu")
        self.attn = _AttentionParams(hidden_size, memory_size, score, self.attention_size, self.dtype,
                                     np.random.default_rng(attn_seed))
        self._tape = None
        self.to(device)

    def _parts(self):
        return [("cell", self.cell), ("attn", self.attn)]

    def to(self, device):
        """Move parameters and gradients to `device` ("cpu" or "cuda"); returns self. The tape is dropped."""
        K = attention_kernels(device)
        self.cell.to(device)
        self.attn.to(device)
        self.device, self._k, self._tape = device, K, None
        return self

    def _empty(self, *shape):
        return backends.empty(self.device, shape, self.dtype)

    def _zeros(self, *shape):
        return backends.zeros(self.device, shape, self.dtype)

    def _triple(self, state, name, B):
        """(h, c, o) each (B, H), checked and on the device, or zeros when state is None."""
        H = self.hidden_size
        if state is None:
            return tuple(self._zeros(B, H) for _ in range(3))
        if not isinstance(state, (tuple, list)) or len(state) != 3:
            raise ValueError(f"{name}: expected a triple (h, c, o) of arrays of shape ({B}, {H}), got "
                             f"{type(state).__name__}{'' if not isinstance(state, (tuple, list)) else ' of ' + str(len(state))}")
        return tuple(backends.as_array(self.device, a, f"{name}[{k}]", self.dtype, (B, H)) for k, a in enumerate(state))

    def _keys(self, memory):
        """The keys of all source positions, (S, B, N): the memory itself (dot) or memory @ W^T, one GEMM."""
        if self.score == "dot":
            return memory
        S, B, D = memory.shape
        W = self.attn._params["weight_a" if self.score == "general" else "weight_k"]
        keys = self._empty(S, B, W.shape[0])
        self._k.gemm(keys.reshape(S * B, W.shape[0]), memory.reshape(S * B, D), W, 0, 1, 0)
        return keys

    def forward(self, x, memory, state=None, *, lengths=None):
        """x (T, B, E), memory (S, B, D), state (h0, c0, o0) each (B, H) or None for zeros, lengths (B,) integers in
        0..S or None (all S) -> y (T, B, H) the attentional outputs o_t, attn (T, B, S) the attention weights,
        (h_n, c_n, o_n) each (B, H)."""
        like, K, p = x, self._k, self.attn._params
        E, H, D, A = self.input_size, self.hidden_size, self.memory_size, self.attention_size
        x = backends.as_array(self.device, x, "x", self.dtype, (None, None, E))
        T, B = x.shape[:2]
        memory = backends.as_array(self.device, memory, "memory", self.dtype, (None, B, D))
        S = memory.shape[0]
        lens = backends.to_device(self.device, _checks.lengths(lengths, B, S))
        h, c, o = self._triple(state, "state", B)
        keys = self._keys(memory)
        U = self._empty(T, B, E + H)                    # the cell's inputs [x_t ; o_{t-1}]
        backends.copy_steps(U, x)
        Y, ATT, HS, CTX = self._empty(T, B, H), self._empty(T, B, S), self._empty(T, B, H), self._empty(T, B, D)
        e = self._empty(B, S)
        if self.score == "additive":
            q, P = self._empty(B, A), self._empty(T, S, B, A)
        tapes = []
        for t in range(T):
            backends.copy_steps(U[t:t + 1], o.reshape(1, B, H), out_col=E)      # input feeding
            h, c = self.cell(U[t], (h, c))
            tapes.append(self.cell._tape)
            backends.copy_into(HS[t], h)
            if self.score == "additive":
                K.gemm(q, HS[t], p["weight_q"], 0, 1, 0)
                K.additive_score(e, P[t], keys, q, p["weight_v"], lens)
            else:
                K.dot_score(e, keys, HS[t], lens)
            K.masked_softmax(ATT[t], e, lens)
            K.context(CTX[t], ATT[t], memory, lens)
            K.gemm(Y[t], CTX[t], p["weight_cc"], 0, 1, 0)
            K.gemm(Y[t], HS[t], p["weight_ch"], 0, 1, 1)
            K.add_bias_tanh(Y[t], p["bias_c"])
            o = Y[t]
        keep = is_grad_enabled()
        self._tape = (x.shape, memory, lens, keys, HS, CTX, Y, ATT, P if self.score == "additive" else None,
                      tapes) if keep else None
        # the tape keeps its own Y and ATT: user edits can't corrupt backward
        y, attn = (backends.copy(Y), backends.copy(ATT)) if keep else (Y, ATT)
        return _out(y, like), _out(attn, like), (_out(h, like), _out(c, like), _out(backends.copy(o), like))

    __call__ = forward

    def backward(self, dy, state_grad=None, dattn=None):
        """dL/dy (T, B, H), state_grad (dL/dh_n, dL/dc_n, dL/do_n) or None for zeros, dL/dattn (T, B, S) or None
        -> dL/dx (T, B, E), dL/dmemory (S, B, D), (dL/dh0, dL/dc0, dL/do0). Adds the parameter gradients into
        ``grads``; goes back through the most recent forward."""
        if self._tape is None:
            raise RuntimeError("backward: no tape to go back through; call forward first, outside nblstm.no_grad()")
        (T, B, E), memory, lens, keys, HS, CTX, Y, ATT, P, tapes = self._tape
        like, K, p, g = dy, self._k, self.attn._params, self.attn.grads
        S, _, D = memory.shape
        H = self.hidden_size
        dy = backends.as_array(self.device, dy, "dy", self.dtype, (T, B, H))
        if dattn is not None:
            dattn = backends.as_array(self.device, dattn, "dattn", self.dtype, (T, B, S))
        dh, dc, do = (backends.copy(a) for a in self._triple(state_grad, "state_grad", B))
        dmemory = self._zeros(S, B, D)
        dkeys = dmemory if self.score == "dot" else self._zeros(*keys.shape)
        dX, dPRE = self._empty(T, B, E), self._empty(T, B, H)
        dctx, da, de, dq = self._empty(B, D), self._empty(B, S), self._empty(B, S), self._empty(B, keys.shape[2])
        for t in range(T - 1, -1, -1):
            backends.add_into(do, dy[t])                            # o_t goes to y and to step t+1's input
            K.tanh_backward(dPRE[t], do, Y[t])
            K.gemm(dctx, dPRE[t], p["weight_cc"], 0, 0, 0)
            K.gemm(dh, dPRE[t], p["weight_ch"], 0, 0, 1)
            K.context_backward(da, dmemory, dctx, ATT[t], memory, lens)
            if dattn is not None:
                backends.add_into(da, dattn[t])
            K.masked_softmax_backward(de, da, ATT[t], lens)
            if self.score == "additive":
                K.additive_score_backward(dq, dkeys, g["weight_v"], de, P[t], p["weight_v"], lens)
                K.gemm(dh, dq, p["weight_q"], 0, 0, 1)
                K.gemm(g["weight_q"], dq, HS[t], 1, 0, 1)
            else:
                K.dot_score_backward(dq, dkeys, de, keys, HS[t], lens)
                backends.add_into(dh, dq)
            self.cell._tape = tapes[t]                              # the cell goes back through step t
            du, (dh, dc) = self.cell.backward(dh, dc)
            du = du.reshape(1, B, E + H)
            backends.copy_steps(dX[t:t + 1], du, n=E)
            do = self._empty(B, H)
            backends.copy_steps(do.reshape(1, B, H), du, a_col=E, n=H)
        self.cell._tape = tapes[-1]
        # Weight gradients of the output layer batched over all steps: two GEMMs and a column sum.
        dPRE2 = dPRE.reshape(T * B, H)
        K.gemm(g["weight_cc"], dPRE2, CTX.reshape(T * B, D), 1, 0, 1)
        K.gemm(g["weight_ch"], dPRE2, HS.reshape(T * B, H), 1, 0, 1)
        K.add_column_sums(g["bias_c"], dPRE2)
        if self.score != "dot":                                     # keys = memory @ W^T
            w = "weight_a" if self.score == "general" else "weight_k"
            N = keys.shape[2]
            K.gemm(dmemory.reshape(S * B, D), dkeys.reshape(S * B, N), p[w], 0, 0, 1)
            K.gemm(g[w], dkeys.reshape(S * B, N), memory.reshape(S * B, D), 1, 0, 1)
        return _out(dX, like), _out(dmemory, like), (_out(dh, like), _out(dc, like), _out(do, like))

    def __repr__(self):
        args = [str(self.input_size), str(self.hidden_size), str(self.memory_size), f"score={self.score!r}"]
        if self.score == "additive" and self.attention_size != self.hidden_size:
            args.append(f"attention_size={self.attention_size}")
        if self.dtype != np.float32:
            args.append(f"dtype={self.dtype.name}")
        if self.device != "cpu":
            args.append(f"device={self.device!r}")
        return f"AttentionDecoder({', '.join(args)})"


class Seq2Seq(_Composite):
    """Encoder-decoder with attention (Bahdanau et al. 2015; Luong et al. 2015) over token sequences: source
    embedding -> bidirectional LSTM encoder -> AttentionDecoder over the encoder's outputs -> linear head.

    The encoder (nblstm.LSTM, bidirectional, H per direction) gives the memory (S, B, 2H); the decoder
    (hidden size 2H) starts from the encoder's final states, forward and backward direction side by side, with
    o_0 = 0. Training uses teacher forcing: the decoder reads the target shifted right (``bos`` first).
    ``greedy`` and ``beam_search`` decode.

    Parameters
    ----------
    src_vocab, tgt_vocab : int
        Sizes of the source and target vocabularies (token ids 0..V-1).
    embedding_dim : int, default 32
    hidden_size : int, default 64
        H of each encoder direction; the decoder has 2H.
    score : {"general", "dot", "additive"}, default "general"
    attention_size : int, optional
        A of the additive score (default 2H).
    bos, eos : int
        Target ids that start decoding and end a hypothesis.
    dtype, seed, forget_bias, device
        As AttentionDecoder; embeddings and head are NumPy layers on the host for every device.

    ``forward(src, tgt_in, src_lengths)`` takes src (S, B) and tgt_in (T, B) integer ids and returns logits
    (T, B, V) and the attention weights (T, B, S); ``backward(dlogits, dattn=None)`` adds every gradient into
    ``grads``. ``forward((src, tgt_in, src_lengths), None)`` is the same call in the form nblstm.fit uses
    (``model(batch.x, state)``), whose returned "state" (the attention weights) fit ignores for tasks that start
    every batch afresh.

    Notes
    -----
    Source padding: positions s >= src_lengths[b] get zero attention and zero gradient, and the encoder gets
    ``lengths=src_lengths`` (torch's packed sequences: each source's reverse direction starts at its own end, and
    the decoder starts from the state at each source's last valid step), so padding changes nothing.

    Examples
    --------
    >>> import numpy as np, nblstm
    >>> model = nblstm.Seq2Seq(12, 7, embedding_dim=4, hidden_size=5, seed=0, bos=0, eos=1)
    >>> src = np.array([[3, 4], [5, 6], [7, 2]])                     # (S, B), second source padded with 2
    >>> logits, attn = model(src, np.array([[0, 0], [4, 5]]), src_lengths=[3, 2])
    >>> logits.shape, attn.shape, float(attn[:, 1, 2].max())
    ((2, 2, 7), (2, 2, 3), 0.0)
    >>> model.backward(np.ones_like(logits))
    >>> tokens, attn = model.greedy(src, src_lengths=[3, 2], max_len=4)
    >>> tokens.shape[0], attn.shape[1:]
    (2, (2, 3))
    """

    def __init__(self, src_vocab, tgt_vocab, *, embedding_dim=32, hidden_size=64, score="general",
                 attention_size=None, bos=0, eos=1, dtype=np.float32, seed=None, forget_bias=1.0, device="cpu"):
        self.dtype = _checks.as_float_dtype(dtype)
        self.tgt_vocab = _checks.positive_int(tgt_vocab, "tgt_vocab")
        for name, v in (("bos", bos), ("eos", eos)):
            if not isinstance(v, (int, np.integer)) or not 0 <= v < tgt_vocab:
                raise ValueError(f"{name}: expected a target id in 0..{tgt_vocab - 1}, got {v!r}")
        self.bos, self.eos = int(bos), int(eos)
        self.hidden_size = _checks.positive_int(hidden_size, "hidden_size")
        s = _seed_sequence(seed).spawn(5)
        H2 = 2 * self.hidden_size
        self.src_embedding = Embedding(src_vocab, embedding_dim, dtype=dtype, seed=s[0])
        self.encoder = LSTM(embedding_dim, self.hidden_size, bidirectional=True, dtype=dtype, seed=s[1],
                            forget_bias=forget_bias, device=device)
        self.tgt_embedding = Embedding(tgt_vocab, embedding_dim, dtype=dtype, seed=s[2])
        self.decoder = AttentionDecoder(embedding_dim, H2, H2, score=score, attention_size=attention_size,
                                        dtype=dtype, seed=s[3], forget_bias=forget_bias, device=device)
        self.head = Linear(H2, tgt_vocab, dtype=dtype, seed=s[4])
        self._tape = None

    def _parts(self):
        return [("src_embedding", self.src_embedding), ("encoder", self.encoder),
                ("tgt_embedding", self.tgt_embedding), ("decoder", self.decoder), ("head", self.head)]

    @property
    def device(self):
        return self.decoder.device

    def to(self, device):
        """Run the encoder and decoder on `device` ("cpu" or "cuda"); returns self."""
        self.encoder.to(device)
        self.decoder.to(device)
        self._tape = None
        return self

    def _encode(self, src, src_lengths):
        """src (S, B) ids -> memory (S, B, 2H), the decoder's initial state (h0, c0, o0), checked lengths (B,)."""
        src = np.asarray(src)
        if src.ndim != 2:
            raise ValueError(f"src: expected (S, B) token ids, got shape {src.shape}")
        lengths = _checks.lengths(src_lengths, src.shape[1], src.shape[0], "src_lengths")
        memory, (h_n, c_n) = self.encoder(self.src_embedding(src), lengths=lengths)
        h_n, c_n = np.asarray(h_n), np.asarray(c_n)
        h0, c0 = np.concatenate([h_n[0], h_n[1]], axis=1), np.concatenate([c_n[0], c_n[1]], axis=1)
        return np.asarray(memory), (h0, c0, np.zeros_like(h0)), lengths

    def forward(self, src, tgt_in=None, src_lengths=None):
        """src (S, B) source ids, tgt_in (T, B) decoder input ids (bos, then the target but its last id),
        src_lengths (B,) or None -> logits (T, B, tgt_vocab), attention weights (T, B, S).
        ``forward((src, tgt_in, src_lengths))``: the same, packed as nblstm.fit passes a batch."""
        if tgt_in is None and isinstance(src, tuple) and len(src) == 3:
            src, tgt_in, src_lengths = src
        memory, state, lengths = self._encode(src, src_lengths)
        y, attn, _ = self.decoder(self.tgt_embedding(np.asarray(tgt_in)), memory, state, lengths=lengths)
        self._tape = is_grad_enabled()
        return self.head(np.asarray(y)), np.asarray(attn)

    __call__ = forward

    def backward(self, dlogits, dattn=None):
        """dL/dlogits (T, B, V), dL/dattn (T, B, S) or None -> None; adds into every part's ``grads``."""
        if not self._tape:
            raise RuntimeError("backward: no tape to go back through; call forward first, outside nblstm.no_grad()")
        H = self.hidden_size
        dx, dmemory, (dh0, dc0, _) = self.decoder.backward(self.head.backward(dlogits), None, dattn)
        self.tgt_embedding.backward(np.asarray(dx))
        dh0, dc0 = np.asarray(dh0), np.asarray(dc0)
        dstate = (np.stack([dh0[:, :H], dh0[:, H:]]), np.stack([dc0[:, :H], dc0[:, H:]]))
        dsrc, _ = self.encoder.backward(np.asarray(dmemory), dstate)
        self.src_embedding.backward(np.asarray(dsrc))

    def _step(self, tokens, memory, state, lengths):
        """One decoder step without a tape: tokens (R,) -> log-probabilities (R, V), attention (R, S), state."""
        y, attn, state = self.decoder(self.tgt_embedding(tokens[None]), memory, state, lengths=lengths)
        return losses.log_softmax(self.head(np.asarray(y[0]))), np.asarray(attn[0]), state

    def greedy(self, src, src_lengths=None, max_len=50):
        """Greedy decoding: src (S, B) ids -> tokens (B, L) (each hypothesis up to and with its eos; eos after it),
        attention weights (L, B, S). L <= max_len: it stops when every hypothesis has ended."""
        with no_grad():
            memory, state, lengths = self._encode(src, src_lengths)
            B = memory.shape[1]
            tok, done = np.full(B, self.bos), np.zeros(B, bool)
            out, attns = [], []
            for _ in range(max_len):
                logp, a, state = self._step(tok, memory, state, lengths)
                tok = np.where(done, self.eos, logp.argmax(axis=1))
                out.append(tok)
                attns.append(a)
                done |= tok == self.eos
                if done.all():
                    break
        return np.stack(out, axis=1), np.stack(attns)

    def beam_search(self, src, src_lengths=None, beam_size=4, max_len=50, alpha=1.0):
        """Beam search with length normalization: src (S, B) ids -> tokens (B, L) (the best hypothesis of each
        source, eos-padded), attention weights (L, B, S) of that hypothesis.

        Each source keeps `beam_size` live hypotheses; a hypothesis that emits eos is finished with the score
        log p(y) / len(y)**alpha (len counting eos; alpha = 0: raw log-probability, which favours short outputs).
        A source stops when it has `beam_size` finished hypotheses; at max_len its live ones count as finished.
        """
        k = _checks.positive_int(beam_size, "beam_size")
        with no_grad():
            memory, state, lengths = self._encode(src, src_lengths)
            S, B = memory.shape[:2]
            memory = np.ascontiguousarray(np.repeat(memory, k, axis=1))         # row b*k + j: beam j of source b
            lengths = np.repeat(lengths, k)
            state = tuple(np.repeat(np.asarray(a), k, axis=0) for a in state)
            score = np.full((B, k), -np.inf)
            score[:, 0] = 0.0                                                     # one live hypothesis at first
            seqs, attns = np.zeros((B, k, 0), np.int64), np.zeros((B, k, 0, S))
            finished = [[] for _ in range(B)]                                     # (normalized score, seq, attn)
            tok = np.full(B * k, self.bos)
            for t in range(max_len):
                logp, a, state = self._step(tok, memory, state, lengths)
                V = logp.shape[1]
                cand = (score[:, :, None] + logp.reshape(B, k, V)).reshape(B, k * V)
                order = np.argsort(-cand, axis=1, kind="stable")[:, :2 * k]     # k live ones are among these
                rows, new_score = np.zeros((B, k), np.int64), np.full((B, k), -np.inf)
                new_tok = np.full((B, k), self.eos)
                for b in range(B):
                    n = 0
                    for c in order[b]:
                        j, v, s = c // V, c % V, cand[b, c]
                        if n == k or not np.isfinite(s) or len(finished[b]) >= k:
                            break
                        if v == self.eos or t == max_len - 1:
                            seq = np.append(seqs[b, j], v)
                            att = np.concatenate([attns[b, j], a[b * k + j][None]])
                            finished[b].append((s / len(seq) ** alpha, seq, att))
                        else:
                            rows[b, n], new_score[b, n], new_tok[b, n] = b * k + j, s, v
                            n += 1
                    rows[b, n:] = b * k                                           # unused beams: -inf scores
                if all(len(f) >= k for f in finished):
                    break
                idx = rows.reshape(-1)
                state = tuple(np.asarray(s)[idx] for s in state)
                seqs = np.concatenate([seqs.reshape(B * k, t)[idx], new_tok.reshape(-1, 1)], axis=1)
                attns = np.concatenate([attns.reshape(B * k, t, S)[idx], a[idx][:, None]], axis=1)
                seqs, attns = seqs.reshape(B, k, t + 1), attns.reshape(B, k, t + 1, S)
                score, tok = new_score, new_tok.reshape(-1)
        best = [max(f, key=lambda r: r[0]) for f in finished]
        L = max(len(seq) for _, seq, _ in best)
        tokens = np.full((B, L), self.eos, np.int64)
        attn = np.zeros((L, B, S))
        for b, (_, seq, att) in enumerate(best):
            tokens[b, :len(seq)] = seq
            attn[:len(seq), b] = att
        return tokens, attn.astype(self.dtype)

    def __repr__(self):
        return (f"Seq2Seq(src_vocab={self.src_embedding.num_embeddings}, tgt_vocab={self.tgt_vocab}, "
                f"encoder={self.encoder!r}, decoder={self.decoder!r})")

