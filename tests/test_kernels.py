"""Every kernel of every backend against the NumPy oracle (nblstm.reference), on drawn shapes, both dtypes, with
and without peepholes, a projection and variable lengths (testing.variants)."""

import numba
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from _devices import DEVICES, call, given_on, shapes
from nblstm import reference as R
from nblstm import testing
from nblstm.kernels import _gemm, _math, cpu
from nblstm.kernels._math import ACTIVATIONS


def _problem(T, B, I, H, dtype, seed, peephole=False, proj=False, lengths=False):
    """Inputs of one layer in `dtype`; weights scaled as torch's init (~1/sqrt(H)) times 2 to reach saturation.
    P = H, or a drawn 1..H-1 with `proj`; wp zeros without `peephole`; lengths all T, drawn (`lengths` True; the
    first is T), or the B given ones."""
    r = lambda shape, k, scale=1.0: testing.random_array(shape, dtype, seed + k, scale)
    s = 2.0 / np.sqrt(H)
    P = int(np.random.default_rng(seed).integers(1, H)) if proj and H > 1 else H
    return dict(x=r((T, B, I), 1), h0=r((B, P), 2), c0=r((B, H), 3), w_ih=r((4 * H, I), 4, s),
                w_hh=r((4 * H, P), 5, s), b_ih=r((4 * H,), 6, s), b_hh=r((4 * H,), 7, s),
                wp=r((3, H), 8, s) if peephole else np.zeros((3, H), dtype),
                w_hr=r((P, H), 9, s) if P < H else np.zeros((0, H), dtype),
                lengths=(np.asarray(lengths, np.int64) if not isinstance(lengths, (bool, np.bool_))
                         else testing.random_lengths(B, T, seed) if lengths else np.full(B, T, np.int64)))


def _reference_forward(p, activation):
    """reference.lstm_forward of problem p in float64."""
    q = {k: v.astype(np.float64) for k, v in p.items() if k not in ("wp", "w_hr", "lengths")}
    peep = tuple(p["wp"].astype(np.float64)) if p["wp"].any() else None
    w_hr = p["w_hr"].astype(np.float64) if p["w_hr"].size else None
    return R.lstm_forward(**q, activation=activation, peephole=peep, w_hr=w_hr, lengths=p["lengths"])


_FORWARD_OUT = ("y", "h_n", "c_n", "G", "C", "TC", "M", "hw")


def _run_forward(device, p, act, keep=True, chunks=None):
    """lstm_forward of `device` on problem p, or (cpu) _lstm_forward_chunks with `chunks` = (n, K): n row chunks,
    K time chunks."""
    name, lead = ("lstm_forward", ()) if chunks is None else ("_lstm_forward_chunks", chunks)
    T, B, _ = p["x"].shape
    P, H = p["w_hh"].shape[1], p["c0"].shape[1]
    dt = p["x"].dtype
    n = T if keep else 1                        # no tape: C two steps (or one), TC and M one, as nblstm.LSTM's
    outs = [np.empty((T, B, P), dt), np.empty((B, P), dt), np.empty((B, H), dt), np.empty((T, B, 4 * H), dt),
            np.empty((T if keep else min(T, 2), B, H), dt), np.empty((n, B, H), dt), np.empty((n, B, H), dt),
            np.empty((B, 4 * H), dt)]
    got = call(device, name, *lead, *outs, p["x"], p["h0"], p["c0"], p["w_ih"], p["w_hh"], p["b_ih"] + p["b_hh"],
               p["wp"], p["w_hr"], p["lengths"], act)[len(lead):]
    out = dict(zip(_FORWARD_OUT, got))
    if P == H:                  # without a projection the kernel is given y as M, as nblstm.LSTM does
        got = call(device, name, *lead, *outs[:6], outs[0], *outs[7:], *got[8:])[len(lead):]
        out = dict(zip(_FORWARD_OUT, got))
    return out


