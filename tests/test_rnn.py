"""nblstm.RNN (Elman, torch.nn.RNN's names and semantics) on both backends: oracle, finite differences, torch."""
import numpy as np
import pytest
from hypothesis import strategies as st

import nblstm
from _devices import DEVICES, given_on, max_size, shapes
from nblstm import reference as R
from nblstm import testing

GRAD_TOL = 1e-6


def _lengths(data, T, B):
    return data.draw(st.none() | st.lists(st.integers(0, T), min_size=B, max_size=B))


@pytest.mark.parametrize("device", DEVICES)
def test_rnn_matches_reference(device):
    given_on(device, shapes(device), testing.float_dtypes(), st.sampled_from(["tanh", "relu"]), st.booleans(),
             st.booleans(), testing.seeds(), st.data())(_rnn_matches_reference)(device)


def _rnn_matches_reference(device, shape, dt, nonlinearity, bias, batch_first, seed, data):
    T, B, I, H = shape
    rnn = nblstm.RNN(I, H, nonlinearity=nonlinearity, bias=bias, batch_first=batch_first, dtype=dt, seed=seed,
                     device=device)
    lengths = _lengths(data, T, B)
    x, h0 = testing.random_array((T, B, I), dt, seed), testing.random_array((1, B, H), dt, seed + 1)
    tb = (lambda a: a.transpose(1, 0, 2)) if batch_first else (lambda a: a)
    y, h_n = rnn(tb(x), h0, lengths=lengths)
    p = {k: v.astype(np.float64) for k, v in rnn.state_dict().items()}
    zero = np.zeros(H)
    ry, rh, caches = R.rnn_forward(x.astype(np.float64), h0[0].astype(np.float64), p["weight_ih_l0"],
                                   p["weight_hh_l0"], p.get("bias_ih_l0", zero), p.get("bias_hh_l0", zero),
                                   nonlinearity, lengths)
    assert y.dtype == dt and h_n.shape == (1, B, H)
    testing.assert_close(tb(y), ry, dt, "y")
    testing.assert_close(h_n[0], rh, dt, "h_n")
    dy, dh = testing.random_array((T, B, H), dt, seed + 2), testing.random_array((1, B, H), dt, seed + 3)
    dx, dh0 = rnn.backward(tb(dy), dh)
    g = R.rnn_backward(dy.astype(np.float64), dh[0].astype(np.float64), caches)
    testing.assert_close(tb(dx), g["x"], dt, "dx")
    testing.assert_close(dh0[0], g["h"], dt, "dh0")
    for k in rnn.grads:
        testing.assert_close(nblstm.backends.to_host(rnn.grads[k]), g[k.replace("weight", "w").replace("bias", "b")
                             .replace("_l0", "")], dt, k)


@pytest.mark.parametrize("device", DEVICES)
def test_rnn_gradients_match_finite_differences(device):
    given_on(device, shapes(device, 4, 3, 3, 3), st.sampled_from(["tanh", "relu"]), st.booleans(), testing.seeds(),
             st.data(), cuda_share=10)(_rnn_gradients)(device)


def _rnn_gradients(device, shape, nonlinearity, bias, seed, data):
    T, B, I, H = shape
    rnn = nblstm.RNN(I, H, nonlinearity=nonlinearity, bias=bias, dtype=np.float64, seed=seed, device=device)
    lengths = _lengths(data, T, B)
    errors = nblstm.gradcheck(rnn, testing.random_array((T, B, I), np.float64, seed), seed=seed, tol=GRAD_TOL,
                              lengths=lengths)
    assert {"x", "h0", "weight_ih_l0", "weight_hh_l0"} <= set(errors)


def test_rnn_matches_torch_with_packed_lengths():
    torch = pytest.importorskip("torch")
    T, B, I, H = 6, 4, 3, 5
    lengths = [6, 1, 3, 4]
    for nonlinearity in ("tanh", "relu"):
        torch.manual_seed(0)
        ref = torch.nn.RNN(I, H, nonlinearity=nonlinearity, batch_first=True, dtype=torch.float64)
        rnn = nblstm.RNN(I, H, nonlinearity=nonlinearity, batch_first=True, dtype=np.float64)
        rnn.load_state_dict({k: v.numpy() for k, v in ref.state_dict().items()})
        x, h0 = testing.random_array((B, T, I), np.float64, 0), testing.random_array((1, B, H), np.float64, 1)
        tx, th0 = torch.tensor(x, requires_grad=True), torch.tensor(h0, requires_grad=True)
        packed = torch.nn.utils.rnn.pack_padded_sequence(tx, lengths, batch_first=True, enforce_sorted=False)
        ty, th = ref(packed, th0)
        ty, _ = torch.nn.utils.rnn.pad_packed_sequence(ty, batch_first=True, total_length=T)
        y, h = rnn(x, h0, lengths=lengths)
        testing.assert_close(y, ty.detach().numpy(), np.float64, "y")
        testing.assert_close(h, th.detach().numpy(), np.float64, "h_n")
        dy, dh = testing.random_array(y.shape, np.float64, 2), testing.random_array(h.shape, np.float64, 3)
        torch.autograd.backward([ty, th], [torch.tensor(dy), torch.tensor(dh)])
        dx, dh0 = rnn.backward(dy, dh)
        testing.assert_close(dx, tx.grad.numpy(), np.float64, "dx")
        testing.assert_close(dh0, th0.grad.numpy(), np.float64, "dh0")
        for name, p in ref.named_parameters():
            testing.assert_close(rnn.grads[name], p.grad.numpy(), np.float64, name)


