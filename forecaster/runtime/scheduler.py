"""Runs every rule's forecast cycle and current-value refresh on their intervals with
apscheduler, never two of one kind for a rule at once: the first at once, the next ones
on the wall-clock grid of the interval (SETTLE seconds after each multiple), so that
replicas query Prometheus about the same times."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from forecaster.config import Rule
from forecaster.runtime.current import CurrentValues
from forecaster.runtime.cycle import ForecastCycle
from forecaster.times import SETTLE, grid_floor

log = logging.getLogger(__name__)

Clock = Callable[[], float]


def _run_logged(cycle: ForecastCycle, rule: Rule, clock: Clock) -> None:
    try:
        cycle.run(rule, clock())
    except Exception as err:  # a failed cycle must not stop the schedule
        log.error("rule %s: cycle failed: %s", rule.name, err)


def _refresh_logged(current: CurrentValues, rule: Rule) -> None:
    try:
        current.refresh(rule)
    except Exception as err:  # a failed refresh must not stop the schedule
        log.error("rule %s: current-value refresh failed: %s", rule.name, err)


def on_grid(seconds: int, clock: Clock) -> IntervalTrigger:
    """Every `seconds`, SETTLE seconds after each multiple of `seconds` in Unix time."""
    start = grid_floor(clock(), seconds) + SETTLE
    return IntervalTrigger(seconds=seconds, start_date=datetime.fromtimestamp(start, UTC))


def start_scheduler(
    cycle: ForecastCycle, current: CurrentValues, clock: Clock
) -> BackgroundScheduler:
    """Start a background scheduler with a cycle job (every rule's `interval`) and a
    current-value refresh job (every `current.interval`) per rule; the first run at once."""
    scheduler = BackgroundScheduler(
        timezone=UTC,
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
    )
    for rule in cycle.rules.values():
        scheduler.add_job(
            _run_logged,
            on_grid(rule.interval, clock),
            args=[cycle, rule, clock],
            id=f"cycle:{rule.name}",
            next_run_time=datetime.now(UTC),
        )
        scheduler.add_job(
            _refresh_logged,
            on_grid(current.interval, clock),
            args=[current, rule],
            id=f"current:{rule.name}",
            next_run_time=datetime.now(UTC),
        )
    scheduler.start()
    return scheduler
