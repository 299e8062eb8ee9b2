"""Every CPU figure of the performance issue in one run: nblstm vs torch.nn.LSTM, same weights, outputs and
gradients checked equal before anything is timed, medians, the same thread count for both.

    python benchmarks/bench_all.py            # all sections, 6 shapes, 2 threads: 6.5 minutes on 2 quiet cores
    python benchmarks/bench_all.py --quick    # fewer repeats and configurations: ~2 minutes (est.; 11 at load 6)

Sections (--sections picks some; all by default), in the order printed:
  train    float32, one layer, per shape: training-mode forward (fwd) and zero_grad + forward + backward (f+b)
  infer    inference forward: nblstm under nblstm.no_grad() vs torch under torch.no_grad()
  gemm     large shapes: nblstm's GFLOP/s as a percentage of a plain numpy matrix product of the same FLOPs, timed
           in the same blocks (and of the layer's own GEMMs run alone in numpy, a diagnostic)
  stacked  stacked and bidirectional LSTMs at the large shapes, f+b
  float64  f+b in float64, torch in float64 too
  startup  a fresh process with the warm numba cache: `import nblstm`, then the first f+b of a small LSTM
  cold     the same with NUMBA_CACHE_DIR an empty folder: the compile time
  memory   RSS high-water mark of one f+b (a fresh process) against the tape's theoretical size
  plot     time vs shape, both libraries, f+b and inference -> benchmarks/cpu_times.png (needs matplotlib)
The per-shape definitions are printed with each table; benchmarks/README.md has them too.
"""
import argparse
import os
import sys

from _common import DEFAULT_SHAPES, TIMED_RUNS, parse, parser, set_threads, shape_arg, warn_if_imported_early  # noqa: E402

SECTIONS = ("train", "infer", "gemm", "stacked", "float64", "startup", "cold", "memory", "plot")
HERE = os.path.dirname(os.path.abspath(__file__))


def config_arg(text):
    """argparse type of a stacked configuration: layers, then 'b' for bidirectional: 2, 4, 1b, 2b."""
    bi = text.endswith("b")
    try:
        layers = int(text[:-1] if bi else text)
    except ValueError:
        layers = 0
    if layers < 1:
        raise argparse.ArgumentTypeError(f"expected a layer count with an optional 'b' (bidirectional), as 2 or 1b, "
                                         f"got {text!r}")
    return layers, 2 if bi else 1


def _parse(argv):
    p = parser(__doc__, DEFAULT_SHAPES, "fewer repeats and warm-ups, stacked configurations 2 and 1b only, one warm "
               "start-up run", repeats=TIMED_RUNS, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--large-shapes", type=shape_arg, nargs="+", default=None, metavar="T,B,I,H",
                   help="shapes of the gemm and stacked sections (default: those of --shapes with H >= 256, else "
                        "the one with the most FLOPs)")
    p.add_argument("--stacked", type=config_arg, nargs="+", default=None, metavar="L[b]",
                   help="configurations of the stacked section: layers, b for bidirectional (default 2 4 1b 2b; "
                        "--quick 2 1b)")
    p.add_argument("--sections", nargs="+", choices=SECTIONS, default=SECTIONS, metavar="NAME",
                   help="sections to run (default all): " + " ".join(SECTIONS))
    p.add_argument("--startup-runs", type=int, default=None,
                   help="fresh processes timed with the warm cache, median (default 3, --quick 1)")
    p.add_argument("--plot", default=os.path.join(HERE, "cpu_times.png"), metavar="PATH",
                   help="where the plot goes (default benchmarks/cpu_times.png)")
    p.add_argument("--json", default=None, metavar="PATH", help="also write every measurement to this JSON file")
    args = parse(p, argv)
    if args.startup_runs is None:
        args.startup_runs = 1 if args.quick else 3
    if args.stacked is None:
        args.stacked = [(2, 1), (1, 2)] if args.quick else [(2, 1), (4, 1), (1, 2), (2, 2)]
    if args.large_shapes is None:
        big = [s for s in args.shapes if s[3] >= 256]
        args.large_shapes = big or [max(args.shapes, key=lambda s: s[0] * s[1] * s[3] * (s[2] + s[3]))]
    args.sections = [s for s in SECTIONS if s in args.sections]
    return args


