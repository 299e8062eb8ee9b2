"""nblstm device="cuda" vs torch.nn.LSTM on cuDNN: one layer, float32, same weights, same GPU, one process.

    python benchmarks/bench_cuda.py [--repeats 20] [--quick] [--shapes 100,1,32,32 ...]

Needs an NVIDIA GPU, numba-cuda (pip install "nblstm[cuda]" "numba-cuda[cu12]" or cu13) and a CUDA build of torch.
Not for the simulator (NUMBA_ENABLE_CUDASIM=1 is refused). For each shape (T, B, I, H) it first checks, in float32,
that both give the same outputs and gradients, then times after a warm-up the median over repeats of
  fwd   a training-mode forward (nblstm keeps its tape; torch records the autograd graph),
  f+b   forward + backward with a given dy (nblstm: zero_grad, forward, backward; torch: the same),
with inputs, weights and outputs on the GPU on both sides (nblstm gets device arrays, so nothing comes back to
the host) and a device synchronize before each clock read. FLOPs counted are the GEMMs only: forward
2*T*B*4H*(I+H), forward + backward three times that. Default shapes: the CPU benchmark's (bench_lstm.py) and
larger ones, batch 1 to 256, hidden 128 to 1024. Where B * H <= nblstm.kernels.cuda.PERSISTENT_MAX_UNITS (nblstm runs
the persistent one-launch time loop), "loop f+b" is nblstm's f+b again with the launch-per-step loop, to show what
the persistent kernels gain (or lose). cuDNN's float32 RNN multiplies in TF32 by default on Ampere and later GPUs
(about 3e-4 relative error, beyond float32's tolerance): torch runs with torch.backends.cudnn.allow_tf32 = False for
the check and the torch columns, and "torch tf32 f+b" is its f+b with TF32 on. "torch/nb f+b" > 1: nblstm is faster.
The last column times the forward's input product (T*B, I) @ w_ih^T alone: nblstm's gemm kernel and torch's matmul
(cuBLAS, TF32 off), in TFLOP/s.
"""
import argparse
import os
import sys

from _common import DEFAULT_SHAPES as CPU_SHAPES, median_synced, shape_arg  # noqa: E402

DEFAULT_SHAPES = CPU_SHAPES + [
    # larger: batch 1..256, hidden 128..1024
    (100, 1, 128, 128), (100, 1, 1024, 1024), (100, 16, 256, 256), (100, 64, 512, 512), (100, 128, 512, 512),
    (100, 256, 256, 256), (100, 256, 1024, 1024), (50, 128, 1024, 1024),
]
NAMES = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")


def _parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=None, help="timed runs per measurement (default 20, --quick 5)")
    p.add_argument("--quick", action="store_true", help="fewer repeats and warm-ups")
    p.add_argument("--shapes", type=shape_arg, nargs="+", default=DEFAULT_SHAPES, metavar="T,B,I,H")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.repeats is None:
        args.repeats = 5 if args.quick else 20
    return args


