# Scalar gate math of one LSTM unit, written once and compiled for each target: register_jitable makes
# these plain Python functions callable from @njit and @cuda.jit code alike (and from Python).
# Every constant arrives typed (`one`, `zero` of the kernel's dtype), so a float32 kernel never
# promotes to float64: a bare Python literal such as 1.0 would be typed float64 by numba.
# Gate order i, f, g, o. `act` selects the cell activation: 0 tanh, 1 relu.
# Speed on the CPU: a kernel's loop over units vectorizes (16 float32 lanes with AVX-512) only if everything
# in its body is inlined and free of calls; hence the rational tanh for float32 below (libm's tanhf is a
# ~16 ns call per element) and inline="always" on unit_gates, unit_state and unit_backward (too big for LLVM's
# inliner). Multiply-adds go through fma (one rounding, one instruction; see its docstring).
import math

import numpy as np
from llvmlite import ir
from numba.extending import intrinsic, overload, register_jitable

TANH = 0
RELU = 1
ACTIVATIONS = ("tanh", "relu")   # the names of TANH, RELU


def fma(a, b, c):
    """a * b + c. Compiled (CPU and CUDA), LLVM's llvm.fma: one rounding, one instruction (vfmadd, fma.rn), the same
    in every function that calls it, where letting LLVM fuse a * b + c on its own (fastmath "contract") fused it in
    one function and not in another (a taped and an untaped forward then differed in the last bit). The float32
    pointwise forward step took 14-18% less time with it at B, H = 64, 256 and 64, 512 (1.30-1.39 -> 1.14-1.15 and
    1.13-1.18 -> 0.92-0.97 ns a unit on 2 threads, measured), about the same at B <= 32 and backward. In Python (and
    on numba's CUDA simulator) a * b + c, rounded twice."""
    return a * b + c


@intrinsic
def _llvm_fma(typingctx, a, b, c):
    """llvm.fma of three floats of a's type."""
    sig = a(a, a, a)

    def codegen(context, builder, sig, args):
        ty = context.get_value_type(sig.return_type)
        fn = builder.module.declare_intrinsic("llvm.fma", [ty], ir.FunctionType(ty, [ty, ty, ty]))
        return builder.call(fn, [context.cast(builder, v, t, sig.return_type) for v, t in zip(args, sig.args)])

    return sig, codegen


@overload(fma)
def _fma_jit(a, b, c):
    return lambda a, b, c: _llvm_fma(a, b, c)


# float32 tanh's constants (tanh below; kernels/_vec.py writes the same steps in vectors): tanh(TANH32_CLAMP) rounds to
# 1 in float32; the numerator's coefficients from x^12 down to x^0 (times x), the denominator's from x^6 down.
TANH32_CLAMP = 7.90531110763549805
TANH32_P = (-2.76076847742355e-16, 2.00018790482477e-13, -8.60467152213735e-11, 5.12229709037114e-08,
            1.48572235717979e-05, 6.37261928875436e-04, 4.89352455891786e-03)
TANH32_Q = (1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03, 4.89352518554385e-03)


@register_jitable
def tanh(x, one):
    """tanh in the precision of `one`. float64: libm. float32: Eigen's rational approximation (odd degree-13 over
    even degree-6 polynomial, as Eigen's generic_fast_tanh_float, Horner steps by fma): max abs error 2.7e-7
    (measured against float64 tanh on 6e6 points of [-20, 20]; 3.9e-7 without fma), |tanh| <= 1, call-free and branch-free, so gate loops vectorize. Clamping first keeps x*x finite for
    inputs up to inf (tests/test_lstm.py::test_saturating_input_is_finite_without_warnings); nan stays nan."""
    if isinstance(one, np.float32):
        f, P, Q = np.float32, TANH32_P, TANH32_Q
        c = f(TANH32_CLAMP)
        x = c if x > c else x           # written so that a nan x falls through
        x = -c if x < -c else x
        x2 = x * x
        p = fma(f(P[0]), x2, f(P[1]))
        p = fma(p, x2, f(P[2]))
        p = fma(p, x2, f(P[3]))
        p = fma(p, x2, f(P[4]))
        p = fma(p, x2, f(P[5]))
        p = fma(p, x2, f(P[6]))
        q = fma(f(Q[0]), x2, f(Q[1]))
        q = fma(q, x2, f(Q[2]))
        q = fma(q, x2, f(Q[3]))
        return x * p / q
    return math.tanh(x)


