"""What the forecaster exports to Prometheus: its own cycles, queries and fallbacks
(`Telemetry`) and, per rule and forecast series, the settings, actual, forecast, band,
served value and realised outcomes (`SeriesCollector`). The API's own request metrics
are the adapter's (adapter.metrics).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Protocol

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from forecaster.config import Rule
from forecaster.policy import Fallback
from forecaster.runtime.outcomes import Tally
from forecaster.runtime.serving import ServingView
from forecaster.sources.prometheus import ERROR_KINDS

QUERY_ENDPOINTS = ("/api/v1/query", "/api/v1/query_range")
"""The Prometheus HTTP API endpoints scaleahead calls."""


class Telemetry:
    """The forecaster's own metrics, registered on the given registry; the counters of each
    rule and Prometheus endpoint start at 0, so that a rate over them is 0, not absent."""

    def __init__(self, registry: CollectorRegistry, rules: list[str]) -> None:
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
        self.cycle_refused = Gauge(
            "scaleahead_cycle_series_refused",
            "Series of a rule its last cycle left unforecast: beyond the rule's max_series "
            "(served their actual alone).",
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
            "HTTP calls to Prometheus that failed (including each retried attempt), by kind: "
            f"{', '.join(ERROR_KINDS)}.",
            ["endpoint", "kind"],
            registry=registry,
        )
        self.fit_worker_restarts = Counter(
            "scaleahead_fit_worker_restarts_total",
            "Times a fitting worker process died and the workers were restarted (that "
            "cycle's refits were made in the serving process).",
            registry=registry,
        )
        self.fallbacks = Counter(
            "scaleahead_fallback_total",
            "Values served reactively (actual only), by why no forecast could be used.",
            ["rule", "reason"],
            registry=registry,
        )
        self.checkpoint_seconds = Histogram(
            "scaleahead_checkpoint_duration_seconds",
            "Wall time of writing a rule's checkpoint (its history and fits).",
            ["rule"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=registry,
        )
        self.checkpoint_end = Gauge(
            "scaleahead_checkpoint_end_timestamp_seconds",
            "The newest grid point in a rule's last checkpoint: where a restart resumes.",
            ["rule"],
            registry=registry,
        )
        self.checkpoint_failures = Counter(
            "scaleahead_checkpoint_failures_total",
            "Checkpoints of a rule that could not be written (op=save) or read back at "
            "start (op=load; every series was then fitted afresh).",
            ["rule", "op"],
            registry=registry,
        )
        self.checkpoint_restored = Gauge(
            "scaleahead_checkpoint_restored_series",
            "Series of a rule whose fits this process restored from its checkpoint at start.",
            ["rule"],
            registry=registry,
        )

        for endpoint in QUERY_ENDPOINTS:
            self.query_duration.labels(endpoint)
            for kind in ERROR_KINDS:
                self.query_errors.labels(endpoint, kind)
        for rule in rules:
            for family in (self.cycle_failures, self.fit_failures, self.cycle_duration):
                family.labels(rule)
            for reason in Fallback:
                self.fallbacks.labels(rule, reason.value)
            for op in ("save", "load"):
                self.checkpoint_failures.labels(rule, op)

    def observe_query(self, endpoint: str, seconds: float, error: str | None) -> None:
        """A forecaster.sources.prometheus.QueryObserver."""
        self.query_duration.labels(endpoint).observe(seconds)
        if error is not None:
            self.query_errors.labels(endpoint, error).inc()


_OURS = ("rule", "reason", "model", "source", "schedule")
"""Label names the series samples add to a series' own labels."""


def _labels(series: dict[str, str], rule: str) -> dict[str, str]:
    """A series' labels plus `rule`. A series label named as one of ours is renamed
    `exported_<name>` (Prometheus' own convention for a clash), so that no two series
    collapse into one."""
    if any(name in series for name in _OURS):
        series = {(f"exported_{k}" if k in _OURS else k): v for k, v in series.items()}
    return {**series, "rule": rule}


class Tallies(Protocol):
    """A rule's realised outcomes (forecaster.runtime.outcomes.Outcomes, or their copy
    from the forecaster process)."""

    def tallies(self) -> list[Tally]: ...


