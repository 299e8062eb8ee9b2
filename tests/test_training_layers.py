"""Linear, Embedding and SequenceModel: forward against plain formulas (and torch), backward against central
finite differences in float64, state_dict round trips, argument errors."""
import numpy as np
import pytest

import nblstm
from _training_fd import numeric_grad, rel_err

TOL = 1e-7


def test_linear_forward_is_affine_map():
    lin = nblstm.Linear(3, 2, seed=0, dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((4, 5, 3))
    p = lin.parameters()
    np.testing.assert_allclose(lin(x), x @ p["weight"].T + p["bias"], rtol=1e-12)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(3,), (4, 3), (2, 5, 3)])
def test_linear_gradients_match_finite_differences(bias, shape):
    rng = np.random.default_rng(1)
    lin = nblstm.Linear(3, 4, bias=bias, seed=2, dtype=np.float64)
    x = rng.standard_normal(shape)
    w = rng.standard_normal(shape[:-1] + (4,))

    def loss():
        with nblstm.no_grad():
            return float((w * lin(x)).sum())

    y = lin(x)
    dx = lin.backward(w)
    assert y.shape == shape[:-1] + (4,)
    assert rel_err(dx, numeric_grad(loss, x)) < TOL
    for name, p in lin.parameters().items():
        assert rel_err(lin.grads[name], numeric_grad(loss, p)) < TOL, name


def test_linear_float32_stays_float32_and_grads_accumulate():
    lin = nblstm.Linear(3, 2, seed=0)
    x = np.ones((4, 3), np.float32)
    y = lin(x)
    assert y.dtype == np.float32
    dx = lin.backward(np.ones_like(y))
    assert dx.dtype == np.float32 and lin.grads["weight"].dtype == np.float32
    first = lin.grads["weight"].copy()
    lin(x)
    lin.backward(np.ones_like(y))
    np.testing.assert_allclose(lin.grads["weight"], 2 * first)
    lin.zero_grad()
    assert not lin.grads["weight"].any()


def test_embedding_gradient_sums_repeated_indices():
    emb = nblstm.Embedding(5, 3, seed=0, dtype=np.float64)
    idx = np.array([[0, 2], [2, 2], [4, 0]])
    w = np.random.default_rng(0).standard_normal((3, 2, 3))

    def loss():
        with nblstm.no_grad():
            return float((w * emb(idx)).sum())

    np.testing.assert_array_equal(emb(idx), emb.parameters()["weight"][idx])
    assert emb.backward(w) is None
    assert rel_err(emb.grads["weight"], numeric_grad(loss, emb.parameters()["weight"])) < TOL
    assert not emb.grads["weight"][[1, 3]].any()          # rows never looked up get no gradient


def test_sequence_model_gradients_match_finite_differences():
    """Embedding -> LSTM -> Linear: every parameter of every part, through the whole chain."""
    rng = np.random.default_rng(3)
    model = nblstm.SequenceModel(nblstm.LSTM(3, 4, dtype=np.float64, seed=0, forget_bias=1.0),
                                 nblstm.Linear(4, 2, dtype=np.float64, seed=1),
                                 nblstm.Embedding(6, 3, dtype=np.float64, seed=2))
    idx = rng.integers(0, 6, (5, 2))
    h0 = (0.5 * rng.standard_normal((1, 2, 4)), 0.5 * rng.standard_normal((1, 2, 4)))
    w = rng.standard_normal((5, 2, 2))

    def loss():
        with nblstm.no_grad():
            return float((w * model(idx, h0)[0]).sum())

    model(idx, h0)
    _, (dh0, dc0) = model.backward(w)
    assert rel_err(dh0, numeric_grad(loss, h0[0])) < TOL
    assert rel_err(dc0, numeric_grad(loss, h0[1])) < TOL
    params = model.parameters()
    assert sorted(params) == sorted(model.grads) and "core.weight_hh_l0" in params and "embedding.weight" in params
    for name, p in params.items():
        assert rel_err(model.grads[name], numeric_grad(loss, p)) < TOL, name


def test_sequence_model_state_dict_round_trip_and_checks():
    a = nblstm.tasks.Adding(10).make_model(5, seed=0)
    b = nblstm.tasks.Adding(10).make_model(5, seed=1)
    b.load_state_dict(a.state_dict())
    for k, v in a.parameters().items():
        np.testing.assert_array_equal(b.parameters()[k], v)
    sd = a.state_dict()
    sd["head.weight"] = np.zeros((2, 5))
    before = b.state_dict()
    with pytest.raises(ValueError, match="head.weight"):
        b.load_state_dict(sd)
    del sd["head.weight"]
    with pytest.raises(KeyError, match="missing"):
        b.load_state_dict(sd)
    for k, v in before.items():
        np.testing.assert_array_equal(b.parameters()[k], v)       # unchanged after the failures


def test_layer_errors_name_the_argument():
    lin = nblstm.Linear(3, 2)
    with pytest.raises(ValueError, match=r"x: expected shape \(\.\.\., 3\)"):
        lin(np.ones((4, 2)))
    with pytest.raises(TypeError, match="x: expected a real-valued"):
        lin(np.array(["a", "b", "c"]))
    with pytest.raises(RuntimeError, match="no tape"):
        nblstm.Linear(3, 2).backward(np.ones((1, 2)))
    lin(np.ones((4, 3)))
    with pytest.raises(ValueError, match="dy: expected 4 rows"):
        lin.backward(np.ones((5, 2)))
    emb = nblstm.Embedding(4, 2)
    with pytest.raises(ValueError, match=r"index: expected integers in \[0, 4\)"):
        emb(np.array([0, 4]))
    with pytest.raises(TypeError, match="index: expected a non-empty integer array"):
        emb(np.array([0.5]))
    with pytest.raises(ValueError, match="in_features"):
        nblstm.Linear(0, 2)
    with nblstm.no_grad():
        lin(np.ones((1, 3)))
    with pytest.raises(RuntimeError, match="no tape"):
        lin.backward(np.ones((1, 2)))


def test_linear_and_embedding_match_torch():
    torch = pytest.importorskip("torch")
    lin = nblstm.Linear(3, 2, seed=0)
    t = torch.nn.Linear(3, 2)
    t.load_state_dict({k: torch.from_numpy(v) for k, v in lin.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    xt = torch.from_numpy(x).requires_grad_()
    yt = t(xt)
    yt.backward(torch.ones_like(yt))
    y = lin(x)
    dx = lin.backward(np.ones_like(y))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(lin.grads["weight"], t.weight.grad.numpy(), rtol=1e-6, atol=1e-6)
    assert set(lin.state_dict()) == set(t.state_dict())
    emb = nblstm.Embedding(5, 3, seed=0)
    assert set(emb.state_dict()) == set(torch.nn.Embedding(5, 3).state_dict())


def test_docstring_examples_run():
    import doctest
    for obj in (nblstm.Linear, nblstm.Embedding, nblstm.SequenceModel, nblstm.tbptt, nblstm.losses.mse,
                nblstm.losses.softmax_cross_entropy, nblstm.optim, nblstm.io):
        for t in doctest.DocTestFinder(recurse=False).find(obj, getattr(obj, "__name__", "obj"), globs={}):
            r = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
            r.run(t)
            assert r.failures == 0, obj
