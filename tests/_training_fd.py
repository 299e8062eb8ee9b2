"""Central finite differences in float64 for the training tests (layers, losses, models without a state)."""
import numpy as np


def numeric_grad(f, arr, eps=1e-6):
    """d f() / d arr by central differences, perturbing `arr` in place (restored afterwards)."""
    g = np.empty(arr.shape)
    for idx in np.ndindex(arr.shape):
        orig = arr[idx]
        arr[idx] = orig + eps
        plus = f()
        arr[idx] = orig - eps
        minus = f()
        arr[idx] = orig
        g[idx] = (plus - minus) / (2 * eps)
    return g


def rel_err(a, n):
    """max |a - n| / max(max |a|, max |n|): the gradcheck's relative error."""
    a, n = np.asarray(a, np.float64), np.asarray(n, np.float64)
    scale = max(np.abs(a).max(), np.abs(n).max(), 1e-300)
    return float(np.abs(a - n).max() / scale)