def _check_layer(device, shape, dtype, activation, variant, seed, chunks=None):
    """lstm_forward and lstm_backward of `device` (with `chunks` = (n, K): cpu's _lstm_forward_chunks /
    _lstm_backward_chunks) against reference.lstm_forward / lstm_backward in float64: outputs and every gradient.
    -> {name: array} of the outputs and gradients it checked."""
    T, B, I, H = shape
    name, lead = ("lstm_backward", ()) if chunks is None else ("_lstm_backward_chunks", chunks)
    p = _problem(T, B, I, H, dtype, seed % 2**31, **variant)
    P = p["w_hh"].shape[1]
    act = ACTIVATIONS.index(activation)
    out = _run_forward(device, p, act, chunks=chunks)
    y, h_n, c_n, caches = _reference_forward(p, activation)
    for name_, ref in (("y", y), ("h_n", h_n), ("c_n", c_n)):
        testing.assert_close(out[name_], ref, dtype, name_)

    dy, dh_n, dc_n = (testing.random_array(s, dtype, seed % 2**31 + 10 + k) for k, s in
                      enumerate([(T, B, P), (B, P), (B, H)]))
    g = R.lstm_backward(dy.astype(np.float64), dh_n.astype(np.float64), dc_n.astype(np.float64), caches)
    proj, peep = P < H, bool(p["wp"].any())
    grads = [np.empty_like(p["x"]), np.empty_like(p["h0"]), np.empty_like(p["c0"]), np.zeros_like(p["w_ih"]),
             np.zeros_like(p["w_hh"]), np.zeros_like(p["b_ih"]), np.zeros((3 if peep else 0, H), dtype),
             np.zeros_like(p["w_hr"])]
    scratch = [np.empty_like(out["G"]), np.empty((T if proj else 0, B, P), dtype),
               np.empty((B if proj else 0, H), dtype), np.empty((B, P), dtype)]
    got = call(device, name, *lead, *grads, *scratch, dy, dh_n, dc_n, p["x"], p["h0"], p["c0"], p["w_ih"],
               p["w_hh"], p["wp"], p["w_hr"], out["G"], out["C"], out["TC"], out["M"], out["y"], p["lengths"],
               act)[len(lead):len(lead) + 8]
    want = [("dx", g["x"]), ("dh0", g["h"]), ("dc0", g["c"]), ("dw_ih", g["w_ih"]), ("dw_hh", g["w_hh"]),
            ("db", g["b_ih"]), ("dwp", np.stack([g["w_ci"], g["w_cf"], g["w_co"]]) if peep else np.zeros((0, H))),
            ("dw_hr", g["w_hr"] if proj else np.zeros((0, H)))]
    for (name_, ref), got_k in zip(want, got):
        assert got_k.dtype == dtype, name_
        testing.assert_close(got_k, ref, dtype, name_)
    return {**{k: out[k] for k in ("y", "h_n", "c_n")}, **{name_: got_k for (name_, _), got_k in zip(want, got)}}


@pytest.mark.parametrize("device", DEVICES)
def test_lstm_forward_backward_match_reference(device):
    @given_on(device, shapes(device), testing.float_dtypes(), testing.activations(), testing.variants(),
              testing.seeds())
    def check(shape, dtype, activation, variant, seed):
        _check_layer(device, shape, dtype, activation, variant, seed)

    check()


def test_row_chunks_on_threads_match_reference():
    """The split of a layer's batch rows over numba's threads (cpu._lstm_forward_chunks / _lstm_backward_chunks, which
    lstm_forward / lstm_backward run with n > 1 from B * 4H * P = 2^15 on): any number of chunks, uneven ones
    included, gives the reference's outputs and gradients, with peepholes, a projection and variable lengths, and
    without a projection the bits of the unsplit layer (each row's products are the same chains, whichever rows or
    blocks a thread takes; the projection's np.dot rounds by the BLAS's kernel for the number of rows)."""
    @given_on("cpu", shapes("cpu"), testing.float_dtypes(), testing.activations(), testing.variants(),
              testing.seeds(), st.integers(2, 5))
    def check(shape, dtype, activation, variant, seed, chunks):
        chunks = (min(chunks, shape[1]), 1)
        split = _check_layer("cpu", shape, dtype, activation, variant, seed, chunks=chunks)
        if not variant["proj"]:
            whole = _check_layer("cpu", shape, dtype, activation, variant, seed, chunks=(1, 1))
            for name in split:
                np.testing.assert_array_equal(split[name], whole[name], err_msg=name)
        p = _problem(*shape, dtype, seed % 2**31, **variant)       # the no-tape forward, bit for bit
        act = ACTIVATIONS.index(activation)
        taped, untaped = (_run_forward("cpu", p, act, keep=k, chunks=chunks) for k in (True, False))
        for name in ("y", "h_n", "c_n"):
            np.testing.assert_array_equal(untaped[name], taped[name], err_msg=name)

    check()


def _strided(rng, rows, cols, pad, offset, dtype):
    """(array, flat offset, row stride): a rows x cols matrix stored from `offset` with `pad` spare columns a row,
    inside an array of random values."""
    ld = max(cols + pad, 1)
    flat = rng.standard_normal(offset + rows * ld + 3).astype(dtype)
    return flat.reshape(1, -1), offset, ld


