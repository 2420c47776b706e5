"""What each series of a rule serves now: its current value, its forecast and the
served-value policy applied to both. The API and the telemetry read the same view."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from forecaster.config import Rule
from forecaster.forecast import SeriesForecast
from forecaster.policy import Fallback, Served, ServingPolicy
from forecaster.runtime.current import CurrentValues, RuleCurrent
from forecaster.runtime.store import CycleFailure, ForecastStore
from forecaster.schedules import ActiveFloor
from forecaster.selector import EVERYTHING, LabelSelector, Op
from forecaster.sources.base import SeriesKey


@dataclass(frozen=True)
class SeriesServing:
    """One series now: `served` is None when neither a fresh current value nor a fresh
    forecast exists (the API then answers an error, never 0); `fallback` says why no
    forecast is served from (None: one is); `floors` are the rule's schedules and events
    active for the series, which `served` is at least."""

    labels: dict[str, str]
    actual: float | None
    forecast: SeriesForecast | None
    served: Served | None
    fallback: Fallback | None
    floors: tuple[ActiveFloor, ...] = ()


@dataclass(frozen=True)
class RuleServing:
    """Some series of a rule at one instant (all, or those a selector picked), and the
    state of the rule's current values."""

    rule: Rule
    now: float
    current: RuleCurrent
    forecasts_ready: bool
    series: list[SeriesServing]
    label_names: frozenset[str]  # every label any series of the rule carries
    known: int  # how many series the rule has in all
    failure: CycleFailure | None = None  # why the newest cycle stored nothing, if it did


@dataclass(frozen=True)
class _Index:
    """A rule's series joined once per (current values, forecasts) pair, for lookups."""

    current: RuleCurrent
    forecasts: Mapping[SeriesKey, SeriesForecast] | None
    labels: dict[SeriesKey, dict[str, str]]
    by_label: dict[tuple[str, str], list[SeriesKey]]
    names: frozenset[str]


def _index(current: RuleCurrent, forecasts: Mapping[SeriesKey, SeriesForecast] | None) -> _Index:
    labels = {**{k: f.labels for k, f in (forecasts or {}).items()}, **current.labels}
    by_label: dict[tuple[str, str], list[SeriesKey]] = {}
    for key, series_labels in labels.items():
        for pair in series_labels.items():
            by_label.setdefault(pair, []).append(key)
    names = frozenset(name for name, _ in by_label)
    return _Index(current, forecasts, labels, by_label, names)


class ServingView:
    """Joins a rule's current values and forecasts, series by series. A request costs
    the series its selector picks, not every series of the rule."""

    def __init__(
        self, store: ForecastStore, current: CurrentValues, clock: Callable[[], float]
    ) -> None:
        self.store = store
        self.current = current
        self.clock = clock
        self._indexes: dict[str, _Index] = {}
        self._policies: dict[str, ServingPolicy] = {}
        self._lock = threading.Lock()

    def _index_of(self, rule: Rule) -> _Index:
        current = self.current.get(rule.name)
        forecasts = self.store.snapshot(rule.name)
        with self._lock:
            index = self._indexes.get(rule.name)
        if index is None or index.current is not current or index.forecasts is not forecasts:
            index = _index(current, forecasts)
            with self._lock:
                self._indexes[rule.name] = index
        return index

    def policy(self, rule: Rule) -> ServingPolicy:
        """The serving policy of `rule`."""
        policy = self._policies.get(rule.name)
        if policy is None or policy.rule is not rule:
            policy = self._policies[rule.name] = ServingPolicy(rule)
        return policy

    def rule(
        self, rule: Rule, selector: LabelSelector = EVERYTHING, now: float | None = None
    ) -> RuleServing:
        """The rule's series that `selector` matches, each with what it serves at `now`."""
        now = self.clock() if now is None else now
        index = self._index_of(rule)
        current = index.current
        fresh = current.fresh(now, self.current.max_age)
        forecasts = index.forecasts or {}
        candidates: list[SeriesKey] | None = None
        for r in selector.requirements:  # narrow by the most selective equality
            if r.op is Op.EQ and r.values[0]:
                hits = index.by_label.get((r.key, r.values[0]), [])
                if candidates is None or len(hits) < len(candidates):
                    candidates = hits
        keys: Iterable[SeriesKey] = index.labels if candidates is None else candidates
        policy = self.policy(rule)
        refused = self.store.refused(rule.name)
        series = []
        for key in keys:
            series_labels = index.labels[key]
            if not selector.matches(series_labels):
                continue
            actual = current.values.get(key) if fresh else None
            forecast = forecasts.get(key)
            decided = policy.decide(series_labels, actual, forecast, now, key in refused)
            series.append(
                SeriesServing(
                    series_labels,
                    actual,
                    forecast,
                    decided.served,
                    decided.fallback,
                    decided.floors,
                )
            )
        return RuleServing(
            rule,
            now,
            current,
            index.forecasts is not None,
            series,
            index.names,
            len(index.labels),
            self.store.failure(rule.name),
        )
