# BLAS from compiled code with full control of the call: row strides, offsets, transposes and beta (accumulate),
# where np.dot inside numba takes whole contiguous arrays and always overwrites. Both functions here go to the BLAS
# that numba's own np.dot uses (scipy's, through numba's helper `numba_xxgemm`), so there is one BLAS in the process.
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
import numpy as np
from llvmlite import ir
import numba
from numba import njit, types
from numba.core import cgutils
from numba.extending import get_cython_function_address, intrinsic

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

# numba's helper (numba/_helperlib.c): column-major xGEMM of kind 's' or 'd' with pointer arguments.
_xxgemm = types.ExternalFunction("numba_xxgemm", types.intc(
    types.int8, types.int8, types.int8, types.intp, types.intp, types.intp, types.voidptr, types.voidptr,
    types.intp, types.voidptr, types.intp, types.voidptr, types.voidptr, types.intp))


@intrinsic
def _address(typingctx, arr, offset):
    """void* to element `offset` (counted in elements, row-major flat index) of array `arr`'s data."""
    sig = types.voidptr(arr, types.intp)

    def codegen(context, builder, sig, args):
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        return builder.bitcast(builder.gep(ary.data, [args[1]]), ir.IntType(8).as_pointer())

    return sig, codegen


@intrinsic
def _slot(typingctx, value):
    """void* to a stack slot of the calling function holding `value` (BLAS takes alpha and beta by pointer)."""
    sig = types.voidptr(value)

    def codegen(context, builder, sig, args):
        return builder.bitcast(cgutils.alloca_once_value(builder, args[0]), ir.IntType(8).as_pointer())

    return sig, codegen


@njit(cache=True, inline="always")
def _kind(a, b, c):
    """The BLAS kind of gemm's and gemv's arrays, 's' (float32) or 'd' (float64) as int8; ValueError unless all three
    are C-contiguous and of one dtype."""
    if not (a.flags.c_contiguous and b.flags.c_contiguous and c.flags.c_contiguous):
        raise ValueError("gemm / gemv: a, b and c must be C-contiguous")
    if a.itemsize != c.itemsize or b.itemsize != c.itemsize:
        raise ValueError("gemm / gemv: a, b and c must have one dtype")
    return np.int8(115) if c.itemsize == 4 else np.int8(100)


@njit(cache=True)
def gemm(trans_a, trans_b, m, n, k, a, ia, lda, b, ib, ldb, beta, c, ic, ldc):
    """Row-major C = op(A) op(B) + beta C through the BLAS; beta is 0 (overwrite) or 1 (accumulate).

    C is the m x n matrix at flat offset `ic` of array `c` with row stride `ldc`; op(A) is m x k: A is stored from
    offset `ia` of `a` with row stride `lda`, as an m x k matrix, or as k x m when `trans_a`; likewise op(B) k x n.
    The arrays must be C-contiguous and of one float dtype; sizes of 0 are allowed (nothing is done but beta).
    """
    kind = _kind(a, b, c)
    t, nt = np.int8(116), np.int8(110)          # 't', 'n'
    # column-major: C^T (n x m) = op(B)^T op(A)^T, each row-major matrix read as its transpose
    _xxgemm(kind, t if trans_b else nt, t if trans_a else nt, n, m, k, _slot(c.dtype.type(1.0)), _address(b, ib),
            max(ldb, 1), _address(a, ia), max(lda, 1), _slot(c.dtype.type(beta)), _address(c, ic), max(ldc, 1))


