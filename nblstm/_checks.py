"""Argument checks shared by the objects. Every error names the argument, what was expected and what was given."""
import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def as_float_dtype(dtype, name="dtype"):
    """np.float32 or np.float64 (any spelling numpy accepts) -> np.dtype; anything else raises TypeError."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"{name}: expected np.float32 or np.float64, got {dtype!r}")
    return dt


def positive_int(value, name):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    return int(value)


def choice(value, name, options):
    if value not in options:
        raise ValueError(f"{name}: expected one of {', '.join(map(repr, options))}, got {value!r}")
    return value


def shape_fits(got, shape):
    """True when the shape `got` matches `shape`: as many axes, each size as given (None: any size >= 1), none 0."""
    if len(got) != len(shape):
        return False
    for s, n in zip(shape, got):                # a loop, not all(generator): 0.36 against 0.62 us (it runs on every
        if n <= 0 or (s is not None and s != n):    # argument of every call)
            return False
    return True


def fits(a, dtype, shape, axes=None):
    """True when as_array(a, ., dtype, shape, axes) would return `a` itself: a C-contiguous NumPy array of `dtype`
    and `shape` (shape_fits), no axes to permute."""
    return (type(a) is np.ndarray and axes is None and a.dtype == dtype and a.flags.c_contiguous
            and shape_fits(a.shape, shape))


def as_array(a, name, dtype, shape, axes=None):
    """a as a C-contiguous array of `dtype` with the given shape (None in `shape` matches any size >= 1),
    its axes permuted by `axes` (np.transpose's argument) when given.

    Real input (bool, int, float of any width) is converted to `dtype`, copying when needed; non-contiguous
    input is copied. Complex, string, object and other non-real input raises TypeError; a wrong number of
    dimensions or a wrong size raises ValueError.
    """
    arr = np.asarray(a)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected a real-valued array (converted to {dtype}), got dtype {arr.dtype}")
    if not shape_fits(arr.shape, shape):
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
        raise ValueError(f"{name}: expected shape {want} (* any size >= 1), got {arr.shape}")
    return np.ascontiguousarray(arr if axes is None else arr.transpose(axes), dtype=dtype)


def lengths(value, B, T, name="lengths"):
    """Sequence lengths: None (every sequence runs T steps) or B integers in 0..T -> an int64 array (B,)."""
    if value is None:
        return np.full(B, T, np.int64)
    arr = np.asarray(value)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected integers, got dtype {arr.dtype}")
    if arr.shape != (B,):
        raise ValueError(f"{name}: expected shape ({B},), one length per sequence, got {arr.shape}")
    if B and (arr.min() < 0 or arr.max() > T):
        raise ValueError(f"{name}: expected lengths in 0..{T} (T, the number of time steps), got min {arr.min()}, "
                         f"max {arr.max()}")
    return np.ascontiguousarray(arr, np.int64)
