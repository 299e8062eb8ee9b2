"""Date translation: human-written dates -> ISO 8601 (``YYYY-MM-DD``), a character-level sequence-to-sequence task
with attention (the classic attention-model exercise: "Tuesday, November 24, 2026" -> "2026-11-24").

Definition implemented:

- Dates are the 36525 days from 1950-01-01 to 2049-12-31 (Python's ``datetime.date``). Two-digit years are read
  in that window (yy < 50: 20yy, else 19yy), so every string has one answer.
- Each example writes one date in one of ``len(FORMATS)`` surface forms (numeric with slashes in US order
  month/day/year and with dots in European order day.month.year, with and without zero padding, two- and four-digit
  years; month names and abbreviations; weekdays; ordinals "24th", "the 24th of November, 2026"; ISO itself;
  compact "20261124"), and forms with letters in mixed, lower or upper case.
- Held out: 10 % of the days (a fixed random split, seed ``split_seed``) never appear in training; the test set
  is 2000 of those days, each in a random form (seed ``split_seed`` + 1). The metric is exact match of the
  whole decoded ISO string, greedy decoding; beam search (width 4) is reported beside it.
"""
import datetime

import numpy as np

from .._attention import Seq2Seq
from ._base import Batch, Task

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
FIRST, LAST = datetime.date(1950, 1, 1), datetime.date(2049, 12, 31)

#: source characters; id 0 is padding
SRC_CHARS = "\0 ,./-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
#: target symbols: bos, eos, then the characters of an ISO date
BOS, EOS = 0, 1
TGT_CHARS = "^$0123456789-"
TGT_LEN = 11                # 10 characters and eos


def _ordinal(n):
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def _fields(d):
    """The pieces a surface form is made of."""
    return dict(Y=f"{d.year}", y=f"{d.year % 100:02d}", m=f"{d.month:02d}", n=f"{d.month}", d=f"{d.day:02d}",
                e=f"{d.day}", o=_ordinal(d.day), B=MONTHS[d.month - 1], b=MONTHS[d.month - 1][:3],
                A=WEEKDAYS[d.weekday()], a=WEEKDAYS[d.weekday()][:3])


#: surface forms, str.format templates over _fields
FORMATS = (
    "{d} {b} {Y}", "{e} {B} {Y}", "{b} {d}, {Y}", "{B} {e}, {Y}", "{A}, {B} {e}, {Y}", "{a}, {d} {b} {Y}",
    "{m}/{d}/{y}", "{n}/{e}/{Y}", "{m}/{d}/{Y}", "{d}.{m}.{Y}", "{e}.{n}.{y}", "{Y}/{m}/{d}", "{d}-{b}-{Y}",
    "{B} {o}, {Y}", "the {o} of {B}, {Y}", "{o} {B} {Y}", "{A} {e} {B} {Y}", "{a} {b} {d} {Y}", "{Y}-{m}-{d}",
    "{Y}{m}{d}", "{e} {b} {y}", "{b} {e} {Y}", "{A}, {o} {b}. {Y}",
)


def render(d, form, case=0):
    """Date `d` in surface form FORMATS[form]; case 0 as written, 1 lower, 2 upper."""
    s = FORMATS[form].format(**_fields(d))
    return s.lower() if case == 1 else s.upper() if case == 2 else s


def iso(d):
    return d.isoformat()


def random_strings(rng, days):
    """A random surface form (and case, 1/4 lower, 1/8 upper) of each date of `days` -> list of strings."""
    forms = rng.integers(0, len(FORMATS), len(days))
    cases = rng.choice(3, size=len(days), p=[0.625, 0.25, 0.125])
    return [render(d, f, c) for d, f, c in zip(days, forms, cases)]


def encode_sources(strings):
    """Strings -> src (S, B) int64 ids (padded with 0), lengths (B,)."""
    lengths = np.array([len(s) for s in strings], np.int64)
    src = np.zeros((lengths.max(), len(strings)), np.int64)
    for b, s in enumerate(strings):
        src[:len(s), b] = [SRC_CHARS.index(ch) for ch in s]
    return src, lengths


