"""The background work of a service: every rule's forecast cycle and current-value refresh
on apscheduler, a failed cycle retried with backoff, and a watch on their progress.

Jobs run on their interval's wall-clock grid (SETTLE seconds after each multiple), so that
replicas query Prometheus about the same times; besides, each runs once at start, off the
grid. A rule's cycle never runs twice at once, nor does its refresh.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from forecaster.config import Rule
from forecaster.runtime.current import CurrentValues
from forecaster.times import SETTLE, format_duration, grid_floor, rfc3339

if TYPE_CHECKING:  # the models are not imported where no cycle runs (the serving process)
    from forecaster.runtime.cycle import ForecastCycle

log = logging.getLogger(__name__)

Clock = Callable[[], float]

RETRY_FIRST = 5.0
"""Seconds before the first retry of a failed cycle; each further failure doubles it, up
to the rule's interval (when the regular run comes first anyway)."""

STALL_AFTER = 600.0
"""A job that has neither finished nor reported progress for its interval plus this long
has stopped making progress (a deadlock, a hung call past every timeout): /livez fails."""


def on_grid(seconds: int, clock: Clock) -> IntervalTrigger:
    """Every `seconds`, SETTLE seconds after each multiple of `seconds` in Unix time (the
    first grid point at or after now)."""
    start = grid_floor(clock() - SETTLE, seconds) + SETTLE
    return IntervalTrigger(seconds=seconds, start_date=datetime.fromtimestamp(start, UTC))


class Abandoned(BaseException):
    """Raised inside a cycle at its next progress report once the jobs are stopping: the
    work in flight is given up, not finished (a BaseException, like CancelledError, so
    that no handler of failures takes it for one)."""


@dataclass
class _Progress:
    interval: float
    beat: float  # monotonic time of the last start, progress report or finish
    running: bool = False


@dataclass(frozen=True)
class Stall:
    """A background job that stopped making progress."""

    job: str
    message: str


