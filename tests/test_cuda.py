"""The cuda backend beyond the shared properties: twin parity with cpu, cpu-vs-cuda agreement in float64, the
launchers' limit checks (the simulator would run what a GPU refuses), the device-resident time loop, device arrays
in and out, and the message a newcomer without a GPU gets.

Property tests shared with cpu (kernels, objects, gradients) are parametrized over both devices in the other files.
"""
import os
import subprocess
import sys
import types

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import nblstm
from _devices import CUDA_REASON, assert_twins
from nblstm import backends, testing
from nblstm.kernels import cpu
from test_kernels import _problem      # at import: importing a module of @given tests inside a test trips hypothesis

needs_cuda = pytest.mark.skipif(bool(CUDA_REASON), reason=CUDA_REASON)
TWINS = ("cell_forward", "cell_backward", "copy_running_rows", "peephole_grads", "lstm_forward", "lstm_backward",
         "copy_steps", "rnn_cell_forward", "rnn_cell_backward", "rnn_forward", "rnn_backward")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def K():
    return backends.kernels("cuda")


@needs_cuda
def test_twins_have_same_names_docstrings_arguments_and_file_order(K):
    assert_twins(cpu, K, TWINS)
    # The pointwise twins and the GEMM helpers are @cuda.jit kernels behind launchers; every one is in KERNELS.
    assert {k.__name__ for k in K.KERNELS} >= {"cell_forward", "cell_backward", "gemm"}


def _run(device, cls, config, x, dy, state, state_grad):
    model = cls(**config, dtype=np.float64, seed=3, device=device)
    out = model(x, state)
    y, st_out = (out[0], out[1]) if cls is nblstm.LSTM else (None, out)
    grads_in = (dy, state_grad) if cls is nblstm.LSTM else state_grad
    back = model.backward(*grads_in)
    res = {"y": y, "h_n": st_out[0], "c_n": st_out[1], "dx": back[0], "dh0": back[1][0], "dc0": back[1][1]}
    res.update({f"grad {k}": backends.to_host(g) for k, g in model.grads.items()})
    return {k: v for k, v in res.items() if v is not None}


@needs_cuda
@pytest.mark.parametrize("cls", [nblstm.LSTM, nblstm.LSTMCell])
@pytest.mark.parametrize("T,B,I,H,bias,activation,batch_first", [
    (1, 1, 1, 1, True, "tanh", False),
    (3, 2, 4, 3, False, "relu", True),
    (4, 3, 5, 5, True, "tanh", False),
    (2, 3, 3, 6, True, "relu", False),
])
def test_cpu_and_cuda_agree_in_float64(cls, T, B, I, H, bias, activation, batch_first, record_property):
    """Forward, backward and every gradient: cpu and cuda within 1e-10 (absolute, values are O(1))."""
    config = dict(input_size=I, hidden_size=H, bias=bias, cell_activation=activation, forget_bias=1.0)
    if cls is nblstm.LSTM:
        config["batch_first"] = batch_first
        xs = (B, T, I) if batch_first else (T, B, I)
        x, dy = testing.random_array(xs, np.float64, 1, 2.0), testing.random_array(xs[:2] + (H,), np.float64, 2)
        state = tuple(testing.random_array((1, B, H), np.float64, k) for k in (3, 4))
        state_grad = tuple(testing.random_array((1, B, H), np.float64, k) for k in (5, 6))
    else:
        x, dy = testing.random_array((B, I), np.float64, 1, 2.0), None
        state = tuple(testing.random_array((B, H), np.float64, k) for k in (3, 4))
        state_grad = tuple(testing.random_array((B, H), np.float64, k) for k in (5, 6))
    a = _run("cpu", cls, config, x, dy, state, state_grad)
    b = _run("cuda", cls, config, x, dy, state, state_grad)
    assert a.keys() == b.keys()
    diffs = {k: float(np.abs(np.asarray(a[k]) - np.asarray(b[k])).max()) for k in a}
    record_property("max_abs_diff", max(diffs.values()))
    assert all(type(v) is np.ndarray and v.dtype == np.float64 for v in b.values())
    assert max(diffs.values()) <= 1e-10, diffs


