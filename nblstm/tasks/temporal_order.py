"""The temporal order problem of Hochreiter & Schmidhuber (1997), Section 5.6, Experiment 6.

Definition implemented (Task 6a, two relevant, widely separated symbols; Task 6b with ``n_relevant=3``):

- Symbols are represented locally (one-hot, 8 input units): E, B, a, b, c, d, X, Y.
- A sequence starts with E, ends with B (the "trigger symbol") and otherwise consists of symbols drawn
  uniformly from {a, b, c, d}, except for the relevant positions, which hold X or Y (each with probability 1/2).
- 6a: the length is a random integer in [100, 110]; t1 in [10, 20] and t2 in [50, 60] (positions counted
  from 0 at E). Four classes by the temporal order: XX -> Q, XY -> R, YX -> S, YY -> U (classes 0..3).
- 6b: t1 in [10, 20], t2 in [33, 43], t3 in [66, 76]; eight classes XXX, XXY, ..., YYY (0..7, X = 0, Y = 1
  read as a binary number).
- The target is given only at the sequence end; a sequence is classified correctly if the final absolute
  error of every output unit is below 0.3. Here the outputs are softmax probabilities: correct means
  p(true class) > 0.7 and every other p < 0.3.
- Training stops when the 2000 most recent training sequences were classified correctly (the paper also
  asks an average training error below 0.1).
"""
import numpy as np

from ._base import Batch, Task, last_step_mask, predict, softmax

SYMBOLS = "EBabcdXY"
TOLERANCE = 0.3
WINDOW = 2000
TEST_SEQUENCES = 2560
_RANGES = {2: [(10, 20), (50, 60)], 3: [(10, 20), (33, 43), (66, 76)]}


def temporal_order(rng, batch_size, n_relevant=2, dtype=np.float32):
    """`batch_size` sequences of Task 6a (n_relevant=2) or 6b (3) -> x (Lmax, B, 8) one-hot, classes (B,),
    mask (Lmax, B) (1 at each sequence's last step), lengths (B,)."""
    if n_relevant not in _RANGES:
        raise ValueError(f"n_relevant: expected 2 (Task 6a) or 3 (Task 6b), got {n_relevant!r}")
    B = batch_size
    lengths = rng.integers(100, 111, size=B)
    L = int(lengths.max())
    sym = np.full((L, B), -1)
    classes = np.zeros(B, np.int64)
    for b in range(B):
        n = lengths[b]
        s = rng.integers(2, 6, size=n)              # a, b, c, d
        s[0], s[n - 1] = 0, 1                       # E ... B
        for lo, hi in _RANGES[n_relevant]:
            bit = rng.integers(0, 2)
            s[rng.integers(lo, hi + 1)] = 6 + bit   # X or Y
            classes[b] = 2 * classes[b] + bit
        sym[:n, b] = s
    x = np.zeros((L, B, len(SYMBOLS)), dtype)
    t, b = np.nonzero(sym >= 0)
    x[t, b, sym[t, b]] = 1
    return x, classes, last_step_mask(lengths, L, dtype), lengths


class TemporalOrder(Task):
    """Temporal order problem, Task 6a (4 classes) or 6b (8 classes); softmax cross-entropy at the last step."""

    name = "temporal-order"
    input_size = len(SYMBOLS)
    loss_kind = "xent"
    window = WINDOW
    forget_bias = 5.0       # sigmoid(5) = 0.993: the state survives the >= 40-step lags at initialization

    def __init__(self, n_relevant=2, dtype=np.float32):
        if n_relevant not in _RANGES:
            raise ValueError(f"n_relevant: expected 2 (Task 6a) or 3 (Task 6b), got {n_relevant!r}")
        self.n_relevant = n_relevant
        self.output_size = 2 ** n_relevant
        self.dtype = np.dtype(dtype)
        self.criterion = (f"every output within {TOLERANCE} of its target at the end of each of the {WINDOW} most "
                          f"recent training sequences (Hochreiter & Schmidhuber 1997, Sec. 5.6, "
                          f"Task 6{'ab'[n_relevant - 2]})")

    @staticmethod
    def _targets(classes, mask):
        return (mask > 0) * classes[None, :] + (mask == 0) * -1      # class at the last step, -1 elsewhere

    def batch(self, rng, batch_size, step):
        x, classes, mask, _ = temporal_order(rng, batch_size, self.n_relevant, self.dtype)
        return Batch(x, self._targets(classes, mask), mask, True)

    @staticmethod
    def _ok(out, target, mask):
        last = mask.argmax(axis=0)                                   # each sequence's last step
        cols = np.arange(out.shape[1])
        p = softmax(out[last, cols])                                 # (B, C)
        onehot = np.eye(p.shape[1])[target[last, cols]]
        return np.all(np.abs(p - onehot) < TOLERANCE, axis=1)

    def correct(self, out, batch):
        return self._ok(np.asarray(out), batch.target, batch.mask)

    def evaluate(self, model, batch_size=256):
        x, classes, mask, _ = temporal_order(np.random.default_rng(21_000_000 + self.n_relevant), TEST_SEQUENCES,
                                             self.n_relevant, self.dtype)
        ok = self._ok(predict(model, x, batch_size), self._targets(classes, mask), mask)
        wrong = int((~ok).sum())
        return {"metric": "test sequences misclassified", "value": wrong, "solved": bool(ok[:WINDOW].all()),
                "text": f"{wrong} of {TEST_SEQUENCES} fresh test sequences misclassified (an output off by >= "
                        f"{TOLERANCE}); solved means the first {WINDOW} are all correct"}

    def __repr__(self):
        return f"TemporalOrder(n_relevant={self.n_relevant})"
