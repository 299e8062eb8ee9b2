# CPU kernels (numba.njit). Shape letters: T time steps, B batch, I input size, H hidden size.
# Arrays are C-contiguous and time-major: x (T, B, I), y (T, B, H); gates (.., B, 4H) hold the blocks
# i, f, g, o side by side; weights as torch: w_ih (4H, I), w_hh (4H, H), b (4H,) = b_ih + b_hh.
# Tape of a forward: G (T, B, 4H) gate activations, C (T, B, H) cell states, TC (T, B, H) act(C),
# and y. For inference the tape's C and TC have length 1 in time and are overwritten each step.
# Matrix products go to BLAS through np.dot (with out=, so nothing is allocated in the time loop).
# Pointwise loops run over one gate block's row at a time (views gi, gf, gg, go of length H): indexed by the
# loop counter alone, they vectorize; G[b, 2 * H + j] indexing does not (numba's negative-index wraparound).
import numba
import numpy as np

from . import _math, refresh_cache_on_change

# error_model="numpy": no ZeroDivisionError test before each division (a branch that stops vectorization).
# No fastmath: "contract" (FMA) saves 20% of the pointwise time (about 1% of a layer), but with it the no-tape
# forward, loaded from numba's cache, differed from the taped one in the last bit; they must be equal bit for bit
# (tests/test_kernels.py::test_inference_forward_equals_taped_forward).
_jit = numba.njit(cache=True, error_model="numpy")
_unit_forward = _math.unit_forward
_unit_backward = _math.unit_backward


@_jit
def cell_forward(G, c, tc, h, hw, c_prev, act):
    """Pointwise step: G (B, 4H) pre-activations minus h@w_hh^T (= hw) in, activations out; writes c, act(c), h."""
    B, H = c.shape
    one = G.dtype.type(1.0)
    zero = G.dtype.type(0.0)
    for b in range(B):
        gi, gf, gg, go = G[b, :H], G[b, H:2 * H], G[b, 2 * H:3 * H], G[b, 3 * H:]       # (H,) views
        ri, rf, rg, ro = hw[b, :H], hw[b, H:2 * H], hw[b, 2 * H:3 * H], hw[b, 3 * H:]
        cp, cb, tcb, hb = c_prev[b], c[b], tc[b], h[b]
        for j in range(H):
            gi[j], gf[j], gg[j], go[j], cb[j], tcb[j], hb[j] = _unit_forward(
                gi[j] + ri[j], gf[j] + rf[j], gg[j] + rg[j], go[j] + ro[j], cp[j], act, one, zero)


@_jit
def cell_backward(dG, dc, dh, G, c_prev, tc, act):
    """Pointwise step backward: dh (B, H) total dL/dh_t, dc (B, H) dL/dc_t from t+1 in, dL/dc_{t-1} out; writes dG (B, 4H)."""
    B, H = dc.shape
    one = G.dtype.type(1.0)
    zero = G.dtype.type(0.0)
    for b in range(B):
        gi, gf, gg, go = G[b, :H], G[b, H:2 * H], G[b, 2 * H:3 * H], G[b, 3 * H:]       # (H,) views
        di, df, dg, do = dG[b, :H], dG[b, H:2 * H], dG[b, 2 * H:3 * H], dG[b, 3 * H:]
        dcb, dhb, cp, tcb = dc[b], dh[b], c_prev[b], tc[b]
        for j in range(H):
            di[j], df[j], dg[j], do[j], dcb[j] = _unit_backward(
                dhb[j], dcb[j], gi[j], gf[j], gg[j], go[j], cp[j], tcb[j], act, one, zero)


@_jit
def _forward_steps(y, C, TC, G, hw, h0, c0, w_hhT, keep, act):
    """The time loop of lstm_forward, G holding the input products; w_hhT (H, 4H) is w_hh^T in C or F order."""
    for t in range(G.shape[0]):
        h_prev = h0 if t == 0 else y[t - 1]
        c_prev = c0 if t == 0 else C[(t - 1) * keep]
        np.dot(h_prev, w_hhT, hw)               # recurrent product h_{t-1} @ w_hh^T
        cell_forward(G[t], C[t * keep], TC[t * keep], y[t], hw, c_prev, act)


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
    # For H <= 128, w_hh^T copied to C order: OpenBLAS takes h @ w_hhT up to 2x faster than h @ w_hh.T there
    # (B=1, H=32: 0.17 vs 0.30 us; B=16, H=64: 4.6 vs 9.9 us). For larger H both are as fast, and the transposing
    # copy is not free (0.3 ms at H=256, 3.5 ms at H=512). Two calls, not one variable: C and F order don't unify.
    if H <= 128:
        _forward_steps(y, C, TC, G, hw, h0, c0, np.ascontiguousarray(w_hh.T), keep, act)
    else:
        _forward_steps(y, C, TC, G, hw, h0, c0, w_hh.T, keep, act)
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


