# CPU kernels (numba.njit). Shape letters: T time steps, B batch, I input size, H hidden size (cells), P the size of
# the hidden state h: P = H, or the projection's size with w_hr (LSTMP). Arrays are C-contiguous and time-major:
# x (T, B, I), y (T, B, P); gates (.., B, 4H) hold the blocks i, f, g, o side by side; weights as torch: w_ih (4H, I),
# w_hh (4H, P), w_hr (P, H) (shape (0, H): no projection), b (4H,) = b_ih + b_hh; wp (3, H) the peephole weights
# w_ci, w_cf, w_co (zeros: no peepholes). lengths (B,) int64: sequence b runs steps t < lengths[b]; past its end its
# state is frozen, its y is zero, and its gradients pass the state's straight through.
# Tape of a forward: G (T, B, 4H) gate activations, C (T, B, H) cell states, TC (T, B, H) act(C), M (T, B, H)
# m = o * act(c) (the projection's input; without a projection M is y itself), and y. For inference (no tape) C, TC
# and M may be shorter in time: step t uses index t % length (and G then holds one step's gates only when the input
# products go step by step: FUSED_MIN_ROWS). C then has 2 steps, TC and M 1: c_t must not overwrite
# c_{t-1} in place, or LLVM's runtime alias check sends the pointwise loop to its scalar fallback (2.5x slower
# forward at T, B, I, H = 100, 32, 128, 128, measured); for the same reason the pointwise step's h, unused with a
# projection, goes to a scratch array rather than to m itself.
# The LSTM layers' matrix products are nblstm's own (_gemm.gemm, _gemm.gemm_packed: offsets and strides into the
# arrays, w_hh packed once a call; _gemm.gemm_row for a step's one row), but for the projection's (w_hr: np.dot); the
# RNN's go to the BLAS through np.dot.
# The pointwise step runs row by row on 1-d views of its arrays, from offsets (_cell_forward_row, _cell_backward_row):
# float32 units in explicit vectors (_vec.py), the rest in loops with unsigned indices (signed ones keep numba's
# negative-index wraparound, which stops vectorization).
import numba
import numpy as np

from . import _blas, _gemm, _math, _vec, refresh_cache_on_change

# error_model="numpy": no ZeroDivisionError test before each division (a branch that stops vectorization).
# No fastmath: "contract" (FMA) saves 20% of the pointwise time (about 1% of a layer), but with it the no-tape
# forward, loaded from numba's cache, differed from the taped one in the last bit; they must be equal bit for bit
# (tests/test_kernels.py::test_inference_forward_equals_taped_forward).
_jit = numba.njit(cache=True, error_model="numpy")
_unit_gates = _math.unit_gates
_unit_state = _math.unit_state
_unit_backward = _math.unit_backward
_flat = _vec.flat                               # a (C-contiguous) as a 1-d view


@_jit
def cell_forward(G, c, tc, m, h, hw, c_prev, wp, lengths, t, act):
    """Pointwise step: G (B, 4H) pre-activations minus h@w_hh^T (= hw) in, activations out; writes c, act(c), m, h."""
    B, H = c.shape
    one = G.dtype.type(1.0)
    zero = G.dtype.type(0.0)
    Gf, cf, tcf, mf, hf, hwf, cpf, wpf = _flat(G), _flat(c), _flat(tc), _flat(m), _flat(h), _flat(hw), _flat(c_prev), \
        _flat(wp)
    for b in range(B):
        if t < lengths[b]:
            _cell_forward_row(Gf, b * 4 * H, cf, b * H, tcf, b * H, mf, b * H, hf, b * H, hwf, b * 4 * H, cpf, b * H,
                              wpf, act, one, zero)
            continue
        cp, cb, tcb, mb = c_prev[b], c[b], tc[b], m[b]
        for j in range(H):                      # finished: the cell state is carried, m (hence y) is zero
            cb[j] = cp[j]
            tcb[j] = zero
            mb[j] = zero


