"""Attention: every kernel of both backends against the NumPy oracle (nblstm.reference_attention), the oracle's
backward against finite differences, AttentionDecoder against the oracle and against finite differences for every
parameter, the memory (encoder outputs), the decoder inputs and the initial state, masks (padding gets zero attention
and zero gradient), Seq2Seq's gradients and decoding, and the cpu/cuda twins."""
import inspect

import numpy as np
import pytest
from hypothesis import strategies as st

import nblstm
from _devices import CUDA_REASON, DEVICES, assert_twins, given_on, max_size
from _training_fd import numeric_grad, rel_err
from nblstm import backends, testing
from nblstm import reference_attention as R
from nblstm._attention import attention_kernels
from nblstm.kernels import attention_cpu

needs_cuda = pytest.mark.skipif(bool(CUDA_REASON), reason=CUDA_REASON)
SCORES = ("general", "dot", "additive")
TWINS = ("dot_score", "dot_score_backward", "additive_score", "additive_score_backward", "masked_softmax",
         "masked_softmax_backward", "context", "context_backward", "add_bias_tanh", "tanh_backward")
FD_TOL = 1e-7           # relative error of central differences in float64 (eps 1e-6); measured ~1e-9 .. 1e-10


@st.composite
def _problem(draw, device):
    """Shapes S, B, N (at simulator size on cuda), lengths in 0..S (0 and S included), dtype, seed."""
    n = max_size(device, 6)
    S, B, N = (draw(st.integers(1, n)) for _ in range(3))
    lengths = np.array([draw(st.integers(0, S)) for _ in range(B)], np.int64)
    return S, B, N, lengths, draw(testing.float_dtypes()), draw(testing.seeds())


def call(device, name, *args):
    """Run attention kernel `name` of `device` on NumPy arrays; return every argument afterwards as a NumPy array."""
    dev = [backends.to_device(device, a) if isinstance(a, np.ndarray) else a for a in args]
    getattr(attention_kernels(device), name)(*dev)
    return [backends.to_host(d) if isinstance(a, np.ndarray) else a for a, d in zip(args, dev)]


def _r(shape, dtype, seed, scale=1.0):
    return testing.random_array(shape, dtype, seed, scale)


def _pad_garbage(a, lengths, value=np.nan):
    """a (S, B, .) with the padded positions s >= lengths[b] set to `value`: kernels must never read them."""
    a = a.copy()
    for b, L in enumerate(lengths):
        a[L:, b] = value
    return a


@pytest.mark.parametrize("device", DEVICES)
def test_score_kernels_match_reference(device):
    @given_on(device, _problem(device))
    def check(problem):
        S, B, N, lengths, dt, seed = problem
        keys, q, v = _r((S, B, N), dt, seed), _r((B, N), dt, seed + 1), _r((N,), dt, seed + 2)
        de = _r((B, S), dt, seed + 3) * (np.arange(S) < lengths[:, None])      # softmax backward's: 0 on padding
        dkeys0, dv0 = _r((S, B, N), dt, seed + 4), _r((N,), dt, seed + 5)       # backward adds into these
        garbage = _pad_garbage(keys, lengths)
        e, = call(device, "dot_score", np.empty((B, S), dt), garbage, q, lengths)[:1]
        testing.assert_close(e, R.dot_score(keys, q, lengths), dt, "dot_score e")
        dq, dkeys = call(device, "dot_score_backward", np.empty((B, N), dt), dkeys0.copy(), de, garbage, q,
                         lengths)[:2]
        rq, rk = R.dot_score_backward(de, keys, q)
        testing.assert_close(dq, rq, dt, "dot dq")
        testing.assert_close(dkeys, dkeys0 + rk, dt, "dot dkeys")
        e, P = call(device, "additive_score", np.empty((B, S), dt), np.zeros((S, B, N), dt), garbage, q, v,
                    lengths)[:2]
        re, rP = R.additive_score(keys, q, v, lengths)
        testing.assert_close(e, re, dt, "additive e")
        valid = (np.arange(S)[:, None] < lengths[None, :])[:, :, None]
        testing.assert_close(P * valid, rP * valid, dt, "additive P")
        dq, dkeys, dv = call(device, "additive_score_backward", np.empty((B, N), dt), dkeys0.copy(), dv0.copy(),
                             de, _pad_garbage(P, lengths), v, lengths)[:3]
        rq, rk, rv = R.additive_score_backward(de, rP * valid, v)
        testing.assert_close(dq, rq, dt, "additive dq")
        testing.assert_close(dkeys, dkeys0 + rk, dt, "additive dkeys")
        testing.assert_close(dv, dv0 + rv, dt, "additive dv")
    check()