class SeriesCollector(Collector):
    """Exports, per rule, its lead, step, TTL and quantile, and per forecast series the
    actual, forecast, band, served value, age, fallback, model and the realised outcomes.

    Each series sample carries the series' own labels plus `rule` (the rule's name).
    """

    def __init__(self, rules: list[Rule], view: ServingView, outcomes: Mapping[str, Tallies]):
        self.rules = rules
        self.view = view
        self.outcomes = outcomes

    def collect(self) -> Iterator[Metric]:
        yield from self._rule_settings()
        yield from self._series()
        yield from self._outcomes()

    def _rule_settings(self) -> Iterator[Metric]:
        settings = {
            "lead_seconds": ("How far ahead of now the served value looks.", "lead"),
            "step_seconds": ("The rule's step: one forecast point per step.", "step"),
            "interval_seconds": ("How often the rule's forecast cycle runs.", "interval"),
            "forecast_ttl_seconds": (
                "The oldest a forecast may be and still be served from.",
                "ttl",
            ),
            "quantile": (
                "The probability the served value covers the lead window's peak, where the "
                "rule fixes it (else see scaleahead_series_quantile).",
                "quantile",
            ),
            "max_pod_minutes": (
                "The pod-minutes, over perfect foresight's, each series' quantile is chosen "
                "to cost, where the rule sets a budget rather than a quantile.",
                "budget",
            ),
        }
        for suffix, (doc, attr) in settings.items():
            family = GaugeMetricFamily(f"scaleahead_rule_{suffix}", doc, labels=["rule"])
            for rule in self.rules:
                value = getattr(rule, attr)
                if value is not None:
                    family.add_metric([rule.name], float(value))
            yield family

    def _outcomes(self) -> Iterator[Metric]:
        windows = CounterMetricFamily(
            "scaleahead_series_lead_windows",
            "Lead windows realised and judged: a value served after a cycle against the "
            "peak that followed.",
        )
        covered = CounterMetricFamily(
            "scaleahead_series_lead_windows_covered",
            "Judged lead windows whose realised peak the served value covered.",
        )
        error = Metric(
            "scaleahead_series_forecast_abs_error",
            "Absolute error of the point forecast at lead, against the realised value "
            "(count: judged lead windows).",
            "summary",
        )
        for rule in self.rules:
            for tally in self.outcomes[rule.name].tallies():
                labels = _labels(tally.labels, rule.name)
                windows.add_sample(windows.name + "_total", labels, tally.windows)
                covered.add_sample(covered.name + "_total", labels, tally.covered)
                error.add_sample(error.name + "_count", labels, tally.windows)
                error.add_sample(error.name + "_sum", labels, tally.abs_error)
        yield from (windows, covered, error)

    def _series(self) -> Iterator[Metric]:
        families = {
            "actual": GaugeMetricFamily(
                "scaleahead_series_actual",
                "Current value of the series (absent when it is missing or stale).",
            ),
            "point": GaugeMetricFamily(
                "scaleahead_series_forecast_at_lead",
                "Point (median) forecast for the step starting at now + lead.",
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
                "1 when no forecast can be served from (label reason says why): the actual "
                "is served alone, or nothing; 0 when one is.",
            ),
            "error": GaugeMetricFamily(
                "scaleahead_series_backtest_error",
                "The model's mean absolute error over the steps the served value covers, "
                "on the series' own last day (rolling-origin backtest at the last refit).",
            ),
            "quantile": GaugeMetricFamily(
                "scaleahead_series_quantile",
                "The share of lead windows whose peak the served value is to cover: the "
                "rule's quantile, or the one its pod-minutes budget bought at the last refit.",
            ),
            "headroom": GaugeMetricFamily(
                "scaleahead_series_headroom",
                "The factor on the upper band from its pod-minutes budget: up to 1.1 with "
                "what the budget affords beyond the band at its quantile, under 1 (down to 0, "
                "the actual alone) where even the lowest band costs more; 1 otherwise.",
            ),
            "scale_down": GaugeMetricFamily(
                "scaleahead_series_scale_down_seconds",
                "The HPA scale-down stabilization window the series' pod-minutes budget was "
                "costed through at the last refit: that of the HPAs that read it (the "
                "longest), else Kubernetes' default. Absent under a fixed quantile.",
            ),
            "model": GaugeMetricFamily(
                "scaleahead_series_model_info", "The model forecasting the series (value 1)."
            ),
            "floor": GaugeMetricFamily(
                "scaleahead_series_schedule_floor",
                "The floor a schedule or event (label schedule) puts under the series' "
                "served value, present while it is active: from lead before its window "
                "opens until the window closes. The served value is at least the largest.",
            ),
            "lead": GaugeMetricFamily(
                "scaleahead_series_lead_seconds",
                "The lead the series is served for: its workload's pods' measured time to "
                'Ready (label source="measured"), else the rule\'s (source="configured").',
            ),
        }
        for rule in self.rules:
            policy = self.view.policy(rule)
            state = self.view.rule(rule)
            now = state.now
            for series in state.series:
                fc, served = series.forecast, series.served
                labels = _labels(series.labels, rule.name)
                values: dict[str, float | None] = {
                    "actual": series.actual,
                    "served": served.value if served else None,
                }
                if series.fallback is None:
                    families["fallback"].add_sample(families["fallback"].name, labels, 0.0)
                else:
                    families["fallback"].add_sample(
                        families["fallback"].name,
                        {**labels, "reason": series.fallback.value},
                        1.0,
                    )
                for active in series.floors:
                    families["floor"].add_sample(
                        families["floor"].name, {**labels, "schedule": active.name}, active.floor
                    )
                source = "configured" if fc is None or fc.lead is None else "measured"
                families["lead"].add_sample(
                    families["lead"].name, {**labels, "source": source}, float(policy.lead(fc))
                )
                if fc is not None:
                    at_lead = policy.at_lead(fc, now)
                    values |= {
                        "point": at_lead[0] if at_lead else None,
                        "upper": at_lead[1] if at_lead else None,
                        "window": policy.window_upper(fc, now),
                        "horizon": float(fc.upper.max()),
                        "age": fc.age(now),
                        "error": fc.recent_error,
                        "quantile": fc.quantile,
                        "headroom": fc.headroom,
                        "scale_down": fc.scale_down,
                    }
                    families["model"].add_sample(
                        families["model"].name, {**labels, "model": fc.model}, 1.0
                    )
                for name, value in values.items():
                    if value is not None and np.isfinite(value):
                        families[name].add_sample(families[name].name, labels, value)
        yield from families.values()
