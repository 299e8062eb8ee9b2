"""Task generators: the definitions of Hochreiter & Schmidhuber (1997) checked on samples, their statistics,
the embedded Reber grammar, the character-level corpus and the digits (when scikit-learn is there)."""
import builtins

import numpy as np
import pytest

import nblstm
from nblstm import tasks
from nblstm.tasks import reber


@pytest.mark.parametrize("T", [10, 100])
def test_adding_problem_definition(T):
    x, target, mask, lengths = tasks.adding_problem(np.random.default_rng(0), 500, T)
    assert x.dtype == np.float32 and x.shape == (lengths.max(), 500, 2)
    assert lengths.min() >= T and lengths.max() <= T + T // 10
    assert set(np.unique(lengths)) == set(range(T, T + T // 10 + 1))    # every length occurs
    for b in range(500):
        n = lengths[b]
        v, m = x[:n, b, 0], x[:n, b, 1]
        assert not x[n:, b].any() and mask[:, b].sum() == 1 and mask[n - 1, b] == 1
        assert np.all(np.abs(v) <= 1)
        marked = np.flatnonzero(m == 1)
        assert len(marked) == 2
        # one of them among the first ten, the other among the first T/2 - 1 pairs other than that one
        assert any(a < 10 and b - (a < b) < T // 2 - 1 for a, b in (marked, marked[::-1]))
        rest = np.setdiff1d(np.arange(n), marked)
        assert set(m[rest]) <= {0.0, -1.0}
        assert (m[0] == -1) == (0 not in marked) and (m[n - 1] == -1) == (n - 1 not in marked)   # (T=10: n-1 < 10)
        assert np.sum(m == -1) == 2 - (0 in marked) - (n - 1 in marked)
        if 0 in marked:
            assert v[0] == 0
        assert target[n - 1, b, 0] == pytest.approx(0.5 + (v[marked].sum()) / 4, abs=1e-6)


def test_adding_problem_statistics():
    x, target, mask, lengths = tasks.adding_problem(np.random.default_rng(1), 4000, 100)
    t = (target[..., 0] * mask).sum(0)
    assert 0 <= t.min() and t.max() <= 1
    assert abs(t.mean() - 0.5) < 0.01                  # E[(X1 + X2)/4] = 0
    assert abs(t.var() - 2 / 3 / 16) < 0.003           # Var = 2 * (1/3) / 16: the loss of predicting 0.5
    first = np.array([np.flatnonzero(x[:10, b, 1] == 1).min() for b in range(4000)])
    counts = np.bincount(first, minlength=10)
    assert counts.min() > 300                          # each of the first ten pairs is marked ~400 times
    with pytest.raises(ValueError, match="T: the adding problem needs T >= 4"):
        tasks.adding_problem(np.random.default_rng(0), 2, 3)


def test_adding_criterion_and_evaluate():
    task = tasks.Adding(10)
    b = task.batch(np.random.default_rng(0), 8, 0)
    out = b.target.copy()
    out[:, :3] += 0.05                                  # three sequences off by 0.05 at every step
    out[:, 3] += 0.03
    ok = task.correct(out, b)
    assert ok.tolist() == [False] * 3 + [True] * 5

    class Oracle:                                      # reads the answer off the markers
        def __call__(self, x, state=None):
            v, m = x[..., 0], x[..., 1]
            s = (v * (m == 1)).cumsum(0)
            return (0.5 + s / 4)[..., None], None
    res = task.evaluate(Oracle())
    assert res["value"] == 0 and res["solved"] and "0 of 2560" in res["text"]


def test_temporal_order_definition():
    rng = np.random.default_rng(0)
    for n_rel, ranges in ((2, [(10, 20), (50, 60)]), (3, [(10, 20), (33, 43), (66, 76)])):
        x, classes, mask, lengths = tasks.temporal_order(rng, 400, n_rel)
        assert lengths.min() >= 100 and lengths.max() <= 110
        sym = x.argmax(-1)
        for b in range(400):
            n = lengths[b]
            s = sym[:n, b]
            assert np.all(x[:n, b].sum(-1) == 1) and not x[n:, b].any()
            assert s[0] == 0 and s[n - 1] == 1                           # E ... B
            rel = np.flatnonzero(s >= 6)
            assert len(rel) == n_rel
            assert all(lo <= p <= hi for p, (lo, hi) in zip(rel, ranges))
            assert np.all((s[1:n - 1] >= 2) & (s[1:n - 1] <= 7))
            bits = s[rel] - 6
            assert classes[b] == int("".join(map(str, bits)), 2)
            assert mask[n - 1, b] == 1 and mask[:, b].sum() == 1
        counts = np.bincount(classes, minlength=2 ** n_rel)
        assert counts.min() > 400 / 2 ** n_rel * 0.6
    with pytest.raises(ValueError, match="n_relevant"):
        tasks.TemporalOrder(4)


def test_temporal_order_criterion():
    task = tasks.TemporalOrder()
    b = task.batch(np.random.default_rng(0), 6, 0)
    last = b.mask.argmax(0)
    out = np.zeros(b.mask.shape + (4,))
    cls = b.target[last, np.arange(6)]
    out[last, np.arange(6), cls] = 5.0                 # p(true) = e^5 / (e^5 + 3) ~ 0.98: correct
    out[last[0], 0, cls[0]] = 0.5                      # p(true) ~ 0.35: wrong
    assert task.correct(out, b).tolist() == [False] + [True] * 5


def _valid_reber(s):
    node = 0
    for c in s:
        nxt = dict(reber._REBER[node]).get(c, -1)
        if nxt == -1:
            return False
        node = nxt
    return node is None


def test_embedded_reber_strings_and_legal_sets():
    rng = np.random.default_rng(0)
    lengths = []
    for _ in range(500):
        s, legal = tasks.embedded_reber_string(rng)
        assert s[0] == "B" and s[-1] == "E" and s[1] in "TP" and s[-2] == s[1]
        assert _valid_reber(s[2:-2])
        assert len(legal) == len(s) and legal[-1] == set()
        for t in range(len(s) - 1):
            assert s[t + 1] in legal[t]
        assert legal[-3] == {s[1]}                     # after the inner E: the outer symbol, the long lag
        lengths.append(len(s))
    assert min(lengths) == 9 and np.mean(lengths) > 11
    train, test = reber.make_sets(0)
    assert len(train) == len(test) == 256
    assert not {s for s, _ in train} & {s for s, _ in test}


def test_reber_criterion_accepts_the_grammar_and_rejects_a_guess():
    task = tasks.EmbeddedReber()
    strings = [s for s, _ in task.test_set[:20]]
    legal = reber.legal_matrix([lg for _, lg in task.test_set[:20]])
    perfect = legal * 1.0 + np.random.default_rng(0).uniform(0, 0.1, legal.shape)
    assert reber.correct_strings(perfect, legal).all()
    wrong = perfect.copy()
    t = len(strings[0]) - 3                             # predict the other outer symbol for string 0
    other = "P" if strings[0][1] == "T" else "T"
    wrong[t, 0, reber.SYMBOLS.index(other)] = 2.0
    assert reber.correct_strings(wrong, legal).tolist() == [False] + [True] * 19
    x, target, mask = reber.encode(strings)
    assert np.all(x.sum(-1)[mask > 0] == 1) and np.all(target[mask > 0] >= 0)
    assert np.all(x.argmax(-1)[1:][mask[:-1] > 0] == target[:-1][mask[:-1] > 0])   # target = next input


def test_charlm_corpus_and_streams():
    task = tasks.CharLM(bptt=16, max_bytes=200_000, eval_chars=2000)
    assert task.train_data.dtype == np.uint8 and len(task.train_data) + len(task.held_data) == 200_000 + 0
    assert bytes(task.train_data[:200]).decode().isascii()
    again = tasks.CharLM(bptt=16, max_bytes=200_000)
    assert np.array_equal(again.held_data, task.held_data)               # deterministic selection
    b0, b1 = task.batch(None, 4, 0), task.batch(None, 4, 1)
    assert b0.reset and not b1.reset and b0.x.shape == (16, 4)
    assert np.array_equal(b0.target[:-1], b0.x[1:]) and np.array_equal(b1.x[0], b0.target[-1])   # continues
    chunks = (len(task.train_data) // 4 - 1) // 16
    assert task.batch(None, 4, chunks).reset                               # the streams start over
    assert 4 < task.unigram < 6
    model = task.make_model(8, seed=0)
    res = task.evaluate(model)
    assert 6 < res["value"] < 10 and res["solved"] is False                # untrained: ~log2(256) = 8 bits


def test_charlm_text_is_the_standard_library():
    import os
    text = tasks.stdlib_text(10_000)
    first = sorted(f for f in os.listdir(os.path.dirname(os.__file__)) if f.endswith(".py"))[0]
    with open(os.path.join(os.path.dirname(os.__file__), first), "rb") as f:
        assert text.startswith(f.read()[:1000])


def test_digits_without_scikit_learn_names_the_extra(monkeypatch):
    real = builtins.__import__

    def no_sklearn(name, *a, **k):
        if name.startswith("sklearn"):
            raise ImportError("No module named 'sklearn'")
        return real(name, *a, **k)
    monkeypatch.setattr(builtins, "__import__", no_sklearn)
    with pytest.raises(ImportError, match=r"nblstm\[tasks\]"):
        tasks.Digits()


def test_digits_rows_as_sequences():
    pytest.importorskip("sklearn")
    task = tasks.Digits()
    assert task.x_train.shape == (8, 1437, 8) and task.x_test.shape == (8, 360, 8)
    assert 0 <= task.x_train.min() and task.x_train.max() <= 1
    assert set(np.unique(task.y_test)) == set(range(10))
    from sklearn.datasets import load_digits
    d = load_digits()
    k = int(np.flatnonzero((np.abs(d.images / 16.0 - task.x_test[:, 0][None]) < 1e-6).all(axis=(1, 2)))[0])
    assert d.target[k] == task.y_test[0]                                   # rows of the image are the steps
    b = task.batch(np.random.default_rng(0), 5, 0)
    assert b.mask[-1].all() and not b.mask[:-1].any() and np.all(b.target[-1] >= 0)


def test_fit_stops_when_the_training_criterion_is_met():
    class Easy(nblstm.tasks.Adding):
        window = 8

    task = Easy(10)
    model = task.make_model(16, seed=0)
    opt = nblstm.optim.Adam(model, lr=1e-2)
    r = nblstm.fit(task, model, opt, steps=3000, batch_size=32, clip=1.0)
    assert r.criterion_met_at == r.steps < 3000