@pytest.mark.parametrize("device", DEVICES)
def test_softmax_and_context_kernels_match_reference(device):
    @given_on(device, _problem(device))
    def check(problem):
        S, B, D, lengths, dt, seed = problem
        e = _r((B, S), dt, seed, scale=3.0)
        a, = call(device, "masked_softmax", np.full((B, S), np.nan, dt), e, lengths)[:1]
        ra = R.masked_softmax(e, lengths)
        testing.assert_close(a, ra, dt, "a")
        assert np.all(a[np.arange(S)[None, :] >= lengths[:, None]] == 0)       # exactly zero on padding
        np.testing.assert_allclose(a.sum(axis=1), (lengths > 0).astype(float), rtol=1e-5)
        da = _r((B, S), dt, seed + 1)
        de, = call(device, "masked_softmax_backward", np.full((B, S), np.nan, dt), da, a, lengths)[:1]
        testing.assert_close(de, R.masked_softmax_backward(da, ra), dt, "de")
        values = _r((S, B, D), dt, seed + 2)
        garbage = _pad_garbage(values, lengths)
        ctx, = call(device, "context", np.empty((B, D), dt), a, garbage, lengths)[:1]
        testing.assert_close(ctx, R.context(ra, values), dt, "ctx")
        dctx, dv0 = _r((B, D), dt, seed + 3), _r((S, B, D), dt, seed + 4)
        da, dvalues = call(device, "context_backward", np.empty((B, S), dt), dv0.copy(), dctx, a, garbage,
                           lengths)[:2]
        rda, rdv = R.context_backward(dctx, ra, values)
        valid = np.arange(S)[None, :] < lengths[:, None]
        testing.assert_close(da, rda * valid, dt, "da")
        testing.assert_close(dvalues, dv0 + rdv, dt, "dvalues")
        y, b = _r((B, D), dt, seed + 5, 2.0), _r((D,), dt, seed + 6)
        out, = call(device, "add_bias_tanh", y.copy(), b)[:1]
        testing.assert_close(out, np.tanh(y + b), dt, "tanh")
        dz, = call(device, "tanh_backward", np.empty((B, D), dt), dctx, out)[:1]
        testing.assert_close(dz, dctx * (1 - out * out), dt, "tanh backward")
    check()


def test_softmax_is_stable_and_handles_empty_sources():
    e = np.array([[1e4, 1e4 - 1, -1e4], [0.0, 5.0, 7.0]], np.float32)
    a = call("cpu", "masked_softmax", np.empty_like(e), e, np.array([2, 0]))[0]
    assert np.all(np.isfinite(a)) and a[1].tolist() == [0, 0, 0]
    np.testing.assert_allclose(a[0], [1 / (1 + np.exp(-1)), 1 / (1 + np.exp(1)), 0], rtol=1e-6)


def test_reference_backward_matches_finite_differences():
    rng = np.random.default_rng(0)
    S, B, N = 5, 3, 4
    lengths = np.array([5, 2, 0])
    keys, q, v, values = (rng.standard_normal(s) for s in ((S, B, N), (B, N), (N,), (S, B, N)))
    w = rng.standard_normal((B, N))

    def loss(score):
        e = R.dot_score(keys, q, lengths) if score == "dot" else R.additive_score(keys, q, v, lengths)[0]
        return float((w * R.context(R.masked_softmax(e, lengths), values)).sum())

    for score in ("dot", "additive"):
        e, P = (R.dot_score(keys, q, lengths), None) if score == "dot" else R.additive_score(keys, q, v, lengths)
        a = R.masked_softmax(e, lengths)
        da, dvalues = R.context_backward(w, a, values)
        de = R.masked_softmax_backward(da, a)
        grads = dict(zip(("q", "keys"), R.dot_score_backward(de, keys, q))) if score == "dot" else \
            dict(zip(("q", "keys", "v"), R.additive_score_backward(de, P, v)))
        grads["values"] = dvalues
        for name, g in grads.items():
            arr = {"q": q, "keys": keys, "v": v, "values": values}[name]
            assert rel_err(g, numeric_grad(lambda: loss(score), arr)) < FD_TOL, (score, name)


