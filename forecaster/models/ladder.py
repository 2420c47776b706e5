"""The cold-start ladder: which models a series may use, by how much history it has.

Every threshold of the ladder is here. Rungs, from the youngest series up:

1. fewer than MIN_POINTS observations: the last value (naive);
2. under DAILY_MIN_HISTORY: statsforecast's short-history models, batched
   (`forecaster.models.short_history`: ETS, or naive below MIN_POINTS);
3. from DAILY_MIN_HISTORY: level models, and daily seasonal ones;
4. from WEEKLY_MIN_HISTORY: weekly seasonal ones too.

A cycle that can be measured (two periods of history) must also be present: its
autocorrelation at least SEASONAL_MIN_ACF. Among the candidates, a rolling-origin backtest
chooses (`forecaster.models.selection`).
"""

from __future__ import annotations

from forecaster.models.base import Model
from forecaster.models.holt_winters import HoltWinters
from forecaster.models.level import ExponentialLevel, Naive
from forecaster.models.profile import ProfileAdditive, ProfileMultiplicative, SeasonalNaive
from forecaster.times import DAY, WEEK

MIN_POINTS = 30
"""Fewer observations than this: the last value is the forecast."""
DAILY_MIN_HISTORY = DAY + 3600
"""History (seconds) from which a daily profile can be learnt and outages masked; younger
series get the short-history models."""
WEEKLY_MIN_HISTORY = 2 * WEEK
"""History (seconds) from which a weekly profile can be learnt (two samples per phase)."""
SEASONAL_MIN_ACF = 0.3
"""Autocorrelation (of hourly means) at a period's lag needed to call the cycle present."""
PERIODS = ((DAY, DAILY_MIN_HISTORY), (WEEK, WEEKLY_MIN_HISTORY))
"""The cycles looked for, each with the history it needs."""


def is_young(observed_seconds: float) -> bool:
    """Whether a series observed for this long gets the short-history models."""
    return observed_seconds < DAILY_MIN_HISTORY


def can_mask_outages(observed_seconds: float) -> bool:
    """Whether there is enough history for a daily profile to tell an outage from a night."""
    return observed_seconds >= DAILY_MIN_HISTORY


def level_models() -> list[Model]:
    """The rungs every series with MIN_POINTS observations gets."""
    return [Naive(), ExponentialLevel(alpha=0.1), ExponentialLevel(alpha=0.3)]


def seasonal_models(period: int) -> list[Model]:
    """The candidates for one cycle of `period` seconds."""
    out: list[Model] = [SeasonalNaive(period=period)]
    out += [ProfileAdditive(period=period, alpha=a) for a in (0.05, 0.2, 0.6, 1.0)]
    out += [ProfileMultiplicative(period=period, alpha=a) for a in (0.05, 0.2)]
    if period == DAY:
        out.append(HoltWinters(period=period, alpha=0.1, gamma=0.05))
    return out


def layered_models(period: int, layers: tuple[int, ...]) -> list[Model]:
    """The profile candidates of a daily or weekly cycle with shorter ones on top."""
    out: list[Model] = [
        ProfileAdditive(period=period, alpha=a, layers=layers) for a in (0.05, 0.2, 0.6, 1.0)
    ]
    out += [ProfileMultiplicative(period=period, alpha=a, layers=layers) for a in (0.05, 0.2)]
    return out


def candidates_for(
    observed_seconds: float,
    strengths: dict[int, float],
    points: int = MIN_POINTS,
    sub_daily: tuple[int, ...] = (),
) -> list[Model]:
    """The models a series may be forecast with: `observed_seconds` of history holding
    `points` observations, with the seasonal strength measured at each period and the
    sub-daily cycles found in it (`seasonality.sub_daily_periods`).

    Sub-daily cycles are layered on each daily or weekly cycle they divide; a series
    with neither gets them as cycles of their own."""
    if points < MIN_POINTS:
        return [Naive()]
    out = level_models()
    bases = []
    for period, need in PERIODS:
        if observed_seconds < need:
            continue
        measurable = observed_seconds >= 2 * period
        if measurable and strengths.get(period, 0.0) < SEASONAL_MIN_ACF:
            continue
        bases.append(period)
        out += seasonal_models(period)
    for period in bases:
        layers = tuple(c for c in sub_daily if period % c == 0)
        if layers:
            out += layered_models(period, layers)
    if not bases:
        for cycle in sub_daily:
            out += seasonal_models(cycle)
    return out
