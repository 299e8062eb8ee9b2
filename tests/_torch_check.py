"""One comparison of an nblstm.LSTM with a torch.nn.LSTM holding the same weights (float64)."""
import numpy as np
import torch

from nblstm import testing


def assert_lstm_matches_torch(ours, ref, x, h0, c0, seed, lengths=None):
    """Forward from (x, (h0, c0)), then backward of random dL/dy, dL/dh_n, dL/dc_n drawn from `seed`: outputs,
    input and state gradients and every parameter gradient of `ours` equal `ref`'s. With `lengths`, torch runs a
    packed sequence (pack_padded_sequence, enforce_sorted=False) and pads its output back with zeros."""
    tx, th0, tc0 = (torch.tensor(a, requires_grad=True) for a in (x, h0, c0))
    if lengths is None:
        ty, (th, tc) = ref(tx, (th0, tc0))
    else:
        pack = torch.nn.utils.rnn.pack_padded_sequence(tx, torch.tensor(lengths), batch_first=ref.batch_first,
                                                       enforce_sorted=False)
        packed, (th, tc) = ref(pack, (th0, tc0))
        ty, _ = torch.nn.utils.rnn.pad_packed_sequence(packed, batch_first=ref.batch_first,
                                                       total_length=x.shape[1 if ref.batch_first else 0])
    y, (h, c) = ours(x, (h0, c0), lengths=lengths)
    for name, a, b in (("y", y, ty), ("h_n", h, th), ("c_n", c, tc)):
        testing.assert_close(a, b.detach().numpy(), np.float64, name)
    dy, dh, dc = (testing.random_array(a.shape, np.float64, seed + 5 + k) for k, a in enumerate((y, h, c)))
    torch.autograd.backward([ty, th, tc], [torch.tensor(dy), torch.tensor(dh), torch.tensor(dc)])
    dx, (dh0, dc0) = ours.backward(dy, (dh, dc))
    for name, a, b in (("dx", dx, tx), ("dh0", dh0, th0), ("dc0", dc0, tc0)):
        testing.assert_close(a, b.grad.numpy(), np.float64, name)
    for name, p in ref.named_parameters():
        testing.assert_close(ours.grads[name], p.grad.numpy(), np.float64, name)
