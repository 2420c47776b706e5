"""How a rule's forecasts fared once what they forecast had happened.

After each cycle, every series' served value (as a request right after the cycle would
get it, floored at the last actual) and its point forecast at lead wait for their lead
window to be realised; a later cycle then judges them against the history it fetched:
whether the served value covered the window's realised peak (the quantile's promise),
and the point forecast's absolute error at lead. The window is the one the policy serves
the series for (its measured lead, where its workload has one). Windows with a missing
point are not judged, and neither are those of cycles that did not run.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from forecaster.config import Rule
from forecaster.forecast import SeriesForecast
from forecaster.policy import ServingPolicy
from forecaster.sources.base import SeriesKey


@dataclass(frozen=True)
class Pending:
    """A value served for one lead window, waiting for the window to be realised."""

    served: float
    point: float  # the point forecast for the window's last step
    steps: int  # the window's length


@dataclass
class Tally:
    """What has been judged of one series since the process started."""

    labels: dict[str, str]
    windows: int = 0  # lead windows realised and judged
    covered: int = 0  # of those, windows whose realised peak the served value covered
    abs_error: float = 0.0  # sum over judged windows of |point forecast - actual| at lead
    pending: dict[int, Pending] = field(default_factory=dict)  # by the window's last step


class Outcomes:
    """The running tallies of one rule's series. Judged by the cycle, read by /metrics."""

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.policy = ServingPolicy(rule)
        self._tallies: dict[SeriesKey, Tally] = {}
        self._lock = threading.Lock()

    def expect(self, key: SeriesKey, forecast: SeriesForecast, end: int) -> None:
        """Remember what a forecast made at grid point `end` serves for its lead window."""
        served = self.policy.value(None, forecast, end)
        at_lead = self.policy.at_lead(forecast, end)
        if served is None or not served.predictive or at_lead is None:
            return
        steps = self.policy.window(forecast)
        with self._lock:
            tally = self._tallies.get(key)
            if tally is None:
                tally = self._tallies[key] = Tally(forecast.labels)
            tally.pending[end + steps * self.rule.step] = Pending(served.value, at_lead[0], steps)

    def judge(self, key: SeriesKey, y: np.ndarray, end: int) -> None:
        """Judge every pending window of a series that history y, ending at grid point
        `end`, has realised."""
        with self._lock:
            tally = self._tallies.get(key)
            if tally is None:
                return
            for last in [t for t in tally.pending if t <= end]:
                expected = tally.pending.pop(last)
                i = len(y) - 1 - (end - last) // self.rule.step
                first = i - expected.steps + 1
                realised = y[first : i + 1] if first >= 0 else y[:0]
                if len(realised) != expected.steps or not np.isfinite(realised).all():
                    continue
                tally.windows += 1
                tally.covered += int(realised.max() <= expected.served)
                tally.abs_error += abs(expected.point - float(realised[-1]))

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
