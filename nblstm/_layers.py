"""Linear, Embedding and SequenceModel (embedding -> recurrent core -> linear head), with hand-written backward.

Shape letters: N any leading axes (e.g. T, B), I input features, O output features, V vocabulary, E embedding size.
On "cpu" plain NumPy: these layers are one GEMM (or one gather) per call, already BLAS-bound. On "cuda" the kernels
of :mod:`nblstm.kernels.layers_cuda` (the LSTM's tiled GEMM, a gather and an ordered scatter-add). All arithmetic
stays in the model's dtype (float32 arrays with weak Python scalars only, NEP 50).
"""
import math

import numpy as np

from . import _checks, backends
from ._grad import is_grad_enabled
from ._module import Module


def _features(a, name, dtype, size):
    """a (..., size) as a C-contiguous array of `dtype`; non-real input raises TypeError, a wrong size ValueError."""
    arr = np.asarray(a)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected a real-valued array (converted to {dtype}), got dtype {arr.dtype}")
    if arr.ndim < 1 or arr.shape[-1] != size or arr.size == 0:
        raise ValueError(f"{name}: expected shape (..., {size}) with no empty axis, got {arr.shape}")
    return np.ascontiguousarray(arr, dtype=dtype)


def _where(a, like):
    """A result where the caller wants it: on the device when `like` (the caller's input) is a device array, else
    NumPy; nested tuples (a recurrent core's state) element by element."""
    if isinstance(a, (tuple, list)):
        return type(a)(_where(v, like) for v in a)
    return a if a is None or backends.is_device_array(like) else backends.to_host(a)


