"""The LSTM and LSTMCell objects: against the oracle, against each other, and their bookkeeping."""
import warnings

import numpy as np
import pytest
from hypothesis import strategies as st

import nblstm
from _devices import DEVICES, given_on, max_size, shapes
from nblstm import backends
from nblstm import reference as R
from nblstm import testing


def _grads(model):
    """model.grads as NumPy arrays (device arrays on cuda)."""
    return {k: backends.to_host(g) for k, g in model.grads.items()}


def _weights(model, suffix):
    p = model.state_dict()
    H = model.hidden_size
    zero = np.zeros(4 * H)
    return (p[f"weight_ih{suffix}"].astype(np.float64), p[f"weight_hh{suffix}"].astype(np.float64),
            p.get(f"bias_ih{suffix}", zero).astype(np.float64), p.get(f"bias_hh{suffix}", zero).astype(np.float64))


@pytest.mark.parametrize("device", DEVICES)
def test_lstm_object_matches_reference(device):
    given_on(device, testing.lstm_configs(max_size=max_size(device)), shapes(device, max_I=1, max_H=1), st.booleans(),
             testing.seeds())(_lstm_object_matches_reference)(device)


def _lstm_object_matches_reference(device, config, shape, batch_first, seed):
    T, B = shape[:2]
    I, H, dt = config["input_size"], config["hidden_size"], config["dtype"]
    lstm = nblstm.LSTM(**config, batch_first=batch_first, device=device)
    x = testing.random_array((T, B, I), dt, seed)
    h0, c0 = testing.random_array((1, B, H), dt, seed + 1), testing.random_array((1, B, H), dt, seed + 2)
    y, (h_n, c_n) = lstm(x.transpose(1, 0, 2) if batch_first else x, (h0, c0))
    ry, rh, rc, caches = R.lstm_forward(x.astype(np.float64), h0[0].astype(np.float64), c0[0].astype(np.float64),
                                        *_weights(lstm, "_l0"), config["cell_activation"])
    assert y.dtype == dt and h_n.shape == (1, B, H) and c_n.shape == (1, B, H)
    testing.assert_close(y.transpose(1, 0, 2) if batch_first else y, ry, dt, "y")
    testing.assert_close(h_n[0], rh, dt, "h_n")
    testing.assert_close(c_n[0], rc, dt, "c_n")

    dy = testing.random_array((T, B, H), dt, seed + 3)
    dh, dc = testing.random_array((1, B, H), dt, seed + 4), testing.random_array((1, B, H), dt, seed + 5)
    dx, (dh0, dc0) = lstm.backward(dy.transpose(1, 0, 2) if batch_first else dy, (dh, dc))
    g = R.lstm_backward(dy.astype(np.float64), dh[0].astype(np.float64), dc[0].astype(np.float64), caches)
    testing.assert_close(dx.transpose(1, 0, 2) if batch_first else dx, g["x"], dt, "dx")
    testing.assert_close(dh0[0], g["h"], dt, "dh0")
    testing.assert_close(dc0[0], g["c"], dt, "dc0")
    grads = _grads(lstm)
    testing.assert_close(grads["weight_ih_l0"], g["w_ih"], dt, "weight_ih_l0")
    testing.assert_close(grads["weight_hh_l0"], g["w_hh"], dt, "weight_hh_l0")
    if config["bias"]:
        testing.assert_close(grads["bias_ih_l0"], g["b_ih"], dt, "bias_ih_l0")
        testing.assert_close(grads["bias_hh_l0"], g["b_hh"], dt, "bias_hh_l0")
    else:
        assert sorted(lstm.grads) == ["weight_hh_l0", "weight_ih_l0"]


@pytest.mark.parametrize("device", DEVICES)
def test_python_loop_of_cells_equals_lstm(device):
    given_on(device, testing.lstm_configs(max_size=max_size(device)), shapes(device, max_I=1, max_H=1),
             testing.seeds())(_python_loop_of_cells_equals_lstm)(device)


