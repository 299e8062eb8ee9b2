"""Checkpoints: models and optimizer state in one ``.npz`` file, without pickle, written atomically.

Layout of the file (a NumPy ``.npz``, i.e. a zip of ``.npy`` arrays; read with ``allow_pickle=False``)::

    __format__        "nblstm-checkpoint"
    __version__       FORMAT_VERSION (int)
    __metadata__      JSON text (step, task, command-line arguments, ...)
    __sha256__        digest of every other entry (name, dtype, shape, bytes), in sorted order
    model/<name>/<parameter>    one entry per parameter of each saved model (its state_dict)
    optim/<key>                 the optimizer's state_dict (type, step, hyperparameters, buffers)

``save`` writes a temporary file in the target's folder, flushes it to disk, reads it back and checks it,
and only then renames it over the target (``os.replace``, atomic on POSIX and Windows): a crash or an error
at any point leaves the previous checkpoint as it was. ``load`` checks the format, the version, the digest
and that every saved tensor matches a model parameter by name and shape before it changes anything; a
truncated, corrupt or mismatched file raises :class:`CheckpointError` (a ValueError) naming the file.

Examples
--------
>>> import os, tempfile, numpy as np, nblstm
>>> lstm = nblstm.LSTM(2, 3, seed=0)
>>> path = os.path.join(tempfile.mkdtemp(), "ckpt.npz")
>>> nblstm.io.save(path, lstm, metadata={"step": 10})
>>> other = nblstm.LSTM(2, 3, seed=1)
>>> nblstm.io.load(path, other)["step"]
10
>>> bool(np.array_equal(other.parameters()["weight_hh_l0"], lstm.parameters()["weight_hh_l0"]))
True
"""
import hashlib
import json
import os
import tempfile

import numpy as np

__all__ = ["save", "load", "read", "CheckpointError", "CheckpointMismatchError", "FORMAT", "FORMAT_VERSION"]

