"""The forecast engine on real traces: ladder, cycles, outages, bounds, choice, no peeking."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecaster import seasonality as sz
from forecaster.config import Rule
from forecaster.cycle import ForecastCycle
from forecaster.engine import ABSURD_FACTOR, ForecastEngine, SeriesModel, candidates_for
from forecaster.model import QuantileForecaster, per_step_quantile
from forecaster.replay import Trace, TraceSource
from forecaster.store import ForecastStore

STEP = 60
DAYS = 1440


@pytest.fixture(scope="module")
def july(nasa: Trace) -> np.ndarray:
    """16 complete days of NASA-HTTP in July 1995, as requests per second."""
    y = nasa.counts[2 * DAYS : 18 * DAYS] / 60
    assert np.isfinite(y).all()
    return y


def model(quantile: float = 0.9) -> SeriesModel:
    return SeriesModel(step=STEP, horizon=10, lead=180, quantile=quantile)


def end_of(y: np.ndarray, start: int = 1_000_000 * STEP) -> int:
    """A grid end aligned so that phases are those of the trace's own clock."""
    return start + (len(y) - 1) * STEP


def test_ladder_grows_with_history():
    strong = {sz.DAY: 0.8, sz.WEEK: 0.8}
    kinds = lambda span: {(c.kind, c.period) for c in candidates_for(span, strong)}  # noqa: E731
    assert {p for _, p in kinds(3 * 3600)} == {0}  # minutes or hours: level models only
    assert ("profile-add", sz.DAY) in kinds(sz.DAY + 2 * 3600)  # a day: daily profile
    assert ("profile-add", sz.WEEK) not in kinds(13 * sz.DAY)
    assert ("profile-add", sz.WEEK) in kinds(15 * sz.DAY)  # two weeks: weekly
    # A cycle that can be measured and is absent is not offered.
    assert {
        p
        for _, p in {
            (c.kind, c.period) for c in candidates_for(15 * sz.DAY, {sz.DAY: 0.05, sz.WEEK: 0.0})
        }
    } == {0}


def test_cycles_found_on_real_traffic_and_absent_in_noise(july):
    assert sz.seasonal_strength(july, STEP, sz.DAY) > 0.5
    rng = np.random.default_rng(7)
    noise = np.abs(rng.normal(10, 1, len(july)))
    assert sz.seasonal_strength(noise, STEP, sz.DAY) < sz.SEASONAL_MIN_ACF
    fit = model().fit(noise, end_of(noise))
    assert fit.seasonality == "none" and fit.candidate.period == 0
    fit = model().fit(july, end_of(july))
    assert fit.seasonality == "weekly"


def test_model_choice_follows_the_series(july):
    """Real daily traffic gets a seasonal model; a random walk a level model."""
    seasonal = model().fit(july[: 8 * DAYS], end_of(july[: 8 * DAYS]))
    assert seasonal.candidate.period == sz.DAY
    rng = np.random.default_rng(3)
    walk = 50 + np.cumsum(rng.normal(0, 1, 8 * DAYS))
    walk = walk - walk.min() + 1
    level = model().fit(walk, end_of(walk))
    assert level.candidate.kind in ("naive", "level") or level.candidate.alpha >= 0.6


def test_outage_is_masked_and_does_not_teach_the_model(july):
    y = july[: 10 * DAYS].copy()
    clean = model().fit(y, end_of(y))
    assert clean.masked == 0.0  # quiet nights are demand, not outages
    hit = y.copy()
    down = slice(7 * DAYS + 600, 8 * DAYS + 1200)  # 34 hours down, ending two days before end
    hit[down] = 0.0
    fit = model().fit(hit, end_of(hit))
    assert fit.masked == pytest.approx((down.stop - down.start) / len(y), abs=0.002)
    # The profile it learned is as high as the clean one; unmasked, it would have sagged.
    clean_profile = sz.profile(y, end_of(y), STEP, sz.DAY)
    assert fit.profile is not None, fit.candidate
    assert fit.profile.mean() == pytest.approx(clean_profile.mean(), rel=0.03)
    unmasked = sz.profile(hit, end_of(hit), STEP, sz.DAY)
    assert unmasked.mean() < 0.9 * clean_profile.mean()
    mean, _ = model().forecast(fit, hit, end_of(hit))
    assert mean.mean() > 0.5 * y[-10:].mean()


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


def test_no_peeking_through_the_real_cycle(nasa: Trace):
    """Changing what happens after t changes no forecast made at or before t."""
    counts = nasa.counts[: 12 * DAYS].copy()
    rule = Rule(name="m", query="x{<<.LabelMatchers>>}", history="9d")
    t0 = nasa.start + 11 * DAYS * STEP
    perturbed = counts.copy()
    cut = (t0 - nasa.start) // STEP  # minutes starting at or after t0 are the future
    perturbed[cut:] *= 3.0

    def run(c: np.ndarray) -> list[np.ndarray]:
        store = ForecastStore()
        cycle = ForecastCycle([rule], TraceSource(Trace(nasa.start, 60, c), {"s": "a"}), store)
        out = []
        for k in range(-90, 1, 30):  # cycles 90, 60, 30 minutes before t0 and at t0
            cycle.run(rule, t0 + k * STEP)
            snap = store.snapshot("m")
            assert snap is not None
            [fc] = snap.forecasts.values()
            out.append(np.concatenate([fc.mean, fc.upper]))
        return out

    for a, b in zip(run(counts), run(perturbed), strict=True):
        np.testing.assert_array_equal(a, b)
    # ...and the perturbation is visible once the cycle runs past t0.
    store = ForecastStore()
    cycle = ForecastCycle([rule], TraceSource(Trace(nasa.start, 60, perturbed), {"s": "a"}), store)
    cycle.run(rule, t0 + 10 * STEP)
    assert store.snapshot("m") is not None


