"""The store between the cycle and the API: whole snapshots, failures beside them."""

from __future__ import annotations

import numpy as np

from forecaster.forecast import SeriesForecast
from forecaster.runtime.store import ForecastStore
from forecaster.sources.base import series_key


def forecast(service: str, upper: float) -> SeriesForecast:
    ds = np.arange(60, 660, 60, dtype=np.int64)
    return SeriesForecast(
        {"service": service}, 0, 1.0, ds, np.full(10, upper / 2), np.full(10, upper), "m"
    )


def test_a_cycle_replaces_a_rules_forecasts_whole_and_readers_keep_theirs():
    store = ForecastStore()
    assert store.snapshot("qps") is None  # before the first cycle: no answer, not empty
    first = {series_key({"service": "a"}): forecast("a", 1.0)}
    store.put("qps", first)
    before = store.snapshot("qps")
    first[series_key({"service": "b"})] = forecast("b", 2.0)  # the cycle's own dict moves on
    assert before is not None and list(before) == [series_key({"service": "a"})]
    store.put("qps", {series_key({"service": "b"}): forecast("b", 2.0)})
    assert store.get("qps", {"service": "a"}) is None  # gone whole, not merged
    assert store.get("qps", {"service": "b"}) is not None
    assert list(before) == [series_key({"service": "a"})]  # a reader's snapshot never changes


def test_a_failure_is_kept_beside_the_forecasts_until_a_cycle_succeeds():
    store = ForecastStore()
    store.put("qps", {series_key({"service": "a"}): forecast("a", 1.0)}, frozenset())
    store.failed("qps", "prometheus down", 2, retry_at=123.0)
    failure = store.failure("qps")
    assert failure is not None and (failure.error, failure.failures) == ("prometheus down", 2)
    assert store.get("qps", {"service": "a"}) is not None  # the forecasts stay until their TTL
    refused = frozenset({series_key({"service": "z"})})
    store.put("qps", {}, refused)
    assert store.failure("qps") is None and store.refused("qps") == refused
    assert store.refused("other") == frozenset()
