# nblstm's own matrix product for the CPU layer kernels: op(B) packed into panels of NR columns, then a register-blocked
# kernel (MR rows x NR columns of C held in vector registers through the whole depth K) written in LLVM IR: vector
# loads of a panel row, a broadcast of one element of A per row, llvm.fma. numba compiles it for this machine's
# processor (AVX-512 where it has it), whatever kernels the BLAS picked.
#
# Why: the LSTM's products are small in one dimension (a step's B rows against w_hh) or are run many times against
# one weight matrix, which OpenBLAS repacks at every call, except in its SkylakeX cores' small-matrix path; a
# processor that OpenBLAS does not know, or an environment that forces its core type (OPENBLAS_CORETYPE=Haswell on a
# Zen 5, where older OpenBLAS builds fail), runs AVX2 kernels that pack every call. Measured on that Zen 5, one thread,
# float32 (GFLOP/s, this kernel with w_hh packed once against OpenBLAS 0.3.30 as nblstm called it before, gemm_tiles):
# 16 x 64 @ 64 x 256 217 against 44 (Haswell kernels) / 154 (SkylakeX); 32 x 256 @ 256 x 1024 191 / 62 / 123;
# 32 x 512 @ 512 x 2048 160 / 62 / 98; 6400 x 256 @ 256 x 1024 (an input product) 205 / 96 / 111.
#
# A^T B (the weight gradients, A = dG over all steps) by a second kernel (_tblock) with the roles turned: vectors
# along C's rows, which are A's contiguous columns, a broadcast of B per column, C stored element by element.
#
# Each element of C is one chain of fused multiply-adds over k = 0 .. K-1 in order, starting from C's value (beta = 1)
# or from zero: a depth block (KC, KT) starts its chains from the partial sums that the block before it stored in C
# (rather than adding its own sum to them). So the rounding depends on nothing but the order of k: not on KC, KT,
# MC, MR, NV, the vector width, the processor, or which kernel (_block, _tblock) took a row; the blocking can be tuned
# without changing a single result. Splitting a product's depth into calls (beta = 0, then beta = 1) gives the same
# bits as one call.
# Without AVX-512, or with NUMBA_CPU_NAME set (numba compiling for another processor), 32-byte vectors (AVX2's 16
# registers); without hardware FMA, llvm.fma is a (slow, exact) library call.
import llvmlite.binding as ll
import numpy as np
from llvmlite import ir
import numba
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


# Vector bytes and the register block: with AVX-512, 32 vector registers: 6 x 4 accumulators, 4 panel vectors and a
# broadcast; with 16 (AVX2, other targets): 4 x 3 + 3 + 1. NR = NV vectors of VBYTES // itemsize elements (float32:
# 64 columns with AVX-512).
try:                # the host's features, unless NUMBA_CPU_NAME has numba compile for another processor
    WIDE = numba.config.CPU_NAME in (None, "host") and bool(ll.get_host_cpu_features().get("avx512f", False))
except RuntimeError:  # LLVM could not read them
    WIDE = False
VBYTES, MR, NV = (64, 6, 4) if WIDE else (32, 4, 3)
# The blocking (speed only: see the rounding above). One thread, float32, GFLOP/s, KC, MC = 256, 96 against 512, 48,
# one process, interleaved runs, median of 9: input products 3200 x 512 @ 512 x 2048 197 / 211, dx-like
# 1600 x 2048 @ 2048 x 512 162 / 167, 3200 x 1024 @ 1024 x 256 171 / 193; A^T B 1024 x 3200 @ 3200 x 512 135 / 133.
KC = 512            # depth of a packed block: fewer passes over C (the input products' C is T B x 4H, megabytes)
MC = 48             # rows of A per pass over all panels (MC x KC of A stays in L2 beside a panel)
KT = 512            # depth of a block of A^T B (_tblock): a strip of A (KT x NR) stays in L2 over all of B's columns
# A^T B (weight gradients) by _tblock up to this many columns, else by the packed path with A^T read in place. One
# thread, float32, GFLOP/s, one process (_tblock / packed, with pack's fast copies): 128 x 32 x 3200 112 / 82;
# 64 x 32 x 6400 82 / 65; 64 x 2 x 6400 30 / 6; 128 x 64 x 1600 107 / 142; 256 x 128 x 3200 126 / 166 (128 before
# pack's copies were fast, when the packed path ran at 82 there).
TBLOCK_MAX_N = 32
# Vectors a row that _block is compiled for, by its rows: a whole panel (NV), and the narrow products' 1 or 2 (N = 32
# or 2, the small layers' dx: not 4 vectors a row of which 3 add zeros); one row (a step's product at batch 1) takes
# two panels at once, NV more chains beside the first NV while each waits on its last multiply-add. Gemm, one
# thread, float32 (this against one panel of NV vectors): 100 x 128 @ 128 x 32 11.2 -> 7.2 us, 6400 x 128 @ 128 x 2
# 509 -> 196 us, w_hh^T packed 1 x 64 @ 64 x 256 671 -> 488 ns.
VECTORS = {R: (1, 2, NV, 2 * NV) if R == 1 else (1, 2, NV) for R in range(1, MR + 1)}