def _python_loop_of_cells_equals_lstm(device, config, shape, seed):
    """LSTMCell stepped in Python, with the same weights, gives LSTM's outputs, input/state and weight gradients."""
    T, B = shape[:2]
    dt, H = config["dtype"], config["hidden_size"]
    config = {**config, "device": device}
    lstm, cell = nblstm.LSTM(**config), nblstm.LSTMCell(**{**config, "seed": seed})
    cell.load_state_dict({k[:-3]: v for k, v in lstm.state_dict().items()})
    x = testing.random_array((T, B, config["input_size"]), dt, seed)
    y, (h_n, c_n) = lstm(x)
    dy = testing.random_array((T, B, H), dt, seed + 1)
    dx, (dh0, dc0) = lstm.backward(dy)

    state, ys, grads = None, [], {k: 0 for k in cell.grads}
    cells = []
    for t in range(T):
        step = nblstm.LSTMCell(**config)
        step.load_state_dict(cell.state_dict())
        state = step(x[t], state)
        ys.append(state[0])
        cells.append(step)
    testing.assert_close(np.stack(ys), y, dt, "y")
    testing.assert_close(state[0], h_n[0], dt, "h_n")
    testing.assert_close(state[1], c_n[0], dt, "c_n")
    dh, dc, dxs = np.zeros((B, H), dt), None, [None] * T
    for t in reversed(range(T)):
        dxs[t], (dh, dc) = cells[t].backward(dy[t] + dh, dc)
        grads = {k: grads[k] + _grads(cells[t])[k] for k in grads}
    testing.assert_close(np.stack(dxs), dx, dt, "dx")
    testing.assert_close(dh, dh0[0], dt, "dh0")
    testing.assert_close(dc, dc0[0], dt, "dc0")
    for k in grads:
        testing.assert_close(grads[k], _grads(lstm)[k + "_l0"], dt, k)


@pytest.mark.parametrize("device", DEVICES)
def test_causality_prefix(device):
    given_on(device, testing.lstm_configs(max_size=max_size(device)), shapes(device, max_I=1, max_H=1),
             testing.seeds(), st.data())(_causality_prefix)(device)


def _causality_prefix(device, config, shape, seed, data):
    """Outputs for x[:t] are the first t outputs for x, and (h_n, c_n) of x[:t] is the state after step t."""
    T, B = shape[:2]
    lstm = nblstm.LSTM(**config, device=device)
    x = testing.random_array((T, B, config["input_size"]), config["dtype"], seed)
    t = data.draw(st.integers(1, T))
    y, _ = lstm(x)
    y_t, (h_t, _) = lstm(x[:t])
    # Not bit-equal: BLAS may sum in another order for another number of rows (T*B) of the input GEMM.
    testing.assert_close(y_t, y[:t], config["dtype"], "y[:t]")
    testing.assert_close(h_t[0], y[t - 1], config["dtype"], "h_t")


@pytest.mark.parametrize("device", DEVICES)
def test_no_grad_keeps_no_tape_and_gives_same_outputs(device):
    lstm = nblstm.LSTM(3, 4, seed=0, device=device)
    x = testing.random_array((6, 2, 3), np.float32, 1)
    y, (h, c) = lstm(x)
    with nblstm.no_grad():
        assert not nblstm.is_grad_enabled()
        y2, (h2, c2) = lstm(x)
    assert nblstm.is_grad_enabled()
    np.testing.assert_array_equal(y2, y)
    np.testing.assert_array_equal(c2, c)
    assert lstm._tape is None
    with pytest.raises(RuntimeError, match="backward: no tape"):
        lstm.backward(y)


@pytest.mark.parametrize("device", DEVICES)
def test_backward_accumulates_until_zero_grad(device):
    lstm = nblstm.LSTM(3, 4, dtype=np.float64, seed=0, device=device)
    x = testing.random_array((5, 2, 3), np.float64, 1)
    y, _ = lstm(x)
    lstm.backward(np.ones_like(y))
    once = {k: g.copy() for k, g in _grads(lstm).items()}
    assert all(np.abs(g).max() > 0 for g in once.values())
    lstm.backward(np.ones_like(y))
    for k, g in _grads(lstm).items():
        np.testing.assert_allclose(g, 2 * once[k], rtol=1e-12, atol=0)
    lstm.zero_grad()
    assert all(not g.any() for g in _grads(lstm).values())


@pytest.mark.parametrize("device", DEVICES)
def test_kept_zeros_and_lengths_stay_few_and_zero(device):
    """The zero states, biases and default lengths kept between calls (Module._const_zeros, _default_lengths): one
    buffer and one lengths array however many batch sizes and lengths a model serves, still zero after training
    steps, and calls with and without given state / lengths agree."""
    lstm = nblstm.LSTM(3, 4, num_layers=2, bias=False, seed=0, device=device)
    for B in range(1, 9):
        for T in (2, 5):
            x = testing.random_array((T, B, 3), np.float32, B + T)
            y, (h, c) = lstm(x)
            lstm.backward(np.ones_like(y))
            y2, _ = lstm(x, (np.zeros_like(h), np.zeros_like(c)), lengths=[T] * B)
            np.testing.assert_array_equal(y2, y)
    assert len(lstm._work["zeros"].shape) == 1 and lstm._work["lengths_BT"] == (8, 5)
    assert not backends.to_host(lstm._work["zeros"]).any()
    assert len([k for k in lstm._work if "zeros" in str(k) or "lengths" in str(k)]) == 3


