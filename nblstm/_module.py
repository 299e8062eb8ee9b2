"""What every nblstm object shares: named parameters, their gradients, device, state_dict, zero_grad, repr."""
import math

import numpy as np

from . import _checks, backends


class Module:
    """Base of the objects: parameters live in ``self._params`` (name -> array), gradients in ``self.grads``,
    both on ``self.device`` (NumPy arrays for "cpu", numba-cuda device arrays for "cuda").

    Subclasses set ``self.dtype`` and call ``_init_params(shapes, rng, bound)`` in ``__init__``, then ``to(device)``
    (which also sets ``self._kernels``, the device's kernel module).
    """

    device = "cpu"

    def _init_params(self, shapes, rng, bound):
        """torch's initialization: every parameter from U(-bound, bound), in the order of `shapes`, on the host."""
        self._params = {k: rng.uniform(-bound, bound, s).astype(self.dtype) for k, s in shapes.items()}
        self.grads = {k: np.zeros_like(p) for k, p in self._params.items()}

    def to(self, device):
        """Move parameters and gradients to `device` ("cpu" or "cuda") and run there from now on; returns self.

        The tape of the last forward is dropped. "cuda" without numba-cuda or a GPU raises
        ``nblstm.backends.CudaUnavailableError`` saying how to get them, and leaves the object unchanged.
        """
        kernels = backends.kernels(device)
        if device != self.device or not hasattr(self, "_kernels"):
            self._params = {k: backends.to_device(device, backends.to_host(p)) for k, p in self._params.items()}
            self.grads = {k: backends.to_device(device, backends.to_host(g)) for k, g in self.grads.items()}
        self.device, self._kernels = device, kernels
        if hasattr(self, "_tape"):
            self._tape = None
        self._work, self._spare = {}, ()           # work arrays live on the old device
        return self

    def parameters(self):
        """The live parameter arrays, name -> array (the keys of state_dict); optimizers update them in place.

        They live on ``self.device``: NumPy arrays for "cpu", numba-cuda device arrays for "cuda" (``state_dict()``
        gives NumPy copies on every device).
        """
        return self._params

    def zero_grad(self):
        """Set every accumulated gradient in ``grads`` to zero."""
        for g in self.grads.values():
            backends.fill_zeros(g)

    def state_dict(self):
        """Copies of the parameters as NumPy arrays, name -> array, with torch's names and shapes."""
        return {k: backends.to_host(p, copy=True) for k, p in self._params.items()}

    def load_state_dict(self, state_dict):
        """Copy parameters in from a mapping name -> array-like (torch tensors work via np.asarray).

        Keys must match exactly (KeyError names the missing and unexpected ones) and shapes must match
        (ValueError). Real values are converted to the model's dtype. Nothing changes unless all pass.
        """
        missing = [k for k in self._params if k not in state_dict]
        unexpected = [k for k in state_dict if k not in self._params]
        if missing or unexpected:
            raise KeyError(f"state_dict: expected keys {list(self._params)}; missing {missing}, unexpected {unexpected}")
        new = {k: _checks.as_array(state_dict[k], f"state_dict[{k!r}]", self.dtype, p.shape)
               for k, p in self._params.items()}
        for k, v in new.items():
            backends.copy_into(self._params[k], v)

    def _bias(self, s):
        """A recurrent layer's one bias vector, b_ih + b_hh of layer-direction `s` (zeros with ``bias=False``), as
        the kernels take it: its length is that of weight_hh's rows (LSTM 4H, RNN H)."""
        n = self._params[f"weight_hh{s}"].shape[0]
        if not self.bias:
            return self._const_zeros(n)
        b = self._scratch(f"bias{s}", n)
        backends.add(b, self._params[f"bias_ih{s}"], self._params[f"bias_hh{s}"])
        return b

    def _empty(self, *shape):
        return backends.empty(self.device, shape, self.dtype)

    # Work arrays reused between calls. Fresh large arrays come back from the operating system as new pages, each
    # faulted in and zeroed on first touch: a training step of an LSTM at (T, B, I, H) = (100, 32, 128, 128) that
    # allocated its tape and scratch anew took ~2200 page faults and 15-20% longer than one reusing them (measured
    # with the kernels called directly, both ways, in one process).
    _spare = ()                                 # a dropped tape's buffers, for _take (set by the stacking code)

    def _scratch(self, name, *shape):
        """Work array `name` of `shape` (contents undefined), kept on the object for the next call; a new one when
        the kept one has another shape. Only for arrays that no caller sees and no tape keeps."""
        work = self.__dict__.setdefault("_work", {})
        a = work.get(name)
        if a is None or a.shape != shape:
            a = work[name] = self._empty(*shape)
        return a

    def _const_zeros(self, *shape):
        """Zeros of `shape` that nothing may write (in place of an absent state, bias, peepholes or projection): a
        view of one zero buffer kept on the object, replaced by a larger one when a call needs more (so serving
        many batch sizes keeps one buffer, not one per shape)."""
        work = self.__dict__.setdefault("_work", {})
        views = work.get("zero_views")
        if views is None:
            views = work["zero_views"] = {}
        view = views.get(shape)
        if view is not None:
            return view
        size = math.prod(shape)
        if size == 0:                           # (0, H): no projection
            view = backends.empty(self.device, shape, self.dtype)
        else:
            buf = work.get("zeros")
            if buf is None or buf.shape[0] < size:
                buf = work["zeros"] = backends.zeros(self.device, (size,), self.dtype)
                views.clear()                   # views of the buffer replaced
            elif len(views) >= 64:              # a few shapes a call, kept for the next calls (0.7 -> 0.2 us)
                views.clear()
            view = backends.row(buf, 0, size).reshape(shape)
        views[shape] = view
        return view

    def _default_lengths(self, B, T):
        """lengths (B,) all T, on the device, kept for the next call of the same B and T (nothing writes them)."""
        work = self.__dict__.setdefault("_work", {})
        if work.get("lengths_BT") != (B, T):
            work["lengths"] = backends.to_device(self.device, _checks.lengths(None, B, T))
            work["lengths_BT"] = (B, T)
        return work["lengths"]

    def _take(self, *shape):
        """An array of `shape` (contents undefined): one of the dropped tape's buffers (``_spare``) of that shape if
        there is one, else a new one."""
        for k, a in enumerate(self._spare):
            if a.shape == shape:
                return self._spare.pop(k)
        return self._empty(*shape)

    def _as(self, a, name, shape, axes=None):
        """An argument checked and converted (see nblstm._checks.as_array), on self.device."""
        return backends.as_array(self.device, a, name, self.dtype, shape, axes)

    def _host(self, a, like):
        """A result as the caller wants it: on the device when `like` (the caller's input) is a device array,
        else a NumPy array."""
        return a if backends.is_device_array(like) else backends.to_host(a)

    def _check_tape(self):
        if self._tape is None:
            raise RuntimeError("backward: no tape to go back through; call forward first, outside nblstm.no_grad()")
        return self._tape

    def _repr_args(self):
        return []

    def _sizes_repr(self, defaults):
        """repr arguments of a recurrent layer: its two sizes, then each (name, default) of `defaults` whose value
        differs, then dtype and device when not float32 and cpu (torch's style: only what was changed)."""
        args = [str(self.input_size), str(self.hidden_size)]
        args += [f"{name}={getattr(self, name, default)!r}" for name, default in defaults
                 if getattr(self, name, default) != default]
        if self.dtype != np.float32:
            args.append(f"dtype={self.dtype.name}")
        if self.device != "cpu":
            args.append(f"device={self.device!r}")
        return args

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(self._repr_args())})"


class _SequenceIO:
    """Sequence arguments of a layer with ``batch_first``: checked, made time-major on the device, and back."""

    def _seq(self, a, name, T, B, last):
        """A (T, B, last) array, or (B, T, last) when batch_first, checked and made time-major (None: any size)."""
        if self.batch_first:
            return self._as(a, name, (B, T, last), axes=(1, 0, 2))
        return self._as(a, name, (T, B, last))

    def _out(self, y, like):
        """Time-major y on self.device -> batch_first if so built, where the caller wants it (see _host)."""
        if not self.batch_first:
            return self._host(y, like)
        y = np.ascontiguousarray(backends.to_host(y).transpose(1, 0, 2))
        return self._host(backends.to_device(self.device, y), like)
