# CPU kernels (numba.njit). Shape letters: T time steps, B batch, I input size, H hidden size (cells), P the size of
# the hidden state h: P = H, or the projection's size with w_hr (LSTMP). Arrays are C-contiguous and time-major:
# x (T, B, I), y (T, B, P); gates (.., B, 4H) hold the blocks i, f, g, o side by side; weights as torch: w_ih (4H, I),
# w_hh (4H, P), w_hr (P, H) (shape (0, H): no projection), b (4H,) = b_ih + b_hh; wp (3, H) the peephole weights
# w_ci, w_cf, w_co (zeros: no peepholes). lengths (B,) int64: sequence b runs steps t < lengths[b]; past its end its
# state is frozen, its y is zero, and its gradients pass the state's straight through.
# Tape of a forward: G (T, B, 4H) gate activations, C (T, B, H) cell states, TC (T, B, H) act(C), M (T, B, H)
# m = o * act(c) (the projection's input; without a projection M is y itself), and y. For inference (no tape) C, TC
# and M may be shorter in time: step t uses index t % length. C then has 2 steps, TC and M 1: c_t must not overwrite
# c_{t-1} in place, or LLVM's runtime alias check sends the pointwise loop to its scalar fallback (2.5x slower
# forward at T, B, I, H = 100, 32, 128, 128, measured); for the same reason the pointwise step's h, unused with a
# projection, goes to a scratch array rather than to m itself.
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
def cell_forward(G, c, tc, m, h, hw, c_prev, wp, lengths, t, act):
    """Pointwise step: G (B, 4H) pre-activations minus h@w_hh^T (= hw) in, activations out; writes c, act(c), m, h."""
    B, H = c.shape
    one = G.dtype.type(1.0)
    zero = G.dtype.type(0.0)
    pi, pf, po = wp[0], wp[1], wp[2]
    for b in range(B):
        cp, cb, tcb, mb, hb = c_prev[b], c[b], tc[b], m[b], h[b]
        if t >= lengths[b]:                     # finished: the cell state is carried, m (hence y) is zero
            for j in range(H):
                cb[j] = cp[j]
                tcb[j] = zero
                mb[j] = zero
            continue
        gi, gf, gg, go = G[b, :H], G[b, H:2 * H], G[b, 2 * H:3 * H], G[b, 3 * H:]       # (H,) views
        ri, rf, rg, ro = hw[b, :H], hw[b, H:2 * H], hw[b, 2 * H:3 * H], hw[b, 3 * H:]
        for j in range(H):
            gi[j], gf[j], gg[j], go[j], cb[j], tcb[j], mb[j] = _unit_forward(
                gi[j] + ri[j], gf[j] + rf[j], gg[j] + rg[j], go[j] + ro[j], cp[j], pi[j], pf[j], po[j], act, one,
                zero)
            hb[j] = mb[j]


@_jit
def cell_backward(dG, dc, dm, G, c_prev, tc, wp, lengths, t, act):
    """Pointwise step backward: dm (B, H) dL/dm_t, dc (B, H) dL/dc_t from t+1 in, dL/dc_{t-1} out; writes dG (B, 4H)."""
    B, H = dc.shape
    one = G.dtype.type(1.0)
    zero = G.dtype.type(0.0)
    pi, pf, po = wp[0], wp[1], wp[2]
    for b in range(B):
        if t >= lengths[b]:                     # finished: no gate gradient, dL/dc passes through
            dG[b, :] = zero
            continue
        gi, gf, gg, go = G[b, :H], G[b, H:2 * H], G[b, 2 * H:3 * H], G[b, 3 * H:]       # (H,) views
        di, df, dg, do = dG[b, :H], dG[b, H:2 * H], dG[b, 2 * H:3 * H], dG[b, 3 * H:]
        dcb, dmb, cp, tcb = dc[b], dm[b], c_prev[b], tc[b]
        for j in range(H):
            di[j], df[j], dg[j], do[j], dcb[j] = _unit_backward(
                dmb[j], dcb[j], gi[j], gf[j], gg[j], go[j], cp[j], tcb[j], pi[j], pf[j], po[j], act, one, zero)


