"""Gradient and gate diagnostics: what happens at each time step, for studies and notebooks.

Shapes: T time steps, B batch, I input size, H hidden size (P = H unless the LSTM has a projection).
Every result is time-major. States are indexed by the number of steps taken: state 0 is the initial one
(h_0, c_0), state t the one after x[t - 1], so y[t - 1] = h_t and state T is (h_n, c_n).

The compiled kernels run BPTT inside one call and keep no per-step gradient, so the per-step quantities here
are recomputed in NumPy by :mod:`nblstm.reference` (the oracle the kernels are tested against)
from the model's ``state_dict()``: one layer, one direction, no ``lengths``. tests/test_diagnostics.py checks them
against the model's own backward (dL/dh_0, dL/dc_0, dL/dx and the parameter gradients, which are sums over the
per-step terms).

- :func:`step_gradients`: ||dL/dh_t|| and ||dL/dc_t|| for t = 0..T (LSTM), ||dL/dh_t|| (RNN).
- :func:`gate_statistics`: the LSTM's gate activations per step, their means and saturation fractions.
- :func:`finite_difference_errors`: the error of a central difference against the analytic gradient as a
  function of the step size (the V-shaped curve of a gradient-checking study).
"""
import collections

import numpy as np

from . import backends, reference
from ._grad import no_grad
from ._lstm import LSTM
from ._rnn import RNN

__all__ = ["StepGradients", "step_gradients", "GateStatistics", "gate_statistics", "FDErrors",
           "finite_difference_errors", "SIGMOID_LOW", "SIGMOID_HIGH", "TANH_HIGH"]

#: Saturation thresholds of :func:`gate_statistics`: a sigmoid gate (i, f, o) is saturated below SIGMOID_LOW or
#: above SIGMOID_HIGH (its derivative s(1 - s) is then < 0.0475, under a fifth of its maximum 0.25); the tanh
#: candidate g when |g| > TANH_HIGH (derivative 1 - g^2 < 0.0975, under a tenth of its maximum 1).
SIGMOID_LOW, SIGMOID_HIGH, TANH_HIGH = 0.05, 0.95, 0.95

StepGradients = collections.namedtuple("StepGradients", "dh_norm dc_norm dh dc dx da")
StepGradients.__doc__ = """Per-step gradients of one backward pass (see :func:`step_gradients`).

dh_norm, dc_norm : (T + 1,) float64
    ||dL/dh_t||, ||dL/dc_t|| (Frobenius norm over batch and units) for the states t = 0..T; dc_norm is None for
    an RNN.
dh, dc : (T + 1, B, P), (T + 1, B, H)
    The gradients themselves. dh[t] is the total derivative of L with respect to h_t: through y[t - 1] (the
    given dy) and through the later steps; dh[0] is the model's dL/dh0. dc is None for an RNN.
dx : (T, B, I)
    dL/dx, as the model's backward returns it.
da : (T, B, 4H) (LSTM, gate blocks i, f, g, o) or (T, B, H) (RNN)
    dL/d(pre-activations) per step; its sum over steps and batch is the bias gradient.
"""

GateStatistics = collections.namedtuple("GateStatistics", "gates mean saturation c h")
GateStatistics.__doc__ = """LSTM gate activations over time (see :func:`gate_statistics`).

gates : dict "i", "f", "g", "o" -> (T, B, H)
    The activations at each step (g is the tanh cell candidate).
mean : dict "i", "f", "g", "o" -> (T,)
    Mean over batch and units at each step.
saturation : dict "i", "f", "g", "o" -> (T,)
    Share of batch x units that are saturated at each step: i, f, o below SIGMOID_LOW = 0.05 or above
    SIGMOID_HIGH = 0.95; g with |g| > TANH_HIGH = 0.95.
c, h : (T, B, H), (T, B, P)
    Cell and hidden states after each step (c[t - 1] is c_t).
"""

FDErrors = collections.namedtuple("FDErrors", "steps errors median best_step best_error")
FDErrors.__doc__ = """Finite-difference error against step size (see :func:`finite_difference_errors`).

steps : (S,)  the step sizes eps
errors : (S, K)  relative error of the central difference along each of K random directions
median : (S,)  median over the directions
best_step, best_error : float  the step with the smallest median error, and that error
"""