@pytest.mark.parametrize("lengths,exc,pattern", [
    ([1.5, 2], TypeError, r"lengths: expected integers, got dtype float64"),
    ([1, 2, 3], ValueError, r"lengths: expected shape \(2,\), one length per sequence, got \(3,\)"),
    ([4, 6], ValueError, r"lengths: expected lengths in 0..5 \(T, the number of time steps\), got min 4, max 6"),
    ([-1, 2], ValueError, r"lengths: expected lengths in 0..5"),
])
def test_bad_lengths(lengths, exc, pattern):
    rnn = nblstm.RNN(3, 4)
    with pytest.raises(exc, match=pattern):
        rnn(np.ones((5, 2, 3)), lengths=lengths)
    assert rnn._tape is None


def test_rnn_bad_arguments():
    with pytest.raises(ValueError, match="nonlinearity: expected one of 'tanh', 'relu', got 'sigmoid'"):
        nblstm.RNN(3, 4, nonlinearity="sigmoid")
    rnn = nblstm.RNN(3, 4)
    with pytest.raises(ValueError, match=r"h0: expected shape \(1, 2, 4\)"):
        rnn(np.ones((5, 2, 3)), np.ones((2, 4)))
    with pytest.raises(RuntimeError, match="backward: no tape"):
        rnn.backward(np.ones((5, 2, 4)))
    assert repr(nblstm.RNN(3, 4, nonlinearity="relu", dtype=np.float64)) == "RNN(3, 4, nonlinearity='relu', dtype=float64)"


def _torch_rnn(torch, I, H, L, D, nonlinearity, bias, batch_first, seed):
    torch.manual_seed(seed)
    return torch.nn.RNN(I, H, num_layers=L, nonlinearity=nonlinearity, bias=bias, batch_first=batch_first,
                        bidirectional=D == 2, dtype=torch.float64)


@pytest.mark.parametrize("device", DEVICES)
def test_stacked_bidirectional_rnn_matches_torch(device):
    """torch.nn.RNN's weights load unchanged into a stacked / bidirectional nblstm.RNN and give its outputs and every
    gradient (float64), with lengths through torch's packed sequences (unsorted)."""
    torch = pytest.importorskip("torch")
    given_on(device, shapes(device, 6, 4, 3, 4), st.integers(1, 3), st.booleans(), st.sampled_from(["tanh", "relu"]),
             st.booleans(), st.booleans(), testing.seeds(), st.data())(_stacked_matches_torch)(device, torch)


def _stacked_matches_torch(device, torch, shape, L, bidirectional, nonlinearity, bias, batch_first, seed, data):
    T, B, I, H = shape
    D = 2 if bidirectional else 1
    ref = _torch_rnn(torch, I, H, L, D, nonlinearity, bias, batch_first, seed)
    rnn = nblstm.RNN(I, H, num_layers=L, nonlinearity=nonlinearity, bias=bias, batch_first=batch_first,
                     bidirectional=bidirectional, dtype=np.float64, device=device)
    rnn.load_state_dict({k: v.numpy() for k, v in ref.state_dict().items()})
    lengths = data.draw(st.none() | st.lists(st.integers(1, T), min_size=B, max_size=B))   # torch: lengths >= 1
    x = testing.random_array((B, T, I) if batch_first else (T, B, I), np.float64, seed)
    h0 = testing.random_array((L * D, B, H), np.float64, seed + 1)
    tx, th0 = torch.tensor(x, requires_grad=True), torch.tensor(h0, requires_grad=True)
    if lengths is None:
        ty, th = ref(tx, th0)
    else:
        packed = torch.nn.utils.rnn.pack_padded_sequence(tx, lengths, batch_first=batch_first, enforce_sorted=False)
        ty, th = ref(packed, th0)
        ty, _ = torch.nn.utils.rnn.pad_packed_sequence(ty, batch_first=batch_first, total_length=T)
    y, h = rnn(x, h0, lengths=lengths)
    assert y.shape == tuple(ty.shape) and h.shape == (L * D, B, H)
    testing.assert_close(y, ty.detach().numpy(), np.float64, "y")
    testing.assert_close(h, th.detach().numpy(), np.float64, "h_n")
    dy, dh = testing.random_array(y.shape, np.float64, seed + 2), testing.random_array(h.shape, np.float64, seed + 3)
    torch.autograd.backward([ty, th], [torch.tensor(dy), torch.tensor(dh)])
    dx, dh0 = rnn.backward(dy, dh)
    testing.assert_close(dx, tx.grad.numpy(), np.float64, "dx")
    testing.assert_close(dh0, th0.grad.numpy(), np.float64, "dh0")
    assert set(rnn.grads) == {name for name, _ in ref.named_parameters()}
    for name, p in ref.named_parameters():
        testing.assert_close(nblstm.backends.to_host(rnn.grads[name]), p.grad.numpy(), np.float64, name)


