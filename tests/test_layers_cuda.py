"""The "cuda" backend of Linear, Embedding, the losses and the optimizers, and training end to end on it.

Kernels (nblstm/kernels/layers_cpu.py and its twin layers_cuda.py) are checked on both devices against the NumPy code
of nblstm/_layers.py, losses.py and optim.py (the reference); objects on cuda against the same objects on cpu, and
their gradients against central finite differences; optimizer steps, clipping and a short training on cuda against
cpu. cuda runs on Numba's simulator here: tiny shapes, few examples.
"""
import numpy as np
import pytest
from hypothesis import strategies as st

import nblstm
from _devices import CUDA_REASON, DEVICES, assert_twins, given_on
from _training_fd import numeric_grad, rel_err
from nblstm import backends, losses, optim
from nblstm.kernels import layers_cpu

needs_cuda = pytest.mark.skipif(bool(CUDA_REASON), reason=CUDA_REASON)
TWINS = ("linear_forward", "linear_backward", "embedding_forward", "embedding_backward", "softmax_xent", "mse",
         "reduce_sum", "scale", "fill", "sgd_step", "adam_step")
TOL = {np.float64: 1e-12, np.float32: 2e-5}          # kernel vs NumPy reference, relative to the values' scale
FD_TOL = 1e-7


def _close(got, want, dtype, err_msg=""):
    want = np.asarray(want, np.float64)
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=TOL[dtype],
                               atol=TOL[dtype] * max(1.0, float(np.abs(want).max(initial=0))), err_msg=err_msg)


def _host(a):
    return backends.to_host(a)


def call(device, name, *args):
    """_devices.call for the layer kernels: run kernel `name` of `device` on NumPy arrays, return every argument
    afterwards as a NumPy array; scalars pass through."""
    K = backends.layer_kernels(device)
    dev = [backends.to_device(device, a) if isinstance(a, np.ndarray) else a for a in args]
    getattr(K, name)(*dev)
    return [backends.to_host(d) if isinstance(a, np.ndarray) else a for a, d in zip(args, dev)]


# ---- twins --------------------------------------------------------------------------------------------------------

@needs_cuda
def test_twins_have_same_names_docstrings_arguments_and_file_order():
    K = backends.layer_kernels("cuda")
    assert_twins(layers_cpu, K, TWINS)
    assert list(K.KERNELS) == [getattr(K, n) for n in TWINS if isinstance(getattr(K, n), K.Launcher)]


def test_import_nblstm_does_not_import_the_cuda_layer_kernels():
    import subprocess
    import sys
    code = "import sys, nblstm; nblstm.Linear(2, 1)(__import__('numpy').ones((1, 2))); " \
           "print('nblstm.kernels.layers_cuda' in sys.modules, 'numba.cuda' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