@register_jitable
def sigmoid(x, one):
    """Logistic function without overflow. float32: (1 + tanh(x/2)) / 2 with the vectorizable tanh above (max abs
    error 1.7e-7, measured as tanh's). float64: exp is only taken of -|x| (tests/test_errors.py::test_saturating_input)."""
    if isinstance(one, np.float32):
        half = np.float32(0.5)
        return fma(half, tanh(half * x, one), half)
    e = math.exp(-abs(x))
    if x >= 0:
        return one / (one + e)
    return e / (one + e)


@register_jitable
def cell_act(c, act, one, zero):
    """Cell activation act(c): tanh or relu."""
    if act == TANH:
        return tanh(c, one)
    return c if c > zero else zero


@register_jitable
def act_grad(a, act, one, zero):
    """act'(c) from a = act(c) itself: tanh' = 1 - tanh^2; relu' = 1 where relu(c) > 0 (0 at c = 0, as torch)."""
    if act == TANH:
        return fma(-a, a, one)
    return one if a > zero else zero


@register_jitable(inline="always")
def unit_gates(ai, af, ag, c_prev, pi, pf, one):
    """The forward of one unit, first half: pre-activations ai, af, ag, c_{t-1} and the peephole weights pi, pf (zero:
    no peepholes) -> (i, f, g); the input and forget gates see c_{t-1}. Two halves, so that the CPU's pointwise step
    can run each in its own loop over units."""
    return sigmoid(fma(pi, c_prev, ai), one), sigmoid(fma(pf, c_prev, af), one), tanh(ag, one)


@register_jitable(inline="always")
def unit_state(i, f, g, ao, c_prev, po, act, one, zero):
    """The forward of one unit, second half: the gates i, f, g, the pre-activation ao, c_{t-1} and the peephole
    weight po -> (o, c_t, act(c_t), h_t); the output gate sees c_t."""
    c = fma(f, c_prev, i * g)
    o = sigmoid(fma(po, c, ao), one)
    tc = cell_act(c, act, one, zero)
    return o, c, tc, o * tc


@register_jitable(inline="always")
def unit_backward(dh, dc_next, i, f, g, o, c_prev, tc, pi, pf, po, act, one, zero):
    """dL/dh_t, dL/dc_t (from step t+1), the tape and the peephole weights of one unit
    -> (dai, daf, dag, dao, dL/dc_{t-1}), dai... the gradients of the pre-activations."""
    dao = dh * tc * o * (one - o)
    dc = fma(po, dao, fma(dh * o, act_grad(tc, act, one, zero), dc_next))
    dai = dc * g * i * (one - i)
    daf = dc * c_prev * f * (one - f)
    dag = dc * i * fma(-g, g, one)
    return dai, daf, dag, dao, fma(pf, daf, fma(pi, dai, dc * f))


# Optimizer updates of one parameter element (torch.optim's order of operations), for kernels/layers_cpu.py and
# layers_cuda.py alike.

@register_jitable
def sgd_update(p, buf, g, lr, momentum, dampening1, weight_decay, nesterov, first, zero):
    """torch.optim.SGD on one element -> (p, buf): g + weight_decay p; buf = g at the first step, else
    momentum buf + dampening1 g; Nesterov or plain momentum; p - lr g. buf is returned as given without momentum."""
    if weight_decay != zero:
        g = g + weight_decay * p
    if momentum != zero:
        buf = g if first else buf * momentum + dampening1 * g
        g = g + momentum * buf if nesterov else buf
    return p - lr * g, buf