def test_young_series_get_statsforecast_and_old_ones_the_engine(nasa: Trace):
    rule = Rule(name="m", query="x{<<.LabelMatchers>>}", history="9d")
    start = nasa.start
    young = Trace(start + 10 * DAYS * STEP, 60, nasa.counts[10 * DAYS : 10 * DAYS + 120])
    old = Trace(start, 60, nasa.counts[: 10 * DAYS + 120])
    now = start + (10 * DAYS + 120) * STEP
    for trace, expected in (
        (young, {"ets"}),
        (old, {"profile-add/day", "profile-mult/day", "snaive/day", "hw/day"}),
    ):
        store = ForecastStore()
        ForecastCycle([rule], TraceSource(trace, {"s": "a"}), store).run(rule, now)
        snap = store.snapshot("m")
        assert snap is not None
        [fc] = snap.forecasts.values()
        assert fc.model in expected
    # The young series' band is asked for at the per-step quantile that covers the peak
    # of the lead window (4 steps) with probability q.
    store = ForecastStore()
    ForecastCycle([rule], TraceSource(young, {"s": "a"}), store).run(rule, now)
    [fc] = store.snapshot("m").forecasts.values()  # type: ignore[union-attr]
    y = young.counts / 60
    frame = pd.DataFrame({"unique_id": "a", "ds": np.arange(len(y)) * STEP, "y": y})
    quantile = per_step_quantile(rule.quantile, rule.lead // rule.step + 1)
    ref = QuantileForecaster().forecast(frame, horizon=10, step=STEP, quantile=quantile)
    np.testing.assert_allclose(fc.upper, ref["upper"], rtol=1e-6)  # history is float32
    assert quantile > rule.quantile


def test_refits_of_series_registered_together_are_spread_over_the_hour(july):
    engine = ForecastEngine(step=STEP, horizon=10, lead=180, quantile=0.9, refit_every=3600)
    y = july[: 2 * DAYS]
    end = end_of(y)
    for k in range(60):
        engine.forecast(("s", k), y, end)
    due = sorted((f.next_refit - end) // STEP for f in engine.fits.values())
    assert due[0] >= 30 and due[-1] < 60
    assert len(set(due)) >= 15  # not all in one cycle
    key = ("s", 0)
    first = engine.fits[key]
    engine.forecast(key, y, first.next_refit - STEP)
    assert engine.fits[key] is first  # not yet due: the cheap update only
    engine.forecast(key, y, first.next_refit)
    refit = engine.fits[key]
    assert refit is not first and refit.next_refit == first.next_refit + 3600


def test_band_scaling_follows_how_the_noise_grows():
    """Noise of constant spread gets a band of constant width; noise that grows with the
    level gets a band that grows with it (whichever power is sharpest at equal coverage)."""
    rng = np.random.default_rng(11)
    t = np.arange(4 * DAYS)
    base = 55 + 45 * np.sin(2 * np.pi * t / DAYS)
    additive = np.maximum(base + rng.normal(0, 5, len(t)), 0)
    proportional = base * np.maximum(1 + rng.normal(0, 0.15, len(t)), 0)
    assert model().fit(additive, end_of(additive)).scale_power == 0.0
    fit = model().fit(proportional, end_of(proportional))
    assert fit.scale_power > 0.0
    # Forecast at the trough and at the peak: the band is wider where the level is higher.
    widths = []
    for cut in (DAYS * 3 + DAYS * 3 // 4, DAYS * 3 + DAYS // 4):  # trough, then peak
        y = proportional[:cut]
        mean, upper = model().forecast(fit, y, end_of(y))
        widths.append(float(np.mean(upper - mean)))
    assert widths[1] > 1.5 * widths[0]


def test_served_value_covers_the_lead_window_peak_at_the_quantile(july):
    """The quantile is the probability that the served value, max(actual, max of the band
    over the lead window), covers the realised peak of that window (not each step alone:
    per-step bands at 0.9 cover NASA's 4-step peak about 3 times in 4)."""
    engine = ForecastEngine(step=STEP, horizon=10, lead=180, quantile=0.9)
    w = engine.model.window
    start = 8 * DAYS
    covered = []
    for o in range(start, start + 2 * DAYS):
        y = july[: o + 1]
        _, upper, _ = engine.forecast("s", y, end_of(y))
        covered.append(july[o + 1 : o + 1 + w].max() <= max(y[-1], upper[:w].max()))
    assert 0.85 <= np.mean(covered) <= 0.95
    assert engine.level("s") > 0.9  # the per-step band sits above the nominal quantile


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
    learned = sz.profile(y, end, STEP, sz.DAY)[ph]
    clean = sz.profile(calm, end, STEP, sz.DAY)[ph]
    shift = float(np.mean(learned / clean)) - 1
    hours = slice(launch.start - 12 * DAYS, launch.stop - 12 * DAYS)
    mean_shift = np.nanmean(y.reshape(-1, DAYS)[:, hours]) / np.nanmean(
        calm.reshape(-1, DAYS)[:, hours]
    )
    assert 0 <= shift < 0.6 * (mean_shift - 1)


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
