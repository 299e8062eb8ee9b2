"""What the benchmark scripts share (they run as files: this folder is on sys.path)."""
import argparse
import os
import sys

DEFAULT_SHAPES = [(100, 1, 32, 32), (1000, 1, 32, 32), (100, 16, 64, 64), (100, 32, 128, 128),
                  (100, 64, 256, 256), (50, 64, 512, 512)]
DTYPES = ("float32", "float64")    # names for --dtype (numpy loads after the thread counts are set)


def shape_arg(text):
    """argparse type of a T,B,I,H shape."""
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 4 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"expected T,B,I,H (four positive integers), got {text!r}")
    return shape


def set_threads(n):
    """Thread counts of every BLAS / OpenMP / numba pool, in the environment before numpy, scipy, numba or torch
    load; -> the names of those already imported (whose pools may not follow)."""
    for var in ("OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)
    return [m for m in ("numpy", "numba", "torch") if m in sys.modules]

