"""The latest forecast of every series, per rule, shared between the cycle and the API."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from forecaster.sources.base import SeriesKey, series_key


@dataclass(frozen=True)
class SeriesForecast:
    """One series' forecast: the grid points ahead with point and upper-quantile values."""

    labels: dict[str, str]
    origin: int  # grid point of the newest observation the forecast is based on
    last_actual: float  # the observation at `origin`
    ds: np.ndarray  # int64 grid points origin + step, ..., origin + horizon
    point: np.ndarray  # the point forecast: the median of the predictive distribution
    upper: np.ndarray
    model: str
    recent_error: float | None = None  # the model's backtest MAE over the lead window
    quantile: float | None = None  # share of lead-window peaks the upper band is to cover
    headroom: float | None = None  # factor on the band that a budget's remainder bought
    lead: int | None = None  # the workload's measured lead, if any (else the rule's)

    def lead_for(self, rule_lead: int) -> int:
        """The lead this series is served for."""
        return rule_lead if self.lead is None else self.lead

    def age(self, now: float) -> float:
        """Seconds between the newest data behind this forecast and `now`."""
        return now - self.origin

    def at(self, t: float) -> tuple[float, float] | None:
        """(point, upper) of the step labelled by the first grid point >= t, if covered."""
        i = int(np.searchsorted(self.ds, t, side="left"))
        if i >= len(self.ds):
            return None
        return float(self.point[i]), float(self.upper[i])


@dataclass(frozen=True)
class CycleFailure:
    """Why a rule's newest cycle stored nothing, and when the next attempt is due."""

    error: str
    failures: int  # in a row
    retry_at: float | None  # Unix time; None when no attempt is scheduled


class ForecastStore:
    """Thread-safe: the cycle replaces a rule's forecasts whole; readers never see half.
    Beside them, whether the rule's newest cycle failed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: dict[str, Mapping[SeriesKey, SeriesForecast]] = {}
        self._failures: dict[str, CycleFailure] = {}
        self._refused: dict[str, frozenset[SeriesKey]] = {}

    def put(
        self,
        rule: str,
        forecasts: Mapping[SeriesKey, SeriesForecast],
        refused: frozenset[SeriesKey] = frozenset(),
    ) -> None:
        """Replace every forecast of `rule` (its cycle succeeded), and the series it
        refused to forecast (beyond the rule's `max_series`)."""
        snapshot = dict(forecasts)
        with self._lock:
            self._rules[rule] = snapshot
            self._refused[rule] = refused
            self._failures.pop(rule, None)

    def refused(self, rule: str) -> frozenset[SeriesKey]:
        """The series of `rule` its last cycle left unforecast: beyond `max_series`."""
        with self._lock:
            return self._refused.get(rule, frozenset())

    def failed(self, rule: str, error: str, failures: int, retry_at: float | None) -> None:
        """Record that the last `failures` cycles of `rule` failed; its forecasts stay."""
        with self._lock:
            self._failures[rule] = CycleFailure(error, failures, retry_at)

    def failure(self, rule: str) -> CycleFailure | None:
        """The rule's newest cycle failure, unless a cycle succeeded since."""
        with self._lock:
            return self._failures.get(rule)

    def snapshot(self, rule: str) -> Mapping[SeriesKey, SeriesForecast] | None:
        """Every forecast of `rule` from its last cycle; None before the first."""
        with self._lock:
            return self._rules.get(rule)

    def get(self, rule: str, labels: dict[str, str]) -> SeriesForecast | None:
        """The forecast of one series of `rule`, if it has one."""
        snap = self.snapshot(rule)
        return None if snap is None else snap.get(series_key(labels))
