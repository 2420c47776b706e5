"""The provider scaleahead serves with: each rule's series answered from memory, current
values and forecasts joined by the serving policy (forecaster.runtime.serving)."""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable

from adapter.errors import BadRequest, NotFound, Unavailable
from adapter.provider import Check, MetricValue
from forecaster.config import Rule
from forecaster.policy import Fallback, Served
from forecaster.runtime.demand import SeriesDemand
from forecaster.runtime.serving import RuleServing, SeriesServing, ServingView
from forecaster.runtime.telemetry import Telemetry
from forecaster.selector import LabelSelector
from forecaster.sources.base import SeriesKey, series_key

log = logging.getLogger(__name__)


class ForecastProvider:
    """Serves each rule's series from memory: current values and forecasts joined by the
    served-value policy. A request never waits on the source."""

    def __init__(
        self,
        rules: list[Rule],
        view: ServingView,
        telemetry: Telemetry | None = None,
        demand: SeriesDemand | None = None,
        checks: Callable[[], list[Check]] = list,
    ) -> None:
        self.rules = {r.name: r for r in rules}
        self.view = view
        self.telemetry = telemetry
        self.demand = demand
        self.checks = checks  # what else the forecasts depend on (the forecaster process)
        self._fallback: set[tuple[str, SeriesKey]] = set()
        self._lock = threading.Lock()

    def metric_names(self) -> list[str]:
        return list(self.rules)

    def readiness(self) -> list[Check]:
        return [*(self._rule_check(rule) for rule in self.rules.values()), *self.checks()]

    def _rule_check(self, rule: Rule) -> Check:
        """Fails only during the rule's first cycle after a start (the other replica
        serves meanwhile); once a cycle has ended, well or not, this process answers
        for the rule, and what it cannot serve is a degraded check, not unreadiness."""
        name = f"rule/{rule.name}"
        state = self.view.rule(rule)
        failure = state.failure
        failing = ""
        if failure is not None:
            retry = (
                f", next attempt in {max(0, round(failure.retry_at - state.now))}s"
                if failure.retry_at is not None
                else ""
            )
            failing = f"the last {failure.failures} cycle(s) failed ({failure.error}){retry}"
        if not state.forecasts_ready:
            if failure is None:
                error = state.current.error
                why = f": current values: {error}" if error else ""
                return Check(name, False, f"its first forecast cycle has not ended yet{why}")
            return Check(
                name, True, f"no forecast cycle has succeeded yet: {failing}", degraded=True
            )
        if not state.known:
            return Check(
                name,
                True,
                "the query yields no series, so every request for it is answered 404 "
                "(check its metric names: scaleahead check-config --prometheus)",
                degraded=True,
            )
        if not any(s.served for s in state.series):
            return Check(name, True, _unservable(state, state.series), degraded=True)
        predictive = sum(1 for s in state.series if s.served and s.served.predictive)
        detail = f"{state.known} series, {predictive} served from forecasts"
        refused = len(self.view.store.refused(rule.name))
        if refused:
            detail += f", {refused} beyond max_series ({rule.max_series}) served their actual"
        lender = self.view.store.lender(rule.name)
        if lender is not None:
            detail += f", borrowed from peer {lender} until this replica's own cycles catch up"
        if failing:
            return Check(name, True, f"{detail}; {failing}", degraded=True)
        return Check(name, True, detail)

    def values(self, namespace: str, metric: str, selector: LabelSelector) -> list[MetricValue]:
        rule = self.rules.get(metric)
        if rule is None:
            raise NotFound(
                f'external metric "{metric}" is not served here; served metrics: '
                + ", ".join(sorted(self.rules))
            )
        if rule.namespace_label:
            selector = selector.with_equals(rule.namespace_label, namespace)
        state = self.view.rule(rule, selector)
        if not state.known:
            self.view.current.refresh_soon(rule.name)
            if state.current.fetched_at is None:
                raise Unavailable(
                    f'external metric "{metric}" has no values yet: {_current_state(state)}'
                )
        kept = state.label_names
        unknown = sorted(selector.keys() - kept)
        if state.known and unknown:
            raise BadRequest(
                f'the series of external metric "{metric}" carry no label '
                f"{', '.join(unknown)}: its query keeps {', '.join(sorted(kept))}"
                + (
                    f" (namespace_label {rule.namespace_label} must be kept by the query)"
                    if rule.namespace_label in unknown
                    else ""
                )
            )
        matching = state.series
        if not matching:
            self.view.current.refresh_soon(
                rule.name
            )  # a series that appeared since the last refresh
            raise NotFound(
                f'no series of external metric "{metric}" in namespace "{namespace}" '
                f'matches the selector "{selector}"'
            )
        if self.demand is not None:
            self.demand.ask(rule.name, [series_key(s.labels) for s in matching], state.now)
        out = []
        for s in matching:
            if s.served is None:
                continue
            self._note(rule, s.labels, s.served)
            out.append(MetricValue(rule.name, s.labels, state.now, s.served.value))
        if not out:
            raise Unavailable(
                f'cannot serve external metric "{metric}" in namespace "{namespace}" for '
                f'"{selector}": {_unservable(state, matching)}'
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
        if served.fallback is not None:
            if self.telemetry:
                self.telemetry.fallbacks.labels(rule.name, served.fallback.value).inc()
            if not was:
                log.warning(
                    "rule %s, series %s: %s; serving the actual value (reactive fallback)",
                    rule.name,
                    _selector(labels),
                    _FALLBACK_WHY[served.fallback].format(ttl=rule.ttl),
                    extra={"rule": rule.name, "series": labels},
                )
        elif was:
            log.info(
                "rule %s, series %s: forecast available again",
                rule.name,
                _selector(labels),
                extra={"rule": rule.name, "series": labels},
            )


def _selector(labels: dict[str, str]) -> str:
    """A series' labels as the labelSelector that picks it: `namespace=shop,service=a`."""
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


_FALLBACK_WHY = {
    Fallback.NO_FORECAST: "no forecast yet",
    Fallback.STALE_FORECAST: "no forecast younger than {ttl}s",
    Fallback.SHORT_FORECAST: "the forecast ends before the lead window does",
    Fallback.INVALID_VALUE: "the forecast is not a rate",
    Fallback.SERIES_CAP: "the rule forecasts max_series series already",
}


def _current_state(state: RuleServing) -> str:
    c = state.current
    why = f" ({c.error})" if c.error else ""
    if c.fetched_at is None:
        return f"its current values have not been fetched yet{why}"
    return f"its current values are {int(state.now - c.fetched_at)}s old{why}"


def _unservable(state: RuleServing, matching: list[SeriesServing]) -> str:
    invalid = state.current.invalid
    bad = [invalid[k] for k in map(series_key, (s.labels for s in matching)) if k in invalid]
    if len(bad) == 1:
        now = f"its current value is {_number(bad[0])}, not a rate"
    elif bad:
        now = f"{len(bad)} of its series have a current value that is not a rate (NaN, Inf, ...)"
    else:
        now = _current_state(state)
    return (
        f"{now}, and no forecast younger than {state.rule.ttl}s exists; "
        "serving nothing rather than a guess"
    )


def _number(value: float) -> str:
    """`value` as Prometheus writes it (NaN, +Inf, -Inf, 1e+39)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)
