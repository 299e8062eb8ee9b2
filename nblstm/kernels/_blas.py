# The BLAS that numba's own np.dot uses (scipy's OpenBLAS), seen from compiled code: its thread count and its core
# type. The LSTM layers' products are nblstm's own (_gemm.py); np.dot (the RNN, projections, attention) goes to this
# BLAS.
#
# `blas_threads(n)` sets the number of threads of that BLAS (OpenBLAS's `openblas_set_num_threads_local`, which
# sets the count without resizing OpenBLAS's pool) and returns the previous count, or -1 where it cannot (another
# BLAS, or an OpenBLAS older than 0.3.27): kernels that split their own work over numba's threads then keep to one
# thread. Setting 1 while numba's threads each call the BLAS keeps OpenBLAS's own pool asleep, so the process
# never has two pools of spinning threads on the same cores. Both are external symbols resolved when a kernel is
# linked, so kernels that call them load from numba's on-disk cache.
import ctypes
import ctypes.util
import os

import llvmlite.binding as ll
import numba
from numba import types
from numba.extending import get_cython_function_address

_THREADS_SYMBOL = "nblstm_blas_set_num_threads"
_SETTERS = ("openblas_set_num_threads_local", "scipy_openblas_set_num_threads_local",
            "openblas_set_num_threads_local64_", "scipy_openblas_set_num_threads_local64_")
_CORE_NAMES = ("openblas_get_corename", "scipy_openblas_get_corename", "openblas_get_corename64_",
               "scipy_openblas_get_corename64_")


class _DlInfo(ctypes.Structure):
    _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]


def _library_of(address):
    """Path of the shared library holding the function at `address`, or None (no dladdr: not Linux or macOS)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
        info = _DlInfo()
        if not libc.dladdr(ctypes.c_void_p(address), ctypes.byref(info)) or not info.dli_fname:
            return None
        return os.fsdecode(info.dli_fname)
    except (OSError, AttributeError, ValueError):
        return None


@ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)
def _unavailable(n):
    """Stand-in for a BLAS without a thread-count setter: -1, nothing set."""
    return -1


def _first_symbol(lib, names):
    """The first of the functions `names` that the ctypes library `lib` (or None) has, or None."""
    for name in names:
        fn = getattr(lib, name, None)
        if fn is not None:
            return fn
    return None


def _find_blas():
    """(address of the BLAS's thread-count setter or of _unavailable, path of the library that has it or None, the
    OpenBLAS core type whose kernels it runs, lower case, or None: not an OpenBLAS that says)."""
    try:
        path = _library_of(get_cython_function_address("scipy.linalg.cython_blas", "sgemm"))
    except (ImportError, ValueError):
        path = None
    lib = None
    if path is not None:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            lib = None
    core, corename = None, _first_symbol(lib, _CORE_NAMES)
    if corename is not None:
        corename.restype = ctypes.c_char_p
        core = (corename() or b"").decode("ascii", "replace").strip().lower() or None
    setter = _first_symbol(lib, _SETTERS)
    if setter is None:
        return ctypes.cast(_unavailable, ctypes.c_void_p).value, None, core
    address = ctypes.cast(setter, ctypes.c_void_p).value
    return address, _library_of(address) or path, core


# BLAS_LIBRARY: the library whose thread count is set, or None; BLAS_CORE: OpenBLAS's core type (e.g. "skylakex",
# "haswell"; OPENBLAS_CORETYPE in the environment chooses it when the library loads), or None
_setter_address, BLAS_LIBRARY, BLAS_CORE = _find_blas()
ll.add_symbol(_THREADS_SYMBOL, _setter_address)
# One pool: this BLAS runs one thread per call from here on (when nblstm's CPU kernels load, for the rest of the
# process), and nblstm's parallel work goes to numba's threads (the LSTM layers' row chunks). With OpenBLAS's own
# threads left on, numba's threads spinning after a parallel region and OpenBLAS's threads took each other's cores: the
# dates task (an LSTM encoder split over threads, a decoder of small products) ran at 282 ms per step instead of 29
# with OPENBLAS_NUM_THREADS=1, charlm at 97 instead of 56 (measured). NumPy's pip wheels bring their own OpenBLAS,
# which keeps its threads; where NumPy and SciPy share one OpenBLAS (conda, distributions) NumPy's products become
# single-threaded too.
ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)(_setter_address)(1)
blas_threads = types.ExternalFunction(_THREADS_SYMBOL, types.intc(types.intc))

# numba's thread count (numba.get_num_threads(): NUMBA_NUM_THREADS or numba.set_num_threads) as an external symbol:
# numba.get_num_threads itself is not cacheable inside njit code (a ctypes pointer). Its first call loads numba's
# threading layer, which registers the symbol.
numba.get_num_threads()
numba_threads = types.ExternalFunction("get_num_threads", types.intc())
