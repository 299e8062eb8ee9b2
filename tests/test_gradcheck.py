"""Analytic gradients against central finite differences in float64, and gradcheck's own behaviour."""
import numba
import numpy as np
import pytest

import nblstm
from _devices import DEVICES, given_on
from nblstm import testing

GRAD_TOL = 1e-6     # relative error bound of the issue; measured errors are ~1e-9 (see README)


def _small(device, cpu, cuda):
    """Size caps: finite differences run 2 forwards per element, and on cuda each is a few simulated launches."""
    return cpu if device == "cpu" else cuda


@pytest.mark.parametrize("device", DEVICES)
def test_lstm_gradients_match_finite_differences(device):
    given_on(device, testing.lstm_configs(dtypes=[np.float64], max_size=_small(device, 5, 2)),
             testing.lstm_shapes(*_small(device, (4, 3), (2, 2)), 1, 1),
             testing.seeds(), cuda_share=10)(_lstm_gradients_match_finite_differences)(device)


def _lstm_gradients_match_finite_differences(device, config, shape, seed):
    T, B = shape[:2]
    lstm = nblstm.LSTM(**config, device=device)
    x = testing.random_array((T, B, config["input_size"]), np.float64, seed)
    errors = nblstm.gradcheck(lstm, x, seed=seed, tol=GRAD_TOL)
    expected = {"x", "h0", "c0", "weight_ih_l0", "weight_hh_l0"} | ({"bias_ih_l0", "bias_hh_l0"} if config["bias"] else set())
    assert set(errors) == expected


@pytest.mark.parametrize("device", DEVICES)
def test_lstm_cell_gradients_match_finite_differences(device):
    given_on(device, testing.lstm_configs(dtypes=[np.float64], max_size=_small(device, 5, 2)),
             testing.sizes(max_value=_small(device, 3, 2)),
             testing.seeds(), cuda_share=10)(_lstm_cell_gradients_match_finite_differences)(device)


def _lstm_cell_gradients_match_finite_differences(device, config, B, seed):
    cell = nblstm.LSTMCell(**config, device=device)
    x = testing.random_array((B, config["input_size"]), np.float64, seed)
    errors = nblstm.gradcheck(cell, x, seed=seed, tol=GRAD_TOL)
    assert {"x", "h0", "c0", "weight_ih", "weight_hh"} <= set(errors)


@pytest.mark.parametrize("device", DEVICES)
def test_batch_first_gradients(device):
    I, H, T = (2, 3, 5) if device == "cpu" else (1, 1, 2)
    lstm = nblstm.LSTM(I, H, batch_first=True, dtype=np.float64, seed=0, forget_bias=1.0, device=device)
    x = testing.random_array((2, T, I), np.float64, 1)
    errors = nblstm.gradcheck(lstm, x, tol=GRAD_TOL)
    assert max(errors.values()) < GRAD_TOL


def test_time_chunked_gradients_match_finite_differences():
    """A B = 1 layer with enough work runs its backward in time chunks on two of numba's threads (cpu.py,
    _overlap_chunks): its gradients, peepholes and a projection included, against central differences."""
    from nblstm.kernels import cpu
    T, I, H, P = 120, 64, 32, 16
    lstm = nblstm.LSTM(I, H, proj_size=P, peephole=True, dtype=np.float64, seed=0, forget_bias=1.0)
    work = T * (4 * H * (2 * I + P) + P * H)    # lstm_backward's weight-gradient and dx products
    assert cpu._split_count(1, H, P) == 1
    assert (cpu._overlap_chunks(1, T, work) > 1) == (numba.get_num_threads() > 1)
    x = testing.random_array((T, 1, I), np.float64, 3)
    errors = nblstm.gradcheck(lstm, x, seed=1, tol=GRAD_TOL)
    assert {"x", "h0", "c0", "weight_ih_l0", "weight_hh_l0", "weight_hr_l0", "weight_ci_l0"} <= set(errors)
    assert max(errors.values()) < GRAD_TOL


def test_step_by_step_input_products_gradients_match_finite_differences():
    """A layer whose batch rows split into chunks of FUSED_MIN_ROWS rows or more computes its input products step by
    step inside each chunk's loop (cpu.py): its gradients, peepholes included, against central differences."""
    from nblstm.kernels import cpu
    threads = numba.get_num_threads()
    T, B, I, H = 3, max(2, threads) * cpu.FUSED_MIN_ROWS, 3, 16
    assert cpu._split_count(B, H, H) == (1 if threads < 2 else threads)    # chunks of FUSED_MIN_ROWS rows
    lstm = nblstm.LSTM(I, H, peephole=True, dtype=np.float64, seed=0, forget_bias=1.0)
    x = testing.random_array((T, B, I), np.float64, 4)
    errors = nblstm.gradcheck(lstm, x, seed=2, tol=GRAD_TOL)
    assert {"x", "h0", "c0", "weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "weight_ci_l0"} <= set(errors)
    assert max(errors.values()) < GRAD_TOL


class _WrongGradient(nblstm.LSTM):
    """An LSTM whose backward is off in one element of dL/dW_hh: gradcheck must say which tensor and where."""

    def backward(self, dy, state_grad=None):
        out = super().backward(dy, state_grad)
        self.grads["weight_hh_l0"][5, 2] += 1e-3
        return out


def test_gradcheck_names_the_wrong_tensor_and_element():
    model = _WrongGradient(3, 4, dtype=np.float64, seed=0)
    x = testing.random_array((4, 2, 3), np.float64, 0)
    errors = nblstm.gradcheck(model, x)
    assert errors["weight_hh_l0"] > 1e-4
    assert errors.where["weight_hh_l0"][0] == (5, 2)
    assert max(v for k, v in errors.items() if k != "weight_hh_l0") < GRAD_TOL
    with pytest.raises(nblstm.GradcheckError, match=r"weight_hh_l0 relative error .* at index \(5, 2\)"):
        nblstm.gradcheck(model, x, tol=GRAD_TOL)
    assert "weight_hh_l0" in str(errors)


def test_gradcheck_restores_grads_and_parameters():
    lstm = nblstm.LSTM(2, 3, dtype=np.float64, seed=0)
    lstm.grads["weight_ih_l0"][...] = 7.0
    before = lstm.state_dict()
    nblstm.gradcheck(lstm, testing.random_array((3, 1, 2), np.float64, 0))
    assert (lstm.grads["weight_ih_l0"] == 7.0).all()
    assert all(np.array_equal(v, lstm.state_dict()[k]) for k, v in before.items())


def test_gradcheck_needs_float64():
    with pytest.raises(TypeError, match="model: gradcheck needs a float64 model"):
        nblstm.gradcheck(nblstm.LSTM(2, 3), np.zeros((2, 1, 2)))
