"""Seasonal strength and robust profiles on real traffic."""

from __future__ import annotations

import numpy as np
import pytest

from forecaster.models import seasonality as sz
from forecaster.models.ladder import SEASONAL_MIN_ACF
from forecaster.sources.trace import Trace
from forecaster.times import DAY
from tests.unit.forecaster.models.conftest import DAYS, STEP, end_of, model


def test_cycles_found_on_real_traffic_and_absent_in_noise(july):
    assert sz.seasonal_strength(july, STEP, DAY) > 0.5
    rng = np.random.default_rng(7)
    noise = np.abs(rng.normal(10, 1, len(july)))
    assert sz.seasonal_strength(noise, STEP, DAY) < SEASONAL_MIN_ACF
    fit = model().fit(noise, end_of(noise))
    assert fit.seasonality == "none" and fit.model.period == 0
    fit = model().fit(july, end_of(july))
    assert fit.seasonality == "weekly"


def test_a_one_off_spike_does_not_teach_the_daily_profile(nasa: Trace):
    """13 July 1995 (a shuttle launch) ran at up to 6.75 req/s, about 2.5x a normal
    afternoon. The profile is a median per phase: over 15 days the launch moves its
    afternoon by about 6%, under half of what it does to a mean (10%)."""
    y = nasa.counts[: 15 * DAYS] / 60
    launch = slice(12 * DAYS + 9 * 60, 12 * DAYS + 14 * 60)  # 13:00-18:00 UTC
    calm = y.copy()
    calm[12 * DAYS : 13 * DAYS] = np.nan
    end = end_of(y)
    ph = sz.phases(end, len(y), STEP, DAYS)[launch]
    learned = sz.profile(y, end, STEP, DAY)[ph]
    clean = sz.profile(calm, end, STEP, DAY)[ph]
    shift = float(np.mean(learned / clean)) - 1
    hours = slice(launch.start - 12 * DAYS, launch.stop - 12 * DAYS)
    mean_shift = np.nanmean(y.reshape(-1, DAYS)[:, hours]) / np.nanmean(
        calm.reshape(-1, DAYS)[:, hours]
    )
    assert 0 <= shift < 0.6 * (mean_shift - 1)


@pytest.mark.parametrize("p", [7, 1440, 40_000])
def test_phase_medians_are_each_phases_median(p: int):
    """The median of every phase, NaN where a phase has none, whatever the phases' order
    and width (past 16 bits too), ties and holes included."""
    from forecaster.models.seasonality import _phase_medians

    rng = np.random.default_rng(p)
    n = 3 * p + p // 2
    ph = (np.arange(n) + 5) % p
    d = np.round(rng.gamma(2.0, 3.0, n), 1)  # ties within phases
    keep = rng.random(n) > 0.2
    keep[ph == 3] = False  # a phase never observed
    shuffled = rng.permutation(np.flatnonzero(keep))
    got = _phase_medians(d[shuffled], ph[shuffled], p)
    expected = np.array(
        [np.median(d[keep & (ph == k)]) if (keep & (ph == k)).any() else np.nan for k in range(p)]
    )
    np.testing.assert_array_equal(got, expected)