def _one_layer(model):
    """model's state_dict; ValueError unless it has one layer in one direction."""
    if model.num_layers != 1 or model.bidirectional:
        raise ValueError(f"model: the per-step diagnostics handle one layer in one direction, got num_layers="
                         f"{model.num_layers}, bidirectional={model.bidirectional}; pass a one-layer "
                         f"{type(model).__name__} (for a stack, build one from that layer's state_dict entries)")
    return model.state_dict()


def _lstm_params(model):
    """A one-layer, one-direction nblstm.LSTM -> reference arguments (w_ih, w_hh, b_ih, b_hh, peephole, w_hr)."""
    p = _one_layer(model)
    known = {f"{n}_l0" for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr", "weight_ci",
                                 "weight_cf", "weight_co")}
    unknown = sorted(set(p) - known)
    if unknown:
        raise ValueError(f"model: parameters {unknown} are not understood by nblstm.diagnostics "
                         f"(expected names among {sorted(known)})")
    zero = np.zeros(p["weight_ih_l0"].shape[0], model.dtype)
    peephole = tuple(p[f"weight_c{k}_l0"] for k in "ifo") if "weight_ci_l0" in p else None
    return (p["weight_ih_l0"], p["weight_hh_l0"], p.get("bias_ih_l0", zero), p.get("bias_hh_l0", zero), peephole,
            p.get("weight_hr_l0"))


def _time_major(model, a, name):
    """`a` in the model's layout (batch_first or not) -> a time-major (T, B, F) array of the model's dtype."""
    a = np.asarray(backends.to_host(a), dtype=model.dtype)
    if a.ndim != 3:
        raise ValueError(f"{name}: expected a 3-d array (T, B, F) (or (B, T, F) with batch_first), got shape "
                         f"{a.shape}")
    return np.ascontiguousarray(a.transpose(1, 0, 2)) if getattr(model, "batch_first", False) else a


def _initial(state, k, shape, dtype, name):
    """The k-th part of a state (or of a state gradient) as a (B, F) array; None -> zeros."""
    if state is None:
        return np.zeros(shape, dtype)
    part = state if k is None else state[k]
    part = np.asarray(backends.to_host(part), dtype=dtype)
    if part.shape != (1,) + shape:
        raise ValueError(f"{name}: expected shape {(1,) + shape}, got {part.shape}")
    return part[0]


def _lstm_forward(model, x, state):
    w_ih, w_hh, b_ih, b_hh, peephole, w_hr = _lstm_params(model)
    T, B, _ = x.shape
    P, H = w_hh.shape[1], model.hidden_size
    h0 = _initial(state, 0, (B, P), model.dtype, "state[0]")
    c0 = _initial(state, 1, (B, H), model.dtype, "state[1]")
    return reference.lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, model.cell_activation, peephole, w_hr)


