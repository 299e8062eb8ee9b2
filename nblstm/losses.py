"""Losses with their gradients: each function returns ``(loss, dloss/dinput)`` in one pass.

Shape letters: N any leading axes ((T, B) for a loss at every step, (B,) for a loss at the last step only),
C classes, K output features. A ``mask`` (N) of weights (0/1, or any non-negative numbers) selects the entries
that count: per-step losses on padded sequences, or the last step of sequences of different lengths (a mask
that is 1 only at t = length - 1). The gradient is in the input's dtype; float32 input is computed in float32.

``reduction="mean"`` divides by the total weight (torch's convention for masked/weighted means); ``"sum"``
does not divide. An all-zero mask gives loss 0 and a zero gradient.

Device arrays (the output of a device="cuda" model) are computed on the device by the kernels of
:mod:`nblstm.kernels.layers_cuda`, and the gradient stays there; targets and masks may be NumPy or device arrays
(they are checked on the host). NumPy input runs the NumPy code below, the reference of those kernels.
"""
import numpy as np

from . import backends

__all__ = ["softmax_cross_entropy", "mse", "log_softmax", "BITS_PER_NAT"]

#: multiply a cross-entropy in nats by this for bits (bits per character of a character-level model)
BITS_PER_NAT = 1.0 / np.log(2.0)


def _float(a, name):
    """A float32/float64 array: NumPy, or a device array as it is."""
    arr = a if backends.is_device_array(a) else np.asarray(a)
    if arr.dtype.kind != "f" or arr.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name}: expected a float32 or float64 array, got dtype {arr.dtype}")
    return arr


def _weights(mask, shape, dtype, name="mask"):
    if mask is None:
        return None
    w = np.asarray(backends.to_host(mask))
    if w.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected bool or real weights, got dtype {w.dtype}")
    if w.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {w.shape}")
    w = w.astype(dtype)
    if np.any(w < 0) or not np.all(np.isfinite(w)):
        raise ValueError(f"{name}: expected finite non-negative weights")
    return w


def _reduction(reduction):
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction: expected 'mean' or 'sum', got {reduction!r}")
    return reduction


def _reduce(total, norm, grad, reduction):
    """(loss, dloss) from the summed loss `total`, the weight `norm` of a mean and the summed gradient `grad`,
    scaled in grad's dtype: mean divides by norm, sum keeps both; zero weight gives (0.0, zeros)."""
    if _reduction(reduction) == "sum":
        norm = 1
    if norm == 0:
        return 0.0, np.zeros_like(grad)
    scale = grad.dtype.type(1) / grad.dtype.type(norm)
    grad *= scale
    return float(total * scale), grad


def _device_loss(kernel, z, grad_shape, norm, reduction, *args):
    """(loss, dloss) on the device: kernel `kernel` of layers_cuda ("softmax_xent" or "mse") writes per-row losses
    and the scaled gradient from z (N, .) and `args`; the rows are summed on the device, only that sum comes back."""
    dtype = np.dtype(z.dtype)
    if _reduction(reduction) == "sum":
        norm = 1
    if norm == 0:
        return 0.0, backends.zeros("cuda", grad_shape, dtype)
    scale = dtype.type(1) / dtype.type(norm)
    K = backends.layer_kernels("cuda")
    rows, grad, total = backends.empty("cuda", (z.shape[0],), dtype), backends.empty("cuda", z.shape, dtype), \
        backends.zeros("cuda", (1,), dtype)
    getattr(K, kernel)(rows, grad, z, *args, scale)
    K.reduce_sum(total, rows, 0)
    return float(backends.to_host(total)[0] * scale), grad.reshape(grad_shape)


