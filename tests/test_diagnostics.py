"""nblstm.diagnostics: per-step gradients against the models' own (compiled) backward, gate statistics against the
model's forward, and the finite-difference error curve's shape."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import nblstm
from nblstm import diagnostics as D
from nblstm import testing


def _tb(batch_first):
    return (lambda a: np.ascontiguousarray(a.transpose(1, 0, 2))) if batch_first else (lambda a: a)


def _lstm_case(shape, act, bias, batch_first, seed, dtype=np.float64):
    T, B, I, H = shape
    lstm = nblstm.LSTM(I, H, dtype=dtype, seed=seed, bias=bias, cell_activation=act, batch_first=batch_first,
                       forget_bias=1.0)
    rnd = lambda s, k: testing.random_array(s, dtype, seed + k)  # noqa: E731
    x, dy = rnd((T, B, I), 1), rnd((T, B, H), 2)
    state, state_grad = (rnd((1, B, H), 3), rnd((1, B, H), 4)), (rnd((1, B, H), 5), rnd((1, B, H), 6))
    return lstm, x, dy, state, state_grad


@given(testing.lstm_shapes(6, 3, 3, 4), testing.activations(), st.booleans(), st.booleans(), testing.seeds())
def test_lstm_step_gradients_match_the_models_backward(shape, act, bias, batch_first, seed):
    T, B, I, H = shape
    lstm, x, dy, state, state_grad = _lstm_case(shape, act, bias, batch_first, seed)
    tb = _tb(batch_first)
    g = D.step_gradients(lstm, tb(x), tb(dy), state, state_grad)
    assert g.dh.shape == (T + 1, B, H) and g.dc.shape == (T + 1, B, H) and g.da.shape == (T, B, 4 * H)
    y, _ = lstm(tb(x), state)
    dx, (dh0, dc0) = lstm.backward(tb(dy), state_grad)
    testing.assert_close(g.dh[0], dh0[0], np.float64, "dL/dh_0")
    testing.assert_close(g.dc[0], dc0[0], np.float64, "dL/dc_0")
    testing.assert_close(g.dx, tb(dx), np.float64, "dx")
    testing.assert_close(g.dh[T], dy[T - 1] + state_grad[0][0], np.float64, "dL/dh_T")
    testing.assert_close(g.dc[T], state_grad[1][0], np.float64, "dL/dc_T")
    # the parameter gradients are sums over the per-step terms: da_t^T [x_t | h_{t-1}] and da_t
    h_prev = np.concatenate([state[0], tb(y)[:-1]])                 # h_0 .. h_{T-1}
    testing.assert_close(np.einsum("tbk,tbi->ki", g.da, x), lstm.grads["weight_ih_l0"], np.float64, "W_ih")
    testing.assert_close(np.einsum("tbk,tbh->kh", g.da, h_prev), lstm.grads["weight_hh_l0"], np.float64, "W_hh")
    if bias:
        testing.assert_close(g.da.sum((0, 1)), lstm.grads["bias_ih_l0"], np.float64, "b_ih")
    norms = np.linalg.norm(g.dh.reshape(T + 1, -1), axis=1), np.linalg.norm(g.dc.reshape(T + 1, -1), axis=1)
    np.testing.assert_allclose(g.dh_norm, norms[0], rtol=1e-12)
    np.testing.assert_allclose(g.dc_norm, norms[1], rtol=1e-12)


@given(testing.lstm_shapes(6, 3, 3, 4), testing.activations(), testing.seeds(), st.data())
def test_every_step_is_the_gradient_of_the_rest_of_the_sequence(shape, act, seed, data):
    """dL/dh_t - dy[t-1] and dL/dc_t are the model's dh0, dc0 for the suffix x[t:] run from state t."""
    T, B, I, H = shape
    lstm, x, dy, state, state_grad = _lstm_case(shape, act, True, False, seed)
    g = D.step_gradients(lstm, x, dy, state, state_grad)
    t = data.draw(st.integers(1, T - 1)) if T > 1 else None
    if t is None:
        return
    _, (h_t, c_t) = lstm(x[:t], state)                               # state t from the compiled forward
    lstm(x[t:], (h_t, c_t))
    _, (dh_t, dc_t) = lstm.backward(dy[t:], state_grad)
    testing.assert_close(g.dh[t] - dy[t - 1], dh_t[0], np.float64, f"dL/dh_{t}")
    testing.assert_close(g.dc[t], dc_t[0], np.float64, f"dL/dc_{t}")


