"""Stacked, bidirectional LSTM with dropout: against the oracle's composition (reference.stacked_lstm_*), against
torch.nn.LSTM, finite differences, dropout's semantics, and bad arguments."""
import contextlib
import warnings

import numpy as np
import pytest
from hypothesis import strategies as st

import nblstm
from _devices import DEVICES, given_on, shapes
from nblstm import backends
from nblstm import reference as R
from nblstm import testing


def _host_grads(model):
    return {k: backends.to_host(g) for k, g in model.grads.items()}


@pytest.mark.parametrize("device", DEVICES)
def test_stacked_lstm_matches_reference(device):
    layers = st.integers(1, 3 if device == "cpu" else 2)
    given_on(device, shapes(device, max_T=5, max_B=3, max_I=4, max_H=4), layers, st.booleans(), st.booleans(),
             st.booleans(), testing.float_dtypes(), testing.activations(), st.booleans(), testing.variants(),
             testing.seeds())(_stacked_lstm_matches_reference)(device)


def _options(H, variant, seed):
    """LSTM keyword arguments of a drawn testing.variants() example: peephole, proj_size."""
    proj = int(np.random.default_rng(seed).integers(1, H)) if variant["proj"] and H > 1 else 0
    return dict(peephole=variant["peephole"], proj_size=proj)


def _stacked_lstm_matches_reference(device, shape, L, bidirectional, bias, batch_first, dt, activation, drop,
                                    variant, seed):
    """Forward and every gradient (x, h0, c0, each parameter), dropout masks included (the model's own), with
    peepholes, a projection and variable lengths as drawn."""
    T, B, I, H = shape
    D = 2 if bidirectional else 1
    opts = _options(H, variant, seed)
    P = opts["proj_size"] or H
    lengths = testing.random_lengths(B, T, seed) if variant["lengths"] else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                     # dropout with num_layers=1 warns
        lstm = nblstm.LSTM(I, H, num_layers=L, bidirectional=bidirectional, bias=bias, batch_first=batch_first,
                           dropout=0.5 if drop else 0.0, dtype=dt, seed=seed, cell_activation=activation,
                           forget_bias=1.0, device=device, **opts)
    tm = (lambda a: a.transpose(1, 0, 2)) if batch_first else (lambda a: a)    # time-major <-> y's layout
    x = testing.random_array((T, B, I), dt, seed)
    h0, c0 = testing.random_array((L * D, B, P), dt, seed + 1), testing.random_array((L * D, B, H), dt, seed + 2)
    y, (h_n, c_n) = lstm(tm(x), (h0, c0), lengths=lengths)
    masks = lstm.dropout_masks
    assert (masks is not None) == (drop and L > 1)
    params = {k: v.astype(np.float64) for k, v in lstm.state_dict().items()}
    f64 = lambda a: a.astype(np.float64)  # noqa: E731
    ry, rh, rc, caches = R.stacked_lstm_forward(f64(x), f64(h0), f64(c0), params, L, bidirectional, activation,
                                                lengths=lengths,
                                                dropout_masks=None if masks is None else [tm(m) for m in masks])
    assert y.dtype == dt and y.shape == tm(ry).shape == tm(np.empty((T, B, D * P))).shape
    assert h_n.shape == (L * D, B, P) and c_n.shape == (L * D, B, H)
    testing.assert_close(tm(y), ry, dt, "y")
    testing.assert_close(h_n, rh, dt, "h_n")
    testing.assert_close(c_n, rc, dt, "c_n")

    dy = testing.random_array((T, B, D * P), dt, seed + 3)
    dh, dc = testing.random_array((L * D, B, P), dt, seed + 4), testing.random_array((L * D, B, H), dt, seed + 5)
    dx, (dh0, dc0) = lstm.backward(tm(dy), (dh, dc))
    g = R.stacked_lstm_backward(f64(dy), f64(dh), f64(dc), caches)
    testing.assert_close(tm(dx), g["x"], dt, "dx")
    testing.assert_close(dh0, g["h0"], dt, "dh0")
    testing.assert_close(dc0, g["c0"], dt, "dc0")
    grads = _host_grads(lstm)
    assert sorted(grads) == sorted(params)
    for k in params:
        testing.assert_close(grads[k], g[k], dt, k)


