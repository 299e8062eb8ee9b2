# CPU attention kernels (numba.njit), twins of attention_cuda.py. Shape letters: S source (encoder) steps, B batch,
# D memory features, N key/query features (H for dot and general scores, A for additive), H decoder hidden size.
# Arrays are C-contiguous; the memory ("values") and keys are time-major (S, B, .) like every sequence in nblstm;
# the scores e and attention weights a of one decoder step are (B, S). lengths (B,) int64: positions
# s >= lengths[b] are padding; the kernels never read them, write 0 to their scores and weights, and leave their
# gradients untouched (zero), so whatever padding holds (even nan) cannot reach a result
# (tests/test_attention.py::test_padding_gets_zero_attention_and_zero_gradient).
# Backward kernels write the gradients of the step's own inputs (dq, da, de) and add into those of arrays shared by
# all decoder steps (dkeys, dvalues, dv). The oracle is nblstm/reference_attention.py.
import numba
import numpy as np

from . import _math, refresh_cache_on_change

_jit = numba.njit(cache=True, error_model="numpy")


@_jit
def dot_score(e, keys, q, lengths):
    """Scores of one step: e (B, S) = q[b] . keys[s, b] for s < lengths[b], else 0; keys (S, B, N), q (B, N)."""
    S, B, N = keys.shape
    zero = e.dtype.type(0.0)
    for b in range(B):
        qb = q[b]
        for s in range(S):
            acc = zero
            if s < lengths[b]:
                kb = keys[s, b]
                for n in range(N):
                    acc += qb[n] * kb[n]
            e[b, s] = acc


@_jit
def dot_score_backward(dq, dkeys, de, keys, q, lengths):
    """dL/de (B, S) in; writes dq (B, N) = sum_s de keys[s], adds de[b, s] q[b] into dkeys[s, b] (S, B, N)."""
    S, B, N = keys.shape
    zero = dq.dtype.type(0.0)
    for b in range(B):
        dqb, qb = dq[b], q[b]
        for n in range(N):
            dqb[n] = zero
        for s in range(min(lengths[b], S)):
            g, kb, dkb = de[b, s], keys[s, b], dkeys[s, b]
            for n in range(N):
                dqb[n] += g * kb[n]
                dkb[n] += g * qb[n]


@_jit
def additive_score(e, P, keys, q, v, lengths):
    """Scores of one step: P[s, b] = tanh(keys[s, b] + q[b]) (S, B, A), e (B, S) = v . P[s, b] for s < lengths[b], else 0."""
    S, B, A = keys.shape
    one = e.dtype.type(1.0)
    zero = e.dtype.type(0.0)
    for b in range(B):
        qb = q[b]
        for s in range(S):
            acc = zero
            if s < lengths[b]:
                kb, pb = keys[s, b], P[s, b]
                for j in range(A):
                    pb[j] = _math.tanh(kb[j] + qb[j], one)
                    acc += v[j] * pb[j]
            e[b, s] = acc


@_jit
def additive_score_backward(dq, dkeys, dv, de, P, v, lengths):
    """dL/de (B, S) in; with dP = de v (1 - P^2): writes dq (B, A) = sum_s dP, adds dP into dkeys, sum de P into dv (A,)."""
    S, B, A = P.shape
    one = dq.dtype.type(1.0)
    zero = dq.dtype.type(0.0)
    for b in range(B):
        dqb = dq[b]
        for j in range(A):
            dqb[j] = zero
        for s in range(min(lengths[b], S)):
            g, pb, dkb = de[b, s], P[s, b], dkeys[s, b]
            for j in range(A):
                d = g * v[j] * (one - pb[j] * pb[j])
                dqb[j] += d
                dkb[j] += d
                dv[j] += g * pb[j]


@_jit
def masked_softmax(a, e, lengths):
    """a (B, S) = softmax of e (B, S) over s < lengths[b] (the maximum subtracted first), 0 on padding and for length 0."""
    for b in range(e.shape[0]):
        _math.masked_softmax_row(a, e, lengths, b)


