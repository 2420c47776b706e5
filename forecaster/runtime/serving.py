"""What each series of a rule serves now: its current value, its forecast and the
served-value policy applied to both. The API and the telemetry read the same view."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from forecaster.config import Rule
from forecaster.policy import Served, served_value
from forecaster.runtime.current import CurrentValues, RuleCurrent, is_rate
from forecaster.runtime.store import ForecastStore, SeriesForecast
from forecaster.sources.base import SeriesKey


@dataclass(frozen=True)
class SeriesServing:
    """One series now: `served` is None when neither a fresh current value nor a fresh
    forecast exists (the API then answers an error, never 0)."""

    key: SeriesKey
    labels: dict[str, str]
    actual: float | None
    forecast: SeriesForecast | None
    served: Served | None


@dataclass(frozen=True)
class RuleServing:
    """Every known series of a rule at one instant, and the state of its current values."""

    rule: Rule
    now: float
    current: RuleCurrent
    current_fresh: bool
    forecasts_ready: bool
    series: list[SeriesServing]

    def label_names(self) -> set[str]:
        """Every label the rule's series carry."""
        return {name for s in self.series for name in s.labels}


class ServingView:
    """Joins a rule's current values and forecasts, series by series."""

    def __init__(
        self, store: ForecastStore, current: CurrentValues, clock: Callable[[], float]
    ) -> None:
        self.store = store
        self.current = current
        self.clock = clock

    def rule(self, rule: Rule, now: float | None = None) -> RuleServing:
        now = self.clock() if now is None else now
        current = self.current.get(rule.name)
        fresh = current.fresh(now, self.current.max_age)
        snapshot = self.store.snapshot(rule.name)
        forecasts = snapshot or {}
        labels = {**{k: f.labels for k, f in forecasts.items()}, **current.labels}
        series = []
        for key, series_labels in labels.items():
            actual = current.values.get(key) if fresh else None
            forecast = forecasts.get(key)
            served = served_value(actual, forecast, now, rule)
            if served is not None and not is_rate(served.value):
                served = None  # a forecast gone absurd is not served; the others still are
            series.append(SeriesServing(key, series_labels, actual, forecast, served))
        return RuleServing(rule, now, current, fresh, snapshot is not None, series)
