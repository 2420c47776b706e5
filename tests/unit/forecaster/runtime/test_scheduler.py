"""The real apscheduler drives the cycle: never two runs of a rule at once, failed cycles
retried with backoff, and a stop in progress noticed."""

from __future__ import annotations

import threading
import time

from forecaster.config import Rule
from forecaster.runtime.current import CurrentValues
from forecaster.runtime.cycle import ForecastCycle
from forecaster.runtime.scheduler import STALL_AFTER, Jobs
from forecaster.runtime.store import ForecastStore
from forecaster.sources.base import SourceError
from forecaster.sources.trace import DEMO_LABELS, TraceSource, demo_trace
from forecaster.times import SETTLE


class DemoSource(TraceSource):
    """The bundled trace, looped: what the demo serves."""

    def __init__(self) -> None:
        super().__init__(demo_trace(), DEMO_LABELS, loop=True)


class SlowSource(DemoSource):
    """The bundled trace, but every fetch takes longer than the rule's interval."""

    def __init__(self) -> None:
        super().__init__()
        self.active = 0
        self.most_at_once = 0
        self.fetches = 0
        self.lock = threading.Lock()

    def fetch_range(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        with self.lock:
            self.active += 1
            self.fetches += 1
            self.most_at_once = max(self.most_at_once, self.active)
        try:
            time.sleep(1.5)
            return super().fetch_range(*args, **kwargs)
        finally:
            with self.lock:
                self.active -= 1


class DownSource(DemoSource):
    """The bundled trace behind a switch: down, every fetch fails (and is timed)."""

    def __init__(self) -> None:
        super().__init__()
        self.down = True
        self.attempts: list[float] = []

    def fetch_range(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.attempts.append(time.monotonic())
        if self.down:
            raise SourceError("cannot reach the source")
        return super().fetch_range(*args, **kwargs)


class BlockedSource(DemoSource):
    """Every fetch blocks until released: a call hung past every timeout."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def fetch_range(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.release.wait()
        return super().fetch_range(*args, **kwargs)


def jobs_for(rule: Rule, source: TraceSource, **kwargs) -> tuple[Jobs, ForecastStore]:  # type: ignore[no-untyped-def]
    store = ForecastStore()
    current = CurrentValues([rule], source, time.time, max_age=60, interval=30)
    return Jobs(ForecastCycle([rule], source, store), current, time.time, **kwargs), store


def test_a_slow_cycle_is_never_run_twice_at_once():
    rule = Rule(name="demo", query="x{<<.LabelMatchers>>}", interval="1s", history="2d")
    source = SlowSource()
    jobs, store = jobs_for(rule, source)
    jobs.start()
    try:
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        jobs.scheduler.shutdown(wait=True)
    assert source.fetches >= 2  # it kept running on its interval...
    assert source.most_at_once == 1  # ...but never overlapped itself
    assert store.snapshot("demo") is not None


def test_the_jobs_run_at_start_and_then_on_the_grid_whenever_the_service_started():
    """A replica that starts in the SETTLE seconds after a grid point runs its cycle at
    once, and then on the grid like every other replica, not a step behind for good."""
    rule = Rule(name="demo", query="x{<<.LabelMatchers>>}", interval="1m", history="2d")
    jobs, store = jobs_for(rule, DemoSource())
    jobs.start()
    try:
        deadline = time.monotonic() + 30
        while store.snapshot("demo") is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert store.snapshot("demo") is not None  # the run at start
        for job, interval in (("cycle:demo", 60), ("current:demo", 30)):
            regular = jobs.scheduler.get_job(job)
            assert regular is not None
            at = regular.next_run_time.timestamp()
            assert (at - SETTLE) % interval == 0, (job, at)
            assert time.time() < at <= time.time() + interval
    finally:
        jobs.stop()


def test_a_failed_cycle_is_retried_with_backoff_before_its_interval():
    rule = Rule(name="demo", query="x{<<.LabelMatchers>>}", interval="10m", history="2d")
    source = DownSource()
    first = 0.5  # seconds before the first retry (RETRY_FIRST in a service)
    jobs, store = jobs_for(rule, source, retry_first=first)
    jobs.start()
    try:
        deadline = time.monotonic() + 3 * first + 5
        while len(source.attempts) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        failure = store.failure("demo")
        assert failure is not None and failure.failures >= 2
        assert "cannot reach the source" in failure.error
        assert failure.retry_at is not None and failure.retry_at > time.time()
        source.down = False  # the source is back: the next retry succeeds
        deadline = time.monotonic() + 4 * first + 5
        while store.snapshot("demo") is None and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        jobs.stop()
    gaps = [b - a for a, b in zip(source.attempts, source.attempts[1:], strict=False)]
    # Retried long before the 10-minute interval, each wait twice the one before.
    assert abs(gaps[0] - first) < 0.25, gaps
    assert abs(gaps[1] - 2 * first) < 0.25, gaps
    assert store.snapshot("demo") is not None and store.failure("demo") is None


def test_a_job_that_stops_making_progress_and_a_stopped_scheduler_are_stalls():
    rule = Rule(name="demo", query="x{<<.LabelMatchers>>}", interval="1m", history="2d")
    source = BlockedSource()
    now = [1000.0]
    jobs, _ = jobs_for(rule, source, monotonic=lambda: now[0])
    assert jobs.stalls() == []  # not started: driven by hand, nothing to watch
    jobs.start()
    try:
        time.sleep(0.5)  # the first cycle is now blocked in its fetch
        now[0] += 60 + STALL_AFTER - 1
        assert "cycle:demo" not in {s.job for s in jobs.stalls()}
        now[0] += 2
        stalls = {s.job: s.message for s in jobs.stalls()}
        assert stalls["cycle:demo"] == "cycle:demo: running without progress for 11m1s"
    finally:
        source.release.set()
        jobs.stop()
    assert [s.message for s in jobs.stalls()] == ["the scheduler has stopped"]


def test_stopping_abandons_a_long_cycle_at_its_next_series():
    """SIGTERM during a long cycle waited for it (about 50 s with 1,000 series), past the
    30 s Kubernetes gives; the cycle is now given up after the series in hand."""
    import logging

    from forecaster.sources.fake import FakeSource

    trace = demo_trace()
    steps = 4 * 1440
    source = FakeSource()
    for i in range(200):  # about 5 s of forecasting in one cycle
        source.add({"s": f"s{i}"}, trace.start, 60, trace.counts[:steps] / 60 * (1 + i / 100))
    rule = Rule(name="many", query="x{<<.LabelMatchers>>}", history="3d")
    now = float(trace.start + steps * 60 + 30)
    store = ForecastStore()
    current = CurrentValues([rule], source, lambda: now, max_age=60, interval=30)
    jobs = Jobs(ForecastCycle([rule], source, store), current, lambda: now)
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("forecaster.runtime.scheduler")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    jobs.start()
    try:
        time.sleep(1.5)  # well into the cycle's forecasts
        assert store.snapshot("many") is None
        stopped = time.monotonic()
        jobs.stop()
        while not any("abandoned" in r.getMessage() for r in records):
            assert time.monotonic() - stopped < 1.0, "the cycle ran on after stop()"
            time.sleep(0.01)
    finally:
        logger.removeHandler(handler)
    assert store.snapshot("many") is None  # given up, not finished
    assert store.failure("many") is None  # and not taken for a failure


def test_after_cycle_is_called_once_the_cycle_ended_well_or_not():
    rule = Rule(name="demo", query="x{<<.LabelMatchers>>}", interval="1m", history="2d")
    source = DownSource()
    seen: list[tuple[bool, object]] = []
    jobs, store = jobs_for(
        rule,
        source,
        after_cycle=lambda: seen.append(
            (store.snapshot("demo") is not None, store.failure("demo"))
        ),
    )
    jobs.run_cycle(rule)  # fails: the failure is recorded before the call
    source.down = False
    jobs.run_cycle(rule)  # succeeds: the snapshot is stored before the call
    assert len(seen) == 2
    assert seen[0][0] is False and seen[0][1] is not None
    assert seen[1] == (True, None)


def test_a_stop_right_after_the_start_leaves_the_scheduler_thread_without_an_error():
    """apscheduler's shutdown marks the scheduler stopped before it takes the job stores'
    lock: a one-shot start job processed in between was then not found, and the
    scheduler's thread died with JobLookupError (98 of 100 starts and stops before)."""
    errors: list[BaseException | None] = []
    previous = threading.excepthook
    threading.excepthook = lambda args: errors.append(args.exc_value)
    try:
        rule = Rule(name="demo", query="x{<<.LabelMatchers>>}", history="1d")
        for _ in range(50):
            jobs, _ = jobs_for(rule, DemoSource())
            jobs.start()
            thread = jobs.scheduler._thread  # type: ignore[attr-defined]
            jobs.stop()
            thread.join(5)
            assert not thread.is_alive()
    finally:
        threading.excepthook = previous
    assert errors == []
