"""Kernel targets by name, and the array helpers that let objects run on any of them without branching on device.

``kernels("cpu")`` is :mod:`nblstm.kernels.cpu` (numba.njit); ``kernels("cuda")`` is :mod:`nblstm.kernels.cuda`
(numba-cuda's @cuda.jit, on a GPU or on Numba's CUDA simulator), imported only when asked for: ``import nblstm``
never imports numba.cuda. The oracle, :mod:`nblstm.reference`, is plain NumPy with a readable, functional interface;
tests and benchmarks compare each target against it.

Arrays of device "cpu" are NumPy arrays; of device "cuda", numba-cuda device arrays. ``empty``, ``zeros`` and
``to_device`` make arrays for a device; ``to_host``, ``copy``, ``copy_into``, ``add``, ``add_into``, ``fill_zeros``,
``copy_steps`` and ``multiply`` work on an array of either kind.
"""
import importlib
import importlib.util

import numpy as np

from . import _checks

TARGETS = {"cpu": "nblstm.kernels.cpu", "cuda": "nblstm.kernels.cuda"}


class CudaUnavailableError(RuntimeError):
    """device="cuda" was asked for where numba-cuda or a GPU is missing; the message says how to get them."""


_HOW = ('To run on an NVIDIA GPU, install the CUDA extra and the CUDA toolkit wheels matching your driver:\n'
        '    pip install "nblstm[cuda]" "numba-cuda[cu12]"    (CUDA 12 driver; "numba-cuda[cu13]" for CUDA 13)\n'
        'Without a GPU, Numba\'s CUDA simulator runs the same kernels (slowly, for tests): set the environment '
        'variable NUMBA_ENABLE_CUDASIM=1 before Python starts (numba reads it at import), with numba-cuda installed.\n'
        'Or keep device="cpu".')


def _find_spec(name):
    """importlib.util.find_spec, here so tests can pretend a package is missing."""
    return importlib.util.find_spec(name)


def kernels(device):
    """The kernel module of a target, imported on first use.

    ValueError for an unknown device; CudaUnavailableError (with how to install) for "cuda" without numba-cuda
    or without a GPU (and not on the simulator).
    """
    if device not in TARGETS:
        raise ValueError(f"device: expected one of {', '.join(map(repr, TARGETS))}, got {device!r}")
    if device == "cuda":
        if _find_spec("numba_cuda") is None:
            raise CudaUnavailableError(f'device="cuda": numba-cuda is not installed.\n{_HOW}')
        module = importlib.import_module(TARGETS[device])
        ok, why = module.available()
        if not ok:
            raise CudaUnavailableError(f'device="cuda": {why}.\n{_HOW}')
        return module
    return importlib.import_module(TARGETS[device])


def is_device_array(a):
    """True for a CUDA device array (numba-cuda's, the simulator's, or any object with __cuda_array_interface__)."""
    if type(a) is np.ndarray:                   # the common case first: two failed hasattr cost ~0.4 us a call
        return False
    return hasattr(a, "copy_to_host") or hasattr(a, "__cuda_array_interface__")


def empty(device, shape, dtype):
    """An uninitialized array of `device`."""
    return np.empty(shape, dtype) if device == "cpu" else kernels(device).empty(shape, dtype)


def zeros(device, shape, dtype):
    return np.zeros(shape, dtype) if device == "cpu" else kernels(device).zeros(shape, dtype)


def to_device(device, a):
    """`a` as an array of `device`: itself when it is one already, else a copy."""
    if device == "cpu":
        return to_host(a)
    return kernels(device).to_device(a)


def to_host(a, copy=False):
    """`a` as a NumPy array (a new one from a device array; `a` itself, or a copy when `copy`, from a host one)."""
    if is_device_array(a):
        return kernels("cuda").to_host(a)
    return np.array(a) if copy else np.asarray(a)


def copy(a):
    """A new array equal to `a`, on a's device."""
    return kernels("cuda").copy(a) if is_device_array(a) else a.copy()


