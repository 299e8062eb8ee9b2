# CPU kernels (numba.njit) of the training layers, losses and optimizers, twins of layers_cuda.py. Shape letters: N rows
# (the leading axes of a layer's or loss's input flattened, e.g. T*B), I input and O output features of a Linear, V
# vocabulary and E embedding size of an Embedding, C classes, K regression outputs, P elements of a parameter (any
# parameter flattened). Arrays are C-contiguous; weights as torch's: w (O, I), b (O,) (shape (0,): no bias), embedding
# w (V, E); idx (N,) and class targets y (N,) int64. Loss weights: w (N,) or (1,) (one weight for every row), and for
# mse (N, K), (N, 1) or (1, 1) (broadcast over the rows and features). Scalars (learning rates, loss scales) come in
# the arrays' dtype: a float32 kernel computes in float32.
# On "cpu" nblstm's objects run the NumPy code of _layers.py, losses.py and optim.py (the reference: one BLAS call or
# a few vectorized passes each); these kernels are the CPU side of the twin pairs, checked against that NumPy code and
# against the cuda kernels (tests/test_layers_cuda.py).
import numba
import numpy as np

from . import _math, refresh_cache_on_change

_jit = numba.njit(cache=True, error_model="numpy")


@_jit
def linear_forward(y, x, w, b):
    """y (N, O) = x (N, I) @ w.T (O, I) + b (O,), no bias when b has 0 elements."""
    np.dot(x, w.T, y)
    if b.shape[0] > 0:
        N, O = y.shape
        for n in range(N):
            for o in range(O):
                y[n, o] += b[o]


@_jit
def linear_backward(dx, dw, db, dy, x, w):
    """dL/dy (N, O) in; writes dx (N, I) = dy @ w, adds dy.T @ x into dw (O, I) and the column sums of dy into db."""
    np.dot(dy, w, dx)
    dw += np.dot(dy.T, x)
    if db.shape[0] > 0:
        N, O = dy.shape
        for n in range(N):                      # rows in order, as the cuda twin
            for o in range(O):
                db[o] += dy[n, o]


@_jit
def embedding_forward(y, w, idx):
    """y (N, E) = w[idx[n]] for each row n; w (V, E), idx (N,) in [0, V)."""
    N, E = y.shape
    for n in range(N):
        r = idx[n]
        for e in range(E):
            y[n, e] = w[r, e]


@_jit
def embedding_backward(dw, dy, idx):
    """dw[idx[n]] += dy[n] for n = 0, 1, ... in order (repeated indices add up); dw (V, E), dy (N, E)."""
    N, E = dy.shape
    for n in range(N):
        r = idx[n]
        for e in range(E):
            dw[r, e] += dy[n, e]


@_jit
def softmax_xent(loss, dz, z, y, w, scale):
    """Per row n: loss[n] = w_n (logsumexp(z[n]) - z[n, y[n]]), dz[n] = (softmax(z[n]) - onehot(y[n])) w_n scale; rows
    with w_n = 0 get 0 (y[n] unread)."""
    for n in range(z.shape[0]):
        _math.softmax_xent_row(loss, dz, z, y, w, scale, n)


@_jit
def mse(loss, dp, p, t, w, scale):
    """Per row n: loss[n] = sum_k w (p - t)^2, dp[n, k] = 2 w (p - t) scale; w (N or 1, K or 1) broadcast."""
    for n in range(p.shape[0]):
        _math.mse_row(loss, dp, p, t, w, scale, n)


@_jit
def reduce_sum(out, a, square):
    """out (1,) += the sum of a (P,), or of a * a when square (the global gradient norm of clipping)."""
    acc = out.dtype.type(0.0)
    for i in range(a.shape[0]):
        acc += a[i] * a[i] if square else a[i]
    out[0] += acc


@_jit
def scale(a, s):
    """a (P,) *= s."""
    for i in range(a.shape[0]):
        a[i] *= s


@_jit
def fill(a, v):
    """a (P,) = v (zero_grad on the device, without copying zeros over from the host)."""
    for i in range(a.shape[0]):
        a[i] = v


@_jit
def sgd_step(p, buf, g, lr, momentum, dampening1, weight_decay, nesterov, first):
    """One SGD step of p (P,) in place (torch.optim.SGD): g + weight_decay p; momentum buffer buf (P,) = g at the first
    step, else momentum buf + dampening1 g (dampening1 = 1 - dampening); Nesterov or plain momentum; p -= lr g."""
    zero = p.dtype.type(0.0)
    for i in range(p.shape[0]):
        has_buf = momentum != zero              # without momentum buf may be empty: not read, not written
        pi, bi = _math.sgd_update(p[i], buf[i] if has_buf else zero, g[i], lr, momentum, dampening1, weight_decay,
                                  nesterov, first, zero)
        p[i] = pi
        if has_buf:
            buf[i] = bi


@_jit
def adam_step(p, m, v, g, lr_bc1, beta1, beta1c, beta2, beta2c, weight_decay, decay, sqrt_bc2, eps, decoupled):
    """One Adam(W) step of p (P,) in place (torch.optim.Adam/AdamW): m, v (P,) moment estimates; lr_bc1 = lr / (1 -
    beta1^t), beta1c = 1 - beta1, beta2c = 1 - beta2, decay = 1 - lr weight_decay, sqrt_bc2 = sqrt(1 - beta2^t)."""
    zero = p.dtype.type(0.0)
    for i in range(p.shape[0]):
        p[i], m[i], v[i] = _math.adam_update(p[i], m[i], v[i], g[i], lr_bc1, beta1, beta1c, beta2, beta2c,
                                             weight_decay, decay, sqrt_bc2, eps, decoupled, zero)


refresh_cache_on_change([linear_forward, linear_backward, embedding_forward, embedding_backward, softmax_xent, mse,
                         reduce_sum, scale, fill, sgd_step, adam_step], [_math.__file__])