@pytest.mark.parametrize("device", DEVICES)
def test_returned_y_is_not_the_tape(device):
    """Editing the returned y in place must not change what backward computes."""
    lstm = nblstm.LSTM(2, 3, dtype=np.float64, seed=0, device=device)
    x = testing.random_array((4, 1, 2), np.float64, 0)
    y, _ = lstm(x)
    dx1, _ = lstm.backward(np.ones_like(y))
    y[...] = 123.0
    dx2, _ = lstm.backward(np.ones_like(y))
    np.testing.assert_array_equal(dx1, dx2)


def test_initialization_as_torch_with_forget_bias():
    H = 50
    lstm = nblstm.LSTM(7, H, seed=3, forget_bias=1.0)
    bound = 1 / np.sqrt(H)
    p = lstm.parameters()
    assert {k: v.shape for k, v in p.items()} == {"weight_ih_l0": (4 * H, 7), "weight_hh_l0": (4 * H, H),
                                                  "bias_ih_l0": (4 * H,), "bias_hh_l0": (4 * H,)}
    assert all(v.dtype == np.float32 for v in p.values())
    for k in ("weight_ih_l0", "weight_hh_l0", "bias_hh_l0"):
        assert np.abs(p[k]).max() <= bound and np.abs(p[k]).max() > 0.9 * bound
    b = p["bias_ih_l0"]
    assert np.abs(np.delete(b, np.s_[H:2 * H])).max() <= bound
    assert np.all((b[H:2 * H] >= 1 - bound) & (b[H:2 * H] <= 1 + bound))
    same = nblstm.LSTM(7, H, seed=3, forget_bias=1.0)
    other = nblstm.LSTM(7, H, seed=4, forget_bias=1.0)
    assert all(np.array_equal(v, same.parameters()[k]) for k, v in p.items())
    assert not np.array_equal(p["weight_ih_l0"], other.parameters()["weight_ih_l0"])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("cls,kw", [(nblstm.LSTM, {"batch_first": True}), (nblstm.LSTMCell, {})])
def test_state_dict_round_trip(cls, kw, device):
    a, b = cls(3, 5, seed=1, device=device, **kw), cls(3, 5, seed=2, device=device, **kw)
    sd = a.state_dict()
    sd[next(iter(sd))][...] = 0        # state_dict returns copies
    assert a.state_dict()[next(iter(sd))].any()
    b.load_state_dict(a.state_dict())
    x = testing.random_array((2, 4, 3) if cls is nblstm.LSTM else (4, 3), np.float32, 0)
    out_a, out_b = a(x), b(x)
    np.testing.assert_array_equal(out_a[0], out_b[0])
    assert all(np.array_equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


def test_integer_and_noncontiguous_input_are_converted():
    lstm = nblstm.LSTM(3, 4, seed=0)
    xi = np.arange(2 * 5 * 3).reshape(5, 2, 3) % 3 - 1
    y_int, _ = lstm(xi)
    y_float, _ = lstm(xi.astype(np.float32))
    np.testing.assert_array_equal(y_int, y_float)
    big = testing.random_array((10, 4, 6), np.float32, 0)
    view = big[::2, 1::2, ::2]                        # non-contiguous (5, 2, 3)
    assert not view.flags.c_contiguous
    np.testing.assert_array_equal(lstm(view)[0], lstm(np.ascontiguousarray(view))[0])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_saturating_input_is_finite_without_warnings(dtype, activation, device):
    lstm = nblstm.LSTM(4, 3, dtype=dtype, seed=0, cell_activation=activation, device=device)
    x = np.full((6, 2, 4), 1e30, dtype)
    x[::2] *= -1
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        y, (h, c) = lstm(x)
        dx, (dh0, dc0) = lstm.backward(np.ones_like(y))
    for name, a in [("y", y), ("h", h), ("c", c), ("dx", dx), ("dh0", dh0), ("dc0", dc0), *_grads(lstm).items()]:
        assert np.all(np.isfinite(a)), name
    if activation == "tanh":
        assert np.abs(y).max() <= 1


def test_repr():
    assert repr(nblstm.LSTM(3, 4)) == "LSTM(3, 4)"
    assert repr(nblstm.LSTM(3, 4, batch_first=True, dtype=np.float64, forget_bias=1, cell_activation="relu")) == \
        "LSTM(3, 4, batch_first=True, forget_bias=1.0, cell_activation='relu', dtype=float64)"
    assert repr(nblstm.LSTMCell(2, 8, bias=False)) == "LSTMCell(2, 8, bias=False)"
