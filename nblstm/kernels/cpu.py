# CPU kernels (numba.njit). Shape letters: T time steps, B batch, I input size, H hidden size.
# Arrays are C-contiguous and time-major: x (T, B, I), y (T, B, H); gates (.., B, 4H) hold the blocks
# i, f, g, o side by side; weights as torch: w_ih (4H, I), w_hh (4H, H), b (4H,) = b_ih + b_hh.
# Tape of a forward: G (T, B, 4H) gate activations, C (T, B, H) cell states, TC (T, B, H) act(C),
# and y. For inference the tape's C and TC have length 1 in time and are overwritten each step.
# Matrix products go to BLAS through np.dot (with out=, so nothing is allocated in the time loop).
import numba
import numpy as np

from . import _math, refresh_cache_on_change

_jit = numba.njit(cache=True)
_unit_forward = _math.unit_forward
_unit_backward = _math.unit_backward


@_jit
def cell_forward(G, c, tc, h, hw, c_prev, act):
    """Pointwise step: G (B, 4H) pre-activations minus h@w_hh^T (= hw) in, activations out; writes c, act(c), h."""
    B, H = c.shape
    one = G.dtype.type(1.0)
    zero = G.dtype.type(0.0)
    for b in range(B):
        for j in range(H):
            i, f, g, o, cn, tcn, hn = _unit_forward(
                G[b, j] + hw[b, j], G[b, H + j] + hw[b, H + j],
                G[b, 2 * H + j] + hw[b, 2 * H + j], G[b, 3 * H + j] + hw[b, 3 * H + j],
                c_prev[b, j], act, one, zero)
            G[b, j] = i
            G[b, H + j] = f
            G[b, 2 * H + j] = g
            G[b, 3 * H + j] = o
            c[b, j] = cn
            tc[b, j] = tcn
            h[b, j] = hn


@_jit
def cell_backward(dG, dc, dh, G, c_prev, tc, act):
    """Pointwise step backward: dh (B, H) total dL/dh_t, dc (B, H) dL/dc_t from t+1 in, dL/dc_{t-1} out; writes dG (B, 4H)."""
    B, H = dc.shape
    one = G.dtype.type(1.0)
    zero = G.dtype.type(0.0)
    for b in range(B):
        for j in range(H):
            dai, daf, dag, dao, dcp = _unit_backward(
                dh[b, j], dc[b, j], G[b, j], G[b, H + j], G[b, 2 * H + j], G[b, 3 * H + j],
                c_prev[b, j], tc[b, j], act, one, zero)
            dG[b, j] = dai
            dG[b, H + j] = daf
            dG[b, 2 * H + j] = dag
            dG[b, 3 * H + j] = dao
            dc[b, j] = dcp


@_jit
def lstm_forward(y, h_n, c_n, G, C, TC, hw, x, h0, c0, w_ih, w_hh, b, act):
    """One layer over a sequence: writes y (T, B, H), h_n, c_n (B, H) and the tape G, C, TC; hw (B, 4H) is scratch."""
    T, B, I = x.shape
    H = h0.shape[1]
    keep = 1 if C.shape[0] == T else 0          # 0: inference, C and TC hold one step
    G2 = G.reshape((T * B, 4 * H))
    np.dot(x.reshape((T * B, I)), w_ih.T, G2)   # the input product of all steps: one GEMM
    for r in range(T * B):
        for k in range(4 * H):
            G2[r, k] += b[k]
    for t in range(T):
        h_prev = h0 if t == 0 else y[t - 1]
        c_prev = c0 if t == 0 else C[(t - 1) * keep]
        np.dot(h_prev, w_hh.T, hw)              # recurrent product h_{t-1} @ w_hh^T
        cell_forward(G[t], C[t * keep], TC[t * keep], y[t], hw, c_prev, act)
    h_n[:] = y[T - 1]
    c_n[:] = C[(T - 1) * keep]


@_jit
def lstm_backward(dx, dh0, dc0, dw_ih, dw_hh, db, dG, dy, dh_n, dc_n, x, h0, c0, w_ih, w_hh, G, C, TC, y, act):
    """BPTT through one layer: writes dx, dh0, dc0; adds into dw_ih, dw_hh, db (4H,); dG (T, B, 4H) is scratch."""
    T, B, I = x.shape
    H = h0.shape[1]
    dh0[:] = dh_n                               # dh0, dc0 carry dL/dh_t, dL/dc_t back through time
    dc0[:] = dc_n
    for t in range(T - 1, -1, -1):
        dh0 += dy[t]
        c_prev = c0 if t == 0 else C[t - 1]
        cell_backward(dG[t], dc0, dh0, G[t], c_prev, TC[t], act)
        np.dot(dG[t], w_hh, dh0)                # dL/dh_{t-1} = dG_t @ w_hh
    # Weight gradients batched over all steps after the loop: three GEMMs instead of 3T small ones.
    dG2 = dG.reshape((T * B, 4 * H))
    np.dot(dG2, w_ih, dx.reshape((T * B, I)))
    dw_ih += np.dot(dG2.T, x.reshape((T * B, I)))
    dw_hh += np.dot(dG[0].T, h0)
    if T > 1:
        dw_hh += np.dot(dG2[B:].T, y[:T - 1].reshape(((T - 1) * B, H)))
    for r in range(T * B):
        for k in range(4 * H):
            db[k] += dG2[r, k]


refresh_cache_on_change([cell_forward, cell_backward, lstm_forward, lstm_backward], [_math.__file__])