def copy_into(dst, src):
    """dst[...] = src, where src is a host array of dst's shape and dtype, or an array on dst's device."""
    if is_device_array(dst) and hasattr(src, "copy_to_host"):
        kernels("cuda").copy_into(dst, src)     # queued on the device's stream
    elif is_device_array(dst):
        dst.copy_to_device(src if is_device_array(src) else np.ascontiguousarray(src, dst.dtype))
    else:
        dst[...] = to_host(src)


def row(a, k0, k1=None):
    """a[k0] (k1 None) or a[k0:k1], a view of the first axis, of an array of either kind (kernels/cuda.py's row()
    for device arrays: numba-cuda's general indexing costs tens of microseconds of host time)."""
    if type(a) is not np.ndarray and hasattr(a, "copy_to_host"):    # (a failed hasattr costs ~0.2 us)
        return kernels("cuda").row(a, k0, k1)
    return a[k0] if k1 is None else a[k0:k1]


def add_into(out, a):
    """out += a, both on one device."""
    if is_device_array(out):
        kernels("cuda").add_into(out, a)
    else:
        out += a


def add(out, a, b):
    """out[...] = a + b, all three on one device."""
    if is_device_array(out):
        copy_into(out, a)
        add_into(out, b)
    else:
        np.add(a, b, out=out)


def fill_zeros(a):
    if is_device_array(a):
        kernels("cuda").fill_zeros(a)
    else:
        a.fill(0)                               # 0.49 against 0.66 us for a[...] = 0 (4096 floats)


def copy_steps(out, a, out_col=0, a_col=0, n=None, reverse=False, accumulate=False, lengths=None):
    """out[t, b, out_col:out_col + n] = a[t', b, a_col:a_col + n] (+= when `accumulate`) for out and a (T, B, .) on
    one device (n: all of a's last axis), t' = lengths[b]-1-t for t < lengths[b] when `reverse`, else t: a sequence
    reversed from its own end (lengths (B,) int64 on the device; None: every sequence runs T steps). A
    reverse-direction layer's time reversal, and the concatenation and split of the two directions' features."""
    n = a.shape[2] - a_col if n is None else n
    device = "cuda" if is_device_array(out) else "cpu"
    if lengths is None:
        lengths = to_device(device, np.full(a.shape[1], a.shape[0], np.int64))
    if device == "cpu":                         # the CPU kernel reads C-contiguous arrays flat
        a = np.ascontiguousarray(a)
    kernels(device).copy_steps(out, a, out_col, a_col, n, lengths, int(bool(reverse)), int(bool(accumulate)))


def multiply(a, m):
    """A new array a * m (same shape, one device): a dropout mask applied."""
    if not is_device_array(a):
        return a * m
    out = kernels("cuda").empty(a.shape, a.dtype)
    kernels("cuda").mul(out.reshape(1, out.size), a.reshape(1, a.size), m.reshape(1, m.size))
    return out


def as_array(device, a, name, dtype, shape, axes=None):
    """:func:`nblstm._checks.as_array` for `device`: checked, converted, C-contiguous, on the device.

    A device array that already fits (dtype, shape, C order, no axes to permute) is used as is; anything else is
    checked on the host (with the same errors) and copied to the device.
    """
    if device == "cpu" and _checks.fits(a, dtype, shape, axes):   # a NumPy array as it is wanted: no checks, no copy
        return a
    if is_device_array(a) and device != "cpu" and hasattr(a, "copy_to_host") and axes is None \
            and np.dtype(a.dtype) == dtype and a.is_c_contiguous() and _checks.shape_fits(a.shape, shape):
        return a
    return to_device(device, _checks.as_array(to_host(a) if is_device_array(a) else a, name, dtype, shape, axes))


LAYER_TARGETS = {"cpu": "nblstm.kernels.layers_cpu", "cuda": "nblstm.kernels.layers_cuda"}


def layer_kernels(device):
    """The kernels of the training layers, losses and optimizers of `device` (:mod:`nblstm.kernels.layers_cpu` or
    ``layers_cuda``), imported on first use, after :func:`kernels` has checked that the device is there."""
    kernels(device)
    return importlib.import_module(LAYER_TARGETS[device])
