"""The serving policy: what a series is served, decided in one place.

DESIGN.md, "The external metric a rule serves": at time t a series is served

    max( actual(t), max of the upper forecast over the steps labelled (t, t + lead + step] )

`lead` is the series' own where its workload's pods were measured, else the rule's; a
forecast older than the rule's TTL is not served from (the actual alone is), and with no
actual (the source down) a fresh forecast is floored at the last actual it was built
from. A value that is not a rate is never served. The rule's schedules and events then
raise it to their floors.

Everything that computes or judges a served value calls this module: the serving view
and the API behind it, the cycle's realised outcomes, the telemetry, the engine's
calibration and adaptive level, the backtest and its baselines. What counts as a rate is
decided here too, for every reader of samples.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

import numpy as np

from forecaster.forecast import SeriesForecast

if TYPE_CHECKING:
    from forecaster.config import Rule
    from forecaster.schedules import ActiveFloor

MAX_RATE = 1e12
"""Larger values are not request rates (a float32 overflow, a broken exporter)."""


def is_rate(value: float) -> bool:
    """Whether a number can be read, forecast and served as a request rate."""
    return math.isfinite(value) and 0.0 <= value <= MAX_RATE


def as_rates(values: np.ndarray) -> np.ndarray:
    """`values` as float64 with every one that is not a rate (NaN, infinite, negative,
    absurd) made a hole (NaN)."""
    values = np.asarray(values, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.where((values >= 0.0) & (values <= MAX_RATE), values, np.nan)


def last_rate(values: np.ndarray) -> float | None:
    """The newest rate in `values`, if any."""
    seen = np.flatnonzero(~np.isnan(as_rates(values)))
    return float(values[seen[-1]]) if seen.size else None


def lead_window(lead: int, step: int) -> int:
    """How many steps the served value covers: those labelled (t, t + lead + step].

    A pod added at t serves from t + lead, so the step that starts then, labelled
    t + lead + step by Prometheus' end-of-window convention, is the last one covered.
    """
    return lead // step + 1


def window_peak(paths: np.ndarray, window: int) -> np.ndarray:
    """The largest finite forecast over the first `window` steps of each path (last axis);
    -inf where a path has none."""
    head = paths[..., :window]
    return np.max(np.where(np.isfinite(head), head, -np.inf), axis=-1)


def serve(actual: np.ndarray | float, peak: np.ndarray | float) -> np.ndarray:
    """The served value from the actual and the forecast's peak over the lead window:
    their maximum. A missing actual (NaN) leaves the forecast and a missing forecast
    (NaN or -inf) the actual; NaN only where both are missing."""
    return np.fmax(actual, peak)


def served_from(actual: float | None, last_actual: float, peak: float) -> float:
    """What a fresh forecast whose peak over the lead window is `peak` serves: at least
    the actual or, with none (the source down), the last actual it was built from."""
    return float(serve(last_actual if actual is None else actual, peak))


class Fallback(StrEnum):
    """Why a series is served reactively (its actual alone), or not at all."""

    NO_FORECAST = "no_forecast"  # none made yet: first cycle pending, or the fit failed
    STALE_FORECAST = "stale_forecast"  # the newest data behind it is older than the TTL
    SHORT_FORECAST = "short_forecast"  # it ends before the lead window does
    INVALID_VALUE = "invalid_value"  # the value arrived at is not a rate (NaN, negative, inf)
    SERIES_CAP = "series_cap"  # the rule forecasts max_series series already


@dataclass(frozen=True)
class Served:
    """A served value and how it was arrived at: `fallback` is None when a fresh
    forecast was used, else why the actual is served alone; `schedule` names the
    schedule or event whose floor the value is, when one lifted it."""

    value: float
    fallback: Fallback | None = None
    schedule: str | None = None

    @property
    def predictive(self) -> bool:
        return self.fallback is None


@dataclass(frozen=True)
class Decision:
    """What one series is served now: `served` is None when nothing can be (the API then
    answers an error, never 0), `fallback` why no forecast is served from (None: one is),
    `floors` the rule's schedules and events active for it, which `served` is at least."""

    served: Served | None
    fallback: Fallback | None
    floors: tuple[ActiveFloor, ...] = ()


