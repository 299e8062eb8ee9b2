"""Training: truncated backpropagation through time (``tbptt``) and a training loop over tasks (``fit``).

A model is any object with ``out, state = model(x, state)``, ``dx, dstate = model.backward(dout, dstate)``
(``dstate`` None means zeros), ``parameters()``, ``grads`` and ``zero_grad()``: a SequenceModel around an LSTM
today, the same around a vanilla RNN or a stack later.

On a device="cuda" model both run on the device: ``fit`` copies each batch's input there once, so the model's output,
the loss's gradient and the optimizer's update never leave it (only the loss value and, for tasks that track
per-sequence success, the output come back); ``tbptt`` scales the chunks' gradients there.
"""
import collections
import time

import numpy as np

from . import backends
from .optim import clip_grad_norm

__all__ = ["tbptt", "fit", "FitResult"]


def tbptt(model, x, target, loss, *, chunk, mask=None, state=None, on_chunk=None):
    """Truncated BPTT over a long sequence: forward and backward ``chunk`` steps at a time, the state carried
    from chunk to chunk and the gradient cut at every chunk boundary.

    Memory is that of one chunk (the tape of the model's most recent forward), not of the sequence: x can be
    100,000 steps long. With ``chunk >= T`` this is plain BPTT.

    Parameters
    ----------
    model : see the module docstring
    x : (T, B, ...) array (features, or integer indices for a model with an embedding)
    target : (T, B, ...) array, passed to `loss` chunk by chunk
    loss : callable ``loss(out, target, mask) -> (value, dout)``, a mean over the (masked) entries of the chunk
        (e.g. ``nblstm.losses.softmax_cross_entropy``)
    chunk : int
        Steps per chunk (the truncation length).
    mask : (T, B) weights or None
    state : the model's initial state, or None for zeros
    on_chunk : callable ``on_chunk(k, value)`` or None
        None: gradients of the whole sequence's loss (the mean over all its entries, truncated at the
        boundaries) add up in ``model.grads``. Given: each chunk's gradient is that of the chunk's own mean
        and ``on_chunk`` runs after its backward, e.g. to step an optimizer and zero the gradients.

    Returns
    -------
    value : float
        The loss of the whole sequence (mean over its entries).
    state : the final state, to continue with the next part of the stream.

    Examples
    --------
    >>> import numpy as np, nblstm
    >>> model = nblstm.SequenceModel(nblstm.LSTM(1, 4, seed=0), nblstm.Linear(4, 3, seed=0))
    >>> x = np.ones((1000, 1, 1), np.float32); y = np.zeros((1000, 1), np.int64)
    >>> value, state = nblstm.tbptt(model, x, y, nblstm.losses.softmax_cross_entropy, chunk=100)
    >>> round(value, 3) > 0, state[0].shape
    (True, (1, 1, 4))
    """
    T = len(x)
    if not isinstance(chunk, (int, np.integer)) or isinstance(chunk, bool) or chunk < 1:
        raise ValueError(f"chunk: expected a positive integer, got {chunk!r}")
    if len(target) != T or (mask is not None and len(mask) != T):
        raise ValueError(f"target, mask: expected {T} steps as x, got {len(target)} and "
                         f"{None if mask is None else len(mask)}")
    weights = []
    for s in range(0, T, chunk):
        m = None if mask is None else mask[s:s + chunk]
        weights.append(float(np.sum(m)) if m is not None else float(np.prod(np.shape(target[s:s + chunk])[:2])))
    total_weight = sum(weights)
    value = 0.0
    for k, s in enumerate(range(0, T, chunk)):
        m = None if mask is None else mask[s:s + chunk]
        out, state = model(x[s:s + chunk], state)
        v, dout = loss(out, target[s:s + chunk], m)
        share = weights[k] / total_weight if total_weight else 0.0
        value += v * share
        if on_chunk is None:
            dout = _scaled(dout, share)
        model.backward(dout, None)                       # None: the gradient is cut at the chunk's end
        if on_chunk is not None:
            on_chunk(k, v)
    return value, state


def _scaled(a, s):
    """a * s in a's dtype: a new NumPy array, or a device array (a loss's own gradient) scaled in place."""
    s = np.dtype(a.dtype).type(s)
    if backends.is_device_array(a):
        backends.layer_kernels("cuda").scale(a.reshape(a.size), s)
        return a
    return a * s


def _on_device(model, x):
    """A batch's input where `model` runs: a device array of the model's dtype (integer indices as int64) for a
    model with a device other than "cpu", else x itself (also for inputs that are not one array)."""
    device = getattr(model, "device", "cpu")
    if device == "cpu" or not isinstance(x, np.ndarray) or x.dtype.kind not in "biuf":
        return x
    dtype = np.int64 if x.dtype.kind in "iu" else getattr(model, "dtype", x.dtype)
    return backends.to_device(device, np.ascontiguousarray(x, dtype))


FitResult = collections.namedtuple("FitResult", "steps seconds loss criterion_met_at history")
FitResult.__doc__ = """What ``fit`` did: steps run (in total, counting resumed ones), wall seconds of this call,
running loss at the end, the step at which the task's training criterion was met (None if never) and a list of
(step, running loss) every ``log_every`` steps."""


def fit(task, model, optimizer, *, steps, batch_size, seed=0, clip=None, start_step=0, early_stop=True,
        progress=False, log_every=100, callback=None):
    """Train `model` on `task` with `optimizer` for up to `steps` steps (one batch each).

    The batch of step k is drawn from ``np.random.default_rng([seed, k])``: a run resumed at step k sees the
    same data as an uninterrupted one. For a task whose batches continue the previous ones (``reset``
    False) the state is carried from batch to batch, the gradient cut between them (truncated BPTT).
    When the task has a training criterion over its last ``task.window`` sequences and ``early_stop``, training
    stops as soon as it is met. ``clip``: global gradient norm limit. ``callback(step, model, optimizer)``
    runs after every step (checkpoints). ``progress``: show a tqdm bar with the running loss.
    """
    window = collections.deque(maxlen=task.window or 1)
    state, running, met_at, history = None, None, None, []
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=steps, initial=start_step, desc=task.name, unit="step", dynamic_ncols=True,
                   mininterval=0.5)
    model.zero_grad()
    start = time.perf_counter()
    step = start_step
    try:
        for step in range(start_step, steps):
            batch = task.batch(np.random.default_rng([seed, step]), batch_size, step)
            if batch.reset:
                state = None
            out, new_state = model(_on_device(model, batch.x), state)
            value, dout = task.loss(out, batch)
            model.backward(dout, None)
            if clip:
                clip_grad_norm(model, clip)
            optimizer.step()
            optimizer.zero_grad()
            state = new_state
            running = value if running is None else 0.98 * running + 0.02 * value
            ok = task.correct(out, batch) if task.window else None
            if ok is not None:
                window.extend(bool(v) for v in ok)
            if bar is not None:
                bar.update(1)
                if step % 10 == 0:
                    post = {"loss": f"{running:.4f}"}
                    if ok is not None:
                        post["ok"] = f"{np.mean(window):.3f}"
                    bar.set_postfix(post, refresh=False)
            if (step + 1) % log_every == 0:
                history.append((step + 1, running))
            if callback is not None:
                callback(step + 1, model, optimizer)
            if ok is not None and met_at is None and len(window) == task.window and all(window):
                met_at = step + 1
                if early_stop:
                    break
        else:
            step = steps - 1 if steps > start_step else start_step - 1
    finally:
        if bar is not None:
            bar.close()
    return FitResult(step + 1, time.perf_counter() - start, running, met_at, history)
