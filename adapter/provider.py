"""Answers (metric, namespace, selector) with values, by the served-value policy.

The API layer asks a provider; it never builds PromQL nor reads forecasts itself.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from adapter.errors import NotFound, Unavailable
from forecaster.config import Rule
from forecaster.policy import Served, served_value
from forecaster.runtime.store import ForecastStore
from forecaster.runtime.telemetry import Telemetry
from forecaster.selector import LabelSelector
from forecaster.sources.base import SeriesKey, Source, SourceError, series_key

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MetricValue:
    """One item of an ExternalMetricValueList."""

    metric: str
    labels: dict[str, str]
    timestamp: float
    value: float


class ExternalMetricsProvider(Protocol):
    """What the external metrics API needs from whatever computes the values."""

    def metric_names(self) -> list[str]:
        """Every external metric served."""
        ...

    def values(self, namespace: str, metric: str, selector: LabelSelector) -> list[MetricValue]:
        """One value per matching series; raise NotFound or Unavailable, never return []."""
        ...

    def not_ready(self) -> list[str]:
        """Why the provider cannot serve yet; empty when ready."""
        ...


class ForecastProvider:
    """Serves each rule's forecasts from the store, floored at the source's current value."""

    def __init__(
        self,
        rules: list[Rule],
        source: Source,
        store: ForecastStore,
        clock: Callable[[], float],
        telemetry: Telemetry | None = None,
    ) -> None:
        self.rules = {r.name: r for r in rules}
        self.source = source
        self.store = store
        self.clock = clock
        self.telemetry = telemetry
        self._fallback: set[tuple[str, SeriesKey]] = set()
        self._lock = threading.Lock()

    def metric_names(self) -> list[str]:
        return list(self.rules)

    def not_ready(self) -> list[str]:
        return [
            f"rule {name}: no forecast cycle has completed yet"
            for name in self.rules
            if self.store.snapshot(name) is None
        ]

    def values(self, namespace: str, metric: str, selector: LabelSelector) -> list[MetricValue]:
        rule = self.rules.get(metric)
        if rule is None:
            raise NotFound(
                f'external metric "{metric}" is not served here; served metrics: '
                + ", ".join(sorted(self.rules))
            )
        if rule.namespace_label:
            selector = selector.with_equals(rule.namespace_label, namespace)
        now = self.clock()
        try:
            current = self.source.fetch_current(rule, selector, now)
        except SourceError as err:
            return self._without_source(rule, namespace, selector, now, err)
        if not current:
            raise NotFound(
                f'no series of external metric "{metric}" in namespace "{namespace}" '
                f'matches the selector "{selector}"'
            )
        out = []
        for sample in current:
            served = served_value(sample.value, self.store.get(rule.name, sample.labels), now, rule)
            assert served is not None  # an actual value was given
            self._note(rule, sample.labels, served)
            out.append(MetricValue(rule.name, sample.labels, now, served.value))
        return out

    def _without_source(
        self,
        rule: Rule,
        namespace: str,
        selector: LabelSelector,
        now: float,
        err: SourceError,
    ) -> list[MetricValue]:
        """Source down: serve fresh forecasts of matching series, or refuse (never 0)."""
        snapshot = self.store.snapshot(rule.name)
        out = []
        for fc in [] if snapshot is None else snapshot.values():
            if not selector.matches(fc.labels):
                continue
            served = served_value(None, fc, now, rule)
            if served is not None:
                out.append(MetricValue(rule.name, fc.labels, now, served.value))
        if not out:
            raise Unavailable(
                f'cannot serve external metric "{rule.name}" in namespace "{namespace}": '
                f"the current value is unavailable ({err}) and no forecast younger than "
                f"{rule.ttl}s matches the selector"
            )
        log.warning(
            "rule %s: current value unavailable (%s); serving %d forecast(s) alone",
            rule.name,
            err,
            len(out),
        )
        return out

    def _note(self, rule: Rule, labels: dict[str, str], served: Served) -> None:
        """Count reactive fallbacks; log when a series enters or leaves fallback."""
        key = (rule.name, series_key(labels))
        with self._lock:
            was = key in self._fallback
            if served.predictive:
                self._fallback.discard(key)
            else:
                self._fallback.add(key)
        if not served.predictive:
            if self.telemetry:
                self.telemetry.fallbacks.labels(rule.name).inc()
            if not was:
                log.warning(
                    "rule %s %s: no forecast younger than %ss; serving the actual value "
                    "(reactive fallback)",
                    rule.name,
                    labels,
                    rule.ttl,
                )
        elif was:
            log.info("rule %s %s: forecast available again", rule.name, labels)
