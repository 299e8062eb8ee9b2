"""Where nblstm's device="cuda" time goes: one LSTM layer, float32, per shape.

    python benchmarks/profile_cuda.py [--shapes 1000,1,32,32 100,32,128,128 100,64,256,256]

Needs an NVIDIA GPU and numba-cuda (not the simulator). For each shape it prints the median ms of a forward, of a
backward after a forward, and of zero_grad (a device synchronize before each clock read); then one forward and one
backward again with a device synchronize before and after every kernel launch, and the time and count of each
launcher (nblstm.kernels.cuda.Launcher): kernel time plus its launch cost. What the launchers do not account for is
the object layer's Python, copies and allocations.
"""
import argparse
import collections
import os
import sys
import time

from _common import median_synced, shape_arg  # noqa: E402

SHAPES = [(1000, 1, 32, 32), (100, 32, 128, 128), (100, 64, 256, 256)]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shapes", type=shape_arg, nargs="+", default=SHAPES, metavar="T,B,I,H")
    p.add_argument("--repeats", type=int, default=10)
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
        sys.exit("profile_cuda.py: unset NUMBA_ENABLE_CUDASIM; the simulator is for tests, not timings")
    os.environ.setdefault("NUMBA_CUDA_LOW_OCCUPANCY_WARNINGS", "0")

    import numpy as np

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a source checkout
    import nblstm
    from nblstm import backends

    K = backends.kernels("cuda")            # CudaUnavailableError with the install hint when there is no GPU
    from numba import cuda

    def median_ms(fn, before=None):
        return median_synced(fn, cuda.synchronize, args.repeats, before=before) * 1e3

    for T, B, I, H in args.shapes:
        m = nblstm.LSTM(I, H, device="cuda", seed=0)
        rng = np.random.default_rng(0)
        x, h0, c0, dy = (cuda.to_device(rng.standard_normal(s).astype(np.float32))
                         for s in [(T, B, I), (1, B, H), (1, B, H), (T, B, H)])

        def forward():
            m(x, (h0, c0))

        def backward():
            m.backward(dy)

        for _ in range(3):
            m.zero_grad()
            forward()
            backward()
        tf, tb, tz = median_ms(forward), median_ms(backward, before=forward), median_ms(m.zero_grad)
        print(f"== {(T, B, I, H)}: fwd {tf:.2f} ms, bwd {tb:.2f} ms, zero_grad {tz:.2f} ms")

        spent, count = collections.defaultdict(float), collections.Counter()
        launch = K.Launcher.__call__

        def synced(self, *a):
            cuda.synchronize()
            t0 = time.perf_counter()
            launch(self, *a)
            cuda.synchronize()
            spent[self.__name__] += time.perf_counter() - t0
            count[self.__name__] += 1

        K.Launcher.__call__ = synced
        try:
            cuda.synchronize()
            t0 = time.perf_counter()
            forward()
            cuda.synchronize()
            t1 = time.perf_counter()
            backward()
            cuda.synchronize()
            t2 = time.perf_counter()
        finally:
            K.Launcher.__call__ = launch
        rest = (t2 - t0) - sum(spent.values())
        print(f"   synced: fwd {(t1 - t0) * 1e3:.2f} ms, bwd {(t2 - t1) * 1e3:.2f} ms; per launcher (ms / launches): "
              + ", ".join(f"{k} {v * 1e3:.2f}/{count[k]}" for k, v in sorted(spent.items(), key=lambda kv: -kv[1]))
              + f"; the rest {rest * 1e3:.2f}")


if __name__ == "__main__":
    main()