class _Layer(Module):
    """Shared by Linear and Embedding: the device's kernels, the tape and its error, device rows of an argument.

    ``forward``/``backward`` return results where the caller wants them (device arrays for device input, else NumPy);
    ``_forward``/``_backward`` keep them on ``self.device`` (SequenceModel chains its parts through those)."""

    _tape = None

    def to(self, device):
        """Move parameters and gradients to `device` ("cpu" or "cuda") and run there from now on; returns self.
        "cuda" without numba-cuda or a GPU raises ``nblstm.backends.CudaUnavailableError`` (see Module.to)."""
        super().to(device)
        self._lk = backends.layer_kernels(device)      # on "cpu" only Linear uses them (Embedding runs NumPy)
        return self

    def _check_tape(self):
        if self._tape is None:
            raise RuntimeError(f"{type(self).__name__}.backward: no tape to go back through; call forward first, "
                               "outside nblstm.no_grad()")
        return self._tape

    def _rows(self, a, name, size):
        """a (..., size) on the device as (N, size) rows, and the leading shape: a device array of the model's dtype
        that is C-contiguous is used as is; anything else is checked on the host (_features) and copied over."""
        shape = tuple(getattr(a, "shape", ()))              # (the simulator's device shapes take no [-1])
        if not (backends.is_device_array(a) and hasattr(a, "copy_to_host") and np.dtype(a.dtype) == self.dtype
                and a.is_c_contiguous() and len(shape) >= 1 and shape[-1] == size and a.size > 0):
            a = backends.to_device(self.device, _features(backends.to_host(a), name, self.dtype, size))
            shape = tuple(a.shape)
        return a.reshape(a.size // size, size), tuple(shape[:-1])

    def _repr_device(self, args):
        if self.dtype != np.float32:
            args.append(f"dtype={self.dtype.name}")
        if self.device != "cpu":
            args.append(f"device={self.device!r}")
        return args


class Linear(_Layer):
    r"""Affine map over the last axis, shaped like ``torch.nn.Linear``: :math:`y = x W^\top + b`.

    Parameters
    ----------
    in_features, out_features : int
        I and O.
    bias : bool, default True
        With ``bias`` (O,); without it y = x W^T.
    dtype : np.float32 (default) or np.float64
    seed : int or None
        torch's initialization: ``weight`` (O, I) and ``bias`` (O,) from U(-1/sqrt(I), 1/sqrt(I)).
    device : {"cpu", "cuda"}
        As :class:`nblstm.LSTM`'s: on "cuda" parameters and gradients are device arrays, and results are device
        arrays when the argument (x, dy) is one, else NumPy; ``to(device)`` moves the layer.

    ``forward(x)`` takes x (..., I) and returns y (..., O); ``backward(dy)`` goes back through the most recent
    forward, adds dL/dW and dL/db into ``grads`` and returns dL/dx (..., I).

    Examples
    --------
    >>> import numpy as np, nblstm
    >>> lin = nblstm.Linear(3, 2, seed=0)
    >>> y = lin(np.ones((4, 5, 3), np.float32))          # any leading axes, e.g. (T, B, I)
    >>> dx = lin.backward(np.ones_like(y))
    >>> y.shape, dx.shape, sorted(lin.grads)
    ((4, 5, 2), (4, 5, 3), ['bias', 'weight'])
    """

    def __init__(self, in_features, out_features, *, bias=True, dtype=np.float32, seed=None, device="cpu"):
        self.in_features = _checks.positive_int(in_features, "in_features")
        self.out_features = _checks.positive_int(out_features, "out_features")
        self.bias = bool(bias)
        self.dtype = _checks.as_float_dtype(dtype)
        shapes = {"weight": (self.out_features, self.in_features)}
        if self.bias:
            shapes["bias"] = (self.out_features,)
        self._init_params(shapes, np.random.default_rng(seed), 1.0 / math.sqrt(self.in_features))
        self.to(_checks.choice(device, "device", tuple(backends.TARGETS)))

    def forward(self, x):
        """x (..., I) -> y (..., O)."""
        return _where(self._forward(x), x)

    __call__ = forward

    def _forward(self, x):
        """forward, y on self.device."""
        p = self._params
        if self.device == "cpu":
            x = _features(x, "x", self.dtype, self.in_features)
            x2, lead = np.ascontiguousarray(x.reshape(-1, self.in_features)), x.shape[:-1]
        else:
            x2, lead = self._rows(x, "x", self.in_features)
        # The kernel on cpu too: its GEMM is numba's BLAS (scipy's OpenBLAS), the one the LSTM kernels call. NumPy's
        # own OpenBLAS beside it kept a second thread pool spinning on 2 cores (dates: 73 vs 27 ms per step).
        y = self._empty(x2.shape[0], self.out_features)
        self._lk.linear_forward(y, x2, p["weight"], p["bias"] if self.bias else self._empty(0))
        self._tape = x2 if is_grad_enabled() else None
        return y.reshape(lead + (self.out_features,))

    def backward(self, dy):
        """dL/dy (..., O) -> dL/dx (..., I); adds dL/dweight, dL/dbias into ``grads``."""
        return _where(self._backward(dy), dy)

    def _backward(self, dy):
        """backward, dx on self.device."""
        x2 = self._check_tape()
        if self.device == "cpu":
            dy = _features(dy, "dy", self.dtype, self.out_features)
            dy2, lead = dy.reshape(-1, self.out_features), dy.shape[:-1]
        else:
            dy2, lead = self._rows(dy, "dy", self.out_features)
        if dy2.shape[0] != x2.shape[0]:
            raise ValueError(f"dy: expected {x2.shape[0]} rows of {self.out_features} (as the forward's output), "
                             f"got shape {lead + (self.out_features,)}")
        g = self.grads
        dx = self._empty(x2.shape[0], self.in_features)
        self._lk.linear_backward(dx, g["weight"], g["bias"] if self.bias else self._empty(0),
                                 np.ascontiguousarray(dy2) if self.device == "cpu" else dy2, x2, self._params["weight"])
        return dx.reshape(lead + (self.in_features,))

    def _repr_args(self):
        args = [str(self.in_features), str(self.out_features)]
        if not self.bias:
            args.append("bias=False")
        return self._repr_device(args)


class Embedding(_Layer):
    """Lookup table of vectors, shaped like ``torch.nn.Embedding``: ``y[...] = weight[index[...]]``.

    Parameters
    ----------
    num_embeddings, embedding_dim : int
        V and E; ``weight`` is (V, E), initialized as torch does from N(0, 1).
    dtype : np.float32 (default) or np.float64
    seed : int or None
    device : {"cpu", "cuda"}
        As :class:`Linear`'s. Indices are checked on the host (a device index array is copied there for the check).

    ``forward(index)`` takes integers in [0, V) of any shape and returns (..., E); ``backward(dy)`` adds
    dL/dweight (rows of dy summed per index) into ``grads`` and returns None (integers have no gradient).

    Examples
    --------
    >>> import numpy as np, nblstm
    >>> emb = nblstm.Embedding(10, 4, seed=0)
    >>> y = emb(np.array([[1, 2], [2, 9]]))              # (T, B) indices -> (T, B, E)
    >>> emb.backward(np.ones_like(y))
    >>> y.shape, emb.grads["weight"][2]
    ((2, 2, 4), array([2., 2., 2., 2.], dtype=float32))
    """

    def __init__(self, num_embeddings, embedding_dim, *, dtype=np.float32, seed=None, device="cpu"):
        self.num_embeddings = _checks.positive_int(num_embeddings, "num_embeddings")
        self.embedding_dim = _checks.positive_int(embedding_dim, "embedding_dim")
        self.dtype = _checks.as_float_dtype(dtype)
        rng = np.random.default_rng(seed)
        self._params = {"weight": rng.standard_normal((self.num_embeddings, self.embedding_dim)).astype(self.dtype)}
        self.grads = {"weight": np.zeros_like(self._params["weight"])}
        self.to(_checks.choice(device, "device", tuple(backends.TARGETS)))

    def forward(self, index):
        """index (...) integers in [0, V) -> y (..., E)."""
        return _where(self._forward(index), index)

    __call__ = forward

    def _forward(self, index):
        """forward, y on self.device."""
        idx = np.asarray(backends.to_host(index))
        if idx.dtype.kind not in "iu" or idx.size == 0:
            raise TypeError(f"index: expected a non-empty integer array, got dtype {idx.dtype} shape {idx.shape}")
        if idx.min() < 0 or idx.max() >= self.num_embeddings:
            raise ValueError(f"index: expected integers in [0, {self.num_embeddings}), got values in "
                             f"[{idx.min()}, {idx.max()}]")
        w = self._params["weight"]
        if self.device == "cpu":
            self._tape = idx.ravel().astype(np.intp) if is_grad_enabled() else None
            return w[idx]
        flat = index.reshape(index.size) if backends.is_device_array(index) and np.dtype(index.dtype) == np.int64 \
            and index.is_c_contiguous() else backends.to_device(self.device, idx.ravel().astype(np.int64))
        y = self._empty(idx.size, self.embedding_dim)
        self._lk.embedding_forward(y, w, flat)
        self._tape = flat if is_grad_enabled() else None
        return y.reshape(idx.shape + (self.embedding_dim,))

    def backward(self, dy):
        """dL/dy (..., E) -> None; adds dL/dweight into ``grads``."""
        self._backward(dy)

    def _backward(self, dy):
        idx = self._check_tape()
        if self.device == "cpu":
            dy = _features(dy, "dy", self.dtype, self.embedding_dim)
            dy2, lead = dy.reshape(-1, self.embedding_dim), dy.shape[:-1]
        else:
            dy2, lead = self._rows(dy, "dy", self.embedding_dim)
        if dy2.shape[0] != idx.size:
            raise ValueError(f"dy: expected {idx.size} rows of {self.embedding_dim} (as the forward's output), "
                             f"got shape {lead + (self.embedding_dim,)}")
        if self.device == "cpu":
            np.add.at(self.grads["weight"], idx, dy2)              # repeated indices add up
        else:
            self._lk.embedding_backward(self.grads["weight"], dy2, idx)
        return None

    def _repr_args(self):
        return self._repr_device([str(self.num_embeddings), str(self.embedding_dim)])


class SequenceModel:
    """A trainable sequence model: optional ``embedding`` -> recurrent ``core`` -> optional linear ``head``.

    ``core`` is any recurrent object with ``y, state = core(x, state)``, ``dx, dstate = core.backward(dy,
    dstate)``, ``parameters()``, ``grads`` and ``zero_grad()`` (nblstm.LSTM today; a vanilla RNN or a stack
    drops in the same way). The parts' parameters appear under prefixed names: ``embedding.weight``,
    ``core.weight_ih_l0``, ``head.weight``, ...

    Parameters
    ----------
    core : recurrent object
    head : Linear or None
        Applied at every step: y (T, B, H) -> (T, B, O). Losses pick the steps that count with a mask.
    embedding : Embedding or None
        When given, x is (T, B) integer indices.

    The model runs on its core's ``device``: a head or embedding built on another device is moved there, and
    ``to(device)`` moves every part. On "cuda" the parts pass device arrays to each other (no copies to the host
    between them); ``out`` and the state are device arrays when x is one, else NumPy, and the same for
    ``backward``'s results and dout.

    Examples
    --------
    >>> import numpy as np, nblstm
    >>> model = nblstm.SequenceModel(nblstm.LSTM(2, 8, seed=0), nblstm.Linear(8, 1, seed=1))
    >>> out, state = model(np.zeros((5, 3, 2), np.float32))
    >>> dx, dstate = model.backward(np.ones_like(out))
    >>> out.shape, len(model.parameters())
    ((5, 3, 1), 6)
    """

    def __init__(self, core, head=None, embedding=None):
        for name, part in (("core", core), ("head", head), ("embedding", embedding)):
            if part is not None and not all(hasattr(part, a) for a in ("parameters", "grads", "backward")):
                raise TypeError(f"{name}: expected an object with parameters(), grads and backward, "
                                f"got {type(part).__name__}")
        self.core, self.head, self.embedding = core, head, embedding
        self.dtype = np.dtype(core.dtype)
        for part in (head, embedding):
            if part is not None and getattr(part, "device", "cpu") != self.device and hasattr(part, "to"):
                part.to(self.device)

    @property
    def device(self):
        """The core's device, where every part runs."""
        return getattr(self.core, "device", "cpu")

    def to(self, device):
        """Move every part to `device` ("cpu" or "cuda"); returns self."""
        for _, p in self._parts():
            p.to(device)
        return self

    def _parts(self):
        return [(n, p) for n, p in (("embedding", self.embedding), ("core", self.core), ("head", self.head))
                if p is not None]

    def parameters(self):
        """Live parameter arrays of all parts, ``part.name`` -> array."""
        return {f"{n}.{k}": v for n, p in self._parts() for k, v in p.parameters().items()}

    @property
    def grads(self):
        """Live gradient arrays of all parts, keyed as ``parameters()``."""
        return {f"{n}.{k}": v for n, p in self._parts() for k, v in p.grads.items()}

    def zero_grad(self):
        for _, p in self._parts():
            p.zero_grad()

    def state_dict(self):
        return {f"{n}.{k}": v for n, p in self._parts() for k, v in p.state_dict().items()}

    def load_state_dict(self, state_dict):
        """Keys must be exactly those of ``state_dict()`` (KeyError) with matching shapes (ValueError);
        nothing changes unless every part accepts its share."""
        ours = self.parameters()
        missing = [k for k in ours if k not in state_dict]
        unexpected = [k for k in state_dict if k not in ours]
        if missing or unexpected:
            raise KeyError(f"state_dict: expected keys {list(ours)}; missing {missing}, unexpected {unexpected}")
        for k, p in ours.items():
            _checks.as_array(state_dict[k], f"state_dict[{k!r}]", self.dtype, p.shape)
        for n, p in self._parts():
            p.load_state_dict({k[len(n) + 1:]: v for k, v in state_dict.items() if k.startswith(n + ".")})

    def _input(self, x):
        """x for the core: on the device when the model is (real-valued host input converted to the model's dtype
        first; anything else goes as it is, for the core to check and name)."""
        if self.device == "cpu" or backends.is_device_array(x):
            return x
        arr = np.asarray(x)
        if arr.dtype.kind not in "biuf" or arr.size == 0:
            return x
        return backends.to_device(self.device, np.ascontiguousarray(arr, self.dtype))

    def forward(self, x, state=None):
        """x (T, B, I) (or (T, B) indices with an embedding), state of the core or None
        -> out (T, B, O) (the core's y without a head), the core's final state."""
        e = _run(self.embedding, x) if self.embedding is not None else self._input(x)
        y, state = self.core(e, state)
        out = _run(self.head, y) if self.head is not None else y
        return _where(out, x), _where(state, x)

    __call__ = forward

    def backward(self, dout, dstate=None):
        """dL/dout like out, dL/d(final state) or None (zeros: the gradient is cut there)
        -> dL/dx (None with an embedding), dL/d(initial state). Adds into every part's ``grads``."""
        dy = _run(self.head, dout, "backward") if self.head is not None else self._input(dout)
        dx, dstate0 = self.core.backward(dy, dstate)
        if self.embedding is not None:
            _run(self.embedding, dx, "backward")
            dx = None
        return _where(dx, dout), _where(dstate0, dout)

    def __repr__(self):
        parts = ", ".join(f"{n}={p!r}" for n, p in self._parts())
        return f"SequenceModel({parts})"


def _run(part, a, method="forward"):
    """part.forward(a) or .backward(a), results left on the part's device when it has _forward/_backward (Linear,
    Embedding), else as the part returns them."""
    fn = getattr(part, "_" + method, None) or getattr(part, method)
    return fn(a)
