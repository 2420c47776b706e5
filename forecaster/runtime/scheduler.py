"""Runs every rule's forecast cycle on its interval with apscheduler, never two at once."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from apscheduler.schedulers.background import BackgroundScheduler

from forecaster.config import Rule
from forecaster.runtime.cycle import ForecastCycle

log = logging.getLogger(__name__)

Clock = Callable[[], float]


def _run_logged(cycle: ForecastCycle, rule: Rule, clock: Clock) -> None:
    try:
        cycle.run(rule, clock())
    except Exception as err:  # a failed cycle must not stop the schedule
        log.error("rule %s: cycle failed: %s", rule.name, err)


def start_scheduler(cycle: ForecastCycle, clock: Clock) -> BackgroundScheduler:
    """Start a background scheduler with one job per rule, the first run immediately."""
    scheduler = BackgroundScheduler(
        timezone=UTC,
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
    )
    for rule in cycle.rules.values():
        scheduler.add_job(
            _run_logged,
            "interval",
            seconds=rule.interval,
            args=[cycle, rule, clock],
            id=f"cycle:{rule.name}",
            next_run_time=datetime.now(UTC),
        )
    scheduler.start()
    return scheduler