def main(argv=None):
    args = _parse(sys.argv[1:] if argv is None else argv)
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
        sys.exit("bench_cuda.py: unset NUMBA_ENABLE_CUDASIM; the simulator is for tests, not timings")
    # Small recurrent GEMMs (B = 1) launch few blocks by design; numba's occupancy warning would flood the output.
    os.environ.setdefault("NUMBA_CUDA_LOW_OCCUPANCY_WARNINGS", "0")

    import numpy as np

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a source checkout
    import nblstm
    import nblstm.testing
    from nblstm import backends

    try:
        import torch
    except ImportError:
        sys.exit("bench_cuda.py: needs torch (a CUDA build) to compare against")
    if not torch.cuda.is_available():
        sys.exit("bench_cuda.py: torch sees no CUDA GPU (a CPU build of torch, or no GPU)")
    K = backends.kernels("cuda")            # CudaUnavailableError with the install hint when numba-cuda has no GPU
    from numba import cuda

    dev = torch.device("cuda")
    # cuDNN's float32 RNN uses TF32 tensor cores by default on Ampere and later (10-bit mantissa products): off for
    # the check and the main columns, so both sides compute in float32; the TF32 f+b gets a column of its own.
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    print(f"# GPU {torch.cuda.get_device_name(0)}; torch {torch.__version__} cuDNN {torch.backends.cudnn.version()}; "
          f"nblstm GEMM tile {K.GEMM_TILE}x{K.GEMM_TILE}; float32; median of {args.repeats}")
    print(f"{'T':>5} {'B':>4} {'I':>5} {'H':>5}  {'nblstm fwd':>11} {'torch fwd':>10} {'nblstm f+b':>11} "
          f"{'torch f+b':>10}  {'nb GFLOP/s f+b':>14} {'torch/nb f+b':>12} {'loop f+b':>10} {'torch tf32 f+b':>14} "
          f"{'GEMM TFLOP/s nb/torch':>21}")

    def timed(fn, sync):
        return median_synced(fn, sync, args.repeats, warmup=2 if args.quick else 5)

    for T, B, I, H in args.shapes:
        rng = np.random.default_rng(args.seed)
        torch.manual_seed(args.seed)
        ref = torch.nn.LSTM(I, H).to(dev)
        ours = nblstm.LSTM(I, H, device="cuda")
        ours.load_state_dict({k: v.detach().cpu().numpy() for k, v in ref.state_dict().items()})
        x, h0, c0, dy = (rng.standard_normal(s).astype(np.float32) for s in
                         [(T, B, I), (1, B, H), (1, B, H), (T, B, H)])
        dx_, dh0_, dc0_, ddy = (cuda.to_device(a) for a in (x, h0, c0, dy))
        tx, th0, tc0, tdy = (torch.tensor(a, device=dev, requires_grad=True) for a in (x, h0, c0, dy))

        # Same results first (float32 tolerances of nblstm.testing), or the shape is skipped.
        y, _ = ours(x, (h0, c0))
        dxo, _ = ours.backward(dy)
        ty, _ = ref(tx, (th0, tc0))
        ty.backward(tdy)
        try:
            nblstm.testing.assert_close(y, ty.detach().cpu().numpy(), np.float32, "y")
            nblstm.testing.assert_close(dxo, tx.grad.cpu().numpy(), np.float32, "dx")
            for n in NAMES:
                nblstm.testing.assert_close(backends.to_host(ours.grads[n]),
                                            dict(ref.named_parameters())[n].grad.cpu().numpy(), np.float32, n)
        except AssertionError as e:
            print(f"{T:>5} {B:>4} {I:>5} {H:>5}  skipped: results differ ({e})")
            continue

        def nb_fwd():
            ours(dx_, (dh0_, dc0_))

        def nb_fb():
            ours.zero_grad()
            ours(dx_, (dh0_, dc0_))
            ours.backward(ddy)

        def t_fwd():
            ref(tx, (th0, tc0))

        def t_fb():
            ref.zero_grad()
            out, _ = ref(tx, (th0, tc0))
            out.backward(tdy)

        nf, nfb = timed(nb_fwd, cuda.synchronize), timed(nb_fb, cuda.synchronize)
        loop = "-"
        if B * H <= K.PERSISTENT_MAX_UNITS:     # the same with the launch-per-step loop
            saved, K.PERSISTENT_MAX_UNITS = K.PERSISTENT_MAX_UNITS, 0
            try:
                loop = f"{timed(nb_fb, cuda.synchronize) * 1e3:.2f}ms"
            finally:
                K.PERSISTENT_MAX_UNITS = saved
        tf, tfb = timed(t_fwd, torch.cuda.synchronize), timed(t_fb, torch.cuda.synchronize)
        torch.backends.cudnn.allow_tf32 = True
        try:
            tfb32 = timed(t_fb, torch.cuda.synchronize)
        finally:
            torch.backends.cudnn.allow_tf32 = False
        # the input product of all steps, (T*B, I) @ w_ih^T, alone: nblstm's gemm and torch's (cuBLAS) matmul
        G2, w_ih = cuda.device_array((T * B, 4 * H), np.float32), ours.parameters()["weight_ih_l0"]
        tw = dict(ref.named_parameters())["weight_ih_l0"].detach()
        tg = timed(lambda: K.gemm(G2, dx_.reshape(T * B, I), w_ih, 0, 1, 0), cuda.synchronize)
        tt = timed(lambda: tx.detach().reshape(T * B, I) @ tw.T, torch.cuda.synchronize)
        tflop = 2 * T * B * 4 * H * I / 1e12
        gflop = 3 * 2 * T * B * 4 * H * (I + H) / 1e9
        print(f"{T:>5} {B:>4} {I:>5} {H:>5}  {nf * 1e3:>9.2f}ms {tf * 1e3:>8.2f}ms {nfb * 1e3:>9.2f}ms "
              f"{tfb * 1e3:>8.2f}ms  {gflop / nfb:>14.1f} {tfb / nfb:>11.2f}x {loop:>10} {tfb32 * 1e3:>12.2f}ms "
              f"{tflop / tg:>12.1f} / {tflop / tt:>6.1f}",
              flush=True)


if __name__ == "__main__":
    main()