# Thread counts must be in the environment before numpy, scipy, numba or torch load their thread pools.
ARGS = _parse(sys.argv[1:]) if __name__ == "__main__" else None
_already = set_threads(ARGS.threads) if ARGS is not None else []

import json  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from bench_lstm import _blas_core, _blas_pools, flops, nblstm, setup, timed, torch  # noqa: E402

MB = 2 ** 20


def _gf(n, ms):
    """GFLOP/s of n FLOPs in ms milliseconds."""
    return n / ms / 1e6


def _f(v, spec=".3f"):
    """v formatted, or '-' where it was not measured (no torch)."""
    return "-" if v is None else format(v, spec)


def _ratio(a, b):
    return None if a is None or b is None else a / b


def _torch_gf(m, fl):
    """torch's GFLOP/s from the medians m ({library: ms}), formatted."""
    return _f(m.get("torch") and _gf(fl, m["torch"]), ".1f")


def _speedup(m):
    """**torch ms / nblstm ms** from the medians m, formatted."""
    return f"**{_f(_ratio(m.get('torch'), m['nblstm']), '.2f')}**"


def _shape(s):
    return ", ".join(map(str, s))


def _load():
    return os.getloadavg()[0]


def _budget(args):
    """(warm-up rounds, seconds of timed runs per shape) as bench_lstm.py."""
    return (1, 3.0) if args.quick else (3, 12.0)


class Gemms:
    """numpy matrix products sized like one LSTM layer's work at (T, B, I, H), preallocated, np.dot with out=."""

    def __init__(self, shape, dtype, seed):
        T, B, I, H = shape
        rng = np.random.default_rng(seed)
        r = lambda *sh: rng.standard_normal(sh).astype(dtype)  # noqa: E731
        self.T, self.B = T, B
        # the plain product: (T*B, I+H) x (I+H, 4H), 2*T*B*(I+H)*4H FLOPs = one layer's forward
        self.A, self.W, self.out = r(T * B, I + H), r(I + H, 4 * H), r(T * B, 4 * H)
        # the layer's own products
        self.X, self.w_ih, self.w_hh = r(T * B, I), r(4 * H, I), r(4 * H, H)
        self.G, self.Hs, self.hw, self.dG = r(T * B, 4 * H), r(T * B, H), r(B, 4 * H), r(T * B, 4 * H)
        self.dh, self.dX, self.dw_ih, self.dw_hh = r(B, H), r(T * B, I), r(4 * H, I), r(4 * H, H)

    def plain(self, n):
        """n plain products in a row."""
        def run():
            for _ in range(n):
                np.dot(self.A, self.W, self.out)
        return run

    def layer(self, backward):
        """The GEMMs of one layer's forward (input product of all steps, then T recurrent ones) and, with backward,
        of its BPTT (T recurrent ones dG_t w_hh, then dx, dw_ih, dw_hh over all steps); no pointwise work."""
        T, B = self.T, self.B

        def run():
            np.dot(self.X, self.w_ih.T, self.G)
            for t in range(T):
                np.dot(self.Hs[t * B:(t + 1) * B], self.w_hh.T, self.hw)
            if backward:
                for t in range(T - 1, -1, -1):
                    np.dot(self.dG[t * B:(t + 1) * B], self.w_hh, self.dh)
                np.dot(self.dG, self.w_ih, self.dX)
                np.dot(self.dG.T, self.X, self.dw_ih)
                np.dot(self.dG.T, self.Hs, self.dw_hh)
        return run


def _time_groups(groups, args, warmup, budget):
    """groups: [(mode, {name: fn}, share of the budget)] -> ({mode: {name: median ms}}, {mode: runs})."""
    ms, runs = {}, {}
    for mode, fns, share in groups:
        medians, n = timed(list(fns.values()), args.repeats, warmup, budget * share)
        ms[mode], runs[mode] = dict(zip(fns, medians)), n
    return ms, runs