# ---- kernels against the NumPy reference ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("bias", [True, False])
def test_linear_kernels_match_numpy(device, dtype, bias):
    rng = np.random.default_rng(0)
    N, I, O = 5, 3, 2
    x, w, dy = (rng.standard_normal(s).astype(dtype) for s in ((N, I), (O, I), (N, O)))
    b = rng.standard_normal(O).astype(dtype) if bias else np.zeros(0, dtype)
    y, *_ = call(device, "linear_forward", np.empty((N, O), dtype), x, w, b)
    _close(y, x @ w.T + (b if bias else 0), dtype)
    dw0 = rng.standard_normal((O, I)).astype(dtype)
    db0 = (rng.standard_normal(O) if bias else np.zeros(0)).astype(dtype)
    dx, dw, db, *_ = call(device, "linear_backward", np.empty((N, I), dtype), dw0.copy(), db0.copy(), dy, x, w)
    _close(dx, dy @ w, dtype)
    _close(dw, dw0 + dy.T @ x, dtype)                  # added into
    _close(db, db0 + (dy.sum(0) if bias else 0), dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("device", DEVICES)
def test_embedding_kernels_match_numpy(device, dtype):
    rng = np.random.default_rng(1)
    V, E = 5, 3
    w, idx = rng.standard_normal((V, E)).astype(dtype), np.array([0, 2, 2, 4, 2, 0], np.int64)
    y, *_ = call(device, "embedding_forward", np.empty((len(idx), E), dtype), w, idx)
    np.testing.assert_array_equal(y, w[idx])
    dw0, dy = rng.standard_normal((V, E)).astype(dtype), rng.standard_normal((len(idx), E)).astype(dtype)
    dw, *_ = call(device, "embedding_backward", dw0.copy(), dy, idx)
    want = dw0.copy()
    np.add.at(want, idx, dy)                            # repeated indices add up, in order: equal bit for bit
    np.testing.assert_array_equal(dw, want)


def _xent_case(rng, N, C, masked, dtype, big=False):
    z = (rng.standard_normal((N, C)) * (1e4 if big else 2)).astype(dtype)
    y = rng.integers(0, C, N)
    w = None
    if masked:
        w = (rng.uniform(size=N) < 0.6).astype(dtype)
        w[0] = 1
        y[w == 0] = -1                                  # padding targets are never read where the mask is 0
    return z, y, w


def _xent_kernel(device, z, y, w):
    """(loss, dz) from softmax_xent on `device`, reduced as losses._reduce does."""
    dtype = z.dtype.type
    N, C = z.shape
    ww = np.ones(1, z.dtype) if w is None else w
    scale = dtype(1) / dtype(N if w is None else w.sum())
    y = y if w is None else np.where(w > 0, y, 0)      # as losses.py passes them (the kernel never reads masked ones)
    rows, dz, *_ = call(device, "softmax_xent", np.empty(N, z.dtype), np.empty_like(z), z, y.astype(np.int64), ww,
                        scale)
    return float(rows.sum(dtype=np.float64) * scale), dz


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("device", DEVICES)
def test_softmax_xent_kernel_matches_numpy_and_is_stable(device, dtype):
    rng = np.random.default_rng(2)
    for masked in (False, True):
        for big in (False, True):
            z, y, w = _xent_case(rng, 6, 4, masked, dtype, big)
            with np.errstate(over="raise", invalid="raise", divide="raise"):
                loss, dz = _xent_kernel(device, z, y, w)
            ref_loss, ref_d = losses.softmax_cross_entropy(z, y, w)
            assert loss == pytest.approx(ref_loss, rel=TOL[dtype]), (masked, big)
            _close(dz, ref_d, dtype, err_msg=f"masked={masked} big={big}")
            if masked:
                assert not dz[w == 0].any()


@pytest.mark.parametrize("device", DEVICES)
def test_softmax_xent_kernel_property(device):
    @given_on(device, st.integers(1, 7), st.integers(1, 6), st.booleans(), st.integers(0, 2**31))
    def check(N, C, masked, seed):
        z, y, w = _xent_case(np.random.default_rng(seed), N, C, masked, np.float64)
        loss, dz = _xent_kernel(device, z, y, w)
        ref_loss, ref_d = losses.softmax_cross_entropy(z, y, w)
        assert loss == pytest.approx(ref_loss, rel=1e-12, abs=1e-15)
        _close(dz, ref_d, np.float64)

    check()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mask_kind", ["none", "rows", "elements"])
def test_mse_kernel_matches_numpy(device, dtype, mask_kind):
    rng = np.random.default_rng(3)
    N, K = 5, 2
    p, t = rng.standard_normal((N, K)).astype(dtype), rng.standard_normal((N, K)).astype(dtype)
    mask = {"none": None, "rows": (rng.uniform(size=N) < 0.6).astype(dtype),
            "elements": rng.uniform(size=(N, K)).astype(dtype)}[mask_kind]
    w = {"none": np.ones((1, 1), dtype), "rows": None if mask is None else mask.reshape(-1, 1),
         "elements": mask}[mask_kind]
    ref_loss, ref_d = losses.mse(p, t, mask)
    norm = p.size if mask is None else (mask.sum() * (K if mask.ndim == 1 else 1))
    scale = dtype(1) / dtype(norm)
    rows, dp, *_ = call(device, "mse", np.empty(N, dtype), np.empty_like(p), p, t, w, scale)
    assert float(rows.sum(dtype=np.float64) * scale) == pytest.approx(ref_loss, rel=TOL[dtype])
    _close(dp, ref_d, dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("device", DEVICES)
def test_reduce_sum_and_scale_kernels(device, dtype):
    rng = np.random.default_rng(4)
    for P in (1, 5, 37):                                 # odd sizes, and one larger than the simulator's block of 32
        a = rng.standard_normal(P).astype(dtype)
        for square in (0, 1):
            out, *_ = call(device, "reduce_sum", np.full(1, 0.5, dtype), a, square)
            want = 0.5 + (a.astype(np.float64) ** 2 if square else a.astype(np.float64)).sum()
            assert out[0] == pytest.approx(want, rel=TOL[dtype], abs=TOL[dtype] * P)
        s, *_ = call(device, "scale", a.copy(), dtype(0.25))
        np.testing.assert_array_equal(s, a * dtype(0.25))
        f, *_ = call(device, "fill", a.copy(), dtype(0))
        assert not f.any()


class Params:
    """A trainable object of NumPy arrays (the reference path of the optimizers), gradients set by hand."""

    def __init__(self, params):
        self.p = {k: v.copy() for k, v in params.items()}
        self.grads = {k: np.zeros_like(v) for k, v in params.items()}

    def parameters(self):
        return self.p

    def zero_grad(self):
        for g in self.grads.values():
            g[...] = 0


OPTIMIZERS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.3, weight_decay=0.01)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, weight_decay=0.1, betas=(0.8, 0.99), eps=1e-6)),
    ("AdamW", dict(lr=0.01, weight_decay=0.1)),
]