@register_jitable
def adam_update(p, m, v, g, lr_bc1, beta1, beta1c, beta2, beta2c, weight_decay, decay, sqrt_bc2, eps, decoupled,
                zero):
    """torch.optim.Adam / AdamW on one element -> (p, m, v); the arguments as layers_cpu.adam_step's."""
    if weight_decay != zero:
        if decoupled:
            p = p * decay
        else:
            g = g + weight_decay * p
    m = m * beta1 + beta1c * g
    v = v * beta2 + beta2c * (g * g)
    denom = math.sqrt(v) / sqrt_bc2 + eps
    return p - lr_bc1 * (m / denom), m, v


# Row functions of the loss and attention kernels: one row's arithmetic, written once for the CPU kernel (a loop over
# rows) and the CUDA kernel (a thread per row) alike, so the two compute the same sums in the same order.

@register_jitable
def softmax_xent_row(loss, dz, z, y, w, scale, n):
    """Row n of layers_cpu.softmax_xent: loss[n] = w_n (logsumexp(z[n]) - z[n, y[n]]), dz[n] = (softmax(z[n]) -
    onehot(y[n])) w_n scale; w_n = 0 gives 0 (y[n] unread). The log-sum-exp subtracts the row maximum first: logits
    of 1e4 are fine (tests/test_training_losses.py::test_cross_entropy_is_stable_for_huge_logits)."""
    C = z.shape[1]
    zero = z.dtype.type(0.0)
    one = z.dtype.type(1.0)
    wn = w[n] if w.shape[0] > 1 else w[0]
    if wn == zero:
        loss[n] = zero
        for c in range(C):
            dz[n, c] = zero
        return
    m = z[n, 0]
    for c in range(1, C):
        m = max(m, z[n, c])
    s = zero
    for c in range(C):
        s += math.exp(z[n, c] - m)
    lse = math.log(s)
    yn = y[n]
    for c in range(C):
        p = math.exp(z[n, c] - m - lse)
        g = p - one if c == yn else p
        dz[n, c] = g * wn * scale
    loss[n] = wn * (lse - (z[n, yn] - m))


@register_jitable
def mse_row(loss, dp, p, t, w, scale, n):
    """Row n of layers_cpu.mse: loss[n] = sum_k w (p - t)^2, dp[n, k] = 2 w (p - t) scale; w (N or 1, K or 1)
    broadcast."""
    two = p.dtype.type(2.0)
    acc = p.dtype.type(0.0)
    r = n if w.shape[0] > 1 else 0
    for k in range(p.shape[1]):
        wk = w[r, k] if w.shape[1] > 1 else w[r, 0]
        d = p[n, k] - t[n, k]
        acc += wk * d * d
        dp[n, k] = two * wk * d * scale
    loss[n] = acc


@register_jitable
def masked_softmax_row(a, e, lengths, b):
    """Row b of attention_cpu.masked_softmax: a[b] = softmax of e[b] over s < lengths[b] (the maximum subtracted
    first), 0 on padding and for length 0."""
    S = e.shape[1]
    zero = e.dtype.type(0.0)
    L = min(lengths[b], S)
    m = e[b, 0]
    for s in range(1, L):
        m = max(m, e[b, s])
    total = zero
    for s in range(L):
        p = math.exp(e[b, s] - m)
        a[b, s] = p
        total += p
    for s in range(L):
        a[b, s] /= total
    for s in range(L, S):
        a[b, s] = zero


@register_jitable
def masked_softmax_backward_row(de, da, a, lengths, b):
    """Row b of attention_cpu.masked_softmax_backward: de[b] = a[b] (da[b] - sum_s a[b, s] da[b, s]) on
    s < lengths[b], 0 on padding."""
    S = a.shape[1]
    zero = a.dtype.type(0.0)
    L = min(lengths[b], S)
    dot = zero
    for s in range(L):
        dot += a[b, s] * da[b, s]
    for s in range(L):
        de[b, s] = a[b, s] * (da[b, s] - dot)
    for s in range(L, S):
        de[b, s] = zero
