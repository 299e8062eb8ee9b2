# The float32 pointwise step of one batch row (B = 1, or one running row) in explicit vectors: the same operations as
# _math.unit_gates, unit_state and unit_backward, in the same order (llvm.fma where they call fma; clamps, products,
# quotients alike), on VBYTES vectors of units (16 with AVX-512), written in LLVM IR as _gemm's blocks are. Each lane
# computes exactly what the scalar code computes for its unit: the same bits (tests/test_kernels.py).
# Why: LLVM vectorizes the scalar loops over units only behind runtime checks that no two of its 9 to 12 arrays
# overlap; with that many arrays it gave up (over 8 checks), or ran the checks and a vector loop unrolled 4 times (64
# units) that H = 32 never enters. The one-row forward step on flat arrays took ~110 ns a call plus ~1.9 ns a unit
# (H = 16: 146, 32: 169, 64: 223, 128: 341 ns, measured); at batch 1 the step is the time loop's critical path.
# The callers do the units past the last whole vector, and everything in float64 (libm's tanh and exp are calls), with
# the scalar functions: these return how many units they did (0 for float64).
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic
from numba.np.arrayobj import populate_array

from . import _gemm, _math


class _Vec:
    """Vector arithmetic of one codegen: splat constants and _math's float32 functions on vectors."""

    def __init__(self, context, builder):
        self.b = builder
        _, self.vty, self.L = _gemm._vector_type(context, types.float32)
        self._fma = _gemm._fma(builder, self.vty, self.L)
        self.vptr = self.vty.as_pointer()

    def const(self, x):
        return ir.Constant(self.vty, [float(x)] * self.L)

    def fma(self, a, b, c):
        return self.b.call(self._fma, [a, b, c])

    def load(self, data, index):
        return self.b.load(self.b.bitcast(self.b.gep(data, [index]), self.vptr), align=4)

    def store(self, v, data, index):
        self.b.store(v, self.b.bitcast(self.b.gep(data, [index]), self.vptr), align=4)

    def select_gt(self, x, y, then, other):
        """then where x > y (ordered: false for nan), else other."""
        return self.b.select(self.b.fcmp_ordered(">", x, y), then, other)

    def tanh(self, x):
        """_math.tanh, float32."""
        b, P, Q = self.b, _math.TANH32_P, _math.TANH32_Q
        c, mc = self.const(_math.TANH32_CLAMP), self.const(-_math.TANH32_CLAMP)
        x = self.select_gt(x, c, c, x)
        x = b.select(b.fcmp_ordered("<", x, mc), mc, x)
        x2 = b.fmul(x, x)
        p = self.fma(self.const(P[0]), x2, self.const(P[1]))
        for k in P[2:]:
            p = self.fma(p, x2, self.const(k))
        q = self.fma(self.const(Q[0]), x2, self.const(Q[1]))
        for k in Q[2:]:
            q = self.fma(q, x2, self.const(k))
        return b.fdiv(b.fmul(x, p), q)

    def sigmoid(self, x):
        """_math.sigmoid, float32."""
        half = self.const(0.5)
        return self.fma(half, self.tanh(self.b.fmul(half, x)), half)

    def cell_act(self, c, relu):
        """_math.cell_act: relu (an i1, true for RELU) or tanh."""
        zero = self.const(0.0)
        return self.b.select(relu, self.select_gt(c, zero, c, zero), self.tanh(c))

    def act_grad(self, a, relu):
        """_math.act_grad."""
        one, zero = self.const(1.0), self.const(0.0)
        return self.b.select(relu, self.select_gt(a, zero, one, zero), self.fma(self.b.fneg(a), a, one))


def _blocks(context, builder, H, emit):
    """emit(vec, j) for j = 0, L, 2L, ... below H // L * L (vec: _Vec) -> that count of units, an intp."""
    vec = _Vec(context, builder)
    i64 = ir.IntType(64)
    L = ir.Constant(i64, vec.L)
    n = builder.sdiv(H, L)
    with cgutils.for_range(builder, n) as loop:
        emit(vec, builder.mul(loop.index, L))
    return builder.mul(n, L)


