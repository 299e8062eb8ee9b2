# CUDA kernels (numba-cuda @cuda.jit) of the training layers, losses and optimizers, twins of layers_cpu.py. Shape
# letters: N rows (the leading axes of a layer's or loss's input flattened, e.g. T*B), I input and O output features of
# a Linear, V vocabulary and E embedding size of an Embedding, C classes, K regression outputs, P elements of a
# parameter (any parameter flattened). Arrays are C-contiguous device arrays; weights as torch's: w (O, I), b (O,)
# (shape (0,): no bias), embedding w (V, E); idx (N,) and class targets y (N,) int64. Loss weights: w (N,) or (1,), and
# for mse (N, K), (N, 1) or (1, 1) (broadcast). Scalars (learning rates, loss scales) come in the arrays' dtype (NumPy
# scalars: a float32 kernel computes in float32, tests/test_ptx.py). Every kernel name is a launcher (kernels/cuda.py's
# Launcher); linear_forward and linear_backward are host functions of launches, as lstm_forward. Each thread owns what
# it writes: no atomics, sums in a fixed order (a run repeats bit for bit; the embedding's scatter-add as on CPU).
from numba import cuda

from . import _math

from .cuda import THREADS, Launcher, _launch, _pointwise, add_bias, add_column_sums, gemm  # noqa: F401

# The optimizers' element updates of _math.py, compiled as CUDA device functions (as kernels/cuda.py does the gates').
_sgd_update = cuda.jit(device=True)(_math.sgd_update)
_adam_update = cuda.jit(device=True)(_math.adam_update)
_softmax_xent_row = cuda.jit(device=True)(_math.softmax_xent_row)
_mse_row = cuda.jit(device=True)(_math.mse_row)


def linear_forward(y, x, w, b):
    """y (N, O) = x (N, I) @ w.T (O, I) + b (O,), no bias when b has 0 elements."""
    gemm(y, x, w, 0, 1, 0)
    if b.shape[0] > 0:
        add_bias(y, b)


def linear_backward(dx, dw, db, dy, x, w):
    """dL/dy (N, O) in; writes dx (N, I) = dy @ w, adds dy.T @ x into dw (O, I) and the column sums of dy into db."""
    gemm(dx, dy, w, 0, 0, 0)
    gemm(dw, dy, x, 1, 0, 1)
    if db.shape[0] > 0:
        add_column_sums(db, dy)


@_launch(lambda y, w, idx: _pointwise(y.shape[0] * y.shape[1]))
def embedding_forward(y, w, idx):
    """y (N, E) = w[idx[n]] for each row n; w (V, E), idx (N,) in [0, V)."""
    N, E = y.shape
    k = cuda.grid(1)                            # one thread per element (n, e), e fastest: coalesced rows
    if k < N * E:
        n = k // E
        e = k - n * E
        y[n, e] = w[idx[n], e]


@_launch(lambda dw, dy, idx: _pointwise(dw.shape[0] * dw.shape[1]))
def embedding_backward(dw, dy, idx):
    """dw[idx[n]] += dy[n] for n = 0, 1, ... in order (repeated indices add up); dw (V, E), dy (N, E)."""
    V, E = dw.shape
    N = dy.shape[0]
    k = cuda.grid(1)                            # one thread per element (v, e) of dw: it scans idx, adding in n's order
    if k < V * E:                               # (O(V E N) reads of idx, broadcast within a warp: for the vocabularies
        v = k // E                              # of character models; no atomics, so CPU and GPU sums agree)
        e = k - v * E
        acc = dw[v, e]
        for n in range(N):
            if idx[n] == v:
                acc += dy[n, e]
        dw[v, e] = acc


@_launch(lambda loss, dz, z, y, w, scale: _pointwise(z.shape[0]))
def softmax_xent(loss, dz, z, y, w, scale):
    """Per row n: loss[n] = w_n (logsumexp(z[n]) - z[n, y[n]]), dz[n] = (softmax(z[n]) - onehot(y[n])) w_n scale; rows
    with w_n = 0 get 0 (y[n] unread)."""
    n = cuda.grid(1)                            # one thread per row: C classes in order
    if n < z.shape[0]:
        _softmax_xent_row(loss, dz, z, y, w, scale, n)