@_jit
def _cell_forward_row(g, go, c, co, tc, tco, m, mo, h, ho, r, ro, cp, cpo, wp, act, one, zero):
    """The pointwise step of one running row on flat (1-d) arrays from offsets (cell_forward's rows; at B = 1 the time
    loop calls it directly): gate block k of unit j at g[go + k H + j], its recurrent part at r[ro + k H + j]; c_t,
    act(c_t), m, h and c_{t-1} at c[co + j], tc[tco + j], m[mo + j], h[ho + j], cp[cpo + j]; wp flat (3H).
    Why so: flat arrays that the time loop flattens once, because views of a step's rows (C[t, b], ...) cost ~90 ns
    a step in reference counts (a trivial step: 111 against 22 ns); float32 units in explicit vectors (_vec.forward_row,
    whose comment says why), the rest (float64, units past the last whole vector) here, with unsigned indices (no
    negative-index wraparound). All rows of B > 1 this way against the per-unit loops over views: forward 2-6 % faster
    at (100, 16, 64, 64) and (100, 32, 128, 128), backward within 1 % (measured)."""
    H = wp.shape[0] // 3
    done = _vec.forward_row(g, go, r, ro, cp, cpo, wp, H, c, co, tc, tco, m, mo, h, ho, act)
    H, done = np.uint64(H), np.uint64(done)
    H2 = H + H
    H3 = H2 + H
    go, co, tco, mo, ho, ro, cpo = (np.uint64(go), np.uint64(co), np.uint64(tco), np.uint64(mo), np.uint64(ho),
                                    np.uint64(ro), np.uint64(cpo))
    for j in range(done, H):
        g[go + j], g[go + H + j], g[go + H2 + j] = _unit_gates(
            g[go + j] + r[ro + j], g[go + H + j] + r[ro + H + j], g[go + H2 + j] + r[ro + H2 + j], cp[cpo + j], wp[j],
            wp[H + j], one)
    for j in range(done, H):
        g[go + H3 + j], c[co + j], tc[tco + j], m[mo + j] = _unit_state(
            g[go + j], g[go + H + j], g[go + H2 + j], g[go + H3 + j] + r[ro + H3 + j], cp[cpo + j], wp[H2 + j], act,
            one, zero)
        h[ho + j] = m[mo + j]


@_jit
def _cell_backward_row(dg, dgo, dc, dco, dm, dmo, g, go, cp, cpo, tc, tco, wp, act, one, zero):
    """The pointwise step backward of one running row on flat arrays from offsets (cell_backward's rows; at B = 1
    the time loop calls it directly), as _cell_forward_row: dL/dm_t at dm[dmo + j],
    dL/dc_t at dc[dco + j] (replaced by dL/dc_{t-1}), gate block k of unit j at g[go + k H + j], c_{t-1} at
    cp[cpo + j], act(c_t) at tc[tco + j]; writes dg[dgo + k H + j]. float32 in vectors (_vec.backward_row)."""
    H = wp.shape[0] // 3
    done = _vec.backward_row(dg, dgo, dc, dco, dm, dmo, g, go, cp, cpo, tc, tco, wp, H, act)
    H, done = np.uint64(H), np.uint64(done)
    H2 = H + H
    H3 = H2 + H
    dgo, dco, dmo, go, cpo, tco = (np.uint64(dgo), np.uint64(dco), np.uint64(dmo), np.uint64(go), np.uint64(cpo),
                                   np.uint64(tco))
    for j in range(done, H):
        dg[dgo + j], dg[dgo + H + j], dg[dgo + H2 + j], dg[dgo + H3 + j], dc[dco + j] = _unit_backward(
            dm[dmo + j], dc[dco + j], g[go + j], g[go + H + j], g[go + H2 + j], g[go + H3 + j], cp[cpo + j],
            tc[tco + j], wp[j], wp[H + j], wp[H2 + j], act, one, zero)


@_jit
def cell_backward(dG, dc, dm, G, c_prev, tc, wp, lengths, t, act):
    """Pointwise step backward: dm (B, H) dL/dm_t, dc (B, H) dL/dc_t from t+1 in, dL/dc_{t-1} out; writes dG (B, 4H)."""
    B, H = dc.shape
    one = G.dtype.type(1.0)
    zero = G.dtype.type(0.0)
    dGf, dcf, dmf, Gf, cpf, tcf, wpf = _flat(dG), _flat(dc), _flat(dm), _flat(G), _flat(c_prev), _flat(tc), _flat(wp)
    for b in range(B):
        if t < lengths[b]:
            _cell_backward_row(dGf, b * 4 * H, dcf, b * H, dmf, b * H, Gf, b * 4 * H, cpf, b * H, tcf, b * H, wpf, act,
                               one, zero)
        else:                                   # finished: no gate gradient, dL/dc passes through
            dG[b, :] = zero


@_jit
def copy_running_rows(out, a, lengths, t, accumulate):
    """out[r] = a[r] (+= when accumulate), both (B, N), for the sequences r still running at step t (t < lengths[r])."""
    for r in range(out.shape[0]):              # explicit loops: `out[r] += a[r]` took 42 ns a step at (B, P) = (1, 32),
        if t < lengths[r]:                      # these 4 (measured)
            o, s = out[r], a[r]
            if accumulate:
                for j in range(o.shape[0]):
                    o[j] += s[j]
            else:
                for j in range(o.shape[0]):
                    o[j] = s[j]


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