# Vanilla (Elman) RNN, torch.nn.RNN: h_t = act(x_t w_ih^T + h_{t-1} w_hh^T + b), w_ih (H, I), w_hh (H, H), b (H,).
# Sequence r runs lengths[r] steps: past its end y is zero and its state frozen. The tape is y itself.

@_jit
def rnn_cell_forward(y, h, hw, b, lengths, t, act):
    """Pointwise RNN step: y (B, H) input product in, act(y + hw + b) out (zero past lengths); h (B, H) running state."""
    B, H = y.shape
    one = y.dtype.type(1.0)
    zero = y.dtype.type(0.0)
    for r in range(B):
        if t < lengths[r]:
            for j in range(H):
                v = _math.cell_act(y[r, j] + hw[r, j] + b[j], act, one, zero)
                y[r, j] = v
                h[r, j] = v
        else:
            for j in range(H):
                y[r, j] = zero


@_jit
def rnn_cell_backward(da, dh, dy, y, lengths, t, act):
    """Pointwise RNN step backward: da (B, H) = (dy + dh) act'(y) for running sequences, zero past lengths."""
    B, H = da.shape
    one = y.dtype.type(1.0)
    zero = y.dtype.type(0.0)
    for r in range(B):
        for j in range(H):
            da[r, j] = (dy[r, j] + dh[r, j]) * _math.act_grad(y[r, j], act, one, zero) if t < lengths[r] else zero


@_jit
def rnn_forward(y, h_n, hw, x, h0, w_ih, w_hh, b, lengths, act):
    """Elman RNN over a sequence: writes y (T, B, H) (zero past lengths) and h_n (B, H); hw (B, H) is scratch."""
    T, B, I = x.shape
    H = h0.shape[1]
    np.dot(x.reshape((T * B, I)), w_ih.T, y.reshape((T * B, H)))   # the input product of all steps: one GEMM
    h_n[:] = h0                                 # h_n carries the running state
    for t in range(T):
        np.dot(h_n, w_hh.T, hw)                 # recurrent product h_{t-1} @ w_hh^T
        rnn_cell_forward(y[t], h_n, hw, b, lengths, t, act)


@_jit
def rnn_backward(dx, dh0, dw_ih, dw_hh, db, dA, dhw, dy, dh_n, x, h0, w_ih, w_hh, y, lengths, act):
    """BPTT through an Elman RNN: writes dx, dh0; adds into dw_ih, dw_hh, db; dA (T, B, H), dhw (B, H) are scratch."""
    T, B, I = x.shape
    H = h0.shape[1]
    dh0[:] = dh_n                               # dh0 carries dL/dh_t back through time
    for t in range(T - 1, -1, -1):
        rnn_cell_backward(dA[t], dh0, dy[t], y[t], lengths, t, act)
        np.dot(dA[t], w_hh, dhw)                # dL/dh_{t-1} = dA_t @ w_hh for the running sequences;
        for r in range(B):                      # a frozen state passes dL/dh straight through
            if t < lengths[r]:
                dh0[r, :] = dhw[r, :]
    dA2 = dA.reshape((T * B, H))
    np.dot(dA2, w_ih, dx.reshape((T * B, I)))
    dw_ih += np.dot(dA2.T, x.reshape((T * B, I)))
    dw_hh += np.dot(dA[0].T, h0)
    if T > 1:                                   # y[t-1] is h_{t-1} wherever dA[t] is not zero
        dw_hh += np.dot(dA2[B:].T, y[:T - 1].reshape(((T - 1) * B, H)))
    for r in range(T * B):
        for k in range(H):
            db[k] += dA2[r, k]


refresh_cache_on_change([cell_forward, cell_backward, _forward_steps, lstm_forward, lstm_backward, rnn_cell_forward,
                         rnn_cell_backward, rnn_forward, rnn_backward], [_math.__file__])
