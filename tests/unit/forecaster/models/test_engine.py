"""The forecast engine on real traces: clean output, adaptive level, refit schedule,
coverage of the lead window's peak."""

from __future__ import annotations

from dataclasses import fields

import numpy as np
import pytest

from forecaster.models import ForecastEngine, ladder
from forecaster.models.base import ABSURD_FACTOR, Fitted
from forecaster.models.engine import refit_offset
from forecaster.models.holt_winters import HoltWinters, HoltWintersFitted
from forecaster.sources.trace import Trace
from forecaster.times import DAY
from tests.unit.forecaster.models.conftest import DAYS, STEP, end_of


def test_output_is_never_nan_negative_or_absurd(july):
    y = july[: 3 * DAYS].copy()
    y[100:200] = np.nan
    y[-50:-40] = np.inf
    y[-30] = -4.0
    y[-5:] = y[-5:] * 1000  # a spike the model must not extrapolate into the absurd
    engine = ForecastEngine(step=STEP, horizon=10, lead=180, quantile=0.99)
    mean, upper, _ = engine.forecast("s", y, end_of(y))
    assert np.isfinite(mean).all() and np.isfinite(upper).all()
    assert (mean >= 0).all() and (upper >= mean).all()
    assert upper.max() <= ABSURD_FACTOR * np.nanmax(y[np.isfinite(y)][-DAYS:])
    falling = np.linspace(100, 0, 3 * DAYS)
    mean, upper, _ = engine.forecast("f", falling, end_of(falling))
    assert (mean >= 0).all()


def test_adaptive_quantile_reacts_to_misses(july):
    engine = ForecastEngine(step=STEP, horizon=10, lead=180, quantile=0.7)  # room to rise
    y = july[: 3 * DAYS]
    end = end_of(y)
    engine.forecast("s", y, end)
    level0 = engine.level("s")
    # Demand climbs far above every value served (and above the actual it was floored
    # at): the level must rise.
    for k in range(1, 30):
        y = np.concatenate([y, [july[:DAYS].max() * (3 + k)]])
        engine.forecast("s", y, end + k * STEP)
    high = engine.level("s")
    assert high > level0 + 0.05
    # Then everything comes in under the band: the level must come back down.
    for k in range(30, 90):
        y = np.concatenate([y, [0.0]])
        engine.forecast("s", y, end + k * STEP)
    assert engine.level("s") < high - 0.05


def test_under_a_budget_the_level_stays_where_the_refit_put_it(july):
    """The same misses that raise a fixed quantile's level leave a budget's alone (holding
    coverage would spend beyond the budget), and nothing waits to be judged."""
    engine = ForecastEngine(step=STEP, horizon=10, lead=180, quantile=None, budget=1.1)
    y = july[: 3 * DAYS]
    end = end_of(y)
    engine.forecast("s", y, end)
    for k in range(1, 30):
        y = np.concatenate([y, [july[:DAYS].max() * (3 + k)]])
        engine.forecast("s", y, end + k * STEP)
    state = engine.series["s"]
    assert engine.level("s") == state.fit.level
    assert not state.aci.pending


def test_refits_are_spread_over_the_hour_on_fixed_grid_points(july):
    engine = ForecastEngine(step=STEP, horizon=10, lead=180, quantile=0.9, refit_every=3600)
    y = july[: 2 * DAYS]
    end = end_of(y)
    for k in range(60):
        engine.forecast(("s", k), y, end)
    due = sorted((s.next_refit - end) // STEP for s in engine.series.values())
    assert due[0] >= 1 and due[-1] <= 60
    assert len(set(due)) >= 25  # not all in one cycle
    for k, s in engine.series.items():
        assert (s.next_refit - refit_offset(k, 3600, STEP)) % 3600 == 0
        assert s.fit.end == s.next_refit - 3600 <= end  # fitted on history up to there
    key = ("s", 0)
    first = engine.series[key].fit
    due_at = engine.series[key].next_refit
    engine.forecast(key, y, due_at - STEP)
    assert engine.series[key].fit is first  # not yet due: the cheap update only
    engine.forecast(key, y, due_at)
    assert engine.series[key].fit is not first
    assert engine.series[key].next_refit == due_at + 3600


@pytest.mark.parametrize("quantile, budget", [(0.9, None), (None, 1.1)])
def test_a_fresh_engine_serves_what_a_long_running_one_does(july, quantile, budget):
    """Replicas agree, and a restart changes nothing: the state depends on the history
    and the grid point, not on when the engine started or which cycles it skipped (under
    a budget, a model's state is brought over the skipped points in one go)."""
    start = 6 * DAYS
    running = ForecastEngine(step=STEP, horizon=10, lead=180, quantile=quantile, budget=budget)
    for o in range(start, start + 150):
        if o % 7 == 3:
            continue  # a missed cycle
        y = july[: o + 1]
        running.forecast("s", y, end_of(y))
    y = july[: start + 150]
    expected = running.forecast("s", y, end_of(y))
    fresh = ForecastEngine(step=STEP, horizon=10, lead=180, quantile=quantile, budget=budget)
    got = fresh.forecast("s", y, end_of(y))
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])
    assert fresh.level("s") == running.level("s")
    if budget is None:  # the adaptive level moved
        assert running.level("s") != running.series["s"].fit.level


