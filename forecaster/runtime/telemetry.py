"""Everything scaleahead exports to Prometheus: its own cycles and queries (`Telemetry`)
and, per forecast series, the actual, forecast, band and served value (`SeriesCollector`).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from forecaster.config import Rule
from forecaster.policy import lead_window_upper
from forecaster.runtime.serving import ServingView


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

    def __init__(self, rules: list[Rule], view: ServingView):
        self.rules = rules
        self.view = view

    def collect(self) -> Iterator[Metric]:
        families = {
            "actual": GaugeMetricFamily(
                "scaleahead_series_actual",
                "Current value of the series (absent when it is missing or stale).",
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
                "scaleahead_series_served",
                "Value served to the HPA for this series now (absent when none can be served).",
            ),
            "age": GaugeMetricFamily(
                "scaleahead_series_forecast_age_seconds",
                "Seconds since the newest data behind the forecast.",
            ),
            "fallback": GaugeMetricFamily(
                "scaleahead_series_fallback",
                "1 when no fresh forecast exists: the actual is served alone, or nothing.",
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
            state = self.view.rule(rule)
            now = state.now
            for series in state.series:
                fc, served = series.forecast, series.served
                labels = {**series.labels, "external_metric": rule.name}
                values: dict[str, float | None] = {
                    "actual": series.actual,
                    "served": served.value if served else None,
                    "fallback": 0.0 if served and served.predictive else 1.0,
                }
                if fc is not None:
                    at_lead = fc.at(now + rule.lead + rule.step)
                    values |= {
                        "mean": at_lead[0] if at_lead else None,
                        "upper": at_lead[1] if at_lead else None,
                        "window": lead_window_upper(fc, now, rule),
                        "horizon": float(fc.upper.max()),
                        "age": fc.age(now),
                        "error": fc.recent_error,
                    }
                    families["model"].add_sample(
                        families["model"].name, {**labels, "model": fc.model}, 1.0
                    )
                for name, value in values.items():
                    if value is not None and np.isfinite(value):
                        families[name].add_sample(families[name].name, labels, value)
        yield from families.values()
