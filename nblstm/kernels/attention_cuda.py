# CUDA attention kernels (numba-cuda @cuda.jit), twins of attention_cpu.py. Shape letters: S source (encoder) steps,
# B batch, D memory features, N key/query features (H for dot and general scores, A for additive), H decoder hidden
# size. Arrays are C-contiguous device arrays; the memory ("values") and keys are time-major (S, B, .); the scores e
# and attention weights a of one decoder step are (B, S). lengths (B,) int64: positions s >= lengths[b] are padding,
# never read, their scores and weights written 0, their gradients left untouched. Every kernel name is a launcher
# (kernels/cuda.py's Launcher): called with its cpu twin's arguments it picks the grid, checks CUDA's limits and
# launches. Each thread owns what it writes (a row, or a column of a row): no atomics, sums in a fixed order.
from numba import cuda

from . import _math
from .cuda import Launcher, _launch, _pointwise, add_column_sums, gemm  # noqa: F401  (gemm, add_column_sums: used
#                                                                           by nblstm._attention on this backend)

# The scalar tanh of _math.py (float32: the rational approximation) and the softmax rows, as CUDA device functions.
_tanh = cuda.jit(device=True)(_math.tanh)
_masked_softmax_row = cuda.jit(device=True)(_math.masked_softmax_row)
_masked_softmax_backward_row = cuda.jit(device=True)(_math.masked_softmax_backward_row)


@_launch(lambda e, keys, q, lengths: _pointwise(e.shape[0] * e.shape[1]))
def dot_score(e, keys, q, lengths):
    """Scores of one step: e (B, S) = q[b] . keys[s, b] for s < lengths[b], else 0; keys (S, B, N), q (B, N)."""
    B, S = e.shape
    N = keys.shape[2]
    k = cuda.grid(1)                            # one thread per score (b, s)
    if k < B * S:
        b = k // S
        s = k - b * S
        acc = e.dtype.type(0.0)
        if s < lengths[b]:
            for n in range(N):
                acc += q[b, n] * keys[s, b, n]
        e[b, s] = acc


@_launch(lambda dq, dkeys, de, keys, q, lengths: _pointwise(dq.shape[0] * dq.shape[1]))
def dot_score_backward(dq, dkeys, de, keys, q, lengths):
    """dL/de (B, S) in; writes dq (B, N) = sum_s de keys[s], adds de[b, s] q[b] into dkeys[s, b] (S, B, N)."""
    S, B, N = keys.shape
    k = cuda.grid(1)                            # one thread per feature (b, n), s summed in order
    if k < B * N:
        b = k // N
        n = k - b * N
        acc = dq.dtype.type(0.0)
        for s in range(min(lengths[b], S)):
            acc += de[b, s] * keys[s, b, n]
            dkeys[s, b, n] += de[b, s] * q[b, n]
        dq[b, n] = acc


@_launch(lambda e, P, keys, q, v, lengths: _pointwise(e.shape[0] * e.shape[1]))
def additive_score(e, P, keys, q, v, lengths):
    """Scores of one step: P[s, b] = tanh(keys[s, b] + q[b]) (S, B, A), e (B, S) = v . P[s, b] for s < lengths[b], else 0."""
    B, S = e.shape
    A = keys.shape[2]
    k = cuda.grid(1)                            # one thread per score (b, s)
    if k < B * S:
        b = k // S
        s = k - b * S
        one = e.dtype.type(1.0)
        acc = e.dtype.type(0.0)
        if s < lengths[b]:
            for j in range(A):
                p = _tanh(keys[s, b, j] + q[b, j], one)
                P[s, b, j] = p
                acc += v[j] * p
        e[b, s] = acc


@_launch(lambda dq, dkeys, de, P, v, lengths: _pointwise(dq.shape[0] * dq.shape[1]))
def additive_score_rows(dq, dkeys, de, P, v, lengths):
    """dq (B, A) = sum_s dP and dkeys += dP, dP = de v (1 - P^2): additive_score_backward but dv."""
    S, B, A = P.shape
    k = cuda.grid(1)                            # one thread per feature (b, j), s summed in order
    if k < B * A:
        b = k // A
        j = k - b * A
        one = dq.dtype.type(1.0)
        acc = dq.dtype.type(0.0)
        for s in range(min(lengths[b], S)):
            p = P[s, b, j]
            d = de[b, s] * v[j] * (one - p * p)
            acc += d
            dkeys[s, b, j] += d
        dq[b, j] = acc