def _decoder_problem(dtype, seed, T=3, B=2, E=3, H=4, S=4, D=4, lengths=(4, 2)):
    rng = np.random.default_rng(seed)
    x, memory = rng.standard_normal((T, B, E)), rng.standard_normal((S, B, D))
    state = tuple(0.5 * rng.standard_normal((B, H)) for _ in range(3))
    return x.astype(dtype), memory.astype(dtype), tuple(s.astype(dtype) for s in state), np.array(lengths)


def _cases(*combos):
    """pytest params (device, *combo) for every combo on cpu, and for the combos whose first entry is in `on_cuda`
    on cuda (the simulator runs a decoder step in ~0.1 s: the default suite stays short)."""
    cuda = DEVICES[1]
    return [("cpu", *c) for c, _ in combos] + [pytest.param("cuda", *c, marks=cuda.marks) for c, on in combos if on]


@pytest.mark.parametrize("device, score, dtype", _cases(
    (("general", np.float32), False), (("dot", np.float32), False), (("additive", np.float32), True),
    (("general", np.float64), True), (("dot", np.float64), True), (("additive", np.float64), True)))
def test_decoder_matches_reference(device, score, dtype):
    x, memory, state, lengths = _decoder_problem(dtype, 1)
    dec = nblstm.AttentionDecoder(3, 4, 4, score=score, attention_size=3, dtype=dtype, seed=2, device=device)
    y, attn, out_state = dec(x, memory, state, lengths=lengths)
    p = dec.state_dict()
    ry, rattn, rstate, cache = R.decoder_forward(x, memory, lengths, *state, p, score)
    for name, got, want in (("y", y, ry), ("attn", attn, rattn), *zip(("h_n", "c_n", "o_n"), out_state, rstate)):
        assert got.dtype == dtype, name
        testing.assert_close(got, want, dtype, name)
    rng = np.random.default_rng(3)
    dy, dattn = rng.standard_normal(y.shape).astype(dtype), rng.standard_normal(attn.shape).astype(dtype)
    dstate = tuple(rng.standard_normal(s.shape).astype(dtype) for s in state)
    dx, dmemory, dstate0 = dec.backward(dy, dstate, dattn)
    rdx, rdm, rds, rg = R.decoder_backward(dy, dattn, *dstate, p, cache)
    for name, got, want in (("dx", dx, rdx), ("dmemory", dmemory, rdm), *zip(("dh0", "dc0", "do0"), dstate0, rds)):
        testing.assert_close(got, want, dtype, name)
    for k, g in dec.grads.items():
        testing.assert_close(backends.to_host(g), rg[k], dtype, k)


