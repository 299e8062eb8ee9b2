"""Optimizers: updates against numbers worked out by hand, against torch.optim, clipping, state round trips."""
import math

import numpy as np
import pytest

import nblstm
from nblstm import optim


class Scalar:
    """The smallest trainable object: one parameter w (1,), its gradient set by hand."""

    def __init__(self, w=1.0, dtype=np.float64):
        self.p = {"w": np.array([w], dtype)}
        self.grads = {"w": np.zeros(1, dtype)}

    def parameters(self):
        return self.p

    def zero_grad(self):
        self.grads["w"][...] = 0

    def run(self, opt, grads):
        out = []
        for g in grads:
            self.grads["w"][...] = g
            opt.step()
            out.append(float(self.p["w"][0]))
        return out


def test_sgd_plain_and_weight_decay_by_hand():

    s = Scalar()
    assert s.run(optim.SGD(s, lr=0.1), [0.5, 0.5]) == pytest.approx([1 - 0.05, 1 - 0.1])
    s = Scalar()                                    # g + wd * p = 0.5 + 0.1 * 1 = 0.6
    assert s.run(optim.SGD(s, lr=0.1, weight_decay=0.1), [0.5]) == pytest.approx([1 - 0.1 * 0.6])


def test_sgd_momentum_and_nesterov_by_hand():
    s = Scalar()                                    # b1 = 0.5; b2 = 0.9 * 0.5 + 0.5 = 0.95
    assert s.run(optim.SGD(s, lr=0.1, momentum=0.9), [0.5, 0.5]) == pytest.approx([0.95, 0.95 - 0.095])
    s = Scalar()                                    # step 1: g + mu b = 0.5 + 0.45 = 0.95
    # step 2: b = 0.95, g + mu b = 0.5 + 0.855 = 1.355
    assert s.run(optim.SGD(s, lr=0.1, momentum=0.9, nesterov=True), [0.5, 0.5]) == \
        pytest.approx([1 - 0.095, 1 - 0.095 - 0.1355])
    s = Scalar()                                    # dampening 0.5: b2 = 0.9 * 0.5 + 0.5 * 0.5 = 0.7
    assert s.run(optim.SGD(s, lr=0.1, momentum=0.9, dampening=0.5), [0.5, 0.5]) == \
        pytest.approx([0.95, 0.95 - 0.07])


def test_adam_by_hand():
    s = Scalar()
    got = s.run(optim.Adam(s, lr=0.1), [0.5, -0.25])
    # step 1: m = 0.05, v = 0.00025; m^ = 0.5, v^ = 0.25 -> p = 1 - 0.1 * 0.5 / (0.5 + 1e-8)
    p1 = 1 - 0.1 * 0.5 / (0.5 + 1e-8)
    # step 2: m = 0.045 - 0.025 = 0.02, v = 0.00024975 + 0.0000625 = 0.00031225
    m_hat, v_hat = 0.02 / (1 - 0.9 ** 2), 0.00031225 / (1 - 0.999 ** 2)
    p2 = p1 - 0.1 * m_hat / (math.sqrt(v_hat) + 1e-8)
    assert got == pytest.approx([p1, p2], rel=1e-12)
    assert p2 == pytest.approx(0.873366, abs=1e-6)


def test_adamw_and_adam_weight_decay_by_hand():
    s = Scalar()                                    # decoupled: p = 1 * (1 - 0.1 * 0.1) = 0.99, then -0.1
    assert s.run(optim.AdamW(s, lr=0.1, weight_decay=0.1), [0.5]) == pytest.approx([0.99 - 0.1], rel=1e-7)
    s = Scalar()                                    # L2: g = 0.5 + 0.1; first Adam step moves by lr
    assert s.run(optim.Adam(s, lr=0.1, weight_decay=0.1), [0.5]) == pytest.approx([0.9], rel=1e-7)
    s = Scalar(w=2.0)                               # L2 can flip the sign: g = -0.1 + 0.1 * 2 = 0.1 > 0
    assert s.run(optim.Adam(s, lr=0.1, weight_decay=0.1), [-0.1]) == pytest.approx([1.9], rel=1e-6)


@pytest.mark.parametrize("kind,kwargs", [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9, weight_decay=0.01)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, weight_decay=0.1, betas=(0.8, 0.99), eps=1e-6)),
    ("AdamW", dict(lr=0.01, weight_decay=0.1)),
])
def test_matches_torch_optim(kind, kwargs):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    lin = nblstm.Linear(3, 2, seed=0, dtype=np.float64)
    tp = {k: torch.tensor(v.copy(), requires_grad=True) for k, v in lin.parameters().items()}
    topt = getattr(torch.optim, kind)(list(tp.values()), **kwargs)
    opt = getattr(optim, kind)(lin, **kwargs)
    for _ in range(5):
        for k in tp:
            g = rng.standard_normal(tp[k].shape)
            lin.grads[k][...] = g
            tp[k].grad = torch.from_numpy(g.copy())
        opt.step()
        topt.step()
    for k, t in tp.items():
        np.testing.assert_allclose(lin.parameters()[k], t.detach().numpy(), rtol=1e-12, atol=1e-14)