def _view(arr, offset, ld, rows, cols):
    return arr.reshape(-1)[offset:offset + rows * ld].reshape(rows, ld)[:, :cols]


@given(st.integers(0, 150), st.integers(0, 150), st.integers(0, 40), st.booleans(), st.booleans(),
       st.sampled_from([0.0, 1.0]), st.integers(0, 3), st.integers(0, 5), testing.float_dtypes(),
       st.sampled_from([1, 1, 8, 30]))
def test_gemm_matches_numpy(m, n, k, trans_a, trans_b, beta, pad, offset, dtype, depth):
    """_gemm.gemm (the layers' input products, dx and weight gradients) is the plain product C = op(A) op(B) + beta C
    with offsets and row strides into larger arrays, both transposes, overwriting (beta 0) or adding: rows past whole
    register blocks and panels, A^T B by strips of C's rows (_tblock) and the rows after them (packed path), depths
    across the KC and KT blocks (512 deep; depth scales k up to 1200); nothing outside C is written."""
    k *= depth
    rng = np.random.default_rng(m * 1000003 + n * 1009 + k * 7 + offset)
    a, ia, lda = _strided(rng, *((k, m) if trans_a else (m, k)), pad, offset, dtype)
    b, ib, ldb = _strided(rng, *((n, k) if trans_b else (k, n)), pad + 1, offset + 1, dtype)
    c, ic, ldc = _strided(rng, m, n, pad + 2, offset + 2, dtype)
    before = c.copy()
    A = _view(a, ia, lda, *((k, m) if trans_a else (m, k)))
    B = _view(b, ib, ldb, *((n, k) if trans_b else (k, n)))
    want = (A.T if trans_a else A).astype(np.float64) @ (B.T if trans_b else B).astype(np.float64)
    want += beta * _view(before, ic, ldc, m, n)
    _gemm.gemm(trans_a, trans_b, m, n, k, a, ia, lda, b, ib, ldb, beta, c, ic, ldc)
    testing.assert_close(_view(c, ic, ldc, m, n), want, dtype, "C")
    outside = np.ones(c.size, bool)
    for r in range(m):
        outside[ic + r * ldc:ic + r * ldc + n] = False
    np.testing.assert_array_equal(c.reshape(-1)[outside], before.reshape(-1)[outside])


@given(st.integers(1, 70), st.integers(1, 300), st.integers(1, 300), st.booleans(), testing.float_dtypes(),
       st.sampled_from([1, 1, 4]))
def test_gemm_packed_matches_numpy_and_rounds_as_one_chain(m, n, k, trans, dtype, depth):
    """_gemm.packed / gemm_packed (the recurrent products against w_hh packed once): the plain product, in both
    layouts of the weight; each element of C is one chain of fused multiply-adds over k in order, whatever the register
    block or the depth blocks: so gemm's A^T B (by strips of C's rows, _tblock, up to TBLOCK_MAX_N columns; else the
    packed path reading A^T in place; KT and KC blocks of depth: depth scales k up to 1200) and gemm's A B (op(B)
    packed in KC blocks) equal it bit for bit, and a row alone equals it inside a block of rows."""
    k *= depth
    rng = np.random.default_rng(m * 7919 + n * 31 + k)
    w = rng.standard_normal((n, k) if trans else (k, n)).astype(dtype)
    a = rng.standard_normal((m, k)).astype(dtype)
    c = np.full((m, n), np.nan, dtype)
    _gemm.gemm_packed(m, n, k, a, 0, k, 1, _gemm.packed(w, trans), 0.0, c, 0, n)
    testing.assert_close(c, a.astype(np.float64) @ (w.T if trans else w).astype(np.float64), dtype, "C")
    row = np.empty((1, n), dtype)
    _gemm.gemm_packed(1, n, k, a, (m - 1) * k, k, 1, _gemm.packed(w, trans), 0.0, row, 0, n)
    np.testing.assert_array_equal(row[0], c[m - 1])
    at = np.ascontiguousarray(a.T)              # k x m: A^T B with A^T's rows in memory
    for trans_a, a_, lda in ((True, at, m), (False, a, k)):
        d = np.empty((m, n), dtype)
        _gemm.gemm(trans_a, trans, m, n, k, a_, 0, lda, w, 0, w.shape[1], 0.0, d, 0, n)
        np.testing.assert_array_equal(d, c, err_msg=f"gemm, trans_a={trans_a}")