def _kernel_steps(device, kind, kwargs, p, grads):
    """The optimizer's updates of p by the sgd_step / adam_step kernel of `device`, one call per gradient."""
    t = p.dtype.type
    buf, m, v = np.zeros_like(p), np.zeros_like(p), np.zeros_like(p)
    for step, g in enumerate(grads, 1):
        if kind == "SGD":
            p, buf, *_ = call(device, "sgd_step", p, buf, g, t(kwargs["lr"]), t(kwargs.get("momentum", 0)),
                              t(1 - kwargs.get("dampening", 0)), t(kwargs.get("weight_decay", 0)),
                              int(kwargs.get("nesterov", False)), int(step == 1))
        else:
            lr, (b1, b2) = kwargs["lr"], kwargs.get("betas", (0.9, 0.999))
            wd = kwargs.get("weight_decay", 1e-2 if kind == "AdamW" else 0.0)
            bc1, bc2 = 1 - b1 ** step, 1 - b2 ** step
            p, m, v, *_ = call(device, "adam_step", p, m, v, g, t(lr / bc1), t(b1), t(1 - b1), t(b2), t(1 - b2), t(wd),
                               t(1 - lr * wd), t(np.sqrt(bc2)), t(kwargs.get("eps", 1e-8)), int(kind == "AdamW"))
    return p


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind,kwargs", OPTIMIZERS)
def test_optimizer_kernels_match_numpy_optimizers(device, dtype, kind, kwargs):
    rng = np.random.default_rng(5)
    p0 = rng.standard_normal(7).astype(dtype)
    grads = [rng.standard_normal(7).astype(dtype) for _ in range(3)]
    ref = Params({"w": p0})
    opt = getattr(optim, kind)(ref, **kwargs)
    for g in grads:
        ref.grads["w"][...] = g
        opt.step()
    _close(_kernel_steps(device, kind, kwargs, p0.copy(), grads), ref.p["w"], dtype)


# ---- objects on cuda -----------------------------------------------------------------------------------------------

def _numeric_grad_device(f, arr, eps=1e-6):
    """numeric_grad for a device array: each perturbation copied over."""
    host = backends.to_host(arr)

    def g():
        backends.copy_into(arr, host)
        return f()
    out = numeric_grad(g, host, eps)
    backends.copy_into(arr, host)
    return out