# OpenBLAS (0.3.30, SkylakeX kernels, on this Zen 4) multiplies a product of m*n*k <= 1e6 without packing its operands
# first; above that it repacks the weight matrix at every call, which the recurrent products (a few rows of h against
# all of w_hh, T times) pay in full. One thread, 100 steps, measured: (8 x 256) @ (256 x 1024) 35 GFLOP/s in one call,
# 105-111 in four 256-column tiles; 16 rows x H = 128: 54 against 113-116 in 8-row tiles; dG (8 x 2048) @ w_hh
# (2048 x 512): 34 against 72-92 in 32-column tiles. In the transposed layout (op(B) = B^T) the unpacked kernel was
# only fast with at most 128 columns (H = 256: 35 with 256, 101 with 128).
SMALL_GEMM_MNK = 1000000
TILE_ROWS = 8

# That unpacked path exists only in some of OpenBLAS's cores: on x86-64 the SkylakeX kernels (kernel/x86_64/
# KERNEL.SKYLAKEX: SGEMM_SMALL_*), which Cooperlake and SapphireRapids inherit; on arm64 ARMV8SVE and NeoverseV1, which
# includes it (checked in OpenBLAS's kernel lists; other cores that have one are not listed and take the one-call path
# below: correct, possibly slower). Any other core (or BLAS) packs op(B) at every call, however small the product, so
# tiles only multiply the packing. Seen on a Zen 5 machine whose environment sets OPENBLAS_CORETYPE=Haswell (older
# OpenBLAS builds fail on it), one thread, Haswell against SkylakeX kernels: 1 x 32 @ 32 x 128 1754 against 82 ns (gemv:
# 196 and 94), 32 x 256 @ 256 x 1024 (w_hh^T) 532 us in tiles, 246 in one call, 166 in tiles on SkylakeX. Up to 8
# rows a gemv per row beat one packing call there (8 x 64 @ 64 x 256: 6.0 against 8.9 us; 8 x 256 @ 256 x 1024: 99
# against 138; 16 rows about even: 10.6 / 11.6, 188 / 168). So gemm_tiles asks `small_gemm()`: without the small path
# it makes a gemv per row up to GEMV_MAX_ROWS rows, else one call. The flag is read at run
# time from a C variable (the kernels load from numba's cache, which would freeze a Python global): set it with
# use_small_gemm (tests run both ways).
SMALL_GEMM_CORES = ("skylakex", "cooperlake", "sapphirerapids", "armv8sve", "neoversev1")
GEMV_MAX_ROWS = 8
_SMALL_SYMBOL = "nblstm_blas_small_gemm"
_small_flag = ctypes.c_int32(int(BLAS_CORE in SMALL_GEMM_CORES))
ll.add_symbol(_SMALL_SYMBOL, ctypes.addressof(_small_flag))


def use_small_gemm(flag=None):
    """Whether gemm_tiles relies on OpenBLAS's unpacked small-matrix path (tiles) -> the previous setting; `flag`
    None only reads it. The default is True when the BLAS runs one of SMALL_GEMM_CORES."""
    previous = bool(_small_flag.value)
    if flag is not None:
        _small_flag.value = int(bool(flag))
    return previous


@intrinsic
def small_gemm(typingctx):
    """The use_small_gemm setting inside compiled code (a load of the C variable _SMALL_SYMBOL)."""
    sig = types.boolean()

    def codegen(context, builder, sig, args):
        i32 = ir.IntType(32)
        flag = builder.load(context.get_c_value(builder, i32, _SMALL_SYMBOL))
        return builder.icmp_signed("!=", flag, ir.Constant(i32, 0))

    return sig, codegen


# numba's helper: column-major xGEMV (y = alpha op(A) x + beta y, unit strides) of kind 's' or 'd'.
_xxgemv = types.ExternalFunction("numba_xxgemv", types.intc(
    types.int8, types.int8, types.intp, types.intp, types.voidptr, types.voidptr, types.intp, types.voidptr,
    types.voidptr, types.voidptr))