def step_gradients(model, x, dy, state=None, state_grad=None):
    """Per-step gradients ||dL/dh_t|| and ||dL/dc_t|| of one backward pass through an LSTM or RNN.

    L is the loss whose gradient with respect to the outputs is `dy` (and `state_grad` for the final state), as
    in ``model.backward(dy, state_grad)``. Nothing in the model changes (its tape and ``grads`` are untouched).

    Parameters
    ----------
    model : nblstm.LSTM or nblstm.RNN, one layer, one direction
        Its ``state_dict()`` is used on the host, so a model on any device works. Sequences of different
        lengths (``lengths``) are not handled: pad them yourself or pass equal lengths.
    x : array (T, B, I), or (B, T, I) when the model is batch_first
    dy : array like y
        dL/dy. For a loss at the last step only (the vanishing-gradient study), zeros except ``dy[-1]``.
    state : (h0, c0) for an LSTM, h0 for an RNN, each (1, B, H); None for zeros
    state_grad : (dL/dh_n, dL/dc_n) for an LSTM, dL/dh_n for an RNN, each (1, B, H); None for zeros

    Returns
    -------
    StepGradients
        ``dh_norm[t]`` = ||dL/dh_t||, ``dc_norm[t]`` = ||dL/dc_t|| for t = 0..T (t = 0 the initial state), plus the
        arrays themselves; dh[t] includes the direct term dy[t - 1]. For an RNN, dc and dc_norm are None.

    Notes
    -----
    Computed in the model's dtype by :func:`nblstm.reference.lstm_forward` and
    :func:`nblstm.reference.cell_backward` (:func:`nblstm.reference.rnn_forward` and the same two-line step for
    an RNN), stepping back in time and keeping every step's dL/dh and dL/dc, which the compiled BPTT does not
    expose. The lag of h_t behind a loss at the last step is T - t.

    Examples
    --------
    >>> import numpy as np, nblstm
    >>> lstm = nblstm.LSTM(2, 8, dtype=np.float64, seed=0, forget_bias=1.0)
    >>> x = np.random.default_rng(0).standard_normal((30, 4, 2))
    >>> dy = np.zeros((30, 4, 8)); dy[-1] = 1.0                 # a loss at the last step only
    >>> g = nblstm.diagnostics.step_gradients(lstm, x, dy)
    >>> g.dh_norm.shape, g.dc.shape                            # states 0..T
    ((31,), (31, 4, 8))
    >>> bool(g.dh_norm[0] < g.dh_norm[-1])                     # gradient shrinks going back 30 steps
    True
    >>> _ = lstm(x); dx, (dh0, dc0) = lstm.backward(dy)
    >>> bool(np.allclose(g.dh[0], dh0[0]) and np.allclose(g.dc[0], dc0[0]) and np.allclose(g.dx, dx))
    True
    """
    if isinstance(model, RNN):
        return _rnn_step_gradients(model, x, dy, state, state_grad)
    if not isinstance(model, LSTM):
        raise TypeError(f"model: expected an nblstm.LSTM or nblstm.RNN, got {type(model).__name__}")
    x = _time_major(model, x, "x")
    y, _, _, caches = _lstm_forward(model, x, state)
    dy = _time_major(model, dy, "dy")
    if dy.shape != y.shape:
        raise ValueError(f"dy: expected the shape of y {y.shape} (time-major), got {dy.shape}")
    T, B, P = y.shape
    H = model.hidden_size
    dh = np.zeros((T + 1, B, P), model.dtype)
    dc = np.zeros((T + 1, B, H), model.dtype)
    dx = np.zeros(x.shape, model.dtype)
    da = np.zeros((T, B, 4 * H), model.dtype)
    dh_next = _initial(state_grad, 0, (B, P), model.dtype, "state_grad[0]")   # dL/dh_T through the final state
    dc[T] = _initial(state_grad, 1, (B, H), model.dtype, "state_grad[1]")
    dh[T] = dy[T - 1] + dh_next
    for t in reversed(range(T)):                   # step t maps state t to state t + 1
        cache, _ = caches[t]
        step = reference.cell_backward(dh[t + 1], dc[t + 1], cache)
        dx[t], da[t], dc[t] = step["x"], step["a"], step["c"]
        dh[t] = step["h"] + (dy[t - 1] if t > 0 else 0)       # h_t is also the output y[t - 1]
    return StepGradients(_norms(dh), _norms(dc), dh, dc, dx, da)


def _rnn_step_gradients(model, x, dy, state, state_grad):
    p = _one_layer(model)
    x = _time_major(model, x, "x")
    H = model.hidden_size
    zero = np.zeros(H, model.dtype)
    T, B, _ = x.shape
    h0 = _initial(state, None, (B, H), model.dtype, "state")
    y, _, (caches, w_ih, w_hh, _) = reference.rnn_forward(x, h0, p["weight_ih_l0"], p["weight_hh_l0"],
                                                          p.get("bias_ih_l0", zero), p.get("bias_hh_l0", zero),
                                                          model.nonlinearity)
    dy = _time_major(model, dy, "dy")
    if dy.shape != y.shape:
        raise ValueError(f"dy: expected the shape of y {y.shape} (time-major), got {dy.shape}")
    dh = np.zeros((T + 1, B, H), model.dtype)
    dx = np.zeros(x.shape, model.dtype)
    da = np.zeros((T, B, H), model.dtype)
    dh[T] = dy[T - 1] + _initial(state_grad, None, (B, H), model.dtype, "state_grad")
    for t in reversed(range(T)):                   # as reference.rnn_backward, keeping every step's dL/dh
        _, _, h_new, _ = caches[t]
        da[t] = dh[t + 1] * (1 - h_new**2 if model.nonlinearity == "tanh" else (h_new > 0).astype(h_new.dtype))
        dx[t] = da[t] @ w_ih
        dh[t] = da[t] @ w_hh + (dy[t - 1] if t > 0 else 0)
    return StepGradients(_norms(dh), None, dh, None, dx, da)


