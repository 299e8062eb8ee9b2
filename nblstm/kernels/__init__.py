"""Compiled kernels: ``cpu`` (numba.njit). Import a target's module only when it is used."""
