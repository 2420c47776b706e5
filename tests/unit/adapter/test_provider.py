"""scaleahead's provider over the serving view: readiness per rule, errors that name the
problem, fallbacks counted and logged once per change, and what requests ask for."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from adapter.errors import NotFound, Unavailable
from adapter.logs import JsonFormatter
from adapter.provider.forecast import ForecastProvider
from forecaster.config import Rule
from forecaster.forecast import SeriesForecast
from forecaster.runtime.current import CurrentValues
from forecaster.runtime.demand import SeriesDemand
from forecaster.runtime.serving import ServingView
from forecaster.runtime.store import ForecastStore
from forecaster.runtime.telemetry import Telemetry
from forecaster.selector import parse_selector
from forecaster.sources.base import series_key
from forecaster.sources.fake import FakeSource
from tests.conftest import Clock

RULE = Rule(name="qps", query="x{<<.LabelMatchers>>}")
ORIGIN = 1_700_000_040
A = {"namespace": "shop", "service": "a"}


def forecast(labels: dict[str, str]) -> SeriesForecast:
    ds = ORIGIN + 60 * np.arange(1, RULE.horizon_steps + 1)
    upper = np.full(RULE.horizon_steps, 8.0)
    return SeriesForecast(labels, ORIGIN, 5.0, ds.astype(np.int64), upper / 2, upper, "m")


@dataclass
class Parts:
    source: FakeSource
    clock: Clock
    store: ForecastStore
    current: CurrentValues
    telemetry: Telemetry
    demand: SeriesDemand
    provider: ForecastProvider


@pytest.fixture
def parts() -> Iterator[Parts]:
    source = FakeSource()
    source.set_current(A, 3.0)
    clock = Clock(ORIGIN + 20)
    store = ForecastStore()
    current = CurrentValues([RULE], source, clock, max_age=60, interval=15)
    telemetry = Telemetry(CollectorRegistry(), [RULE.name])
    demand = SeriesDemand([RULE])
    provider = ForecastProvider([RULE], ServingView(store, current, clock), telemetry, demand)
    yield Parts(source, clock, store, current, telemetry, demand, provider)
    current.close()


def test_readiness_fails_only_until_the_first_cycle_ends(parts):
    clock, store, current, provider = parts.clock, parts.store, parts.current, parts.provider
    [check] = provider.readiness()
    assert not check.ok and check.detail == "its first forecast cycle has not ended yet"
    # A first cycle that failed (Prometheus down at start) ends the wait: this replica
    # answers (503 naming the error), so it is ready, and says what is wrong.
    store.failed("qps", "prometheus down", 1, retry_at=clock() + 5)
    [check] = provider.readiness()
    assert check.ok and check.degraded
    assert check.detail == (
        "no forecast cycle has succeeded yet: "
        "the last 1 cycle(s) failed (prometheus down), next attempt in 5s"
    )
    store.put("qps", {})
    current.refresh(RULE)
    [check] = provider.readiness()
    assert check.ok and not check.degraded and check.detail == "1 series, 0 served from forecasts"
    store.put("qps", {series_key(A): forecast(A)})
    assert provider.readiness()[0].detail == "1 series, 1 served from forecasts"
    store.failed("qps", "prometheus down", 3, retry_at=clock() + 20)
    [check] = provider.readiness()
    assert check.ok and check.degraded
    assert check.detail.endswith(
        "the last 3 cycle(s) failed (prometheus down), next attempt in 20s"
    )


def test_a_rule_that_can_serve_nothing_keeps_the_replica_ready(parts):
    clock, store, current, provider = parts.clock, parts.store, parts.current, parts.provider
    store.put("qps", {series_key(A): forecast(A)})
    current.refresh(RULE)
    assert not provider.readiness()[0].degraded
    parts.source.down = "connection refused"  # Prometheus gone: the current values age
    clock.t += RULE.ttl + 120  # out, and so does the forecast
    current.refresh(RULE)
    [check] = provider.readiness()
    assert check.ok and check.degraded
    assert "no forecast younger than" in check.detail and "serving nothing" in check.detail
    with pytest.raises(Unavailable):
        provider.values("shop", "qps", parse_selector(""))


def test_fallback_lines_carry_the_rule_and_the_series_as_fields(parts, caplog):
    caplog.set_level(logging.INFO, logger="adapter.provider.forecast")
    parts.current.refresh(RULE)
    parts.provider.values("shop", "qps", parse_selector("service=a"))  # no forecast yet
    parts.store.put("qps", {series_key(A): forecast(A)})
    parts.provider.values("shop", "qps", parse_selector("service=a"))
    entering, leaving = caplog.records
    for record in (entering, leaving):
        line = json.loads(JsonFormatter().format(record))
        assert line["rule"] == "qps" and line["series"] == A
        assert "{'" not in line["msg"]  # no dict repr in the message
    assert entering.getMessage().startswith("rule qps, series namespace=shop,service=a: ")


def test_errors_name_the_metric_the_namespace_and_the_selector(parts):
    current, provider = parts.current, parts.provider
    with pytest.raises(NotFound, match='"nope" is not served here; served metrics: qps'):
        provider.values("shop", "nope", parse_selector(""))
    with pytest.raises(Unavailable, match="has no values yet"):
        provider.values("shop", "qps", parse_selector(""))
    current.refresh(RULE)
    with pytest.raises(NotFound, match='in namespace "other" matches the selector'):
        provider.values("other", "qps", parse_selector(""))


def test_a_fallback_is_counted_every_time_and_logged_once_per_change(parts, caplog):
    store, current, provider = parts.store, parts.current, parts.provider
    current.refresh(RULE)
    caplog.set_level(logging.INFO, logger="adapter.provider.forecast")
    for _ in range(3):  # no forecast yet: the actual alone
        [value] = provider.values("shop", "qps", parse_selector("service=a"))
        assert value.value == 3.0
    store.put("qps", {series_key(A): forecast(A)})
    [value] = provider.values("shop", "qps", parse_selector("service=a"))
    assert value.value == 8.0
    fallbacks = parts.telemetry.fallbacks.labels("qps", "no_forecast")._value.get()
    assert fallbacks == 3
    lines = [r.getMessage() for r in caplog.records]
    assert sum("reactive fallback" in line for line in lines) == 1
    assert sum("forecast available again" in line for line in lines) == 1
    # Every answered series counts as asked for: the cycle keeps forecasting it after it
    # stops being new, and only that one.
    b = {"namespace": "shop", "service": "b"}
    both = {series_key(A): A, series_key(b): b}
    parts.demand.select(RULE, both, parts.clock() - RULE.drop_after)  # first seen then
    wanted = parts.demand.select(RULE, both, parts.clock() + 60).wanted
    assert list(wanted) == [series_key(A)]


def test_a_replica_serving_borrowed_forecasts_is_ready_and_says_whose(parts):
    store, current, provider = parts.store, parts.current, parts.provider
    current.refresh(RULE)
    store.borrow("qps", {series_key(A): forecast(A)}, "scaleahead-7d9f-x2")
    [check] = provider.readiness()
    assert check.ok and not check.degraded
    assert check.detail == (
        "1 series, 1 served from forecasts, borrowed from peer scaleahead-7d9f-x2 until "
        "this replica's own cycles catch up"
    )
    [value] = provider.values("shop", "qps", parse_selector("service=a"))
    assert value.value == 8.0  # the peer's forecast, served as the peer serves it
    store.put("qps", {series_key(A): forecast(A)})
    assert provider.readiness()[0].detail == "1 series, 1 served from forecasts"
