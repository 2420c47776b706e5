"""The served-value rule and the lead window: the one definition every caller uses.

DESIGN.md, "The external metric a rule serves": at time t a series is served

    max( actual(t), max of the upper forecast over the steps labelled (t, t + lead + step] )

The serving path applies it to one stored forecast (`served_value`); calibration, the
backtest, the baselines and the benchmarks apply it to arrays of forecasts (`serve`).
A rule's schedules and events then raise it to their floors (`with_floors`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from forecaster.config import Rule
    from forecaster.runtime.store import SeriesForecast
    from forecaster.schedules import ActiveFloor


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


def with_floors(served: Served, floors: Sequence[ActiveFloor]) -> Served:
    """`served` raised to the largest active floor; the first definition wins a tie."""
    top = max(floors, key=lambda f: f.floor, default=None)
    if top is None or not top.floor > served.value:
        return served
    return Served(top.floor, served.fallback, top.name)


def lead_window_upper(forecast: SeriesForecast, now: float, rule: Rule) -> float | None:
    """Max upper quantile over the steps labelled (now, now + lead + step], if covered
    (the series' own lead where its workload was measured)."""
    last = now + forecast.lead_for(rule.lead) + rule.step
    mask = (forecast.ds > now) & (forecast.ds <= last)
    if not mask.any() or forecast.ds[-1] < last:
        return None
    return float(np.max(forecast.upper[mask]))


def fallback_reason(forecast: SeriesForecast | None, now: float, rule: Rule) -> Fallback | None:
    """Why `forecast` cannot be served from at `now`; None if it can."""
    if forecast is None:
        return Fallback.NO_FORECAST
    if forecast.age(now) > rule.ttl:
        return Fallback.STALE_FORECAST
    if lead_window_upper(forecast, now, rule) is None:
        return Fallback.SHORT_FORECAST
    return None


def served_value(
    actual: float | None, forecast: SeriesForecast | None, now: float, rule: Rule
) -> Served | None:
    """The rule applied to one series: the actual alone when the forecast is missing or
    older than the TTL; None when neither can be had (the caller answers an error, not 0).

    With no current actual (source down) a fresh forecast is floored at the last actual
    it was built from.
    """
    if forecast is not None and forecast.age(now) <= rule.ttl:
        upper = lead_window_upper(forecast, now, rule)
        if upper is not None:
            floor = actual if actual is not None else forecast.last_actual
            return Served(float(serve(floor, upper)))
    if actual is not None:
        return Served(actual, fallback_reason(forecast, now, rule))
    return None
