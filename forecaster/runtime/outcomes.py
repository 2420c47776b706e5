"""How a rule's forecasts fared once what they forecast had happened.

After each cycle, every series' served value (as a request right after the cycle would
get it, floored at the last actual) and its point forecast at lead wait for their lead
window to be realised; a later cycle then judges them against the history it fetched:
whether the served value covered the window's realised peak (the quantile's promise),
and the point forecast's absolute error at lead. Windows with a missing point are not
judged, and neither are those of cycles that did not run.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from forecaster.config import Rule
from forecaster.policy import lead_window, served_value
from forecaster.runtime.store import SeriesForecast
from forecaster.sources.base import SeriesKey


@dataclass
class Tally:
    """What has been judged of one series since the process started."""

    labels: dict[str, str]
    windows: int = 0  # lead windows realised and judged
    covered: int = 0  # of those, windows whose realised peak the served value covered
    abs_error: float = 0.0  # sum over judged windows of |point forecast - actual| at lead
    pending: dict[int, tuple[float, float]] = field(default_factory=dict)
    # grid point ending a lead window -> (value served for it, point forecast for it)


class Outcomes:
    """The running tallies of one rule's series. Judged by the cycle, read by /metrics."""

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.window = lead_window(rule.lead, rule.step)
        self._tallies: dict[SeriesKey, Tally] = {}
        self._lock = threading.Lock()

    def expect(self, key: SeriesKey, forecast: SeriesForecast, end: int) -> None:
        """Remember what a forecast made at grid point `end` serves for its lead window."""
        served = served_value(None, forecast, end, self.rule)
        target = end + self.window * self.rule.step
        at_lead = forecast.at(target)
        if served is None or not served.predictive or at_lead is None:
            return
        with self._lock:
            tally = self._tallies.get(key)
            if tally is None:
                tally = self._tallies[key] = Tally(forecast.labels)
            tally.pending[target] = (served.value, at_lead[0])

    def judge(self, key: SeriesKey, y: np.ndarray, end: int) -> None:
        """Judge every pending window of a series that history y, ending at grid point
        `end`, has realised."""
        with self._lock:
            tally = self._tallies.get(key)
            if tally is None:
                return
            step = self.rule.step
            for target in [t for t in tally.pending if t <= end]:
                served, point = tally.pending.pop(target)
                i = len(y) - 1 - (end - target) // step
                realised = y[i - self.window + 1 : i + 1] if i - self.window + 1 >= 0 else y[:0]
                if len(realised) != self.window or not np.isfinite(realised).all():
                    continue
                tally.windows += 1
                tally.covered += int(realised.max() <= served)
                tally.abs_error += abs(point - float(realised[-1]))

    def forget(self, keep: set[SeriesKey]) -> None:
        """Drop the series no longer present."""
        with self._lock:
            for key in [k for k in self._tallies if k not in keep]:
                del self._tallies[key]

    def tallies(self) -> list[Tally]:
        """A copy of every series' tally with at least one judged window."""
        with self._lock:
            return [
                Tally(t.labels, t.windows, t.covered, t.abs_error)
                for t in self._tallies.values()
                if t.windows
            ]
