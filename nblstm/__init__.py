"""nblstm: Long Short-Term Memory networks with Numba-compiled kernels and hand-written BPTT.

Public names are re-exported here explicitly; see README.md for a tour. ``nblstm.testing`` (hypothesis
strategies) is imported on its own, since hypothesis is only a test dependency.
"""
from . import backends, reference
from ._grad import is_grad_enabled, no_grad
from ._lstm import LSTM, LSTMCell
from ._rnn import RNN
from .gradcheck import GradcheckError, GradcheckResult, gradcheck
from ._layers import Embedding, Linear, SequenceModel
from . import io, losses, optim, tasks, training
from .training import fit, tbptt
from . import reference_attention
from ._attention import AttentionDecoder, Seq2Seq
from . import diagnostics
from .diagnostics import finite_difference_errors, gate_statistics, step_gradients

__version__ = "0.1.0"

__all__ = ["LSTM", "LSTMCell", "RNN", "no_grad", "is_grad_enabled", "gradcheck", "GradcheckResult",
           "GradcheckError", "reference", "backends", "__version__",
           "Linear", "Embedding", "SequenceModel", "losses", "optim", "io", "tasks", "training", "tbptt", "fit"]
__all__ += ["diagnostics", "step_gradients", "gate_statistics", "finite_difference_errors"]
__all__ += ["AttentionDecoder", "Seq2Seq", "reference_attention"]
