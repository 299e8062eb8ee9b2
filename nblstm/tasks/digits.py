"""Sequence classification of scikit-learn's handwritten digits, read row by row.

Data: ``sklearn.datasets.load_digits`` (1797 images of 8 x 8 pixels, values 0..16, 10 classes; a copy of
the UCI optical recognition test set that ships inside scikit-learn, no download). Each image is read as a
sequence of its 8 rows (T = 8 steps of I = 8 pixels, scaled to [0, 1]); the class is predicted at the last
step (softmax cross-entropy). A fixed shuffle (seed 0) holds out 360 images (20 %) as the test set.

Criterion: test accuracy >= 95 % (our threshold, not from the literature; it rules out a model that only
learned pixel averages, ~90 %).

Needs scikit-learn: ``pip install "nblstm[tasks]"``.
"""
import numpy as np

from ._base import Batch, Task, predict

THRESHOLD = 0.95
N_TEST = 360


def load(seed=0, dtype=np.float32):
    """(x_train (8, N, 8), y_train (N,), x_test (8, 360, 8), y_test (360,))."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise ImportError("the digits task needs scikit-learn, an optional extra: pip install \"nblstm[tasks]\" "
                          "(or pip install scikit-learn)") from e
    d = load_digits()
    images = (d.images / 16.0).astype(dtype)                 # (N, 8, 8), rows are time steps
    order = np.random.default_rng(seed).permutation(len(images))
    images, labels = images[order], d.target[order].astype(np.int64)
    x = np.ascontiguousarray(images.transpose(1, 0, 2))      # (T=8, N, I=8)
    return x[:, N_TEST:], labels[N_TEST:], x[:, :N_TEST], labels[:N_TEST]


class Digits(Task):
    """8 x 8 handwritten digits read row by row, classified at the last row."""

    name = "digits"
    input_size = 8
    output_size = 10
    loss_kind = "xent"
    criterion = f"test accuracy >= {THRESHOLD:.0%} on {N_TEST} held-out images (our threshold)"

    def __init__(self, seed=0, dtype=np.float32):
        self.x_train, self.y_train, self.x_test, self.y_test = load(seed, dtype)

    @staticmethod
    def _batch(x, y):
        T, B = x.shape[:2]
        target = np.full((T, B), -1, np.int64)
        target[-1] = y
        mask = np.zeros((T, B), np.float32)
        mask[-1] = 1
        return Batch(x, target, mask, True)

    def batch(self, rng, batch_size, step):
        pick = rng.integers(0, self.x_train.shape[1], size=batch_size)
        return self._batch(self.x_train[:, pick], self.y_train[pick])

    def correct(self, out, batch):
        return np.asarray(out)[-1].argmax(-1) == batch.target[-1]

    def evaluate(self, model, batch_size=512):
        acc = float((predict(model, self.x_test, batch_size)[-1].argmax(-1) == self.y_test).mean())
        return {"metric": "test accuracy", "value": acc, "solved": acc >= THRESHOLD,
                "text": f"test accuracy {acc:.2%} on {N_TEST} held-out images (criterion >= {THRESHOLD:.0%})"}

    def __repr__(self):
        return "Digits()"
