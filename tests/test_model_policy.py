"""The model's ladder and clean output, the served-value policy, quantities, the history grid."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from adapter.quantity import format_quantity
from forecaster.config import Rule
from forecaster.history import HistoryBook
from forecaster.model import ABSURD_FACTOR, QuantileForecaster, per_step_quantile
from forecaster.policy import served_value
from forecaster.replay import Trace, TraceSource
from forecaster.source import RangeSeries
from forecaster.store import SeriesForecast

RULE = Rule(name="m", query="x{<<.LabelMatchers>>}")  # step 1m, lead 3m, horizon 10m


def frame(values, uid="a", step=60):
    values = np.asarray(values, dtype=float)
    return pd.DataFrame({"unique_id": uid, "ds": np.arange(len(values)) * step, "y": values})


def test_short_history_gets_a_simpler_model_not_an_error(nasa: Trace):
    model = QuantileForecaster()
    y = nasa.counts[:400] / 60
    out = model.forecast(
        pd.concat([frame(y[:3], "short"), frame(y[:1], "one"), frame(y, "long")]),
        horizon=10,
        step=60,
        quantile=0.9,
    )
    by = dict(tuple(out.groupby("unique_id")))
    assert set(by) == {"short", "one", "long"}
    assert by["long"]["model"].iloc[0] == "ets"
    assert by["short"]["model"].iloc[0] == "naive"
    for g in by.values():
        assert len(g) == 10
        assert np.isfinite(g[["mean", "upper"]].to_numpy()).all()
        assert (g["upper"] >= g["mean"]).all() and (g["mean"] >= 0).all()
    assert list(by["one"]["ds"]) == [60 * k for k in range(1, 11)]


def test_gaps_nan_inf_and_negatives_never_reach_the_output(nasa: Trace):
    y = nasa.counts[1000:1400] / 60
    y[50:80] = np.nan
    y[100] = np.inf
    y[101] = -5.0
    y[-3:] = np.nan  # the newest points are missing: forecast from the last observed one
    out = QuantileForecaster().forecast(frame(y), horizon=10, step=60, quantile=0.9)
    assert np.isfinite(out[["mean", "upper"]].to_numpy()).all()
    assert (out[["mean", "upper"]].to_numpy() >= 0).all()
    assert out["ds"].iloc[0] == (len(y) - 3) * 60  # one step after the last observation


def test_forecasts_are_bounded_by_a_multiple_of_the_recent_max():
    y = np.concatenate([np.zeros(200), np.linspace(0, 1000, 100) ** 2 / 1000])
    out = QuantileForecaster().forecast(frame(y), horizon=10, step=60, quantile=0.99)
    assert out["upper"].max() <= ABSURD_FACTOR * y.max()


def test_a_decreasing_series_never_goes_negative():
    y = np.linspace(100, 0.1, 300)
    out = QuantileForecaster().forecast(frame(y), horizon=10, step=60, quantile=0.9)
    assert (out["mean"] >= 0).all()


def forecast_at(origin: int, upper: list[float], last_actual: float = 1.0) -> SeriesForecast:
    ds = origin + 60 * np.arange(1, len(upper) + 1)
    return SeriesForecast(
        {"s": "a"},
        origin,
        last_actual,
        origin,
        ds.astype(np.int64),
        np.asarray(upper) * 0.5,
        np.asarray(upper, dtype=float),
        "ets",
    )


def test_policy_takes_the_max_upper_over_now_to_now_plus_lead_plus_step():
    fc = forecast_at(600, [1, 2, 3, 4, 9, 5, 5, 5, 5, 5])  # ds 660 .. 1200
    # now=630: steps labelled 660, 720, 780, 840 cover up to now + lead + step = 870.
    assert served_value(0.5, fc, 630, RULE).value == 4
    # now=660: 720 .. 900 (the 9 is at 900).
    assert served_value(0.5, fc, 660, RULE).value == 9
    # The actual floors it.
    assert served_value(20.0, fc, 630, RULE).value == 20


def test_policy_falls_back_and_refuses_without_data():
    fc = forecast_at(600, [3] * 10, last_actual=2.5)
    stale_at = 600 + RULE.ttl + 1
    assert served_value(1.0, fc, stale_at, RULE).predictive is False
    assert served_value(1.0, fc, stale_at, RULE).value == 1.0
    assert served_value(None, fc, stale_at, RULE) is None  # never a 0
    assert served_value(None, None, 600, RULE) is None
    # Source down, forecast fresh: the forecast floored at the last actual it saw.
    down = served_value(None, forecast_at(600, [1.0] * 10, last_actual=2.5), 630, RULE)
    assert down is not None and down.value == 2.5


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0"),
        (1.5, "1500m"),
        (2, "2"),
        (1234.567, "1234567m"),
        (0.0001, "1m"),
        (12345678.9, "12345678900m"),
        (0.1 + 0.2, "300m"),
        (0.3001, "301m"),
    ],
)
def test_quantity(value, text):
    assert format_quantity(value) == text


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1.0])
def test_quantity_refuses_values_that_cannot_be_rates(value):
    with pytest.raises(ValueError):
        format_quantity(value)


def test_history_book_advances_and_keeps_holes():
    book = HistoryBook(step=60, window=600)  # 10 slots
    labels = {"s": "a"}
    ts = np.arange(60, 601, 60, dtype=np.int64)
    book.advance(600, [RangeSeries(labels, ts, ts / 60.0)])
    assert book.fetch_start(900) == 540  # re-read the newest known steps, then what is new
    book.advance(900, [RangeSeries(labels, np.array([840, 900]), np.array([14.0, 15.0]))])
    [key] = book.series_keys()
    y = book.frame([key], ["a"])["y"].to_numpy()
    # Grid 360 .. 900: the old values moved left, 660..780 were never fetched (holes).
    np.testing.assert_array_equal(y, [6, 7, 8, 9, 10, np.nan, np.nan, np.nan, 14, 15])
    seen = book.observed(key)
    assert (seen.last, seen.last_value) == (900, 15.0)
    assert seen.first == 360  # the oldest sample still inside the window
    book.advance(900 + 600, [])  # nothing for a whole window: the series is forgotten
    assert len(book) == 0


def test_trace_source_rates_and_loop():
    trace = Trace(start=0, resolution=60, counts=np.array([60.0, 120.0, np.nan, 30.0]))
    rule = Rule(
        name="m", query="x{<<.LabelMatchers>>}", step=120, lead="0s", horizon="2m", history="20m"
    )
    looped = TraceSource(trace, {"s": "a"}, loop=True)
    [series] = looped.fetch_range(rule, 120, 480)
    # Grid 120: minutes 0-1 -> 180/120; 240: minute 2 missing, 3 = 30 -> 30/120; 480 wraps.
    assert series.timestamps.tolist() == [120, 240, 360, 480]
    assert series.values.tolist() == [1.5, 0.25, 1.5, 0.25]
    once = TraceSource(trace, {"s": "a"})
    assert once.fetch_range(rule, 360, 480) == []


def test_young_series_bands_cover_the_lead_window_peak(nasa: Trace):
    """200 six-hour NASA histories, forecast in one batch: at the per-step quantile the
    cycle asks for, the served value covers the 4-step peak about q of the time (per-step
    bands at q itself cover it about 70% of the time)."""
    y = nasa.counts / 60
    rng = np.random.default_rng(1)
    origins = rng.choice(np.arange(3 * 1440, 28 * 1440), 200, replace=False)
    history = pd.concat(frame(y[o - 359 : o + 1], str(i)) for i, o in enumerate(origins))
    q, w = 0.9, 4
    out = QuantileForecaster().forecast(
        history, horizon=10, step=60, quantile=per_step_quantile(q, w)
    )
    by = dict(tuple(out.groupby("unique_id")))
    covered = [
        y[o + 1 : o + 1 + w].max() <= max(y[o], by[str(i)]["upper"].to_numpy()[:w].max())
        for i, o in enumerate(origins)
        if np.isfinite(y[o + 1 : o + 1 + w]).all()
    ]
    assert len(covered) > 150
    assert 0.84 <= np.mean(covered) <= 0.96