def _norms(a):
    """(T + 1, B, F) -> (T + 1,) Frobenius norms per step, in float64."""
    return np.sqrt((a.astype(np.float64).reshape(a.shape[0], -1) ** 2).sum(axis=1))


def gate_statistics(model, x, state=None):
    """Gate activations of a one-layer LSTM over a sequence: per step, their means and saturation fractions.

    Parameters
    ----------
    model : nblstm.LSTM, one layer, one direction
    x : array (T, B, I), or (B, T, I) when the model is batch_first
    state : (h0, c0) each (1, B, H), or None for zeros

    Returns
    -------
    GateStatistics
        ``gates["i"]`` etc. (T, B, H); ``mean[k]`` and ``saturation[k]`` (T,) for k in "ifgo"; c and h (T, B, .).
        A sigmoid gate (i, f, o) counts as saturated below ``SIGMOID_LOW`` = 0.05 or above ``SIGMOID_HIGH`` =
        0.95, the candidate g when |g| > ``TANH_HIGH`` = 0.95: there the derivative is under a fifth (sigmoid)
        or a tenth (tanh) of its maximum, and little gradient passes through the gate's own input weights
        (the forget gate near 1 is, on the other hand, what carries dL/dc_t back unchanged).

    Examples
    --------
    >>> import numpy as np, nblstm
    >>> lstm = nblstm.LSTM(2, 8, dtype=np.float64, seed=0, forget_bias=5.0)
    >>> s = nblstm.diagnostics.gate_statistics(lstm, np.zeros((20, 4, 2)))
    >>> s.gates["f"].shape, s.mean["f"].shape
    ((20, 4, 8), (20,))
    >>> bool(s.mean["f"].min() > 0.99), float(s.saturation["f"][0])   # sigmoid(5 +- 0.7): all above 0.95
    (True, 1.0)
    """
    if not isinstance(model, LSTM):
        raise TypeError(f"model: expected an nblstm.LSTM, got {type(model).__name__}")
    x = _time_major(model, x, "x")
    y, _, _, caches = _lstm_forward(model, x, state)
    # reference.cell_forward's cache: (x, h, c, w_ih, w_hh, i, f, g, o, act(c), ..., c_next, m)
    gates = {k: np.stack([cache[5 + n] for cache, _ in caches]) for n, k in enumerate("ifgo")}
    c = np.stack([cache[-2] for cache, _ in caches])
    mean = {k: a.reshape(a.shape[0], -1).mean(axis=1) for k, a in gates.items()}
    saturated = {k: (np.abs(a) > TANH_HIGH) if k == "g" else ((a < SIGMOID_LOW) | (a > SIGMOID_HIGH))
                 for k, a in gates.items()}
    saturation = {k: s.reshape(s.shape[0], -1).mean(axis=1) for k, s in saturated.items()}
    return GateStatistics(gates, mean, saturation, c, y)


