"""Measurements bench_all.py runs in a fresh process; prints one JSON line.

    python benchmarks/_child.py startup                   import nblstm, then a first forward + backward
    python benchmarks/_child.py memory [--torch] T,B,I,H ...  RSS high-water mark of one forward + backward

startup: seconds of `import nblstm` (numpy and numba included) and of the first call, forward + backward of an
LSTM(8, 16) on x (10, 2, 8) float32, nothing else loaded first. Which numba cache it meets (warm: the usual one;
cold: NUMBA_CACHE_DIR pointed at an empty folder) is the parent's choice of environment.

memory (Linux): per shape, float32, one layer, after a warm-up on another LSTM of the same shape (compiles, starts
BLAS's buffers) that is then freed, RSS is read, the high-water mark reset (`5` into /proc/self/clear_refs) and one
zero_grad / forward / backward run; peak = VmHWM - VmRSS before. Run it with MALLOC_MMAP_THRESHOLD_ fixed (the
parent sets 131072): large arrays then come from mmap and go back to the system when freed, so RSS follows NumPy's
allocations instead of glibc's retained heap.
"""
import gc
import json
import os
import sys
import time


def startup():
    t0 = time.perf_counter()
    import numpy as np
    import nblstm
    t1 = time.perf_counter()
    lstm = nblstm.LSTM(8, 16, seed=0)
    x = np.random.default_rng(0).standard_normal((10, 2, 8)).astype(np.float32)
    y, _ = lstm(x)
    lstm.backward(np.ones_like(y))
    t2 = time.perf_counter()
    return dict(import_s=t1 - t0, first_call_s=t2 - t1)


def _status(field):
    """kB of `field` (VmRSS, VmHWM) from /proc/self/status."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_hwm():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _peaks(make, fb):
    """-> (MB held after the forward, MB peak of one f+b, MB peak of a second f+b with the first one's tape alive),
    each over the RSS with the model and its inputs built. `make()` -> model state; `fb(state, part)` runs part
    'fwd' / 'bwd' of zero_grad, forward, backward."""
    fb(make(), None)                                    # warm-up on a model that is then freed
    gc.collect()
    state = make()
    gc.collect()
    base = _status("VmRSS")
    _reset_hwm()
    fb(state, "fwd")
    held = _status("VmRSS") - base
    fb(state, "bwd")
    peak = _status("VmHWM") - base
    _reset_hwm()
    fb(state, None)                                     # as a training loop's next step
    peak2 = _status("VmHWM") - base
    return held / 1024, peak / 1024, peak2 / 1024


def memory(shapes, with_torch):
    import tracemalloc

    import numpy as np
    import nblstm
    torch = None
    if with_torch:
        import torch
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    rows = []
    for T, B, I, H in shapes:
        rng = np.random.default_rng(0)
        x = rng.standard_normal((T, B, I)).astype(np.float32)
        dy = rng.standard_normal((T, B, H)).astype(np.float32)

        def make_nb():
            return {"m": nblstm.LSTM(I, H, seed=0)}

        def fb_nb(s, part):
            if part in (None, "fwd"):
                s["m"].zero_grad()
                s["y"] = s["m"](x)
            if part in (None, "bwd"):
                s["dx"] = s["m"].backward(dy)

        row = dict(shape=[T, B, I, H])
        row["held_mb"], row["peak_mb"], row["peak2_mb"] = _peaks(make_nb, fb_nb)
        s = make_nb()                                   # NumPy's allocations alone (tracemalloc)
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        fb_nb(s, None)
        row["traced_peak_mb"] = (tracemalloc.get_traced_memory()[1] - before) / 2 ** 20
        tracemalloc.stop()
        del s
        if torch is not None:
            tx, tdy = torch.from_numpy(x).requires_grad_(), torch.from_numpy(dy)

            def make_th():
                return {"m": torch.nn.LSTM(I, H)}

            def fb_th(s, part):
                if part in (None, "fwd"):
                    s["m"].zero_grad(set_to_none=True)
                    tx.grad = None
                    s["y"] = s["m"](tx)[0]
                if part in (None, "bwd"):
                    s["y"].backward(tdy)

            row["torch_held_mb"], row["torch_peak_mb"], row["torch_peak2_mb"] = _peaks(make_th, fb_th)
        gc.collect()
        rows.append(row)
    return dict(rows=rows)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a source checkout
    what, rest = sys.argv[1], sys.argv[2:]
    if what == "startup":
        out = startup()
    else:
        with_torch = "--torch" in rest
        out = memory([tuple(int(v) for v in a.split(",")) for a in rest if a != "--torch"], with_torch)
    print(json.dumps(out))
