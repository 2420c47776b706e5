"""Prometheus metrics about the forecaster itself: cycles and queries to the source."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


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
        """A forecaster.prometheus.QueryObserver."""
        self.query_duration.labels(endpoint).observe(seconds)
        if not ok:
            self.query_errors.labels(endpoint).inc()
