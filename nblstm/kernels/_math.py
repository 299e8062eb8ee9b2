# Scalar gate math of one LSTM unit, written once and compiled for each target: register_jitable makes
# these plain Python functions callable from @njit and @cuda.jit code alike (and from Python).
# Every constant arrives typed (`one`, `zero` of the kernel's dtype), so a float32 kernel never
# promotes to float64: a bare Python literal such as 1.0 would be typed float64 by numba.
# Gate order i, f, g, o. `act` selects the cell activation: 0 tanh, 1 relu.
# Speed on the CPU: a kernel's loop over units vectorizes (16 float32 lanes with AVX-512) only if everything
# in its body is inlined and free of calls; hence the rational tanh for float32 below (libm's tanhf is a
# ~16 ns call per element) and inline="always" on unit_forward / unit_backward (too big for LLVM's inliner).
import math

import numpy as np
from numba.extending import register_jitable

TANH = 0
RELU = 1
ACTIVATIONS = ("tanh", "relu")   # the names of TANH, RELU


@register_jitable
def tanh(x, one):
    """tanh in the precision of `one`. float64: libm. float32: Eigen's rational approximation (odd degree-13 over
    even degree-6 polynomial, as Eigen's generic_fast_tanh_float): max abs error 3.5e-7 (measured against float64
    tanh), |tanh| <= 1, call-free and branch-free, so gate loops vectorize. Clamping first keeps x*x finite for
    inputs up to inf (tests/test_lstm.py::test_saturating_input_is_finite_without_warnings); nan stays nan."""
    if isinstance(one, np.float32):
        f = np.float32
        c = f(7.90531110763549805)      # tanh(c) rounds to 1 in float32
        x = c if x > c else x           # written so that a nan x falls through
        x = -c if x < -c else x
        x2 = x * x
        p = f(-2.76076847742355e-16) * x2 + f(2.00018790482477e-13)
        p = p * x2 + f(-8.60467152213735e-11)
        p = p * x2 + f(5.12229709037114e-08)
        p = p * x2 + f(1.48572235717979e-05)
        p = p * x2 + f(6.37261928875436e-04)
        p = p * x2 + f(4.89352455891786e-03)
        q = f(1.19825839466702e-06) * x2 + f(1.18534705686654e-04)
        q = q * x2 + f(2.26843463243900e-03)
        q = q * x2 + f(4.89352518554385e-03)
        return x * p / q
    return math.tanh(x)


@register_jitable
def sigmoid(x, one):
    """Logistic function without overflow. float32: (1 + tanh(x/2)) / 2 with the vectorizable tanh above (max abs
    error 2.3e-7, measured). float64: exp is only taken of -|x| (tests/test_errors.py::test_saturating_input)."""
    if isinstance(one, np.float32):
        half = np.float32(0.5)
        return half + half * tanh(half * x, one)
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
        return one - a * a
    return one if a > zero else zero


@register_jitable(inline="always")
def unit_forward(ai, af, ag, ao, c_prev, pi, pf, po, act, one, zero):
    """Pre-activations, c_{t-1} and the peephole weights pi, pf, po of one unit (zero: no peepholes)
    -> (i, f, g, o, c_t, act(c_t), h_t). The input and forget gates see c_{t-1}, the output gate c_t."""
    i = sigmoid(ai + pi * c_prev, one)
    f = sigmoid(af + pf * c_prev, one)
    g = tanh(ag, one)
    c = f * c_prev + i * g
    o = sigmoid(ao + po * c, one)
    tc = cell_act(c, act, one, zero)
    return i, f, g, o, c, tc, o * tc


@register_jitable(inline="always")
def unit_backward(dh, dc_next, i, f, g, o, c_prev, tc, pi, pf, po, act, one, zero):
    """dL/dh_t, dL/dc_t (from step t+1), the tape and the peephole weights of one unit
    -> (dai, daf, dag, dao, dL/dc_{t-1}), dai... the gradients of the pre-activations."""
    dao = dh * tc * o * (one - o)
    dc = dc_next + dh * o * act_grad(tc, act, one, zero) + po * dao
    dai = dc * g * i * (one - i)
    daf = dc * c_prev * f * (one - f)
    dag = dc * i * (one - g * g)
    return dai, daf, dag, dao, dc * f + pi * dai + pf * daf


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
