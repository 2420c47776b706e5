"""One series' fit: model choice, outage masking, band scaling."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from forecaster.models import SeriesModel
from forecaster.models import seasonality as sz
from forecaster.models.band import Band
from forecaster.policy import serve
from forecaster.times import DAY
from tests.unit.forecaster.models.conftest import DAYS, STEP, end_of, model


def test_model_choice_follows_the_series(july):
    """Real daily traffic gets a seasonal model; a random walk a level model."""
    seasonal = model().fit(july[: 8 * DAYS], end_of(july[: 8 * DAYS]))
    assert seasonal.model.period == DAY
    rng = np.random.default_rng(3)
    walk = 50 + np.cumsum(rng.normal(0, 1, 8 * DAYS))
    walk = walk - walk.min() + 1
    level = model().fit(walk, end_of(walk))
    assert level.model.kind in ("naive", "level") or getattr(level.model, "alpha", 0) >= 0.6


def test_outage_is_masked_and_does_not_teach_the_model(july):
    # At a 10-minute lead, where the daily profile is what forecasts NASA (at 3 minutes
    # the last level does as well).
    def ten_minutes() -> SeriesModel:
        return SeriesModel(step=STEP, horizon=15, lead=600, quantile=0.9)

    y = july[: 10 * DAYS].copy()
    clean = ten_minutes().fit(y, end_of(y))
    assert clean.masked == 0.0  # quiet nights are demand, not outages
    hit = y.copy()
    down = slice(7 * DAYS + 600, 8 * DAYS + 1200)  # 34 hours down, ending two days before end
    hit[down] = 0.0
    fit = ten_minutes().fit(hit, end_of(hit))
    assert fit.masked == pytest.approx((down.stop - down.start) / len(y), abs=0.002)
    # The profile it learned is as high as the clean one; unmasked, it would have sagged.
    clean_profile = sz.profile(y, end_of(y), STEP, DAY)
    assert fit.fitted.profile is not None, fit.model
    assert fit.fitted.seasonal().mean() == pytest.approx(clean_profile.mean(), rel=0.03)
    unmasked = sz.profile(hit, end_of(hit), STEP, DAY)
    assert unmasked.mean() < 0.9 * clean_profile.mean()
    mean, _, _ = ten_minutes().forecast(fit, hit, end_of(hit))
    assert mean.mean() > 0.5 * y[-10:].mean()


def test_band_scaling_follows_how_the_noise_grows():
    """Noise of constant spread gets a band of constant width; noise that grows with the
    level gets a band that grows with it (whichever power is sharpest at equal coverage)."""
    rng = np.random.default_rng(11)
    t = np.arange(4 * DAYS)
    base = 55 + 45 * np.sin(2 * np.pi * t / DAYS)
    additive = np.maximum(base + rng.normal(0, 5, len(t)), 0)
    proportional = base * np.maximum(1 + rng.normal(0, 0.15, len(t)), 0)
    assert model().fit(additive, end_of(additive)).band.power == 0.0
    fit = model().fit(proportional, end_of(proportional))
    assert fit.band.power > 0.0
    # Forecast at the trough and at the peak: the band is wider where the level is higher.
    widths = []
    for cut in (DAYS * 3 + DAYS * 3 // 4, DAYS * 3 + DAYS // 4):  # trough, then peak
        y = proportional[:cut]
        mean, upper, _ = model().forecast(fit, y, end_of(y))
        widths.append(float(np.mean(upper - mean)))
    assert widths[1] > 1.5 * widths[0]


def test_the_point_forecast_is_the_median_where_spikes_skew_the_noise():
    """Spikes lift the model's level above the typical value; the point forecast is the
    band's median, which errs less in absolute terms than the level does."""
    rng = np.random.default_rng(5)
    y = 100 + rng.exponential(10.0, 5 * DAYS)  # mean 110, median 100 + 10 ln 2
    train = 4 * DAYS
    fit = model().fit(y[:train], end_of(y[:train]))
    level = replace(fit, band=Band.flat(len(fit.band.zgrid[0]), fit.band.floor))  # median = mean
    lead = model().window - 1
    errors: dict[str, list[float]] = {"point": [], "level": []}
    for cut in range(train, 5 * DAYS - 10, 7):
        point, _, _ = model().forecast(fit, y[:cut], end_of(y[:cut]))
        unshifted, _, _ = model().forecast(level, y[:cut], end_of(y[:cut]))
        errors["point"].append(abs(point[lead] - y[cut + lead]))
        errors["level"].append(abs(unshifted[lead] - y[cut + lead]))
    assert np.mean(errors["point"]) < 0.97 * np.mean(errors["level"])


def test_a_quantile_under_a_half_is_served_as_calibrated(july):
    """At q = 0.25 the served value covers a quarter of the next two days' lead-window
    peaks, as calibrated: the band is not held up at the model's level (it was, and
    covered 30 %, costing what a higher q costs)."""
    train = 14 * DAYS
    low = SeriesModel(step=STEP, horizon=10, lead=180, quantile=0.25)
    fit = low.fit(july[:train], end_of(july[:train]))
    covered = []
    for cut in range(train, 16 * DAYS - 10, 3):
        _, upper, _ = low.forecast(fit, july[:cut], end_of(july[:cut]))
        served = serve(july[cut - 1], upper[: low.window].max())
        covered.append(july[cut : cut + low.window].max() <= served)
    assert np.mean(covered) == pytest.approx(0.25, abs=0.02)


def test_the_band_is_learnt_from_days_the_profile_never_saw():
    """Hourly series of a weekly shape plus noise, fitted on 15 days at q = 0.9: the
    served value covers the next two days' peaks 0.9 of the time on average. Were the
    calibration days' own values in the profile its errors are measured against (half
    of a weekly profile of two weeks), the band would be too narrow: 0.83."""
    step, day = 3600, 24
    covered = []
    for seed in range(12):
        rng = np.random.default_rng(seed)
        t = np.arange(17 * day)
        y = np.maximum(rng.uniform(50, 250, 7 * day)[t % (7 * day)] + rng.normal(0, 20, len(t)), 0)
        start = 1_000_000 * step
        m = SeriesModel(step=step, horizon=2, lead=3600, quantile=0.9)
        n = 15 * day
        fit = m.fit(y[:n], start + (n - 1) * step)
        for k in range(n, n + 2 * day - m.window):
            _, upper, _ = m.forecast(fit, y[:k], start + (k - 1) * step)
            covered.append(y[k : k + m.window].max() <= serve(y[k - 1], upper[: m.window].max()))
    assert np.mean(covered) >= 0.87
