"""The value served for one series at time t (DESIGN.md, "The external metric a rule serves")."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from forecaster.config import Rule
from forecaster.store import SeriesForecast


@dataclass(frozen=True)
class Served:
    """A served value and how it was arrived at."""

    value: float
    predictive: bool  # False: reactive fallback (no forecast, or one older than the TTL)
    forecast_upper: float | None  # max upper quantile over the lead window, if used


def lead_window_upper(forecast: SeriesForecast, now: float, rule: Rule) -> float | None:
    """Max upper quantile over the steps labelled in (now, now + lead + step], if covered."""
    mask = (forecast.ds > now) & (forecast.ds <= now + rule.lead + rule.step)
    if not mask.any() or forecast.ds[-1] < now + rule.lead + rule.step:
        return None
    return float(np.max(forecast.upper[mask]))


def served_value(
    actual: float | None, forecast: SeriesForecast | None, now: float, rule: Rule
) -> Served | None:
    """max(actual, forecast upper over the lead window); the actual alone when the forecast
    is missing or stale; None when neither can be had (the caller answers an error, not 0).

    With no current actual (source down) a fresh forecast is floored at the last actual
    it was built from.
    """
    if forecast is not None and forecast.age(now) <= rule.ttl:
        upper = lead_window_upper(forecast, now, rule)
        if upper is not None:
            floor = actual if actual is not None else forecast.last_actual
            return Served(max(upper, floor), True, upper)
    if actual is not None:
        return Served(actual, False, None)
    return None