@given(testing.lstm_shapes(6, 3, 3, 4), st.sampled_from(["tanh", "relu"]), st.booleans(), st.booleans(),
       testing.seeds(), st.data())
def test_rnn_step_gradients_match_the_models_backward(shape, nonlinearity, bias, batch_first, seed, data):
    T, B, I, H = shape
    rnn = nblstm.RNN(I, H, nonlinearity=nonlinearity, bias=bias, batch_first=batch_first, dtype=np.float64,
                     seed=seed)
    rnd = lambda s, k: testing.random_array(s, np.float64, seed + k)  # noqa: E731
    x, dy, h0, dh_n = rnd((T, B, I), 1), rnd((T, B, H), 2), rnd((1, B, H), 3), rnd((1, B, H), 4)
    tb = _tb(batch_first)
    g = D.step_gradients(rnn, tb(x), tb(dy), h0, dh_n)
    assert g.dc is None and g.dc_norm is None and g.dh.shape == (T + 1, B, H)
    y, _ = rnn(tb(x), h0)
    dx, dh0 = rnn.backward(tb(dy), dh_n)
    testing.assert_close(g.dh[0], dh0[0], np.float64, "dL/dh_0")
    testing.assert_close(g.dx, tb(dx), np.float64, "dx")
    h_prev = np.concatenate([h0, tb(y)[:-1]])
    testing.assert_close(np.einsum("tbk,tbh->kh", g.da, h_prev), rnn.grads["weight_hh_l0"], np.float64, "W_hh")
    t = data.draw(st.integers(1, T))
    _, h_t = rnn(tb(x[:t]), h0)
    if t < T:
        rnn(tb(x[t:]), h_t)
        _, dh_t = rnn.backward(tb(dy[t:]), dh_n)
        testing.assert_close(g.dh[t] - dy[t - 1], dh_t[0], np.float64, f"dL/dh_{t}")


@given(testing.seeds(), st.floats(0.1, 0.9))
def test_rnn_gradient_norm_shrinks_at_least_geometrically(seed, rho):
    """||dL/dh_t|| <= ||W_hh||_2 ||dL/dh_{t+1}||, |tanh'| <= 1: with a loss at the end, the vanishing gradient."""
    T, B, H = 30, 3, 8
    rnn = nblstm.RNN(2, H, dtype=np.float64, seed=seed)
    p = rnn.state_dict()
    p["weight_hh_l0"] *= rho / np.linalg.norm(p["weight_hh_l0"], 2)
    rnn.load_state_dict(p)
    dy = np.zeros((T, B, H))
    dy[-1] = testing.random_array((B, H), np.float64, seed)
    g = D.step_gradients(rnn, testing.random_array((T, B, 2), np.float64, seed + 1), dy)
    assert np.all(g.dh_norm[:-1] <= rho * g.dh_norm[1:] * (1 + 1e-12))
    assert g.dh_norm[0] <= rho ** T * g.dh_norm[-1] * (1 + 1e-9)


def test_lstm_with_forget_bias_keeps_the_gradient_the_rnn_loses():
    T, B, H = 60, 8, 16
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, 1))
    dy = np.zeros((T, B, H))
    dy[-1] = rng.standard_normal((B, H))
    rnn = D.step_gradients(nblstm.RNN(1, H, dtype=np.float64, seed=0), x, dy).dh_norm
    lstm = {fb: D.step_gradients(nblstm.LSTM(1, H, dtype=np.float64, seed=0, forget_bias=fb), x, dy).dh_norm
            for fb in (0.0, 3.0)}
    lag = 50
    assert lstm[3.0][T - lag] > 1e3 * lstm[0.0][T - lag]                 # the forget gate carries it back
    assert lstm[3.0][T - lag] > 1e6 * rnn[T - lag]