def with_floors(served: Served, floors: Sequence[ActiveFloor]) -> Served:
    """`served` raised to the largest active floor; the first definition wins a tie."""
    top = max(floors, key=lambda f: f.floor, default=None)
    if top is None or not top.floor > served.value:
        return served
    return Served(top.floor, served.fallback, top.name)


class ServingPolicy:
    """The policy of one rule: which lead, window and TTL apply to a series' forecast,
    and what the series is served from it and its actual."""

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        # Read once: every request asks for them, once per series it serves.
        self.step, self.ttl, self.calendar = rule.step, rule.ttl, rule.calendar

    def lead(self, forecast: SeriesForecast | None) -> int:
        """The lead a series is served for: its workload's measured one, else the rule's."""
        if forecast is None or forecast.lead is None:
            return self.rule.lead
        return forecast.lead

    def window(self, forecast: SeriesForecast | None) -> int:
        """Steps of the lead window a series is served for."""
        return lead_window(self.lead(forecast), self.step)

    def window_end(self, forecast: SeriesForecast | None, now: float) -> float:
        """The label of the last step the value served at `now` covers: now + lead + step."""
        return now + self.lead(forecast) + self.step

    def window_upper(self, forecast: SeriesForecast, now: float) -> float | None:
        """The largest upper forecast over the steps labelled (now, window_end], if the
        forecast covers them all."""
        last = self.window_end(forecast, now)
        mask = (forecast.ds > now) & (forecast.ds <= last)
        if not mask.any() or forecast.ds[-1] < last:
            return None
        return float(np.max(forecast.upper[mask]))

    def at_lead(self, forecast: SeriesForecast, now: float) -> tuple[float, float] | None:
        """(point, upper) of the step that starts at now + lead, if covered."""
        return forecast.at(self.window_end(forecast, now))

    def fresh(self, forecast: SeriesForecast, now: float) -> bool:
        """Whether a forecast may still be served from at `now` (within the TTL)."""
        return forecast.age(now) <= self.ttl

    def fallback(self, forecast: SeriesForecast | None, now: float) -> Fallback | None:
        """Why `forecast` cannot be served from at `now`; None if it can."""
        if forecast is None:
            return Fallback.NO_FORECAST
        if not self.fresh(forecast, now):
            return Fallback.STALE_FORECAST
        if self.window_upper(forecast, now) is None:
            return Fallback.SHORT_FORECAST
        return None

    def value(
        self, actual: float | None, forecast: SeriesForecast | None, now: float
    ) -> Served | None:
        """The value before the schedules' floors: from a fresh forecast (`served_from`),
        else the actual alone; None when neither can be had."""
        if forecast is not None and self.fresh(forecast, now):
            upper = self.window_upper(forecast, now)
            if upper is not None:
                return Served(served_from(actual, forecast.last_actual, upper))
        if actual is not None:
            return Served(actual, self.fallback(forecast, now))
        return None

    def decide(
        self,
        labels: Mapping[str, str],
        actual: float | None,
        forecast: SeriesForecast | None,
        now: float,
        capped: bool = False,
    ) -> Decision:
        """Everything the policy says of one series at `now`; `capped`: the rule refused
        to forecast it (beyond max_series)."""
        served = self.value(actual, forecast, now)
        if served is None:
            return Decision(None, self.fallback(forecast, now))
        if forecast is None and capped:
            served = Served(served.value, Fallback.SERIES_CAP)
        elif not is_rate(served.value):  # a forecast gone absurd; the others still serve
            return Decision(None, Fallback.INVALID_VALUE)
        if self.calendar is None:
            return Decision(served, served.fallback)
        floors = self.calendar.floors(labels, now, self.lead(forecast), served.value)
        return Decision(with_floors(served, floors), served.fallback, floors)
