"""Finite-difference gradient checking for any object with forward and backward.

The contract an object meets (LSTM and LSTMCell do): ``model(x, state)`` returns either
``(y, state_out)`` or ``state_out`` itself, ``state_out`` being a tuple of arrays shaped as ``state``;
``model.backward(*grads)`` takes dL/d(output) in the same structure and returns ``(dx, dstate)``;
A model whose state is one array (``model(x, h0)`` -> ``(y, h_n)``, as nblstm.RNN) says so with a class
attribute ``single_state = True``.
``model.parameters()`` gives the live parameter arrays and ``model.grads`` their accumulated gradients (NumPy
arrays, or device arrays of a device="cuda" model: they are read and written through nblstm.backends).
"""
import numpy as np

from . import backends
from ._grad import no_grad

__all__ = ["gradcheck", "GradcheckResult", "GradcheckError"]


class GradcheckError(AssertionError):
    """A gradient check above tolerance; the message names the tensor, the index and both values."""


class GradcheckResult(dict):
    """tensor name -> max relative error; ``where[name]`` = (index, analytic, numeric) of the worst element.

    The relative error of a tensor is max_k |a_k - n_k| / max(max_k |a_k|, max_k |n_k|): the largest
    disagreement between the analytic (a) and the central-difference (n) gradient, in units of the
    tensor's gradient scale (so elements whose gradient is near zero do not divide by ~0).
    """

    def __init__(self):
        super().__init__()
        self.where = {}

    def __str__(self):
        w = max([16, *map(len, self)])
        rows = [f"{'tensor':<{w}} {'max rel err':>12}  worst element (analytic, numeric)"]
        for name, err in self.items():
            idx, a, n = self.where[name]
            rows.append(f"{name:<{w}} {err:12.3e}  {idx} ({a:.9g}, {n:.9g})")
        return "\n".join(rows)


def _leaves(out):
    """Flatten nested tuples/lists of arrays into a list of arrays."""
    if isinstance(out, (tuple, list)):
        return [leaf for part in out for leaf in _leaves(part)]
    return [np.asarray(out)]


def _like(out, leaves):
    """Rebuild `out`'s nesting with the arrays of `leaves` (consumed in order)."""
    if isinstance(out, (tuple, list)):
        return tuple(_like(part, leaves) for part in out)
    return leaves.pop(0)


def _split(out):
    """(y, state) or state -> the state part of a forward's output."""
    return out[1] if isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], tuple) else out


def gradcheck(model, x, state=None, *, eps=1e-6, tol=None, seed=0, **forward_kwargs):
    """Compare ``model.backward`` with central finite differences for x, the state and every parameter.

    Parameters
    ----------
    model : object with forward/backward (see the module docstring), float64
        Finite differences need float64: a float32 model raises TypeError.
    x : array
        The input, as ``model(x, state)`` takes it.
    state : tuple of arrays (one array for a single-state model), optional
        Initial state; None draws one from N(0, 0.25) so that its gradient is checked too.
    eps : float
        Step of the central difference (L(p + eps) - L(p - eps)) / (2 eps).
    tol : float, optional
        When given, raise GradcheckError if any tensor's relative error exceeds it.
    seed : int
        Seed of the random state and of the random weights w of the scalar loss
        L = sum over outputs of sum(w * output).
    **forward_kwargs
        Passed to every forward, e.g. ``lengths=[5, 3]``.

    Returns
    -------
    GradcheckResult
        name -> max relative error for "x", "h0", "c0" (the state's parts, named h0, c0, s2, ...) and each
        parameter name; ``.where`` has the worst element of each. ``print(result)`` shows a table.

    Examples
    --------
    >>> import numpy as np, nblstm
    >>> lstm = nblstm.LSTM(3, 4, dtype=np.float64, seed=0)
    >>> x = np.random.default_rng(1).standard_normal((5, 2, 3))
    >>> errors = nblstm.gradcheck(lstm, x, tol=1e-6)
    >>> sorted(errors)
    ['bias_hh_l0', 'bias_ih_l0', 'c0', 'h0', 'weight_hh_l0', 'weight_ih_l0', 'x']
    """
    if np.dtype(getattr(model, "dtype", None)) != np.float64:
        raise TypeError(f"model: gradcheck needs a float64 model (construct it with dtype=np.float64), "
                        f"got dtype {getattr(model, 'dtype', None)}")
    rng = np.random.default_rng(seed)
    x = np.array(x, dtype=np.float64)
    single = getattr(model, "single_state", False)

    def forward():
        return model(x, state[0] if single else state, **forward_kwargs)

    if state is None:
        with no_grad():
            out = model(x, None, **forward_kwargs)
        state = tuple(0.5 * rng.standard_normal(s.shape) for s in _leaves(out[1] if single else _split(out)))
    state = tuple(np.array(s, dtype=np.float64) for s in ((state,) if single and not isinstance(state, tuple)
                                                            else state))
    with no_grad():
        out = forward()
    weights = [rng.standard_normal(leaf.shape) for leaf in _leaves(out)]

    def loss():
        with no_grad():
            leaves = _leaves(forward())
        return sum(float(np.dot(w.ravel(), leaf.ravel())) for w, leaf in zip(weights, leaves))

    saved = {k: backends.to_host(g, copy=True) for k, g in model.grads.items()}
    try:
        model.zero_grad()
        out = forward()
        out_grads = _like(out, list(weights))
        dx, dstate = model.backward(*out_grads) if isinstance(out_grads, tuple) else model.backward(out_grads)
        analytic = {"x": np.asarray(dx)}
        names = ["h0", "c0"] + [f"s{k}" for k in range(2, len(state))]
        analytic.update({names[k]: backends.to_host(d) for k, d in enumerate(_leaves(dstate))})
        analytic.update({k: backends.to_host(g, copy=True) for k, g in model.grads.items()})
        tensors = {"x": x, **{names[k]: s for k, s in enumerate(state)}, **model.parameters()}
        result = GradcheckResult()
        for name, live in tensors.items():
            # A device parameter is perturbed in a host copy, written back whole before each loss (tiny models).
            arr = live if isinstance(live, np.ndarray) else backends.to_host(live)
            put = (lambda: None) if arr is live else (lambda: backends.copy_into(live, arr))  # noqa: E731
            numeric = np.empty(arr.shape)
            for idx in np.ndindex(arr.shape):
                orig = arr[idx]
                arr[idx] = orig + eps
                put()
                plus = loss()
                arr[idx] = orig - eps
                put()
                minus = loss()
                arr[idx] = orig
                put()
                numeric[idx] = (plus - minus) / (2 * eps)
            a = analytic[name].reshape(arr.shape)
            diff = np.abs(a - numeric)
            scale = max(np.abs(a).max(), np.abs(numeric).max(), np.finfo(np.float64).tiny)
            worst = np.unravel_index(np.argmax(diff), arr.shape)
            result[name] = float(diff[worst] / scale)
            result.where[name] = (tuple(int(i) for i in worst), float(a[worst]), float(numeric[worst]))
    finally:
        for k, g in model.grads.items():
            backends.copy_into(g, saved[k])
    if tol is not None:
        bad = {k: e for k, e in result.items() if not e <= tol}
        if bad:
            name = max(bad, key=bad.get)
            idx, a, n = result.where[name]
            raise GradcheckError(f"gradcheck: {name} relative error {bad[name]:.3e} > tol {tol:g} at index {idx}: "
                                 f"analytic {a:.9g}, numeric {n:.9g} (failing: {', '.join(bad)})\n{result}")
    return result
