"""Truncated BPTT: chunk = T is full BPTT; chunking never changes the forward; gradients are cut at chunk
boundaries (the sum of independent per-chunk gradients); T = 100,000 runs at B = 1 with memory of one chunk."""
import tracemalloc

import numpy as np
import pytest

import nblstm
from nblstm import losses


def _model(dtype=np.float64, vocab=False):
    emb = nblstm.Embedding(7, 3, dtype=dtype, seed=2) if vocab else None
    return nblstm.SequenceModel(nblstm.LSTM(3, 5, dtype=dtype, seed=0, forget_bias=1.0),
                                nblstm.Linear(5, 4, dtype=dtype, seed=1), emb)


def _data(T=24, B=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((T, B, 3)), rng.integers(0, 4, (T, B)), (rng.uniform(size=(T, B)) < 0.7) * 1.0


def _grads(model):
    return {k: g.copy() for k, g in model.grads.items()}


@pytest.mark.parametrize("chunk", [24, 100])
def test_chunk_at_least_T_equals_full_bptt(chunk):
    x, y, mask = _data()
    full = _model()
    out, _ = full(x)
    loss_full, dout = losses.softmax_cross_entropy(out, y, mask)
    full.backward(dout)
    model = _model()
    value, _ = nblstm.tbptt(model, x, y, losses.softmax_cross_entropy, chunk=chunk, mask=mask)
    assert value == pytest.approx(loss_full, rel=1e-12)
    for k, g in _grads(full).items():
        np.testing.assert_allclose(model.grads[k], g, rtol=1e-12, atol=1e-15, err_msg=k)


def test_chunked_forward_carries_the_state():
    x, y, mask = _data()
    full = _model()
    with nblstm.no_grad():
        out, (h, c) = full(x)
    model = _model()
    outs = []
    _, (h2, c2) = nblstm.tbptt(model, x, y, lambda o, t, m: (outs.append(o.copy()) or losses.softmax_cross_entropy(
        o, t, m)), chunk=5, mask=mask)
    np.testing.assert_allclose(np.concatenate(outs), out, rtol=1e-12)
    np.testing.assert_allclose(h2, h, rtol=1e-12)
    np.testing.assert_allclose(c2, c, rtol=1e-12)


def test_gradients_are_cut_at_chunk_boundaries():
    """Chunks of 8: the accumulated gradient is the sum over chunks of each chunk's own BPTT from the carried
    state (weighted by its share of the mask), with no gradient flowing into the previous chunk."""
    x, y, mask = _data()
    model = _model()
    value, _ = nblstm.tbptt(model, x, y, losses.softmax_cross_entropy, chunk=8, mask=mask)
    ref = _model()
    state, total, expect = None, mask.sum(), 0.0
    for s in range(0, 24, 8):
        out, new_state = ref(x[s:s + 8], state)
        v, d = losses.softmax_cross_entropy(out, y[s:s + 8], mask[s:s + 8], reduction="sum")
        ref.backward(d / total, None)
        expect += v / total
        state = new_state
    assert value == pytest.approx(expect, rel=1e-12)
    for k, g in _grads(ref).items():
        np.testing.assert_allclose(model.grads[k], g, rtol=1e-10, atol=1e-15, err_msg=k)
    full = _model()                                         # and it differs from full BPTT (something was cut)
    out, _ = full(x)
    full.backward(losses.softmax_cross_entropy(out, y, mask)[1])
    assert not np.allclose(full.grads["core.weight_hh_l0"], model.grads["core.weight_hh_l0"])


def test_on_chunk_steps_an_optimizer_per_chunk():
    x, y, mask = _data()
    model = _model()
    opt = nblstm.optim.SGD(model, lr=0.1)
    seen = []

    def step(k, v):
        seen.append(k)
        opt.step()
        opt.zero_grad()
    nblstm.tbptt(model, x, y, losses.softmax_cross_entropy, chunk=10, mask=mask, on_chunk=step)
    assert seen == [0, 1, 2] and opt.step_count == 3


def test_long_sequence_runs_with_memory_of_one_chunk():
    """T = 100,000 at B = 1: the tape of full BPTT would be ~T * 4H * 4 bytes * 3 = 31 MB for H = 16; chunks
    of 100 keep the peak of Python-visible allocations far below that."""
    T, H = 100_000, 16
    model = nblstm.SequenceModel(nblstm.LSTM(8, H, seed=0), nblstm.Linear(H, 5, seed=0),
                                 nblstm.Embedding(5, 8, seed=0))
    idx = np.random.default_rng(0).integers(0, 5, (T, 1))
    target = np.roll(idx, -1, axis=0)
    opt = nblstm.optim.Adam(model, lr=1e-2)

    def step(k, v):
        opt.step()
        opt.zero_grad()
    nblstm.tbptt(model, idx[:200], target[:200], losses.softmax_cross_entropy, chunk=100, on_chunk=step)  # warm up
    tracemalloc.start()
    value, state = nblstm.tbptt(model, idx, target, losses.softmax_cross_entropy, chunk=100, on_chunk=step)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert np.isfinite(value) and opt.step_count == 1002
    assert peak < 3_000_000, f"peak {peak / 1e6:.1f} MB"


def test_errors():
    x, y, mask = _data()
    with pytest.raises(ValueError, match="chunk: expected a positive integer"):
        nblstm.tbptt(_model(), x, y, losses.softmax_cross_entropy, chunk=0)
    with pytest.raises(ValueError, match="target, mask: expected 24 steps"):
        nblstm.tbptt(_model(), x, y[:5], losses.softmax_cross_entropy, chunk=4)
