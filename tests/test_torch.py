"""Cross-check against torch.nn.LSTM / LSTMCell: torch's weights load as-is and give its outputs and gradients.

torch is a peer, not a dependency: CI installs it (the `compare` extra); elsewhere these tests skip.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import nblstm
from nblstm import testing

torch = pytest.importorskip("torch")

from _torch_check import assert_lstm_matches_torch  # noqa: E402


@given(testing.lstm_shapes(8, 4, 8, 8), st.booleans(), st.booleans(), testing.seeds())
def test_lstm_matches_torch(shape, batch_first, bias, seed):
    T, B, I, H = shape
    torch.manual_seed(seed % 2**31)
    ref = torch.nn.LSTM(I, H, bias=bias, batch_first=batch_first, dtype=torch.float64)
    ours = nblstm.LSTM(I, H, bias=bias, batch_first=batch_first, dtype=np.float64)
    ours.load_state_dict({k: v.numpy() for k, v in ref.state_dict().items()})
    xs = (B, T, I) if batch_first else (T, B, I)
    x, h0, c0 = (testing.random_array(s, np.float64, seed + k) for k, s in enumerate([xs, (1, B, H), (1, B, H)]))
    assert_lstm_matches_torch(ours, ref, x, h0, c0, seed)


def test_lstm_cell_matches_torch_float32():
    torch.manual_seed(0)
    ref = torch.nn.LSTMCell(5, 7)
    cell = nblstm.LSTMCell(5, 7)
    cell.load_state_dict({k: v.numpy() for k, v in ref.state_dict().items()})
    x, h, c = (testing.random_array(s, np.float32, k) for k, s in enumerate([(3, 5), (3, 7), (3, 7)]))
    tx = torch.tensor(x, requires_grad=True)
    th, tc = ref(tx, (torch.tensor(h), torch.tensor(c)))
    h1, c1 = cell(x, (h, c))
    testing.assert_close(h1, th.detach().numpy(), np.float32, "h")
    testing.assert_close(c1, tc.detach().numpy(), np.float32, "c")
    (th.sum() + 2 * tc.sum()).backward()
    dx, _ = cell.backward(np.ones_like(h1), 2 * np.ones_like(c1))
    testing.assert_close(dx, tx.grad.numpy(), np.float32, "dx")
    for name, p in ref.named_parameters():
        testing.assert_close(cell.grads[name], p.grad.numpy(), np.float32, name)
