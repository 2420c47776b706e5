"""The serving policy: the served-value rule, the lead window, the TTL, rates, fallbacks
and floors, decided in one place."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from forecaster.config import Rule
from forecaster.forecast import SeriesForecast
from forecaster.policy import (
    MAX_RATE,
    Fallback,
    ServingPolicy,
    as_rates,
    is_rate,
    last_rate,
    lead_window,
    serve,
    window_peak,
)

RULE = Rule(name="m", query="x{<<.LabelMatchers>>}")  # step 1m, lead 3m, horizon 10m
POLICY = ServingPolicy(RULE)


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


def value(actual: float | None, fc: SeriesForecast | None, now: float) -> float:
    served = POLICY.value(actual, fc, now)
    assert served is not None
    return served.value


def test_policy_takes_the_max_upper_over_now_to_now_plus_lead_plus_step():
    fc = forecast_at(600, [1, 2, 3, 4, 9, 5, 5, 5, 5, 5])  # ds 660 .. 1200
    # now=630: steps labelled 660, 720, 780, 840 cover up to now + lead + step = 870.
    assert value(0.5, fc, 630) == 4
    # now=660: 720 .. 900 (the 9 is at 900).
    assert value(0.5, fc, 660) == 9
    # The actual floors it.
    assert value(20.0, fc, 630) == 20


def test_a_measured_lead_widens_the_window_it_is_served_for():
    fc = forecast_at(600, [1, 2, 3, 4, 9, 5, 5, 5, 5, 5])
    measured = replace(fc, lead=240)  # 4 minutes: steps up to now + 300
    assert POLICY.lead(measured) == 240 and POLICY.lead(fc) == RULE.lead
    assert POLICY.window(measured) == 5 and POLICY.window(fc) == 4
    assert value(0.5, measured, 630) == 9  # 660 .. 900 now
    assert POLICY.at_lead(measured, 630) == (2.5, 5.0)  # the step starting at 870: ds 960
    assert POLICY.at_lead(fc, 630) == (4.5, 9.0)  # the step starting at 810: ds 900


def test_policy_falls_back_and_refuses_without_data():
    fc = forecast_at(600, [3] * 10, last_actual=2.5)
    stale_at = 600 + RULE.ttl + 1
    stale = POLICY.value(1.0, fc, stale_at)
    assert stale is not None and stale.value == 1.0
    assert stale.fallback is Fallback.STALE_FORECAST
    assert POLICY.value(None, fc, stale_at) is None  # never a 0
    assert POLICY.value(None, None, 600) is None
    # Source down, forecast fresh: the forecast floored at the last actual it saw.
    assert value(None, forecast_at(600, [1.0] * 10, last_actual=2.5), 630) == 2.5
    short = forecast_at(600, [3, 3])  # ends before the lead window does
    assert POLICY.fallback(short, 630) is Fallback.SHORT_FORECAST
    assert POLICY.fallback(None, 630) is Fallback.NO_FORECAST


def test_a_decision_refuses_what_is_not_a_rate_and_names_the_cap():
    absurd = forecast_at(600, [np.inf] * 10)
    decided = POLICY.decide({"s": "a"}, 1.0, absurd, 630)
    assert decided.served is None and decided.fallback is Fallback.INVALID_VALUE
    capped = POLICY.decide({"s": "a"}, 3.0, None, 630, capped=True)
    assert capped.served is not None and capped.served.value == 3.0
    assert capped.fallback is Fallback.SERIES_CAP


def test_floors_follow_the_series_lead():
    rule = Rule.model_validate(
        {
            "name": "m",
            "query": "x{<<.LabelMatchers>>}",
            "events": [
                {
                    "name": "sale",
                    "from": "2023-11-14T22:20:00Z",  # 1_700_000_400
                    "to": "2023-11-14T23:00:00Z",
                    "floor": 50,
                }
            ],
        }
    )
    policy = ServingPolicy(rule)
    origin = 1_700_000_000 - 1_700_000_000 % 60
    fc = forecast_at(origin, [1.0] * 10)
    now = 1_700_000_400 - 200  # 200 s before the window opens
    assert policy.decide({"s": "a"}, 1.0, fc, now).floors == ()  # a 180 s lead: not yet
    late = policy.decide({"s": "a"}, 1.0, replace(fc, lead=240), now)
    assert [f.name for f in late.floors] == ["sale"]
    assert late.served is not None and late.served.value == 50 and late.served.schedule == "sale"


@pytest.mark.parametrize(
    ("value", "rate"),
    [
        (0.0, True),
        (3.5, True),
        (MAX_RATE, True),
        (MAX_RATE * 10, False),
        (-1.0, False),
        (float("nan"), False),
        (float("inf"), False),
    ],
)
def test_one_rule_for_what_is_a_rate(value: float, rate: bool):
    assert is_rate(value) is rate
    assert np.isnan(as_rates(np.array([value]))[0]) is not rate


def test_the_newest_rate_skips_what_is_not_one():
    assert last_rate(np.array([1.0, 2.0, np.nan, -1.0])) == 2.0
    assert last_rate(np.array([np.nan, 1e39])) is None


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
        first = int(np.searchsorted(fc.ds, now, side="right"))
        window = fc.upper[first:][None, :]
        expected = serve(actual, window_peak(window, lead_window(180, 60)))[0]
        assert value(actual, fc, now) == expected