@_jit
def copy_running_rows(out, a, lengths, t, accumulate):
    """out[r] = a[r] (+= when accumulate), both (B, N), for the sequences r still running at step t (t < lengths[r])."""
    for r in range(out.shape[0]):
        if t < lengths[r]:
            if accumulate:
                out[r] += a[r]
            else:
                out[r] = a[r]


@_jit
def peephole_grads(dwp, dG, C, c0):
    """dwp (3, H) += the peephole gradients sum_t,b of dai * c_{t-1}, daf * c_{t-1}, dao * c_t (dG the tape's dL/da)."""
    T, B, H = C.shape
    for t in range(T):
        c_prev = c0 if t == 0 else C[t - 1]
        for b in range(B):
            di, df, do, cp, cb = dG[t, b, :H], dG[t, b, H:2 * H], dG[t, b, 3 * H:], c_prev[b], C[t, b]
            for j in range(H):
                dwp[0, j] += di[j] * cp[j]
                dwp[1, j] += df[j] * cp[j]
                dwp[2, j] += do[j] * cb[j]


@_jit
def _forward_steps(y, h_n, C, TC, M, G, hw, c0, w_hhT, w_hr, wp, lengths, act):
    """The time loop of lstm_forward, G holding the input products; w_hhT (P, 4H) is w_hh^T in C or F order."""
    T = G.shape[0]
    nC, nT, nM = C.shape[0], TC.shape[0], M.shape[0]
    proj = w_hr.shape[0] > 0
    h_scratch = np.empty(C.shape[1:], C.dtype) if proj else h_n     # (B, H): the pointwise step's h, unused here
    for t in range(T):
        c_prev = c0 if t == 0 else C[(t - 1) % nC]
        np.dot(h_n, w_hhT, hw)                  # recurrent product h_{t-1} @ w_hh^T
        if proj:                                # m to the tape, then h_t = m w_hr^T, the running state of running rows
            m = M[t % nM]
            cell_forward(G[t], C[t % nC], TC[t % nT], m, h_scratch, hw, c_prev, wp, lengths, t, act)
            np.dot(m, w_hr.T, y[t])
            copy_running_rows(h_n, y[t], lengths, t, False)
        else:                                   # m is h_t: into y and the running state
            cell_forward(G[t], C[t % nC], TC[t % nT], y[t], h_n, hw, c_prev, wp, lengths, t, act)


@_jit
def lstm_forward(y, h_n, c_n, G, C, TC, M, hw, x, h0, c0, w_ih, w_hh, b, wp, w_hr, lengths, act):
    """One layer over a sequence: writes y (T, B, P), h_n (B, P), c_n (B, H) and the tape G, C, TC, M; hw (B, 4H) is scratch."""
    T, B, I = x.shape
    H = c0.shape[1]
    G2 = G.reshape((T * B, 4 * H))
    np.dot(x.reshape((T * B, I)), w_ih.T, G2)   # the input product of all steps: one GEMM
    for r in range(T * B):
        for k in range(4 * H):
            G2[r, k] += b[k]
    h_n[:] = h0                                 # h_n carries the running state
    # For H <= 128, w_hh^T copied to C order: OpenBLAS takes h @ w_hhT up to 2x faster than h @ w_hh.T there
    # (B=1, H=32: 0.17 vs 0.30 us; B=16, H=64: 4.6 vs 9.9 us). For larger H both are as fast, and the transposing
    # copy is not free (0.3 ms at H=256, 3.5 ms at H=512). Two calls, not one variable: C and F order don't unify.
    if H <= 128:
        _forward_steps(y, h_n, C, TC, M, G, hw, c0, np.ascontiguousarray(w_hh.T), w_hr, wp, lengths, act)
    else:
        _forward_steps(y, h_n, C, TC, M, G, hw, c0, w_hh.T, w_hr, wp, lengths, act)
    c_n[:] = C[(T - 1) % C.shape[0]]            # finished rows carried their state to the last step


