"""Optimizers (SGD with momentum/Nesterov/weight decay, Adam, AdamW) and global-norm gradient clipping.

An optimizer takes the objects being trained: anything with ``parameters()`` (name -> live array) and
``grads`` (name -> array), e.g. an LSTM, a Linear or a SequenceModel, or a list of them. ``step()`` updates
the parameter arrays in place from the gradients accumulated in ``grads``; ``zero_grad()`` clears those.
The update rules are torch.optim's (same defaults, same order of operations), computed in each parameter's
dtype. ``state_dict()`` is a flat dict name -> NumPy array (0-d for scalars): hyperparameters, the step count
and the per-parameter buffers (``exp_avg/0.weight_ih_l0`` ...), ready for ``nblstm.io.save``.

Parameters of a device="cuda" object are updated on the device, in place, one kernel launch per parameter
(:mod:`nblstm.kernels.layers_cuda`: ``sgd_step``, ``adam_step``; clipping's ``reduce_sum`` and ``scale``;
``zero_grad``'s ``fill``), with their buffers on the device too: nothing is copied to the host but clipping's norm,
one number. NumPy parameters run the
NumPy code of ``_update`` (the reference of those kernels).

Examples
--------
>>> import numpy as np, nblstm
>>> lin = nblstm.Linear(3, 1, seed=0)
>>> opt = nblstm.optim.Adam(lin, lr=1e-2)
>>> y = lin(np.ones((4, 3), np.float32))
>>> _ = lin.backward(np.ones_like(y))
>>> norm = nblstm.optim.clip_grad_norm(lin, max_norm=1.0)   # global norm before clipping
>>> opt.step(); opt.zero_grad()
>>> opt.state_dict()["step"]
array(1)
"""
import math

import numpy as np

from . import backends

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "clip_grad_norm", "global_norm"]


def _objects(objects, name="objects"):
    objs = [objects] if hasattr(objects, "parameters") else list(objects)
    if not objs:
        raise ValueError(f"{name}: expected at least one object with parameters() and grads, got none")
    for k, o in enumerate(objs):
        if not (hasattr(o, "parameters") and hasattr(o, "grads")):
            raise TypeError(f"{name}[{k}]: expected an object with parameters() and grads, got {type(o).__name__}")
    return objs


def _items(objects):
    """(key, parameter, gradient) for every parameter; key = '<object index>.<name>'."""
    for i, obj in enumerate(objects):
        params, grads = obj.parameters(), obj.grads
        for name, p in params.items():
            yield f"{i}.{name}", p, grads[name]


def _cuda():
    """The device kernels (nblstm.kernels.layers_cuda), imported only when a parameter is a device array."""
    return backends.layer_kernels("cuda")


def _flat(a):
    """A (P,) view of a C-contiguous array of either kind (what the update kernels take)."""
    return a.reshape(a.size)


def _matched(p, g, key):
    """g on p's side (host or device), its shape checked: a device array for a device parameter (copied over when the
    object keeps its gradient on the host), a NumPy array for a host one."""
    if tuple(g.shape) != tuple(p.shape):
        raise ValueError(f"grads[{key!r}]: expected shape {tuple(p.shape)} (as the parameter), got {tuple(g.shape)}")
    if backends.is_device_array(p):
        return g if backends.is_device_array(g) else backends.to_device("cuda", np.ascontiguousarray(g, p.dtype))
    return backends.to_host(g)


def _hyper(value, name, low=0.0, high=math.inf, open_high=False):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value) or value < low or value > high or (open_high and value == high):
        bound = f"[{low:g}, {high:g}{')' if open_high else ']'}"
        raise ValueError(f"{name}: expected a finite number in {bound}, got {value!r}")
    return float(value)


def global_norm(objects):
    """sqrt of the sum of squares of every gradient of `objects`, a float: NumPy gradients accumulated in float64;
    device gradients summed on the device in their dtype (a block-wide tree per array, kernels.layers_cuda.reduce_sum),
    one number per dtype copied back."""
    host, device = 0.0, {}
    for _, _, g in _items(_objects(objects)):
        if backends.is_device_array(g):
            dt = np.dtype(g.dtype)
            if dt not in device:
                device[dt] = backends.zeros("cuda", (1,), dt)
            _cuda().reduce_sum(device[dt], _flat(g), 1)
        else:                   # not np.dot: no call into NumPy's BLAS, whose thread pool would spin beside numba's
            g = np.asarray(g).ravel().astype(np.float64)
            host += float(np.square(g).sum())
    return math.sqrt(host + sum(float(backends.to_host(acc)[0]) for acc in device.values()))


