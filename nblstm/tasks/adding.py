"""The adding problem of Hochreiter & Schmidhuber (1997), Section 5.4, Experiment 4.

Definition implemented (the paper's, word for word where it is precise):

- Each sequence element is a pair (value, marker). Values are drawn from U[-1, 1]; markers are 1.0, 0.0 or
  -1.0.
- The length L of a sequence is a random integer in [T, T + T/10] (T/10 rounded down; T = 100: 100..110).
- Exactly two pairs are marked with 1.0: first one of the first ten pairs, chosen uniformly (its value is X1);
  then one of the first T/2 - 1 still unmarked pairs, chosen uniformly (its value is X2).
- All other markers are 0, except the first and the final pair, whose markers are -1 (when the first pair is
  a marked one it keeps marker 1 and its value is set to 0: the paper says "X1 is set to zero in the rare case
  where the first pair of the sequence got marked"; we zero the first pair's value whichever of the two
  selections marked it).
- The target, given only at the sequence end, is 0.5 + (X1 + X2) / 4 (the sum scaled to [0, 1]).
- A sequence is processed correctly if the absolute error at its end is below 0.04.
- Training stops when the 2000 most recent training sequences were all processed correctly (the paper also
  asks an average training error below 0.01, which |error| < 0.04 everywhere implies for the squared error).
  The paper tests on 2560 fresh sequences and reports how many are wrong. ``evaluate`` does the same and calls
  the task solved when the first 2000 of those fresh sequences are all correct (the stopping criterion
  applied to held-out data).

Here sequences of one batch are padded with zeros after their end to the batch's longest; the model's output
is read at each sequence's own last step (a mask), so padding never influences a prediction or a gradient.
"""
import numpy as np

from ._base import Batch, Task, last_step_mask, predict

TOLERANCE = 0.04
WINDOW = 2000
TEST_SEQUENCES = 2560


def adding_problem(rng, batch_size, T=100, dtype=np.float32):
    """`batch_size` sequences of the adding problem for minimal length T (see the module docstring).

    Returns x (Lmax, B, 2) [value, marker], target (Lmax, B, 1) (the target at every step of a sequence; only
    the last counts), mask (Lmax, B) (1 at each sequence's last step) and lengths (B,).
    """
    if T < 4:
        raise ValueError(f"T: the adding problem needs T >= 4 (T/2 - 1 >= 1 candidates for X2), got {T}")
    B = batch_size
    lengths = rng.integers(T, T + T // 10 + 1, size=B)
    L = int(lengths.max())
    x = np.zeros((L, B, 2), dtype)
    target = np.zeros((L, B, 1), dtype)
    for b in range(B):
        n = lengths[b]
        values = rng.uniform(-1.0, 1.0, n)
        markers = np.zeros(n)
        markers[0] = markers[n - 1] = -1.0
        first = rng.integers(0, min(10, n))
        candidates = [p for p in range(n) if p != first][:T // 2 - 1]
        second = candidates[rng.integers(0, len(candidates))]
        if 0 in (first, second):
            values[0] = 0.0                       # "set to zero in the rare case where the first pair ... got marked"
        markers[first] = markers[second] = 1.0
        x[:n, b, 0], x[:n, b, 1] = values, markers
        target[:, b, 0] = 0.5 + (values[first] + values[second]) / 4.0
    return x, target, last_step_mask(lengths, L, dtype), lengths


class Adding(Task):
    """Adding problem at minimal length T (Hochreiter & Schmidhuber 1997, Section 5.4); regression, MSE."""

    name = "adding"
    input_size = 2
    output_size = 1
    loss_kind = "mse"
    window = WINDOW
    forget_bias = 5.0       # sigmoid(5) = 0.993: the state survives the >= 40-step lags at initialization

    def __init__(self, T=100, dtype=np.float32):
        self.T = int(T)
        self.dtype = np.dtype(dtype)
        self.criterion = (f"|error| < {TOLERANCE} at the end of each of the {WINDOW} most recent training "
                          f"sequences (Hochreiter & Schmidhuber 1997, Sec. 5.4)")

    def batch(self, rng, batch_size, step):
        x, target, mask, _ = adding_problem(rng, batch_size, self.T, self.dtype)
        return Batch(x, target, mask, True)

    def correct(self, out, batch):
        err = np.abs((np.asarray(out) - batch.target)[..., 0])       # (L, B)
        return (err * batch.mask).sum(axis=0) < TOLERANCE            # the error at each sequence's end

    def evaluate(self, model, batch_size=256):
        x, target, mask, _ = adding_problem(np.random.default_rng(20_000_000 + self.T), TEST_SEQUENCES, self.T,
                                            self.dtype)
        out = predict(model, x, batch_size)
        err = ((np.abs(out - target)[..., 0]) * mask).sum(axis=0)
        wrong = int((err >= TOLERANCE).sum())
        solved = bool(np.all(err[:WINDOW] < TOLERANCE))       # the paper's criterion on 2000 fresh sequences
        return {"metric": "test sequences with |error| >= 0.04", "value": wrong, "solved": solved,
                "mean_abs_error": float(err.mean()),
                "text": f"{wrong} of {TEST_SEQUENCES} fresh test sequences wrong (|error| >= {TOLERANCE}), "
                        f"mean |error| {err.mean():.4f} (the paper, T=100: 1 of 2560 wrong)"}

    def __repr__(self):
        return f"Adding(T={self.T})"