@needs_cuda
@pytest.mark.parametrize("bias", [True, False])
def test_linear_on_cuda_equals_cpu_and_finite_differences(bias):
    rng = np.random.default_rng(6)
    x, w = rng.standard_normal((2, 3, 3)), rng.standard_normal((2, 3, 2))
    cpu = nblstm.Linear(3, 2, bias=bias, seed=0, dtype=np.float64)
    gpu = nblstm.Linear(3, 2, bias=bias, seed=0, dtype=np.float64, device="cuda")
    y, yc = gpu(x), cpu(x)
    assert isinstance(y, np.ndarray) and y.shape == (2, 3, 2)       # NumPy in, NumPy out
    np.testing.assert_allclose(y, yc, rtol=1e-12, atol=1e-14)
    dx, dxc = gpu.backward(w), cpu.backward(w)
    np.testing.assert_allclose(dx, dxc, rtol=1e-12, atol=1e-14)
    for k in cpu.grads:
        assert backends.is_device_array(gpu.grads[k]) and backends.is_device_array(gpu.parameters()[k])
        np.testing.assert_allclose(_host(gpu.grads[k]), cpu.grads[k], rtol=1e-12, atol=1e-14)
        assert isinstance(gpu.state_dict()[k], np.ndarray)

    def loss():
        with nblstm.no_grad():
            return float((w * gpu(x)).sum())

    assert rel_err(dx, numeric_grad(loss, x)) < FD_TOL
    for k, p in gpu.parameters().items():
        assert rel_err(_host(gpu.grads[k]), _numeric_grad_device(loss, p)) < FD_TOL, k


@needs_cuda
def test_linear_device_arrays_stay_on_device_and_to_moves():
    lin = nblstm.Linear(3, 2, seed=0, device="cuda")
    assert repr(lin) == "Linear(3, 2, device='cuda')"
    xd = backends.to_device("cuda", np.ones((4, 3), np.float32))
    y = lin(xd)
    assert backends.is_device_array(y) and tuple(y.shape) == (4, 2)
    dx = lin.backward(backends.to_device("cuda", np.ones((4, 2), np.float32)))
    assert backends.is_device_array(dx) and tuple(dx.shape) == (4, 3)
    want = nblstm.Linear(3, 2, seed=0)(np.ones((4, 3), np.float32))
    np.testing.assert_allclose(_host(y), want, rtol=1e-6)
    lin.to("cpu")
    assert isinstance(lin.parameters()["weight"], np.ndarray) and isinstance(lin.grads["weight"], np.ndarray)
    np.testing.assert_allclose(lin.grads["weight"], np.full((2, 3), 4.0), rtol=1e-6)
    np.testing.assert_allclose(lin(np.ones((4, 3), np.float32)), want, rtol=1e-6)
    lin.to("cuda")
    lin(np.ones((4, 3)))
    with pytest.raises(ValueError, match="dy: expected 4 rows"):
        lin.backward(np.ones((5, 2)))


@needs_cuda
def test_embedding_on_cuda_equals_cpu_and_finite_differences():
    rng = np.random.default_rng(7)
    idx = np.array([[0, 2], [2, 2], [4, 0]])
    w = rng.standard_normal((3, 2, 3))
    cpu = nblstm.Embedding(5, 3, seed=0, dtype=np.float64)
    gpu = nblstm.Embedding(5, 3, seed=0, dtype=np.float64, device="cuda")
    np.testing.assert_array_equal(gpu(idx), cpu(idx))
    assert gpu.backward(w) is None and cpu.backward(w) is None
    np.testing.assert_array_equal(_host(gpu.grads["weight"]), cpu.grads["weight"])

    def loss():
        with nblstm.no_grad():
            return float((w * gpu(idx)).sum())

    assert rel_err(_host(gpu.grads["weight"]), _numeric_grad_device(loss, gpu.parameters()["weight"])) < FD_TOL
    yd = gpu(backends.to_device("cuda", idx.astype(np.int64)))      # device indices: checked on the host, kept
    assert backends.is_device_array(yd)
    np.testing.assert_array_equal(_host(yd), cpu(idx))
    with pytest.raises(ValueError, match=r"index: expected integers in \[0, 5\)"):
        gpu(backends.to_device("cuda", np.array([0, 5])))


