"""Bad input: a clear exception naming the argument, the expected and the given; the model unchanged."""
import re

import numpy as np
import pytest

import nblstm


@pytest.fixture
def lstm():
    """A float32 LSTM(3, 4) that has run one forward on x of shape (5, 2, 3)."""
    m = nblstm.LSTM(3, 4, seed=0)
    m(np.ones((5, 2, 3), np.float32))
    return m


def _snapshot(m):
    return m.state_dict(), {k: g.copy() for k, g in m.grads.items()}, m._tape


def _assert_unchanged(m, snap):
    params, grads, tape = snap
    assert all(np.array_equal(v, m.state_dict()[k]) for k, v in params.items())
    assert all(np.array_equal(v, m.grads[k]) for k, v in grads.items())
    assert m._tape is tape


@pytest.mark.parametrize("x,exc,pattern", [
    (np.ones((5, 3), np.float32), ValueError, r"x: expected shape \(\*, \*, 3\) .*got \(5, 3\)"),
    (np.ones((5, 2, 3, 1), np.float32), ValueError, r"x: expected shape \(\*, \*, 3\) .*got \(5, 2, 3, 1\)"),
    (np.ones((5, 2, 4), np.float32), ValueError, r"x: expected shape \(\*, \*, 3\) .*got \(5, 2, 4\)"),
    (np.ones((0, 2, 3), np.float32), ValueError, r"x: expected shape .*got \(0, 2, 3\)"),
    (np.ones((5, 0, 3), np.float32), ValueError, r"x: expected shape .*got \(5, 0, 3\)"),
    (np.ones((5, 2, 3), np.complex64), TypeError, r"x: expected a real-valued array .*got dtype complex64"),
    (np.full((5, 2, 3), "a"), TypeError, r"x: expected a real-valued array .*got dtype <U1"),
    (np.empty((5, 2, 3), object), TypeError, r"x: expected a real-valued array .*got dtype object"),
])
def test_bad_x(lstm, x, exc, pattern):
    snap = _snapshot(lstm)
    with pytest.raises(exc, match=pattern):
        lstm(x)
    _assert_unchanged(lstm, snap)


@pytest.mark.parametrize("state,exc,pattern", [
    ((np.zeros((1, 3, 4)), np.zeros((1, 2, 4))), ValueError, r"state\[0\]: expected shape \(1, 2, 4\) .*got \(1, 3, 4\)"),
    ((np.zeros((1, 2, 4)), np.zeros((2, 4))), ValueError, r"state\[1\]: expected shape \(1, 2, 4\) .*got \(2, 4\)"),
    ((np.zeros((1, 2, 4)),), ValueError, r"state: expected a pair \(h, c\) of arrays of shapes \(1, 2, 4\) and \(1, 2, 4\)"),
    (np.zeros((1, 2, 4)), ValueError, r"state: expected a pair \(h, c\)"),
    ((np.zeros((1, 2, 4), complex), np.zeros((1, 2, 4))), TypeError, r"state\[0\]: expected a real-valued array"),
])
def test_bad_state(lstm, state, exc, pattern):
    snap = _snapshot(lstm)
    with pytest.raises(exc, match=pattern):
        lstm(np.ones((5, 2, 3), np.float32), state)
    _assert_unchanged(lstm, snap)


@pytest.mark.parametrize("dy,state_grad,exc,pattern", [
    (np.ones((4, 2, 4)), None, ValueError, r"dy: expected shape \(5, 2, 4\) .*got \(4, 2, 4\)"),
    (np.ones((5, 2, 3)), None, ValueError, r"dy: expected shape \(5, 2, 4\) .*got \(5, 2, 3\)"),
    (np.ones((5, 2, 4), complex), None, TypeError, r"dy: expected a real-valued array .*got dtype complex128"),
    (np.ones((5, 2, 4)), (np.ones((1, 2, 4)), np.ones((1, 1, 4))), ValueError,
     r"state_grad\[1\]: expected shape \(1, 2, 4\) .*got \(1, 1, 4\)"),
])
def test_bad_backward_arguments(lstm, dy, state_grad, exc, pattern):
    snap = _snapshot(lstm)
    with pytest.raises(exc, match=pattern):
        lstm.backward(dy, state_grad)
    _assert_unchanged(lstm, snap)


def test_backward_before_forward():
    for m, args in ((nblstm.LSTM(3, 4), (np.ones((5, 2, 4)),)), (nblstm.LSTMCell(3, 4), (np.ones((2, 4)),))):
        with pytest.raises(RuntimeError, match="backward: no tape to go back through; call forward first"):
            m.backward(*args)