def _fd_check(dec, x, memory, state, lengths, seed=0):
    """Relative error per tensor of the analytic gradient against central differences, for every parameter, x, the
    memory and the three parts of the initial state; the loss weighs y, the attention weights and the final state
    with random weights. On cpu element by element; on cuda (the simulator runs a forward in ~0.1 s) along one
    random direction u per tensor: (L(p + eps u) - L(p - eps u)) / 2 eps against <dL/dp, u>."""
    rng = np.random.default_rng(seed)
    x, memory, state = x.copy(), memory.copy(), tuple(s.copy() for s in state)
    with nblstm.no_grad():
        y, attn, out_state = dec(x, memory, state, lengths=lengths)
    wy, wa = rng.standard_normal(y.shape), rng.standard_normal(attn.shape)
    ws = tuple(rng.standard_normal(s.shape) for s in out_state)

    def loss():
        with nblstm.no_grad():
            y, attn, out_state = dec(x, memory, state, lengths=lengths)
        return float((wy * y).sum() + (wa * attn).sum() + sum((w * s).sum() for w, s in zip(ws, out_state)))

    def error(analytic, arr, put=lambda: None):
        if dec.device == "cpu":
            return rel_err(analytic, numeric_grad(lambda: (put(), loss())[1], arr))
        u, orig = rng.standard_normal(arr.shape), arr.copy()
        values = []
        for sign in (1, -1):
            arr[...] = orig + sign * 1e-6 * u
            values.append((put(), loss())[1])
        arr[...] = orig
        put()
        return rel_err(np.dot(np.ravel(analytic), u.ravel()), (values[0] - values[1]) / 2e-6)

    dec.zero_grad()
    dec(x, memory, state, lengths=lengths)
    dx, dmemory, dstate = dec.backward(wy, ws, wa)
    errors = {"x": error(dx, x), "memory": error(dmemory, memory)}
    errors.update({n: error(d, s) for n, d, s in zip(("h0", "c0", "o0"), dstate, state)})
    for name, live in dec.parameters().items():
        host = backends.to_host(live, copy=True)
        errors[name] = error(backends.to_host(dec.grads[name]), host, lambda: backends.copy_into(live, host))
        backends.copy_into(live, host)                              # numeric_grad restores host, not live
    return errors, dmemory


# On cuda, additive only (its path runs every kernel but the dot score's, ~10 s on the simulator); the cuda general
# and dot decoders equal the cpu-checked oracle to 1e-10 in float64 (test_decoder_matches_reference).
@pytest.mark.parametrize("device, score", _cases((("general",), False), (("dot",), False), (("additive",), True)))
def test_decoder_gradients_match_finite_differences(device, score):
    x, memory, state, lengths = _decoder_problem(np.float64, 4, T=3 if device == "cpu" else 2, lengths=(4, 3))
    dec = nblstm.AttentionDecoder(3, 4, 4, score=score, attention_size=3, dtype=np.float64, seed=5, device=device)
    errors, _ = _fd_check(dec, x, memory, state, lengths)
    assert len(errors) == 5 + len(dec.parameters())
    bad = {k: e for k, e in errors.items() if not e < FD_TOL}
    assert not bad, bad


@pytest.mark.parametrize("device", DEVICES)
def test_padding_gets_zero_attention_and_zero_gradient(device):
    """Positions s >= lengths[b] get exactly zero attention weight and zero memory gradient, and what they hold
    changes nothing: not the outputs, not any gradient. (The kernels never read padding, nan included: see the
    kernel tests; the key GEMM's weight gradient sums 0 * memory over padded rows, so nan there would reach it.)"""
    x, memory, state, lengths = _decoder_problem(np.float64, 6, lengths=(4, 1))
    dec = nblstm.AttentionDecoder(3, 4, 4, score="additive", dtype=np.float64, seed=7, device=device)
    runs = []
    for fill in (-7.0, 1e3):
        dec.zero_grad()
        y, attn, _ = dec(x, _pad_garbage(memory, lengths, fill), state, lengths=lengths)
        dx, dmemory, dstate = dec.backward(np.ones_like(y), None, np.ones_like(attn))
        assert np.all(attn[:, 1, 1:] == 0) and np.all(dmemory[1:, 1] == 0)
        runs.append([y, attn, dx, dmemory[:1], *dstate, *(backends.to_host(g) for g in dec.grads.values())])
    for a, b in zip(*runs):
        assert np.all(np.isfinite(a)) and np.array_equal(a, b)
    if device == "cpu":                                                     # and the gradients are right
        errors, _ = _fd_check(dec, x, memory, state, lengths)
        assert max(errors.values()) < FD_TOL, errors


