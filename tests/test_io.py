"""Checkpoints: round trips of models and optimizer state, and every way a file can be bad: truncated,
flipped bytes, wrong version or format, mismatched model, pickled content; a failed save never replaces a
good checkpoint and leaves no temporary file."""
import json
import os
import zipfile

import numpy as np
import pytest

import nblstm
from nblstm import io


def _trained(seed=0):
    model = nblstm.tasks.Adding(10).make_model(4, seed=seed)
    opt = nblstm.optim.Adam(model, lr=0.01)
    nblstm.fit(nblstm.tasks.Adding(10), model, opt, steps=3, batch_size=4, seed=seed)
    return model, opt


def _same(a, b):
    return all(np.array_equal(v, b.parameters()[k]) for k, v in a.parameters().items())


def test_round_trip_model_optimizer_metadata(tmp_path):
    path = tmp_path / "ck.npz"
    model, opt = _trained()
    io.save(path, model, opt, metadata={"step": 3, "note": "héllo"})
    other, other_opt = _trained(seed=1)
    assert not _same(model, other)
    meta = io.load(path, other, other_opt)
    assert meta == {"step": 3, "note": "héllo"}
    assert _same(model, other)
    sa, sb = opt.state_dict(), other_opt.state_dict()
    assert sa.keys() == sb.keys() and all(np.array_equal(sa[k], sb[k]) for k in sa)
    with np.load(path, allow_pickle=False) as z:            # plain npz, readable without pickle
        assert int(z["__version__"]) == io.FORMAT_VERSION and str(z["__format__"]) == io.FORMAT


def test_training_resumed_from_checkpoint_equals_uninterrupted(tmp_path):
    task = nblstm.tasks.Adding(10)
    a = task.make_model(4, seed=0)
    oa = nblstm.optim.Adam(a, lr=0.01)
    nblstm.fit(task, a, oa, steps=6, batch_size=4)
    b = task.make_model(4, seed=0)
    ob = nblstm.optim.Adam(b, lr=0.01)
    nblstm.fit(task, b, ob, steps=3, batch_size=4)
    io.save(tmp_path / "ck.npz", b, ob, {"step": 3})
    c = task.make_model(4, seed=5)
    oc = nblstm.optim.Adam(c, lr=0.01)
    step = io.load(tmp_path / "ck.npz", c, oc)["step"]
    nblstm.fit(task, c, oc, steps=6, batch_size=4, start_step=step)
    assert _same(a, c)


def test_several_models_by_name(tmp_path):
    enc, dec = nblstm.LSTM(2, 3, seed=0), nblstm.Linear(3, 1, seed=0)
    io.save(tmp_path / "ck.npz", {"enc": enc, "dec": dec})
    enc2, dec2 = nblstm.LSTM(2, 3, seed=1), nblstm.Linear(3, 1, seed=1)
    io.load(tmp_path / "ck.npz", {"enc": enc2, "dec": dec2})
    assert _same(enc, enc2) and _same(dec, dec2)
    with pytest.raises(io.CheckpointMismatchError, match=r"holds models \['dec', 'enc'\], asked to load \['enc'\]"):
        io.load(tmp_path / "ck.npz", {"enc": enc2})


@pytest.fixture
def good(tmp_path):
    path = tmp_path / "good.npz"
    model, opt = _trained()
    io.save(path, model, opt, {"step": 3})
    return path, model, opt


def _fresh():
    model = nblstm.tasks.Adding(10).make_model(4, seed=7)
    return model, nblstm.optim.Adam(model, lr=0.5), model.state_dict()


def _unchanged(model, before):
    return all(np.array_equal(v, model.parameters()[k]) for k, v in before.items())


@pytest.mark.parametrize("keep", [0.0, 0.3, 0.6, 0.9, 0.999])
def test_truncated_file_raises_clear_error(good, keep):
    path, _, _ = good
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])
    model, opt, before = _fresh()
    with pytest.raises(io.CheckpointError, match=f"checkpoint {path}"):
        io.load(path, model, opt)
    assert _unchanged(model, before) and opt.step_count == 0


