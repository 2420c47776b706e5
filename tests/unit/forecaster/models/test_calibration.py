from __future__ import annotations

import warnings

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from forecaster.models.calibration import LEVELS, nan_quantiles


@settings(max_examples=200, deadline=None)
@given(
    rows=st.integers(1, 60),
    columns=st.integers(1, 12),
    holes=st.floats(0.0, 0.9),
    seed=st.integers(0, 2**32 - 1),
    q=st.floats(0.0, 1.0),
)
def test_nan_quantiles_is_numpys_nanquantile(rows, columns, holes, seed, q):
    rng = np.random.default_rng(seed)
    z = rng.standard_t(3, size=(rows, columns))
    z[rng.random((rows, columns)) < holes] = np.nan
    z[:, 0] = np.nan if rows == 1 else z[:, 0]  # sometimes a column with no value at all
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy warns on an all-NaN column
        expected = np.nanquantile(z, q, axis=0)
        expected_levels = np.nanquantile(z, LEVELS, axis=0)
    np.testing.assert_allclose(nan_quantiles(z, q), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(nan_quantiles(z, LEVELS), expected_levels, rtol=1e-12, atol=1e-12)
