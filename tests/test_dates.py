"""The date-translation task: surface forms, one answer per string, the held-out split, encodings, and a tiny
training run from the command line (the full run, >= 95% held-out exact match, is measured in README)."""
import datetime

import numpy as np

import nblstm
from nblstm.cli import main
from nblstm.tasks import dates as D


def test_every_form_renders_and_every_string_has_one_answer():
    rng = np.random.default_rng(0)
    days = [datetime.date.fromordinal(int(o)) for o in
            rng.integers(D.FIRST.toordinal(), D.LAST.toordinal() + 1, 2000)] + [D.FIRST, D.LAST]
    seen = {}
    for d in days:
        for form in range(len(D.FORMATS)):
            for case in range(3):
                s = D.render(d, form, case)
                assert set(s) <= set(D.SRC_CHARS[1:]), s
                assert seen.setdefault(s, d) == d, (s, d, seen[s])
    d = datetime.date(2026, 11, 24)
    forms = {D.render(d, f) for f in range(len(D.FORMATS))}
    assert {"24 Nov 2026", "Tuesday, November 24, 2026", "11/24/26", "the 24th of November, 2026"} <= forms
    assert D.render(datetime.date(2001, 3, 2), D.FORMATS.index("{e}.{n}.{y}")) == "2.3.01"
    assert [D._ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 31)] == \
        ["1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "31st"]


def test_held_out_days_never_appear_in_training_batches():
    task = D.Dates()
    test = {d.toordinal() for d in task.test_days}
    assert len(test) == task.N_TEST and not test & set(task.train_days.tolist())
    batch = task.batch(np.random.default_rng(1), 64, 0)
    src, tgt_in, lengths = batch.x
    assert src.shape == (lengths.max(), 64) and tgt_in.shape == batch.target.shape == (D.TGT_LEN, 64)
    assert np.all(tgt_in[0] == D.BOS) and np.all(batch.target[-1] == D.EOS)
    assert np.array_equal(tgt_in[1:], batch.target[:-1])                      # teacher forcing: shifted right
    assert all(np.all(src[L:, b] == 0) and np.all(src[:L, b] > 0) for b, L in enumerate(lengths))
    isos = D.decode_targets(batch.target.T)
    assert all(datetime.date.fromisoformat(s).toordinal() not in test for s in isos)


def test_cli_trains_dates_for_a_few_steps(capsys):
    code = main(["train", "dates", "--steps", "3", "--hidden-size", "4", "--batch-size", "4", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 1 and "trained steps 0..3" in out and "held-out dates" in out and "NOT SOLVED" in out
    assert "Seq2Seq(" in out


def test_example_attention_is_a_distribution_over_the_input():
    task = D.Dates()
    model = task.make_model(4, seed=0)
    text = "Tuesday, November 24, 2026"
    out, attn = D.example_attention(model, text)
    assert isinstance(out, str) and attn.shape[1] == len(text)
    np.testing.assert_allclose(attn.sum(axis=1), 1, rtol=1e-5)
    assert isinstance(model, nblstm.Seq2Seq)
