"""What the forecaster exports per series: the same lead, window and values the serving
policy serves by, and labels that never collapse two series into one."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from forecaster.config import Rule
from forecaster.forecast import SeriesForecast
from forecaster.policy import ServingPolicy
from forecaster.runtime.current import CurrentValues
from forecaster.runtime.outcomes import Outcomes
from forecaster.runtime.serving import ServingView
from forecaster.runtime.store import ForecastStore
from forecaster.runtime.telemetry import SeriesCollector
from forecaster.sources.base import series_key
from forecaster.sources.fake import FakeSource
from tests.conftest import Clock

RULE = Rule(name="qps", query="x{<<.LabelMatchers>>}", lead_max="6m")
ORIGIN = 1_700_000_040


def forecast(labels: dict[str, str], lead: int | None) -> SeriesForecast:
    ds = ORIGIN + 60 * np.arange(1, RULE.horizon_steps + 1)
    upper = 10.0 + np.arange(RULE.horizon_steps, dtype=float)  # rising: the window matters
    return SeriesForecast(
        labels, ORIGIN, 5.0, ds.astype(np.int64), upper / 2, upper, "m", lead=lead
    )


def samples(registry: CollectorRegistry) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = generate_latest(registry).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_series_are_exported_at_the_lead_they_are_served_for():
    measured = {"namespace": "shop", "service": "a"}
    configured = {"namespace": "shop", "service": "b", "rule": "theirs"}  # a clashing label
    store = ForecastStore()
    forecasts = {
        series_key(measured): forecast(measured, 360),
        series_key(configured): forecast(configured, None),
    }
    store.put("qps", forecasts)
    clock = Clock(ORIGIN + 20)
    current = CurrentValues([RULE], FakeSource(), clock, max_age=60, interval=15)
    registry = CollectorRegistry()
    view = ServingView(store, current, clock)
    registry.register(SeriesCollector([RULE], view, {"qps": Outcomes(RULE)}))
    got = samples(registry)
    policy = ServingPolicy(RULE)
    a = frozenset({**measured, "rule": "qps"}.items())
    b = frozenset(
        {"namespace": "shop", "service": "b", "exported_rule": "theirs", "rule": "qps"}.items()
    )
    assert got["scaleahead_series_lead_seconds", a | {("source", "measured")}] == 360
    assert got["scaleahead_series_lead_seconds", b | {("source", "configured")}] == RULE.lead
    for labels, key in ((measured, a), (configured, b)):
        fc = forecasts[series_key(labels)]
        point, upper = policy.at_lead(fc, clock())  # type: ignore[misc]
        assert got["scaleahead_series_forecast_at_lead", key] == point
        assert got["scaleahead_series_forecast_upper_at_lead", key] == upper
        window = policy.window_upper(fc, clock())
        assert got["scaleahead_series_forecast_upper_lead_window", key] == window
        assert got["scaleahead_series_served", key] == max(fc.last_actual, window)  # type: ignore[type-var]
    # The measured lead reaches further up the rising forecast than the configured one.
    assert got["scaleahead_series_served", a] > got["scaleahead_series_served", b]
    unchanged = replace(forecasts[series_key(measured)], lead=None)
    assert got["scaleahead_series_served", a] > policy.window_upper(unchanged, clock())  # type: ignore[operator]
