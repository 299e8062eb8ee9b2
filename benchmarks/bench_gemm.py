"""nblstm's own matrix product (nblstm/kernels/_gemm.py) alone: median microseconds and GFLOP/s of its products on
given shapes, float32, one thread, for nblstm from this checkout or from another one (--source), to compare kernel
versions run after run; each product is checked against NumPy first.

    python benchmarks/bench_gemm.py [--repeats 50] [--quick] [--products 6400x128x2 p:1x64x256 ...] [--source DIR]

A product MxKxN is C (M x N) = A (M x K) B (K x N): by `gemm`, which packs B at every call (the layers' input products
and dx); p:MxKxN by `gemm_packed` against B packed once (the recurrent product of a step); t:MxKxN is A^T B with A
stored K x M, adding into C (the weight gradients). Times include the Python call (~0.5 us), most of a product of a
few us. Example, the kernel before narrow products got their own blocks against this one:
    git worktree add /tmp/nblstm-3c519ce 3c519ce
    python benchmarks/bench_gemm.py --source /tmp/nblstm-3c519ce; python benchmarks/bench_gemm.py
"""
import argparse
import sys

from _common import add_source, import_source, set_threads, warn_if_imported_early  # noqa: E402

PRODUCTS = ["6400x128x2", "100x128x32", "1000x128x32", "p:1x64x256", "p:1x32x128", "1600x2048x512",
            "t:1024x3200x512"]


def product_arg(text):
    """argparse type of a product: [p:|t:]MxKxN -> (kind, M, K, N)."""
    kind, _, dims = text.rpartition(":")
    try:
        M, K, N = (int(v) for v in dims.split("x"))
    except ValueError:
        M = 0
    if kind not in ("", "p", "t") or M < 1 or min(K, N) < 1:
        raise argparse.ArgumentTypeError(f"expected MxKxN, p:MxKxN or t:MxKxN (positive integers), got {text!r}")
    return kind or "n", M, K, N


def _parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--products", type=product_arg, nargs="+", default=[product_arg(s) for s in PRODUCTS],
                   metavar="[p:|t:]MxKxN")
    p.add_argument("--repeats", type=int, default=None, help="timed runs a product (default 50, --quick 5), after 3 "
                   "untimed")
    p.add_argument("--quick", action="store_true", help="5 timed runs a product")
    add_source(p)
    args = p.parse_args(argv)
    if args.repeats is None:
        args.repeats = 5 if args.quick else 50
    if args.repeats < 1:
        p.error(f"--repeats: expected a positive integer, got {args.repeats}")
    return args


ARGS = _parse(sys.argv[1:]) if __name__ == "__main__" else None
_already = set_threads(1) if ARGS is not None else []

import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402


def _case(_gemm, kind, M, K, N, rng):
    """(run(), C, the product in float64) of one product."""
    f = np.float32
    b = rng.standard_normal((K, N)).astype(f)
    c = np.zeros((M, N), f)
    if kind == "t":
        a = rng.standard_normal((K, M)).astype(f)
        want = a.T.astype(np.float64) @ b.astype(np.float64)

        def run():
            _gemm.gemm(True, False, M, N, K, a, 0, M, b, 0, N, 1.0, c, 0, N)
        return run, c, want
    a = rng.standard_normal((M, K)).astype(f)
    want = a.astype(np.float64) @ b.astype(np.float64)
    if kind == "p":
        packed = _gemm.packed(b, False)

        def run():
            _gemm.gemm_packed(M, N, K, a, 0, K, 1, packed, 0.0, c, 0, N)
    else:
        def run():
            _gemm.gemm(False, False, M, N, K, a, 0, K, b, 0, N, 0.0, c, 0, N)
    return run, c, want


def main(args):
    warn_if_imported_early(_already)
    nblstm, where = import_source(args.source)
    from nblstm.kernels import _gemm
    print(f"nblstm {nblstm.__version__} from {where}, "
          f"float32, one thread, median over {args.repeats} runs after 3 untimed; its product kernel: "
          f"{_gemm.VBYTES * 8}-bit vectors, {_gemm.MR} x {_gemm.NV} vector blocks\n")
    print("| product | M x K x N | us | GFLOP/s |")
    print("|---|---|---:|---:|")
    rng = np.random.default_rng(0)
    names = {"n": "A B (B packed each call)", "p": "A B (B packed once)", "t": "A^T B, adding into C"}
    for kind, M, K, N in args.products:
        run, c, want = _case(_gemm, kind, M, K, N, rng)
        run()                                   # compiled (or loaded) and checked before any timing
        err = np.abs(c - want).max() / max(1.0, np.abs(want).max())
        if err > 1e-4:
            print(f"| {names[kind]} | {M} x {K} x {N} | wrong: max relative error {err:.1e} | |")
            return 1
        run()
        run()
        ts = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            run()
            ts.append(time.perf_counter() - t0)
        t = statistics.median(ts)
        print(f"| {names[kind]} | {M} x {K} x {N} | {1e6 * t:.1f} | {2 * M * K * N / t / 1e9:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(ARGS))