@needs_cuda
@given(st.integers(1, 9), st.integers(1, 9), st.integers(1, 9), st.booleans(), st.booleans(), st.booleans(),
       st.sampled_from([np.float32, np.float64]), testing.seeds())
def test_gemm_matches_numpy(M, N, Kd, trans_a, trans_b, accumulate, dtype, seed):
    """The tiled GEMM, every transpose and accumulate, with sizes across tile edges (on the simulator C tiles of 8 x 8
    and k tiles of 4)."""
    K = backends.kernels("cuda")
    A = testing.random_array((Kd, M) if trans_a else (M, Kd), dtype, seed)
    B = testing.random_array((N, Kd) if trans_b else (Kd, N), dtype, seed + 1)
    C0 = testing.random_array((M, N), dtype, seed + 2)
    want = (A.T if trans_a else A).astype(np.float64) @ (B.T if trans_b else B).astype(np.float64)
    if accumulate:
        want += C0
    C = K.to_device(C0)
    K.gemm(C, K.to_device(A), K.to_device(B), int(trans_a), int(trans_b), int(accumulate))
    testing.assert_close(K.to_host(C), want, dtype, "C")


@needs_cuda
@given(st.integers(1, 9), st.integers(1, 9), st.sampled_from([np.float32, np.float64]), testing.seeds())
def test_transpose_matches_numpy(M, N, dtype, seed):
    """The persistent forward's weight transposes (it has no CPU twin: the CPU takes np.ascontiguousarray(w.T))."""
    K = backends.kernels("cuda")
    a = testing.random_array((M, N), dtype, seed)
    out = K.empty((N, M), dtype)
    K.transpose(out, K.to_device(a))
    np.testing.assert_array_equal(K.to_host(out), a.T)


def _run_layer(K, p, act, keep):
    """lstm_forward then (with keep) lstm_backward of test_kernels' problem p on cuda -> every output, on the host,
    and the names of the kernels launched."""
    T, B, _ = p["x"].shape
    P, H = p["w_hh"].shape[1], p["c0"].shape[1]
    dt = p["x"].dtype
    d = lambda a: K.to_device(a)  # noqa: E731
    e = lambda *s: K.empty(s, dt)  # noqa: E731
    n = T if keep else 1
    proj = P < H
    y, h_n, c_n, G = e(T, B, P), e(B, P), e(B, H), e(T, B, 4 * H)
    C, TC = e(T if keep else min(T, 2), B, H), e(n, B, H)
    M = e(n, B, H) if proj else y
    x, h0, c0, w_ih, w_hh, wp, w_hr, lengths = (d(p[k]) for k in ("x", "h0", "c0", "w_ih", "w_hh", "wp", "w_hr",
                                                                  "lengths"))
    launched = []
    real = K.Launcher.__call__

    def spy(self, *args):
        launched.append(self.__name__)
        return real(self, *args)

    with pytest.MonkeyPatch.context() as m:
        m.setattr(K.Launcher, "__call__", spy)
        K.lstm_forward(y, h_n, c_n, G, C, TC, M, e(B, 4 * H), x, h0, c0, w_ih, w_hh, d(p["b_ih"] + p["b_hh"]), wp,
                       w_hr, lengths, act)
        out = {"y": y, "h_n": h_n, "c_n": c_n}
        if keep:
            r = lambda s, k: d(testing.random_array(s, dt, 50 + k))  # noqa: E731
            z = lambda *s: K.zeros(s, dt)  # noqa: E731
            grads = dict(dx=e(T, B, p["x"].shape[2]), dh0=e(B, P), dc0=e(B, H), dw_ih=z(4 * H, p["x"].shape[2]),
                         dw_hh=z(4 * H, P), db=z(4 * H), dwp=z(3, H), dw_hr=z(*p["w_hr"].shape))
            scratch = [e(T, B, 4 * H), e(T if proj else 0, B, P), e(B if proj else 0, H), e(B, P)]
            K.lstm_backward(*grads.values(), *scratch, r((T, B, P), 0), r((B, P), 1), r((B, H), 2), x, h0, c0, w_ih,
                            w_hh, wp, w_hr, G, C, TC, M, y, lengths, act)
            out.update(grads)
    return {k: K.to_host(v) for k, v in out.items()}, launched