@pytest.mark.parametrize("device", DEVICES)
def test_stacked_rnn_passes_finite_differences(device):
    """Central differences (float64) for every parameter, x and h0 of drawn stacks: layers, directions, lengths,
    dropout (the forward's masks replayed), bias, nonlinearity."""
    given_on(device, st.integers(1, 2), st.booleans(), st.booleans(), st.booleans(), st.sampled_from(["tanh", "relu"]),
             testing.seeds(), st.data(), cuda_share=10)(_stacked_gradients)(device)


def _stacked_gradients(device, L, bidirectional, drop, bias, nonlinearity, seed, data):
    T, B, I, H = (3, 2, 2, 3) if device == "cpu" else (2, 2, 1, 2)
    rnn = nblstm.RNN(I, H, num_layers=L, bidirectional=bidirectional, dropout=0.5 if drop and L > 1 else 0.0,
                     nonlinearity=nonlinearity, bias=bias, dtype=np.float64, seed=seed, device=device)
    x = testing.random_array((T, B, I), np.float64, seed)
    lengths = _lengths(data, T, B)
    rnn(x, lengths=lengths)                     # draws the masks that the finite-difference forwards replay
    assert (rnn.dropout_masks is not None) == (drop and L > 1)
    errors = nblstm.gradcheck(rnn, x, eps=1e-5, tol=GRAD_TOL, lengths=lengths, dropout_masks=rnn.dropout_masks)
    assert set(errors) == {"x", "h0", *rnn.state_dict()}


def test_stacked_rnn_shapes_names_and_errors():
    rnn = nblstm.RNN(3, 4, num_layers=2, bidirectional=True, seed=0)
    assert list(rnn.state_dict()) == [f"{w}_l{k}{d}" for k in range(2) for d in ("", "_reverse")
                                      for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    assert rnn.state_dict()["weight_ih_l1"].shape == (4, 8)
    assert repr(rnn) == "RNN(3, 4, num_layers=2, bidirectional=True)"
    with pytest.raises(ValueError, match=r"h0: expected shape \(4, 2, 4\)"):
        rnn(np.ones((5, 2, 3)), np.ones((1, 2, 4)))
    y, h = rnn(np.ones((5, 2, 3)))
    with pytest.raises(ValueError, match=r"dy: expected shape \(5, 2, 8\)"):
        rnn.backward(np.ones((5, 2, 4)))
    with pytest.raises(ValueError, match=r"dh_n: expected shape \(4, 2, 4\)"):
        rnn.backward(np.ones_like(y), np.ones((1, 2, 4)))
    with pytest.raises(ValueError, match="num_layers: expected a positive integer, got 0"):
        nblstm.RNN(3, 4, num_layers=0)
    with pytest.raises(ValueError, match=r"dropout: expected a number in \[0, 1\), got 1.0"):
        nblstm.RNN(3, 4, num_layers=2, dropout=1.0)
    with pytest.warns(UserWarning, match="dropout=0.3 with num_layers=1 drops nothing"):
        nblstm.RNN(3, 4, dropout=0.3)


def test_rnn_dropout_only_in_training():
    kw = dict(num_layers=3, bidirectional=True, dtype=np.float64, seed=7)
    plain, drop = nblstm.RNN(4, 5, **kw), nblstm.RNN(4, 5, dropout=0.4, **kw)
    x = testing.random_array((6, 3, 4), np.float64, 0)
    assert all(np.array_equal(plain.state_dict()[k], v) for k, v in drop.state_dict().items())
    y_train, _ = drop(x)
    assert len(drop.dropout_masks) == 2 and not np.allclose(y_train, plain(x)[0])
    with nblstm.no_grad():
        np.testing.assert_array_equal(drop(x)[0], plain(x)[0])
    drop.eval()
    np.testing.assert_array_equal(drop(x)[0], plain(x)[0])
    assert drop.dropout_masks is None
