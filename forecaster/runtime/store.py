"""The latest forecast of every series, per rule, shared between the cycle and the API."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass

from forecaster.forecast import SeriesForecast
from forecaster.sources.base import SeriesKey, series_key


@dataclass(frozen=True)
class CycleFailure:
    """Why a rule's newest cycle stored nothing, and when the next attempt is due."""

    error: str
    failures: int  # in a row
    retry_at: float | None  # Unix time; None when no attempt is scheduled


class ForecastStore:
    """Thread-safe: the cycle replaces a rule's forecasts whole; readers never see half.
    Beside them, whether the rule's newest cycle failed. Until this replica's own cycles
    of a rule have caught up, a peer replica's forecasts of it may be served instead."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: dict[str, Mapping[SeriesKey, SeriesForecast]] = {}  # what is served
        self._own: dict[str, Mapping[SeriesKey, SeriesForecast]] = {}  # the cycles' here
        self._failures: dict[str, CycleFailure] = {}
        self._refused: dict[str, frozenset[SeriesKey]] = {}
        self._lenders: dict[str, str] = {}  # rule -> the peer whose forecasts are served

    def put(
        self,
        rule: str,
        forecasts: Mapping[SeriesKey, SeriesForecast],
        refused: frozenset[SeriesKey] = frozenset(),
    ) -> None:
        """Replace every forecast of `rule` (its cycle succeeded), and the series it
        refused to forecast (beyond the rule's `max_series`). Borrowed forecasts newer
        than these (a first cycle that took longer than a step) stay served."""
        snapshot = dict(forecasts)
        with self._lock:
            self._own[rule] = snapshot
            self._refused[rule] = refused
            self._failures.pop(rule, None)
            served = self._rules.get(rule)
            borrowed = rule in self._lenders and served is not None
            if borrowed and snapshot and _newest(snapshot) < _newest(served or {}):
                return
            self._rules[rule] = snapshot
            self._lenders.pop(rule, None)

    def borrow(self, rule: str, forecasts: Mapping[SeriesKey, SeriesForecast], peer: str) -> bool:
        """Serve `peer`'s forecasts of `rule` unless this replica's own are as new (or
        already served); whether they were taken."""
        snapshot = dict(forecasts)
        with self._lock:
            own = self._own.get(rule)
            if own is not None and (rule not in self._lenders or _newest(own) >= _newest(snapshot)):
                self._rules[rule] = own  # caught up: served from here on
                self._lenders.pop(rule, None)
                return False
            self._rules[rule] = snapshot
            self._lenders[rule] = peer
            return True

    def lender(self, rule: str) -> str | None:
        """The peer whose forecasts of `rule` are served; None when they are this
        replica's own (or none)."""
        with self._lock:
            return self._lenders.get(rule)

    def own(self, rule: str) -> Mapping[SeriesKey, SeriesForecast] | None:
        """Every forecast of `rule` from this replica's last cycle (never borrowed ones);
        None before its first."""
        with self._lock:
            return self._own.get(rule)

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


def _newest(forecasts: Mapping[SeriesKey, SeriesForecast]) -> float:
    """The grid point of the newest observation behind any of `forecasts`."""
    return max((f.origin for f in forecasts.values()), default=float("-inf"))