@_jit
def masked_softmax_backward(de, da, a, lengths):
    """dL/da (B, S) in; writes de (B, S) = a (da - sum_s a da) on s < lengths[b], 0 on padding."""
    for b in range(a.shape[0]):
        _math.masked_softmax_backward_row(de, da, a, lengths, b)


@_jit
def context(ctx, a, values, lengths):
    """ctx (B, D) = sum over s < lengths[b] of a[b, s] values[s, b]; values (S, B, D)."""
    S, B, D = values.shape
    zero = ctx.dtype.type(0.0)
    for b in range(B):
        cb = ctx[b]
        for d in range(D):
            cb[d] = zero
        for s in range(min(lengths[b], S)):
            w, vb = a[b, s], values[s, b]
            for d in range(D):
                cb[d] += w * vb[d]


@_jit
def context_backward(da, dvalues, dctx, a, values, lengths):
    """dL/dctx (B, D) in; writes da (B, S) = dctx[b] . values[s, b] (0 on padding), adds a[b, s] dctx[b] into dvalues[s, b]."""
    S, B, D = values.shape
    zero = da.dtype.type(0.0)
    for b in range(B):
        L = min(lengths[b], S)
        gb = dctx[b]
        for s in range(L):
            w, vb, dvb = a[b, s], values[s, b], dvalues[s, b]
            acc = zero
            for d in range(D):
                acc += gb[d] * vb[d]
                dvb[d] += w * gb[d]
            da[b, s] = acc
        for s in range(L, S):
            da[b, s] = zero


@_jit
def add_bias_tanh(y, b):
    """y (B, H) = tanh(y + b), b (H,): the attentional output o_t = tanh(W_cc ctx_t + W_ch h_t + b_c), in place."""
    R, H = y.shape
    one = y.dtype.type(1.0)
    for r in range(R):
        yr = y[r]
        for j in range(H):
            yr[j] = _math.tanh(yr[j] + b[j], one)


@_jit
def tanh_backward(dz, dy, y):
    """dz (B, H) = dy (1 - y^2) for y = tanh(z): the gradient of the pre-activation of the attentional output."""
    R, H = y.shape
    one = y.dtype.type(1.0)
    for r in range(R):
        for j in range(H):
            dz[r, j] = dy[r, j] * (one - y[r, j] * y[r, j])


@_jit
def add_column_sums(db, dG):
    """db (N,) += the sum over rows of dG (R, N): a bias gradient (twin of kernels.cuda.add_column_sums)."""
    R, N = dG.shape
    for r in range(R):
        for k in range(N):
            db[k] += dG[r, k]


@_jit
def _dot(C, a, b, accumulate):
    """C = a @ b, or C += a @ b; a and b C- or F-ordered (numba compiles each layout pair)."""
    if accumulate:
        C += np.dot(a, b)
    else:
        np.dot(a, b, C)


@_jit
def gemm(C, A, B, trans_a, trans_b, accumulate):
    """C (M, N) = op(A) @ op(B), plus C when accumulate; op(X) = X.T when trans_x, else X (NumPy's BLAS)."""
    # Compiled, so the BLAS is the one numba calls (scipy's OpenBLAS), as in the LSTM kernels: a decoder step that
    # alternated it with NumPy's own OpenBLAS kept two thread pools spinning on 2 cores, 13x slower (dates: 415 vs
    # 32 ms per step). Four calls, not one: A and A.T (C and F order) do not unify in numba.
    if trans_a and trans_b:
        _dot(C, A.T, B.T, accumulate)
    elif trans_a:
        _dot(C, A.T, B, accumulate)
    elif trans_b:
        _dot(C, A, B.T, accumulate)
    else:
        _dot(C, A, B, accumulate)


refresh_cache_on_change([dot_score, dot_score_backward, additive_score, additive_score_backward, masked_softmax,
                         masked_softmax_backward, context, context_backward, add_bias_tanh, tanh_backward,
                         add_column_sums, _dot, gemm], [_math.__file__])