def test_step_gradients_float32_and_no_side_effects():
    shape = (5, 2, 3, 4)
    lstm64, x, dy, state, state_grad = _lstm_case(shape, "tanh", True, False, 7)
    g64 = D.step_gradients(lstm64, x, dy, state, state_grad)
    lstm32 = nblstm.LSTM(3, 4, seed=7, forget_bias=1.0)
    lstm32.load_state_dict(lstm64.state_dict())
    lstm32(x)
    lstm32.backward(dy.astype(np.float32))
    grads = {k: v.copy() for k, v in lstm32.grads.items()}
    g32 = D.step_gradients(lstm32, x, dy, state, state_grad)
    assert g32.dh.dtype == np.float32 and g32.dh_norm.dtype == np.float64
    testing.assert_close(g32.dh, g64.dh, np.float32, "dh")
    testing.assert_close(g32.dc, g64.dc, np.float32, "dc")
    assert all(np.array_equal(grads[k], lstm32.grads[k]) for k in grads)     # grads untouched
    lstm32.backward(dy.astype(np.float32))                                   # the tape still works


def test_step_gradients_refuses_what_it_does_not_handle():
    x, dy = np.zeros((4, 2, 3)), np.zeros((4, 2, 5))
    with pytest.raises(ValueError, match="one layer in one direction"):
        D.step_gradients(nblstm.LSTM(3, 5, num_layers=2, dtype=np.float64), x, dy)
    with pytest.raises(ValueError, match="one layer in one direction"):
        D.gate_statistics(nblstm.LSTM(3, 5, bidirectional=True, dtype=np.float64), x)
    with pytest.raises(TypeError, match="nblstm.LSTM or nblstm.RNN"):
        D.step_gradients(nblstm.LSTMCell(3, 5), x, dy)
    with pytest.raises(ValueError, match="dy: expected the shape of y"):
        D.step_gradients(nblstm.LSTM(3, 5, dtype=np.float64), x, np.zeros((4, 2, 4)))
    with pytest.raises(ValueError, match=r"state\[1\]: expected shape \(1, 2, 5\)"):
        D.step_gradients(nblstm.LSTM(3, 5, dtype=np.float64), x, dy, state=(np.zeros((1, 2, 5)), np.zeros((2, 5))))
    with pytest.raises(TypeError, match="nblstm.LSTM"):
        D.gate_statistics(nblstm.RNN(3, 5), x)


@given(testing.lstm_shapes(8, 3, 3, 5), testing.activations(), testing.seeds())
def test_gate_statistics_reproduce_the_models_forward(shape, act, seed):
    T, B, I, H = shape
    lstm, x, _, state, _ = _lstm_case(shape, act, True, False, seed)
    s = D.gate_statistics(lstm, x, state)
    y, (h_n, c_n) = lstm(x, state)
    i, f, g, o = (s.gates[k] for k in "ifgo")
    c_prev = np.concatenate([state[1], s.c[:-1]])
    testing.assert_close(f * c_prev + i * g, s.c, np.float64, "c_t = f c_{t-1} + i g")
    act_c = np.tanh(s.c) if act == "tanh" else np.maximum(s.c, 0)
    testing.assert_close(o * act_c, y, np.float64, "h_t = o act(c_t) against the model's y")
    testing.assert_close(s.c[-1], c_n[0], np.float64, "c_n")
    testing.assert_close(s.h, y, np.float64, "h")
    for k in "ifgo":
        np.testing.assert_allclose(s.mean[k], s.gates[k].mean(axis=(1, 2)), rtol=1e-12)
        assert s.saturation[k].shape == (T,) and np.all((0 <= s.saturation[k]) & (s.saturation[k] <= 1))
    assert np.all((i > 0) & (i < 1) & (f > 0) & (f < 1) & (o > 0) & (o < 1) & (np.abs(g) < 1))


