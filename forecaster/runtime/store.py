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
    Beside them, whether the rule's newest cycle failed. Until a rule's first cycle
    here has put, a peer replica's forecasts of it may be borrowed in its place."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: dict[str, Mapping[SeriesKey, SeriesForecast]] = {}
        self._failures: dict[str, CycleFailure] = {}
        self._refused: dict[str, frozenset[SeriesKey]] = {}
        self._lenders: dict[str, str] = {}  # rule -> the peer its forecasts came from

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
            self._lenders.pop(rule, None)

    def borrow(self, rule: str, forecasts: Mapping[SeriesKey, SeriesForecast], peer: str) -> bool:
        """Hold `peer`'s forecasts of `rule` as its own would be held, unless a cycle here
        has put that rule's already; whether they were taken."""
        snapshot = dict(forecasts)
        with self._lock:
            if rule in self._rules and rule not in self._lenders:
                return False
            self._rules[rule] = snapshot
            self._lenders[rule] = peer
            return True

    def lender(self, rule: str) -> str | None:
        """The peer whose forecasts of `rule` are held; None once a cycle here has put."""
        with self._lock:
            return self._lenders.get(rule)

    def own(self, rule: str) -> Mapping[SeriesKey, SeriesForecast] | None:
        """Every forecast of `rule` from a cycle here (never borrowed ones); None before."""
        with self._lock:
            return None if rule in self._lenders else self._rules.get(rule)

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