class Jobs:
    """Runs each rule's cycle and current-value refresh in the background (either may be
    None: its jobs run elsewhere), retries failed cycles with backoff, and tells whether
    the jobs still make progress."""

    def __init__(
        self,
        cycle: ForecastCycle | None,
        current: CurrentValues | None,
        clock: Clock,
        monotonic: Clock = time.monotonic,
        retry_first: float = RETRY_FIRST,
        after_cycle: Callable[[], None] = lambda: None,
    ) -> None:
        self.cycle = cycle
        self.after_cycle = after_cycle  # called after each cycle, whether it succeeded or not
        self.retry_first = retry_first
        self.current = current
        self.clock = clock
        self.monotonic = monotonic
        self.scheduler = BackgroundScheduler(
            timezone=UTC,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        self.rules = list((cycle.rules if cycle else current.rules if current else {}).values())
        self._locks = {rule.name: threading.Lock() for rule in self.rules}
        self._started = False
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        started = monotonic()
        self._progress: dict[str, _Progress] = {}
        for rule in self.rules:
            if cycle:
                self._progress[f"cycle:{rule.name}"] = _Progress(rule.interval, started)
            if current:
                self._progress[f"current:{rule.name}"] = _Progress(current.interval, started)

    def start(self) -> None:
        """Start the scheduler: each job runs once at once, then on its grid.

        The run at start is a job of its own: apscheduler counts an interval job's later
        runs from its first, so a first run at start would put a replica off the grid
        for good, a step behind the others whenever it started in the SETTLE seconds
        after a grid point."""
        for rule in self.rules:
            if self.cycle:
                self._add(self.run_cycle, rule, f"cycle:{rule.name}", rule.interval)
            if self.current:
                self._add(self.refresh, rule, f"current:{rule.name}", self.current.interval)
        self.scheduler.start()
        self._started = True

    def _add(self, run: Callable[[Rule], None], rule: Rule, job: str, interval: int) -> None:
        self.scheduler.add_job(run, on_grid(interval, self.clock), args=[rule], id=job)
        self.scheduler.add_job(run, "date", args=[rule], id=f"start:{job}")

    def stop(self) -> None:
        """Stop scheduling and the on-demand refreshes; a cycle that is running is
        abandoned at its next progress report (after a series' forecast), not finished."""
        self._stopping.set()
        if self.scheduler.running:
            # Jobs first, under the job stores' lock while the scheduler still runs:
            # apscheduler's shutdown marks it stopped before taking that lock, and a
            # one-shot job processed in between is then not found, killing its thread.
            self.scheduler.remove_all_jobs()
            self.scheduler.shutdown(wait=False)
        if self.current:
            self.current.close()

    def _report(self, job: str) -> None:
        """A running job's progress: noted, or Abandoned once stopping."""
        if self._stopping.is_set():
            raise Abandoned
        self._beat(job)

    def _beat(self, job: str, running: bool | None = None) -> None:
        with self._lock:
            progress = self._progress[job]
            progress.beat = self.monotonic()
            if running is not None:
                progress.running = running

    def run_cycle(self, rule: Rule) -> None:
        """One cycle of the rule, unless one is running; a failure schedules a retry."""
        assert self.cycle is not None, "this process runs no cycles"
        lock = self._locks[rule.name]
        if not lock.acquire(blocking=False):
            return
        job = f"cycle:{rule.name}"
        self._beat(job, running=True)
        before = self.cycle.store.failure(rule.name)
        try:
            self.cycle.run(rule, self.clock(), progress=lambda: self._report(job))
        except Abandoned:
            log.info(
                "rule %s: cycle abandoned, the service is stopping",
                rule.name,
                extra={"rule": rule.name},
            )
        except Exception as err:  # a failed cycle must not stop the schedule
            self._failed(rule, err, before.failures + 1 if before else 1)
        else:
            if before is not None:
                log.info(
                    "rule %s: cycle succeeded again after %d failures",
                    rule.name,
                    before.failures,
                    extra={"rule": rule.name},
                )
        finally:
            self._beat(job, running=False)
            lock.release()
            self.after_cycle()

    def soon(self, rule: Rule) -> None:
        """Run a cycle of the rule now in the background (it gained series to forecast),
        besides its regular ones."""
        if self.scheduler.running and self.cycle:
            self.scheduler.add_job(
                self.run_cycle, "date", args=[rule], id=f"soon:{rule.name}", replace_existing=True
            )

    def _failed(self, rule: Rule, err: Exception, failures: int) -> None:
        delay = min(self.retry_first * 2 ** (failures - 1), float(rule.interval))
        soonest = self.clock() + delay
        regular = self.scheduler.get_job(f"cycle:{rule.name}") if self.scheduler.running else None
        retry_at: float | None
        assert self.cycle is not None
        if regular is None or regular.next_run_time is None:
            retry_at = None  # not scheduled (stopping, or driven by hand)
        elif regular.next_run_time.timestamp() > soonest + 1:
            retry_at = soonest
            self.scheduler.add_job(
                self.run_cycle,
                "date",
                run_date=datetime.fromtimestamp(retry_at, UTC),
                args=[rule],
                id=f"retry:{rule.name}",
                replace_existing=True,
            )
        else:
            retry_at = regular.next_run_time.timestamp()  # the regular run comes first
        self.cycle.store.failed(rule.name, str(err), failures, retry_at)
        log.error(
            "rule %s: cycle failed (%d in a row): %s; next attempt %s",
            rule.name,
            failures,
            err,
            f"at {rfc3339(retry_at)}" if retry_at is not None else "not scheduled",
            extra={"rule": rule.name},
        )

    def refresh(self, rule: Rule) -> None:
        """Refresh the rule's current values (CurrentValues never runs two at once)."""
        assert self.current is not None, "this process refreshes no current values"
        job = f"current:{rule.name}"
        self._beat(job, running=True)
        try:
            self.current.refresh(rule)
        except Exception as err:  # a failed refresh must not stop the schedule
            log.error(
                "rule %s: current-value refresh failed: %s",
                rule.name,
                err,
                extra={"rule": rule.name},
            )
        finally:
            self._beat(job, running=False)

    def stalls(self) -> list[Stall]:
        """Jobs that stopped making progress, and a stopped scheduler; empty when live
        (and before `start`: a service driven by hand has no background jobs)."""
        if not self._started:
            return []
        if not self.scheduler.running:
            return [Stall("scheduler", "the scheduler has stopped")]
        now = self.monotonic()
        out = []
        with self._lock:
            progress = dict(self._progress)
        for job, p in progress.items():
            quiet = now - p.beat
            if quiet > p.interval + STALL_AFTER:
                what = "running without progress" if p.running else "not run"
                out.append(Stall(job, f"{job}: {what} for {format_duration(int(quiet))}"))
        return out
