"""Two versions of nblstm in one process, their calls alternating: this checkout against another one (--source),
median milliseconds of each and the ratio other / this (above 1: this checkout faster), and whether the two give the
same bits. On a noisy machine, where runs minutes apart differ by 10-20 %, alternating calls in one process is what
resolves a change of a few percent.

    git worktree add /tmp/nblstm-2f7abb7 2f7abb7
    python benchmarks/bench_versions.py --source /tmp/nblstm-2f7abb7 --shapes 100,64,256,256 50,64,512,512 \\
        --modes infer fb [--layers 2] [--bidirectional]

The other checkout's package is copied once to a folder of the temporary directory under another name (its numba
cache kept there for the next run), so both import side by side. Modes: infer (forward inside no_grad), fwd (the
training forward), fb (zero_grad, forward, backward with a fixed dy); the bits compared are y (infer, fwd) and the
first layer's weight_hh gradient (fb).
"""
import argparse
import hashlib
import os
import re
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np
from _common import shape_arg

MODES = ("infer", "fwd", "fb")


def _parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--source", required=True, metavar="DIR", help="the other checkout (a folder holding nblstm/)")
    p.add_argument("--shapes", type=shape_arg, nargs="+", default=[(100, 64, 256, 256)], metavar="T,B,I,H")
    p.add_argument("--modes", nargs="+", choices=MODES, default=["infer", "fb"])
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--bidirectional", action="store_true")
    p.add_argument("--seconds", type=float, default=8.0, help="time to spend on each shape and mode (default 8)")
    args = p.parse_args(argv)
    if not os.path.isfile(os.path.join(args.source, "nblstm", "__init__.py")):
        p.error(f"--source: expected a checkout with nblstm/__init__.py, got {args.source!r}")
    if args.layers < 1:
        p.error(f"--layers: expected a positive integer, got {args.layers}")
    return args


def import_other(source):
    """The nblstm package of checkout `source`, copied as package `nblstm_other_<hash>` and imported."""
    src = os.path.join(os.path.abspath(source), "nblstm")
    digest = hashlib.sha256()
    for root, _, files in sorted(os.walk(src)):
        for name in sorted(files):
            if name.endswith(".py"):
                with open(os.path.join(root, name), "rb") as f:
                    digest.update(name.encode() + f.read())
    alias = "nblstm_other_" + digest.hexdigest()[:12]
    parent = os.path.join(tempfile.gettempdir(), "nblstm-bench-versions")
    dest = os.path.join(parent, alias)
    if not os.path.isdir(dest):
        shutil.copytree(src, dest + ".part", ignore=shutil.ignore_patterns("__pycache__"))
        for root, _, files in os.walk(dest + ".part"):
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(root, name)
                    with open(path) as f:
                        text = f.read()
                    text = re.sub(r"\bnblstm\.(kernels|tasks|_|[a-z])", lambda m: alias + "." + m.group(1), text)
                    text = re.sub(r"^(\s*)(from|import) nblstm\b", lambda m: m.group(1) + m.group(2) + " " + alias,
                                  text, flags=re.M)
                    with open(path, "w") as f:
                        f.write(text)
        os.rename(dest + ".part", dest)
    sys.path.insert(0, parent)
    return __import__(alias)


def _call(lib, model, mode, x, dy):
    """One call of `mode` -> the array whose bits are compared."""
    if mode == "infer":
        with lib.no_grad():
            return model(x)[0]
    if mode == "fwd":
        return model(x)[0]
    model.zero_grad()
    model(x)
    model.backward(dy)
    return model.grads["weight_hh_l0"]


def main(args):
    import nblstm
    other = import_other(args.source)
    D = 2 if args.bidirectional else 1
    print(f"this: {os.path.dirname(nblstm.__file__)}; other: {os.path.abspath(args.source)}; layers {args.layers}, "
          f"bidirectional {args.bidirectional}; float32; calls alternating in one process, median ms\n")
    print("| T, B, I, H | mode | other ms | this ms | other / this | same bits | calls each |")
    print("|---|---|---:|---:|---:|---|---:|")
    for T, B, I, H in args.shapes:
        rng = np.random.default_rng(0)
        x = rng.standard_normal((T, B, I)).astype(np.float32)
        dy = rng.standard_normal((T, B, D * H)).astype(np.float32)
        kw = dict(seed=1, num_layers=args.layers, bidirectional=args.bidirectional)
        models = {"other": (other, other.LSTM(I, H, **kw)), "this": (nblstm, nblstm.LSTM(I, H, **kw))}
        for mode in args.modes:
            outs = {k: np.array(_call(lib, m, mode, x, dy)) for k, (lib, m) in models.items()}
            same = np.array_equal(outs["other"], outs["this"])
            t0 = time.perf_counter()
            _call(*models["this"], mode, x, dy)
            n = max(4, min(400, int(args.seconds / 2 / (time.perf_counter() - t0))))
            times = {k: [] for k in models}
            for rep in range(n):
                for k in (("other", "this") if rep % 2 == 0 else ("this", "other")):
                    t0 = time.perf_counter()
                    _call(*models[k], mode, x, dy)
                    times[k].append(time.perf_counter() - t0)
            a, b = statistics.median(times["other"]), statistics.median(times["this"])
            print(f"| {T}, {B}, {I}, {H} | {mode} | {1e3 * a:.3f} | {1e3 * b:.3f} | **{a / b:.3f}** | "
                  f"{'yes' if same else 'no'} | {n} |", flush=True)


if __name__ == "__main__":
    main(_parse(sys.argv[1:]))