# Splitting a layer over numba's threads. The batch rows of a layer are independent through time, so the rows can be
# cut into chunks, each running the whole time loop on its own: no barrier inside the loop, the pointwise step on all
# cores; the chunks go to numba's threads (prange). Each step's product of a chunk is _gemm.gemm_packed against
# w_hh packed once for the whole call (forward: w_hh^T; backward: w_hh). The time loop splits from SPLIT_MIN_WORK
# multiply-adds per recurrent step (B * 4H * P) and B >= 2; the input product and the weight gradients, big GEMMs, are
# split by rows of their results whenever the loop is, and on their own from GEMM_SPLIT_MIN multiply-adds (a long
# sequence at B = 1).
# During a split the BLAS runs one thread per call (_blas.blas_threads; _blas sets one thread when it loads anyway), so
# only numba's pool runs. With one numba thread, or a BLAS whose thread count cannot be set, everything runs on the
# calling thread with the BLAS's own threads, as the same functions on rows 0..B. If a split raises, the BLAS's thread
# count is not restored.
# With FUSED_MIN_ROWS rows a chunk or more, the forward's chunks compute their input products step by step
# (_forward_rows given w_in = w_ih^T packed once: x_t's rows @ w_in, plus b; each element the same chain as in the
# product over all steps, so the same bits) instead of one product over all steps before the loop: a step's gates are
# in cache when the pointwise step reads them, and without a tape (C shorter than T) the loop keeps G's first step
# only, never writing T B 4H gates to memory. Inference forward against the product of all steps (2f7abb7), calls
# alternating in one process (benchmarks/bench_versions.py): (100,64,256,256) 1.02-1.05, (50,64,512,512) 1.03,
# (100,64,128,128) 1.02-1.04, (100,128,64,64) 1.02-1.10, (100,32,128,128) 0.98-1.04; f+b within 1 %. With fewer rows
# a chunk (FUSED_MIN_ROWS = 1) the small products lost: 1 row (100,2,64,64) 0.74, 4 (100,4,128,128) 0.84, 8
# (100,16,256,64) 0.89 (measured).
# A layer whose rows are not split (n = 1: B = 1, or less work a step) but which has numba threads to spare runs in
# time chunks instead (_overlap_chunks): the loop over chunk c on one thread, beside it on another the input products
# of chunk c+1 (forward; the loop needs them next) or the weight gradients of chunk c+1 (backward; the loop has just
# made its dG), one parallel region a chunk (_forward_overlap, _backward_overlap). At (1000,1,32,32), 8 chunks: f+b
# 1232 -> 845 us, the backward kernel 663 -> 371 us (measured); the weight gradients are then summed chunk by chunk
# (other rounding than one GEMM). The two parallel functions took the cold compile of a first f+b from 30 to 41 s;
# merging all parallel functions into one per direction did not shorten it (46 s, measured). A chunk needs at least
# OVERLAP_MIN_STEPS steps and OVERLAP_MIN_WORK multiply-adds of those products, or a parallel region (~1.5 us, and a
# time loop 5-19 % slower inside one, the other thread spinning) costs more than it hides. Kernels' f+b in us at
# B = 1, forward and backward alternating as in training, (K forward, K backward), with the vector pointwise step and
# the one-row product (gemm_row), medians of 5 alternating blocks: (100,1,32,32) (1, 1) 78.7 / 88.6, (3, 3) 92.0 /
# 97.2, (2, 2) 83.1; (100,1,64,64) (1, 1) 200.7 / 207.5 / 246.6 / 245.1, (1, 3) 171.2, (3, 3) 169.0 / 193.5 /
# 215.2 / 218.4; (1000,1,32,32) (1, 1) 552.0 / 598.9 / 678.9 / 686.2, (8, 8) 413.1 / 479.4 / 725.6 / 515.9, (3, 8)
# 708.5 against (1, 1) 654.9 (the VM's second core is at times much slower: then any split loses).
SPLIT_MIN_WORK = 1 << 15
GEMM_SPLIT_MIN = 1 << 22
OVERLAP_CHUNKS = 8
OVERLAP_MIN_STEPS = 32
OVERLAP_MIN_WORK = 1 << 20
FUSED_MIN_ROWS = 16


@_jit
def _parts(rows, work, least):
    """Parts to split `rows` independent rows of `work` multiply-adds into: one per numba thread (at most `rows`), or
    1 with one thread, one row, or less work than `least`."""
    threads = _blas.numba_threads()
    if rows < 2 or threads < 2 or work < least:
        return 1
    return min(threads, rows)


@_jit
def _split_count(B, H, P):
    """How many row chunks to split a layer of batch B, hidden size H, state size P into: 1 for no split."""
    return _parts(B, B * 4 * H * P, SPLIT_MIN_WORK)


@_jit
def _gemm_split_count(n, R, N, K):
    """Parts to split a layer's products of R rows, N columns and depth K into, its time loop being split in n: n,
    or (n = 1) the number of threads from GEMM_SPLIT_MIN multiply-adds on."""
    return n if n > 1 else _parts(R, R * N * K, GEMM_SPLIT_MIN)


