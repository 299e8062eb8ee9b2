# Scalar gate math of one LSTM unit, written once and compiled for each target: register_jitable makes
# these plain Python functions callable from @njit and @cuda.jit code alike (and from Python).
# Every constant arrives typed (`one`, `zero` of the kernel's dtype), so a float32 kernel never
# promotes to float64: a bare Python literal such as 1.0 would be typed float64 by numba.
# Gate order i, f, g, o. `act` selects the cell activation: 0 tanh, 1 relu.
import math

from numba.extending import register_jitable

TANH = 0
RELU = 1
ACTIVATIONS = ("tanh", "relu")   # the names of TANH, RELU


@register_jitable
def sigmoid(x, one):
    """Logistic function without overflow: exp is only taken of -|x| (tests/test_errors.py::test_saturating_input)."""
    e = math.exp(-abs(x))
    if x >= 0:
        return one / (one + e)
    return e / (one + e)


@register_jitable
def cell_act(c, act, zero):
    """Cell activation act(c): tanh or relu."""
    if act == TANH:
        return math.tanh(c)
    return c if c > zero else zero


@register_jitable
def unit_forward(ai, af, ag, ao, c_prev, act, one, zero):
    """Pre-activations and c_{t-1} of one unit -> (i, f, g, o, c_t, act(c_t), h_t)."""
    i = sigmoid(ai, one)
    f = sigmoid(af, one)
    g = math.tanh(ag)
    o = sigmoid(ao, one)
    c = f * c_prev + i * g
    tc = cell_act(c, act, zero)
    return i, f, g, o, c, tc, o * tc


@register_jitable
def unit_backward(dh, dc_next, i, f, g, o, c_prev, tc, act, one, zero):
    """dL/dh_t, dL/dc_t (from step t+1) and the tape of one unit -> (dai, daf, dag, dao, dL/dc_{t-1})."""
    # act'(c) from act(c) itself: tanh' = 1 - tanh^2; relu' = 1 where relu(c) > 0 (0 at c = 0, as torch).
    if act == TANH:
        dact = one - tc * tc
    else:
        dact = one if tc > zero else zero
    dc = dc_next + dh * o * dact
    dai = dc * g * i * (one - i)
    daf = dc * c_prev * f * (one - f)
    dag = dc * i * (one - g * g)
    dao = dh * tc * o * (one - o)
    return dai, daf, dag, dao, dc * f