def test_saturation_thresholds():
    """Weights zero, biases chosen per unit: each gate's saturation share is the share of units past the
    thresholds 0.05 / 0.95 (sigmoid) and |g| > 0.95 (tanh)."""
    H = 4
    lstm = nblstm.LSTM(2, H, dtype=np.float64, seed=0)
    p = {k: np.zeros_like(v) for k, v in lstm.state_dict().items()}
    logit = lambda q: np.log(q / (1 - q))  # noqa: E731
    p["bias_ih_l0"][0:H] = logit(np.array([0.04, 0.06, 0.94, 0.96]))         # i: 2 of 4 saturated
    p["bias_ih_l0"][H:2 * H] = logit(np.array([0.5, 0.5, 0.5, 0.999]))       # f: 1 of 4
    p["bias_ih_l0"][2 * H:3 * H] = np.arctanh([-0.96, -0.94, 0.94, 0.0])     # g: 1 of 4
    p["bias_ih_l0"][3 * H:] = logit(np.array([0.01, 0.02, 0.99, 0.999]))     # o: 4 of 4
    lstm.load_state_dict(p)
    s = D.gate_statistics(lstm, np.ones((3, 5, 2)))
    expect = {"i": 0.5, "f": 0.25, "g": 0.25, "o": 1.0}
    for k, share in expect.items():
        np.testing.assert_allclose(s.saturation[k], share, err_msg=k)
    np.testing.assert_allclose(s.mean["i"], 0.5, rtol=1e-12)
    assert (D.SIGMOID_LOW, D.SIGMOID_HIGH, D.TANH_HIGH) == (0.05, 0.95, 0.95)


def _fd_models():
    return {
        "lstm": lambda dt: nblstm.LSTM(3, 4, dtype=dt, seed=0, forget_bias=1.0),
        "rnn": lambda dt: nblstm.RNN(3, 4, dtype=dt, seed=0),
        "sequence model": lambda dt: nblstm.SequenceModel(nblstm.LSTM(3, 4, dtype=dt, seed=0),
                                                          nblstm.Linear(4, 2, dtype=dt, seed=1)),
    }


@pytest.mark.parametrize("kind", list(_fd_models()))
def test_finite_difference_error_curve_is_a_v(kind):
    x = np.random.default_rng(0).standard_normal((6, 2, 3))
    steps = np.logspace(-12, 0, 25)
    res = {}
    for dt in (np.float64, np.float32):
        model = _fd_models()[kind](dt)
        model(x)
        model.backward(np.ones_like(model(x)[0]))
        before = {k: v.copy() for k, v in model.state_dict().items()}
        grads = {k: v.copy() for k, v in model.grads.items()}
        res[dt] = r = D.finite_difference_errors(model, x, steps, directions=4)
        assert r.errors.shape == (25, 4) and r.median.shape == (25,)
        assert r.best_error == r.median.min() and r.best_step == steps[np.argmin(r.median)]
        assert all(np.array_equal(before[k], v) for k, v in model.state_dict().items())   # restored exactly
        assert all(np.array_equal(grads[k], v) for k, v in model.grads.items())
        # right arm: truncation error ~ eps^2 (a factor ~100 per decade of eps at the large end)
        assert 20 < r.median[-1] / r.median[-3] < 500
    r64, r32 = res[np.float64], res[np.float32]
    assert r64.best_error < 1e-8 and 1e-7 <= r64.best_step <= 1e-3
    assert r32.best_error > 1e-7 and 1e-4 <= r32.best_step <= 1e-1
    assert r64.best_step < r32.best_step
    assert np.all(r32.errors[0] == 1.0)        # eps = 1e-12 is lost in float32 rounding: the difference is 0
    assert r64.median[0] > 1e3 * r64.best_error       # left arm: round-off ~ u / eps


def test_finite_difference_errors_checks_its_arguments():
    lstm = nblstm.LSTM(3, 4, dtype=np.float64, seed=0)
    x = np.zeros((2, 1, 3))
    for steps in ([], [1e-3, -1.0], [[1e-3]]):
        with pytest.raises(ValueError, match="steps: expected"):
            D.finite_difference_errors(lstm, x, steps)
    with pytest.raises(ValueError, match="directions: expected a positive integer"):
        D.finite_difference_errors(lstm, x, directions=0)


def test_public_names():
    assert nblstm.step_gradients is D.step_gradients and nblstm.gate_statistics is D.gate_statistics
    assert nblstm.finite_difference_errors is D.finite_difference_errors and "diagnostics" in nblstm.__all__
