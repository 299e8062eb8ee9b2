"""The oracle itself: its backward against central finite differences, and its forward against torch."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nblstm import reference as R
from _training_fd import numeric_grad
from nblstm import testing


def _assert_grads(analytic, tensors, loss):
    for name, arr in tensors.items():
        num = numeric_grad(loss, arr)
        # The floor: central differences of an O(1) loss carry ~1e-10 of rounding noise (eps 1e-6), which a tensor
        # whose whole gradient is tiny (w_co of a relu cell that stays at 0: 7e-5, found by hypothesis) would
        # turn into a relative error above 1e-6; with the floor such a tensor is held to 1e-9 absolute.
        scale = max(np.abs(num).max(), 1e-3)
        assert np.abs(analytic[name] - num).max() / scale < 1e-6, name


@given(testing.lstm_shapes(4, 3, 3, 3), st.booleans(), st.booleans(), st.booleans(), testing.activations(),
       testing.seeds(), st.data())
def test_reference_lstm_backward_matches_finite_differences(shape, peephole, project, use_lengths, activation,
                                                            seed, data):
    T, B, I, H = shape
    P = data.draw(st.integers(1, H)) if project else H
    r = lambda s, k: testing.random_array(s, np.float64, seed + k)
    t = dict(x=r((T, B, I), 0), h=r((B, P), 1), c=r((B, H), 2), w_ih=r((4 * H, I), 3), w_hh=r((4 * H, P), 4),
             b_ih=r((4 * H,), 5), b_hh=r((4 * H,), 6))
    if peephole:
        t.update(w_ci=r((H,), 7), w_cf=r((H,), 8), w_co=r((H,), 9))
    if project:
        t["w_hr"] = r((P, H), 10)
    lengths = data.draw(st.lists(st.integers(0, T), min_size=B, max_size=B)) if use_lengths else None
    wy, wh, wc = r((T, B, P), 11), r((B, P), 12), r((B, H), 13)

    def run():
        return R.lstm_forward(t["x"], t["h"], t["c"], t["w_ih"], t["w_hh"], t["b_ih"], t["b_hh"], activation,
                              (t["w_ci"], t["w_cf"], t["w_co"]) if peephole else None, t.get("w_hr"), lengths)

    def loss():
        y, h, c, _ = run()
        return (wy * y).sum() + (wh * h).sum() + (wc * c).sum()

    y, h, c, caches = run()
    if lengths is not None:
        for b, n in enumerate(lengths):
            assert not y[n:, b].any()
    _assert_grads(R.lstm_backward(wy, wh, wc, caches), t, loss)


@given(testing.lstm_shapes(4, 3, 3, 3), st.sampled_from(["tanh", "relu"]), st.booleans(), testing.seeds(), st.data())
def test_reference_rnn_backward_matches_finite_differences(shape, nonlinearity, use_lengths, seed, data):
    T, B, I, H = shape
    r = lambda s, k: testing.random_array(s, np.float64, seed + k)
    t = dict(x=r((T, B, I), 0), h=r((B, H), 1), w_ih=r((H, I), 3), w_hh=r((H, H), 4), b_ih=r((H,), 5),
             b_hh=r((H,), 6))
    lengths = data.draw(st.lists(st.integers(0, T), min_size=B, max_size=B)) if use_lengths else None
    wy, wh = r((T, B, H), 11), r((B, H), 12)

    def loss():
        y, h, _ = R.rnn_forward(t["x"], t["h"], t["w_ih"], t["w_hh"], t["b_ih"], t["b_hh"], nonlinearity, lengths)
        return (wy * y).sum() + (wh * h).sum()

    _, _, caches = R.rnn_forward(t["x"], t["h"], t["w_ih"], t["w_hh"], t["b_ih"], t["b_hh"], nonlinearity, lengths)
    _assert_grads(R.rnn_backward(wy, wh, caches), t, loss)


def test_reference_matches_torch_projection_and_packed_lengths():
    torch = pytest.importorskip("torch")
    T, B, I, H, P = 6, 4, 3, 5, 2
    lengths = [6, 2, 4, 1]
    torch.manual_seed(0)
    ref = torch.nn.LSTM(I, H, proj_size=P, dtype=torch.float64)
    w = {k: v.detach().numpy() for k, v in ref.state_dict().items()}
    x = testing.random_array((T, B, I), np.float64, 0)
    packed = torch.nn.utils.rnn.pack_padded_sequence(torch.tensor(x), lengths, enforce_sorted=False)
    ty, (th, tc) = ref(packed)
    ty, _ = torch.nn.utils.rnn.pad_packed_sequence(ty, total_length=T)
    y, h, c, _ = R.lstm_forward(x, np.zeros((B, P)), np.zeros((B, H)), w["weight_ih_l0"], w["weight_hh_l0"],
                                w["bias_ih_l0"], w["bias_hh_l0"], w_hr=w["weight_hr_l0"], lengths=lengths)
    testing.assert_close(y, ty.detach().numpy(), np.float64, "y")
    testing.assert_close(h, th[0].detach().numpy(), np.float64, "h_n")
    testing.assert_close(c, tc[0].detach().numpy(), np.float64, "c_n")


def test_reference_rnn_matches_torch():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    ref = torch.nn.RNN(3, 4, dtype=torch.float64)
    w = {k: v.detach().numpy() for k, v in ref.state_dict().items()}
    x, h0 = testing.random_array((5, 2, 3), np.float64, 0), testing.random_array((2, 4), np.float64, 1)
    ty, th = ref(torch.tensor(x), torch.tensor(h0[None]))
    y, h, _ = R.rnn_forward(x, h0, w["weight_ih_l0"], w["weight_hh_l0"], w["bias_ih_l0"], w["bias_hh_l0"])
    testing.assert_close(y, ty.detach().numpy(), np.float64, "y")
    testing.assert_close(h, th[0].detach().numpy(), np.float64, "h_n")


def _torch_lstm(torch, I, H, L, bidirectional, P, bias=True):
    torch.manual_seed(0)
    return torch.nn.LSTM(I, H, num_layers=L, bidirectional=bidirectional, proj_size=P, bias=bias,
                         dtype=torch.float64)


@pytest.mark.parametrize("L,bidirectional,P,use_lengths", [(1, True, 0, False), (2, False, 0, True),
                                                           (2, True, 2, True), (3, True, 0, True)])
def test_reference_stacked_matches_torch(L, bidirectional, P, use_lengths):
    """Forward and every gradient of the stacked / bidirectional / projected oracle against torch."""
    torch = pytest.importorskip("torch")
    T, B, I, H = 5, 3, 3, 4
    D, Pout = (2 if bidirectional else 1), (P or H)
    lengths = [5, 2, 3] if use_lengths else None
    ref = _torch_lstm(torch, I, H, L, bidirectional, P)
    params = {k: v.detach().numpy().copy() for k, v in ref.state_dict().items()}
    x = testing.random_array((T, B, I), np.float64, 0)
    h0, c0 = testing.random_array((L * D, B, Pout), np.float64, 1), testing.random_array((L * D, B, H), np.float64, 2)
    tx, th0, tc0 = (torch.tensor(a, requires_grad=True) for a in (x, h0, c0))
    if lengths:
        packed = torch.nn.utils.rnn.pack_padded_sequence(tx, lengths, enforce_sorted=False)
        ty, (th, tc) = ref(packed, (th0, tc0))
        ty, _ = torch.nn.utils.rnn.pad_packed_sequence(ty, total_length=T)
    else:
        ty, (th, tc) = ref(tx, (th0, tc0))
    y, h, c, caches = R.stacked_lstm_forward(x, h0, c0, params, L, bidirectional, lengths=lengths)
    for name, a, b in (("y", y, ty), ("h_n", h, th), ("c_n", c, tc)):
        testing.assert_close(a, b.detach().numpy(), np.float64, name)
    wy, wh, wc = (testing.random_array(a.shape, np.float64, 3 + k) for k, a in enumerate((y, h, c)))
    torch.autograd.backward([ty, th, tc], [torch.tensor(wy), torch.tensor(wh), torch.tensor(wc)])
    g = R.stacked_lstm_backward(wy, wh, wc, caches)
    for name, a, b in (("x", g["x"], tx), ("h0", g["h0"], th0), ("c0", g["c0"], tc0)):
        testing.assert_close(a, b.grad.numpy(), np.float64, name)
    for name, p in ref.named_parameters():
        testing.assert_close(g[name], p.grad.numpy(), np.float64, name)


def test_reference_stacked_peephole_dropout_matches_finite_differences():
    T, B, I, H, L = 4, 2, 3, 3, 2
    rng = np.random.default_rng(0)
    params = {}
    for layer in range(L):
        for sfx in (f"_l{layer}", f"_l{layer}_reverse"):
            In = I if layer == 0 else 2 * H
            params.update({f"weight_ih{sfx}": rng.uniform(-1, 1, (4 * H, In)), f"weight_hh{sfx}": rng.uniform(-1, 1, (4 * H, H)),
                           f"bias_ih{sfx}": rng.uniform(-1, 1, 4 * H), f"bias_hh{sfx}": rng.uniform(-1, 1, 4 * H),
                           f"weight_ci{sfx}": rng.uniform(-1, 1, H), f"weight_cf{sfx}": rng.uniform(-1, 1, H),
                           f"weight_co{sfx}": rng.uniform(-1, 1, H)})
    x, h0, c0 = rng.uniform(-1, 1, (T, B, I)), rng.uniform(-1, 1, (2 * L, B, H)), rng.uniform(-1, 1, (2 * L, B, H))
    masks = [(rng.random((T, B, 2 * H)) > 0.3) / 0.7]
    lengths = [4, 2]
    wy, wh, wc = rng.standard_normal((T, B, 2 * H)), rng.standard_normal((2 * L, B, H)), rng.standard_normal((2 * L, B, H))

    def loss():
        y, h, c, _ = R.stacked_lstm_forward(x, h0, c0, params, L, True, lengths=lengths, dropout_masks=masks)
        return (wy * y).sum() + (wh * h).sum() + (wc * c).sum()

    _, _, _, caches = R.stacked_lstm_forward(x, h0, c0, params, L, True, lengths=lengths, dropout_masks=masks)
    g = R.stacked_lstm_backward(wy, wh, wc, caches)
    _assert_grads(g, {"x": x, "h0": h0, "c0": c0, **params}, loss)