@given(st.integers(1, 150), st.integers(1, 150), st.integers(2, 1300), st.booleans(), st.booleans(),
       st.floats(0.0, 1.0), testing.float_dtypes())
def test_gemm_split_depth_continues_the_chain(m, n, k, trans_a, trans_b, split, dtype):
    """A product's depth split into two calls, gemm over k < s (beta 0) and then over s <= k (beta 1, adding into C),
    gives the bits of one call: the second call's chains start from C's values instead of adding their own sums to
    them, as gemm's own depth blocks (KC, KT) do, so the blocking never changes a result. Both transposes, A^T B by
    strips (_tblock) and by the packed path, splits inside and at the edges of the blocks."""
    s = max(1, min(k - 1, int(split * k)))
    rng = np.random.default_rng(m * 1009 + n * 31 + k * 7 + s)
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
    lda, ldb = a.shape[1], b.shape[1]
    whole, parts = np.empty((m, n), dtype), np.full((m, n), np.nan, dtype)
    _gemm.gemm(trans_a, trans_b, m, n, k, a, 0, lda, b, 0, ldb, 0.0, whole, 0, n)
    _gemm.gemm(trans_a, trans_b, m, n, s, a, 0, lda, b, 0, ldb, 0.0, parts, 0, n)
    _gemm.gemm(trans_a, trans_b, m, n, k - s, a, s * (lda if trans_a else 1), lda, b, s * (1 if trans_b else ldb),
               ldb, 1.0, parts, 0, n)
    np.testing.assert_array_equal(parts, whole)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemm_columns_round_alike_in_every_block_width(dtype):
    """_block computes a row in 1, 2 or NV vectors (narrow products: dx of a layer with few inputs), or for a product
    of one row in two panels at once (2 NV vectors): an element of C is still one chain over k, so its bits do not
    depend on how many columns or rows are computed beside it. Each product here (both layouts of B, overwriting and
    adding into C) equals, column for column, the same columns inside a product with columns added to the right
    (computed in whole panels) and, row for row, the same row inside a product of 7 rows; so does gemm_row's one row
    (the time loops' product at batch 1: _row for whole vectors, 1 to 2 NV of them past the pairs of panels)."""
    nr = _gemm.panel_cols(np.dtype(dtype).itemsize)
    for n in sorted({1, 5, nr // 4, nr // 4 + 1, nr // 2, nr // 2 + 3, nr, nr + 1, 2 * nr - 3, 2 * nr, 3 * nr + 5}):
        for k in (1, 37, 600):
            rng = np.random.default_rng(n * 1000 + k)
            wide = 4 * nr                       # n columns and more beside them
            a = rng.standard_normal((7, k)).astype(dtype)
            b = rng.standard_normal((k, wide)).astype(dtype)
            bt = np.ascontiguousarray(b.T)
            c0 = rng.standard_normal((7, wide)).astype(dtype)
            for beta in (0.0, 1.0):
                full = c0.copy()
                _gemm.gemm(False, False, 7, wide, k, a, 0, k, b, 0, wide, beta, full, 0, wide)
                for m in (1, 2, 7):
                    for trans_b, b_, ldb in ((False, b, wide), (True, bt, k)):
                        c = c0[:m, :n].copy()
                        _gemm.gemm(False, trans_b, m, n, k, a, 0, k, b_, 0, ldb, beta, c, 0, n)
                        np.testing.assert_array_equal(c, full[:m, :n], err_msg=f"m={m}, n={n}, k={k}, beta={beta}")
                    if beta == 0.0:
                        c = c0[:m, :n].copy()
                        _gemm.gemm_packed(m, n, k, a, 0, k, 1, _gemm.packed(b[:, :n], False), 0.0, c, 0, n)
                        np.testing.assert_array_equal(c, full[:m, :n], err_msg=f"packed m={m}, n={n}, k={k}")
                    if beta == 0.0 and m == 1:          # one row flat (a step at batch 1): _row, or gemm_packed
                        c = c0[0, :n].copy()
                        _gemm.gemm_row(n, k, a[0], 0, _gemm.packed(b[:, :n], False), c, 0)
                        np.testing.assert_array_equal(c, full[0, :n], err_msg=f"gemm_row n={n}, k={k}")
                testing.assert_close(full, a.astype(np.float64) @ b.astype(np.float64)
                                     + beta * c0.astype(np.float64), dtype, "C")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pack_lays_out_panels(dtype):
    """_gemm.packed: op(w) in panels of NR columns, zeros past the last column, element for element as numpy lays
    them out, for shapes with and without whole tiles of vector lanes (pack copies B^T by L x L tiles transposed in
    registers and B's rows by vectors, the rest one by one)."""
    nr = _gemm.panel_cols(np.dtype(dtype).itemsize)
    rng = np.random.default_rng(1)
    for rows, cols in ((128, 32), (37, 70), (64, 64), (5, 3), (100, 17), (300, 129), (16, 2 * nr + 9)):
        w = rng.standard_normal((rows, cols)).astype(dtype)
        for trans in (True, False):
            op = w.T if trans else w
            K, N = op.shape
            panels = -(-N // nr)
            want = np.zeros((panels, K, nr), dtype)
            for q in range(panels):
                part = op[:, q * nr:(q + 1) * nr]
                want[q, :, :part.shape[1]] = part
            np.testing.assert_array_equal(_gemm.packed(w, trans), want.ravel(), err_msg=f"{w.shape}, trans={trans}")


def test_gemm_refuses_other_dtypes_betas_and_short_packing():
    """_gemm's products name what is wrong instead of computing garbage: integer or complex arrays (only the item size
    was checked before: int32 gave zeros), mixed dtypes, a beta other than 0 or 1, a packed array too small for
    K x N."""
    f = np.ones((4, 4), np.float32)
    for bad in (np.ones((4, 4), np.int32), np.ones((4, 4), np.int64), np.ones((4, 4), np.complex64),
                np.ones((4, 4), np.float64)):
        with pytest.raises(ValueError, match="float32 or float64"):
            _gemm.gemm(False, False, 4, 4, 4, bad, 0, 4, f, 0, 4, 0.0, f.copy(), 0, 4)
    with pytest.raises(ValueError, match="beta"):
        _gemm.gemm(False, False, 4, 4, 4, f, 0, 4, f, 0, 4, 0.5, f.copy(), 0, 4)
    p = _gemm.packed(f, False)
    with pytest.raises(ValueError, match="smaller than a K x N matrix packed"):
        _gemm.gemm_packed(4, 4, 4, f, 0, 4, 1, p[:p.size - 1], 0.0, f.copy(), 0, 4)
    c = np.zeros((4, 4), np.float32)
    _gemm.gemm_packed(4, 4, 4, f, 0, 4, 1, p, 0.0, c, 0, 4)
    np.testing.assert_array_equal(c, np.full((4, 4), 4.0, np.float32))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_step_by_step_input_products_match_reference(dtype):
    """Chunks of FUSED_MIN_ROWS rows or more compute their input products step by step: the layer (uneven chunks,
    peepholes and a projection, variable lengths) gives the reference's outputs and gradients and, without a projection,
    the bits of the unsplit layer; the no-tape forward equals the taped one bit for bit and writes G's first step only
    (the rest keeps its NaNs: the step-by-step path ran)."""
    rows = cpu.FUSED_MIN_ROWS
    for B, chunks, variant in ((2 * rows, 2, {}), (3 * rows + 2, 3, dict(peephole=True, proj=True, lengths=True))):
        shape = (6, B, 5, 7)
        split = _check_layer("cpu", shape, dtype, "tanh", variant, 40 + B, chunks=(chunks, 1))
        if not variant:
            whole = _check_layer("cpu", shape, dtype, "tanh", variant, 40 + B, chunks=(1, 1))
            for name in split:
                np.testing.assert_array_equal(split[name], whole[name], err_msg=name)
        p = _problem(*shape, dtype, 40 + B, **variant)
        taped = _run_forward("cpu", p, 0, chunks=(chunks, 1))
        T, _, _, H = shape
        P = p["w_hh"].shape[1]
        outs = [np.empty((T, B, P), dtype), np.empty((B, P), dtype), np.empty((B, H), dtype),
                np.full((T, B, 4 * H), np.nan, dtype), np.empty((2, B, H), dtype), np.empty((1, B, H), dtype),
                np.empty((1, B, H), dtype), np.empty((B, 4 * H), dtype)]
        if P == H:
            outs[6] = outs[0]
        cpu._lstm_forward_chunks(chunks, 1, *outs, p["x"], p["h0"], p["c0"], p["w_ih"], p["w_hh"],
                                 p["b_ih"] + p["b_hh"], p["wp"], p["w_hr"], p["lengths"], 0)
        for k, name in enumerate(("y", "h_n", "c_n")):
            np.testing.assert_array_equal(outs[k], taped[name], err_msg=name)
        assert not np.isnan(outs[3][0]).any() and np.isnan(outs[3][1:]).all()


@pytest.mark.parametrize("case", range(7))
def test_layers_products_match_reference(case):
    """The layer kernels with nblstm's products at the edges of its blocks give the reference's outputs and
    gradients: one row and a few, 4H = 132 (two strips of C's rows in the weight gradients and 4 rows after them),
    P = 130 and 300 (a partial panel), T * B = 1200 > KT (weight gradients in two blocks of depth), rows split over
    threads (n = 2) and time chunks (K = 3)."""
    shape, chunks = [((9, 1, 3, 5), None), ((40, 1, 4, 6), (1, 3)), ((6, 3, 5, 33), None), ((5, 4, 7, 9), (2, 1)),
                     ((3, 9, 6, 130), (1, 1)), ((2, 9, 3, 300), None), ((300, 4, 3, 5), None)][case]
    for dtype in (np.float32, np.float64):
        _check_layer("cpu", shape, dtype, "tanh", dict(peephole=case % 2 == 1, proj=case == 2), 100 + case,
                     chunks=chunks)


def test_layers_from_the_threshold_on_split():
    """lstm_forward / lstm_backward really split a batch of 8, H = 64 (8 * 256 * 64 = 2^17 multiply-adds a step)
    on this machine's threads, and a long B = 1 sequence's products; the split layers match the reference."""
    threads = numba.get_num_threads()
    assert cpu._split_count(8, 64, 64) == (1 if threads < 2 else min(threads, 8))
    assert cpu._split_count(1, 64, 64) == 1 and cpu._split_count(8, 8, 8) == 1
    assert cpu._split_count(32, 128, 128) == (1 if threads < 2 else min(threads, 32))
    for variant in ({}, dict(peephole=True, proj=True, lengths=True)):
        _check_layer("cpu", (3, 8, 5, 64), np.float32, "tanh", variant, 1)
    # B = 1: the time loop on one thread, the products of 64 * 512 * 128 = 2^22 multiply-adds split by rows
    assert cpu._gemm_split_count(1, 64, 512, 128) == (1 if threads < 2 else min(threads, 64))
    assert cpu._gemm_split_count(1, 63, 512, 128) == 1 and cpu._gemm_split_count(3, 2, 4, 4) == 3
    _check_layer("cpu", (64, 1, 128, 128), np.float32, "tanh", dict(peephole=True, lengths=True), 2)


def test_time_chunks_beside_products_match_reference():
    """A layer whose batch rows are not split (B = 1, or little work a step) runs in K time chunks on two of numba's
    threads (_overlap_chunks: K = min(OVERLAP_CHUNKS, T // OVERLAP_MIN_STEPS, the products' work // OVERLAP_MIN_WORK)):
    chunk c's loop beside the next chunk's input products (forward) or weight gradients (backward). Given K chunks,
    uneven ones, peepholes, a projection, variable lengths (at B = 1 too) and both dtypes give the reference's outputs
    and gradients, and the no-tape forward equals the taped one bit for bit; and a layer of enough work chooses them
    itself. With one numba thread there are no chunks (the forced ones then run one after the other)."""
    one = numba.get_num_threads() < 2
    big, steps, work = 1 << 40, cpu.OVERLAP_MIN_STEPS, cpu.OVERLAP_MIN_WORK
    assert cpu._overlap_chunks(1, 1000, big) == (1 if one else cpu.OVERLAP_CHUNKS)
    assert cpu._overlap_chunks(1, 3 * steps + 1, big) == (1 if one else 3)
    assert cpu._overlap_chunks(1, 1000, 3 * work + 1) == (1 if one else 3)
    assert cpu._overlap_chunks(1, 2 * steps - 1, big) == 1 and cpu._overlap_chunks(1, 1000, 2 * work - 1) == 1
    assert cpu._overlap_chunks(2, 1000, big) == 1
    cases = [((37, 1, 5, 8), np.float64, {}), ((100, 1, 16, 32), np.float32, {}),
             ((53, 3, 4, 6), np.float64, dict(peephole=True, proj=True, lengths=True)),
             ((70, 2, 7, 9), np.float32, dict(peephole=True, lengths=True)),
             ((200, 1, 3, 5), np.float64, dict(proj=True)),
             # B = 1 ending inside a chunk, after the first, or before it starts (frozen state, zero y, all_run < T)
             ((40, 1, 3, 4), np.float64, dict(peephole=True, lengths=[17])),
             ((64, 1, 5, 6), np.float32, dict(proj=True, lengths=[33])),
             ((48, 1, 2, 3), np.float64, dict(lengths=[0]))]
    for k, (shape, dtype, variant) in enumerate(cases):
        assert cpu._split_count(shape[1], shape[3], shape[3]) == 1
        chunks = (1, min(cpu.OVERLAP_CHUNKS, shape[0] // 16))      # 2 to 8 chunks of 16 to 25 steps
        _check_layer("cpu", shape, dtype, "tanh", variant, 100 + k, chunks=chunks)
        p = _problem(*shape, dtype, 100 + k, **variant)
        taped, untaped = (_run_forward("cpu", p, 0, keep=keep, chunks=chunks) for keep in (True, False))
        for name in ("y", "h_n", "c_n"):
            np.testing.assert_array_equal(untaped[name], taped[name], err_msg=name)
    # enough work: lstm_forward and lstm_backward choose time chunks themselves
    T, B, I, H = 300, 1, 64, 32
    assert (cpu._overlap_chunks(1, T, T * 4 * H * I) > 1) == (not one)
    assert (cpu._overlap_chunks(1, T, T * 4 * H * (2 * I + H)) > 1) == (not one)
    _check_layer("cpu", (T, B, I, H), np.float32, "tanh", dict(peephole=True, lengths=[250]), 7)


@pytest.mark.parametrize("device", DEVICES)
def test_inference_forward_equals_taped_forward(device):
    """The no-tape path (C two steps long, TC and M one, overwritten) gives bit-identical outputs."""
    @given_on(device, shapes(device), testing.float_dtypes(), testing.activations(), testing.variants(),
              testing.seeds())
    def check(shape, dtype, activation, variant, seed):
        p = _problem(*shape, dtype, seed % 2**31, **variant)
        act = ACTIVATIONS.index(activation)
        taped, untaped = _run_forward(device, p, act, keep=True), _run_forward(device, p, act, keep=False)
        for name in ("y", "h_n", "c_n"):
            np.testing.assert_array_equal(untaped[name], taped[name], err_msg=name)

    check()


@pytest.mark.parametrize("device", DEVICES)
def test_cell_kernels_match_reference(device):
    """cell_forward / cell_backward (the pointwise step) against reference.cell_forward / cell_backward, with and
    without peepholes; a finished sequence (t >= lengths[b]) carries its cell state and gets no gradient."""
    @given_on(device, shapes(device, max_T=1), testing.float_dtypes(), testing.activations(), st.booleans(),
              testing.seeds())
    def check(shape, dtype, activation, peephole, seed):
        _, B, I, H = shape
        p = _problem(1, B, I, H, dtype, seed % 2**31, peephole=peephole)
        act = ACTIVATIONS.index(activation)
        q = {k: v.astype(np.float64) for k, v in p.items()}
        h, c, cache = R.cell_forward(q["x"][0], q["h0"], q["c0"], q["w_ih"], q["w_hh"], q["b_ih"], q["b_hh"],
                                     activation, tuple(q["wp"]) if peephole else None)
        G0 = p["x"][0] @ p["w_ih"].T + p["b_ih"] + p["b_hh"]
        hw = p["h0"] @ p["w_hh"].T
        lengths = np.random.default_rng(seed).integers(0, 2, B)      # step t = 0: sequences of length 0 are done
        c1, tc1, m1, h1 = (np.full((B, H), 7, dtype) for _ in range(4))
        G, c1, tc1, m1, h1 = call(device, "cell_forward", G0.copy(), c1, tc1, m1, h1, hw, p["c0"], p["wp"], lengths,
                                  0, act)[:5]
        run = lengths > 0
        testing.assert_close(m1[run], h[run], dtype, "m")
        testing.assert_close(h1[run], h[run], dtype, "h")
        testing.assert_close(c1[run], c[run], dtype, "c")
        i, f, g, o = cache[5:9]
        testing.assert_close(G[run], np.concatenate([i, f, g, o], axis=1)[run], dtype, "gates")
        assert not m1[~run].any() and (h1[~run] == 7).all()         # finished: m zero, h untouched,
        np.testing.assert_array_equal(c1[~run], p["c0"][~run])      # the cell state carried

        dm = testing.random_array((B, H), dtype, seed % 2**31 + 1)
        dc = testing.random_array((B, H), dtype, seed % 2**31 + 2)
        ref = R.cell_backward(dm.astype(np.float64), dc.astype(np.float64), cache)
        dG = np.full((B, 4 * H), 7, dtype)
        dG, dc_io = call(device, "cell_backward", dG, dc.copy(), dm, G, p["c0"], tc1, p["wp"], lengths, 0, act)[:2]
        testing.assert_close(dG[run], ref["a"][run], dtype, "dG")
        testing.assert_close(dc_io[run], ref["c"][run], dtype, "dc_prev")
        assert not dG[~run].any()
        np.testing.assert_array_equal(dc_io[~run], dc[~run])

    check()


@numba.njit(error_model="numpy")
def _per_unit_step(G, c, tc, m, h, hw, cp, wp, dG, dc, dm, act):
    """The oracle of the CPU's pointwise step (forward, then backward from dm, dc): _math's unit functions called one
    unit at a time, as numba compiles them on their own."""
    B, H = c.shape
    one, zero = G.dtype.type(1.0), G.dtype.type(0.0)
    for b in range(B):
        for j in range(H):
            i, f, g = _math.unit_gates(G[b, j] + hw[b, j], G[b, H + j] + hw[b, H + j],
                                       G[b, 2 * H + j] + hw[b, 2 * H + j], cp[b, j], wp[0, j], wp[1, j], one)
            o, c[b, j], tc[b, j], m[b, j] = _math.unit_state(i, f, g, G[b, 3 * H + j] + hw[b, 3 * H + j], cp[b, j],
                                                             wp[2, j], act, one, zero)
            h[b, j] = m[b, j]
            G[b, j], G[b, H + j], G[b, 2 * H + j], G[b, 3 * H + j] = i, f, g, o
            dG[b, j], dG[b, H + j], dG[b, 2 * H + j], dG[b, 3 * H + j], dc[b, j] = _math.unit_backward(
                dm[b, j], dc[b, j], i, f, g, o, cp[b, j], tc[b, j], wp[0, j], wp[1, j], wp[2, j], act, one, zero)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pointwise_step_gives_the_bits_of_the_unit_functions(dtype):
    """cpu.cell_forward and cell_backward (each row by cpu._cell_forward_row / _cell_backward_row: float32 units in
    explicit vectors, kernels/_vec.py, the rest one by one) equal bit for bit _math's unit functions called unit by
    unit, for H with and without a partial last vector, B = 1 and 3, both activations, peepholes, and inputs that
    saturate (+-30, +-inf) or are nan. Fails if a vector operation differs from _math's by an operation's order or a
    fused multiply-add (mutations tried: mul + add in tanh's denominator or in c_t, another product order in dai)."""
    for H in (1, 5, 16, 17, 32, 40, 64, 100):
        for B, act in ((1, 0), (1, 1), (3, 0)):
            rng = np.random.default_rng(10 * H + B + act)
            r = lambda *shape: (3 * rng.standard_normal(shape)).astype(dtype)   # noqa: E731
            G, hw, cp, wp, dc, dm = r(B, 4 * H), r(B, 4 * H), r(B, H), r(3, H), r(B, H), r(B, H)
            G[0, :4] = [30, -np.inf, np.inf, np.nan]
            want = [G.copy(), *(np.full((B, H), 7, dtype) for _ in range(4)), np.full((B, 4 * H), 7, dtype),
                    dc.copy()]
            _per_unit_step(*want[:5], hw, cp, wp, want[5], want[6], dm, act)
            got = [G.copy(), *(np.full((B, H), 7, dtype) for _ in range(4)), np.full((B, 4 * H), 7, dtype),
                   dc.copy()]
            lengths = np.ones(B, np.int64)
            cpu.cell_forward(*got[:5], hw, cp, wp, lengths, 0, act)
            cpu.cell_backward(got[5], got[6], dm, got[0], cp, got[2], wp, lengths, 0, act)
            for name, a, b in zip(("G", "c", "tc", "m", "h", "dG", "dc_prev"), got, want):
                np.testing.assert_array_equal(a, b, err_msg=f"{name}, B={B}, H={H}, act={act}")
            assert np.isfinite(got[1][:, 4:]).all()


@pytest.mark.parametrize("device", DEVICES)
def test_copy_steps_reverses_each_sequence_from_its_end(device):
    """copy_steps(reverse) is reference.reverse_padded, column ranges and accumulation included."""
    @given_on(device, shapes(device), testing.seeds())
    def check(shape, seed):
        T, B, I, _ = shape
        a = testing.random_array((T, B, I + 1), np.float64, seed)
        lengths = testing.random_lengths(B, T, seed)
        out = testing.random_array((T, B, I + 2), np.float64, seed + 1)
        want = out.copy()
        want[:, :, 1:I + 1] += R.reverse_padded(a[:, :, 1:], lengths)
        got = call(device, "copy_steps", out, a, 1, 1, I, lengths, 1, 1)[0]
        np.testing.assert_array_equal(got, want)

    check()
