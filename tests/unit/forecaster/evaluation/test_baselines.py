"""The backtest's baselines: Holt-Winters checked against statsmodels, Crane's DSP
predictor and statsforecast's MSTL on real traffic."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from statsmodels.tsa.holtwinters import ExponentialSmoothing

from forecaster.evaluation import baselines as b
from forecaster.evaluation.scoring import pinball
from forecaster.models.base import ffill
from forecaster.sources.trace import Trace

DAY = 1440


def statsmodels_fit(y: np.ndarray):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ExponentialSmoothing(
            y, seasonal="add", seasonal_periods=DAY, initialization_method="estimated"
        ).fit()


@pytest.mark.parametrize("days_before_end", [4, 15, 30])
def test_holt_winters_is_statsmodels_recursion_and_fits_as_well(nasa: Trace, days_before_end: int):
    """With statsmodels' own parameters and start, the numpy recursion gives statsmodels'
    squared error to 1e-9; and the grid-searched fit ends within 2% of the error
    statsmodels' optimiser reaches (with 1,442 free parameters to our two)."""
    stop = len(nasa.counts) - days_before_end * DAY
    y = ffill(nasa.counts[stop - 3 * DAY : stop] / 60)
    res = statsmodels_fit(y)
    phase = np.arange(len(y)) % DAY
    alpha = np.array([res.params["smoothing_level"]])
    gamma = np.array([res.params["smoothing_seasonal"]])
    level = np.array([res.params["initial_level"]])
    season = np.asarray(res.params["initial_seasons"], dtype=np.float64)[None, :].copy()
    _, _, sse = b.hw_smooth(y, phase, level, season, alpha, gamma)
    assert sse[0] == pytest.approx(res.sse, rel=1e-9)

    level0, season0 = b.hw_start(y, phase, DAY)
    a, g = b.fit_holt_winters(y, phase, level0, season0)
    _, _, ours = b.hw_smooth(
        y, phase, np.array([level0]), season0[None, :].copy(), np.array([a]), np.array([g])
    )
    assert ours[0] <= 1.02 * res.sse


def test_holt_winters_forecasts_are_the_checked_recursion_brought_up_to_each_origin(nasa: Trace):
    """The backtest's Holt-Winters (refit every 6 hours, absorbing each step in between in
    plain floats) forecasts from every origin what `hw_smooth`, the recursion checked
    against statsmodels above, gives from the same refit brought up to that origin."""
    y = nasa.counts[-5 * DAY :] / 60
    y[-700:-690] = np.nan  # a hole leaves the state as it is
    origins = np.arange(len(y) - 800, len(y) - 10)
    out = b.holt_winters(y, origins, 10, 60)
    phase = np.arange(len(y)) % DAY
    for i in (0, 1, 359, 360, 361, 500, 719, 720, 789):
        o, refit = origins[i], origins[i // 360 * 360]
        lo = refit + 1 - 3 * DAY
        level0, season0 = b.hw_start(y[lo : refit + 1], phase[lo : refit + 1], DAY)
        a, g = b.fit_holt_winters(y[lo : refit + 1], phase[lo : refit + 1], level0, season0)
        level, season = np.array([level0]), season0[None, :].copy()
        b.hw_smooth(y[lo : o + 1], phase[lo : o + 1], level, season, np.array([a]), np.array([g]))
        expected = np.maximum(level[0] + season[0, (o + np.arange(1, 11)) % DAY], 0.0)
        np.testing.assert_allclose(out[i], expected, rtol=1e-12, atol=1e-12)


def lead_mae(y: np.ndarray, forecasts: np.ndarray, origins: np.ndarray, h: int) -> float:
    return float(np.nanmean(np.abs(forecasts[:, h - 1] - y[origins + h])))


@pytest.fixture(scope="module")
def last_week(nasa: Trace) -> tuple[np.ndarray, np.ndarray]:
    y = nasa.counts / 60
    return y, np.arange(len(y) - 7 * DAY, len(y) - 10, 7)


def test_crane_dsp_finds_the_daily_cycle_and_nothing_in_shuffled_traffic(nasa: Trace, last_week):
    y, origins = last_week
    rng = np.random.default_rng(0)
    history = b.dsp_clean(y[-22 * DAY : -8 * DAY])
    cycle = b.dsp_fit(history, 60, rng)
    assert cycle is not None
    nxt = ffill(y[-8 * DAY : -7 * DAY])
    # The reconstruction repeats: its first day stands for the day after the history.
    # Hour by hour (minutes are Poisson noise around the cycle), it is that day's shape.
    hourly = cycle[:DAY].reshape(24, 60).mean(axis=1), nxt.reshape(24, 60).mean(axis=1)
    assert np.corrcoef(*hourly)[0, 1] > 0.8
    assert b.dsp_fit(rng.permutation(history), 60, rng) is None
    forecasts = b.crane_dsp(y, origins, 10, 60)
    assert np.isfinite(forecasts).all()
    naive = b.seasonal_naive(y, origins, 10, 60)
    assert lead_mae(y, forecasts, origins, 4) < lead_mae(y, naive, origins, 4)


def test_mstl_forecasts_after_two_weeks_and_beats_seasonal_naive(last_week):
    y, origins = last_week
    forecasts = b.mstl(y, origins, 10, 60)
    assert np.isfinite(forecasts).all()
    naive = b.seasonal_naive(y, origins, 10, 60)
    assert lead_mae(y, forecasts, origins, 4) < 0.8 * lead_mae(y, naive, origins, 4)
    young = b.mstl(y[: 10 * DAY], np.array([9 * DAY]), 10, 60)
    assert np.isnan(young).all()  # a weekly season needs two weeks


def test_pinball_loss():
    actual = np.array([10.0, 10.0, np.nan])
    assert pinball(actual, np.array([12.0, 8.0, 1.0]), 0.9) == pytest.approx(
        (0.1 * 2 + 0.9 * 2) / 2
    )
    assert pinball(actual, np.array([10.0, 10.0, 3.0]), 0.5) == 0.0
    assert pinball(np.array([np.nan]), np.array([1.0]), 0.5) is None