@_launch(lambda dv, de, P, lengths: _pointwise(dv.shape[0]))
def additive_score_v(dv, de, P, lengths):
    """dv (A,) += sum over b and s < lengths[b] of de[b, s] P[s, b]: additive_score_backward's dv."""
    S, B, A = P.shape
    j = cuda.grid(1)                            # one thread per feature j, (b, s) summed in order
    if j < A:
        acc = dv.dtype.type(0.0)
        for b in range(B):
            for s in range(min(lengths[b], S)):
                acc += de[b, s] * P[s, b, j]
        dv[j] += acc


def additive_score_backward(dq, dkeys, dv, de, P, v, lengths):
    """dL/de (B, S) in; with dP = de v (1 - P^2): writes dq (B, A) = sum_s dP, adds dP into dkeys, sum de P into dv (A,)."""
    additive_score_rows(dq, dkeys, de, P, v, lengths)
    additive_score_v(dv, de, P, lengths)


@_launch(lambda a, e, lengths: _pointwise(e.shape[0]))
def masked_softmax(a, e, lengths):
    """a (B, S) = softmax of e (B, S) over s < lengths[b] (the maximum subtracted first), 0 on padding and for length 0."""
    b = cuda.grid(1)                            # one thread per row: S is a sentence's length, not thousands
    if b < e.shape[0]:
        _masked_softmax_row(a, e, lengths, b)


@_launch(lambda de, da, a, lengths: _pointwise(a.shape[0]))
def masked_softmax_backward(de, da, a, lengths):
    """dL/da (B, S) in; writes de (B, S) = a (da - sum_s a da) on s < lengths[b], 0 on padding."""
    b = cuda.grid(1)                            # one thread per row
    if b < a.shape[0]:
        _masked_softmax_backward_row(de, da, a, lengths, b)


@_launch(lambda ctx, a, values, lengths: _pointwise(ctx.shape[0] * ctx.shape[1]))
def context(ctx, a, values, lengths):
    """ctx (B, D) = sum over s < lengths[b] of a[b, s] values[s, b]; values (S, B, D)."""
    S, B, D = values.shape
    k = cuda.grid(1)                            # one thread per feature (b, d), s summed in order
    if k < B * D:
        b = k // D
        d = k - b * D
        acc = ctx.dtype.type(0.0)
        for s in range(min(lengths[b], S)):
            acc += a[b, s] * values[s, b, d]
        ctx[b, d] = acc


@_launch(lambda da, dvalues, dctx, a, values, lengths: _pointwise(da.shape[0] * da.shape[1]))
def context_backward(da, dvalues, dctx, a, values, lengths):
    """dL/dctx (B, D) in; writes da (B, S) = dctx[b] . values[s, b] (0 on padding), adds a[b, s] dctx[b] into dvalues[s, b]."""
    S, B, D = values.shape
    k = cuda.grid(1)                            # one thread per position (b, s): it owns dvalues[s, b, :]
    if k < B * S:
        b = k // S
        s = k - b * S
        acc = da.dtype.type(0.0)
        if s < lengths[b]:
            w = a[b, s]
            for d in range(D):
                acc += dctx[b, d] * values[s, b, d]
                dvalues[s, b, d] += w * dctx[b, d]
        da[b, s] = acc


@_launch(lambda y, b: _pointwise(y.shape[0] * y.shape[1]))
def add_bias_tanh(y, b):
    """y (B, H) = tanh(y + b), b (H,): the attentional output o_t = tanh(W_cc ctx_t + W_ch h_t + b_c), in place."""
    R, H = y.shape
    k = cuda.grid(1)
    if k < R * H:
        r = k // H
        j = k - r * H
        y[r, j] = _tanh(y[r, j] + b[j], y.dtype.type(1.0))


@_launch(lambda dz, dy, y: _pointwise(y.shape[0] * y.shape[1]))
def tanh_backward(dz, dy, y):
    """dz (B, H) = dy (1 - y^2) for y = tanh(z): the gradient of the pre-activation of the attentional output."""
    R, H = y.shape
    k = cuda.grid(1)
    if k < R * H:
        r = k // H
        j = k - r * H
        dz[r, j] = dy[r, j] * (y.dtype.type(1.0) - y[r, j] * y[r, j])


# Every kernel of this file, in file order: the PTX check (tests/test_ptx.py) compiles each for float32 and float64.
KERNELS = (dot_score, dot_score_backward, additive_score, additive_score_rows, additive_score_v, masked_softmax,
           masked_softmax_backward, context, context_backward, add_bias_tanh, tanh_backward)