@needs_cuda
@pytest.mark.parametrize("masked", [False, True])
def test_losses_on_device_equal_cpu_and_finite_differences(masked):
    rng = np.random.default_rng(8)
    z, y = rng.standard_normal((3, 2, 4)), rng.integers(0, 4, (3, 2))
    mask = None
    if masked:
        mask = (rng.uniform(size=(3, 2)) < 0.6) * 1.0
        mask[0, 0] = 1
        y[mask == 0] = -1
    loss, dz = losses.softmax_cross_entropy(backends.to_device("cuda", z), y, mask)
    assert backends.is_device_array(dz) and tuple(dz.shape) == z.shape
    ref, dref = losses.softmax_cross_entropy(z, y, mask)
    assert loss == pytest.approx(ref, rel=1e-12)
    np.testing.assert_allclose(_host(dz), dref, rtol=1e-12, atol=1e-15)
    f = lambda: losses.softmax_cross_entropy(backends.to_device("cuda", z), y, mask)[0]   # noqa: E731
    assert rel_err(_host(dz), numeric_grad(f, z)) < FD_TOL
    p, t = rng.standard_normal((3, 2, 2)), rng.standard_normal((3, 2, 2))
    for m in (mask, None if mask is None else rng.uniform(size=(3, 2, 2))):
        for reduction in ("mean", "sum"):
            loss, dp = losses.mse(backends.to_device("cuda", p), t, m, reduction=reduction)
            ref, dref = losses.mse(p, t, m, reduction=reduction)
            assert loss == pytest.approx(ref, rel=1e-12)
            np.testing.assert_allclose(_host(dp), dref, rtol=1e-12, atol=1e-15)
            f = lambda: losses.mse(backends.to_device("cuda", p), t, m, reduction=reduction)[0]   # noqa: E731
            assert rel_err(_host(dp), numeric_grad(f, p)) < FD_TOL


@needs_cuda
def test_losses_on_device_edge_cases():
    z = backends.to_device("cuda", np.array([[1e4, 0.0, -1e4], [0.0, 1e4, 1e4]], np.float32))
    loss, d = losses.softmax_cross_entropy(z, np.array([1, 1]))
    assert loss == pytest.approx((1e4 + np.log(2)) / 2, rel=1e-6)
    assert d.dtype == np.float32
    np.testing.assert_allclose(_host(d)[1], [0, -0.25, 0.25], atol=1e-7)
    loss, d = losses.softmax_cross_entropy(backends.to_device("cuda", np.ones((2, 3))), np.array([-1, -1]), np.zeros(2))
    assert loss == 0.0 and not _host(d).any()
    loss, d = losses.mse(backends.to_device("cuda", np.ones((2, 1))), np.zeros((2, 1)), np.zeros(2))
    assert loss == 0.0 and not _host(d).any()
    with pytest.raises(ValueError, match=r"target: expected class indices in \[0, 3\)"):
        losses.softmax_cross_entropy(backends.to_device("cuda", np.zeros((2, 3))), np.array([0, 3]))
    with pytest.raises(ValueError, match="target: expected shape"):
        losses.mse(backends.to_device("cuda", np.zeros((2, 1))), np.zeros((3, 1)))


def _linear_pair(dtype):
    cpu = nblstm.Linear(3, 2, seed=0, dtype=dtype)
    return cpu, nblstm.Linear(3, 2, seed=0, dtype=dtype, device="cuda")


@needs_cuda
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind,kwargs", OPTIMIZERS)
def test_optimizer_steps_on_cuda_equal_cpu(kind, kwargs, dtype):
    rng = np.random.default_rng(9)
    cpu, gpu = _linear_pair(dtype)
    oc, og = getattr(optim, kind)(cpu, **kwargs), getattr(optim, kind)(gpu, **kwargs)
    for _ in range(3):
        for k in cpu.grads:
            g = rng.standard_normal(cpu.grads[k].shape).astype(dtype)
            cpu.grads[k][...] = g
            backends.copy_into(gpu.grads[k], g)
        oc.step()
        og.step()
    assert all(backends.is_device_array(b) for bufs in og.state.values() for b in bufs.values())
    for k, p in cpu.parameters().items():
        _close(_host(gpu.parameters()[k]), p, dtype, err_msg=k)
    sc, sg = oc.state_dict(), og.state_dict()
    assert sorted(sc) == sorted(sg) and all(isinstance(v, np.ndarray) for v in sg.values())
    for k, v in sc.items():
        if v.dtype.kind == "f" and v.ndim:
            _close(sg[k], v, dtype, err_msg=k)


