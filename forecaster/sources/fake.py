"""A Source over series held in memory, for tests, benchmarks and examples: it answers
as Prometheus would (a range on the rule's grid, an instant value, a selector applied)
and can be made to fail, to be slow, or to hang, the way a real source does."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from forecaster.config import Rule
from forecaster.policy import as_rates
from forecaster.selector import EVERYTHING, LabelSelector
from forecaster.sources.base import InstantSample, RangeSeries, SeriesKey, SourceError, series_key


@dataclass(frozen=True)
class _Series:
    labels: dict[str, str]
    start: int  # the grid point of rates[0]
    step: int
    rates: np.ndarray  # float64; NaN where nothing was recorded


class FakeSource:
    """Series added with `add` (rates on a grid from `start`, one per `step`), answered
    for any rule whose query they belong to. `set_current` overrides what an instant query
    finds for a series (by labels), whatever the value, as Prometheus would return it;
    otherwise it is the series' rate at the rule's grid point at or before the query's
    time, if one was recorded. While `down` holds a message, every fetch
    raises SourceError with it; each fetch first waits `delay` seconds and, when `gate`
    is set to an Event, until that Event is set. `calls` counts fetches by kind
    ("range", "current")."""

    def __init__(self, name: str = "in-memory series") -> None:
        self.name = name
        self._current: dict[SeriesKey, tuple[dict[str, str], float]] = {}
        self.down: str | None = None
        self.delay = 0.0
        self.gate: threading.Event | None = None
        self.calls: Counter[str] = Counter()
        self._series: dict[SeriesKey, _Series] = {}
        self._lock = threading.Lock()

    def add(self, labels: Mapping[str, str], start: int, step: int, rates: np.ndarray) -> None:
        """Hold (or replace) a series: `rates[i]` is its rate at grid point start + i * step."""
        series = _Series(dict(labels), start, step, np.asarray(rates, dtype=np.float64))
        with self._lock:
            self._series[series_key(labels)] = series

    def set_current(self, labels: Mapping[str, str], value: float | None) -> None:
        """What an instant query answers for the series with these labels (None: what
        its recorded rates say again)."""
        with self._lock:
            if value is None:
                self._current.pop(series_key(labels), None)
            else:
                self._current[series_key(labels)] = (dict(labels), value)

    def describe(self) -> str:
        return self.name

    def _answer(self, kind: str) -> None:
        """Count a fetch, take the time it takes, or fail it."""
        with self._lock:
            self.calls[kind] += 1
        if self.delay:
            time.sleep(self.delay)
        if self.gate is not None:
            self.gate.wait()
        if self.down is not None:
            raise SourceError(self.down)

    def fetch_range(
        self, rule: Rule, start: int, end: int, selector: LabelSelector = EVERYTHING
    ) -> list[RangeSeries]:
        self._answer("range")
        with self._lock:
            held = list(self._series.values())
        out = []
        for s in held:
            if not selector.matches(s.labels):
                continue
            ts = s.start + s.step * np.arange(len(s.rates), dtype=np.int64)
            keep = (ts >= start) & (ts <= end) & ((ts - rule.phase) % rule.step == 0)
            values = as_rates(s.rates[keep])
            rates = ~np.isnan(values)
            if rates.any():
                out.append(RangeSeries(s.labels, ts[keep][rates], values[rates]))
        return out

    def fetch_current(self, rule: Rule, selector: LabelSelector, at: float) -> list[InstantSample]:
        self._answer("current")
        point = rule.grid_floor(at)
        with self._lock:
            found = dict(self._current)
            held = list(self._series.values())
        for s in held:
            key = series_key(s.labels)
            i = (point - s.start) // s.step
            if key in found or (point - s.start) % s.step or not 0 <= i < len(s.rates):
                continue
            if not np.isnan(s.rates[i]):  # else nothing was recorded then
                found[key] = (s.labels, float(s.rates[i]))
        return [
            InstantSample(labels, v) for labels, v in found.values() if selector.matches(labels)
        ]
