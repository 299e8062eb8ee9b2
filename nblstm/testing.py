"""Hypothesis strategies and tolerances for property tests of LSTM kernels and objects.

The test suite of nblstm is built from these; they are public so that you can run the same property
checks on your own cell variants::

    from hypothesis import given
    from nblstm import testing

    @given(testing.lstm_shapes(), testing.float_dtypes(), testing.seeds())
    def test_my_kernel(shape, dtype, seed):
        T, B, I, H = shape
        x = testing.random_array((T, B, I), dtype, seed)
        ...
        testing.assert_close(mine, reference_result, dtype, "y")

Arrays are drawn through a seed (numpy's generator), not element by element: shapes up to 16^3 stay fast,
and hypothesis still shrinks the shape and the seed of a failing example.
"""
import numpy as np
from hypothesis import strategies as st

from .kernels._math import ACTIVATIONS

__all__ = ["TOLERANCES", "assert_close", "sizes", "lstm_shapes", "float_dtypes", "seeds", "activations",
           "random_array", "arrays", "lstm_configs", "variants", "random_lengths"]

#: max |actual - expected| <= atol + rtol * max |expected|, per dtype of the computation under test
#: (the expected values come from the float64 oracle). float32 rounding is ~6e-8 per operation and grows
#: with T and the length of the dot products; a wrong gate or sign is off by O(max |expected|).
TOLERANCES = {
    np.dtype(np.float64): {"rtol": 1e-10, "atol": 1e-12},
    np.dtype(np.float32): {"rtol": 1e-4, "atol": 1e-5},
}


def assert_close(actual, expected, dtype, what="array"):
    """Assert ``actual`` matches ``expected`` within the tolerance of ``dtype`` (see TOLERANCES)."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    if actual.shape != expected.shape:
        raise AssertionError(f"{what}: shape {actual.shape} != expected {expected.shape}")
    tol = TOLERANCES[np.dtype(dtype)]
    err = np.abs(actual - expected)
    bound = tol["atol"] + tol["rtol"] * (np.abs(expected).max() if expected.size else 0.0)
    if not np.all(np.isfinite(actual)) or (err.size and err.max() > bound):
        idx = np.unravel_index(np.nanargmax(np.where(np.isfinite(err), err, np.inf)), err.shape) if err.size else ()
        raise AssertionError(f"{what} ({np.dtype(dtype).name}): max abs error {err.max():.3e} > bound {bound:.3e} "
                             f"at {tuple(int(i) for i in idx)}: {actual[idx]!r} vs expected {expected[idx]!r}")


def sizes(min_value=1, max_value=16):
    """Sizes from 1 (odd and even ones alike) to max_value."""
    return st.integers(min_value, max_value)


def lstm_shapes(max_T=16, max_B=16, max_I=16, max_H=16):
    """(T, B, I, H) tuples."""
    return st.tuples(sizes(max_value=max_T), sizes(max_value=max_B), sizes(max_value=max_I), sizes(max_value=max_H))


def float_dtypes():
    """np.float32 and np.float64."""
    return st.sampled_from([np.dtype(np.float32), np.dtype(np.float64)])


def seeds():
    return st.integers(0, 2**32 - 1)


def activations():
    """The cell activations: "tanh", "relu"."""
    return st.sampled_from(ACTIVATIONS)


def random_array(shape, dtype, seed, scale=1.0):
    """U(-scale, scale) array of `shape` and `dtype` from numpy's generator seeded with `seed`."""
    return np.random.default_rng(seed).uniform(-scale, scale, shape).astype(dtype)


@st.composite
def arrays(draw, shape, dtype=np.float64, scale=1.0):
    """An array of `shape` drawn as U(-scale, scale) through a drawn seed."""
    return random_array(shape, dtype, draw(seeds()), scale)


def lstm_configs(dtypes=None, max_size=16):
    """Constructor arguments of LSTM / LSTMCell: sizes, dtype, bias, forget_bias, cell_activation, seed."""
    return st.fixed_dictionaries({
        "input_size": sizes(max_value=max_size),
        "hidden_size": sizes(max_value=max_size),
        "dtype": float_dtypes() if dtypes is None else st.sampled_from([np.dtype(d) for d in dtypes]),
        "bias": st.booleans(),
        "forget_bias": st.sampled_from([0.0, 1.0]) | st.floats(-2.0, 2.0),
        "cell_activation": activations(),
        "seed": seeds(),
    })


def variants():
    """Which LSTM options a drawn example uses: dict of booleans ``peephole``, ``proj`` (a projection, proj_size
    1..H-1 where H > 1) and ``lengths`` (variable-length sequences, see :func:`random_lengths`)."""
    return st.fixed_dictionaries({"peephole": st.booleans(), "proj": st.booleans(), "lengths": st.booleans()})


def random_lengths(B, T, seed):
    """B sequence lengths in 0..T (int64) from numpy's generator seeded with `seed`; the first is T, so the batch
    spans the whole T steps, as a padded batch does."""
    lengths = np.random.default_rng(seed).integers(0, T + 1, B)
    lengths[0] = T
    return lengths.astype(np.int64)