def log_softmax(logits):
    """log softmax over the last axis, stable: z - max(z) - log(sum(exp(z - max(z))))."""
    z = logits - logits.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def softmax_cross_entropy(logits, target, mask=None, *, reduction="mean"):
    r"""Cross-entropy of softmax(logits) against integer class targets: :math:`\ell = \log\sum_c e^{z_c} - z_y`.

    Parameters
    ----------
    logits : (N..., C) float32 or float64
    target : (N...) integers in [0, C)
        Entries whose mask is 0 may hold any integer (e.g. -1 for padding).
    mask : (N...) weights, optional
    reduction : "mean" (default, divides by the sum of the weights) or "sum"

    Returns
    -------
    loss : float
    dlogits : like logits, (softmax(z) - onehot(y)) * weight / normalizer

    Notes
    -----
    Log-sum-exp is taken after subtracting the row maximum, so logits of 1e4 neither overflow nor lose the
    gradient (tests/test_training_losses.py::test_cross_entropy_is_stable_for_huge_logits).

    Examples
    --------
    >>> import numpy as np
    >>> from nblstm.losses import softmax_cross_entropy
    >>> loss, d = softmax_cross_entropy(np.zeros((2, 4), np.float32), np.array([0, 3]))
    >>> round(loss, 6), d.dtype                           # log(4)
    (1.386294, dtype('float32'))
    """
    z = _float(logits, "logits")
    shape = tuple(z.shape)                                        # (the simulator's device shapes take no [-1])
    if len(shape) < 1 or shape[-1] < 1:
        raise ValueError(f"logits: expected shape (..., C), got {shape}")
    y = np.asarray(backends.to_host(target))
    if y.dtype.kind not in "iu":
        raise TypeError(f"target: expected integer class indices, got dtype {y.dtype}")
    if y.shape != shape[:-1]:
        raise ValueError(f"target: expected shape {shape[:-1]} (logits without the class axis), got {y.shape}")
    w = _weights(mask, y.shape, z.dtype)
    C = shape[-1]
    live = np.ones(y.shape, bool) if w is None else w > 0
    if np.any(live & ((y < 0) | (y >= C))):
        raise ValueError(f"target: expected class indices in [0, {C}) where the mask is non-zero, got values in "
                         f"[{y[live].min()}, {y[live].max()}]")
    y = np.where(live, y, 0).astype(np.intp)
    if backends.is_device_array(z):
        N = y.size
        norm = N if w is None else w.sum()
        wd = np.ones(1, z.dtype) if w is None else w.reshape(N)
        return _device_loss("softmax_xent", z.reshape(N, C), shape, norm, reduction,
                            backends.to_device("cuda", y.reshape(N).astype(np.int64)), backends.to_device("cuda", wd))
    logp = log_softmax(z)                                         # (N..., C), stable
    nll = -np.take_along_axis(logp, y[..., None], axis=-1)[..., 0]
    grad = np.exp(logp)                                           # softmax
    np.put_along_axis(grad, y[..., None], np.take_along_axis(grad, y[..., None], axis=-1) - 1, axis=-1)
    if w is None:
        total, norm = nll.sum(), nll.size
    else:
        total, norm = (w * nll).sum(), w.sum()
        grad *= w[..., None]
    return _reduce(total, norm, grad, reduction)


def mse(pred, target, mask=None, *, reduction="mean"):
    r"""Squared error :math:`(p - t)^2`, averaged over the (masked) elements as ``torch.nn.MSELoss``.

    Parameters
    ----------
    pred, target : (N..., K) float arrays of one shape (target is converted to pred's dtype)
    mask : (N...) or (N..., K) weights, optional
        A mask without the last axis weighs every feature of an entry alike.
    reduction : "mean" (default: divides by the total weight of the elements) or "sum"

    Returns
    -------
    loss : float
    dpred : like pred, 2 (p - t) * weight / normalizer

    Examples
    --------
    >>> import numpy as np
    >>> from nblstm.losses import mse
    >>> p = np.array([[[0.5]], [[1.0]]], np.float32)           # (T=2, B=1, K=1)
    >>> loss, d = mse(p, np.zeros_like(p), mask=np.array([[0], [1]]))   # the last step only
    >>> loss, d[:, 0, 0]
    (1.0, array([0., 2.], dtype=float32))
    """
    p = _float(pred, "pred")
    t = target if backends.is_device_array(target) else np.asarray(target)
    if np.dtype(t.dtype).kind not in "biuf":
        raise TypeError(f"target: expected a real-valued array, got dtype {t.dtype}")
    if tuple(t.shape) != tuple(p.shape):
        raise ValueError(f"target: expected shape {tuple(p.shape)} (as pred), got {tuple(t.shape)}")
    if backends.is_device_array(p):
        return _mse_device(p, t, mask, reduction)
    t = backends.to_host(t)
    diff = p - t.astype(p.dtype)
    if mask is not None and np.ndim(mask) == p.ndim - 1:
        w = _weights(mask, p.shape[:-1], p.dtype)[..., None] * np.ones(p.shape[-1:], p.dtype)
    else:
        w = _weights(mask, p.shape, p.dtype)
    if w is None:
        total, norm, grad = (diff * diff).sum(), diff.size, 2 * diff
    else:
        total, norm, grad = (w * diff * diff).sum(), w.sum(), 2 * w * diff
    return _reduce(total, norm, grad, reduction)


def _mse_device(p, t, mask, reduction):
    """mse of a device array p (N..., K): the kernel reads the mask as given, (N, 1) or (N, K), or (1, 1) for none."""
    dtype, shape = np.dtype(p.dtype), tuple(p.shape)
    K = shape[-1] if shape else 1
    N = p.size // K
    t = backends.as_array("cuda", t, "target", dtype, shape).reshape(N, K)
    if mask is None:
        norm, w = p.size, np.ones((1, 1), dtype)
    elif np.ndim(backends.to_host(mask)) == len(shape) - 1:
        w = _weights(mask, shape[:-1], dtype)
        norm, w = (w[..., None] * np.ones(shape[-1:], dtype)).sum(), w.reshape(N, 1)   # the host path's norm
    else:
        w = _weights(mask, shape, dtype)
        norm, w = w.sum(), w.reshape(N, K)
    return _device_loss("mse", p.reshape(N, K), shape, norm, reduction, t,
                        backends.to_device("cuda", w))