def _gradcheck_composition(device, L, bidirectional, variant, drop, bias, seed, shape):
    T, B, I, H = shape
    lengths = testing.random_lengths(B, T, seed) if variant["lengths"] else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lstm = nblstm.LSTM(I, H, num_layers=L, bidirectional=bidirectional, dropout=0.5 if drop else 0.0,
                           bias=bias, dtype=np.float64, seed=seed, forget_bias=1.0, device=device,
                           **_options(H, variant, seed))
    x = testing.random_array((T, B, I), np.float64, seed)
    lstm(x, lengths=lengths)
    # eps 1e-5, not 1e-6: a peephole tensor's whole gradient can be ~3e-4, where eps 1e-6's rounding noise (~1e-10 of
    # an O(1) loss) alone reads as 1e-6 relative error (found by hypothesis: weight_co_l0_reverse, 1.07e-6)
    errors = nblstm.gradcheck(lstm, x, eps=1e-5, tol=1e-6, lengths=lengths, dropout_masks=lstm.dropout_masks)
    assert set(errors) == {"x", "h0", "c0", *lstm.state_dict()}


@given_on("cpu", st.integers(1, 2), st.booleans(), testing.variants(), st.booleans(), st.booleans(), testing.seeds())
def test_every_combination_passes_finite_differences(L, bidirectional, variant, drop, bias, seed):
    """Central differences (float64) for every parameter, x, h0 and c0 of drawn compositions: layers, directions,
    peepholes, projection, lengths, dropout (the forward's masks replayed), bias."""
    _gradcheck_composition("cpu", L, bidirectional, variant, drop, bias, seed, (4, 3, 2, 3))


@pytest.mark.parametrize("device", DEVICES)
def test_every_option_at_once_passes_finite_differences(device):
    """One layer, both directions, peepholes, a projection, lengths (one sequence cut short), on each backend: on the
    simulator every finite-difference forward costs hundreds of launches, so cuda gets this one composition (and
    the drawn compositions against the oracle in test_stacked_lstm_matches_reference)."""
    _gradcheck_composition(device, 1, True, dict(peephole=True, proj=True, lengths=True), False, True, 0,
                           (2, 2, 1, 2))       # seed 0: lengths (2, 1)


def test_lengths_semantics():
    """Past a sequence's end y is zero and the state frozen: h_n, c_n are those of the sequence cut to its length;
    a sequence of length 0 returns its initial state. The reverse direction starts at each sequence's own end."""
    lstm = nblstm.LSTM(2, 3, num_layers=2, bidirectional=True, proj_size=2, peephole=True, dtype=np.float64,
                       seed=0)
    x = testing.random_array((6, 3, 2), np.float64, 0)
    h0, c0 = testing.random_array((4, 3, 2), np.float64, 1), testing.random_array((4, 3, 3), np.float64, 2)
    lengths = np.array([6, 3, 0])
    y, (h, c) = lstm(x, (h0, c0), lengths=lengths)
    for b, n in enumerate(lengths):
        assert not y[n:, b].any()
        if n == 0:
            np.testing.assert_array_equal(h[:, b], h0[:, b])
            np.testing.assert_array_equal(c[:, b], c0[:, b])
            continue
        yb, (hb, cb) = lstm(x[:n, b:b + 1], (h0[:, b:b + 1], c0[:, b:b + 1]))   # alone, unpadded
        testing.assert_close(y[:n, b], yb[:, 0], np.float64, "y")
        testing.assert_close(h[:, b], hb[:, 0], np.float64, "h_n")
        testing.assert_close(c[:, b], cb[:, 0], np.float64, "c_n")


