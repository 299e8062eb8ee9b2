"""Losses: values against direct formulas (and torch), gradients against central differences in float64,
masks, the last-step form, stability, dtypes and errors."""
import numpy as np
import pytest

from nblstm import losses
from _training_fd import numeric_grad, rel_err

TOL = 1e-7


def _xent_direct(z, y, w):
    p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    nll = -np.log(np.take_along_axis(p, y[..., None], -1)[..., 0])
    return (w * nll).sum() / w.sum()


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("shape", [(6,), (5, 3)])              # last step (B,) and every step (T, B)
def test_cross_entropy_value_and_gradient(shape, masked):
    rng = np.random.default_rng(0)
    z = rng.standard_normal(shape + (4,))
    y = rng.integers(0, 4, shape)
    mask = (rng.uniform(size=shape) < 0.6).astype(float) if masked else None
    if masked:
        mask.flat[0] = 1
        y[mask == 0] = -1                                       # padding targets are ignored where masked
    loss, d = losses.softmax_cross_entropy(z, y, mask)
    w = np.ones(shape) if mask is None else mask
    assert loss == pytest.approx(_xent_direct(z, np.where(w > 0, y, 0), w), rel=1e-12)
    num = numeric_grad(lambda: losses.softmax_cross_entropy(z, y, mask)[0], z)
    assert rel_err(d, num) < TOL
    if masked:
        assert not d[mask == 0].any()


def test_cross_entropy_sum_reduction_and_weights():
    rng = np.random.default_rng(1)
    z, y = rng.standard_normal((3, 5)), rng.integers(0, 5, 3)
    w = np.array([0.5, 2.0, 0.0])
    s, ds = losses.softmax_cross_entropy(z, y, w, reduction="sum")
    m, dm = losses.softmax_cross_entropy(z, y, w)
    assert s == pytest.approx(m * w.sum())
    np.testing.assert_allclose(ds, dm * w.sum())
    assert rel_err(ds, numeric_grad(lambda: losses.softmax_cross_entropy(z, y, w, reduction="sum")[0], z)) < TOL


def test_cross_entropy_is_stable_for_huge_logits():
    z = np.array([[1e4, 0.0, -1e4], [0.0, 1e4, 1e4]], np.float32)
    with np.errstate(over="raise", invalid="raise", divide="raise"):     # underflow to 0 is fine
        loss, d = losses.softmax_cross_entropy(z, np.array([1, 1]))
    assert np.isfinite(loss) and np.all(np.isfinite(d))
    assert loss == pytest.approx((1e4 + np.log(2)) / 2, rel=1e-6)   # -log p: 1e4 for row 0, log 2 for row 1
    np.testing.assert_allclose(d[1], [0, -0.25, 0.25], atol=1e-7)


def test_float32_in_float32_out():
    z = np.zeros((2, 3), np.float32)
    _, d = losses.softmax_cross_entropy(z, np.array([0, 1]), np.array([1, 1], np.float64))
    assert d.dtype == np.float32
    p = np.ones((2, 1), np.float32)
    _, d = losses.mse(p, np.zeros((2, 1)), np.array([1.0, 0.0]))
    assert d.dtype == np.float32


@pytest.mark.parametrize("mask_kind", ["none", "steps", "elements"])
def test_mse_value_and_gradient(mask_kind):
    rng = np.random.default_rng(2)
    p, t = rng.standard_normal((4, 3, 2)), rng.standard_normal((4, 3, 2))
    mask = {"none": None, "steps": (rng.uniform(size=(4, 3)) < 0.5).astype(float),
            "elements": rng.uniform(size=(4, 3, 2))}[mask_kind]
    loss, d = losses.mse(p, t, mask)
    w = np.ones_like(p) if mask is None else (mask[..., None] * np.ones(2) if mask.ndim == 2 else mask)
    assert loss == pytest.approx((w * (p - t) ** 2).sum() / w.sum(), rel=1e-12)
    assert rel_err(d, numeric_grad(lambda: losses.mse(p, t, mask)[0], p)) < TOL


def test_mse_at_last_step_of_sequences_of_different_lengths():
    """The adding problem's loss: only each sequence's last step counts, padding never does."""
    from nblstm.tasks._base import last_step_mask
    p = np.arange(8, dtype=np.float64).reshape(4, 2, 1)
    mask = last_step_mask([2, 4], 4)                 # sequence 0 ends at t=1, sequence 1 at t=3
    loss, d = losses.mse(p, np.zeros_like(p), mask)
    assert loss == pytest.approx((p[1, 0, 0] ** 2 + p[3, 1, 0] ** 2) / 2)
    assert np.count_nonzero(d) == 2 and d[1, 0, 0] == p[1, 0, 0] and d[3, 1, 0] == p[3, 1, 0]


def test_all_zero_mask_gives_zero_loss_and_gradient():
    loss, d = losses.softmax_cross_entropy(np.ones((2, 3)), np.array([-1, -1]), np.zeros(2))
    assert loss == 0.0 and not d.any()
    loss, d = losses.mse(np.ones((2, 1)), np.zeros((2, 1)), np.zeros(2))
    assert loss == 0.0 and not d.any()


def test_match_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    z, y = rng.standard_normal((6, 5)), rng.integers(0, 5, 6)
    zt = torch.from_numpy(z).requires_grad_()
    lt = torch.nn.functional.cross_entropy(zt, torch.from_numpy(y))
    lt.backward()
    loss, d = losses.softmax_cross_entropy(z, y)
    assert loss == pytest.approx(lt.item(), rel=1e-12)
    np.testing.assert_allclose(d, zt.grad.numpy(), rtol=1e-10, atol=1e-14)
    p, t = rng.standard_normal((4, 2)), rng.standard_normal((4, 2))
    pt = torch.from_numpy(p).requires_grad_()
    lt = torch.nn.functional.mse_loss(pt, torch.from_numpy(t))
    lt.backward()
    loss, d = losses.mse(p, t)
    assert loss == pytest.approx(lt.item(), rel=1e-12)
    np.testing.assert_allclose(d, pt.grad.numpy(), rtol=1e-10)


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"target: expected class indices in \[0, 3\)"):
        losses.softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match="target: expected shape"):
        losses.softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 1, 2]))
    with pytest.raises(TypeError, match="target: expected integer"):
        losses.softmax_cross_entropy(np.zeros((2, 3)), np.array([0.0, 1.0]))
    with pytest.raises(TypeError, match="logits: expected a float32 or float64"):
        losses.softmax_cross_entropy(np.zeros((2, 3), int), np.array([0, 1]))
    with pytest.raises(ValueError, match="mask: expected shape"):
        losses.mse(np.zeros((2, 1)), np.zeros((2, 1)), np.ones(3))
    with pytest.raises(ValueError, match="mask: expected finite non-negative"):
        losses.mse(np.zeros((2, 1)), np.zeros((2, 1)), np.array([1.0, -1.0]))
    with pytest.raises(ValueError, match="reduction"):
        losses.mse(np.zeros((2, 1)), np.zeros((2, 1)), reduction="max")