def finite_difference_errors(model, x, steps=None, *, state=None, directions=5, seed=0, **forward_kwargs):
    """Error of central finite differences against the analytic gradient, as a function of the step size.

    The scalar loss is L = sum(w * y) with fixed random weights w (float64) on the model's first output y.
    Along each of `directions` random unit directions d in the space of all parameters,
    ``(L(p + eps d) - L(p - eps d)) / (2 eps)`` is compared with the analytic ``<dL/dp, d>`` from one
    ``model.backward(w)``: relative error ``|fd - analytic| / |analytic|``. Truncation error falls as eps^2
    and round-off grows as u / eps (u the unit round-off of the model's dtype), so on log-log axes the error
    is a V with its bottom near eps ~ u^(1/3): about 5e-6 for float64 and 5e-3 for float32.

    The perturbed parameters are stored in the model's dtype, so for float32 the perturbation itself is
    rounded: that is part of the error, as in any finite-difference check run in that dtype. The model's
    parameters, ``grads`` are restored afterwards.

    Parameters
    ----------
    model : object with forward, backward, parameters(), grads and dtype
        nblstm.LSTM, nblstm.RNN, nblstm.SequenceModel, ... (float32 or float64). A model with dropout must get
        fixed masks (``dropout_masks=...``) or be in ``eval()`` mode.
    x : array
        The input, as ``model(x, state)`` takes it.
    steps : sequence of float, optional
        Step sizes eps; default 10^-12 .. 10^0, four per decade.
    state : optional
        Initial state passed to every forward.
    directions : int
        Random directions (seeded by `seed`) the error is measured along; ``median`` is over them.
    seed : int
        Seed of the loss weights w and the directions.
    **forward_kwargs
        Passed to every forward (e.g. ``dropout_masks``).

    Returns
    -------
    FDErrors
        steps, errors (S, directions), median (S,), best_step and best_error (of the median).

    Examples
    --------
    >>> import numpy as np, nblstm
    >>> x = np.random.default_rng(0).standard_normal((6, 2, 3))
    >>> r64 = nblstm.diagnostics.finite_difference_errors(nblstm.LSTM(3, 4, dtype=np.float64, seed=0), x)
    >>> r32 = nblstm.diagnostics.finite_difference_errors(nblstm.LSTM(3, 4, seed=0), x)
    >>> bool(r64.best_error < 1e-8 < r32.best_error), bool(r64.best_step < r32.best_step)
    (True, True)
    """
    steps = np.logspace(-12, 0, 49) if steps is None else np.asarray(steps, dtype=np.float64)
    if steps.ndim != 1 or steps.size == 0 or not np.all(steps > 0):
        raise ValueError(f"steps: expected a non-empty 1-d sequence of positive step sizes, got {steps!r}")
    if not isinstance(directions, (int, np.integer)) or isinstance(directions, bool) or directions < 1:
        raise ValueError(f"directions: expected a positive integer, got {directions!r}")
    dtype = np.dtype(model.dtype)
    rng = np.random.default_rng(seed)
    live = model.parameters()
    originals = {k: backends.to_host(p, copy=True) for k, p in live.items()}

    def first(out):
        return np.asarray(backends.to_host(out[0]), dtype=np.float64)

    with no_grad():
        w = rng.standard_normal(first(model(x, state, **forward_kwargs)).shape)

    def loss():
        with no_grad():
            return float(np.dot(w.ravel(), first(model(x, state, **forward_kwargs)).ravel()))

    def put(d, eps):
        for k, p in live.items():
            backends.copy_into(p, (originals[k].astype(np.float64) + eps * d[k]).astype(dtype))

    saved = {k: backends.to_host(g, copy=True) for k, g in model.grads.items()}
    errors = np.empty((steps.size, directions))
    try:
        model.zero_grad()
        model(x, state, **forward_kwargs)
        model.backward(w.astype(dtype))
        grads = {k: backends.to_host(g).astype(np.float64) for k, g in model.grads.items()}
        for j in range(directions):
            d = {k: rng.standard_normal(p.shape) for k, p in originals.items()}
            norm = np.sqrt(sum((v**2).sum() for v in d.values()))
            d = {k: v / norm for k, v in d.items()}
            analytic = sum(float((grads[k] * d[k]).sum()) for k in d)
            for s, eps in enumerate(steps):
                put(d, eps)
                plus = loss()
                put(d, -eps)
                minus = loss()
                fd = (plus - minus) / (2 * eps)
                errors[s, j] = abs(fd - analytic) / max(abs(analytic), np.finfo(np.float64).tiny)
    finally:
        for k, p in live.items():
            backends.copy_into(p, originals[k])
        for k, g in model.grads.items():
            backends.copy_into(g, saved[k])
    median = np.median(errors, axis=1)
    best = int(np.argmin(median))
    return FDErrors(steps, errors, median, float(steps[best]), float(median[best]))