@needs_cuda
@given(testing.lstm_shapes(3, 9, 3, 9), testing.float_dtypes(), st.sampled_from([0, 1]), testing.variants(),
       st.booleans(), st.sampled_from([3, 256]), testing.seeds())
def test_persistent_kernels_equal_the_launch_per_step_loop(shape, dtype, act, variant, keep, threads, seed):
    """lstm_steps / lstm_backward_steps (one launch for the whole time loop, used for small B * H) give the numbers
    of the loop of per-step launches, for every option (peepholes, a projection, lengths, no tape): exactly with
    SPLIT_MAX = 1 (every sum in the gemm's order), within float tolerance when several threads share a product's
    sums (the default; with blocks of 256 threads and K >= 16 they do); each path runs what it should (the
    persistent one no per-step kernel). With a block of 3 threads every thread loops over several units in each
    phase of a step; batches up to 9 span three groups of the products' ROWS = 4 rows, the last one partial."""
    K = backends.kernels("cuda")
    p = _problem(*shape, dtype, seed % 2**31, **variant)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(K, "PERSISTENT_MAX_UNITS", 0)
        looped, loop_kernels = _run_layer(K, p, act, keep)
    runs = {}
    for split in (1, K.SPLIT_MAX):
        with pytest.MonkeyPatch.context() as m:
            m.setattr(K, "THREADS", threads)
            m.setattr(K, "SPLIT_MAX", split)
            block = min(threads, 64)
            assert K._grid(48) == (((48 + block - 1) // block,), (block,))
            runs[split] = _run_layer(K, p, act, keep)
    per_step = {"cell_forward", "cell_backward", "copy_running_rows"}
    assert "cell_forward" in loop_kernels and "lstm_steps" not in loop_kernels
    for persistent, persistent_kernels in runs.values():
        assert "lstm_steps" in persistent_kernels and not per_step & set(persistent_kernels)
        assert ("lstm_backward_steps" in persistent_kernels) == keep
    for name, want in looped.items():
        np.testing.assert_array_equal(runs[1][0][name], want, err_msg=name)
        testing.assert_close(runs[K.SPLIT_MAX][0][name], want, dtype, name)


@needs_cuda
def test_products_split_their_sums_over_threads(K):
    """_lanes: S threads per unit of a product, a power of two <= split, >= 8 terms each, within the grid's threads
    and dividing the block; _steps_grid: one block while every phase fits in one, its threads for the split sums."""
    assert K._lanes(128, 256, 32, 256, 32) == 8          # (100, 1, 32, 32) backward: 32 units of K = 4H = 128
    assert K._lanes(128, 256, 32, 256, 1) == 1
    assert K._lanes(32, 256, 128, 256, 32) == 2          # its forward: 128 units of K = 32
    assert K._lanes(1024, 67584, 4096, 256, 32) == 16    # (100, 64, 256, 256) backward on 264 resident blocks
    assert K._lanes(1024, 256, 32, 3, 32) == 1           # a block of 3 threads: no power of two > 1 divides it
    assert K._lanes(15, 256, 1, 256, 32) == 1            # fewer than 16 terms: one thread
    assert K._steps_grid(32, 32, (128, 32), (32, 32)) == ((1,), (256,))
    assert K._steps_grid(1, 32, (128, 32), (32, 32)) == ((1,), (128,))
    assert K._steps_grid(32, 1024, (1024, 64), (256, 64)) == ((32,), (256,))   # 1024 units x 8 threads
    with pytest.MonkeyPatch.context() as m:
        m.setattr(K, "THREADS", 512)
        with pytest.raises(ValueError, match="THREADS 512 exceeds"):
            K._steps_grid(32, 1, (1, 1))


@needs_cuda
def test_no_persistent_kernels_without_cooperative_launch(K, monkeypatch):
    """A GPU older than compute capability 6.0 cannot launch a cooperative grid: the loop of launches runs there, and
    so it does above PERSISTENT_MAX_UNITS."""
    assert K._persistent(2, 3)
    assert not K._persistent(K.PERSISTENT_MAX_UNITS + 1, 1)
    monkeypatch.setattr(K.config, "ENABLE_CUDASIM", False)
    monkeypatch.setattr(K.cuda, "get_current_device", lambda: types.SimpleNamespace(compute_capability=(5, 2)))
    assert not K._persistent(2, 3)
    monkeypatch.setattr(K.cuda, "get_current_device", lambda: types.SimpleNamespace(compute_capability=(9, 0)))
    assert K._persistent(2, 3)


@needs_cuda
def test_launch_limits(K):
    K.check_launch("k", (1,), (1,))
    K.check_launch("k", (2**31 - 1, 65535, 65535), (1024,))
    K.check_launch("k", (1,), (16, 16), shared_bytes=48 * 1024)
    for grid, block, shared, pattern in [
        ((1,), (1025,), 0, r"k: block size 1025 along axis x exceeds CUDA's limit 1024"),
        ((1,), (32, 33), 0, r"k: 1056 threads per block exceeds CUDA's limit 1024"),
        ((1,), (1, 1, 65), 0, r"k: block size 65 along axis z exceeds CUDA's limit 64"),
        ((2**31,), (1,), 0, r"k: grid size 2147483648 along axis x exceeds CUDA's limit 2147483647"),
        ((1, 65536), (1,), 0, r"k: grid size 65536 along axis y exceeds CUDA's limit 65535"),
        ((0,), (1,), 0, r"k: launch needs 1-3 positive grid and block sizes"),
        ((1,), (16, 16), 48 * 1024 + 1, r"k: 49153 bytes of shared memory per block exceed 49152"),
    ]:
        with pytest.raises(ValueError, match=pattern):
            K.check_launch("k", grid, block, shared)


@needs_cuda
def test_launchers_check_limits_before_launching(K):
    """Arrays too large for a grid are refused by name before the (permissive) simulator would run them."""
    fake = lambda *shape: types.SimpleNamespace(shape=shape, dtype=np.dtype(np.float32))  # noqa: E731
    with pytest.raises(ValueError, match=r"gemm: grid size \d+ along axis y exceeds CUDA's limit 65535"):
        K.gemm(fake(1, 65536 * K.GEMM_TILE), fake(1, 3), fake(65536 * K.GEMM_TILE, 3), 0, 1, 0)
    huge = 2**31 * K.THREADS
    with pytest.raises(ValueError, match=r"cell_forward: grid size \d+ along axis x exceeds"):
        K.cell_forward(fake(1, 4 * huge), fake(1, huge), fake(1, huge), fake(1, huge), fake(1, huge),
                       fake(1, 4 * huge), fake(1, huge), fake(3, huge), fake(1), 0, 0)
    with pytest.raises(ValueError, match=r"add_column_sums: grid size \d+ along axis x exceeds"):
        K.add_column_sums(fake(huge), fake(1, huge))


@needs_cuda
def test_launchers_refuse_mixed_dtypes(K):
    G = K.to_device(np.zeros((1, 4), np.float32))
    rest = [K.to_device(np.zeros(s, np.float64)) for s in [(1, 1), (1, 1), (1, 1), (1, 1), (1, 4), (1, 1), (3, 1)]]
    with pytest.raises(TypeError, match=r"cell_forward: expected arrays of one dtype.*float32.*float64"):
        K.cell_forward(G, *rest, K.to_device(np.ones(1, np.int64)), 0, 0)


@needs_cuda
def test_time_loop_stays_on_device(K, monkeypatch):
    """lstm_forward / lstm_backward copy nothing to or from the host: every step is a launch on device arrays (here
    with every option: peepholes, a projection, lengths). The only allocations are the persistent forward's
    transposed weights, before its one launch."""
    T, B, I, H, P = 3, 2, 2, 3, 2
    r = lambda *s: K.to_device(testing.random_array(s, np.float64, sum(s)))  # noqa: E731
    e = lambda *s: K.empty(s, np.float64)  # noqa: E731
    z = lambda *s: K.zeros(s, np.float64)  # noqa: E731
    y, h_n, c_n, G, C, TC, M = e(T, B, P), e(B, P), e(B, H), e(T, B, 4 * H), e(T, B, H), e(T, B, H), e(T, B, H)
    x, h0, c0, w_ih, w_hh, b, wp, w_hr = r(T, B, I), r(B, P), r(B, H), r(4 * H, I), r(4 * H, P), r(4 * H), r(3, H), \
        r(P, H)
    lengths = K.to_device(np.array([3, 1], np.int64))
    dx, dh0, dc0, dw_ih, dw_hh, db, dwp, dw_hr = e(T, B, I), e(B, P), e(B, H), z(4 * H, I), z(4 * H, P), z(4 * H), \
        z(3, H), z(P, H)
    hw, scratch = e(B, 4 * H), [e(T, B, 4 * H), e(T, B, P), e(B, H), e(B, P)]
    dy, dh_n, dc_n = r(T, B, P), r(B, P), r(B, H)

    def boom(*args, **kwargs):
        raise AssertionError("host copy inside the time loop")

    allocated, device_array = [], K.cuda.device_array

    def spy(shape, dtype):
        allocated.append(tuple(shape))
        return device_array(shape, dtype)

    with monkeypatch.context() as m:
        m.setattr(type(y), "copy_to_host", boom)
        m.setattr(K.cuda, "to_device", boom)
        m.setattr(K.cuda, "device_array", spy)
        K.lstm_forward(y, h_n, c_n, G, C, TC, M, hw, x, h0, c0, w_ih, w_hh, b, wp, w_hr, lengths, 0)
        K.lstm_backward(dx, dh0, dc0, dw_ih, dw_hh, db, dwp, dw_hr, *scratch, dy, dh_n, dc_n, x, h0, c0, w_ih, w_hh,
                        wp, w_hr, G, C, TC, M, y, lengths, 0)
    assert allocated == [(P, 4 * H), (H, P)]
    y = K.to_host(y)
    assert np.isfinite(y).all() and np.abs(y).max() > 0 and not y[1:, 1].any()    # sequence 1 ended after step 0
    assert all(np.abs(K.to_host(g)).max() > 0 for g in (dw_ih, dwp, dw_hr))


@needs_cuda
def test_device_arrays_in_stay_on_device_and_to_moves(K):
    x = testing.random_array((3, 2, 2), np.float64, 0)
    lstm = nblstm.LSTM(2, 3, dtype=np.float64, seed=0, device="cuda")
    assert repr(lstm) == "LSTM(2, 3, dtype=float64, device='cuda')" and lstm.device == "cuda"
    assert all(backends.is_device_array(p) for p in lstm.parameters().values())
    assert all(type(v) is np.ndarray for v in lstm.state_dict().values())
    y_host, (h_host, _) = lstm(x)
    y_dev, (h_dev, c_dev) = lstm(K.to_device(x))
    assert type(y_host) is np.ndarray and backends.is_device_array(y_dev) and backends.is_device_array(h_dev)
    assert h_dev.shape == (1, 2, 3) and c_dev.shape == (1, 2, 3)
    np.testing.assert_array_equal(K.to_host(y_dev), y_host)
    dx_dev, (dh0_dev, _) = lstm.backward(K.to_device(np.ones_like(y_host)))
    assert backends.is_device_array(dx_dev) and dh0_dev.shape == (1, 2, 3)

    lstm.to("cpu")
    assert lstm.device == "cpu" and all(type(p) is np.ndarray for p in lstm.parameters().values())
    np.testing.assert_allclose(lstm(x)[0], y_host, rtol=0, atol=1e-12)
    lstm.to("cuda")
    np.testing.assert_allclose(lstm(x)[0], y_host, rtol=0, atol=1e-12)
    other = nblstm.LSTM(2, 3, dtype=np.float64, seed=5, device="cuda")
    other.load_state_dict(lstm.state_dict())
    np.testing.assert_array_equal(other(x)[0], lstm(x)[0])


def _fails_clearly(excinfo):
    msg = str(excinfo.value)
    assert 'pip install "nblstm[cuda]"' in msg and "numba-cuda[cu12]" in msg and "NUMBA_ENABLE_CUDASIM=1" in msg


def test_cuda_without_numba_cuda_says_how_to_install(monkeypatch):
    monkeypatch.setattr(backends, "_find_spec", lambda name: None)
    for make in (lambda: nblstm.LSTM(3, 4, device="cuda"), lambda: nblstm.LSTMCell(3, 4, device="cuda")):
        with pytest.raises(backends.CudaUnavailableError, match='device="cuda": numba-cuda is not installed') as e:
            make()
        _fails_clearly(e)
    lstm = nblstm.LSTM(3, 4, seed=0)
    with pytest.raises(backends.CudaUnavailableError):
        lstm.to("cuda")
    assert lstm.device == "cpu" and all(type(p) is np.ndarray for p in lstm.parameters().values())
    lstm(np.ones((2, 1, 3), np.float32))


@needs_cuda
def test_cuda_without_gpu_says_how_to_get_one(K, monkeypatch):
    monkeypatch.setattr(K, "available", lambda: (False, "numba-cuda found no CUDA GPU or driver"))
    with pytest.raises(backends.CudaUnavailableError, match='device="cuda": numba-cuda found no CUDA GPU') as e:
        nblstm.LSTM(3, 4, device="cuda")
    _fails_clearly(e)


def _python(code, sim):
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": sim, "PYTHONPATH": REPO}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)


def test_no_gpu_without_simulator_gives_a_clear_error_not_a_driver_traceback():
    """The real thing, in a fresh process without the simulator: here (no GPU) a clear error; on a GPU it runs."""
    proc = _python("import numpy as np, nblstm\n"
                   "try:\n"
                   "    m = nblstm.LSTM(3, 4, device='cuda')\n"
                   "    print('GPU', m(np.ones((2, 1, 3), np.float32))[0].shape)\n"
                   "except nblstm.backends.CudaUnavailableError as e:\n"
                   "    print('CLEAR', e)\n", sim="0")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stdout.startswith("GPU (2, 1, 4)") or (
        proc.stdout.startswith("CLEAR") and 'pip install "nblstm[cuda]"' in proc.stdout), proc.stdout


@pytest.mark.parametrize("sim", ["0", "1"])
def test_import_nblstm_and_cpu_use_do_not_import_numba_cuda(sim):
    proc = _python("import sys, numpy as np, nblstm\n"
                   "m = nblstm.LSTM(2, 3)\n"
                   "y, _ = m(np.ones((2, 1, 2), np.float32)); m.backward(np.ones_like(y))\n"
                   "print(sorted(k for k in sys.modules if k == 'numba.cuda' or k.startswith(('numba.cuda.', "
                   "'numba_cuda'))))\n", sim=sim)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
