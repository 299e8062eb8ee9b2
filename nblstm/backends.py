"""Kernel targets by name. Objects ask here for their kernels and never import a target directly.

``kernels("cpu")`` is :mod:`nblstm.kernels.cpu` (numba.njit). The oracle, :mod:`nblstm.reference`, is
plain NumPy with a readable, functional interface; tests and benchmarks compare each target against it.
"""
import importlib

TARGETS = {"cpu": "nblstm.kernels.cpu"}


def kernels(device):
    """The kernel module of a target, imported on first use."""
    if device not in TARGETS:
        raise ValueError(f"device: expected one of {', '.join(map(repr, TARGETS))}, got {device!r}")
    return importlib.import_module(TARGETS[device])