FORMAT = "nblstm-checkpoint"
FORMAT_VERSION = 1
_RESERVED = ("__format__", "__version__", "__metadata__", "__sha256__")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: not a checkpoint, truncated, corrupt, or of another version."""


class CheckpointMismatchError(CheckpointError, KeyError):
    """A sound checkpoint whose tensors do not fit the model or optimizer it is loaded into."""

    def __str__(self):                     # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def _models(models):
    """An object with state_dict, or a dict name -> object, or None -> dict name -> object."""
    if models is None:
        return {}
    if hasattr(models, "state_dict"):
        return {"model": models}
    models = dict(models)
    for name, m in models.items():
        if not isinstance(name, str) or not name or "/" in name:
            raise ValueError(f"models: names must be non-empty strings without '/', got {name!r}")
        if not hasattr(m, "state_dict"):
            raise TypeError(f"models[{name!r}]: expected an object with state_dict(), got {type(m).__name__}")
    return models


def _digest(arrays):
    h = hashlib.sha256()
    for k in sorted(arrays):
        if k == "__sha256__":
            continue
        a = np.ascontiguousarray(arrays[k])
        h.update(f"{k}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _entries(models, optimizer, metadata):
    arrays = {"__format__": np.array(FORMAT), "__version__": np.array(FORMAT_VERSION, np.int64),
              "__metadata__": np.array(json.dumps({} if metadata is None else metadata, sort_keys=True))}
    for name, m in _models(models).items():
        for k, v in m.state_dict().items():
            arrays[f"model/{name}/{k}"] = np.asarray(v)
    if optimizer is not None:
        for k, v in optimizer.state_dict().items():
            arrays[f"optim/{k}"] = np.asarray(v)
    for k, a in arrays.items():
        if a.dtype.kind == "O":
            raise TypeError(f"save: {k!r} is an object array; checkpoints hold numbers and strings only (no pickle)")
    arrays["__sha256__"] = np.array(_digest(arrays))
    return arrays


def save(path, models=None, optimizer=None, metadata=None):
    """Write a checkpoint of `models` (an object with state_dict, or a dict name -> object), the `optimizer`'s
    state and JSON-serializable `metadata` to `path`, atomically (see the module docstring).

    Raises TypeError for metadata that JSON cannot write; on any error the file at `path` is untouched and no
    temporary file is left behind.
    """
    path = os.fspath(path)
    arrays = _entries(models, optimizer, metadata)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        read(tmp)                          # what is on disk must read back whole before it replaces anything
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:                                   # make the rename itself durable (POSIX; not possible everywhere)
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def read(path):
    """Read and verify a checkpoint -> dict with ``models`` (name -> {parameter: array}), ``optimizer``
    ({key: array} or None), ``metadata`` (dict) and ``version``. Changes nothing; raises CheckpointError."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint {path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}       # reads every entry: zip CRCs are checked here
    except Exception as e:                            # zipfile.BadZipFile, ValueError, EOFError, OSError, ...
        raise CheckpointError(f"checkpoint {path}: unreadable, truncated or corrupt ({type(e).__name__}: {e})") \
            from e
    missing = [k for k in _RESERVED if k not in arrays]
    if missing:
        raise CheckpointError(f"checkpoint {path}: not an nblstm checkpoint (no {', '.join(missing)})")
    fmt = str(arrays["__format__"])
    if fmt != FORMAT:
        raise CheckpointError(f"checkpoint {path}: format {fmt!r}, expected {FORMAT!r}")
    try:
        version = int(arrays["__version__"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path}: unreadable format version {arrays['__version__']!r}") from e
    if version != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path}: format version {version}, this nblstm reads version "
                              f"{FORMAT_VERSION}")
    if str(arrays["__sha256__"]) != _digest(arrays):
        raise CheckpointError(f"checkpoint {path}: contents do not match their SHA-256 digest (corrupt file)")
    try:
        metadata = json.loads(str(arrays["__metadata__"]))
    except ValueError as e:
        raise CheckpointError(f"checkpoint {path}: metadata is not valid JSON ({e})") from e
    models, optim = {}, {}
    for k, a in arrays.items():
        if k.startswith("model/"):
            _, name, param = k.split("/", 2)
            models.setdefault(name, {})[param] = a
        elif k.startswith("optim/"):
            optim[k[len("optim/"):]] = a
        elif k not in _RESERVED:
            raise CheckpointError(f"checkpoint {path}: unexpected entry {k!r}")
    return {"models": models, "optimizer": optim or None, "metadata": metadata, "version": version}


def load(path, models=None, optimizer=None):
    """Load a checkpoint into `models` (as given to :func:`save`) and `optimizer`; returns the metadata.

    Every saved model must be given and every given model must be saved, with the same parameter names and
    shapes; an optimizer given must have been saved, of the same type over the same parameters. Any mismatch
    raises CheckpointMismatchError naming the file, and leaves every object as it was.
    """
    path = os.fspath(path)
    ck = read(path)
    targets = _models(models)
    saved = ck["models"]
    if set(saved) != set(targets):
        raise CheckpointMismatchError(f"checkpoint {path}: holds models {sorted(saved)}, asked to load "
                                      f"{sorted(targets)}")
    if optimizer is not None and ck["optimizer"] is None:
        raise CheckpointMismatchError(f"checkpoint {path}: holds no optimizer state")
    before = {n: m.state_dict() for n, m in targets.items()}
    opt_before = optimizer.state_dict() if optimizer is not None else None
    try:
        for n, m in targets.items():
            m.load_state_dict(saved[n])
        if optimizer is not None:
            optimizer.load_state_dict(ck["optimizer"])
    except (KeyError, ValueError, TypeError) as e:
        for n, m in targets.items():
            m.load_state_dict(before[n])
        if optimizer is not None:
            optimizer.load_state_dict(opt_before)
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        raise CheckpointMismatchError(f"checkpoint {path}: does not fit: {msg}") from e
    return ck["metadata"]
