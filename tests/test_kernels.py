"""Every kernel of every backend against the NumPy oracle (nblstm.reference), on drawn shapes, both dtypes."""
import numpy as np
import pytest

from _devices import DEVICES, call, given_on, shapes
from nblstm import reference as R
from nblstm import testing
from nblstm.kernels._math import ACTIVATIONS


def _problem(T, B, I, H, dtype, seed):
    """Inputs of one layer in `dtype`; weights scaled as torch's init (~1/sqrt(H)) times 2 to reach saturation."""
    r = lambda shape, k, scale=1.0: testing.random_array(shape, dtype, seed + k, scale)
    s = 2.0 / np.sqrt(H)
    return dict(x=r((T, B, I), 1), h0=r((B, H), 2), c0=r((B, H), 3), w_ih=r((4 * H, I), 4, s),
                w_hh=r((4 * H, H), 5, s), b_ih=r((4 * H,), 6, s), b_hh=r((4 * H,), 7, s))


def _f64(p):
    return {k: v.astype(np.float64) for k, v in p.items()}


_FORWARD_OUT = ("y", "h_n", "c_n", "G", "C", "TC", "hw")


def _run_forward(device, p, act, keep=True):
    T, B, _ = p["x"].shape
    H = p["h0"].shape[1]
    dt = p["x"].dtype
    outs = [np.empty((T, B, H), dt), np.empty((B, H), dt), np.empty((B, H), dt), np.empty((T, B, 4 * H), dt),
            np.empty((T if keep else 1, B, H), dt), np.empty((T if keep else 1, B, H), dt), np.empty((B, 4 * H), dt)]
    got = call(device, "lstm_forward", *outs, p["x"], p["h0"], p["c0"], p["w_ih"], p["w_hh"], p["b_ih"] + p["b_hh"],
               act)
    return dict(zip(_FORWARD_OUT, got))


@pytest.mark.parametrize("device", DEVICES)
def test_lstm_forward_backward_match_reference(device):
    @given_on(device, shapes(device), testing.float_dtypes(), testing.activations(), testing.seeds())
    def check(shape, dtype, activation, seed):
        T, B, I, H = shape
        p = _problem(T, B, I, H, dtype, seed % 2**31)
        act = ACTIVATIONS.index(activation)
        out = _run_forward(device, p, act)
        y, h_n, c_n, caches = R.lstm_forward(**_f64(p), activation=activation)
        for name, ref in (("y", y), ("h_n", h_n), ("c_n", c_n)):
            testing.assert_close(out[name], ref, dtype, name)

        dy, dh_n, dc_n = (testing.random_array(s, dtype, seed % 2**31 + 10 + k) for k, s in
                          enumerate([(T, B, H), (B, H), (B, H)]))
        g = R.lstm_backward(dy.astype(np.float64), dh_n.astype(np.float64), dc_n.astype(np.float64), caches)
        dx, dh0, dc0 = np.empty_like(p["x"]), np.empty_like(p["h0"]), np.empty_like(p["c0"])
        dw_ih, dw_hh, db = np.zeros_like(p["w_ih"]), np.zeros_like(p["w_hh"]), np.zeros_like(p["b_ih"])
        dx, dh0, dc0, dw_ih, dw_hh, db = call(
            device, "lstm_backward", dx, dh0, dc0, dw_ih, dw_hh, db, np.empty_like(out["G"]), dy, dh_n, dc_n,
            p["x"], p["h0"], p["c0"], p["w_ih"], p["w_hh"], out["G"], out["C"], out["TC"], out["y"], act)[:6]
        for name, got, ref in (("dx", dx, g["x"]), ("dh0", dh0, g["h"]), ("dc0", dc0, g["c"]),
                               ("dw_ih", dw_ih, g["w_ih"]), ("dw_hh", dw_hh, g["w_hh"]), ("db", db, g["b_ih"])):
            assert got.dtype == dtype, name
            testing.assert_close(got, ref, dtype, name)

    check()


@pytest.mark.parametrize("device", DEVICES)
def test_inference_forward_equals_taped_forward(device):
    """The no-tape path (C and TC one step long, overwritten) gives bit-identical outputs."""
    @given_on(device, shapes(device), testing.float_dtypes(), testing.activations(), testing.seeds())
    def check(shape, dtype, activation, seed):
        p = _problem(*shape, dtype, seed % 2**31)
        act = ACTIVATIONS.index(activation)
        taped, untaped = _run_forward(device, p, act, keep=True), _run_forward(device, p, act, keep=False)
        for name in ("y", "h_n", "c_n"):
            np.testing.assert_array_equal(untaped[name], taped[name], err_msg=name)

    check()


@pytest.mark.parametrize("device", DEVICES)
def test_cell_kernels_match_reference(device):
    """cell_forward / cell_backward (the pointwise step) against reference.cell_forward / cell_backward."""
    @given_on(device, shapes(device, max_T=1), testing.float_dtypes(), testing.activations(), testing.seeds())
    def check(shape, dtype, activation, seed):
        _, B, I, H = shape
        p = _problem(1, B, I, H, dtype, seed % 2**31)
        act = ACTIVATIONS.index(activation)
        q = _f64(p)
        h, c, cache = R.cell_forward(q["x"][0], q["h0"], q["c0"], q["w_ih"], q["w_hh"], q["b_ih"], q["b_hh"],
                                     activation)
        G = p["x"][0] @ p["w_ih"].T + p["b_ih"] + p["b_hh"]
        hw = p["h0"] @ p["w_hh"].T
        c1, tc1, h1 = (np.empty((B, H), dtype) for _ in range(3))
        G, c1, tc1, h1 = call(device, "cell_forward", G, c1, tc1, h1, hw, p["c0"], act)[:4]
        testing.assert_close(h1, h, dtype, "h")
        testing.assert_close(c1, c, dtype, "c")
        i, f, g, o = cache[5:9]
        testing.assert_close(G, np.concatenate([i, f, g, o], axis=1), dtype, "gates")

        dh = testing.random_array((B, H), dtype, seed % 2**31 + 1)
        dc = testing.random_array((B, H), dtype, seed % 2**31 + 2)
        ref = R.cell_backward(dh.astype(np.float64), dc.astype(np.float64), cache)
        dG = np.empty((B, 4 * H), dtype)
        dG, dc_io = call(device, "cell_backward", dG, dc.copy(), dh, G, p["c0"], tc1, act)[:2]
        testing.assert_close(dG, ref["a"], dtype, "dG")
        testing.assert_close(dc_io, ref["c"], dtype, "dc_prev")

    check()