def one_layer_pass(args):
    """train, infer, gemm: one pass over the shapes, float32, one layer."""
    want = set(args.sections)
    large = {tuple(s) for s in args.large_shapes} if "gemm" in want else set()
    shapes = list(args.shapes) + [s for s in args.large_shapes if s not in args.shapes and large]
    warmup, budget = _budget(args)
    rows = []
    for shape in shapes:
        try:
            nb, th, err = setup(shape, 1, 1, np.float32, args.seed)
        except AssertionError as e:
            print(f"shape {shape} skipped, nblstm and {'torch' if torch else 'reference'} disagree: {e}")
            continue
        libs = lambda a, b: {"nblstm": a, **({"torch": b} if th is not None else {})}  # noqa: E731
        groups = []
        if "train" in want:
            groups.append(("fwd", libs(nb.forward, th and th.forward), 0.25))
        if want & {"train", "gemm", "plot"}:
            groups.append(("fb", libs(nb.forward_backward, th and th.forward_backward), 0.5))
        if want & {"infer", "gemm", "plot"}:
            groups.append(("infer", libs(nb.infer, th and th.infer), 0.25))
        if shape in large:
            g = Gemms(shape, np.float32, args.seed)
            for mode, fns, _ in groups:
                if mode == "fb":
                    fns.update({"plain": g.plain(3), "layer GEMMs": g.layer(True)})
                elif mode == "infer":
                    fns.update({"plain": g.plain(1), "layer GEMMs": g.layer(False)})
        ms, runs = _time_groups(groups, args, warmup, budget)
        rows.append(dict(shape=list(shape), err=err, ms=ms, runs=runs, flops=flops(*shape), large=shape in large,
                         in_shapes=shape in args.shapes))
    return rows