@needs_cuda
def test_optimizer_state_round_trip_on_cuda_continues_identically():
    rng = np.random.default_rng(10)
    grads = [{k: rng.standard_normal(s) for k, s in (("weight", (2, 3)), ("bias", (2,)))} for _ in range(4)]

    def run(model, opt, gs):
        for g in gs:
            for k, v in g.items():
                backends.copy_into(model.grads[k], v)
            opt.step()

    a = nblstm.Linear(3, 2, seed=0, dtype=np.float64, device="cuda")
    oa = optim.Adam(a, lr=0.1)
    run(a, oa, grads[:2])
    b = nblstm.Linear(3, 2, seed=1, dtype=np.float64, device="cuda")
    b.load_state_dict(a.state_dict())
    ob = optim.Adam(b, lr=0.5)
    ob.load_state_dict(oa.state_dict())
    assert backends.is_device_array(ob.state["exp_avg"]["0.weight"])
    run(a, oa, grads[2:])
    run(b, ob, grads[2:])
    for k in a.state_dict():
        np.testing.assert_array_equal(b.state_dict()[k], a.state_dict()[k])


@needs_cuda
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_clip_grad_norm_on_cuda_equals_cpu(dtype):
    rng = np.random.default_rng(11)
    cpu, gpu = _linear_pair(dtype)
    host = Params({"w": np.zeros(3, dtype)})               # mixed: a NumPy object clipped with a device one
    host.grads["w"][...] = [3.0, 0.0, 4.0]
    for k in cpu.grads:
        g = rng.standard_normal(cpu.grads[k].shape).astype(dtype)
        cpu.grads[k][...] = g
        backends.copy_into(gpu.grads[k], g)
    host2 = Params({"w": np.zeros(3, dtype)})
    host2.grads["w"][...] = host.grads["w"]
    nc, ng = optim.clip_grad_norm([cpu, host], 1.0), optim.clip_grad_norm([gpu, host2], 1.0)
    assert ng == pytest.approx(nc, rel=TOL[dtype]) and nc > 5
    for k, g in cpu.grads.items():
        _close(_host(gpu.grads[k]), g, dtype, err_msg=k)
    _close(host2.grads["w"], host.grads["w"], dtype)
    assert optim.global_norm([gpu, host2]) == pytest.approx(1.0, rel=1e-5)
    backends.copy_into(gpu.grads["bias"], np.array([np.inf, 0], dtype))
    before = _host(gpu.grads["weight"])
    assert optim.clip_grad_norm(gpu, 1.0) == np.inf                 # non-finite: returned, gradients untouched
    np.testing.assert_array_equal(_host(gpu.grads["weight"]), before)


# ---- training end to end -------------------------------------------------------------------------------------------

def _tiny_model(device):
    return nblstm.SequenceModel(nblstm.LSTM(3, 4, dtype=np.float64, seed=0, forget_bias=1.0, device=device),
                                nblstm.Linear(4, 5, dtype=np.float64, seed=1),
                                nblstm.Embedding(6, 3, dtype=np.float64, seed=2))


