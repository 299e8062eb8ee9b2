"""What every task shares: a batch type, the model a task trains by default, and the loss it uses."""
import collections

import numpy as np

from .. import losses
from .._grad import no_grad
from .._layers import Embedding, Linear, SequenceModel

#: One training batch, time-major. x (T, B, I) floats, or (T, B) integer indices for a task with a vocabulary;
#: target (T, B, K) floats (regression) or (T, B) class indices; mask (T, B) weights of the steps that count
#: (the last step of each sequence, or every valid step); reset: start from a zero state (False only when the
#: batch continues the streams of the previous one, as in character-level language modelling).
Batch = collections.namedtuple("Batch", "x target mask reset")


def lstm_core(input_size, hidden_size, *, seed=None, dtype=np.float32, device="cpu", forget_bias=1.0, num_layers=1):
    """The default recurrent core: an nblstm.LSTM of `num_layers` stacked layers (one unless told), forget-gate bias
    1 unless told (Jozefowicz et al. 2015); tasks with long lags ask for more (see ``Task.forget_bias``).

    """
    from .._lstm import LSTM
    return LSTM(input_size, hidden_size, num_layers=num_layers, seed=seed, dtype=dtype, forget_bias=forget_bias,
                device=device)


def rnn_core(input_size, hidden_size, *, seed=None, dtype=np.float32, device="cpu", forget_bias=None, num_layers=1):
    """A vanilla (Elman, tanh) nblstm.RNN of `num_layers` layers, the baseline of the long-lag tasks; it has no
    forget gate, so `forget_bias` is ignored."""
    from .._rnn import RNN
    return RNN(input_size, hidden_size, num_layers=num_layers, seed=seed, dtype=dtype, device=device)


class Task:
    """A data set from the literature with its success criterion.

    Subclasses set the attributes and implement ``batch`` and ``evaluate``; ``correct`` (per-sequence success
    during training, for a criterion over the most recent ``window`` training sequences) is optional.
    """

    name = "task"
    input_size = 1          # features per step, or the vocabulary size when `vocab`
    output_size = 1
    loss_kind = "xent"      # "xent": softmax cross-entropy on class indices; "mse": squared error
    vocab = False           # x holds integer indices (the model starts with an Embedding)
    embedding_dim = 0
    window = 0              # training criterion over the last `window` sequences (0: none)
    forget_bias = 1.0       # of the default LSTM core: f = sigmoid(b) ~ 0.73 at b = 1 forgets over ~3 steps at
                            # first; lags of 50+ steps need b ~ log(lag) (Tallec & Ollivier 2018, "chrono")
    criterion = ""          # one line: what counts as solved, and where it is defined

    def batch(self, rng, batch_size, step):
        raise NotImplementedError

    def loss(self, out, batch, reduction="mean"):
        """(loss, dL/dout) of the model's output on a batch."""
        if self.loss_kind == "mse":
            return losses.mse(out, batch.target, batch.mask, reduction=reduction)
        return losses.softmax_cross_entropy(out, batch.target, batch.mask, reduction=reduction)

    def correct(self, out, batch):
        """Per-sequence success (B,) bools on a training batch, or None when the task tracks none."""
        return None

    def evaluate(self, model, batch_size=256):
        """Held-out evaluation -> dict with ``metric`` (name), ``value``, ``solved`` (bool or None) and ``text``."""
        raise NotImplementedError

    def make_model(self, hidden_size, *, seed=0, dtype=np.float32, device="cpu", core=None, forget_bias=None):
        """SequenceModel: [Embedding ->] core(input, hidden_size) -> Linear(hidden_size, output_size).

        ``core(input_size, hidden_size, seed=, dtype=, device=)`` builds the recurrent part; None: nblstm.LSTM
        with forget-gate bias `forget_bias` (default: the task's). Any factory of an object with the same
        forward/backward contract drops in, e.g. a vanilla RNN: ``task.make_model(64, core=make_rnn)``.
        """
        if core is None:
            fb = self.forget_bias if forget_bias is None else forget_bias

            def core(i, h, **kw):
                return lstm_core(i, h, forget_bias=fb, **kw)
        emb = Embedding(self.input_size, self.embedding_dim, dtype=dtype, seed=seed + 2) if self.vocab else None
        core_in = self.embedding_dim if self.vocab else self.input_size
        return SequenceModel(core(core_in, hidden_size, seed=seed, dtype=dtype, device=device),
                             Linear(hidden_size, self.output_size, dtype=dtype, seed=seed + 1), emb)

    def __repr__(self):
        return f"{type(self).__name__}()"


def predict(model, x, batch_size=256):
    """Model outputs on x (T, N, ...) in slices of `batch_size` sequences, without a tape."""
    outs = []
    with no_grad():
        for s in range(0, x.shape[1], batch_size):
            outs.append(np.asarray(model(x[:, s:s + batch_size])[0]))
    return np.concatenate(outs, axis=1)


def last_step_mask(lengths, T, dtype=np.float32):
    """(T, B) mask that is 1 at t = lengths[b] - 1 and 0 elsewhere: a loss at each sequence's last step."""
    mask = np.zeros((T, len(lengths)), dtype)
    mask[np.asarray(lengths) - 1, np.arange(len(lengths))] = 1
    return mask


def softmax(z):
    return np.exp(losses.log_softmax(np.asarray(z, np.float64)))
