"""The backends the tests run on, and hypothesis settings per backend.

"cuda" runs on Numba's CUDA simulator here and in CI (tests/conftest.py sets NUMBA_ENABLE_CUDASIM=1), one Python
thread per CUDA thread: its properties draw tiny shapes (T <= 3, B <= 3, I, H <= 4) and a sixth of the examples.
Where numba-cuda is missing, the cuda cases skip.
"""
import inspect

import numpy as np
import pytest
from hypothesis import given, settings

from nblstm import backends, testing


def _cuda_reason():
    try:
        backends.kernels("cuda")
        return ""
    except backends.CudaUnavailableError as e:
        return str(e).splitlines()[0]


CUDA_REASON = _cuda_reason()
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(bool(CUDA_REASON), reason=CUDA_REASON))]


def given_on(device, *strategies, cuda_share=6):
    """hypothesis.given, with 1/cuda_share of the profile's examples (at least 3) on cuda."""
    n = settings().max_examples
    return lambda fn: settings(max_examples=n if device == "cpu" else max(3, n // cuda_share))(given(*strategies)(fn))


def shapes(device, max_T=16, max_B=16, max_I=16, max_H=16):
    """testing.lstm_shapes, capped at simulator size on cuda."""
    if device == "cuda":
        max_T, max_B, max_I, max_H = min(max_T, 3), min(max_B, 3), min(max_I, 4), min(max_H, 4)
    return testing.lstm_shapes(max_T, max_B, max_I, max_H)


def max_size(device, size=16):
    return min(size, 4) if device == "cuda" else size


def call(device, name, *args):
    """Run kernel `name` of `device` on NumPy arrays; return every argument afterwards as a NumPy array (outputs
    included). Ints pass through."""
    K = backends.kernels(device)
    if device == "cpu":
        getattr(K, name)(*args)
        return list(args)
    dev = [backends.to_device(device, a) if isinstance(a, np.ndarray) else a for a in args]
    getattr(K, name)(*dev)
    return [backends.to_host(d) if isinstance(a, np.ndarray) else a for a, d in zip(args, dev)]


def assert_twins(cpu_module, cuda_module, names):
    """Each of `names` is a twin pair: same name, one-line docstring and arguments in both modules, the same file
    order in both; the cuda side's launchers (@cuda.jit kernels) are every one of cuda_module.KERNELS, in order."""
    lines = {}
    for name in names:
        c, g = getattr(cpu_module, name), getattr(cuda_module, name)
        cpu_fn, cuda_fn = c.py_func, getattr(g, "py_func", g)
        assert cuda_fn.__name__ == name
        assert cuda_fn.__doc__ == cpu_fn.__doc__ and g.__doc__ == cpu_fn.__doc__, name
        assert list(inspect.signature(cuda_fn).parameters) == list(inspect.signature(cpu_fn).parameters), name
        lines[name] = (inspect.getsourcelines(cpu_fn)[1], inspect.getsourcelines(cuda_fn)[1])
    for k in range(2):
        assert sorted(names, key=lambda n: lines[n][k]) == list(names)
    assert all(isinstance(k, cuda_module.Launcher) for k in cuda_module.KERNELS)
    launchers = [getattr(cuda_module, n) for n in names if isinstance(getattr(cuda_module, n), cuda_module.Launcher)]
    assert [k for k in cuda_module.KERNELS if k in launchers] == launchers      # registered for the PTX check, in order