def encode_targets(days):
    """Dates -> decoder inputs (TGT_LEN, B) (bos, then the ISO characters) and targets (TGT_LEN, B) (ISO, eos)."""
    ids = np.array([[TGT_CHARS.index(ch) for ch in iso(d)] for d in days], np.int64).T      # (10, B)
    B = len(days)
    return np.concatenate([np.full((1, B), BOS), ids]), np.concatenate([ids, np.full((1, B), EOS)])


def decode_targets(tokens):
    """(B, L) target ids -> strings, each up to its first eos."""
    out = []
    for row in np.asarray(tokens):
        chars = []
        for t in row:
            if t == EOS:
                break
            chars.append(TGT_CHARS[t])
        out.append("".join(chars))
    return out


class Dates(Task):
    """Human-written dates -> ISO 8601, with attention (see the module docstring)."""

    name = "dates"
    input_size = len(SRC_CHARS)
    output_size = len(TGT_CHARS)
    loss_kind = "xent"
    vocab = True
    embedding_dim = 32
    criterion = ("exact match of the ISO date on >= 95% of 2000 held-out dates (days never seen in training), "
                 "greedy decoding")
    N_TEST = 2000

    def __init__(self, split_seed=0, dtype=np.float32, score="general"):
        self.dtype, self.score = np.dtype(dtype), score
        days = FIRST.toordinal() + np.random.default_rng(split_seed).permutation(LAST.toordinal() - FIRST.toordinal() + 1)
        n_held = len(days) // 10
        self.train_days, held = days[n_held:], days[:n_held]
        rng = np.random.default_rng(split_seed + 1)
        self.test_days = [datetime.date.fromordinal(int(o)) for o in rng.choice(held, self.N_TEST, replace=False)]
        self.test_strings = random_strings(rng, self.test_days)

    def batch(self, rng, batch_size, step):
        days = [datetime.date.fromordinal(int(o)) for o in rng.choice(self.train_days, batch_size)]
        src, lengths = encode_sources(random_strings(rng, days))
        tgt_in, target = encode_targets(days)
        return Batch((src, tgt_in, lengths), target, np.ones(target.shape, self.dtype), True)

    def make_model(self, hidden_size, *, seed=0, dtype=np.float32, device="cpu", core=None, forget_bias=None):
        """Seq2Seq: embeddings of 32, a bidirectional LSTM encoder of `hidden_size` per direction, an attention
        decoder of 2 * hidden_size. `core` is not used: the encoder is always nblstm.LSTM (bidirectional)."""
        return Seq2Seq(len(SRC_CHARS), len(TGT_CHARS), embedding_dim=self.embedding_dim, hidden_size=hidden_size,
                       score=self.score, bos=BOS, eos=EOS, dtype=dtype, seed=seed, device=device,
                       forget_bias=1.0 if forget_bias is None else forget_bias)

    def translate(self, model, strings, beam_size=1, batch_size=500):
        """ISO strings the model writes for `strings`: greedy (beam_size 1) or beam search."""
        out = []
        for s in range(0, len(strings), batch_size):
            src, lengths = encode_sources(strings[s:s + batch_size])
            if beam_size == 1:
                tokens, _ = model.greedy(src, lengths, max_len=TGT_LEN + 1)
            else:
                tokens, _ = model.beam_search(src, lengths, beam_size=beam_size, max_len=TGT_LEN + 1)
            out += decode_targets(tokens)
        return out

    def evaluate(self, model, batch_size=500):
        want = [iso(d) for d in self.test_days]
        greedy = np.mean([a == b for a, b in zip(self.translate(model, self.test_strings, 1, batch_size), want)])
        beam = np.mean([a == b for a, b in zip(self.translate(model, self.test_strings, 4, batch_size), want)])
        return {"metric": "held-out exact match", "value": float(greedy), "solved": bool(greedy >= 0.95),
                "text": f"exact match {100 * greedy:.2f}% greedy, {100 * beam:.2f}% beam search (width 4) on "
                        f"{len(want)} held-out dates"}

    def correct(self, out, batch):
        return None

    def __repr__(self):
        return f"Dates(score={self.score!r})"


def example_attention(model, text):
    """(ISO string the model writes for `text`, attention weights (L, S) of greedy decoding)."""
    src, lengths = encode_sources([text])
    tokens, attn = model.greedy(src, lengths, max_len=TGT_LEN + 1)
    return decode_targets(tokens)[0], attn[:, 0]

