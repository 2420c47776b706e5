"""Serving from memory: current values refreshed in the background, joined with forecasts;
bad samples cost only their own series, never the others, and never a 0."""

from __future__ import annotations

import time

import numpy as np
import pytest

from adapter.errors import BadRequest, NotFound, Unavailable
from adapter.provider.forecast import ForecastProvider
from forecaster.config import Rule
from forecaster.forecast import SeriesForecast
from forecaster.runtime.current import CurrentValues
from forecaster.runtime.serving import ServingView
from forecaster.runtime.store import ForecastStore
from forecaster.selector import LabelSelector, parse_selector
from forecaster.sources.base import series_key
from forecaster.sources.fake import FakeSource
from tests.conftest import Clock

RULE = Rule(name="qps", query="x{<<.LabelMatchers>>}", lead="3m")
NOW = 1_700_000_040.0
ORIGIN = 1_700_000_040


def forecast(labels: dict[str, str], upper: float, last_actual: float = 5.0) -> SeriesForecast:
    ds = ORIGIN + 60 * np.arange(1, 11)
    return SeriesForecast(
        labels,
        ORIGIN,
        last_actual,
        ds.astype(np.int64),
        np.full(10, upper / 2),
        np.full(10, upper),
        "m",
    )


def labels(svc: str) -> dict[str, str]:
    return {"namespace": "default", "service": svc}


@pytest.fixture
def world():
    source = FakeSource()
    for svc, value in (
        ("good", 4.0),
        ("nan", float("nan")),
        ("inf", float("inf")),
        ("negative", -1.0),
        ("huge", 1e39),
    ):
        source.set_current(labels(svc), value)
    clock = Clock(NOW)
    store = ForecastStore()
    store.put(
        "qps",
        {
            series_key(labels(s)): forecast(labels(s), 10.0)
            for s in ("good", "nan", "inf", "negative", "huge", "gone")
        }
        | {series_key(labels("absurd")): forecast(labels("absurd"), float("inf"))},
    )
    current = CurrentValues([RULE], source, clock, max_age=60, interval=15)
    current.refresh(RULE)
    provider = ForecastProvider([RULE], ServingView(store, current, clock))
    return source, clock, store, current, provider


def values(provider: ForecastProvider, selector: str = "") -> dict[str, float]:
    got = provider.values("default", "qps", parse_selector(selector))
    return {v.labels["service"]: v.value for v in got}


def test_bad_current_values_serve_the_forecast_and_spare_the_others(world):
    _, _, _, _, provider = world
    got = values(provider)
    # NaN, Inf, negative and absurd samples are "no current value": the fresh forecast is
    # served for them, as when the source is down; a series missing from the instant
    # query ("gone") likewise. A forecast gone infinite is not served; the rest still are.
    assert got == {s: 10.0 for s in ("good", "nan", "inf", "negative", "huge", "gone")}
    with pytest.raises(Unavailable, match="no forecast younger than"):
        values(provider, "service=absurd")


def test_a_series_whose_current_value_is_not_a_rate_is_a_503_saying_so_not_a_404(world):
    """Once its forecast has expired, a series whose current value is NaN or Inf was
    answered 404 "no series matches the selector", although it exists."""
    source, clock, _, current, provider = world
    clock.t += 3600  # every forecast expired
    source.set_current(labels("blank"), float("nan"))  # NaN from the start: never forecast
    current.refresh(RULE)
    for svc, shown in (
        ("blank", "NaN"),
        ("nan", "NaN"),
        ("inf", "+Inf"),
        ("negative", "-1.0"),
        ("huge", "1e+39"),
    ):
        with pytest.raises(Unavailable) as err:
            values(provider, f"service={svc}")
        assert f"its current value is {shown}, not a rate, and no forecast younger" in str(
            err.value.message
        )
    assert values(provider, "service=good") == {"good": 4.0}
    with pytest.raises(NotFound):  # a series the query does not yield at all
        values(provider, "service=nothing")


def test_requests_never_query_the_source(world):
    source, _, _, current, provider = world
    calls = source.calls["current"]
    for _ in range(50):
        values(provider, "service=good")
    assert source.calls["current"] == calls
    # Only the background refresh asks the source.
    current.refresh(RULE)
    assert source.calls["current"] == calls + 1


def test_stale_current_values_are_not_served_as_current(world):
    source, clock, _, current, provider = world
    for svc in ("nan", "inf", "negative", "huge"):
        source.set_current(labels(svc), None)
    source.set_current(labels("good"), 50.0)
    current.refresh(RULE)
    assert values(provider, "service=good") == {"good": 50.0}  # max(actual, forecast)
    source.down = "prometheus at http://p:9090 is down"
    clock.t += 30
    current.refresh(RULE)  # fails; the values fetched 30 s ago are still current
    assert values(provider, "service=good") == {"good": 50.0}
    clock.t += 31  # now older than max_age: the forecast alone, floored at its last actual
    assert values(provider, "service=good") == {"good": 10.0}
    clock.t += RULE.ttl  # and once the forecast is stale too: an error, never a number
    with pytest.raises(Unavailable, match="is down"):
        values(provider, "service=good")


def test_a_label_the_query_does_not_keep_is_refused(world):
    _, _, _, _, provider = world
    with pytest.raises(BadRequest, match="carry no label code: its query keeps namespace, service"):
        values(provider, "service=good,code=500")
    with pytest.raises(NotFound):
        values(provider, "service=nothing")


def test_a_rule_never_fetched_is_unavailable_and_asks_for_a_refresh():
    source = FakeSource()
    source.set_current(labels("good"), 4.0)
    clock = Clock(NOW)
    current = CurrentValues([RULE], source, clock, max_age=60, interval=15)
    provider = ForecastProvider([RULE], ServingView(ForecastStore(), current, clock))
    with pytest.raises(Unavailable, match="not been fetched yet"):
        provider.values("default", "qps", LabelSelector())
    current.close()  # waits for nothing; the on-demand refresh ran or was cancelled
    for _ in range(100):
        if source.calls["current"]:
            break
        time.sleep(0.01)
    assert source.calls["current"] == 1


def test_current_values_down_from_the_start_say_none_was_fetched(caplog):
    """It said "serving values fetched at never until they are 60s old"."""
    source = FakeSource()
    source.down = "cannot reach http://prometheus:9090"
    current = CurrentValues([RULE], source, Clock(NOW), max_age=60, interval=15)
    current.refresh(RULE)
    [record] = [r for r in caplog.records if "current values unavailable" in r.getMessage()]
    assert record.getMessage() == (
        "rule qps: current values unavailable (cannot reach http://prometheus:9090); none "
        "has been fetched yet, so only fresh forecasts are served"
    )
