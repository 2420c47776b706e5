"""Each rule's current values, refreshed in the background so that readers never wait on
the source: one instant query per rule on an interval, and on demand when a reader finds
a rule it has nothing for yet."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from forecaster.config import Rule
from forecaster.policy import is_rate
from forecaster.selector import EVERYTHING
from forecaster.sources.base import SeriesKey, Source, SourceError, series_key
from forecaster.times import SETTLE, grid_floor, rfc3339

log = logging.getLogger(__name__)

ON_DEMAND_MIN_INTERVAL = 2.0
"""Readers cannot make a rule's instant query run more often than this (seconds)."""


@dataclass(frozen=True)
class RuleCurrent:
    """A rule's newest current values: series -> value, as of `fetched_at`."""

    values: Mapping[SeriesKey, float] = field(default_factory=dict)
    labels: Mapping[SeriesKey, dict[str, str]] = field(default_factory=dict)
    fetched_at: float | None = None  # Unix time of the last successful refresh
    error: str | None = None  # why the last attempt failed, if it did
    error_at: float | None = None
    # Series whose value is there but not a rate (NaN, Inf, negative, absurd): known, with
    # no current value, so that they are answered 503 saying so rather than 404.
    invalid: Mapping[SeriesKey, float] = field(default_factory=dict)

    def fresh(self, now: float, max_age: float) -> bool:
        """Whether the values may be served as current at `now`."""
        return self.fetched_at is not None and now - self.fetched_at <= max_age


class CurrentValues:
    """Thread-safe store of every rule's current values and the job that refreshes them."""

    def __init__(
        self,
        rules: list[Rule],
        source: Source,
        clock: Callable[[], float],
        max_age: float,
        interval: int,
    ) -> None:
        self.rules = {r.name: r for r in rules}
        self.source = source
        self.clock = clock
        self.max_age = max_age
        self.interval = interval
        self._lock = threading.Lock()
        self._rules: dict[str, RuleCurrent] = {name: RuleCurrent() for name in self.rules}
        self._running: set[str] = set()
        self._last_demand: dict[str, float] = {}
        self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="current")

    def get(self, rule: str) -> RuleCurrent:
        """The rule's newest values (empty before the first successful refresh)."""
        with self._lock:
            return self._rules[rule]

    def refresh(self, rule: Rule) -> None:
        """Run the rule's instant query now (blocking) and store what it yields."""
        with self._lock:
            if rule.name in self._running:
                return
            self._running.add(rule.name)
        try:
            self._refresh(rule)
        finally:
            with self._lock:
                self._running.discard(rule.name)

    def evaluation_time(self, now: float) -> int:
        """The time an instant query made at `now` asks about: the newest multiple of the
        refresh interval at least SETTLE old, the same for every replica."""
        return grid_floor(now - SETTLE, self.interval)

    def _refresh(self, rule: Rule) -> None:
        at = self.evaluation_time(self.clock())
        previous = self.get(rule.name)
        try:
            samples = self.source.fetch_current(rule, EVERYTHING, at)
        except SourceError as err:
            with self._lock:
                self._rules[rule.name] = RuleCurrent(
                    previous.values,
                    previous.labels,
                    previous.fetched_at,
                    str(err),
                    at,
                    previous.invalid,
                )
            if previous.error is None:
                if previous.fetched_at is None:
                    kept = "none has been fetched yet, so only fresh forecasts are served"
                else:
                    kept = (
                        f"serving those fetched at {rfc3339(previous.fetched_at)} until they "
                        f"are {int(self.max_age)}s old"
                    )
                log.warning(
                    "rule %s: current values unavailable (%s); %s",
                    rule.name,
                    err,
                    kept,
                    extra={"rule": rule.name},
                )
            return
        values: dict[SeriesKey, float] = {}
        labels: dict[SeriesKey, dict[str, str]] = {}
        invalid: dict[SeriesKey, float] = {}
        for s in samples:
            key = series_key(s.labels)
            labels[key] = s.labels
            if is_rate(s.value):
                values[key] = s.value
            else:  # NaN, Inf, negative or absurd: the series has no current value
                invalid[key] = s.value
        with self._lock:
            self._rules[rule.name] = RuleCurrent(values, labels, at, invalid=invalid)
        if previous.error is not None:
            log.info(
                "rule %s: current values available again (%d series)",
                rule.name,
                len(values),
                extra={"rule": rule.name},
            )

    def refresh_soon(self, rule: str) -> None:
        """Ask for a refresh in the background, at most every ON_DEMAND_MIN_INTERVAL s."""
        now = time.monotonic()
        with self._lock:
            if rule in self._running or now - self._last_demand.get(rule, -1e9) < (
                ON_DEMAND_MIN_INTERVAL
            ):
                return
            self._last_demand[rule] = now
        self._executor.submit(self.refresh, self.rules[rule])

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