_jit = numba.njit(cache=True, error_model="numpy")


def _vector_type(context, dtype):
    """(LLVM element type, vector type, lanes L) of VBYTES vectors of `dtype`."""
    fty = context.get_data_type(dtype)
    L = VBYTES // (4 if isinstance(fty, ir.FloatType) else 8)
    return fty, ir.VectorType(fty, L), L


def _fma(builder, vty, L):
    """The llvm.fma intrinsic of vector type vty."""
    return cgutils.get_or_insert_function(builder.module, ir.FunctionType(vty, [vty, vty, vty]),
                                          "llvm.fma.v%d%s" % (L, "f32" if L * 4 == VBYTES else "f64"))


def _switch(builder, value, cases, emit):
    """The code emit(n) for the run-time value n, one of `cases` (the last one for any other value: the callers pass
    no other): one unrolled block per case."""
    if len(cases) == 1:
        emit(cases[0])
        return
    end, other = builder.append_basic_block("end"), builder.append_basic_block("last")
    switch = builder.switch(value, other)
    for n in cases[:-1]:
        case = builder.append_basic_block(f"n{n}")
        switch.add_case(ir.Constant(value.type, n), case)
        builder.position_at_end(case)
        emit(n)
        builder.branch(end)
    builder.position_at_end(other)
    emit(cases[-1])
    builder.branch(end)
    builder.position_at_end(end)


def _switched(emit):
    """The codegen of an intrinsic whose first argument n (1 .. MR, at run time) picks the code that
    emit(context, builder, sig, args, n) writes for that n."""
    def codegen(context, builder, sig, args):
        _switch(builder, args[0], range(1, MR + 1), lambda n: emit(context, builder, sig, args, n))
        return context.get_dummy_value()

    return codegen


def _intp_args(context, builder, sig, args, positions):
    """The integer arguments at `positions` of an intrinsic's call as intp values."""
    return [context.cast(builder, args[i], sig.args[i], types.intp) for i in positions]


def _setup(context, builder, sig, args, arrays, n, nv=NV):
    """What both kernels start with: (LLVM element type, vector type, lanes L, llvm.fma, the data pointers of the
    arguments at positions `arrays`, broadcast(scalar) -> vector, n x nv zeroed accumulators in stack slots, which
    LLVM's mem2reg promotes to registers)."""
    fty, vty, L = _vector_type(context, sig.args[arrays[0]].dtype)
    data = tuple(context.make_array(sig.args[i])(context, builder, args[i]).data for i in arrays)
    undef, lane0 = ir.Constant(vty, ir.Undefined), ir.Constant(ir.IntType(32), 0)
    splat = ir.Constant(ir.VectorType(ir.IntType(32), L), [0] * L)

    def broadcast(x):
        return builder.shuffle_vector(builder.insert_element(undef, x, lane0), undef, splat)

    zero = ir.Constant(vty, [0.0] * L)
    acc = [[cgutils.alloca_once_value(builder, zero) for _ in range(nv)] for _ in range(n)]
    return fty, vty, L, _fma(builder, vty, L), data, broadcast, acc


@intrinsic
def _block(typingctx, rows, vecs, a, ia, sr, sk, p, ip, ps, K, c, ic, ldc, ncols, beta):
    """C[r, j] (+)= sum_k A[r, k] P[k, j] for r < rows (1 .. MR), j < ncols (<= vecs L), computed in `vecs` vectors
    a row (one of VECTORS[rows]): A's element (r, k) at flat index ia + r sr + k sk of a, the panel's (k, j) at
    ip + k NR + j of p, and for vectors past the panel's NV (one row: 2 NV) the next panel's, ps elements on; C's
    (r, j) at ic + r ldc + j of c; beta != 0 starts the sums from C's values (one chain with the depth before),
    else from zero."""
    def codegen(context, builder, sig, args):
        _switch(builder, args[0], range(1, MR + 1), lambda R: _switch(
            builder, args[1], VECTORS[R], lambda V: _emit_block(context, builder, sig, args, R, V)))
        return context.get_dummy_value()

    return types.void(rows, vecs, a, ia, sr, sk, p, ip, ps, K, c, ic, ldc, ncols, beta), codegen


