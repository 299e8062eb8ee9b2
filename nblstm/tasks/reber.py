"""The embedded Reber grammar, as Hochreiter & Schmidhuber (1997), Section 5.1, Experiment 1 use it.

Definition implemented:

- The Reber grammar (Reber 1967; the transition graph of Cleeremans, Servan-Schreiber & McClelland 1989 and
  Fahlman 1991) over B, T, P, S, X, V, E; from each node both arcs are taken with probability 1/2::

      0 -B-> 1;  1 -T-> 2, 1 -P-> 3;  2 -S-> 2, 2 -X-> 4;  3 -T-> 3, 3 -V-> 5;
      4 -X-> 3, 4 -S-> 6;  5 -P-> 4, 5 -V-> 6;  6 -E-> end

- An embedded Reber string is B, then T or P, then a Reber string, then the same T or P again, then E: the
  second-to-last symbol must be predicted from the second one, across the whole inner string.
- Local representation: 7 input units and 7 output units, one per symbol. The net reads the string one
  symbol at a time and predicts the next one (softmax cross-entropy against the symbol that follows).
- Following Fahlman, 256 training strings and 256 separate test strings; test strings already in the
  training set are not used. Training exemplars are picked at random from the training set, and the state
  is reset to zero after each string.
- A string is processed correctly if at every step the output units of the possible next symbols are the
  most active ones (with k possible next symbols: the k largest outputs are exactly those). The task is
  solved when every string of the training set and of the test set is processed correctly.
"""
import numpy as np

from ._base import Batch, Task, predict

SYMBOLS = "BTPSXVE"
_REBER = {0: [("B", 1)], 1: [("T", 2), ("P", 3)], 2: [("S", 2), ("X", 4)], 3: [("T", 3), ("V", 5)],
          4: [("X", 3), ("S", 6)], 5: [("P", 4), ("V", 6)], 6: [("E", None)]}
N_TRAIN = N_TEST = 256


def reber_string(rng):
    """One Reber string and, per position, the set of symbols that may follow it."""
    out, legal, node = [], [], 0
    while node is not None:
        arcs = _REBER[node]
        sym, node = arcs[rng.integers(0, len(arcs))]
        out.append(sym)
        legal.append({s for s, _ in _REBER[node]} if node is not None else set())
    return "".join(out), legal


def embedded_reber_string(rng):
    """(string, legal) with legal[t] the set of symbols allowed at t + 1 (empty after the final E)."""
    outer = "TP"[rng.integers(0, 2)]
    inner, inner_legal = reber_string(rng)
    inner_legal[-1] = {outer}                      # after the inner E comes the outer symbol again
    return "B" + outer + inner + outer + "E", [{"T", "P"}, {"B"}] + inner_legal + [{"E"}, set()]


def encode(strings, dtype=np.float32):
    """Strings -> x (Lmax, N, 7) one-hot, target (Lmax, N) next-symbol index (-1 at the last symbol and in
    padding), mask (Lmax, N) 1 where a next symbol is to be predicted."""
    L, N = max(map(len, strings)), len(strings)
    x = np.zeros((L, N, len(SYMBOLS)), dtype)
    target = np.full((L, N), -1, np.int64)
    for n, s in enumerate(strings):
        idx = [SYMBOLS.index(c) for c in s]
        x[np.arange(len(s)), n, idx] = 1
        target[:len(s) - 1, n] = idx[1:]
    return x, target, (target >= 0).astype(dtype)


def legal_matrix(legals):
    """Per string a list of legal sets -> (Lmax, N, 7) bools."""
    L = max(map(len, legals))
    m = np.zeros((L, len(legals), len(SYMBOLS)), bool)
    for n, per_step in enumerate(legals):
        for t, allowed in enumerate(per_step):
            for s in allowed:
                m[t, n, SYMBOLS.index(s)] = True
    return m


def correct_strings(out, legal):
    """(N,) bools: at every step the k largest outputs are exactly the k legal next symbols."""
    k = legal.sum(axis=-1)                                      # (L, N)
    rank = np.argsort(np.argsort(-out, axis=-1, kind="stable"), axis=-1)      # 0 = most active
    ok_step = np.all((rank < k[..., None]) == legal, axis=-1) | (k == 0)
    return ok_step.all(axis=0)


def make_sets(seed=0):
    """The fixed training set (256 strings) and test set (256 strings not in the training set)."""
    rng = np.random.default_rng(seed)
    train = [embedded_reber_string(rng) for _ in range(N_TRAIN)]
    seen, test = {s for s, _ in train}, []
    while len(test) < N_TEST:
        s, legal = embedded_reber_string(rng)
        if s not in seen:
            test.append((s, legal))
    return train, test


class EmbeddedReber(Task):
    """Next-symbol prediction on the embedded Reber grammar (Hochreiter & Schmidhuber 1997, Section 5.1)."""

    name = "reber"
    input_size = output_size = len(SYMBOLS)
    loss_kind = "xent"
    criterion = ("at every step the most active outputs are exactly the possible next symbols, for all 256 "
                 "training and 256 test strings (Hochreiter & Schmidhuber 1997, Sec. 5.1)")

    def __init__(self, seed=0, dtype=np.float32):
        self.dtype = np.dtype(dtype)
        self.train_set, self.test_set = make_sets(seed)

    def batch(self, rng, batch_size, step):
        pick = rng.integers(0, len(self.train_set), size=batch_size)
        x, target, mask = encode([self.train_set[i][0] for i in pick], self.dtype)
        return Batch(x, target, mask, True)

    def evaluate(self, model, batch_size=256):
        res = {}
        for name, data in (("train", self.train_set), ("test", self.test_set)):
            x, _, _ = encode([s for s, _ in data], self.dtype)
            res[name] = correct_strings(predict(model, x, batch_size), legal_matrix([lg for _, lg in data]))
        ok_tr, ok_te = int(res["train"].sum()), int(res["test"].sum())
        return {"metric": "test strings predicted correctly", "value": ok_te,
                "solved": bool(res["train"].all() and res["test"].all()),
                "text": f"{ok_tr}/{N_TRAIN} training and {ok_te}/{N_TEST} test strings predicted correctly "
                        f"at every step"}

    def __repr__(self):
        return "EmbeddedReber()"