def test_names_shapes_and_initialization():
    H, bound = 5, 1 / np.sqrt(5)
    lstm = nblstm.LSTM(3, H, num_layers=3, bidirectional=True, seed=0, forget_bias=2.0)
    sd = lstm.state_dict()
    want = [f"{w}_l{k}{r}" for k in range(3) for r in ("", "_reverse")
            for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    assert list(sd) == want
    assert sd["weight_ih_l0"].shape == (20, 3) and sd["weight_ih_l1"].shape == (20, 10)
    assert sd["weight_ih_l2_reverse"].shape == (20, 10) and sd["weight_hh_l2_reverse"].shape == (20, 5)
    for k, v in sd.items():
        if k.startswith("bias_ih"):                     # forget_bias on every layer and direction's f block
            assert np.all(np.abs(v[H:2 * H] - 2.0) <= bound) and np.all(np.abs(v[:H]) <= bound), k
        else:
            assert np.all(np.abs(v) <= bound) and v.std() > bound / 4, k
    # one layer, one direction: the very parameters of before (same draws), whatever dropout is
    one = nblstm.LSTM(3, H, seed=0, forget_bias=2.0).state_dict()
    assert all(np.array_equal(one[k], sd[k]) for k in one)
    assert repr(lstm) == "LSTM(3, 5, num_layers=3, bidirectional=True, forget_bias=2.0)"


def test_matches_torch_stacked_and_bidirectional():
    torch = pytest.importorskip("torch")
    from _torch_check import assert_lstm_matches_torch
    for L, bidirectional, batch_first, seed in ((2, True, False, 0), (3, False, True, 1), (3, True, True, 2),
                                                (2, False, False, 3)):
        T, B, I, H = 5, 3, 4, 3
        D = 2 if bidirectional else 1
        torch.manual_seed(seed)
        ref = torch.nn.LSTM(I, H, num_layers=L, bidirectional=bidirectional, batch_first=batch_first,
                            dtype=torch.float64)
        ours = nblstm.LSTM(I, H, num_layers=L, bidirectional=bidirectional, batch_first=batch_first,
                           dtype=np.float64)
        assert list(ours.state_dict()) == list(ref.state_dict())
        ours.load_state_dict({k: v.numpy() for k, v in ref.state_dict().items()})
        xs = (B, T, I) if batch_first else (T, B, I)
        x, h0, c0 = (testing.random_array(s, np.float64, seed + k)
                     for k, s in enumerate([xs, (L * D, B, H), (L * D, B, H)]))
        assert_lstm_matches_torch(ours, ref, x, h0, c0, seed)


def test_matches_torch_projection_and_packed_sequences():
    """proj_size (LSTMP) and variable lengths (torch's packed sequences, the reverse direction from each sequence's
    end) in every torch-expressible composition: the weights load unchanged and give torch's outputs and gradients."""
    torch = pytest.importorskip("torch")
    from _torch_check import assert_lstm_matches_torch
    for L, bidirectional, batch_first, proj, packed, seed in ((1, False, False, 2, False, 0),
                                                              (2, True, False, 2, True, 1),
                                                              (3, False, True, 1, True, 2),
                                                              (2, True, True, 0, True, 3),
                                                              (1, True, False, 3, False, 4)):
        T, B, I, H = 6, 4, 3, 4
        D, P = (2 if bidirectional else 1), proj or H
        torch.manual_seed(seed)
        ref = torch.nn.LSTM(I, H, num_layers=L, bidirectional=bidirectional, batch_first=batch_first,
                            proj_size=proj, dtype=torch.float64)
        ours = nblstm.LSTM(I, H, num_layers=L, bidirectional=bidirectional, batch_first=batch_first,
                           proj_size=proj, dtype=np.float64)
        assert list(ours.state_dict()) == list(ref.state_dict())
        ours.load_state_dict({k: v.numpy() for k, v in ref.state_dict().items()})
        xs = (B, T, I) if batch_first else (T, B, I)
        x, h0, c0 = (testing.random_array(s, np.float64, seed + k)
                     for k, s in enumerate([xs, (L * D, B, P), (L * D, B, H)]))
        lengths = np.array([4, 6, 1, 3]) if packed else None       # unsorted; torch's packing needs lengths >= 1
        assert_lstm_matches_torch(ours, ref, x, h0, c0, seed, lengths)


def test_matches_torch_eval_with_dropout():
    """torch.nn.LSTM(dropout=p).eval() is ours at inference (no_grad) and in eval(): no dropout."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    ref = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True, dropout=0.5, dtype=torch.float64).eval()
    ours = nblstm.LSTM(3, 4, num_layers=2, bidirectional=True, dropout=0.5, dtype=np.float64)
    ours.load_state_dict({k: v.numpy() for k, v in ref.state_dict().items()})
    x = testing.random_array((6, 2, 3), np.float64, 0)
    with torch.no_grad():
        want = ref(torch.tensor(x))[0].numpy()
    with nblstm.no_grad():
        testing.assert_close(ours(x)[0], want, np.float64, "y (no_grad)")
    testing.assert_close(ours.eval()(x)[0], want, np.float64, "y (eval)")


def test_gradcheck_two_layer_bidirectional_with_dropout():
    """The finite-difference forwards (under no_grad) get the analytic forward's masks through dropout_masks."""
    lstm = nblstm.LSTM(2, 3, num_layers=2, bidirectional=True, dropout=0.5, dtype=np.float64, seed=0, bias=True)
    x = testing.random_array((4, 2, 2), np.float64, 1)
    lstm(x)
    masks = lstm.dropout_masks
    assert len(masks) == 1 and masks[0].shape == (4, 2, 6)
    assert 0 < np.count_nonzero(masks[0]) < masks[0].size               # the mask does drop something
    errors = nblstm.gradcheck(lstm, x, tol=1e-6, dropout_masks=masks)
    assert set(errors) == {"x", "h0", "c0", *lstm.state_dict()}


def test_dropout_only_in_training():
    kw = dict(num_layers=3, bidirectional=True, dtype=np.float64, seed=7)
    plain, drop = nblstm.LSTM(4, 5, **kw), nblstm.LSTM(4, 5, dropout=0.4, **kw)
    x = testing.random_array((6, 3, 4), np.float64, 0)
    want, _ = plain(x)
    with nblstm.no_grad():                          # inference: nblstm's no_grad
        y, _ = drop(x)
    np.testing.assert_array_equal(y, want)
    assert drop.dropout_masks is None
    drop.eval()                                      # torch's switch, gradients on
    assert not drop.training
    np.testing.assert_array_equal(drop(x)[0], want)
    assert drop.dropout_masks is None and drop._tape is not None
    assert drop.train() is drop and drop.training
    y1, _ = drop(x)
    assert not np.array_equal(y1, want) and len(drop.dropout_masks) == 2
    # dropout=0 in training is the model without dropout; so are masks of ones
    zero = nblstm.LSTM(4, 5, dropout=0.0, **kw)
    np.testing.assert_array_equal(zero(x)[0], want)
    assert zero.dropout_masks is None
    ones = [np.ones((6, 3, 10))] * 2
    np.testing.assert_array_equal(drop(x, dropout_masks=ones)[0], want)


def test_dropout_masks_differ_between_forwards_and_follow_the_seed():
    def masks(seed, n):
        m = nblstm.LSTM(2, 3, num_layers=2, dropout=0.5, seed=seed)
        x = np.ones((5, 2, 2), np.float32)
        out = []
        for _ in range(n):
            m(x)
            out.append(m.dropout_masks[0])
        return out

    a, b, c = masks(0, 3), masks(0, 3), masks(1, 1)
    assert all(np.array_equal(u, v) for u, v in zip(a, b))          # seeded: reproducible
    assert not np.array_equal(a[0], a[1]) and not np.array_equal(a[1], a[2])    # advances per forward
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_dropout_fraction_and_scale(p):
    lstm = nblstm.LSTM(3, 16, num_layers=3, bidirectional=True, dropout=p, seed=0)
    lstm(np.zeros((40, 8, 3), np.float32))
    masks = lstm.dropout_masks
    assert len(masks) == 2 and not np.array_equal(masks[0], masks[1])
    for m in masks:                                  # 40 * 8 * 32 = 10240 draws each
        assert m.dtype == np.float32 and m.shape == (40, 8, 32)
        assert abs(np.mean(m == 0) - p) < 0.03
        np.testing.assert_array_equal(np.unique(m), np.array([0, 1 / (1 - p)], np.float32))


def test_batch_first_masks_are_in_y_layout():
    lstm = nblstm.LSTM(2, 3, num_layers=2, bidirectional=True, batch_first=True, dropout=0.5, dtype=np.float64,
                       seed=0)
    x = testing.random_array((2, 5, 2), np.float64, 0)               # (B, T, I)
    y, _ = lstm(x)
    (m,) = lstm.dropout_masks
    assert m.shape == y.shape == (2, 5, 6)
    np.testing.assert_array_equal(lstm(x, dropout_masks=[m])[0], y)


@pytest.mark.parametrize("kwargs,pattern", [
    (dict(num_layers=0), r"num_layers: expected a positive integer, got 0"),
    (dict(num_layers=-1), r"num_layers: expected a positive integer, got -1"),
    (dict(num_layers=1.5), r"num_layers: expected a positive integer, got 1.5"),
    (dict(num_layers=True), r"num_layers: expected a positive integer, got True"),
    (dict(num_layers="2"), r"num_layers: expected a positive integer, got '2'"),
    (dict(num_layers=2, dropout=-0.1), r"dropout: expected a number in \[0, 1\), got -0.1"),
    (dict(num_layers=2, dropout=1.0), r"dropout: expected a number in \[0, 1\), got 1.0"),
    (dict(num_layers=2, dropout=float("nan")), r"dropout: expected a number in \[0, 1\), got nan"),
    (dict(num_layers=2, dropout="0.1"), r"dropout: expected a number in \[0, 1\), got '0.1'"),
    (dict(num_layers=2, dropout=True), r"dropout: expected a number in \[0, 1\), got True"),
])
def test_bad_constructor_arguments(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        nblstm.LSTM(3, 4, **kwargs)


def test_dropout_with_one_layer_warns_like_torch():
    with pytest.warns(UserWarning, match=r"dropout=0.5 with num_layers=1 drops nothing"):
        lstm = nblstm.LSTM(3, 4, dropout=0.5, seed=0)
    x = testing.random_array((4, 2, 3), np.float32, 0)
    np.testing.assert_array_equal(lstm(x)[0], nblstm.LSTM(3, 4, seed=0)(x)[0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nblstm.LSTM(3, 4, num_layers=2, dropout=0.5)
        nblstm.LSTM(3, 4, dropout=0.0)


@pytest.mark.parametrize("call,exc,pattern", [
    (lambda m, x: m(x, (np.zeros((1, 2, 4)), np.zeros((1, 2, 4)))), ValueError,
     r"state\[0\]: expected shape \(4, 2, 4\) .*got \(1, 2, 4\)"),
    (lambda m, x: m(x, dropout_masks=[]), ValueError,
     r"dropout_masks: expected a list of num_layers - 1 = 1 arrays shaped like y, got 0 of them"),
    (lambda m, x: m(x, dropout_masks=np.ones((5, 2, 8))), ValueError, r"dropout_masks: expected a list .*ndarray"),
    (lambda m, x: m(x, dropout_masks=[np.ones((5, 2, 4))]), ValueError,
     r"dropout_masks\[0\]: expected shape \(5, 2, 8\) .*got \(5, 2, 4\)"),
    (lambda m, x: m.backward(np.ones((5, 2, 4))), ValueError, r"dy: expected shape \(5, 2, 8\) .*got \(5, 2, 4\)"),
    (lambda m, x: m.backward(np.ones((5, 2, 8)), (np.ones((2, 2, 4)),) * 2), ValueError,
     r"state_grad\[0\]: expected shape \(4, 2, 4\) .*got \(2, 2, 4\)"),
])
def test_bad_call_arguments_leave_the_model_unchanged(call, exc, pattern):
    m = nblstm.LSTM(3, 4, num_layers=2, bidirectional=True, dropout=0.5, seed=0)
    x = np.ones((5, 2, 3), np.float32)
    m(x)
    params, grads, tape, masks = m.state_dict(), _host_grads(m), m._tape, m.dropout_masks
    rng_state = m._dropout_rng.bit_generator.state
    with pytest.raises(exc, match=pattern):
        call(m, x)
    assert all(np.array_equal(v, m.state_dict()[k]) for k, v in params.items())
    assert all(np.array_equal(v, m.grads[k]) for k, v in grads.items())
    assert m._tape is tape and all(np.array_equal(a, b) for a, b in zip(masks, m.dropout_masks))
    assert m._dropout_rng.bit_generator.state == rng_state


@pytest.mark.parametrize("device", DEVICES)
def test_device_arrays_in_and_out(device):
    """A device array x keeps y, states and dx on the device (cuda); outputs equal the NumPy path."""
    lstm = nblstm.LSTM(2, 3, num_layers=2, bidirectional=True, dtype=np.float64, seed=0, device=device)
    x = testing.random_array((3, 2, 2), np.float64, 0)
    y, (h, c) = lstm(x)
    dx, (dh0, _) = lstm.backward(np.ones_like(y))
    xd = backends.to_device(device, x)
    yd, (hd, _) = lstm(xd)
    dxd, (dh0d, _) = lstm.backward(backends.to_device(device, np.ones_like(y)))
    assert backends.is_device_array(yd) == (device == "cuda") == backends.is_device_array(dxd)
    for a, b in ((y, yd), (h, hd), (dx, dxd), (dh0, dh0d)):
        np.testing.assert_array_equal(a, backends.to_host(b))


_REUSE_MODELS = {
    "lstm": lambda device: nblstm.LSTM(3, 4, num_layers=2, dtype=np.float64, seed=1, device=device),
    "lstmp-bidirectional": lambda device: nblstm.LSTM(3, 4, num_layers=2, bidirectional=True, proj_size=2,
                                                      peephole=True, dtype=np.float64, seed=1, device=device),
    "rnn-bidirectional": lambda device: nblstm.RNN(3, 4, num_layers=2, bidirectional=True, dtype=np.float64, seed=1,
                                                   device=device),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", sorted(_REUSE_MODELS))
def test_reused_work_arrays_change_no_result(device, kind):
    """A forward reuses the dropped tape's buffers and backward its scratch (nblstm._module.Module._take,
    _scratch): a run of calls with changing shapes, no_grad forwards between, gives each call what a fresh model
    gives, and leaves every array returned earlier as it was."""
    model = _REUSE_MODELS[kind](device)
    rng = np.random.default_rng(0)
    kept = []                                       # (returned array, its value when returned)
    for T, B, grad in ((4, 2, True), (4, 2, True), (3, 2, False), (4, 2, True), (5, 3, True), (4, 2, True)):
        fresh = _REUSE_MODELS[kind](device)
        x = rng.standard_normal((T, B, 3))
        lengths = rng.integers(1, T + 1, B)
        before = model._tape_buffers(model._tape[1][0])[0] if model._tape is not None else None
        with contextlib.nullcontext() if grad else nblstm.no_grad():
            y, state = model(x, lengths=lengths)
            y_want, state_want = fresh(x, lengths=lengths)
        np.testing.assert_array_equal(y, y_want)
        for a, b in zip(state, state_want):
            np.testing.assert_array_equal(a, b)
        kept += [(y, y.copy())] + [(a, a.copy()) for a in state]
        if grad:
            if before is not None and before.shape[:2] == (T, B):      # the dropped tape's buffers, taken again
                assert model._tape_buffers(model._tape[1][0])[0] is before
            model.zero_grad()
            dy = rng.standard_normal(y.shape)
            dx, dstate = model.backward(dy)
            dx_want, dstate_want = fresh.backward(dy)
            np.testing.assert_array_equal(dx, dx_want)
            for a, b in zip(dstate, dstate_want):
                np.testing.assert_array_equal(a, b)
            for k, g in _host_grads(model).items():
                np.testing.assert_array_equal(g, _host_grads(fresh)[k], err_msg=k)
            kept += [(dx, dx.copy())] + [(a, a.copy()) for a in dstate]
    for a, value in kept:
        np.testing.assert_array_equal(a, value)