@_jit
def lstm_backward(dx, dh0, dc0, dw_ih, dw_hh, db, dwp, dw_hr, dG, dH, dm, dhw, dy, dh_n, dc_n, x, h0, c0, w_ih,
                  w_hh, wp, w_hr, G, C, TC, M, y, lengths, act):
    """BPTT through one layer: writes dx, dh0, dc0; adds into dw_ih, dw_hh, db, dwp (3, H) unless it has 0 rows, dw_hr;
    scratch: dG (T, B, 4H), dH (T, B, P) and dm (B, H) with a projection, dhw (B, P)."""
    T, B, I = x.shape
    H = c0.shape[1]
    P = h0.shape[1]
    proj = w_hr.shape[0] > 0
    all_run = T                                 # steps t < all_run have every sequence running
    for r in range(B):
        all_run = min(all_run, lengths[r])
    dh0[:] = dh_n                               # dh0, dc0 carry dL/dh_t, dL/dc_t back through time
    dc0[:] = dc_n
    for t in range(T - 1, -1, -1):
        copy_running_rows(dh0, dy[t], lengths, t, True)
        c_prev = c0 if t == 0 else C[t - 1]
        if proj:                                # dL/dm_t = dL/dh_t @ w_hr
            dH[t] = dh0
            np.dot(dh0, w_hr, dm)
            cell_backward(dG[t], dc0, dm, G[t], c_prev, TC[t], wp, lengths, t, act)
        else:
            cell_backward(dG[t], dc0, dh0, G[t], c_prev, TC[t], wp, lengths, t, act)
        if t < all_run:
            np.dot(dG[t], w_hh, dh0)            # dL/dh_{t-1} = dG_t @ w_hh
        else:                                   # ... for the running sequences; a frozen state passes it through
            np.dot(dG[t], w_hh, dhw)
            copy_running_rows(dh0, dhw, lengths, t, False)
    # Weight gradients batched over all steps after the loop: GEMMs instead of 3T small ones. dG is zero past each
    # sequence's end, and where it is not, y[t - 1] is h_{t-1}.
    dG2 = dG.reshape((T * B, 4 * H))
    np.dot(dG2, w_ih, dx.reshape((T * B, I)))
    dw_ih += np.dot(dG2.T, x.reshape((T * B, I)))
    dw_hh += np.dot(dG[0].T, h0)
    if T > 1:
        dw_hh += np.dot(dG2[B:].T, y[:T - 1].reshape(((T - 1) * B, P)))
    for r in range(T * B):
        for k in range(4 * H):
            db[k] += dG2[r, k]
    if dwp.shape[0] > 0:
        peephole_grads(dwp, dG, C, c0)
    if proj:                                    # M is zero past each sequence's end
        dw_hr += np.dot(dH.reshape((T * B, P)).T, M.reshape((T * B, H)))


@_jit
def copy_steps(out, a, out_col, a_col, n, lengths, reverse, accumulate):
    """out[t, b, out_col:out_col + n] (+)= a[t', b, a_col:a_col + n], t' = lengths[b]-1-t for t < lengths[b] when
    reverse, else t; out, a (T, B, .): a reverse-direction layer's time reversal, each sequence from its own end."""
    T, B = a.shape[0], a.shape[1]
    for t in range(T):
        for b in range(B):
            s = lengths[b] - 1 - t if reverse and t < lengths[b] else t
            if accumulate:
                out[t, b, out_col:out_col + n] += a[s, b, a_col:a_col + n]
            else:
                out[t, b, out_col:out_col + n] = a[s, b, a_col:a_col + n]


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
        copy_running_rows(dh0, dhw, lengths, t, False)  # a frozen state passes dL/dh straight through
    dA2 = dA.reshape((T * B, H))
    np.dot(dA2, w_ih, dx.reshape((T * B, I)))
    dw_ih += np.dot(dA2.T, x.reshape((T * B, I)))
    dw_hh += np.dot(dA[0].T, h0)
    if T > 1:                                   # y[t-1] is h_{t-1} wherever dA[t] is not zero
        dw_hh += np.dot(dA2[B:].T, y[:T - 1].reshape(((T - 1) * B, H)))
    for r in range(T * B):
        for k in range(H):
            db[k] += dA2[r, k]


refresh_cache_on_change([cell_forward, cell_backward, copy_running_rows, peephole_grads, _forward_steps, lstm_forward,
                         lstm_backward, copy_steps, rnn_cell_forward,
                         rnn_cell_backward, rnn_forward, rnn_backward], [_math.__file__])
