"""The served-value rule and the lead window."""

from __future__ import annotations

import numpy as np

from forecaster.config import Rule
from forecaster.policy import lead_window, serve, served_value, window_peak
from forecaster.runtime.store import SeriesForecast

RULE = Rule(name="m", query="x{<<.LabelMatchers>>}")  # step 1m, lead 3m, horizon 10m


def forecast_at(origin: int, upper: list[float], last_actual: float = 1.0) -> SeriesForecast:
    ds = origin + 60 * np.arange(1, len(upper) + 1)
    return SeriesForecast(
        {"s": "a"},
        origin,
        last_actual,
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


def test_lead_window_covers_the_step_that_starts_at_the_lead():
    assert lead_window(180, 60) == 4  # steps labelled t+60 .. t+240
    assert lead_window(300, 300) == 2
    assert lead_window(0, 60) == 1


def test_array_rule_floors_at_the_actual_and_ignores_missing_forecasts():
    paths = np.array([[1.0, 5.0, 2.0, 9.0], [np.nan, np.nan, np.nan, np.nan], [1.0, np.inf, 3, 0]])
    peak = window_peak(paths, 3)  # the 9 is beyond the window
    np.testing.assert_array_equal(peak, [5.0, -np.inf, 3.0])
    np.testing.assert_array_equal(serve(np.array([2.0, 4.0, 7.0]), peak), [5.0, 4.0, 7.0])
    # A missing actual leaves the forecast; both missing stays missing (never 0).
    out = serve(np.array([np.nan, np.nan]), np.array([3.0, np.nan]))
    assert out[0] == 3.0 and np.isnan(out[1])


def test_scalar_and_array_rules_agree():
    fc = forecast_at(600, [1, 2, 3, 4, 9, 5, 5, 5, 5, 5])
    for now, actual in ((630, 0.5), (660, 0.5), (630, 20.0)):
        served = served_value(actual, fc, now, RULE)
        assert served is not None
        first = int(np.searchsorted(fc.ds, now, side="right"))
        window = fc.upper[first:][None, :]
        assert served.value == serve(actual, window_peak(window, lead_window(180, 60)))[0]
