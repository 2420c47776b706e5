"""Everything scaleahead exports to Prometheus: its own cycles and queries (`Telemetry`)
and, per forecast series, the actual, forecast, band and served value (`SeriesCollector`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from forecaster.config import Rule
from forecaster.policy import lead_window_upper, served_value
from forecaster.runtime.store import ForecastStore


class Telemetry:
    """The service's own metrics, registered on the given registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.cycle_duration = Histogram(
            "scaleahead_cycle_duration_seconds",
            "Wall time of one forecast cycle of a rule (fetch, fit, store).",
            ["rule"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120),
            registry=registry,
        )
        self.cycle_series = Gauge(
            "scaleahead_cycle_series",
            "Series forecast by the last cycle of a rule.",
            ["rule"],
            registry=registry,
        )
        self.cycle_failures = Counter(
            "scaleahead_cycle_failures_total",
            "Cycles of a rule that stored no forecast (source or model failure).",
            ["rule"],
            registry=registry,
        )
        self.fit_failures = Counter(
            "scaleahead_fit_failures_total",
            "Series whose forecast could not be computed in a cycle.",
            ["rule"],
            registry=registry,
        )
        self.last_cycle = Gauge(
            "scaleahead_cycle_last_success_timestamp_seconds",
            "When the last successful cycle of a rule finished.",
            ["rule"],
            registry=registry,
        )
        self.query_duration = Histogram(
            "scaleahead_prometheus_query_duration_seconds",
            "Latency of HTTP calls to Prometheus.",
            ["endpoint"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        )
        self.query_errors = Counter(
            "scaleahead_prometheus_query_errors_total",
            "HTTP calls to Prometheus that failed (including each retried attempt).",
            ["endpoint"],
            registry=registry,
        )
        self.fallbacks = Counter(
            "scaleahead_fallback_total",
            "Values served reactively (actual only) because no fresh forecast existed.",
            ["rule"],
            registry=registry,
        )

    def observe_query(self, endpoint: str, seconds: float, ok: bool) -> None:
        """A forecaster.sources.prometheus.QueryObserver."""
        self.query_duration.labels(endpoint).observe(seconds)
        if not ok:
            self.query_errors.labels(endpoint).inc()


class SeriesCollector(Collector):
    """Exports actual, forecast, band, served value, age and fallback per forecast series.

    Each sample carries the series' own labels plus `external_metric` (the rule's name).
    """

    def __init__(self, rules: list[Rule], store: ForecastStore, clock: Callable[[], float]):
        self.rules = rules
        self.store = store
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        now = self.clock()
        families = {
            "actual": GaugeMetricFamily(
                "scaleahead_series_actual", "Newest actual rate the forecast was built on."
            ),
            "mean": GaugeMetricFamily(
                "scaleahead_series_forecast_at_lead",
                "Point forecast for the step starting at now + lead.",
            ),
            "upper": GaugeMetricFamily(
                "scaleahead_series_forecast_upper_at_lead",
                "Upper-band forecast for the step starting at now + lead.",
            ),
            "window": GaugeMetricFamily(
                "scaleahead_series_forecast_upper_lead_window",
                "Max upper-band forecast over now .. now + lead (what the policy uses).",
            ),
            "horizon": GaugeMetricFamily(
                "scaleahead_series_forecast_upper_horizon_max",
                "Max upper-band forecast over the whole horizon.",
            ),
            "served": GaugeMetricFamily(
                "scaleahead_series_served", "Value served to the HPA for this series now."
            ),
            "age": GaugeMetricFamily(
                "scaleahead_series_forecast_age_seconds",
                "Seconds since the newest data behind the forecast.",
            ),
            "fallback": GaugeMetricFamily(
                "scaleahead_series_fallback",
                "1 when the forecast is older than its TTL and the actual is served alone.",
            ),
            "error": GaugeMetricFamily(
                "scaleahead_series_backtest_error",
                "The model's mean absolute error over the steps the served value covers, "
                "on the series' own last day (rolling-origin backtest at the last refit).",
            ),
            "model": GaugeMetricFamily(
                "scaleahead_series_model_info", "The model forecasting the series (value 1)."
            ),
        }
        for rule in self.rules:
            snapshot = self.store.snapshot(rule.name)
            if snapshot is None:
                continue
            for fc in snapshot.values():
                labels = {**fc.labels, "external_metric": rule.name}
                served = served_value(fc.last_actual, fc, now, rule)
                at_lead = fc.at(now + rule.lead + rule.step)
                window = lead_window_upper(fc, now, rule)
                values = {
                    "actual": fc.last_actual,
                    "mean": at_lead[0] if at_lead else None,
                    "upper": at_lead[1] if at_lead else None,
                    "window": window,
                    "horizon": float(fc.upper.max()),
                    "served": served.value if served else None,
                    "age": fc.age(now),
                    "fallback": 0.0 if served and served.predictive else 1.0,
                    "error": fc.recent_error,
                }
                for name, value in values.items():
                    if value is not None and np.isfinite(value):
                        families[name].add_sample(families[name].name, labels, value)
                families["model"].add_sample(
                    families["model"].name, {**labels, "model": fc.model}, 1.0
                )
        yield from families.values()