def print_train(rows):
    print("fwd: training-mode forward (nblstm keeps its tape, torch records the autograd graph); f+b: zero_grad, "
          "forward, backward with a fixed dy (gradients of x, h0, c0 and all weights). Median ms; GFLOP/s from the "
          "GEMM FLOPs (fwd 2*T*B*4H*(I+H), f+b 3x that); ratio torch / nblstm (above 1: nblstm faster); max err: "
          "largest |nblstm - torch| / max |torch| over outputs, gradients and the no_grad outputs.\n")
    print("| T, B, I, H | fwd nblstm ms | fwd torch ms | fwd torch/nblstm | f+b nblstm ms | f+b torch ms "
          "| f+b GFLOP/s nblstm / torch | f+b torch/nblstm | runs fwd/f+b | max err |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        if not r["in_shapes"]:
            continue
        f, b, fl = r["ms"]["fwd"], r["ms"]["fb"], r["flops"][1]
        print(f"| {_shape(r['shape'])} | {f['nblstm']:.3f} | {_f(f.get('torch'))} "
              f"| {_speedup(f)} | {b['nblstm']:.3f} | {_f(b.get('torch'))} "
              f"| {_gf(fl, b['nblstm']):.1f} / {_torch_gf(b, fl)} "
              f"| {_speedup(b)} | {r['runs']['fwd']}/{r['runs']['fb']} "
              f"| {r['err']:.1e} |")


def print_infer(rows):
    print("Inference forward, no tape: nblstm inside `nblstm.no_grad()`, torch inside `torch.no_grad()`; its outputs "
          "were checked against torch's before timing. Median ms; GFLOP/s from 2*T*B*4H*(I+H).\n")
    print("| T, B, I, H | nblstm ms | torch ms | GFLOP/s nblstm / torch | torch/nblstm | runs |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        if not r["in_shapes"]:
            continue
        m, fl = r["ms"]["infer"], r["flops"][0]
        print(f"| {_shape(r['shape'])} | {m['nblstm']:.3f} | {_f(m.get('torch'))} | {_gf(fl, m['nblstm']):.1f} / "
              f"{_torch_gf(m, fl)} | {_speedup(m)} | {r['runs']['infer']} |")


def print_gemm(rows):
    print("Reference product (\"plain\"): `np.dot(A, W, out)`, A (T*B, I+H) @ W (I+H, 4H), float32, preallocated "
          "out: 2*T*B*(I+H)*4H FLOPs, exactly one layer's forward. Inference is compared with one such product, f+b "
          "with three in a row (3x: the f+b FLOPs). \"layer GEMMs\": the layer's own products alone in numpy "
          "(x @ w_ih^T for all steps, T times h @ w_hh^T; for f+b also T times dG_t @ w_hh, dG @ w_ih, dG^T @ x, "
          "dG^T @ h), same FLOPs, no gate math: what the BLAS gives for those shapes. All timed in the same blocks "
          "as nblstm and torch (A B A B). % = nblstm GFLOP/s / reference GFLOP/s (same FLOPs: reference ms / nblstm "
          "ms); the issue's target is >= 90% of plain.\n")
    print("| T, B, I, H | mode | GFLOP | nblstm ms | nblstm GFLOP/s | torch GFLOP/s | plain GFLOP/s "
          "| nblstm % of plain | torch % of plain | layer GEMMs GFLOP/s | nblstm % of layer GEMMs |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        if not r["large"]:
            continue
        for mode, fl in (("infer", r["flops"][0]), ("fb", r["flops"][1])):
            m = r["ms"][mode]
            pct = lambda k: _ratio(m[k], m["nblstm"]) * 100  # noqa: E731
            tpct = _ratio(m["plain"], m.get("torch"))
            print(f"| {_shape(r['shape'])} | {'f+b' if mode == 'fb' else 'inference'} | {fl / 1e9:.2f} "
                  f"| {m['nblstm']:.2f} | {_gf(fl, m['nblstm']):.1f} | {_torch_gf(m, fl)}"
                  f" | {_gf(fl, m['plain']):.1f} | **{pct('plain'):.0f}%** | {_f(tpct and 100 * tpct, '.0f')}% "
                  f"| {_gf(fl, m['layer GEMMs']):.1f} | {pct('layer GEMMs'):.0f}% |")


def stacked_pass(args):
    warmup, budget = _budget(args)
    rows = []
    for L, D in args.stacked:
        for shape in args.large_shapes:
            try:
                nb, th, err = setup(shape, L, D, np.float32, args.seed)
            except AssertionError as e:
                print(f"layers {L}, bidirectional {D == 2}, shape {shape} skipped: disagree: {e}")
                continue
            fns = {"nblstm": nb.forward_backward, **({"torch": th.forward_backward} if th is not None else {})}
            ms, runs = _time_groups([("fb", fns, 2 / 3)], args, warmup, budget)
            rows.append(dict(layers=L, bidirectional=D == 2, shape=list(shape), err=err, ms=ms["fb"], runs=runs["fb"],
                             flops=flops(*shape, L, D)[1]))
    return rows


def print_stacked(rows):
    print("f+b (zero_grad, forward, backward) of torch.nn.LSTM(num_layers=L, bidirectional=...) and nblstm.LSTM with "
          "the same weights, float32, checked equal first. GFLOP/s from the GEMM FLOPs of all layers and directions "
          "(layers above the first read D*H).\n")
    print("| layers | bidirectional | T, B, I, H | nblstm ms | torch ms | GFLOP/s nblstm / torch | torch/nblstm | runs "
          "| max err |")
    print("|---:|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        m, fl = r["ms"], r["flops"]
        print(f"| {r['layers']} | {'yes' if r['bidirectional'] else 'no'} | {_shape(r['shape'])} | {m['nblstm']:.2f} "
              f"| {_f(m.get('torch'), '.2f')} | {_gf(fl, m['nblstm']):.1f} / {_torch_gf(m, fl)} | {_speedup(m)} "
              f"| {r['runs']} | {r['err']:.1e} |")


def float64_pass(args):
    warmup, budget = _budget(args)
    rows = []
    for shape in args.shapes:
        try:
            nb, th, err = setup(shape, 1, 1, np.float64, args.seed)
        except AssertionError as e:
            print(f"float64 shape {shape} skipped: disagree: {e}")
            continue
        fns = {"nblstm": nb.forward_backward, **({"torch": th.forward_backward} if th is not None else {})}
        ms, runs = _time_groups([("fb", fns, 2 / 3)], args, warmup, budget)
        rows.append(dict(shape=list(shape), err=err, ms=ms["fb"], runs=runs["fb"], flops=flops(*shape)[1]))
    return rows


def print_float64(rows):
    print("f+b as in the first table, both libraries in float64 (nblstm dtype=np.float64, torch .double()); max err "
          "tolerance 1e-8.\n")
    print("| T, B, I, H | nblstm ms | torch ms | GFLOP/s nblstm / torch | torch/nblstm | runs | max err |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        m, fl = r["ms"], r["flops"]
        print(f"| {_shape(r['shape'])} | {m['nblstm']:.3f} | {_f(m.get('torch'))} | {_gf(fl, m['nblstm']):.1f} / "
              f"{_torch_gf(m, fl)} | {_speedup(m)} | {r['runs']} | {r['err']:.1e} |")


def _child(args_, env=None, timeout=900):
    """Runs benchmarks/_child.py in a fresh process -> (its JSON, wall seconds of the whole process)."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, os.path.join(HERE, "_child.py"), *args_], capture_output=True, text=True,
                          env=env, timeout=timeout)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"_child.py {' '.join(args_)} failed:\n{proc.stdout}{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1]), wall


def startup_pass(args):
    out = {}
    if "startup" in args.sections:
        _child(["startup"])                     # fills the cache if anything was stale: not counted
        runs = []
        for _ in range(args.startup_runs):
            d, wall = _child(["startup"])
            runs.append(dict(d, process_s=wall))
        out["warm"] = {k: float(np.median([r[k] for r in runs])) for k in runs[0]}
        out["warm_runs"] = len(runs)
    if "cold" in args.sections:
        with tempfile.TemporaryDirectory(prefix="nblstm-numba-cache-") as cache:
            d, wall = _child(["startup"], env=dict(os.environ, NUMBA_CACHE_DIR=cache))
        out["cold"] = dict(d, process_s=wall)
    return out


def print_startup(out):
    print("A fresh `python benchmarks/_child.py startup` process: `import nblstm` (numpy and numba included), then the "
          "first call, forward + backward of nblstm.LSTM(8, 16) on x (10, 2, 8) float32 (loading or compiling its "
          "kernels). warm: the usual numba cache, filled by an untimed run just before (median of the runs); cold: "
          "NUMBA_CACHE_DIR an empty temporary folder, so the first call compiles (the compile time). process: wall "
          "time of the whole process from outside (interpreter start-up and exit included). Target: warm first call "
          "< 1 s.\n")
    print("| numba cache | import nblstm s | first f+b call s | process s | runs |")
    print("|---|---:|---:|---:|---:|")
    for name in ("warm", "cold"):
        if name in out:
            d = out[name]
            runs = out.get("warm_runs", 1) if name == "warm" else 1
            print(f"| {name} | {d['import_s']:.2f} | **{d['first_call_s']:.2f}** | {d['process_s']:.2f} | {runs} |")


def memory_pass(args):
    if not os.path.exists("/proc/self/clear_refs"):
        print("memory: skipped (needs Linux's /proc/self/clear_refs to reset the RSS high-water mark)")
        return None
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
    shapes = [",".join(map(str, s)) for s in args.shapes]
    d, _ = _child(["memory", *(["--torch"] if torch is not None else []), *shapes], env=env)
    for r in d["rows"]:
        T, B, I, H = r["shape"]
        r["tape_mb"] = 7 * T * B * H * 4 / MB       # G (T, B, 4H) + C, TC, y (T, B, H) each, float32
        r["dG_mb"] = 4 * T * B * H * 4 / MB
    return d["rows"]


def print_memory(rows):
    print("RSS high-water mark (VmHWM, reset through /proc/self/clear_refs) of one zero_grad / forward / backward in a "
          "fresh process, float32, one layer, minus the RSS just before with the model and its inputs built and the "
          "kernels warm; glibc's mmap threshold fixed at 128 KiB (MALLOC_MMAP_THRESHOLD_) so freed arrays leave RSS. "
          "Everything counts: NumPy arrays, numba's own allocations inside the kernels, BLAS buffers. "
          "tape: G T*B*4H + C, TC, y T*B*H each, times 4 bytes = 7*T*B*H*4 B; dG: T*B*4H*4 B, backward's scratch. "
          "held: RSS after the forward (tape and the returned y, h_n, c_n). 2nd f+b: a second step on the same model "
          "(its previous tape and results alive, as in a training loop). NumPy: the tracemalloc peak of one f+b "
          "(NumPy's allocations alone, not numba's or BLAS's). MB = 2^20 bytes.\n")
    print("| T, B, I, H | tape MB | tape + dG MB | nblstm held MB | nblstm peak MB | peak / (tape + dG) "
          "| nblstm 2nd f+b MB | NumPy peak MB | torch held MB | torch peak MB | torch 2nd f+b MB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        td = r["tape_mb"] + r["dG_mb"]
        print(f"| {_shape(r['shape'])} | {r['tape_mb']:.2f} | {td:.2f} | {r['held_mb']:.2f} | {r['peak_mb']:.2f} "
              f"| **{r['peak_mb'] / td:.2f}** | {r['peak2_mb']:.2f} | {r['traced_peak_mb']:.2f} "
              f"| {_f(r.get('torch_held_mb'), '.2f')} | {_f(r.get('torch_peak_mb'), '.2f')} "
              f"| {_f(r.get('torch_peak2_mb'), '.2f')} |")


def plot(rows, path, title):
    """Time vs shape, both libraries, f+b and inference (log scale), and torch / nblstm -> path."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        print("plot skipped: matplotlib is not installed (pip install matplotlib, or the notebooks extra)")
        return None
    rows = [r for r in rows if r["in_shapes"]]
    labels = [",".join(map(str, r["shape"])) for r in rows]
    xs = np.arange(len(rows))
    fig, (ax, axr) = plt.subplots(1, 2, figsize=(12, 4.6))
    styles = {"fb": ("f+b", "-"), "infer": ("inference", "--")}
    colors = {"nblstm": "tab:blue", "torch": "tab:orange"}
    for mode, (name, ls) in styles.items():
        for lib, color in colors.items():
            ys = [r["ms"][mode].get(lib) for r in rows]
            if all(y is not None for y in ys):
                ax.plot(xs, ys, ls, marker="o", color=color, label=f"{lib} {name}")
        ratio = [_ratio(r["ms"][mode].get("torch"), r["ms"][mode]["nblstm"]) for r in rows]
        if all(v is not None for v in ratio):
            axr.plot(xs, ratio, ls, marker="o", color="tab:green", label=name)
    ax.set_yscale("log")
    ax.set_ylabel("median wall time, ms (log)")
    ax.set_title("time per call")
    axr.axhline(1.0, color="gray", lw=0.8)
    axr.set_yscale("log")
    axr.yaxis.set_major_locator(matplotlib.ticker.FixedLocator([0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500]))
    axr.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    axr.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axr.set_ylabel("torch time / nblstm time (log; above 1: nblstm faster)")
    axr.set_title("torch / nblstm")
    for a in (ax, axr):
        a.set_xticks(xs)
        a.set_xticklabels(labels, rotation=20, fontsize=8)
        a.set_xlabel("shape T, B, I, H")
        a.grid(True, which="both", alpha=0.3)
        a.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(args):
    warn_if_imported_early(_already)
    import numba
    if torch is not None:
        torch.set_num_threads(args.threads)
    start, load0 = time.perf_counter(), _load()
    versions = (f"nblstm {nblstm.__version__} (numba {numba.__version__}, numpy {np.__version__})"
                + (f" vs torch {torch.__version__}" if torch is not None else ""))
    print(f"# nblstm CPU benchmark ({'--quick' if args.quick else 'full'})\n")
    print(f"{versions}; {_cpu_model()}, {os.cpu_count()} cores; {args.threads} thread(s) each; "
          f"{time.strftime('%Y-%m-%d %H:%M')}; load average at the start {load0:.2f} "
          f"(timings are only comparable between runs at a similar, low load)")
    print(f"BLAS pools: {_blas_pools()}")
    print(_blas_core())
    print(f"sections: {' '.join(args.sections)}; shapes {' / '.join(map(_shape, args.shapes))}; large shapes "
          f"{' / '.join(map(_shape, args.large_shapes))}; repeats {args.repeats}")
    if torch is None:
        print("torch is not installed: nblstm's numbers only, checked against nblstm.reference (pip install torch "
              "to compare)")
    report, failed, loads = dict(args={k: v for k, v in vars(args).items()}, versions=versions), False, {}

    def section(title, key):
        print(f"\n## {title}\n")
        loads[key] = _load()

    def done(key):
        print(f"\n(load average, 1 min: {loads[key]:.2f} before this section, {_load():.2f} after)")

    rows = []
    if set(args.sections) & {"train", "infer", "gemm", "plot"}:
        print("\nmeasuring one layer, float32 (train / infer / gemm) ...", flush=True)
        loads["one_layer"] = _load()
        rows = one_layer_pass(args)
        report["one_layer"] = rows
        failed |= len([r for r in rows if r["in_shapes"]]) < len(args.shapes)
        titles = {"train": "1. Forward + backward and training-mode forward, float32, one layer",
                  "infer": "2. Inference forward (no tape / no_grad), float32, one layer",
                  "gemm": "3. Large shapes against a plain numpy matrix product of the same FLOPs"}
        for key, fn in (("train", print_train), ("infer", print_infer), ("gemm", print_gemm)):
            if key in args.sections:
                print(f"\n## {titles[key]}\n")
                fn(rows)
        print(f"\n(load average, 1 min: {loads['one_layer']:.2f} before these three tables' measurements, "
              f"{_load():.2f} after)")
    if "stacked" in args.sections:
        section("4. Stacked and bidirectional, large shapes, f+b", "stacked")
        report["stacked"] = r = stacked_pass(args)
        failed |= len(r) < len(args.stacked) * len(args.large_shapes)
        print_stacked(r)
        done("stacked")
    if "float64" in args.sections:
        section("5. float64, forward + backward, one layer", "float64")
        report["float64"] = r = float64_pass(args)
        failed |= len(r) < len(args.shapes)
        print_float64(r)
        done("float64")
    if set(args.sections) & {"startup", "cold"}:
        section("6. Start-up: import and first call in a fresh process", "startup")
        report["startup"] = r = startup_pass(args)
        print_startup(r)
        done("startup")
    if "memory" in args.sections:
        section("7. Memory of forward + backward against the tape's size", "memory")
        report["memory"] = r = memory_pass(args)
        if r is not None:
            print_memory(r)
        done("memory")
    if "plot" in args.sections:
        section("8. Plot", "plot")
        title = (f"nblstm vs torch.nn.LSTM, CPU float32 one layer, {args.threads} threads, {_cpu_model()}, "
                 f"{'--quick' if args.quick else 'full run'}; "
                 f"{versions}; load avg {loads['one_layer']:.1f}; {time.strftime('%Y-%m-%d')}")
        path = plot(rows, args.plot, title) if rows else None
        if path:
            print(f"time vs shape (f+b and inference, both libraries) and torch/nblstm written to {path}")
        report["plot"] = path
    report["loads"], report["seconds"] = loads, time.perf_counter() - start
    print(f"\ntotal {report['seconds']:.0f} s; load average at the start / end: {load0:.2f} / {_load():.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1, default=str)
        print(f"measurements written to {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(ARGS))