def test_served_value_covers_the_lead_window_peak_at_the_quantile(july):
    """The quantile is the probability that the served value, max(actual, max of the band
    over the lead window), covers the realised peak of that window (not each step alone:
    per-step bands at 0.9 cover NASA's 4-step peak about 3 times in 4)."""
    engine = ForecastEngine(step=STEP, horizon=10, lead=180, quantile=0.9)
    w = engine.window
    start = 8 * DAYS
    covered = []
    for o in range(start, start + 2 * DAYS):
        y = july[: o + 1]
        _, upper, _ = engine.forecast("s", y, end_of(y))
        covered.append(july[o + 1 : o + 1 + w].max() <= max(y[-1], upper[:w].max()))
    assert 0.85 <= np.mean(covered) <= 0.95
    assert engine.level("s") > 0.9  # the per-step band sits above the nominal quantile


def test_the_served_value_covers_the_peak_through_a_calendar_break(isp: Trace):
    """The UK academic backbone's Christmas holiday: traffic halves for two weeks, then
    ramps back over a week. Each week the served value still covers the lead window's
    peak about q of the time."""
    step, w = isp.resolution, 2
    y = isp.counts / step
    first = (np.datetime64("2004-12-18T00:00", "s").astype(np.int64) - isp.start) // step
    engine = ForecastEngine(step=step, horizon=2, lead=300, quantile=0.9)
    covered = []
    for o in range(first, first + 4 * 7 * 288):
        h = y[max(0, o - 15 * 288) : o + 1]
        _, upper, _ = engine.forecast("isp", h, isp.start + (o + 1) * step)
        covered.append(y[o + 1 : o + 1 + w].max() <= max(h[-1], upper[:w].max()))
    weekly = np.array(covered).reshape(4, -1).mean(axis=1)
    assert (weekly >= 0.85).all() and (weekly <= 0.95).all(), weekly


def test_the_adaptive_level_expects_what_the_policy_serves_when_the_actual_is_missing(july):
    """With the newest point missing, a request right after the cycle is served the
    forecast floored at the last actual seen (the serving policy); the adaptive level
    must judge that value, not the forecast floored at 0."""
    engine = ForecastEngine(step=STEP, horizon=10, lead=180, quantile=0.9)
    y = july[: 3 * DAYS].copy()
    y[-1] = np.nan
    y[-2] = 50 * np.nanmax(y)  # far above any forecast: the floor decides
    end = end_of(y)
    _, upper, _ = engine.forecast("s", y, end)
    window = 180 // STEP + 1
    expected = max(float(y[-2]), float(upper[:window].max()))
    assert expected == y[-2]
    assert engine.series["s"].aci.pending[end + window * STEP] == expected


def test_between_refits_a_series_holds_one_state_of_its_model(july, monkeypatch):
    """A model whose state moves with each point (Holt-Winters) is held once: the state
    at the refit is let go once it has been brought forward (each copy of a one-minute
    daily season is 5.8 KB a series), and its season is kept in single precision."""
    monkeypatch.setattr(
        ladder, "candidates_for", lambda *_, **__: [HoltWinters(period=DAY, alpha=0.1, gamma=0.05)]
    )
    engine = ForecastEngine(step=STEP, horizon=10, lead=180, quantile=None, budget=1.1)
    y = july[: 3 * DAYS]
    for k in range(5):
        engine.forecast("s", y[: len(y) - 4 + k], end_of(y[: len(y) - 4 + k]))
    state = engine.series["s"]
    fitted = state.fit.fitted
    assert isinstance(fitted, HoltWintersFitted)
    assert fitted.end == end_of(y) and fitted.end > state.fit.end
    assert not any(isinstance(getattr(state, f.name), Fitted) for f in fields(state))
    assert fitted.season.dtype == np.float32
