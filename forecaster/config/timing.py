"""How a rule's times fit together, as pure functions of seconds: the derived defaults
(lead, horizon), how long a forecast stays servable, which measured leads a rule can
serve, and the cross-checks that refuse times that cannot work together.

A forecast made from data up to grid point `origin` covers the steps labelled
`origin + step .. origin + horizon`. Serving at t needs the steps up to t + lead + step,
so a forecast is servable until it is `horizon - lead - step` old (`max_ttl`). A new
forecast arrives every `refresh` (the interval in whole steps) once its data settled.
"""

from __future__ import annotations

import math

from forecaster.times import SETTLE, format_duration, grid_ceil

DEFAULT_HORIZON = 600
"""Seconds a rule forecasts ahead unless its times need longer (see `default_horizon`)."""
DEFAULT_LEAD = 180
"""Seconds a new pod is assumed to take to become Ready, before any is measured."""


MAX_HISTORY_STEPS = 50_000
"""Steps of history a rule may keep per series (4 bytes each in memory, 16 while fetched):
35 days at a 1-minute step, a year at 10 minutes."""


def default_lead(step: int) -> int:
    """DEFAULT_LEAD rounded up to whole steps."""
    return grid_ceil(DEFAULT_LEAD, step)


def refresh(interval: int, step: int) -> int:
    """Seconds between forecasts built on newer data: the interval, rounded up to whole
    steps (a cycle finds no new point before the next step ends)."""
    return grid_ceil(interval, step)


def min_ttl(interval: int, step: int) -> int:
    """The shortest TTL that survives one late or failed cycle."""
    return 2 * refresh(interval, step) + SETTLE


def default_horizon(step: int, lead: int, interval: int) -> int:
    """DEFAULT_HORIZON, or the shortest multiple of `step` whose forecasts stay fresh
    through two late or failed cycles in a row, whichever is longer."""
    need = 3 * refresh(interval, step) + SETTLE
    return max(DEFAULT_HORIZON, grid_ceil(lead + step + need, step))


def max_ttl(horizon: int, lead: int, step: int) -> int:
    """The oldest a forecast can be and still cover every step up to t + lead + step."""
    return horizon - lead - step


def covered_lead(horizon: int, step: int, interval: int) -> int:
    """The longest lead whose window the forecasts still cover while fresh (min_ttl)."""
    return horizon - step - min_ttl(interval, step)


def lead_bounds(
    step: int, lead: int, horizon: int, interval: int, lead_min: int | None, lead_max: int | None
) -> tuple[int, int]:
    """The least and most lead a measurement of the workload's pods may set: by default
    one step, and the longest lead the horizon covers with forecasts fresh through a late
    cycle (at least the configured lead)."""
    lo = step if lead_min is None else lead_min
    if lead_max is not None:
        return lo, lead_max
    covered = covered_lead(horizon, step, interval)
    return lo, max(lead, covered - covered % step)


def bounded_lead(measured: float, step: int, bounds: tuple[int, int]) -> int:
    """A measured start-up time as a lead: rounded up to whole steps, within `bounds`."""
    lo, hi = bounds
    return int(min(max(grid_ceil(math.ceil(measured), step), lo), hi))


def check(
    *,
    step: int,
    interval: int,
    phase: int,
    history: int,
    horizon: int,
    lead: int,
    forecast_ttl: int | None,
    drop_after: int,
    lead_min: int | None,
    lead_max: int | None,
) -> None:
    """Raise ValueError, its message starting with the key to change, unless the times
    can work together."""
    if step <= 0:
        raise ValueError("step: expected a positive duration")
    if interval <= 0:
        raise ValueError("interval: expected a positive duration")
    if not 0 <= phase < step:
        raise ValueError(
            f"phase: expected a duration from 0 up to the step ({format_duration(step)})"
            f", got {format_duration(phase)}"
        )
    for key, value in (("history", history), ("horizon", horizon), ("lead", lead)):
        if value % step:
            raise ValueError(
                f"{key}: expected a multiple of step ({format_duration(step)}), "
                f"got {format_duration(value)}"
            )
    if history < 10 * step:
        raise ValueError("history: expected at least 10 steps of history")
    if history // step > MAX_HISTORY_STEPS:
        longest = format_duration(MAX_HISTORY_STEPS * step)
        raise ValueError(
            f"history: at most {MAX_HISTORY_STEPS:,} steps ({longest} at a "
            f"{format_duration(step)} step), since every series keeps each step in memory; "
            f"got {format_duration(history)} ({history // step:,} steps)"
        )
    if lead + step > horizon:
        raise ValueError(
            "horizon: must cover lead + one step "
            f"({format_duration(lead + step)}), got {format_duration(horizon)}"
        )
    oldest = max_ttl(horizon, lead, step)
    if forecast_ttl is not None and forecast_ttl > oldest:
        raise ValueError(
            f"forecast_ttl: at most horizon - lead - step ({format_duration(oldest)}), "
            "or an old forecast would not cover the lead time"
        )
    every = refresh(interval, step)
    if drop_after < every:
        raise ValueError(
            f"drop_after: expected at least one refresh ({format_duration(every)}), "
            f"got {format_duration(drop_after)}"
        )
    lo, hi = lead_bounds(step, lead, horizon, interval, lead_min, lead_max)
    if lo > hi:
        raise ValueError(
            f"lead_min: {format_duration(lo)} is above lead_max ({format_duration(hi)})"
        )
    need = min_ttl(interval, step)
    covered = covered_lead(horizon, step, interval)
    if lead_max is not None and lead_max > covered:
        longer = grid_ceil(lead_max + step + need, step)
        raise ValueError(
            f"lead_max: a {format_duration(horizon)} horizon covers leads up to "
            f"{format_duration(max(0, covered))} with forecasts fresh for "
            f"{format_duration(need)}; make horizon at least "
            f"{format_duration(longer)} (or leave it out: it is then derived)"
        )
    ttl = oldest if forecast_ttl is None else forecast_ttl
    if ttl < need:
        why = (
            f"it must stay fresh until the cycle after next ({format_duration(need)}: two "
            f"refreshes of {format_duration(every)} plus the {SETTLE}s a sample "
            "settles), or a slow or failed cycle drops every series to reactive scaling"
        )
        if forecast_ttl is not None:
            raise ValueError(f"forecast_ttl: {format_duration(forecast_ttl)} is too short: {why}")
        longer = lead + step + grid_ceil(need, step)
        raise ValueError(
            f"horizon: with lead {format_duration(lead)} and step "
            f"{format_duration(step)}, a {format_duration(horizon)} forecast is "
            f"fresh for {format_duration(ttl)} (horizon - lead - step); {why}. "
            f"Make horizon at least {format_duration(longer)}, or lead or interval shorter"
        )