def test_bad_cell_arguments():
    cell = nblstm.LSTMCell(3, 4)
    with pytest.raises(ValueError, match=r"x: expected shape \(\*, 3\) .*got \(2, 5\)"):
        cell(np.ones((2, 5)))
    with pytest.raises(ValueError, match=r"state\[1\]: expected shape \(2, 4\) .*got \(2, 5\)"):
        cell(np.ones((2, 3)), (np.ones((2, 4)), np.ones((2, 5))))
    cell(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"dc_next: expected shape \(2, 4\) .*got \(3, 4\)"):
        cell.backward(np.ones((2, 4)), np.ones((3, 4)))


@pytest.mark.parametrize("change,exc,pattern", [
    (lambda d: d.pop("bias_hh_l0"), KeyError, r"missing \['bias_hh_l0'\]"),
    (lambda d: d.update(weight_hr_l0=np.zeros((4, 4))), KeyError, r"unexpected \['weight_hr_l0'\]"),
    (lambda d: d.update(weight_hh_l0=np.zeros((16, 5))), ValueError,
     r"state_dict\['weight_hh_l0'\]: expected shape \(16, 4\) .*got \(16, 5\)"),
    (lambda d: d.update(bias_ih_l0=np.zeros(16, complex)), TypeError, r"state_dict\['bias_ih_l0'\]: expected a real"),
])
def test_bad_state_dict_leaves_model_unchanged(lstm, change, exc, pattern):
    d = {k: v + 1 for k, v in lstm.state_dict().items()}
    change(d)
    snap = _snapshot(lstm)
    with pytest.raises(exc, match=pattern):
        lstm.load_state_dict(d)
    _assert_unchanged(lstm, snap)


@pytest.mark.parametrize("kwargs,exc,pattern", [
    (dict(input_size=0, hidden_size=4), ValueError, r"input_size: expected a positive integer, got 0"),
    (dict(input_size=3, hidden_size=-1), ValueError, r"hidden_size: expected a positive integer, got -1"),
    (dict(input_size=3.5, hidden_size=4), ValueError, r"input_size: expected a positive integer, got 3.5"),
    (dict(input_size=3, hidden_size=4, dtype=np.int32), TypeError, r"dtype: expected np.float32 or np.float64"),
    (dict(input_size=3, hidden_size=4, dtype=np.float16), TypeError, r"dtype: expected np.float32 or np.float64"),
    (dict(input_size=3, hidden_size=4, cell_activation="sigmoid"), ValueError,
     r"cell_activation: expected one of 'tanh', 'relu', got 'sigmoid'"),
    (dict(input_size=3, hidden_size=4, forget_bias=float("nan")), ValueError, r"forget_bias: expected a finite"),
    (dict(input_size=3, hidden_size=4, forget_bias="1"), ValueError, r"forget_bias: expected a finite"),
])
def test_bad_constructor_arguments(kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        nblstm.LSTM(**kwargs)


@pytest.mark.parametrize("proj_size", [4, 5, -1, 1.5, True, "2"])
def test_bad_proj_size(proj_size):
    """torch's rule: 0 <= proj_size < hidden_size."""
    with pytest.raises(ValueError, match=r"proj_size: expected an integer in 0\.\.hidden_size - 1 = 3 \(0: no "
                                         r"projection\), got " + re.escape(repr(proj_size))):
        nblstm.LSTM(3, 4, proj_size=proj_size)


def test_lstm_cell_has_no_projection():
    """torch.nn.LSTMCell has no proj_size; nblstm's neither (peephole it has)."""
    with pytest.raises(TypeError, match="proj_size"):
        nblstm.LSTMCell(3, 4, proj_size=2)


@pytest.mark.parametrize("lengths, exc, pattern", [
    ([3, 2], ValueError, r"lengths: expected shape \(3,\), one length per sequence, got \(2,\)"),
    ([3, 2, 6], ValueError, r"lengths: expected lengths in 0\.\.5 \(T, the number of time steps\), got min 2, max 6"),
    ([3, -1, 2], ValueError, r"lengths: expected lengths in 0\.\.5"),
    ([3.0, 2.0, 1.0], TypeError, r"lengths: expected integers, got dtype float64"),
])
def test_bad_lengths(lengths, exc, pattern):
    lstm = nblstm.LSTM(2, 4, seed=0)
    with pytest.raises(exc, match=pattern):
        lstm(np.zeros((5, 3, 2), np.float32), lengths=lengths)


@pytest.mark.parametrize("device", [2, "gpu", "tpu", None])
def test_unknown_device(device):
    """device was refused as later work before the cuda backend; now only "cpu" and "cuda" are accepted."""
    for cls in (nblstm.LSTM, nblstm.LSTMCell):
        with pytest.raises(ValueError, match=r"device: expected one of 'cpu', 'cuda', got "):
            cls(3, 4, device=device)


def test_positional_torch_style_num_layers_is_rejected():
    """torch.nn.LSTM(10, 20, 2) means num_layers=2: keyword-only arguments refuse it rather than misread it."""
    with pytest.raises(TypeError):
        nblstm.LSTM(10, 20, 2)