def _emit_block(context, builder, sig, args, R, V):
    """_block's code for R rows of V vectors."""
    _, _, _, ia_, sr_, sk_, _, ip_, ps_, K_, _, ic_, ldc_, nc_, beta_ = args
    fty, vty, L, fma, (A, P, C), broadcast, acc = _setup(context, builder, sig, args, (2, 6, 10), R, V)
    NR, i64, vptr = NV * L, ir.IntType(64), vty.as_pointer()
    whole = builder.icmp_signed("==", nc_, ir.Constant(i64, V * L))
    buf = cgutils.alloca_once(builder, fty, size=V * L)     # a row of C in a partial block (ncols < V L)

    rows = [builder.add(ic_, builder.mul(ir.Constant(i64, r), ldc_)) for r in range(R)]
    slots = [builder.bitcast(builder.gep(buf, [ir.Constant(i64, v * L)]), vptr) for v in range(V)]
    # vector v of a panel row: panel v // NV (ps elements apart), at (v % NV) L in it
    lanes = [builder.add(builder.mul(ps_, ir.Constant(i64, v // NV)), ir.Constant(i64, v % NV * L)) for v in range(V)]

    def c_vector(r, v):                     # vector v of C's row r
        return builder.bitcast(builder.gep(C, [builder.add(rows[r], ir.Constant(i64, v * L))]), vptr)

    def c_element(r, j):                    # C's (r, j), j a run-time column
        return builder.gep(C, [builder.add(rows[r], j)])
    with builder.if_then(builder.icmp_signed("!=", beta_, ir.Constant(beta_.type, 0))):
        with builder.if_else(whole) as (full, part):    # the chains start from C
            with full:
                for r in range(R):
                    for v in range(V):
                        builder.store(builder.load(c_vector(r, v), align=1), acc[r][v])
            with part:
                for r in range(R):
                    for v in range(V):
                        builder.store(ir.Constant(vty, [0.0] * L), slots[v], align=1)
                    with cgutils.for_range(builder, nc_) as col:
                        builder.store(builder.load(c_element(r, col.index)), builder.gep(buf, [col.index]))
                    for v in range(V):
                        builder.store(builder.load(slots[v], align=1), acc[r][v])
    with cgutils.for_range(builder, K_) as loop:
        k = loop.index
        pk = builder.add(ip_, builder.mul(k, ir.Constant(i64, NR)))
        panel = [builder.load(builder.bitcast(builder.gep(P, [builder.add(pk, lanes[v])]), vptr), align=1)
                 for v in range(V)]
        ak = builder.add(ia_, builder.mul(k, sk_))
        for r in range(R):
            x = builder.load(builder.gep(A, [builder.add(ak, builder.mul(ir.Constant(i64, r), sr_))]))
            xv = broadcast(x)
            for v in range(V):
                builder.store(builder.call(fma, [xv, panel[v], builder.load(acc[r][v])]), acc[r][v])
    with builder.if_else(whole) as (full, part):
        with full:                          # whole vectors to C
            for r in range(R):
                for v in range(V):
                    builder.store(builder.load(acc[r][v]), c_vector(r, v), align=1)
        with part:                          # ncols < V L columns, element by element
            for r in range(R):
                for v in range(V):
                    builder.store(builder.load(acc[r][v]), slots[v], align=1)
                with cgutils.for_range(builder, nc_) as col:
                    builder.store(builder.load(builder.gep(buf, [col.index])), c_element(r, col.index))


@intrinsic
def _row(typingctx, a, ia, p, K, N, c, ic):
    """c[ic + j] = sum_k a[ia + k] P[k, j] for j < N, a multiple of the vector lanes L: one row against op(B) packed
    whole (`packed`: panel q's (k, j) at p[(q K + k) NR + j]), two panels (2 NV vectors) at a time, then the vectors
    left, each element one chain of fused multiply-adds from zero over k in order, as _block's (the same bits). Code
    of its own, small enough to be compiled into the time loops that call it for every step (gemm_row)."""
    if not (a.dtype == p.dtype == c.dtype and a.dtype in (types.float32, types.float64)):
        return None
    sig = types.void(a, ia, p, K, N, c, ic)

    def codegen(context, builder, sig, args):
        fty, vty, L, fma, (A, P, C), broadcast, _ = _setup(context, builder, sig, args, (0, 2, 5), 0)
        ia_, K_, N_, ic_ = _intp_args(context, builder, sig, args, (1, 3, 4, 6))
        i64, vptr = ir.IntType(64), vty.as_pointer()
        NR, panel = NV * L, builder.mul(K_, ir.Constant(i64, NV * L))      # a panel's elements: K NR
        nv = builder.sdiv(N_, ir.Constant(i64, L))
        pairs = builder.sdiv(nv, ir.Constant(i64, 2 * NV))

        def emit(V, q0):                    # V vectors from panel q0 on: columns q0 NR .. q0 NR + V L - 1
            zero = ir.Constant(vty, [0.0] * L)
            acc = [cgutils.alloca_once_value(builder, zero) for _ in range(V)]
            base = builder.mul(q0, panel)
            lanes = [builder.add(base, builder.add(builder.mul(panel, ir.Constant(i64, v // NV)),
                                                   ir.Constant(i64, v % NV * L))) for v in range(V)]
            with cgutils.for_range(builder, K_) as loop:
                k = loop.index
                xv = broadcast(builder.load(builder.gep(A, [builder.add(ia_, k)])))
                pk = builder.mul(k, ir.Constant(i64, NR))
                for v in range(V):
                    pv = builder.load(builder.bitcast(builder.gep(P, [builder.add(pk, lanes[v])]), vptr), align=1)
                    builder.store(builder.call(fma, [xv, pv, builder.load(acc[v])]), acc[v])
            c0 = builder.add(ic_, builder.mul(q0, ir.Constant(i64, NR)))
            for v in range(V):
                dst = builder.bitcast(builder.gep(C, [builder.add(c0, ir.Constant(i64, v * L))]), vptr)
                builder.store(builder.load(acc[v]), dst, align=1)

        with cgutils.for_range(builder, pairs) as loop:
            emit(2 * NV, builder.mul(loop.index, ir.Constant(i64, 2)))
        left = builder.sub(nv, builder.mul(pairs, ir.Constant(i64, 2 * NV)))
        q_left = builder.mul(pairs, ir.Constant(i64, 2))
        with builder.if_then(builder.icmp_signed(">", left, ir.Constant(i64, 0))):
            _switch(builder, left, range(1, 2 * NV), lambda V: emit(V, q_left))
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _tblock(typingctx, cols, a, ia, lda, b, ib, sbk, sbj, K, c, ic, ldc, beta):
    """C[r, j] (+)= sum_k A[k, r] B[k, j] for r < NV L (NV whole vectors), j < cols (1 .. MR): A's element (k, r)
    at flat index ia + k lda + r of a (its rows are C's columns: loaded as vectors, no packing), B's (k, j) at
    ib + k sbk + j sbj of b (broadcast), C's (r, j) at ic + r ldc + j of c, stored element by element; beta != 0
    starts the sums from C's values, as _block. The weight gradients' A^T B with few columns (TBLOCK_MAX_N)."""
    return types.void(cols, a, ia, lda, b, ib, sbk, sbj, K, c, ic, ldc, beta), _switched(_emit_tblock)


def _emit_tblock(context, builder, sig, args, J):
    """_tblock's code for J columns."""
    _, _, ia_, lda_, _, ib_, sbk_, sbj_, K_, _, ic_, ldc_, beta_ = args
    fty, vty, L, fma, (A, Bd, C), broadcast, acc = _setup(context, builder, sig, args, (1, 4, 9), J)
    i64, vptr = ir.IntType(64), vty.as_pointer()
    buf = cgutils.alloca_once(builder, fty, size=NV * L)   # a column of C: NV L rows, ldc apart
    slots = [builder.bitcast(builder.gep(buf, [ir.Constant(i64, v * L)]), vptr) for v in range(NV)]

    def column(j, row):
        return builder.gep(C, [builder.add(builder.add(ic_, builder.mul(row, ldc_)), ir.Constant(i64, j))])

    with builder.if_then(builder.icmp_signed("!=", beta_, ir.Constant(beta_.type, 0))):    # the chains start from C
        for j in range(J):
            with cgutils.for_range(builder, ir.Constant(i64, NV * L)) as row:
                builder.store(builder.load(column(j, row.index)), builder.gep(buf, [row.index]))
            for v in range(NV):
                builder.store(builder.load(slots[v], align=1), acc[j][v])
    with cgutils.for_range(builder, K_) as loop:
        k = loop.index
        ak = builder.add(ia_, builder.mul(k, lda_))
        avec = [builder.load(builder.bitcast(builder.gep(A, [builder.add(ak, ir.Constant(i64, v * L))]), vptr),
                             align=1) for v in range(NV)]
        bk = builder.add(ib_, builder.mul(k, sbk_))
        for j in range(J):
            x = builder.load(builder.gep(Bd, [builder.add(bk, builder.mul(ir.Constant(i64, j), sbj_))]))
            xv = broadcast(x)
            for v in range(NV):
                builder.store(builder.call(fma, [avec[v], xv, builder.load(acc[j][v])]), acc[j][v])
    for j in range(J):
        for v in range(NV):
            builder.store(builder.load(acc[j][v]), slots[v], align=1)
        with cgutils.for_range(builder, ir.Constant(i64, NV * L)) as row:
            builder.store(builder.load(builder.gep(buf, [row.index])), column(j, row.index))


@intrinsic
def _panel_row(typingctx, out, io, b, ib, w):
    """out[io:io + NR] = b[ib:ib + w] followed by NR - w zeros (w <= NR): a row of a panel, by vectors (a slice
    assignment cost ~20 ns a row, measured), the last w % L elements one by one."""
    if out.dtype != b.dtype:
        return None
    sig = types.void(out, io, b, ib, w)

    def codegen(context, builder, sig, args):
        fty, vty, L, _, (O, Bd), _, _ = _setup(context, builder, sig, args, (0, 2), 0)
        io_, ib_, w_ = _intp_args(context, builder, sig, args, (1, 3, 4))
        i64, vptr = ir.IntType(64), vty.as_pointer()

        def vec(data, index):
            return builder.bitcast(builder.gep(data, [index]), vptr)
        for v in range(NV):                 # zeros, then the row over them
            builder.store(ir.Constant(vty, [0.0] * L), vec(O, builder.add(io_, ir.Constant(i64, v * L))), align=1)
        whole = builder.sdiv(w_, ir.Constant(i64, L))
        with cgutils.for_range(builder, whole) as loop:
            j = builder.mul(loop.index, ir.Constant(i64, L))
            builder.store(builder.load(vec(Bd, builder.add(ib_, j)), align=1), vec(O, builder.add(io_, j)), align=1)
        done = builder.mul(whole, ir.Constant(i64, L))
        with cgutils.for_range(builder, builder.sub(w_, done)) as loop:
            j = builder.add(done, loop.index)
            builder.store(builder.load(builder.gep(Bd, [builder.add(ib_, j)])), builder.gep(O, [builder.add(io_, j)]))
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _tile_t(typingctx, out, io, ldo, b, ib, ldb):
    """A tile of L x L elements transposed: out[io + k ldo + j] = b[ib + j ldb + k] for j, k < L (the vector lanes):
    L vector loads along b's rows, log2(L) rounds of shuffles, L vector stores (element by element, the transposed
    copy that pack does for op(B) = B^T cost ~0.5 ns an element, measured)."""
    if out.dtype != b.dtype:
        return None
    sig = types.void(out, io, ldo, b, ib, ldb)

    def codegen(context, builder, sig, args):
        fty, vty, L, _, (O, Bd), _, _ = _setup(context, builder, sig, args, (0, 3), 0)
        io_, ldo_, ib_, ldb_ = _intp_args(context, builder, sig, args, (1, 2, 4, 5))
        i64, i32, vptr = ir.IntType(64), ir.IntType(32), vty.as_pointer()

        def vec(data, start, stride, r):
            return builder.bitcast(builder.gep(data, [builder.add(start, builder.mul(stride, ir.Constant(i64, r)))]),
                                   vptr)
        rows = [builder.load(vec(Bd, ib_, ldb_, r), align=1) for r in range(L)]
        s = L // 2
        while s >= 1:                           # rows i and i + s swap their blocks of s lanes
            lo = ir.Constant(ir.VectorType(i32, L), [l if l & s == 0 else L + l - s for l in range(L)])
            hi = ir.Constant(ir.VectorType(i32, L), [l + s if l & s == 0 else L + l for l in range(L)])
            new = list(rows)
            for i in range(L):
                if i & s == 0:
                    new[i] = builder.shuffle_vector(rows[i], rows[i + s], lo)
                    new[i + s] = builder.shuffle_vector(rows[i], rows[i + s], hi)
            rows, s = new, s // 2
        for r in range(L):
            builder.store(rows[r], vec(O, io_, ldo_, r), align=1)
        return context.get_dummy_value()

    return sig, codegen


@_jit
def panel_cols(dtype_size):
    """NR: the columns of a panel for elements of `dtype_size` bytes."""
    return NV * VBYTES // dtype_size


@_jit
def packed_size(K, N, dtype_size):
    """Elements of the packed form of a K x N matrix (panels zero-padded to NR columns)."""
    nr = panel_cols(dtype_size)
    return -(-N // nr) * nr * K


@_jit
def pack(b, ib, ldb, trans_b, K, N, out, io):
    """op(B) (K x N) into panels of NR = panel_cols(itemsize) columns from flat offset io of out, as _gemm_packed and
    _row read them: panel q holds columns q NR .. q NR + NR - 1, its element (k, j) at io + (q K + k) NR + j, zeros
    past column N. B is stored from flat offset ib of the C-contiguous array b with row stride ldb, as K x N, or as
    N x K when trans_b; b and out flat (1-d). B's rows go by vectors (_panel_row, zeros included), B^T by tiles of
    L x L transposed in registers (_tile_t), its edges one by one with unsigned indices: element-wise signed indexing
    (numba's negative-index wraparound) kept such loops scalar, 2-6x slower (measured), which gemm pays every call
    and KC block."""
    nr = panel_cols(out.itemsize)
    L = nr // NV
    for q in range(-(-N // nr)):
        n0 = q * nr
        w = min(nr, N - n0)
        base = io + q * K * nr
        if not trans_b:
            for k in range(K):
                _panel_row(out, base + k * nr, b, ib + k * ldb + n0, w)
            continue
        jt, kt = w // L * L, K // L * L         # column j of the panel from B's row n0 + j: whole tiles, then the rest
        for j0 in range(0, jt, L):
            for k0 in range(0, kt, L):
                _tile_t(out, base + k0 * nr + j0, nr, b, ib + (n0 + j0) * ldb + k0, ldb)
        for j in range(w):
            src = ib + (n0 + j) * ldb
            for k in range(kt if j < jt else 0, K):
                out[np.uint64(base + k * nr + j)] = b[np.uint64(src + k)]
        for k in range(K):
            dst = base + k * nr
            for j in range(w, nr):
                out[np.uint64(dst + j)] = 0


@_jit
def packed(w, trans):
    """w (2-d) packed whole: op(w) = w^T when trans, else w."""
    w = np.ascontiguousarray(w)
    K, N = (w.shape[1], w.shape[0]) if trans else (w.shape[0], w.shape[1])
    out = np.empty(packed_size(K, N, w.itemsize), w.dtype)
    pack(w.reshape(w.size), 0, w.shape[1], trans, K, N, out, 0)
    return out


@_jit
def _gemm_packed(m, N, K, a, ia, sr, sk, p, ip, beta, c, ic, ldc):
    """C (m x N) = A (m x K) op(B), plus C when beta != 0, op(B) packed by `pack` from flat offset ip of p; A's element
    (r, k) at flat index ia + r sr + k sk of a (row-major: sr = lda, sk = 1; transposed: sr = 1, sk = lda), C's (r, j)
    at ic + r ldc + j of c. a, p and c C-contiguous, of one float dtype."""
    nr = panel_cols(c.itemsize)
    L = nr // NV
    panels = -(-N // nr)
    for r0 in range(0, m, MC):
        r1 = min(m, r0 + MC)
        q = 0
        while q < panels:
            span = 2 if m == 1 and q + 1 < panels else 1    # one row: two panels a block
            cols = min(span * nr, N - q * nr)
            vecs = -(-cols // L)                            # rounded up to one of VECTORS
            vecs = vecs if vecs <= 2 else NV if vecs <= NV else 2 * NV
            pq, cq = ip + q * K * nr, ic + q * nr
            for r in range(r0, r1, MR):
                _block(min(MR, r1 - r), vecs, a, ia + r * sr, sr, sk, p, pq, K * nr, K, c, cq + r * ldc, ldc, cols,
                       beta)
            q += span


@_jit
def _gemm(trans_a, trans_b, m, n, k, a, ia, lda, b, ib, ldb, beta, c, ic, ldc):
    """gemm on 1-d arrays."""
    if m <= 0 or n <= 0:
        return
    sr, sk = (1, lda) if trans_a else (lda, 1)
    if k <= 0:
        if beta == 0:                           # an empty sum
            for r in range(m):
                c[ic + r * ldc:ic + r * ldc + n] = 0
        return
    if trans_a and n <= TBLOCK_MAX_N:           # strips of NV vectors of C's rows (A's columns), then the rest
        strip = panel_cols(c.itemsize)
        full = m // strip * strip
        groups = -(-n // MR)
        # op(B)'s (k, j) at ib + k sbk + j sbj, read in place: packing it in groups of MR columns first cost more
        # than it saved (one thread, float32, us, packed / in place, bench_gemm.py: t:128x100x32 7.6-10.3 / 7.2-7.4,
        # t:128x1000x32 51-57 / 45, t:256x3200x7 120-127 / 79-82, t:512x6400x32 1536-1846 / 1596-1874)
        sbk, sbj = (1, ldb) if trans_b else (ldb, 1)
        for k0 in range(0, k if full > 0 else 0, KT):
            kk, add = min(KT, k - k0), 1 if k0 > 0 or beta != 0 else 0
            for r0 in range(0, full, strip):
                for g in range(groups):
                    _tblock(min(MR, n - g * MR), a, ia + k0 * lda + r0, lda, b, ib + k0 * sbk + g * MR * sbj, sbk,
                            sbj, kk, c, ic + r0 * ldc + g * MR, ldc, add)
        if full == m:
            return
        ia, m, ic = ia + full, m - full, ic + full * ldc
    depth = min(k, KC)
    buf = np.empty(packed_size(depth, n, c.itemsize), c.dtype)
    for k0 in range(0, k, KC):
        kk = min(KC, k - k0)
        pack(b, ib + (k0 if trans_b else k0 * ldb), ldb, trans_b, kk, n, buf, 0)
        _gemm_packed(m, n, kk, a, ia + k0 * sk, sr, sk, buf, 0, 1 if k0 > 0 or beta != 0 else 0, c, ic, ldc)


# The kernels above are compiled once per dtype as C functions (numba.cfunc, cached), their addresses registered as
# external symbols, and the layer kernels call them by name, as they call the BLAS: numba links a called njit
# function's code into every caller and optimizes it again there, which with these unrolled blocks took a cold first
# f+b from 42 to 205 s of compiling (98 s with 1-d arrays only); as external functions they compile once.
def _gemm_entry(trans_a, trans_b, m, n, k, a, na, lda, b, nb, ldb, beta, c, nc, ldc):
    _gemm(trans_a != 0, trans_b != 0, m, n, k, numba.carray(a, (na,)), 0, lda, numba.carray(b, (nb,)), 0, ldb, beta,
          numba.carray(c, (nc,)), 0, ldc)


def _packed_entry(m, N, K, a, na, sr, sk, p, np_, beta, c, nc, ldc):
    _gemm_packed(m, N, K, numba.carray(a, (na,)), 0, sr, sk, numba.carray(p, (np_,)), 0, beta, numba.carray(c, (nc,)),
                 0, ldc)


_ENTRIES = {}       # the compiled C functions, kept alive for their registered addresses
for _name, _dtype in (("s", types.float32), ("d", types.float64)):
    _i8, _ptr = types.int64, types.CPointer(_dtype)
    for _what, _body, _sig in (
            ("gemm", _gemm_entry, types.void(*[_i8] * 5, _ptr, _i8, _i8, _ptr, _i8, _i8, _i8, _ptr, _i8, _i8)),
            ("packed", _packed_entry, types.void(*[_i8] * 3, _ptr, _i8, _i8, _i8, _ptr, _i8, _i8, _ptr, _i8, _i8))):
        _ENTRIES[_what, _name] = _f = numba.cfunc(_sig, cache=True, error_model="numpy")(_body)
        ll.add_symbol(f"nblstm_{_what}_{_name}", _f.address)
_v, _i = types.voidptr, types.int64
_gemm_s, _gemm_d = (types.ExternalFunction(f"nblstm_gemm_{x}", types.void(
    _i, _i, _i, _i, _i, _v, _i, _i, _v, _i, _i, _i, _v, _i, _i)) for x in "sd")
_packed_s, _packed_d = (types.ExternalFunction(f"nblstm_packed_{x}", types.void(
    _i, _i, _i, _v, _i, _i, _i, _v, _i, _i, _v, _i, _i)) for x in "sd")


@intrinsic
def _address(typingctx, arr, offset):
    """void* to element `offset` (counted in elements, row-major flat index) of array `arr`'s data."""
    sig = types.voidptr(arr, types.intp)

    def codegen(context, builder, sig, args):
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        return builder.bitcast(builder.gep(ary.data, [args[1]]), ir.IntType(8).as_pointer())

    return sig, codegen


@intrinsic
def _one_float_dtype(typingctx, a, b, c):
    """True (a constant of the compiled code) when the arrays a, b, c all have dtype float32, or all float64."""
    ok = a.dtype == b.dtype == c.dtype and a.dtype in (types.float32, types.float64)

    def codegen(context, builder, sig, args):
        return context.get_constant(types.boolean, ok)

    return types.boolean(a, b, c), codegen


@numba.njit(cache=True, inline="always")
def _float32(a, b, c):
    """Whether a product's arrays are float32 (else float64); ValueError unless all three are C-contiguous and of one
    dtype, float32 or float64."""
    if not (a.flags.c_contiguous and b.flags.c_contiguous and c.flags.c_contiguous):
        raise ValueError("gemm: a, b and c must be C-contiguous")
    if not _one_float_dtype(a, b, c):
        raise ValueError("gemm: a, b and c must have one dtype, float32 or float64")
    return c.itemsize == 4


@_jit
def gemm(trans_a, trans_b, m, n, k, a, ia, lda, b, ib, ldb, beta, c, ic, ldc):
    """Row-major C = op(A) op(B) + beta C, beta 0 (overwrite) or 1 (accumulate): C is the m x n matrix at flat offset
    `ic` of array `c` with row stride `ldc`; op(A) is m x k: A is stored from offset `ia` of `a` with row stride `lda`,
    as an m x k matrix, or as k x m when `trans_a`; likewise op(B) k x n. The arrays C-contiguous, of one float dtype
    (ValueError otherwise). Each element of C is one chain of fused multiply-adds over k in order, from C's value
    (beta = 1) or zero. op(B) is packed in blocks of KC rows for _gemm_packed; A^T B goes by strips of _tblock
    first."""
    f32 = _float32(a, b, c)
    if beta != 0 and beta != 1:
        raise ValueError("gemm: beta must be 0 (overwrite) or 1 (accumulate)")
    args = (np.int64(trans_a), np.int64(trans_b), np.int64(m), np.int64(n), np.int64(k),
            _address(a, ia), np.int64(a.size - ia), np.int64(lda), _address(b, ib), np.int64(b.size - ib),
            np.int64(ldb), np.int64(beta != 0), _address(c, ic), np.int64(c.size - ic), np.int64(ldc))
    if f32:
        _gemm_s(*args)
    else:
        _gemm_d(*args)


@numba.njit(cache=True, error_model="numpy", inline="always")
def gemm_row(N, K, a, ia, p, c, ic):
    """c[ic:ic + N] = a[ia:ia + K] @ op(B) (K x N, packed whole by `packed`), all flat (1-d) arrays of one float
    dtype: gemm_packed for one row (the same bits), by _row when N fills whole vectors (a step's product at batch 1:
    no call of the external product, ~40-70 ns a step, measured), else by gemm_packed."""
    if N % (panel_cols(c.itemsize) // NV) == 0:
        _row(a, ia, p, K, N, c, ic)
    else:
        gemm_packed(1, N, K, a, ia, K, 1, p, 0, c, ic, N)


@_jit
def gemm_packed(m, N, K, a, ia, sr, sk, p, beta, c, ic, ldc):
    """C (m x N) = A (m x K) op(B), plus C when beta != 0, op(B) packed whole by `packed`; A's element (r, k) at flat
    index ia + r sr + k sk of a (row-major: sr = lda, sk = 1), C's (r, j) at ic + r ldc + j of c; C-contiguous
    arrays of one float dtype; ValueError unless p holds at least the packed size of a K x N matrix."""
    f32 = _float32(a, p, c)
    if p.size < packed_size(K, N, c.itemsize):
        raise ValueError("gemm_packed: p is smaller than a K x N matrix packed (packed_size(K, N, itemsize))")
    args = (np.int64(m), np.int64(N), np.int64(K), _address(a, ia), np.int64(a.size - ia), np.int64(sr),
            np.int64(sk), _address(p, 0), np.int64(p.size), np.int64(beta != 0), _address(c, ic),
            np.int64(c.size - ic), np.int64(ldc))
    if f32:
        _packed_s(*args)
    else:
        _packed_d(*args)

