"""Data sets from the literature, each with its success criterion.

========================  ===============================================================================
``Adding(T)``             adding problem, Hochreiter & Schmidhuber 1997, Sec. 5.4 (|error| < 0.04)
``TemporalOrder(n)``      temporal order problem, ibid., Sec. 5.6, Tasks 6a (n=2) and 6b (n=3)
``EmbeddedReber()``       embedded Reber grammar, ibid., Sec. 5.1 (next-symbol prediction)
``CharLM()``              character-level language model on the standard library's source (bits per char)
``Digits()``              scikit-learn's 8x8 digits read row by row (needs the ``tasks`` extra)
``Dates()``               human-written dates -> ISO 8601, sequence to sequence with attention (nblstm.Seq2Seq)
========================  ===============================================================================

A task makes batches (``task.batch(rng, batch_size, step)`` -> :class:`Batch`), builds its default model
(``task.make_model(hidden_size, core=...)``), computes its loss and evaluates a model on held-out data
(``task.evaluate(model)`` -> dict with ``metric``, ``value``, ``solved``, ``text``). ``nblstm.training.fit``
trains any of them; ``python -m nblstm train <task>`` is the command line.
"""
from ._base import Batch, Task, lstm_core, rnn_core
from .adding import Adding, adding_problem
from .charlm import CharLM, stdlib_text
from .digits import Digits
from .dates import Dates
from .reber import EmbeddedReber, embedded_reber_string
from .temporal_order import TemporalOrder, temporal_order

#: task name (the CLI's) -> class
TASKS = {"adding": Adding, "temporal-order": TemporalOrder, "reber": EmbeddedReber, "charlm": CharLM,
         "digits": Digits, "dates": Dates}

__all__ = ["Task", "Batch", "lstm_core", "rnn_core", "TASKS", "Adding", "adding_problem", "TemporalOrder", "temporal_order",
           "EmbeddedReber", "embedded_reber_string", "CharLM", "stdlib_text", "Digits"]
__all__ += ["Dates"]