@intrinsic
def forward_row(typingctx, g, go, r, ro, cp, cpo, wp, H, c, co, tc, tco, m, mo, h, ho, act):
    """cpu._cell_forward_row's units 0 .. k-1, k = H // L * L, L units a vector, float32 (k = 0 otherwise) -> k. The
    arrays 1-d, the offsets as there: gate block q of unit j at g[go + q H + j], its recurrent part at r[ro + q H + j];
    c_{t-1} at cp[cpo + j]; wp the 3H peephole weights; writes the activations over g, and c, tc, m, h."""
    arrays = (g, r, cp, wp, c, tc, m, h)
    sig = types.intp(g, go, r, ro, cp, cpo, wp, H, c, co, tc, tco, m, mo, h, ho, act)

    def codegen(context, builder, sig, args):
        if any(a.dtype != types.float32 for a in arrays):
            return context.get_constant(types.intp, 0)
        G, R, CP, WP, C, TC, M, Hd = (context.make_array(sig.args[i])(context, builder, args[i]).data
                                      for i in (0, 2, 4, 6, 8, 10, 12, 14))
        go_, ro_, cpo_, H_, co_, tco_, mo_, ho_, act_ = _gemm._intp_args(context, builder, sig, args,
                                                                         (1, 3, 5, 7, 9, 11, 13, 15, 16))
        relu = builder.icmp_signed("==", act_, ir.Constant(act_.type, _math.RELU))
        add = builder.add
        H2 = add(H_, H_)
        H3 = add(H2, H_)

        def emit(v, j):
            gj, rj = add(go_, j), add(ro_, j)
            gates = [add(gj, q) for q in (ir.Constant(H_.type, 0), H_, H2, H3)]
            recs = [add(rj, q) for q in (ir.Constant(H_.type, 0), H_, H2, H3)]
            ai, af, ag, ao = (builder.fadd(v.load(G, a), v.load(R, b)) for a, b in zip(gates, recs))
            cprev = v.load(CP, add(cpo_, j))
            pi, pf, po = (v.load(WP, add(j, q)) for q in (ir.Constant(H_.type, 0), H_, H2))
            # unit_gates
            i = v.sigmoid(v.fma(pi, cprev, ai))
            f = v.sigmoid(v.fma(pf, cprev, af))
            gg = v.tanh(ag)
            # unit_state
            cc = v.fma(f, cprev, builder.fmul(i, gg))
            o = v.sigmoid(v.fma(po, cc, ao))
            tcc = v.cell_act(cc, relu)
            mm = builder.fmul(o, tcc)
            for val, idx in zip((i, f, gg, o), gates):
                v.store(val, G, idx)
            v.store(cc, C, add(co_, j))
            v.store(tcc, TC, add(tco_, j))
            v.store(mm, M, add(mo_, j))
            v.store(mm, Hd, add(ho_, j))

        return _blocks(context, builder, H_, emit)

    return sig, codegen


@intrinsic
def backward_row(typingctx, dg, dgo, dc, dco, dm, dmo, g, go, cp, cpo, tc, tco, wp, H, act):
    """cpu._cell_backward_row's units 0 .. k-1, k = H // L * L, float32 (k = 0 otherwise) -> k: dL/dm_t at
    dm[dmo + j], dL/dc_t at dc[dco + j] (replaced by dL/dc_{t-1}), the gates at g[go + q H + j], c_{t-1} at
    cp[cpo + j], act(c_t) at tc[tco + j]; writes dL/d(pre-activations) to dg[dgo + q H + j]."""
    arrays = (dg, dc, dm, g, cp, tc, wp)
    sig = types.intp(dg, dgo, dc, dco, dm, dmo, g, go, cp, cpo, tc, tco, wp, H, act)

    def codegen(context, builder, sig, args):
        if any(a.dtype != types.float32 for a in arrays):
            return context.get_constant(types.intp, 0)
        DG, DC, DM, G, CP, TC, WP = (context.make_array(sig.args[i])(context, builder, args[i]).data
                                     for i in (0, 2, 4, 6, 8, 10, 12))
        dgo_, dco_, dmo_, go_, cpo_, tco_, H_, act_ = _gemm._intp_args(context, builder, sig, args,
                                                                      (1, 3, 5, 7, 9, 11, 13, 14))
        relu = builder.icmp_signed("==", act_, ir.Constant(act_.type, _math.RELU))
        add, mul, sub = builder.add, builder.fmul, builder.fsub
        H2 = add(H_, H_)
        H3 = add(H2, H_)
        blocks = (ir.Constant(H_.type, 0), H_, H2, H3)

        def emit(v, j):
            one = v.const(1.0)
            i, f, g_, o = (v.load(G, add(add(go_, j), q)) for q in blocks)
            pi, pf, po = (v.load(WP, add(j, q)) for q in blocks[:3])
            dh, dc_next = v.load(DM, add(dmo_, j)), v.load(DC, add(dco_, j))
            cprev, tcv = v.load(CP, add(cpo_, j)), v.load(TC, add(tco_, j))
            # unit_backward
            dao = mul(mul(mul(dh, tcv), o), sub(one, o))
            dcv = v.fma(po, dao, v.fma(mul(dh, o), v.act_grad(tcv, relu), dc_next))
            dai = mul(mul(mul(dcv, g_), i), sub(one, i))
            daf = mul(mul(mul(dcv, cprev), f), sub(one, f))
            dag = mul(mul(dcv, i), v.fma(builder.fneg(g_), g_, one))
            dcp = v.fma(pf, daf, v.fma(pi, dai, mul(dcv, f)))
            for val, q in zip((dai, daf, dag, dao), blocks):
                v.store(val, DG, add(add(dgo_, j), q))
            v.store(dcp, DC, add(dco_, j))

        return _blocks(context, builder, H_, emit)

    return sig, codegen


@intrinsic
def flat(typingctx, a):
    """A C-contiguous array as a 1-d view of the same data (a reference to it, as a.reshape(a.size), without
    reshape's shape checks: ~22 ns a call, measured; the pointwise step of B > 1 flattens 7-8 arrays a step)."""
    if not isinstance(a, types.Array) or a.layout != "C":
        return None
    out_type = types.Array(a.dtype, 1, "C")

    def codegen(context, builder, sig, args):
        src = context.make_array(sig.args[0])(context, builder, args[0])
        out = context.make_array(out_type)(context, builder)
        populate_array(out, data=src.data, shape=[src.nitems], strides=[src.itemsize], itemsize=src.itemsize,
                       meminfo=src.meminfo, parent=src.parent)
        value = out._getvalue()
        context.nrt.incref(builder, out_type, value)
        return value

    return out_type(a), codegen
