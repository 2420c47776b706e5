"""Sub-daily cycles found in the data: present where a burst recurs, absent elsewhere.

The bursts are built from real data no model was tuned on: the median spike of the ELB
trace (its size as a multiple of the traffic around it, over two 5-minute points) is
added at fixed minutes of every hour, or every quarter hour, of another shared trace.
"""

from __future__ import annotations

import numpy as np
import pytest

from forecaster.evaluation.variants import resampled, spike_shape, with_burst
from forecaster.models import ForecastEngine
from forecaster.models import seasonality as sz
from forecaster.models.series_model import SeriesModel
from forecaster.sources.trace import Trace
from tests.conftest import shared_trace


@pytest.fixture(scope="module")
def elb() -> Trace:
    return shared_trace("nab_aws_elb_request_count_5min.csv")


@pytest.fixture(scope="module")
def shape(elb: Trace) -> np.ndarray:
    return spike_shape(elb)


def last_days(trace: Trace, days: int, before: int = 0) -> tuple[np.ndarray, int]:
    """The trace's rates over `days` days ending `before` steps before its end, and the
    grid point of the last one."""
    n = days * 86400 // trace.resolution
    stop = len(trace.counts) - before
    end = trace.start + trace.resolution * stop
    return trace.counts[stop - n : stop] / trace.resolution, end


def test_the_burst_shape_is_taken_from_real_spikes(shape: np.ndarray):
    # A spike of the ELB trace is several times the traffic around it and falls back
    # within the next 5 minutes.
    assert shape[0] > 2.5 and 1.0 < shape[1] < shape[0]


@pytest.mark.parametrize(
    ("name", "days"),
    [
        ("nasa_http_1995.csv", 15),
        ("isp_uk_academic_backbone_5min.csv", 15),
        ("nab_aws_elb_request_count_5min.csv", 14),
    ],
)
def test_no_sub_daily_cycle_is_found_where_there_is_none(name: str, days: int):
    trace = shared_trace(name)
    y, end = last_days(trace, days)
    assert sz.sub_daily_periods(y, end, trace.resolution) == []


@pytest.mark.parametrize(("at", "every"), [(600, 3600), (300, 900)])
def test_a_burst_at_fixed_minutes_is_found_at_its_period(
    nasa: Trace, isp: Trace, shape: np.ndarray, at: int, every: int
):
    for trace in (nasa, isp):
        y, end = last_days(with_burst(trace, shape, 300, at=at, every=every), 15)
        assert sz.sub_daily_periods(y, end, trace.resolution) == [every]


def test_found_through_an_outage_and_one_off_spikes_but_not_from_them(
    nasa: Trace, shape: np.ndarray
):
    # 15 days that hold the hurricane shutdown (36 hours of zeros) ...
    before = 29 * 1440
    y, end = last_days(nasa, 15, before)
    assert (y == 0).sum() > 1440
    # ... and 40 one-off spikes of 8x.
    rng = np.random.default_rng(3)
    spiky = y.copy()
    spiky[rng.choice(len(y), 40, replace=False)] *= 8
    assert sz.sub_daily_periods(spiky, end, 60) == []
    burst, _ = last_days(with_burst(nasa, shape, 300), 15, before)
    burst = np.where(spiky != y, spiky, burst)
    assert sz.sub_daily_periods(burst, end, 60) == [3600]


def test_found_at_a_5_minute_step_with_a_shifted_phase(nasa: Trace, shape: np.ndarray):
    """NASA re-binned to 5 minutes whose intervals start 2 minutes past (as an export
    stamped at :57 has): the hourly burst is still found, and nothing without it."""
    plain = resampled(nasa, 300, 120)
    burst = resampled(with_burst(nasa, shape, 300), 300, 120)
    assert plain.start % 300 == 120
    for trace, want in ((plain, []), (burst, [3600])):
        y, end = last_days(trace, 15)
        assert sz.sub_daily_periods(y, end, 300) == want


def test_the_layered_profile_is_chosen_and_forecasts_the_burst(nasa: Trace, shape: np.ndarray):
    """With the burst over minutes 7-17 of every hour (grid points 8-17), model choice
    takes a profile with the hourly cycle layered on it, and a forecast made at minute 5
    rises at minute 8 by most of the burst's size, where the plain weekly profile stays
    flat."""
    y, end = last_days(with_burst(nasa, shape, 300), 15)
    hour_end = end - end % 3600 - 3600 + 5 * 60  # minute 5 of the last whole hour
    cut = len(y) - (end - hour_end) // 60
    model = SeriesModel(step=60, horizon=10, lead=180, quantile=0.9)
    fit = model.fit(y[:cut], hour_end)
    assert fit.seasonality == "weekly+1h" and fit.model.name.endswith("+1h")
    mean, _, _ = model.forecast(fit, y[:cut], hour_end)
    level = float(np.median(y[cut - 60 : cut]))
    lift = float(mean[2] - mean[1])  # minute 8 against minute 7
    assert lift > 0.5 * (shape[0] - 1) * level
    plain, _ = last_days(nasa, 15)
    fit = model.fit(plain[:cut], hour_end)
    assert "+" not in fit.model.name and fit.seasonality == "weekly"
    mean, _, _ = model.forecast(fit, plain[:cut], hour_end)
    assert abs(float(mean[2] - mean[1])) < 0.1 * (shape[0] - 1) * level


def test_the_engine_serves_the_burst_before_it_starts(nasa: Trace, shape: np.ndarray):
    """Through the engine at a 3-minute lead, over the 24 hours of a day: the forecast
    made at minute 4 for minute 8, the burst's first, is its realised size within 25% on
    the median, and the band at q = 0.9 covers it in at least 40% of the hours (the band
    is calibrated over all hours, and the burst's size varies more than the rest). A
    forecast without the hourly cycle stays at the pre-burst level: 0.4 of the burst."""
    y, end = last_days(with_burst(nasa, shape, 300), 15)
    engine = ForecastEngine(step=60, horizon=10, lead=180, quantile=0.9)
    ratio, covered = [], []
    for hour in range(24):
        t = end - end % 3600 - (hour + 1) * 3600 + 4 * 60
        cut = len(y) - (end - t) // 60
        mean, upper, _ = engine.forecast("s", y[:cut], t)
        ratio.append(mean[3] / y[cut + 3])
        covered.append(upper[:4].max() >= y[cut : cut + 4].max())
    assert 0.75 < np.median(ratio) < 1.25
    assert np.mean(covered) >= 0.4