def test_float32_updates_stay_float32():
    lin = nblstm.Linear(3, 2, seed=0)
    lin.grads["weight"][...] = 1
    for opt in (optim.SGD(lin, 0.1, momentum=0.9), optim.Adam(lin), optim.AdamW(lin)):
        opt.step()
        assert lin.parameters()["weight"].dtype == np.float32
        assert all(b.dtype == np.float32 for bufs in opt.state.values() for b in bufs.values())


def test_clip_grad_norm_global_across_objects():
    a, b = Scalar(), Scalar()
    a.grads["w"][...], b.grads["w"][...] = 3.0, 4.0
    assert optim.clip_grad_norm([a, b], 1.0) == pytest.approx(5.0)
    assert a.grads["w"][0] == pytest.approx(0.6, rel=1e-5) and b.grads["w"][0] == pytest.approx(0.8, rel=1e-5)
    assert optim.clip_grad_norm([a, b], 10.0) == pytest.approx(1.0, rel=1e-5)
    assert a.grads["w"][0] == pytest.approx(0.6, rel=1e-5)          # below the limit: unchanged
    a.grads["w"][...] = np.inf
    assert optim.clip_grad_norm([a, b], 1.0) == np.inf               # non-finite: returned, grads untouched
    assert b.grads["w"][0] == pytest.approx(0.8, rel=1e-5)


def test_optimizer_takes_a_model_and_zero_grad_clears():
    model = nblstm.tasks.Adding(10).make_model(4, seed=0)
    opt = optim.Adam(model, lr=0.1)
    x, t, m, _ = nblstm.tasks.adding_problem(np.random.default_rng(0), 3, 10)
    out, _ = model(x)
    model.backward(nblstm.losses.mse(out, t, m)[1])
    before = {k: v.copy() for k, v in model.parameters().items()}
    opt.step()
    assert all(not np.array_equal(before[k], v) for k, v in model.parameters().items())
    opt.zero_grad()
    assert all(not g.any() for g in model.grads.values())


@pytest.mark.parametrize("kind,kwargs", [("SGD", dict(lr=0.1, momentum=0.9)), ("Adam", dict(lr=0.1)),
                                         ("AdamW", dict(lr=0.1))])
def test_state_dict_round_trip_continues_identically(kind, kwargs):
    rng = np.random.default_rng(1)
    grads = rng.standard_normal(6)
    a = Scalar()
    oa = getattr(optim, kind)(a, **kwargs)
    a.run(oa, grads[:3])
    b = Scalar(w=float(a.p["w"][0]))
    ob = getattr(optim, kind)(b, lr=0.5)
    ob.load_state_dict(oa.state_dict())
    assert ob.lr == 0.1 and ob.step_count == 3
    assert a.run(oa, grads[3:]) == b.run(ob, grads[3:])


def test_load_state_dict_errors_leave_optimizer_unchanged():
    a = Scalar()
    opt = optim.Adam(a, lr=0.1)
    a.run(opt, [0.5])
    sd = opt.state_dict()
    with pytest.raises(ValueError, match="saved by a Adam optimizer, loading into SGD"):
        optim.SGD(Scalar(), 0.1).load_state_dict(sd)
    bad = dict(sd)
    bad["exp_avg/0.w"] = np.zeros(2)
    fresh = optim.Adam(Scalar(), lr=0.3)
    with pytest.raises(ValueError, match=r"exp_avg/0.w.*expected shape \(1,\)"):
        fresh.load_state_dict(bad)
    bad = dict(sd)
    bad["exp_avg/0.nope"] = np.zeros(1)
    with pytest.raises(KeyError, match="unexpected"):
        fresh.load_state_dict(bad)
    assert fresh.lr == 0.3 and fresh.step_count == 0 and not fresh.state["exp_avg"]


def test_constructor_errors():
    with pytest.raises(ValueError, match="lr: expected a finite number"):
        optim.SGD(Scalar(), lr=-1)
    with pytest.raises(ValueError, match="nesterov"):
        optim.SGD(Scalar(), lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match=r"betas\[1\]"):
        optim.Adam(Scalar(), betas=(0.9, 1.0))
    with pytest.raises(TypeError, match=r"objects\[0\]: expected an object with parameters\(\) and grads"):
        optim.Adam([object()])
    with pytest.raises(ValueError, match="max_norm"):
        optim.clip_grad_norm(Scalar(), float("nan"))
