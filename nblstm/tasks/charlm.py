"""Character-level language modelling on the Python standard library's own source code.

Text: the top-level ``*.py`` files of the running interpreter's standard library (the folder of
``os.__file__``), sorted by name and joined with newlines, read as bytes (vocabulary of 256; the source is
almost all ASCII, so a byte is a character). Deterministic for a given Python version. The last 5 % of the
bytes (the files at the end of the alphabet) are held out; nothing of them is seen in training.

Training is truncated BPTT over B parallel streams: the training bytes are cut into B equal streams and each
batch continues every stream by ``bptt`` characters, with the LSTM state carried over from the previous batch
and the gradient cut at the boundary (``Batch.reset`` is True when the streams start over).

The metric is bits per character on held-out text: the mean of -log2 p(next byte), the state carried through
the held-out text in chunks. For scale, the ``unigram`` baseline is the cross-entropy of the held-out text
under the training text's byte frequencies (add-one smoothed): a model that learned nothing beyond letter
frequencies scores that; the task counts as solved when the model beats it.
"""
import glob
import os

import numpy as np

from .. import losses
from .._grad import no_grad
from ._base import Batch, Task

VOCAB = 256


def stdlib_text(max_bytes=None):
    """The standard library's top-level source files as one bytes object (sorted by file name)."""
    folder = os.path.dirname(os.__file__)
    files = sorted(glob.glob(os.path.join(folder, "*.py")))
    if not files:
        raise FileNotFoundError(f"no *.py files in {folder}: cannot build the character-level corpus")
    parts = []
    for f in files:
        with open(f, "rb") as fh:
            parts.append(fh.read())
    text = b"\n".join(parts)
    return text[:max_bytes] if max_bytes else text


def split(text, holdout=0.05):
    """bytes -> (train, held-out) uint8 arrays, the held-out part being the last `holdout` fraction."""
    data = np.frombuffer(text, np.uint8)
    cut = int(len(data) * (1 - holdout))
    return data[:cut], data[cut:]


def unigram_bits(train, held):
    """Bits per character of `held` under add-one-smoothed byte frequencies of `train`."""
    counts = np.bincount(train, minlength=VOCAB) + 1.0
    logp = np.log2(counts / counts.sum())
    return float(-logp[held].mean())


class CharLM(Task):
    """Next-byte prediction on standard library source; truncated BPTT over parallel streams."""

    name = "charlm"
    input_size = output_size = VOCAB
    vocab = True
    loss_kind = "xent"

    def __init__(self, bptt=64, embedding_dim=32, max_bytes=None, eval_chars=100_000, holdout=0.05):
        self.bptt = int(bptt)
        self.embedding_dim = int(embedding_dim)
        self.train_data, self.held_data = split(stdlib_text(max_bytes), holdout)
        self.eval_chars = int(eval_chars)
        self.unigram = unigram_bits(self.train_data, self.held_data[:self.eval_chars])
        self.criterion = (f"held-out bits per character below the unigram baseline {self.unigram:.3f} "
                          f"(training byte frequencies)")

    def batch(self, rng, batch_size, step):
        """Step `step` of the streams: x (bptt, B) bytes, target (bptt, B) the bytes that follow."""
        stream = len(self.train_data) // batch_size
        chunks = (stream - 1) // self.bptt
        if chunks < 1:
            raise ValueError(f"batch_size: {batch_size} streams of {stream} bytes are shorter than bptt="
                             f"{self.bptt} + 1")
        p = (step % chunks) * self.bptt
        idx = (np.arange(batch_size) * stream)[None, :] + p + np.arange(self.bptt)[:, None]
        x = self.train_data[idx].astype(np.int64)
        target = self.train_data[idx + 1].astype(np.int64)
        return Batch(x, target, np.ones(x.shape, np.float32), p == 0)

    def evaluate(self, model, batch_size=16, chunk=256):
        data = self.held_data[:self.eval_chars]
        stream = (len(data) - 1) // batch_size
        idx = (np.arange(batch_size) * stream)[None, :] + np.arange(stream)[:, None]      # (stream, B)
        total, count, state = 0.0, 0, None
        with no_grad():
            for s in range(0, stream, chunk):
                rows = idx[s:s + chunk]
                out, state = model(data[rows].astype(np.int64), state)
                nll, _ = losses.softmax_cross_entropy(np.asarray(out), data[rows + 1].astype(np.int64),
                                                      reduction="sum")
                total, count = total + nll, count + rows.size
        bpc = total / count * losses.BITS_PER_NAT
        return {"metric": "held-out bits per character", "value": float(bpc), "solved": bool(bpc < self.unigram),
                "text": f"{bpc:.3f} bits per character on {count} held-out characters (unigram baseline "
                        f"{self.unigram:.3f})"}

    def __repr__(self):
        return f"CharLM(bptt={self.bptt}, train={len(self.train_data)} bytes, held-out={len(self.held_data)})"
