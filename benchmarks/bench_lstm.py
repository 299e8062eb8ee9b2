"""nblstm vs torch.nn.LSTM on the CPU: float32, same weights, same thread count, one process (one layer unless
--layers / --bidirectional).

    python benchmarks/bench_lstm.py [--threads 2] [--repeats 200] [--quick] [--shapes 100,1,32,32 ...] [--dtype float64]

For each shape (T, B, I, H) it first checks that both give the same outputs and gradients (of x, h0, c0 and
all four parameters) and skips the shape if not; then it times, after a warm-up, the median over repeats of
  fwd   a training-mode forward (nblstm keeps its tape; torch records the autograd graph),
  f+b   forward + backward with a given dy (nblstm: zero_grad, forward, backward; torch: the same).
FLOPs counted are the GEMMs only: forward 2*T*B*4H*(I+H), backward twice that.
Every figure of the performance issue (inference, the GEMM limit, stacked, float64, start-up, memory, a plot) in one
run: benchmarks/bench_all.py, which reuses this file's pieces.
"""
import os
import sys

from _common import DEFAULT_SHAPES, DTYPES, TIMED_RUNS, parse, parser, set_threads, warn_if_imported_early  # noqa: E402


def _parse(argv):
    p = parser(__doc__, DEFAULT_SHAPES, repeats=TIMED_RUNS)
    p.add_argument("--layers", type=int, default=1, help="num_layers of both LSTMs (default 1)")
    p.add_argument("--bidirectional", action="store_true", help="bidirectional LSTMs")
    p.add_argument("--dtype", choices=DTYPES, default="float32", help="both libraries (default float32)")
    return parse(p, argv)


# Thread counts must be in the environment before numpy, scipy or numba load their thread pools.
ARGS = _parse(sys.argv[1:]) if __name__ == "__main__" else None
_already = set_threads(ARGS.threads) if ARGS is not None else []

import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a source checkout
import nblstm  # noqa: E402

try:
    import torch
except ImportError:
    torch = None

def flops(T, B, I, H, L=1, D=1):
    """GEMM FLOPs of (forward, forward + backward) of L layers, D directions (layers above the first read D*H)."""
    f = D * 2 * T * B * 4 * H * ((I + H) + (L - 1) * (D * H + H))
    return f, 3 * f


class Nb:
    """nblstm side of one shape (the dtype of x)."""

    def __init__(self, I, H, L, D, state_dict, x, h0, c0, dy):
        self.lstm = nblstm.LSTM(I, H, num_layers=L, bidirectional=D == 2, dtype=x.dtype.type)
        self.lstm.load_state_dict(state_dict)
        self.x, self.state, self.dy = x, (h0, c0), dy

    def forward(self):
        return self.lstm(self.x, self.state)

    def infer(self):
        """Inference forward: no tape."""
        with nblstm.no_grad():
            return self.lstm(self.x, self.state)

    def forward_backward(self):
        self.lstm.zero_grad()
        self.lstm(self.x, self.state)
        return self.lstm.backward(self.dy)

    def results(self):
        y, (h, c) = self.forward()
        dx, (dh0, dc0) = self.forward_backward()
        out = dict(y=y, h_n=h, c_n=c, x=dx, h0=dh0, c0=dc0)
        out.update({k: g.copy() for k, g in self.lstm.grads.items()})
        return out


class Torch:
    """torch.nn.LSTM side of one shape (the dtype of x)."""

    def __init__(self, I, H, L, D, x, h0, c0, dy):
        self.lstm = torch.nn.LSTM(I, H, num_layers=L, bidirectional=D == 2, dtype=torch.from_numpy(x[:0]).dtype)
        self.x, self.h0, self.c0 = (torch.from_numpy(a).requires_grad_() for a in (x, h0, c0))
        self.dy = torch.from_numpy(dy)

    def state_dict(self):
        return {k: v.detach().numpy().copy() for k, v in self.lstm.state_dict().items()}

    def forward(self):
        return self.lstm(self.x, (self.h0, self.c0))

    def infer(self):
        """Inference forward: torch.no_grad()."""
        with torch.no_grad():
            return self.lstm(self.x, (self.h0, self.c0))

    def forward_backward(self):
        self.lstm.zero_grad(set_to_none=True)
        for t in (self.x, self.h0, self.c0):
            t.grad = None
        y, _ = self.lstm(self.x, (self.h0, self.c0))
        y.backward(self.dy)

    def results(self):
        y, (h, c) = self.forward()
        self.forward_backward()
        out = dict(y=y, h_n=h, c_n=c, x=self.x.grad, h0=self.h0.grad, c0=self.c0.grad)
        out.update({k: p.grad for k, p in self.lstm.named_parameters()})
        return {k: v.detach().numpy() for k, v in out.items()}