def clip_grad_norm(objects, max_norm):
    """Scale all gradients of `objects` in place by min(1, max_norm / global norm), as
    ``torch.nn.utils.clip_grad_norm_``; returns the global norm before clipping.

    The norm is taken over every gradient of every object together (one scale for all). A non-finite norm
    leaves the gradients unchanged (and is returned, so the caller can skip the step). Device gradients are scaled
    on the device.
    """
    max_norm = _hyper(max_norm, "max_norm")
    objects = _objects(objects)
    norm = global_norm(objects)
    if math.isfinite(norm) and norm > max_norm:
        scale = max_norm / (norm + 1e-6)
        for _, _, g in _items(objects):
            s = np.dtype(g.dtype).type(scale)
            if backends.is_device_array(g):
                _cuda().scale(_flat(g), s)
            else:
                g *= s
    return norm


class Optimizer:
    """Base: holds the objects, the step count and per-parameter buffers (``_slots`` names them)."""

    _slots = ()
    _hypers = ()

    def __init__(self, objects, lr):
        self.objects = _objects(objects)
        self.lr = _hyper(lr, "lr")
        self.step_count = 0
        self.state = {slot: {} for slot in self._slots}          # slot -> key -> array

    def zero_grad(self):
        """Set every gradient of every object to zero (an object's gradients on the device by a kernel there)."""
        for o in self.objects:
            grads = list(o.grads.values())
            if grads and all(backends.is_device_array(g) for g in grads):
                for g in grads:
                    _cuda().fill(_flat(g), np.dtype(g.dtype).type(0))
            else:
                o.zero_grad()

    def step(self):
        """One update of every parameter in place from its accumulated gradient: NumPy parameters by the NumPy code
        of ``_update``, device parameters by one kernel launch each (``_update_device``), their buffers on the
        device too."""
        items = [(key, p, _matched(p, g, key)) for key, p, g in _items(self.objects)]
        self.step_count += 1
        for key, p, g in items:
            if backends.is_device_array(p):
                self._update_device(key, p, g)
            else:
                self._update(key, p, g)

    def _buffer(self, slot, key, p):
        """The buffer `slot` of parameter `key`, zeros like p (on p's device) at first."""
        buf = self.state[slot].get(key)
        if buf is None:
            buf = self.state[slot][key] = backends.zeros("cuda", p.shape, p.dtype) \
                if backends.is_device_array(p) else np.zeros_like(p)
        return buf

    def state_dict(self):
        """Flat dict of arrays: ``type``, ``step``, hyperparameters, ``<slot>/<object index>.<name>`` buffers."""
        sd = {"type": np.array(type(self).__name__), "step": np.array(self.step_count)}
        sd.update({h: np.array(getattr(self, h)) for h in ("lr",) + self._hypers})
        for slot, bufs in self.state.items():
            sd.update({f"{slot}/{k}": backends.to_host(b, copy=True) for k, b in bufs.items()})
        return sd

    def load_state_dict(self, state_dict):
        """Restore from ``state_dict()``: the type must match, every buffer key must name a parameter of these
        objects with its shape (KeyError / ValueError). Nothing changes unless all checks pass."""
        sd = dict(state_dict)
        kind = str(np.asarray(sd.get("type", "")))
        if kind != type(self).__name__:
            raise ValueError(f"state_dict: saved by a {kind or 'unknown'} optimizer, loading into "
                             f"{type(self).__name__}")
        scalars = ("type", "step", "lr") + self._hypers
        missing = [k for k in scalars if k not in sd]
        params = {key: p for key, p, _ in _items(self.objects)}
        bufs = {}
        unexpected = []
        for k, v in sd.items():
            if k in scalars:
                continue
            slot, _, key = k.partition("/")
            if slot not in self.state or key not in params:
                unexpected.append(k)
                continue
            v = np.asarray(v)
            if v.shape != tuple(params[key].shape):
                raise ValueError(f"state_dict[{k!r}]: expected shape {tuple(params[key].shape)}, got {v.shape}")
            bufs[k] = (slot, key, v)
        if missing or unexpected:
            raise KeyError(f"state_dict: missing {missing}, unexpected {unexpected} (buffers must name parameters "
                           f"{list(params)})")
        step = int(np.asarray(sd["step"]))
        hypers = {h: float(np.asarray(sd[h])) for h in ("lr",) + self._hypers}
        self.step_count = step
        for h, v in hypers.items():
            setattr(self, h, v)
        self.state = {slot: {} for slot in self._slots}
        for slot, key, v in bufs.values():
            v = v.astype(params[key].dtype, copy=True)
            self.state[slot][key] = backends.to_device("cuda", v) if backends.is_device_array(params[key]) else v

    def __repr__(self):
        hyp = ", ".join(f"{h}={getattr(self, h)!r}" for h in ("lr",) + self._hypers)
        return f"{type(self).__name__}({hyp})"


