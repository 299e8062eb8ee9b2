"""Padded batches of variable-length sequences vs full ones: nblstm's `lengths=` against torch's packed sequences.

    python benchmarks/bench_padded.py [--threads 2] [--repeats 200] [--quick] [--shapes 100,32,128,128 ...]

For each shape (T, B, I, H), float32, one layer, the batch's lengths are drawn uniformly from 1..T (the first is
T) with --seed. After checking that nblstm with lengths gives torch's packed results (outputs, h_n, c_n and every
gradient), it times forward + backward (median ms) of
  nblstm full     lstm(x)                      every sequence T steps
  nblstm padded   lstm(x, lengths=lengths)     state frozen and y zero past each end
  torch full      torch.nn.LSTM on the padded tensor (no lengths: not the same result, the cost of the shape)
  torch packed    pack_padded_sequence(enforce_sorted=False) -> LSTM -> pad_packed_sequence
and prints padded / full for both libraries (what variable lengths cost) and torch packed / nblstm padded.
"""
import sys

from _common import TIMED_RUNS, parse, parser, set_threads, warn_if_imported_early  # noqa: E402

SHAPES = [(100, 16, 64, 64), (100, 32, 128, 128), (100, 64, 256, 256)]


def _parse(argv):
    return parse(parser(__doc__, SHAPES, repeats=TIMED_RUNS), argv)


ARGS = _parse(sys.argv[1:]) if __name__ == "__main__" else None
_already = set_threads(ARGS.threads) if ARGS is not None else []

import os  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a source checkout
import nblstm  # noqa: E402
from bench_lstm import check, timed  # noqa: E402


def bench_shape(torch, shape, args):
    T, B, I, H = shape
    rng = np.random.default_rng(args.seed)
    x = rng.standard_normal((T, B, I), dtype=np.float32)
    dy = rng.standard_normal((T, B, H), dtype=np.float32)
    lengths = rng.integers(1, T + 1, B)
    lengths[0] = T
    torch.manual_seed(args.seed)
    ref = torch.nn.LSTM(I, H)
    ours = nblstm.LSTM(I, H)
    ours.load_state_dict({k: v.detach().numpy() for k, v in ref.state_dict().items()})
    tx, tdy, tlen = torch.from_numpy(x).requires_grad_(), torch.from_numpy(dy), torch.from_numpy(lengths)
    mask = (np.arange(T)[:, None] < lengths[None, :])[:, :, None]
    dy_valid = dy * mask                        # torch's padded output has no gradient path past the ends

    def nb(lens):
        def run():
            ours.zero_grad()
            y, (h, c) = ours(x, lengths=lens)
            dx, _ = ours.backward(dy_valid if lens is not None else dy)
            return y, h, c, dx
        return run

    def torch_packed():
        ref.zero_grad(set_to_none=True)
        tx.grad = None
        pack = torch.nn.utils.rnn.pack_padded_sequence(tx, tlen, enforce_sorted=False)
        out, (h, c) = ref(pack)
        y, _ = torch.nn.utils.rnn.pad_packed_sequence(out, total_length=T)
        y.backward(tdy)
        return y, h, c

    def torch_full():
        ref.zero_grad(set_to_none=True)
        tx.grad = None
        y, _ = ref(tx)
        y.backward(tdy)

    y, h, c, dx = nb(lengths)()
    got = dict(y=y, h_n=h, c_n=c, x=dx, **{k: g.copy() for k, g in ours.grads.items()})
    ty, th, tc = torch_packed()
    want = dict(y=ty, h_n=th, c_n=tc, x=tx.grad, **{k: p.grad for k, p in ref.named_parameters()})
    err = check(got, {k: v.detach().numpy().astype(np.float64) for k, v in want.items()})
    warmup, budget = (1, 3.0) if args.quick else (3, 12.0)
    ms, n = timed([nb(None), nb(lengths), torch_full, torch_packed], args.repeats, warmup, budget)
    return dict(shape=shape, err=err, ms=ms, n=n, mean_len=float(lengths.mean()))


def main(args):
    try:
        import torch
    except ImportError:
        print("bench_padded needs torch (pip install torch==2.13.0) to compare with packed sequences")
        return 1
    warn_if_imported_early(_already)
    torch.set_num_threads(args.threads)
    print(f"nblstm {nblstm.__version__} vs torch {torch.__version__}, float32, {args.threads} thread(s), one layer, "
          f"forward + backward, median ms; lengths uniform in 1..T (seed {args.seed})")
    load = os.getloadavg()
    rows = [bench_shape(torch, s, args) for s in args.shapes]
    print("\n| T, B, I, H | mean length | nblstm full | nblstm padded | torch full | torch packed "
          "| padded/full nblstm | packed/full torch | torch packed / nblstm padded | max err |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        nf, npd, tf, tp = r["ms"]
        print(f"| {', '.join(map(str, r['shape']))} | {r['mean_len']:.1f} | {nf:.2f} | {npd:.2f} | {tf:.2f} | "
              f"{tp:.2f} | **{npd / nf:.2f}** | {tp / tf:.2f} | **{tp / npd:.2f}** | {r['err']:.1e} |")
    print(f"\nruns per measurement: {', '.join(str(r['n']) for r in rows)}; load average before / after: "
          f"{load[0]:.2f} / {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(ARGS))