def test_flipped_bytes_anywhere_are_caught_or_harmless(good):
    """Flip one byte at many offsets: loading either fails with CheckpointError or (a byte the reader never
    uses, e.g. a zip timestamp) gives exactly the saved parameters. Never silently different weights."""
    path, saved, _ = good
    data = path.read_bytes()
    caught = 0
    for off in range(0, len(data), max(1, len(data) // 300)):
        bad = bytearray(data)
        bad[off] ^= 0x5A
        path.write_bytes(bytes(bad))
        model, opt, before = _fresh()
        try:
            io.load(path, model, opt)
        except io.CheckpointError as e:
            assert str(path) in str(e)
            assert _unchanged(model, before)
            caught += 1
        else:
            assert _same(saved, model), f"flip at {off} loaded different weights"
    assert caught > 250


def test_flipped_byte_in_parameter_data_is_caught(good):
    path, model, _ = good
    data = bytearray(path.read_bytes())
    raw = model.parameters()["core.weight_hh_l0"].tobytes()
    at = bytes(data).index(raw[:16])                # inside the stored array's bytes
    data[at + 5] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(io.CheckpointError, match="corrupt"):
        io.load(path, _fresh()[0])


def _rewrite(path, change):
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    change(arrays)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def test_wrong_version_and_format(good):
    path, _, _ = good

    def version(a):
        a["__version__"] = np.array(99)
        a["__sha256__"] = np.array(io._digest(a))
    _rewrite(path, version)
    with pytest.raises(io.CheckpointError, match="format version 99, this nblstm reads version 1"):
        io.load(path, _fresh()[0])
    _rewrite(path, lambda a: a.pop("__format__"))
    with pytest.raises(io.CheckpointError, match="not an nblstm checkpoint"):
        io.read(path)
    np.savez(path, x=np.zeros(3))
    with pytest.raises(io.CheckpointError, match="not an nblstm checkpoint"):
        io.read(path)
    path.write_text("hello")
    with pytest.raises(io.CheckpointError, match="unreadable, truncated or corrupt"):
        io.read(path)


def test_pickled_content_is_refused(good):
    path, _, _ = good
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["model/model/evil"] = np.array([{"a": 1}], dtype=object)
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    with pytest.raises(io.CheckpointError, match="unreadable"):
        io.read(path)
    original = path.read_bytes()
    with pytest.raises(TypeError, match="object array"):              # and save never writes one
        io.save(path, {"m": _ObjModel()})
    assert path.read_bytes() == original


class _ObjModel:
    def state_dict(self):
        return {"w": np.array([object()], dtype=object)}


def test_mismatched_model_raises_and_changes_nothing(good):
    path, _, _ = good
    bigger = nblstm.tasks.Adding(10).make_model(5, seed=0)
    before = bigger.state_dict()
    with pytest.raises(io.CheckpointMismatchError, match=f"checkpoint {path}: does not fit.*expected shape"):
        io.load(path, bigger)
    assert _unchanged(bigger, before)
    lstm_only = nblstm.LSTM(2, 4, seed=0)
    with pytest.raises(KeyError, match="missing"):                  # CheckpointMismatchError is a KeyError too
        io.load(path, lstm_only)
    model, opt, before = _fresh()
    sgd = nblstm.optim.SGD(model, 0.1, momentum=0.9)
    with pytest.raises(io.CheckpointMismatchError, match="Adam optimizer, loading into SGD"):
        io.load(path, model, sgd)
    assert _unchanged(model, before) and sgd.step_count == 0           # the model was restored as well
    io.save(path, model)
    with pytest.raises(io.CheckpointMismatchError, match="holds no optimizer state"):
        io.load(path, model, opt)


def test_failed_save_keeps_the_good_checkpoint(good, monkeypatch):
    path, model, opt = good
    original = path.read_bytes()
    folder = path.parent
    with pytest.raises(TypeError):
        io.save(path, model, opt, metadata={"bad": object()})         # not JSON
    assert path.read_bytes() == original

    def half_then_fail(f, **arrays):                                   # a disk that fills up mid-write
        f.write(b"PK\x03\x04 partial")
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(np, "savez", half_then_fail)
    with pytest.raises(OSError, match="No space"):
        io.save(path, model, opt)
    assert path.read_bytes() == original
    monkeypatch.undo()

    real = np.savez

    def corrupting(f, **arrays):                                       # writes, but the bytes on disk are bad
        real(f, **arrays)
        f.seek(40)
        f.write(b"\xff" * 64)
    monkeypatch.setattr(np, "savez", corrupting)
    with pytest.raises(io.CheckpointError):
        io.save(path, model, opt)
    assert path.read_bytes() == original
    monkeypatch.undo()
    assert sorted(os.listdir(folder)) == ["good.npz"]                  # no temporary files left behind
    io.load(path, _fresh()[0], _fresh()[1])


def test_save_is_a_rename_of_a_complete_file(good, monkeypatch):
    path, model, opt = good
    seen = []
    real_replace = os.replace

    def spy(src, dst):
        seen.append((src, dst, zipfile.is_zipfile(src)))
        return real_replace(src, dst)
    monkeypatch.setattr(os, "replace", spy)
    io.save(path, model, opt, {"step": 4})
    (src, dst, complete), = seen
    assert os.path.dirname(src) == os.path.dirname(os.path.abspath(dst)) and complete
    assert io.read(path)["metadata"] == {"step": 4}
    assert json.loads(str(np.load(path, allow_pickle=False)["__metadata__"])) == {"step": 4}


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="no such file"):
        io.load("/nonexistent/ck.npz", nblstm.LSTM(1, 1))
