"""The real apscheduler drives the cycle: never two runs of a rule at once."""

from __future__ import annotations

import threading
import time

from forecaster.config import Rule
from forecaster.runtime.current import CurrentValues
from forecaster.runtime.cycle import ForecastCycle
from forecaster.runtime.scheduler import start_scheduler
from forecaster.runtime.store import ForecastStore
from forecaster.sources.trace import DEMO_LABELS, TraceSource, demo_trace


class SlowSource(TraceSource):
    """The bundled trace, but every fetch takes longer than the rule's interval."""

    def __init__(self) -> None:
        super().__init__(demo_trace(), DEMO_LABELS, loop=True)
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


def test_a_slow_cycle_is_never_run_twice_at_once():
    rule = Rule(name="demo", query="x{<<.LabelMatchers>>}", interval="1s", history="2d")
    source = SlowSource()
    store = ForecastStore()
    current = CurrentValues([rule], source, time.time, max_age=60, interval=30)
    scheduler = start_scheduler(ForecastCycle([rule], source, store), current, time.time)
    try:
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        scheduler.shutdown(wait=True)
    assert source.fetches >= 2  # it kept running on its interval...
    assert source.most_at_once == 1  # ...but never overlapped itself
    assert store.snapshot("demo") is not None
