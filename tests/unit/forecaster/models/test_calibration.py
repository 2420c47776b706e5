from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forecaster.models import SeriesModel
from forecaster.models.band import LEVELS, Band
from forecaster.models.calibration import nan_quantiles
from forecaster.models.volatility import volatility


@settings(max_examples=200, deadline=None)
@given(
    rows=st.integers(1, 60),
    columns=st.integers(1, 12),
    holes=st.floats(0.0, 0.9),
    seed=st.integers(0, 2**32 - 1),
    q=st.floats(0.0, 1.0),
)
def test_nan_quantiles_is_numpys_nanquantile_in_single_precision(rows, columns, holes, seed, q):
    rng = np.random.default_rng(seed)
    z = rng.standard_t(3, size=(rows, columns))
    z[rng.random((rows, columns)) < holes] = np.nan
    z[:, 0] = np.nan if rows == 1 else z[:, 0]  # sometimes a column with no value at all
    single = z.astype(np.float32).astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy warns on an all-NaN column
        expected = np.nanquantile(single, q, axis=0)
        expected_levels = np.nanquantile(single, LEVELS, axis=0)
        exact = np.nanquantile(z, LEVELS, axis=0)
    np.testing.assert_allclose(nan_quantiles(z, q), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(nan_quantiles(z, LEVELS), expected_levels, rtol=1e-12, atol=1e-12)
    # Within single precision of the values' scale (an interpolation across 0 may be
    # far from the exact one relative to itself).
    scale = float(np.nanmax(np.abs(z))) if np.isfinite(z).any() else 1.0
    np.testing.assert_allclose(nan_quantiles(z, LEVELS), exact, rtol=1e-6, atol=1e-6 * scale)


def test_volatility_at_an_index_reads_only_the_values_up_to_it():
    rng = np.random.default_rng(3)
    y = rng.gamma(2.0, 10.0, 600)
    y[rng.random(600) < 0.05] = np.nan
    whole = volatility(y, 300)
    for k in (1, 50, 333, 599):
        np.testing.assert_allclose(volatility(y[:k], 300), whole[:k], rtol=1e-12)


def _clustered(seed: int = 7, days: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """A daily cycle at 5-minute steps with noise that is calm (sd 1) or turbulent (sd 8)
    in stretches of one to three hours, a third of the time turbulent; and the sd."""
    rng = np.random.default_rng(seed)
    n = days * 288
    sd = np.empty(n)
    i = 0
    while i < n:
        length = int(rng.integers(12, 36))
        sd[i : i + length] = 8.0 if rng.random() < 1 / 3 else 1.0
        i += length
    base = 100 + 40 * np.sin(2 * np.pi * np.arange(n) / 288)
    return np.clip(base + rng.normal(0.0, 1.0, n) * sd, 0.0, None), sd


def test_under_a_budget_surges_that_cluster_widen_the_band_after_a_turbulent_hour():
    """Where the noise comes in calm and turbulent stretches, the budget is spent on the
    band that follows the series' volatility (it leaves less demand uncovered than one of
    constant width), so the band served after a turbulent hour is several times the one
    served after a calm hour; the median is not moved by it."""
    step = 300
    y, sd = _clustered()
    end = 1_000_000 * step + (len(y) - 1) * step
    model = SeriesModel(step=step, horizon=3, lead=600, quantile=None, budget=1.1)
    fit = model.fit(y, end)
    assert fit.band.calm > 0.0
    last_day = range(len(y) - 288, len(y))
    widths = {}
    for regime in (1.0, 8.0):
        i = [k for k in last_day if (sd[k - 11 : k + 1] == regime).all()][-1]
        median, upper, _ = model.forecast(fit, y[: i + 1], end - (len(y) - 1 - i) * step)
        widths[regime] = float(np.mean(upper - median))
    assert widths[8.0] > 2.5 * widths[1.0]


def test_a_fit_keeps_its_band_in_single_precision_and_serves_what_the_full_one_would(
    july: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under a budget, the band a fit keeps between refits holds only the rows of the two
    levels it serves at (its level, the median), in single precision: 160 bytes instead
    of 15 KB a series. The fit's choices are those made with the full band, the values
    served from it are the full band's to within single precision's rounding, and a
    level it did not keep is refused, not read from the wrong row."""
    y = july[: 3 * 1440]
    end = 1_000_000 * 60 + (len(y) - 1) * 60
    model = SeriesModel(step=60, horizon=10, lead=180, quantile=None, budget=1.1)
    fit = model.fit(y, end)
    assert fit.band.zgrid.dtype == np.float32
    assert fit.band.zgrid.nbytes <= 4 * 10 * 4  # the rows of two levels
    monkeypatch.setattr(Band, "kept", lambda band, levels: band)
    full = model.fit(y, end)
    assert full.band.zgrid.dtype == np.float64
    assert (fit.model, fit.level, fit.headroom, fit.quantile) == (
        full.model,
        full.level,
        full.headroom,
        full.quantile,
    )
    assert fit.point is None  # the median is the served band's
    for level in (fit.level, 0.5):
        kept = fit.band.quantile(np.full(10, 50.0), level, 1.0)
        assert kept.dtype == np.float64
        assert np.allclose(kept, full.band.quantile(np.full(10, 50.0), level, 1.0), rtol=1e-6)
    with pytest.raises(ValueError, match="not among the levels this band kept"):
        fit.band.quantile(np.full(10, 50.0), 0.999, 1.0)
    served, full_served = model.forecast(fit, y, end), model.forecast(full, y, end)
    for got, want in zip(served[:2], full_served[:2], strict=True):
        assert np.allclose(got, want, rtol=1e-6)


def test_under_a_fixed_quantile_a_fit_keeps_every_level_for_the_adaptive_one(
    july: np.ndarray,
) -> None:
    """A fixed quantile's level moves with every miss (ACI), so its fit keeps the band at
    every level, in single precision, and serves at any of them."""
    y = july[: 3 * 1440]
    end = 1_000_000 * 60 + (len(y) - 1) * 60
    fit = SeriesModel(step=60, horizon=10, lead=180, quantile=0.9).fit(y, end)
    assert fit.band.rows is None
    assert fit.band.zgrid.shape == (len(LEVELS), 10)
    assert fit.band.zgrid.dtype == np.float32
    low, high = (fit.band.quantile(np.full(10, 50.0), q, 1.0) for q in (LEVELS[1], LEVELS[-2]))
    assert (high >= low).all() and (high > low).any()
