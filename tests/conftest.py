import os
import sys

import numpy as np

# The CUDA simulator must be chosen before anything imports numba (ARCHITECTURE.md, "GPU without a GPU").
os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

from hypothesis import HealthCheck, settings  # noqa: E402

# Examples per property: "default" keeps the whole suite to a few minutes on 2 cores and is derandomized (the same
# examples every run, so a green run stays green); "slow" searches more, with fresh random examples each time.
settings.register_profile("default", max_examples=30, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("slow", max_examples=500, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

if os.environ["NUMBA_ENABLE_CUDASIM"] not in ("", "0"):
    # The simulator runs each CUDA thread as a Python thread, and a busy-polling manager thread releases them from
    # syncthreads: with Python's default 5 ms GIL switch interval a tiled GEMM launch waits several times longer
    # than with 0.1 ms (measured on 4 x 4 tiles).
    sys.setswitchinterval(1e-4)


def _thread_safe_simulated_shared_arrays():
    """Make the simulator's cuda.shared.array atomic: numba-cuda 0.30.4's FakeCUDAShared.array looks the array up
    by the caller's line and creates it when missing, unlocked, so two threads of a block can each create their own
    "shared" array: a tiled GEMM then reads tiles no thread wrote (rare garbage in gradcheck, found by
    tests/test_gradcheck.py on cuda). Same lookup key, under a lock."""
    import threading

    from numba.core import types
    from numba.cuda.simulator import kernelapi
    from numba.np import numpy_support

    original, lock = kernelapi.FakeCUDAShared.array, threading.Lock()

    def array(self, shape, dtype, alignment=None):
        if shape == 0 or alignment is not None:
            return original(self, shape, dtype, alignment)
        frame = sys._getframe(1)
        caller = (frame.f_code.co_filename, frame.f_lineno)
        with lock:
            res = self._allocations.get(caller)
            if res is None:
                res = np.empty(shape, numpy_support.as_dtype(dtype) if isinstance(dtype, types.Type) else dtype)
                self._allocations[caller] = res
        return res

    kernelapi.FakeCUDAShared.array = array


if os.environ["NUMBA_ENABLE_CUDASIM"] not in ("", "0"):
    try:
        _thread_safe_simulated_shared_arrays()
    except ImportError:         # numba-cuda not installed: the cuda tests skip
        pass
