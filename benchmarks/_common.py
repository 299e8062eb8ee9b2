"""What the benchmark scripts share (they run as files: this folder is on sys.path)."""
import argparse
import os
import statistics
import sys
import time

DEFAULT_SHAPES = [(100, 1, 32, 32), (1000, 1, 32, 32), (100, 16, 64, 64), (100, 32, 128, 128),
                  (100, 64, 256, 256), (50, 64, 512, 512)]
# Timed runs per measurement of the CPU comparisons (bench_lstm, bench_all, bench_padded), each capped by a time
# budget: cheap shapes get all 200, in blocks after a pause, so the median is of steady runs rather than of the first
# few after the pause (with 20 runs, one run measured torch at 0.75 and nblstm at 0.245 ms at (100,1,32,32), with 400
# runs 0.555 and 0.158 on the same code); large shapes run as many as their budget holds, as before.
TIMED_RUNS = 200
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



def parser(doc, shapes, quick_help="fewer repeats and warm-ups", repeats=20, **kwargs):
    """An ArgumentParser with the options every benchmark has: --threads, --repeats (default `repeats`), --quick,
    --shapes, --seed."""
    p = argparse.ArgumentParser(description=doc.split("\n")[0], **kwargs)
    p.add_argument("--threads", type=int, default=2, help="threads for both libraries (default 2)")
    p.add_argument("--repeats", type=int, default=None,
                   help=f"timed runs per measurement (default {repeats}, --quick 5; fewer for long runs, at least 4)")
    p.set_defaults(default_repeats=repeats)
    p.add_argument("--quick", action="store_true", help=quick_help)
    p.add_argument("--shapes", type=shape_arg, nargs="+", default=shapes, metavar="T,B,I,H")
    p.add_argument("--seed", type=int, default=0)
    return p


def parse(p, argv):
    """Parse and check the common options; --repeats defaults to the parser's (5 with --quick)."""
    args = p.parse_args(argv)
    if args.threads < 1:
        p.error(f"--threads: expected a positive integer, got {args.threads}")
    if args.repeats is None:
        args.repeats = 5 if args.quick else args.default_repeats
    return args


def add_source(p):
    """The --source option: the checkout whose nblstm a script imports (default: this one), to compare versions."""
    p.add_argument("--source", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), metavar="DIR",
                   help="the checkout whose nblstm is imported (default: this one)")


def import_source(source):
    """nblstm imported from the checkout `source` (before any installed one) -> (the module, the folder it came
    from)."""
    sys.path.insert(0, os.path.abspath(source))
    import nblstm
    return nblstm, os.path.dirname(os.path.dirname(os.path.abspath(nblstm.__file__)))


def warn_if_imported_early(already):
    """The warning for libraries imported before set_threads (their pools may not follow --threads)."""
    if already:
        print(f"warning: {', '.join(already)} was imported before this script set the thread counts; "
              "BLAS may use more threads than --threads", file=sys.stderr)


def median_synced(fn, sync, repeats, warmup=0, before=None):
    """Median seconds of fn() over `repeats` runs, after `warmup` untimed ones, for asynchronous (GPU) work: sync()
    (a device synchronize) before each clock start and before each clock read; before(), if given, runs untimed
    ahead of each run."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if before is not None:
            before()
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