@_jit
def _overlap_chunks(n, T, work):
    """Time chunks for a layer whose batch rows are not split (n = 1): chunk c's time loop on one of numba's threads
    beside the input products (forward) or weight gradients (backward) of the chunk after it on another; `work` is
    the multiply-adds of those products over all T steps. min(OVERLAP_CHUNKS, T // OVERLAP_MIN_STEPS, work //
    OVERLAP_MIN_WORK), or 1 (no chunks) with one thread, n > 1, or fewer steps or less work."""
    if n > 1 or _blas.numba_threads() < 2:
        return 1
    return max(1, min(OVERLAP_CHUNKS, T // OVERLAP_MIN_STEPS, work // OVERLAP_MIN_WORK))


@_jit
def _split_begin(n):
    """Set the BLAS to one thread for work split n ways -> the BLAS's previous thread count, or -1: don't split (n < 2,
    or a BLAS whose thread count cannot be set)."""
    if n < 2:
        return -1
    return _blas.blas_threads(1)


@_jit
def _input_rows(G2, x2, w_ih, b, r0, r1):
    """Rows r0:r1 of G2 (T*B, 4H) = x2 (T*B, I) @ w_ih^T + b."""
    N, I = G2.shape[1], x2.shape[1]
    _gemm.gemm(False, True, r1 - r0, N, I, x2, r0 * I, I, w_ih, 0, I, 0.0, G2, r0 * N, N)
    _add_bias(_flat(G2), b, r0, r1)


@_jit
def _add_bias(g, b, r0, r1):
    """Rows r0:r1 of g (flat, rows of b.size elements) += b: the input products' bias (_input_rows, and _forward_rows
    step by step)."""
    N = np.uint64(b.size)
    for r in range(np.uint64(r0), np.uint64(r1)):
        for k in range(N):
            g[r * N + k] += b[k]


@_jit
def _forward_rows(b0, b1, t0, t1, y, h_n, C, TC, M, G, hw, c0, w_rec, wp, w_hr, lengths, act, x, w_in, b):
    """Steps t0:t1 of lstm_forward's time loop for batch rows b0:b1, G holding the input products of those steps, or
    (w_in not empty: w_ih^T packed) computing them step by step from x and b; w_rec is w_hh^T packed
    (_gemm.packed(w_hh, True))."""
    B, H4 = G.shape[1], G.shape[2]
    I = x.shape[-1]
    fused = w_in.size > 0
    P = h_n.shape[1]
    nG, nC, nT, nM = G.shape[0], C.shape[0], TC.shape[0], M.shape[0]
    proj = w_hr.shape[0] > 0
    h, hwr, lens = h_n[b0:b1], hw[b0:b1], lengths[b0:b1]
    h_scratch = np.empty((b1 - b0, C.shape[2]), C.dtype) if proj else h     # the pointwise step's h, unused here
    one_row = b1 - b0 == 1 and not proj
    one, zero = G.dtype.type(1.0), G.dtype.type(0.0)
    H = C.shape[2]
    Gf, Cf, TCf, yf, hf, hwf = _flat(G), _flat(C), _flat(TC), _flat(y), _flat(h_n), _flat(hw)
    c0f, wpf = _flat(c0), _flat(wp)
    for t in range(t0, t1):
        tg = t % nG                             # G's step
        if fused:                               # this step's input product of these rows, plus the bias
            _gemm.gemm_packed(b1 - b0, H4, I, x, (t * B + b0) * I, I, 1, w_in, 0, G, (tg * B + b0) * H4, H4)
            _add_bias(Gf, b, tg * B + b0, tg * B + b1)
        # recurrent product h_{t-1} @ w_hh^T of these rows
        if b1 - b0 == 1:
            _gemm.gemm_row(H4, P, hf, b0 * P, w_rec, hwf, b0 * H4)
        else:
            _gemm.gemm_packed(b1 - b0, H4, P, h_n, b0 * P, P, 1, w_rec, 0, hw, b0 * H4, H4)
        if one_row and t < lengths[b0]:         # one running row: flat arrays and offsets, no views a step
            cp, cpo = (c0f, b0 * H) if t == 0 else (Cf, ((t - 1) % nC * B + b0) * H)
            _cell_forward_row(Gf, (tg * B + b0) * H4, Cf, (t % nC * B + b0) * H, TCf, (t % nT * B + b0) * H, yf,
                              (t * B + b0) * H, hf, b0 * H, hwf, b0 * H4, cp, cpo, wpf, act, one, zero)
            continue
        c_prev = c0[b0:b1] if t == 0 else C[(t - 1) % nC, b0:b1]
        if proj:                                # m to the tape, then h_t = m w_hr^T, the running state of running rows
            m = M[t % nM, b0:b1]
            cell_forward(G[tg, b0:b1], C[t % nC, b0:b1], TC[t % nT, b0:b1], m, h_scratch, hwr, c_prev, wp, lens, t,
                         act)
            np.dot(m, w_hr.T, y[t, b0:b1])
            copy_running_rows(h, y[t, b0:b1], lens, t, False)
        else:                                   # m is h_t: into y and the running state
            cell_forward(G[tg, b0:b1], C[t % nC, b0:b1], TC[t % nT, b0:b1], y[t, b0:b1], h, hwr, c_prev, wp, lens,
                         t, act)


@numba.njit(cache=True, error_model="numpy", parallel=True)
def _forward_split(n, y, h_n, C, TC, M, G, hw, c0, w_rec, wp, w_hr, lengths, act, x, w_in, b):
    """_forward_rows over all batch rows, in n chunks on numba's threads."""
    B = G.shape[1]
    for s in numba.prange(n):
        _forward_rows(s * B // n, (s + 1) * B // n, 0, y.shape[0], y, h_n, C, TC, M, G, hw, c0, w_rec, wp,
                      w_hr, lengths, act, x, w_in, b)


@numba.njit(cache=True, error_model="numpy", parallel=True)
def _input_split(n, G2, x2, w_ih, b, r0, r1):
    """_input_rows over rows r0:r1 of G2, in n chunks on numba's threads."""
    R = r1 - r0
    for s in numba.prange(n):
        _input_rows(G2, x2, w_ih, b, r0 + s * R // n, r0 + (s + 1) * R // n)


@numba.njit(cache=True, error_model="numpy", parallel=True)
def _forward_overlap(t0, t1, t2, y, h_n, C, TC, M, G, hw, c0, w_rec, wp, w_hr, lengths, act, G2, x2, w_ih, b):
    """Steps t0:t1 of the time loop (all batch rows) on one thread, the input products of steps t1:t2 on another."""
    B = G.shape[1]
    for s in numba.prange(2):
        if s == 0:
            _forward_rows(0, B, t0, t1, y, h_n, C, TC, M, G, hw, c0, w_rec, wp, w_hr, lengths, act, x2, w_rec[:0],
                          b)
        else:
            _input_rows(G2, x2, w_ih, b, t1 * B, t2 * B)


@_jit
def lstm_forward(y, h_n, c_n, G, C, TC, M, hw, x, h0, c0, w_ih, w_hh, b, wp, w_hr, lengths, act):
    """One layer over a sequence: writes y (T, B, P), h_n (B, P), c_n (B, H) and the tape G, C, TC, M; hw (B, 4H) is scratch."""
    T, B, I = x.shape
    n = _split_count(B, c0.shape[1], h0.shape[1])
    _lstm_forward_chunks(n, _overlap_chunks(n, T, T * B * G.shape[2] * I), y, h_n, c_n, G, C, TC, M, hw, x, h0, c0,
                         w_ih, w_hh, b, wp, w_hr, lengths, act)


@_jit
def _lstm_forward_chunks(n, K, y, h_n, c_n, G, C, TC, M, hw, x, h0, c0, w_ih, w_hh, b, wp, w_hr, lengths, act):
    """lstm_forward with the batch rows cut into n chunks on numba's threads (n = 1, or a BLAS whose thread count
    cannot be set: no split), or (n = 1) the steps into K time chunks; lstm_forward chooses n with _split_count and K
    with _overlap_chunks."""
    T, B, I = x.shape
    H = c0.shape[1]
    h_n[:] = h0                                 # h_n carries the running state
    w_rec = _gemm.packed(w_hh, True)            # w_hh^T (P, 4H) in panels, once for all steps
    m = _gemm_split_count(n, T * B, 4 * H, I)
    prev = _split_begin(max(m, 2) if K > 1 else m)  # > 0: split (then m > 1 or K > 1); n > 1 only ever with m = n
    G2, x2 = G.reshape((T * B, 4 * H)), x.reshape((T * B, I))
    if prev > 0 and K > 1:                      # time chunks: chunk c's loop beside chunk c+1's input products
        _input_split(max(m, 2), G2, x2, w_ih, b, 0, T // K * B)
        for c in range(K - 1):
            _forward_overlap(c * T // K, (c + 1) * T // K, (c + 2) * T // K, y, h_n, C, TC, M, G, hw, c0, w_rec,
                             wp, w_hr, lengths, act, G2, x2, w_ih, b)
        _forward_rows(0, B, (K - 1) * T // K, T, y, h_n, C, TC, M, G, hw, c0, w_rec, wp, w_hr, lengths, act, x2,
                      w_rec[:0], b)
    else:                                       # the input product of all steps, then the loop; or (chunks of
        fused = prev > 0 and n > 1 and B // n >= FUSED_MIN_ROWS    # FUSED_MIN_ROWS rows or more) them step by step
        if fused:
            w_in = _gemm.packed(w_ih, True)
        else:
            w_in = w_rec[:0]
            if prev > 0:
                _input_split(m, G2, x2, w_ih, b, 0, T * B)
            else:
                _input_rows(G2, x2, w_ih, b, 0, T * B)
        if prev > 0 and n > 1:                  # no tape (C shorter than T) and step by step: one step of G
            _forward_split(n, y, h_n, C, TC, M, G[:1] if fused and C.shape[0] < T else G, hw, c0, w_rec, wp, w_hr,
                           lengths, act, x2, w_in, b)
        else:
            _forward_rows(0, B, 0, T, y, h_n, C, TC, M, G, hw, c0, w_rec, wp, w_hr, lengths, act, x2, w_in, b)
    if prev > 0:
        _blas.blas_threads(prev)
    c_n[:] = C[(T - 1) % C.shape[0]]            # finished rows carried their state to the last step


@_jit
def _backward_rows(b0, b1, t0, t1, dh0, dc0, dG, dH, dm, dhw, dy, c0, w_pk, wp, w_hr, G, C, TC, lengths, act):
    """Steps t1-1 down to t0 of lstm_backward's time loop for batch rows b0:b1: dh0, dc0 hold dL/dh, dL/dc of step
    t1-1 (dh_n, dc_n at t1 = T) and carry them back to step t0 - 1."""
    T, B, H4 = dG.shape
    P = dh0.shape[1]
    proj = w_hr.shape[0] > 0
    dh, dc, lens = dh0[b0:b1], dc0[b0:b1], lengths[b0:b1]
    all_run = T                                 # steps t < all_run have every sequence of these rows running
    for r in range(b0, b1):
        all_run = min(all_run, lengths[r])
    one_row = b1 - b0 == 1 and not proj
    one, zero = G.dtype.type(1.0), G.dtype.type(0.0)
    H = C.shape[2]
    dGf, Gf, Cf, TCf, dyf, dhf, dcf, c0f, wpf = (_flat(dG), _flat(G), _flat(C), _flat(TC), _flat(dy), _flat(dh0),
                                                 _flat(dc0), _flat(c0), _flat(wp))
    for t in range(t1 - 1, t0 - 1, -1):
        if one_row and t < all_run:             # one running row: flat arrays and offsets, no views a step
            ho, yo, go = np.uint64(b0 * P), np.uint64((t * B + b0) * P), (t * B + b0) * H4
            for j in range(np.uint64(P)):       # dh += dy[t]
                dhf[ho + j] += dyf[yo + j]
            cp, cpo = (c0f, b0 * H) if t == 0 else (Cf, ((t - 1) * B + b0) * H)
            _cell_backward_row(dGf, go, dcf, b0 * H, dhf, b0 * P, Gf, go, cp, cpo, TCf, (t * B + b0) * H, wpf, act,
                               one, zero)
            _gemm.gemm_row(P, H4, dGf, go, w_pk, dhf, b0 * P)       # dL/dh_{t-1} = dG_t @ w_hh
            continue
        copy_running_rows(dh, dy[t, b0:b1], lens, t, True)
        c_prev = c0[b0:b1] if t == 0 else C[t - 1, b0:b1]
        dGt = dG[t, b0:b1]
        if proj:                                # dL/dm_t = dL/dh_t @ w_hr
            dH[t, b0:b1] = dh
            np.dot(dh, w_hr, dm[b0:b1])
            cell_backward(dGt, dc, dm[b0:b1], G[t, b0:b1], c_prev, TC[t, b0:b1], wp, lens, t, act)
        else:
            cell_backward(dGt, dc, dh, G[t, b0:b1], c_prev, TC[t, b0:b1], wp, lens, t, act)
        if t < all_run:                         # dL/dh_{t-1} = dG_t @ w_hh
            _gemm.gemm_packed(b1 - b0, P, H4, dG, (t * B + b0) * H4, H4, 1, w_pk, 0, dh0, b0 * P, P)
        else:                                   # ... for the running sequences; a frozen state passes it through
            _gemm.gemm_packed(b1 - b0, P, H4, dG, (t * B + b0) * H4, H4, 1, w_pk, 0, dhw, b0 * P, P)
            copy_running_rows(dh, dhw[b0:b1], lens, t, False)


@_jit
def _weight_grads_part(s, n, t0, t1, dx, dw_ih, dw_hh, db, dw_hr, dG, dH, x, h0, w_ih, M, y):
    """Part s of n of lstm_backward's products after the loop, batched over steps t0:t1: rows s/n of those steps' dx
    = dG @ w_ih, and rows s/n of dw_ih += dG^T x, dw_hh += dG^T h_{t-1}, db += column sums of dG, dw_hr += dH^T M over
    those steps. dG is zero past each sequence's end, and where it is not, y[t - 1] is h_{t-1}; M is zero past each
    sequence's end."""
    T, B, I = x.shape
    H4, P = dG.shape[2], h0.shape[1]
    R0, R1 = t0 * B, t1 * B
    R = R1 - R0
    dG2 = dG.reshape((T * B, H4))
    r0, r1 = R0 + s * R // n, R0 + (s + 1) * R // n
    _gemm.gemm(False, False, r1 - r0, I, H4, dG2, r0 * H4, H4, w_ih, 0, I, 0.0, dx, r0 * I, I)
    k0, k1 = s * H4 // n, (s + 1) * H4 // n
    _gemm.gemm(True, False, k1 - k0, I, R, dG2, R0 * H4 + k0, H4, x, R0 * I, I, 1.0, dw_ih, k0 * I, I)
    if t0 == 0:                                 # h_{-1} = h0, then y[t - 1]
        _gemm.gemm(True, False, k1 - k0, P, B, dG2, k0, H4, h0, 0, P, 1.0, dw_hh, k0 * P, P)
        _gemm.gemm(True, False, k1 - k0, P, R1 - B, dG2, B * H4 + k0, H4, y, 0, P, 1.0, dw_hh, k0 * P, P)
    else:
        _gemm.gemm(True, False, k1 - k0, P, R, dG2, R0 * H4 + k0, H4, y, (R0 - B) * P, P, 1.0, dw_hh, k0 * P, P)
    for r in range(R0, R1):
        for k in range(k0, k1):
            db[k] += dG2[r, k]
    if dw_hr.shape[0] > 0:
        H = dw_hr.shape[1]
        p0, p1 = s * P // n, (s + 1) * P // n
        _gemm.gemm(True, False, p1 - p0, H, R, dH, R0 * P + p0, P, M, R0 * H, H, 1.0, dw_hr, p0 * H, H)


@numba.njit(cache=True, error_model="numpy", parallel=True)
def _backward_split(n, dh0, dc0, dG, dH, dm, dhw, dy, c0, w_pk, wp, w_hr, G, C, TC, lengths, act):
    """_backward_rows over all batch rows, in n chunks on numba's threads."""
    B = G.shape[1]
    for s in numba.prange(n):
        _backward_rows(s * B // n, (s + 1) * B // n, 0, G.shape[0], dh0, dc0, dG, dH, dm, dhw, dy, c0, w_pk, wp,
                       w_hr, G, C, TC, lengths, act)


@numba.njit(cache=True, error_model="numpy", parallel=True)
def _weight_grads_split(n, t0, t1, dx, dw_ih, dw_hh, db, dw_hr, dG, dH, x, h0, w_ih, M, y):
    """_weight_grads_part 0..n-1 of steps t0:t1 on numba's threads."""
    for s in numba.prange(n):
        _weight_grads_part(s, n, t0, t1, dx, dw_ih, dw_hh, db, dw_hr, dG, dH, x, h0, w_ih, M, y)


@numba.njit(cache=True, error_model="numpy", parallel=True)
def _backward_overlap(t0, t1, t2, dh0, dc0, dG, dH, dm, dhw, dy, c0, w_pk, wp, w_hr, G, C, TC, lengths, act, dx,
                      dw_ih, dw_hh, db, dw_hr, x, h0, w_ih, M, y):
    """Steps t1-1..t0 of the backward time loop (all batch rows) on one thread, the weight gradients of steps t1:t2
    on another."""
    B = G.shape[1]
    for s in numba.prange(2):
        if s == 0:
            _backward_rows(0, B, t0, t1, dh0, dc0, dG, dH, dm, dhw, dy, c0, w_pk, wp, w_hr, G, C, TC, lengths, act)
        else:
            _weight_grads_part(0, 1, t1, t2, dx, dw_ih, dw_hh, db, dw_hr, dG, dH, x, h0, w_ih, M, y)


@_jit
def lstm_backward(dx, dh0, dc0, dw_ih, dw_hh, db, dwp, dw_hr, dG, dH, dm, dhw, dy, dh_n, dc_n, x, h0, c0, w_ih,
                  w_hh, wp, w_hr, G, C, TC, M, y, lengths, act):
    """BPTT through one layer: writes dx, dh0, dc0; adds into dw_ih, dw_hh, db, dwp (3, H) unless it has 0 rows, dw_hr;
    scratch: dG (T, B, 4H), dH (T, B, P) and dm (B, H) with a projection, dhw (B, P)."""
    T, B, I = x.shape
    n, P = _split_count(B, c0.shape[1], h0.shape[1]), h0.shape[1]
    work = T * B * (dG.shape[2] * (2 * I + P) + P * w_hr.shape[1])     # dx, dw_ih, dw_hh, dw_hr
    _lstm_backward_chunks(n, _overlap_chunks(n, T, work), dx, dh0, dc0, dw_ih, dw_hh, db, dwp, dw_hr, dG, dH, dm,
                          dhw, dy, dh_n, dc_n, x, h0, c0, w_ih, w_hh, wp, w_hr, G, C, TC, M, y, lengths, act)


@_jit
def _lstm_backward_chunks(n, K, dx, dh0, dc0, dw_ih, dw_hh, db, dwp, dw_hr, dG, dH, dm, dhw, dy, dh_n, dc_n, x, h0,
                          c0, w_ih, w_hh, wp, w_hr, G, C, TC, M, y, lengths, act):
    """lstm_backward with the batch rows (then the weight-gradient rows) cut into n chunks on numba's threads, or
    (n = 1) the steps into K time chunks, as _lstm_forward_chunks."""
    T, B, I = x.shape
    dh0[:] = dh_n                               # dh0, dc0 carry dL/dh_t, dL/dc_t back through time
    dc0[:] = dc_n
    w_pk = _gemm.packed(w_hh, False)            # w_hh (4H, P) in panels, once for all steps
    m = _gemm_split_count(n, T * B, dG.shape[2], max(I, h0.shape[1]))
    prev = _split_begin(max(m, 2) if K > 1 else m)  # as in _lstm_forward_chunks
    if prev > 0 and K > 1:                      # time chunks, last first: chunk c's loop beside chunk c+1's products
        _backward_rows(0, B, (K - 1) * T // K, T, dh0, dc0, dG, dH, dm, dhw, dy, c0, w_pk, wp, w_hr, G, C, TC,
                       lengths, act)
        for c in range(K - 2, -1, -1):
            _backward_overlap(c * T // K, (c + 1) * T // K, (c + 2) * T // K, dh0, dc0, dG, dH, dm, dhw, dy, c0,
                              w_pk, wp, w_hr, G, C, TC, lengths, act, dx, dw_ih, dw_hh, db, dw_hr, x, h0, w_ih, M, y)
        _weight_grads_split(max(m, 2), 0, T // K, dx, dw_ih, dw_hh, db, dw_hr, dG, dH, x, h0, w_ih, M, y)
    else:                                       # the loop, then the products of all steps
        if prev > 0 and n > 1:
            _backward_split(n, dh0, dc0, dG, dH, dm, dhw, dy, c0, w_pk, wp, w_hr, G, C, TC, lengths, act)
        else:
            _backward_rows(0, B, 0, T, dh0, dc0, dG, dH, dm, dhw, dy, c0, w_pk, wp, w_hr, G, C, TC, lengths, act)
        if prev > 0:
            _weight_grads_split(m, 0, T, dx, dw_ih, dw_hh, db, dw_hr, dG, dH, x, h0, w_ih, M, y)
        else:
            _weight_grads_part(0, 1, 0, T, dx, dw_ih, dw_hh, db, dw_hr, dG, dH, x, h0, w_ih, M, y)
    if prev > 0:
        _blas.blas_threads(prev)
    if dwp.shape[0] > 0:
        peephole_grads(dwp, dG, C, c0)


@_jit
def copy_steps(out, a, out_col, a_col, n, lengths, reverse, accumulate):
    """out[t, b, out_col:out_col + n] (+)= a[t', b, a_col:a_col + n], t' = lengths[b]-1-t for t < lengths[b] when
    reverse, else t; out, a (T, B, .): a reverse-direction layer's time reversal, each sequence from its own end."""
    T, B = a.shape[0], a.shape[1]
    Wo, Wa = out.shape[2], a.shape[2]
    of, af = _flat(out), _flat(a)               # flat offsets: a row's slices cost ~90 ns of reference counts
    for t in range(T):
        for b in range(B):
            s = lengths[b] - 1 - t if reverse and t < lengths[b] else t
            o, i = np.uint64((t * B + b) * Wo + out_col), np.uint64((s * B + b) * Wa + a_col)
            if accumulate:
                for j in range(np.uint64(n)):
                    of[o + j] += af[i + j]
            else:
                for j in range(np.uint64(n)):
                    of[o + j] = af[i + j]


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


refresh_cache_on_change([cell_forward, _cell_forward_row, _cell_backward_row, cell_backward, copy_running_rows,
                         peephole_grads, _parts, _split_count, _gemm_split_count, _overlap_chunks, _split_begin,
                         _input_rows, _add_bias, _forward_rows, _forward_split, _input_split, _forward_overlap,
                         lstm_forward, _lstm_forward_chunks, _backward_rows,
                         _weight_grads_part, _backward_split, _weight_grads_split, _backward_overlap, lstm_backward,
                         _lstm_backward_chunks, copy_steps, rnn_cell_forward,
                         rnn_cell_backward, rnn_forward, rnn_backward],
                        [_math.__file__, _blas.__file__, _gemm.__file__, _vec.__file__])
