"""A history recorded once from a source, and served back without ever returning the
future: what a backtest replays."""

from __future__ import annotations

import numpy as np

from forecaster.config import Rule
from forecaster.models.ladder import MIN_POINTS
from forecaster.selector import EVERYTHING, LabelSelector
from forecaster.sources.base import InstantSample, RangeSeries, Source
from forecaster.times import rfc3339


class BacktestError(ValueError):
    """A backtest that cannot run: the message says what to change."""


class RangeError(BacktestError):
    """The range asked for cannot be replayed from what the source holds."""


class RecordedSource:
    """One series, recorded once, served back without ever returning the future."""

    def __init__(self, series: RangeSeries) -> None:
        self.series = series

    def describe(self) -> str:
        return f"recorded series {self.series.labels}"

    def fetch_range(
        self, rule: Rule, start: int, end: int, selector: LabelSelector = EVERYTHING
    ) -> list[RangeSeries]:
        if not selector.matches(self.series.labels):
            return []
        ts = self.series.timestamps
        lo, hi = np.searchsorted(ts, start, "left"), np.searchsorted(ts, end, "right")
        if hi <= lo:
            return []
        return [RangeSeries(self.series.labels, ts[lo:hi], self.series.values[lo:hi])]

    def fetch_current(self, rule: Rule, selector: LabelSelector, at: float) -> list[InstantSample]:
        now = rule.grid_floor(at)
        found = self.fetch_range(rule, now, now, selector)
        if not found:
            return []
        return [InstantSample(found[0].labels, float(found[0].values[-1]))]


def record(
    source: Source, rule: Rule, selector: LabelSelector, start: int, end: int
) -> RecordedSource:
    """Fetch the one series the selector picks, from `start - history` to `end`."""
    if end <= start:
        raise RangeError(
            f"empty range: its start ({rfc3339(start)}) must be before its end ({rfc3339(end)})"
        )
    found = source.fetch_range(rule, start - rule.history, end, selector)
    if not found:
        raise BacktestError(
            f"no data for selector '{selector}' between {rfc3339(start - rule.history)} and "
            f"{rfc3339(end)} in {source.describe()}"
        )
    if len(found) > 1:
        names = "; ".join(str(s.labels) for s in found[:5])
        raise BacktestError(
            f"selector '{selector}' matches {len(found)} series ({names}); narrow it to one"
        )
    series = found[0]
    before = int(np.sum(series.timestamps < start))
    if series.timestamps[0] > start:
        raise RangeError(
            f"the data starts at {rfc3339(series.timestamps[0])}, after the range's start "
            f"({rfc3339(start)}): the range "
            "is beyond what the source holds (retention?); start it later"
        )
    if before < MIN_POINTS:
        raise RangeError(
            f"too little history before the range's start: {before} steps, need at least "
            f"{MIN_POINTS}; start it later"
        )
    if int(np.sum((series.timestamps >= start) & (series.timestamps <= end))) == 0:
        raise RangeError(f"no data in the range, {rfc3339(start)} .. {rfc3339(end)}")
    return RecordedSource(series)