@_launch(lambda loss, dp, p, t, w, scale: _pointwise(p.shape[0]))
def mse(loss, dp, p, t, w, scale):
    """Per row n: loss[n] = sum_k w (p - t)^2, dp[n, k] = 2 w (p - t) scale; w (N or 1, K or 1) broadcast."""
    n = cuda.grid(1)                            # one thread per row: K is a few regression outputs
    if n < p.shape[0]:
        _mse_row(loss, dp, p, t, w, scale, n)


def _reduce_config(out, a, square):
    block = 1                                   # one block, a power of two <= THREADS: the tree below halves it
    while block < min(a.shape[0], THREADS):
        block *= 2
    return (1,), (block,)


@_launch(_reduce_config, lambda out, a, square: THREADS * out.dtype.itemsize)
def reduce_sum(out, a, square):
    """out (1,) += the sum of a (P,), or of a * a when square (the global gradient norm of clipping)."""
    P = a.shape[0]
    part = cuda.shared.array(THREADS, dtype=out.dtype)
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    acc = out.dtype.type(0.0)
    for i in range(tid, P, nt):                 # thread tid sums elements tid, tid + nt, ... (coalesced), then a tree
        acc += a[i] * a[i] if square else a[i]  # in shared memory: a fixed order, so the same sum every run
    part[tid] = acc
    cuda.syncthreads()
    s = nt // 2
    while s > 0:
        if tid < s:
            part[tid] += part[tid + s]
        cuda.syncthreads()
        s //= 2
    if tid == 0:
        out[0] += part[0]


@_launch(lambda a, s: _pointwise(a.shape[0]))
def scale(a, s):
    """a (P,) *= s."""
    i = cuda.grid(1)
    if i < a.shape[0]:
        a[i] *= s


@_launch(lambda a, v: _pointwise(a.shape[0]))
def fill(a, v):
    """a (P,) = v (zero_grad on the device, without copying zeros over from the host)."""
    i = cuda.grid(1)
    if i < a.shape[0]:
        a[i] = v


@_launch(lambda p, buf, g, lr, momentum, dampening1, weight_decay, nesterov, first: _pointwise(p.shape[0]))
def sgd_step(p, buf, g, lr, momentum, dampening1, weight_decay, nesterov, first):
    """One SGD step of p (P,) in place (torch.optim.SGD): g + weight_decay p; momentum buffer buf (P,) = g at the first
    step, else momentum buf + dampening1 g (dampening1 = 1 - dampening); Nesterov or plain momentum; p -= lr g."""
    i = cuda.grid(1)
    if i < p.shape[0]:
        zero = p.dtype.type(0.0)
        has_buf = momentum != zero              # without momentum buf may be empty: not read, not written
        pi, bi = _sgd_update(p[i], buf[i] if has_buf else zero, g[i], lr, momentum, dampening1, weight_decay,
                             nesterov, first, zero)
        p[i] = pi
        if has_buf:
            buf[i] = bi


@_launch(lambda p, m, v, g, lr_bc1, beta1, beta1c, beta2, beta2c, weight_decay, decay, sqrt_bc2, eps, decoupled:
         _pointwise(p.shape[0]))
def adam_step(p, m, v, g, lr_bc1, beta1, beta1c, beta2, beta2c, weight_decay, decay, sqrt_bc2, eps, decoupled):
    """One Adam(W) step of p (P,) in place (torch.optim.Adam/AdamW): m, v (P,) moment estimates; lr_bc1 = lr / (1 -
    beta1^t), beta1c = 1 - beta1, beta2c = 1 - beta2, decay = 1 - lr weight_decay, sqrt_bc2 = sqrt(1 - beta2^t)."""
    i = cuda.grid(1)
    if i < p.shape[0]:
        p[i], m[i], v[i] = _adam_update(p[i], m[i], v[i], g[i], lr_bc1, beta1, beta1c, beta2, beta2c, weight_decay,
                                        decay, sqrt_bc2, eps, decoupled, p.dtype.type(0.0))


# Every kernel of this file, in file order: the PTX check (tests/test_ptx.py) compiles each for float32 and float64.
KERNELS = (embedding_forward, embedding_backward, softmax_xent, mse, reduce_sum, scale, fill, sgd_step, adam_step)