class SGD(Optimizer):
    r"""Stochastic gradient descent with optional momentum, Nesterov momentum and weight decay (torch.optim.SGD):

    .. math::

        g &\leftarrow g + \lambda p \\
        b &\leftarrow g \text{ at the first step, else } \mu b + (1 - \tau) g \\
        g &\leftarrow g + \mu b \text{ (Nesterov) or } b \text{ (momentum)} \\
        p &\leftarrow p - \eta g

    with learning rate eta = ``lr``, mu = ``momentum``, tau = ``dampening``, lambda = ``weight_decay``.
    """

    _slots = ("momentum_buffer",)             # filled only when momentum > 0
    _hypers = ("momentum", "dampening", "weight_decay", "nesterov")

    def __init__(self, objects, lr=1e-3, *, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
        super().__init__(objects, lr)
        self.momentum = _hyper(momentum, "momentum")
        self.dampening = _hyper(dampening, "dampening", high=1.0)
        self.weight_decay = _hyper(weight_decay, "weight_decay")
        self.nesterov = float(bool(nesterov))
        if nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("nesterov: needs momentum > 0 and dampening = 0")

    def _update(self, key, p, g):
        t = p.dtype.type
        if self.weight_decay:
            g = g + t(self.weight_decay) * p
        if self.momentum:
            first = key not in self.state["momentum_buffer"]
            buf = self._buffer("momentum_buffer", key, p)
            if first:
                buf[...] = g
            else:
                buf *= t(self.momentum)
                buf += t(1 - self.dampening) * g
            g = g + t(self.momentum) * buf if self.nesterov else buf
        p -= t(self.lr) * g

    def _update_device(self, key, p, g):
        t = np.dtype(p.dtype).type
        first = key not in self.state["momentum_buffer"]
        buf = self._buffer("momentum_buffer", key, p) if self.momentum else p    # p: unread without momentum
        _cuda().sgd_step(_flat(p), _flat(buf), _flat(g), t(self.lr), t(self.momentum), t(1 - self.dampening),
                         t(self.weight_decay), int(bool(self.nesterov)), int(first))


class Adam(Optimizer):
    r"""Adam (Kingma & Ba 2015) as torch.optim.Adam; ``weight_decay`` adds lambda p to the gradient (L2):

    .. math::

        m &\leftarrow \beta_1 m + (1 - \beta_1) g, \qquad v \leftarrow \beta_2 v + (1 - \beta_2) g^2 \\
        p &\leftarrow p - \eta \, \frac{m / (1 - \beta_1^t)}{\sqrt{v / (1 - \beta_2^t)} + \epsilon}
    """

    _slots = ("exp_avg", "exp_avg_sq")
    _hypers = ("beta1", "beta2", "eps", "weight_decay")
    _decoupled = False

    def __init__(self, objects, lr=1e-3, *, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(objects, lr)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas: expected a pair (beta1, beta2), got {betas!r}")
        self.beta1 = _hyper(betas[0], "betas[0]", high=1.0, open_high=True)
        self.beta2 = _hyper(betas[1], "betas[1]", high=1.0, open_high=True)
        self.eps = _hyper(eps, "eps")
        self.weight_decay = _hyper(weight_decay, "weight_decay")

    def _update(self, key, p, g):
        t = p.dtype.type
        if self.weight_decay:
            if self._decoupled:
                p *= t(1 - self.lr * self.weight_decay)
            else:
                g = g + t(self.weight_decay) * p
        m, v = self._buffer("exp_avg", key, p), self._buffer("exp_avg_sq", key, p)
        m *= t(self.beta1)
        m += t(1 - self.beta1) * g
        v *= t(self.beta2)
        v += t(1 - self.beta2) * (g * g)
        bc1 = 1 - self.beta1 ** self.step_count
        bc2 = 1 - self.beta2 ** self.step_count
        denom = np.sqrt(v) / t(math.sqrt(bc2))
        denom += t(self.eps)
        p -= t(self.lr / bc1) * (m / denom)

    def _update_device(self, key, p, g):
        t = np.dtype(p.dtype).type
        m, v = self._buffer("exp_avg", key, p), self._buffer("exp_avg_sq", key, p)
        bc1 = 1 - self.beta1 ** self.step_count
        bc2 = 1 - self.beta2 ** self.step_count
        _cuda().adam_step(_flat(p), _flat(m), _flat(v), _flat(g), t(self.lr / bc1), t(self.beta1), t(1 - self.beta1),
                          t(self.beta2), t(1 - self.beta2), t(self.weight_decay), t(1 - self.lr * self.weight_decay),
                          t(math.sqrt(bc2)), t(self.eps), int(self._decoupled))


class AdamW(Adam):
    r"""Adam with decoupled weight decay (Loshchilov & Hutter 2019) as torch.optim.AdamW: first
    :math:`p \leftarrow p (1 - \eta \lambda)`, then the Adam step. Default ``weight_decay`` 1e-2 as torch."""

    _decoupled = True

    def __init__(self, objects, lr=1e-3, *, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        super().__init__(objects, lr, betas=betas, eps=eps, weight_decay=weight_decay)