@njit(cache=True)
def gemv(trans_b, N, K, a, ia, b, ib, ldb, c, ic):
    """Row-major c (1 x N) = a (1 x K) op(B) through the BLAS's gemv (no packing at any size), beta 0: B as in gemm,
    the row a contiguous from offset `ia` of `a`, c from offset `ic` of `c`; one float dtype, C-contiguous."""
    kind = _kind(a, b, c)
    # B row-major K x N (ldb) is column-major N x K: c = B_cm a ('n'); B^T stored N x K is column-major K x N: 't'
    trans, rows, cols = (np.int8(116), K, N) if trans_b else (np.int8(110), N, K)
    _xxgemv(kind, trans, rows, cols, _slot(c.dtype.type(1.0)), _address(b, ib), max(ldb, 1), _address(a, ia),
            _slot(c.dtype.type(0.0)), _address(c, ic))


@njit(cache=True)
def _tile_cols(rows, N, K, trans_b):
    """Columns of a tile of `rows` rows: N, or a multiple of 16 for which rows * cols * K <= SMALL_GEMM_MNK (at least
    16), the tiles of one row group about equal."""
    most = max(16, SMALL_GEMM_MNK // max(rows * K, 1) // 16 * 16)
    if trans_b:
        most = min(most, 128)
    if N <= most:
        return N
    count = -(-N // most)
    return min(most, -(-(-(-N // count)) // 16) * 16)


@njit(cache=True)
def gemm_tiles(m, N, K, a, ia, lda, b, ib, trans_b, ldb, c, ic, ldc):
    """C (m x N) = A (m x K) op(B) as gemm's arguments (A not transposed, beta 0). Without OpenBLAS's small-matrix
    path (small_gemm() False) a gemv per row up to GEMV_MAX_ROWS rows, else one call. With it, in tiles that OpenBLAS
    multiplies without repacking B: all at once when m * N * K <= SMALL_GEMM_MNK, else TILE_ROWS rows by _tile_cols
    columns, or, where K is so long that those columns would be fewer than 128 (the backward's dG_t @ w_hh), by all N
    columns and a slice of K, the slices' products added up (dG (8 x 2048) @ w_hh (2048 x 512): 85 GFLOP/s in
    240-long slices, 53 in 48-column tiles, measured)."""
    if not small_gemm():                        # every gemm call packs: gemv a row up to GEMV_MAX_ROWS, else one call
        if m <= GEMV_MAX_ROWS:
            for r in range(m):
                gemv(trans_b, N, K, a, ia + r * lda, b, ib, ldb, c, ic + r * ldc)
        else:
            gemm(False, trans_b, m, N, K, a, ia, lda, b, ib, ldb, 0.0, c, ic, ldc)
        return
    if m * N * K <= SMALL_GEMM_MNK:
        gemm(False, trans_b, m, N, K, a, ia, lda, b, ib, ldb, 0.0, c, ic, ldc)
        return
    rows = min(m, TILE_ROWS)
    cols = _tile_cols(rows, N, K, trans_b)
    depth = SMALL_GEMM_MNK // max(rows * N, 1) // 16 * 16
    if cols < min(N, 128) and depth >= 64:      # slices of K, all columns
        count = -(-K // depth)
        depth = min(depth, -(-(-(-K // count)) // 16) * 16)
        for r0 in range(0, m, rows):
            r1 = min(m, r0 + rows)
            for k0 in range(0, K, depth):
                k1 = min(K, k0 + depth)
                gemm(False, trans_b, r1 - r0, N, k1 - k0, a, ia + r0 * lda + k0, lda, b,
                     ib + (k0 if trans_b else k0 * ldb), ldb, 0.0 if k0 == 0 else 1.0, c, ic + r0 * ldc, ldc)
        return
    for r0 in range(0, m, rows):
        r1 = min(m, r0 + rows)
        for n0 in range(0, N, cols):
            n1 = min(N, n0 + cols)
            gemm(False, trans_b, r1 - r0, n1 - n0, K, a, ia + r0 * lda, lda, b, ib + (n0 * ldb if trans_b else n0),
                 ldb, 0.0, c, ic + r0 * ldc + n0, ldc)