def reference_results(state_dict, L, D, x, h0, c0, dy):
    """The NumPy oracle in float64 (used when torch is missing)."""
    R, f64 = nblstm.reference, lambda a: np.asarray(a, np.float64)
    p = {k: f64(v) for k, v in state_dict.items()}
    y, h, c, caches = R.stacked_lstm_forward(f64(x), f64(h0), f64(c0), p, L, D == 2)
    g = R.stacked_lstm_backward(f64(dy), np.zeros_like(h), np.zeros_like(c), caches)
    return dict(y=y, h_n=h, c_n=c, **g)


#: check()'s tolerance per dtype: float32 over up to 1000 steps, summed over T*B for the weight gradients, ~1e-6 is
#: typical and 1e-4 a clear fault; float64 ~1e-14 typical
TOL = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-8}


def check(got, want, tol=1e-4):
    """Max |got - want| / max |want| per tensor; raises AssertionError naming the tensors above `tol` (see TOL)."""
    errs = {k: float(np.max(np.abs(np.asarray(got[k], np.float64) - want[k]))) / max(float(np.max(np.abs(want[k]))),
                                                                                       1e-30) for k in want}
    bad = {k: e for k, e in errs.items() if not e <= tol}
    if bad:
        raise AssertionError("not equal (max abs error / max abs value): "
                             + ", ".join(f"{k} {e:.2e}" for k, e in bad.items()))
    return max(errs.values())


SETTLE_S = 0.05


def timed(fns, repeats, warmup, budget_s):
    """Median wall time in ms of each function over `repeats` runs (fewer, at least 4, where that would take
    longer than budget_s), after warm-up. -> (medians, runs per function).

    Each function runs in blocks (warm-up, then half its runs), alternating A B A B so that drift hits all alike.
    Between blocks the process sleeps 0.2 s: idle OpenBLAS threads spin for ~0.1 s after their last call and
    OpenMP's for a while too, and would otherwise take a core from the library timed next. After the pause each
    block first runs its function untimed for SETTLE_S (at least once): on this VM the first ~15 ms after a pause
    ran slower (nblstm f+b at (100,1,32,32): median 152 us over the first 100 runs after a 0.2 s sleep, 135 over
    the next 200; torch 566 and 545), which at B = 1 was most of a block's runs."""
    start = time.perf_counter()
    for _ in range(warmup):
        for fn in fns:
            fn()
    one_round = (time.perf_counter() - start) / warmup
    half = max(2, min(repeats, int(budget_s / max(one_round, 1e-9))) // 2)
    times = [[] for _ in fns]
    for _ in range(2):
        for fn, ts in zip(fns, times):
            time.sleep(0.2)
            settle = time.perf_counter() + SETTLE_S
            fn()
            while time.perf_counter() < settle:
                fn()
            for _ in range(half):
                t0 = time.perf_counter()
                fn()
                ts.append(time.perf_counter() - t0)
    return [1e3 * statistics.median(ts) for ts in times], 2 * half


def setup(shape, L, D, dtype, seed):
    """Both sides of one shape with torch's initial weights, checked equal first -> (nb, th, err); th is None without
    torch (nblstm is then checked against nblstm.reference). Checked: outputs, h_n, c_n, the gradients of x, h0, c0
    and every parameter, and the outputs of nblstm's inference forward (no_grad); AssertionError if they differ."""
    T, B, I, H = shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, B, I)).astype(dtype)
    h0, c0 = (0.5 * rng.standard_normal((L * D, B, H)).astype(dtype) for _ in range(2))
    dy = rng.standard_normal((T, B, D * H)).astype(dtype)
    th = None
    if torch is not None:
        torch.manual_seed(seed)
        th = Torch(I, H, L, D, x, h0, c0, dy)
        sd = th.state_dict()
        want = th.results()
    else:
        sd = nblstm.LSTM(I, H, num_layers=L, bidirectional=D == 2, seed=seed, dtype=dtype).state_dict()
        want = reference_results(sd, L, D, x, h0, c0, dy)
    nb = Nb(I, H, L, D, sd, x, h0, c0, dy)
    got = nb.results()
    y, (h, c) = nb.infer()
    got.update({"y (no_grad)": y, "h_n (no_grad)": h, "c_n (no_grad)": c})
    want.update({"y (no_grad)": want["y"], "h_n (no_grad)": want["h_n"], "c_n (no_grad)": want["c_n"]})
    return nb, th, check(got, want, TOL[np.dtype(dtype)])


