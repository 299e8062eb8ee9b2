"""Command line: ``python -m nblstm <command>`` (also installed as the ``nblstm`` script).

Commands:
  gradcheck   finite-difference check of a chosen configuration; prints per-tensor relative errors
  bench       runs benchmarks/bench_lstm.py (nblstm vs torch.nn.LSTM) from a source checkout
"""
import argparse
import os
import runpy
import sys
import time

import numpy as np


def _gradcheck(args):
    import nblstm

    rng = np.random.default_rng(args.seed)
    common = dict(dtype=np.float64, seed=args.seed, bias=not args.no_bias, forget_bias=args.forget_bias,
                  cell_activation=args.cell_activation)
    if args.model == "lstm":
        model = nblstm.LSTM(args.input_size, args.hidden_size, **common)
        x = rng.standard_normal((args.steps, args.batch, args.input_size))
    else:
        model = nblstm.LSTMCell(args.input_size, args.hidden_size, **common)
        x = rng.standard_normal((args.batch, args.input_size))
    print(f"gradcheck {model!r}, x {x.shape}, central differences eps={args.eps:g}, float64")
    start = time.perf_counter()
    result = nblstm.gradcheck(model, x, eps=args.eps, seed=args.seed)
    print(result)
    worst = max(result.values())
    verdict = "PASS" if worst <= args.tol else "FAIL"
    print(f"{verdict}: max relative error {worst:.3e} (tolerance {args.tol:g}), {time.perf_counter() - start:.1f} s")
    return 0 if verdict == "PASS" else 1


def _bench(args, rest):
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "bench_lstm.py")
    if not os.path.exists(script):
        print(f"bench: {script} not found; the benchmark ships with the source checkout, not the wheel",
              file=sys.stderr)
        return 2
    sys.argv = [script, *rest]
    runpy.run_path(script, run_name="__main__")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="nblstm", description="LSTM networks with Numba kernels.")
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("gradcheck", help="finite-difference gradient check of a configuration")
    g.add_argument("--model", choices=["lstm", "cell"], default="lstm")
    g.add_argument("--input-size", type=int, default=3)
    g.add_argument("--hidden-size", type=int, default=4)
    g.add_argument("--steps", type=int, default=6, help="T, sequence length (lstm)")
    g.add_argument("--batch", type=int, default=2)
    g.add_argument("--cell-activation", choices=["tanh", "relu"], default="tanh")
    g.add_argument("--forget-bias", type=float, default=1.0)
    g.add_argument("--no-bias", action="store_true")
    g.add_argument("--eps", type=float, default=1e-6)
    g.add_argument("--tol", type=float, default=1e-6)
    g.add_argument("--seed", type=int, default=0)
    sub.add_parser("bench", help="nblstm vs torch.nn.LSTM benchmark (arguments pass through)", add_help=False)
    args, rest = parser.parse_known_args(argv)
    if args.command == "bench":
        return _bench(args, rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return _gradcheck(args)
