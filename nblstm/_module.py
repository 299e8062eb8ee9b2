"""What every nblstm object shares: named parameters, their gradients, device, state_dict, zero_grad, repr."""
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

    def _repr_args(self):
        return []

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(self._repr_args())})"