@needs_cuda
def test_sequence_model_on_cuda_keeps_parts_on_device_and_equals_cpu():
    rng = np.random.default_rng(12)
    idx, w = rng.integers(0, 6, (3, 2)), rng.standard_normal((3, 2, 5))
    cpu, gpu = _tiny_model("cpu"), _tiny_model("cuda")
    assert gpu.device == "cuda" and gpu.head.device == "cuda" and gpu.embedding.device == "cuda"
    out, (h, c) = gpu(idx)
    assert isinstance(out, np.ndarray) and isinstance(h, np.ndarray)       # NumPy in, NumPy out
    outc, (hc, cc) = cpu(idx)
    np.testing.assert_allclose(out, outc, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(h, hc, rtol=1e-12, atol=1e-14)
    _, (dh0, _) = gpu.backward(w)
    _, (dh0c, _) = cpu.backward(w)
    np.testing.assert_allclose(dh0, dh0c, rtol=1e-12, atol=1e-14)
    for k, g in cpu.grads.items():
        np.testing.assert_allclose(_host(gpu.grads[k]), g, rtol=1e-12, atol=1e-14, err_msg=k)
    outd, (hd, _) = gpu(backends.to_device("cuda", idx.astype(np.int64)))   # device in, device out
    assert backends.is_device_array(outd) and backends.is_device_array(hd)
    gpu.to("cpu")
    assert all(isinstance(p, np.ndarray) for p in gpu.parameters().values())
    np.testing.assert_allclose(gpu(idx)[0], outc, rtol=1e-12, atol=1e-14)


@needs_cuda
def test_training_loop_on_cuda_matches_cpu_loss_curve():
    """Embedding -> LSTM -> Linear, cross-entropy on device, clipping and Adam on device: 3 steps as on cpu."""
    curves, params = {}, {}
    for device in ("cpu", "cuda"):
        model = _tiny_model(device)
        opt = optim.Adam(model, lr=0.05)
        rng = np.random.default_rng(13)
        curve = []
        for _ in range(3):
            x, y = rng.integers(0, 6, (3, 2)), rng.integers(0, 5, (3, 2))
            xin = x if device == "cpu" else backends.to_device(device, x.astype(np.int64))
            out, _ = model(xin)
            assert backends.is_device_array(out) == (device == "cuda")
            value, dout = losses.softmax_cross_entropy(out, y)
            model.backward(dout)
            curve.append((value, optim.clip_grad_norm(model, 0.5)))
            opt.step()
            opt.zero_grad()
            assert not any(_host(g).any() for g in model.grads.values())
        curves[device], params[device] = curve, model.state_dict()
    np.testing.assert_allclose(curves["cuda"], curves["cpu"], rtol=1e-10)
    for k, v in params["cpu"].items():
        np.testing.assert_allclose(params["cuda"][k], v, rtol=1e-10, atol=1e-12, err_msg=k)


@needs_cuda
def test_fit_and_tbptt_on_cuda_match_cpu():
    task = nblstm.tasks.Adding(T=4, dtype=np.float64)
    results, params = {}, {}
    for device in ("cpu", "cuda"):
        model = task.make_model(3, seed=0, dtype=np.float64, device=device)
        opt = optim.SGD(model, lr=0.1, momentum=0.9)
        results[device] = nblstm.fit(task, model, opt, steps=3, batch_size=2, clip=1.0, log_every=1)
        params[device] = model.state_dict()
    assert len(results["cpu"].history) == 3
    np.testing.assert_allclose(results["cuda"].history, results["cpu"].history, rtol=1e-10)
    for k, v in params["cpu"].items():
        np.testing.assert_allclose(params["cuda"][k], v, rtol=1e-10, atol=1e-12, err_msg=k)
    rng = np.random.default_rng(14)
    x, y = rng.standard_normal((4, 1, 3)), rng.integers(0, 4, (4, 1))
    grads = {}
    for device in ("cpu", "cuda"):
        model = nblstm.SequenceModel(nblstm.LSTM(3, 2, dtype=np.float64, seed=0, device=device),
                                     nblstm.Linear(2, 4, dtype=np.float64, seed=1))
        value, _ = nblstm.tbptt(model, x, y, losses.softmax_cross_entropy, chunk=2)
        grads[device] = (value, {k: _host(g) for k, g in model.grads.items()})
    assert grads["cuda"][0] == pytest.approx(grads["cpu"][0], rel=1e-12)
    for k, g in grads["cpu"][1].items():
        np.testing.assert_allclose(grads["cuda"][1][k], g, rtol=1e-10, atol=1e-13, err_msg=k)