def test_input_feeding_and_state_carry_make_steps_compose():
    """Decoding one step at a time, carrying (h, c, o), equals one forward over all steps."""
    x, memory, state, lengths = _decoder_problem(np.float64, 8, T=4)
    dec = nblstm.AttentionDecoder(3, 4, 4, score="general", dtype=np.float64, seed=9)
    y, attn, final = dec(x, memory, state, lengths=lengths)
    s = state
    for t in range(4):
        yt, at, s = dec(x[t:t + 1], memory, s, lengths=lengths)
        np.testing.assert_allclose(yt[0], y[t], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(at[0], attn[t], rtol=1e-12, atol=1e-14)
    for a, b in zip(s, final):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_decoder_errors_name_the_argument():
    with pytest.raises(ValueError, match="memory_size"):
        nblstm.AttentionDecoder(3, 4, 5, score="dot")
    with pytest.raises(ValueError, match="score"):
        nblstm.AttentionDecoder(3, 4, 5, score="cosine")
    dec = nblstm.AttentionDecoder(3, 4, 5)
    with pytest.raises(RuntimeError, match="no tape"):
        dec.backward(np.zeros((1, 1, 4)))
    x, memory = np.zeros((2, 3, 3)), np.zeros((4, 3, 5))
    with pytest.raises(ValueError, match="memory"):
        dec(x, np.zeros((4, 2, 5)))
    with pytest.raises(ValueError, match="lengths"):
        dec(x, memory, lengths=[1, 2, 5])
    with pytest.raises(ValueError, match="state"):
        dec(x, memory, (np.zeros((3, 4)), np.zeros((3, 4))))
    with nblstm.no_grad():
        dec(x, memory)
    with pytest.raises(RuntimeError, match="no tape"):
        dec.backward(np.zeros((2, 3, 4)))


def test_state_dict_round_trip_and_names():
    dec = nblstm.AttentionDecoder(3, 4, 5, score="additive", attention_size=6, seed=0)
    sd = dec.state_dict()
    assert sorted(sd) == ["attn.bias_c", "attn.weight_cc", "attn.weight_ch", "attn.weight_k", "attn.weight_q",
                          "attn.weight_v", "cell.bias_hh", "cell.bias_ih", "cell.weight_hh", "cell.weight_ih"]
    assert sd["cell.weight_ih"].shape == (16, 7) and sd["attn.weight_k"].shape == (6, 5)
    other = nblstm.AttentionDecoder(3, 4, 5, score="additive", attention_size=6, seed=1)
    other.load_state_dict(sd)
    assert all(np.array_equal(other.state_dict()[k], v) for k, v in sd.items())
    with pytest.raises(KeyError, match="missing"):
        other.load_state_dict({k: v for k, v in sd.items() if k != "attn.weight_v"})


def _tiny_seq2seq(score="general", device="cpu", dtype=np.float64):
    return nblstm.Seq2Seq(9, 6, embedding_dim=3, hidden_size=2, score=score, attention_size=3, dtype=dtype, seed=0,
                          bos=0, eos=1, device=device)


@pytest.mark.parametrize("score", SCORES)
def test_seq2seq_gradients_match_finite_differences(score):
    """Every parameter of embedding -> bidirectional encoder -> bridge -> attention decoder -> head."""
    model = _tiny_seq2seq(score)
    src, tgt_in, lengths = np.array([[2, 3], [4, 5], [6, 8], [7, 8]]), np.array([[0, 0], [2, 3], [4, 5]]), [4, 2]
    rng = np.random.default_rng(1)
    w = rng.standard_normal((3, 2, 6))
    wa = rng.standard_normal((3, 2, 4))

    def loss():
        with nblstm.no_grad():
            logits, attn = model(src, tgt_in, lengths)
        return float((w * logits).sum() + (wa * attn).sum())

    model.zero_grad()
    model(src, tgt_in, lengths)
    model.backward(w, wa)
    # eps 1e-5: some gradients of this tiny model are ~1e-3 of the loss, where 1e-6 leaves ~2e-7 of roundoff
    errors = {k: rel_err(model.grads[k], numeric_grad(loss, p, eps=1e-5)) for k, p in model.parameters().items()}
    assert len(errors) == 19 + (3 if score == "additive" else 1 if score == "general" else 0)
    bad = {k: e for k, e in errors.items() if not e < FD_TOL}
    assert not bad, bad


def test_seq2seq_source_padding_changes_nothing():
    """The encoder gets src_lengths and the attention mask hides padding: whatever token pads a source, the
    logits, the attention and every gradient are the same."""
    runs = []
    for pad in (0, 8):
        model = _tiny_seq2seq("additive")
        src = np.array([[2, 3], [4, 5], [6, pad], [7, pad]])
        logits, attn = model(src, np.array([[0, 0], [2, 3]]), [4, 2])
        model.backward(np.ones_like(logits), np.ones_like(attn))
        runs.append([logits, attn, *model.grads.values()])
    for a, b in zip(*runs):
        assert np.array_equal(a, b)


@needs_cuda
def test_seq2seq_cuda_matches_cpu():
    src, tgt_in, lengths = np.array([[2, 3], [4, 5], [6, 8]]), np.array([[0, 0], [2, 3]]), [3, 2]
    res = []
    for device in ("cpu", "cuda"):
        model = _tiny_seq2seq("additive", device)
        logits, attn = model(src, tgt_in, lengths)
        model.backward(np.ones_like(logits))
        res.append([logits, attn, *(backends.to_host(g) for g in model.grads.values())])
    for a, b in zip(*res):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_greedy_and_beam_search():
    model = _tiny_seq2seq("general", dtype=np.float32)
    src, lengths = np.array([[2, 3, 4], [4, 5, 6], [6, 8, 8]]), [3, 2, 2]
    tokens, attn = model.greedy(src, lengths, max_len=6)
    assert tokens.shape[0] == 3 and attn.shape == (tokens.shape[1], 3, 3) and np.all(attn[:, 1:, 2] == 0)
    # greedy is the argmax of the teacher-forced forward over its own output
    tgt_in = np.concatenate([np.zeros((1, 3), np.int64), tokens.T[:-1]])
    with nblstm.no_grad():
        logits, attn_tf = model(src, tgt_in, lengths)
    live = np.cumsum(tokens.T == 1, axis=0) - (tokens.T == 1) == 0             # steps up to and with the first eos
    assert np.all((logits.argmax(-1) == tokens.T)[live])
    np.testing.assert_allclose(attn_tf[live], attn[live], rtol=1e-5, atol=1e-6)
    beam1, _ = model.beam_search(src, lengths, beam_size=1, max_len=6)
    assert np.array_equal(beam1, tokens[:, :beam1.shape[1]])
    beam, battn = model.beam_search(src, lengths, beam_size=3, max_len=6)
    # the beam's best hypothesis scores at least as well as greedy's, length-normalized (alpha = 1)

    def normalized(seq, b):
        n = list(seq).index(1) + 1 if 1 in seq else len(seq)
        tin = np.array([[0] + list(seq[:n - 1])]).T
        with nblstm.no_grad():
            lg, _ = model(src[:, b:b + 1], tin, [lengths[b]])
        return float(nblstm.losses.log_softmax(lg.astype(np.float64))[np.arange(n), 0, seq[:n]].sum()) / n

    for b in range(3):
        assert normalized(beam[b], b) >= normalized(tokens[b], b) - 1e-5


@needs_cuda
def test_twins_have_same_names_docstrings_arguments_and_file_order():
    K = attention_kernels("cuda")
    assert_twins(attention_cpu, K, TWINS)
    for name in ("gemm", "add_column_sums"):           # the cuda ones are kernels.cuda's, re-exported
        cpu_fn, cuda_fn = getattr(attention_cpu, name), getattr(K, name).py_func
        assert list(inspect.signature(getattr(cpu_fn, "py_func", cpu_fn)).parameters) == \
            list(inspect.signature(cuda_fn).parameters)
    assert {k.__name__ for k in K.KERNELS} >= set(TWINS) - {"additive_score_backward"}


@pytest.mark.parametrize("obj", [nblstm.AttentionDecoder, nblstm.Seq2Seq], ids=lambda o: o.__name__)
def test_docstring_examples(obj):
    import doctest
    tests = doctest.DocTestFinder(recurse=False).find(obj, obj.__name__, globs={})
    assert tests and tests[0].examples
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    for t in tests:
        runner.run(t)
    assert runner.failures == 0