def bench_shape(shape, args):
    T, B, I, H = shape
    L, D = args.layers, 2 if args.bidirectional else 1
    nb, th, err = setup(shape, L, D, np.dtype(args.dtype).type, args.seed)
    fns = [nb.forward, nb.forward_backward] + ([th.forward, th.forward_backward] if th is not None else [])
    warmup, budget = (1, 3.0) if args.quick else (3, 12.0)      # seconds of timed runs per shape and mode
    fwd, n_fwd = timed(fns[0::2], args.repeats, warmup, budget / 3)
    fb, n_fb = timed(fns[1::2], args.repeats, warmup, 2 * budget / 3)
    return dict(shape=shape, err=err, repeats=(n_fwd, n_fb), flops=flops(T, B, I, H, L, D), fwd=fwd, fb=fb)


def _blas_pools():
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed"
    return "; ".join(f"{p['internal_api']} {os.path.basename(p['filepath'])} x{p['num_threads']}"
                     + (f" ({p['architecture']} kernels)" if p.get("architecture") else "") for p in threadpool_info())


def _blas_core():
    """nblstm's product kernel (its vector width and register block, chosen for this processor), the kernels that
    scipy's OpenBLAS runs (np.dot in the RNN, projections, attention) and the OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE that
    chose them when set (benchmarks/README.md)."""
    from nblstm.kernels import _blas, _gemm
    forced = ", ".join(f"{k}={os.environ[k]}" for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ)
    return (f"nblstm's LSTM products: its own kernel, {_gemm.VBYTES * 8}-bit vectors, {_gemm.MR} x {_gemm.NV} vector "
            f"blocks; scipy's OpenBLAS core (np.dot elsewhere): {_blas.BLAS_CORE}"
            + (f"; forced by the environment: {forced}" if forced else "; OPENBLAS_CORETYPE not set"))


def main(args):
    warn_if_imported_early(_already)
    import numba
    if torch is not None:
        torch.set_num_threads(args.threads)
        print(f"nblstm {nblstm.__version__} (numba {numba.__version__}, numpy {np.__version__}) vs torch "
              f"{torch.__version__}, {args.dtype}, {args.threads} thread(s), num_layers={args.layers}, "
              f"bidirectional={args.bidirectional}")
    else:
        print(f"nblstm {nblstm.__version__} (numba {numba.__version__}, numpy {np.__version__}), {args.dtype}, "
              f"{args.threads} thread(s)")
        print("torch is not installed: nblstm numbers only, checked against nblstm.reference "
              "(pip install torch to compare)")
    print("fwd: training-mode forward; f+b: forward + backward (grads of x, h0, c0, all weights); median ms over "
          "repeats after warm-up; GFLOP/s from GEMM FLOPs (fwd 2*T*B*4H*(I+H), bwd 2x fwd); max err: largest "
          "|nblstm - torch| / max |torch| over outputs and gradients")
    load = os.getloadavg()    # other processes on the machine skew multi-threaded timings most
    rows = []
    for shape in args.shapes:
        try:
            rows.append(bench_shape(shape, args))
        except AssertionError as e:
            print(f"shape {shape} skipped, nblstm and {'torch' if torch else 'reference'} disagree: {e}")
    print(f"BLAS pools: {_blas_pools()}")
    print(f"{_blas_core()}\n")
    gf = lambda n, ms: n / ms / 1e6  # noqa: E731  FLOPs in ms -> GFLOP/s
    if torch is not None:
        print("| T, B, I, H | fwd nblstm ms | fwd torch ms | fwd GFLOP/s nblstm / torch | fwd torch/nblstm "
              "| f+b nblstm ms | f+b torch ms | f+b GFLOP/s nblstm / torch | f+b torch/nblstm | max err |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            (fn, ft), (bn, bt), (f, fb) = r["fwd"], r["fb"], r["flops"]
            print(f"| {', '.join(map(str, r['shape']))} | {fn:.3f} | {ft:.3f} | {gf(f, fn):.1f} / {gf(f, ft):.1f} "
                  f"| **{ft / fn:.2f}** | {bn:.3f} | {bt:.3f} | {gf(fb, bn):.1f} / {gf(fb, bt):.1f} "
                  f"| **{bt / bn:.2f}** | {r['err']:.1e} |")
    else:
        print("| T, B, I, H | fwd ms | fwd GFLOP/s | f+b ms | f+b GFLOP/s | max err vs reference |")
        print("|---|---:|---:|---:|---:|---:|")
        for r in rows:
            (fn,), (bn,), (f, fb) = r["fwd"], r["fb"], r["flops"]
            print(f"| {', '.join(map(str, r['shape']))} | {fn:.3f} | {gf(f, fn):.1f} | {bn:.3f} | {gf(fb, bn):.1f} "
                  f"| {r['err']:.1e} |")
    print(f"\nrepeats per shape (fwd, f+b): {', '.join('%d/%d' % r['repeats'] for r in rows)}; "
          f"load average before / after: {load[0]:.2f} / {os.getloadavg()[0]:.2f}")
    return 0 if len(rows) == len(args.shapes) else 1


if __name__ == "__main__":
    sys.exit(main(ARGS))
