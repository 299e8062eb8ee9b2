"""Training steps of one LSTM layer: median ms of zero_grad + forward + backward and the minor page faults per step,
for nblstm from this checkout or from another one (--source), to compare versions run after run.

    python benchmarks/bench_steps.py [--threads 2] [--repeats 20] [--shapes 100,32,128,128 ...] [--source DIR]

Page faults (getrusage's ru_minflt) count the fresh pages a step touches: large arrays allocated anew each step come
back from the operating system as new pages, each faulted in and zeroed on first touch; nblstm reuses its tape
buffers and backward scratch instead (nblstm._module.Module._take, _scratch).
Example, the version before that reuse against this one:
    git worktree add /tmp/nblstm-edc52ea edc52ea
    python benchmarks/bench_steps.py --source /tmp/nblstm-edc52ea; python benchmarks/bench_steps.py
"""
import sys

from _common import add_source, import_source, parse, parser, set_threads, warn_if_imported_early  # noqa: E402

SHAPES = [(100, 32, 128, 128), (100, 64, 256, 256)]


def _parse(argv):
    p = parser(__doc__, SHAPES)
    add_source(p)
    return parse(p, argv)


ARGS = _parse(sys.argv[1:]) if __name__ == "__main__" else None
_already = set_threads(ARGS.threads) if ARGS is not None else []

import resource  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402


def main(args):
    warn_if_imported_early(_already)
    nblstm, where = import_source(args.source)
    print(f"nblstm {nblstm.__version__} from {where}, "
          f"float32, {args.threads} thread(s), one LSTM layer, zero_grad + forward + backward, median over "
          f"{args.repeats} steps after one untimed\n")
    print("| T, B, I, H | ms per step | page faults per step |")
    print("|---|---:|---:|")
    for T, B, I, H in args.shapes:
        rng = np.random.default_rng(args.seed)
        x = rng.standard_normal((T, B, I)).astype(np.float32)
        dy = rng.standard_normal((T, B, H)).astype(np.float32)
        lstm = nblstm.LSTM(I, H, seed=args.seed)

        def step():
            lstm.zero_grad()
            lstm(x)
            lstm.backward(dy)

        step()
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        ts = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            step()
            ts.append(time.perf_counter() - t0)
        faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / args.repeats
        print(f"| {T}, {B}, {I}, {H} | {1e3 * statistics.median(ts):.2f} | {faults:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(ARGS))
