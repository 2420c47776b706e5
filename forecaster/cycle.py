"""One forecast cycle of a rule: fetch what is new, forecast every live series, store."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from forecaster.config import Rule
from forecaster.history import HistoryBook
from forecaster.model import QuantileForecaster
from forecaster.source import Source
from forecaster.store import ForecastStore, SeriesForecast
from forecaster.telemetry import Telemetry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CycleReport:
    """What one cycle did, for logs, metrics and tests."""

    rule: str
    now: float
    fetch_start: int
    end: int
    fetched_points: int
    series: int
    fit_failures: int
    seconds: float


class ForecastCycle:
    """Keeps each rule's history and turns it into forecasts in the store, on demand.

    `run` is driven by a scheduler (or a replay); the caller passes the time, so the same
    code serves a live service, a backtest and a test. Not safe to run the same rule twice
    at once (the scheduler guarantees that).
    """

    def __init__(
        self,
        rules: list[Rule],
        source: Source,
        store: ForecastStore,
        model: QuantileForecaster | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.rules = {r.name: r for r in rules}
        self.source = source
        self.store = store
        self.model = model or QuantileForecaster()
        self.telemetry = telemetry
        self._books = {r.name: HistoryBook(r.step, r.history) for r in rules}

    def run(self, rule: Rule, now: float) -> CycleReport:
        """Fetch, forecast and store one rule as of `now`; raise SourceError if the source
        fails (the previous forecasts stay in the store until their TTL runs out)."""
        started = time.perf_counter()
        try:
            report = self._run(rule, now, started)
        except Exception:
            if self.telemetry:
                self.telemetry.cycle_failures.labels(rule.name).inc()
            raise
        if self.telemetry:
            self.telemetry.cycle_duration.labels(rule.name).observe(report.seconds)
            self.telemetry.cycle_series.labels(rule.name).set(report.series)
            self.telemetry.fit_failures.labels(rule.name).inc(report.fit_failures)
            self.telemetry.last_cycle.labels(rule.name).set(now)
        return report

    def _run(self, rule: Rule, now: float, started: float) -> CycleReport:
        book = self._books[rule.name]
        end = int(now // rule.step) * rule.step
        start = book.fetch_start(end)
        fetched = self.source.fetch_range(rule, start, end)
        book.advance(end, fetched)

        live = []
        for key in book.series_keys():
            origin, _ = book.last_observed(key)
            if end - origin <= rule.ttl:
                live.append(key)
        ids = [str(i) for i in range(len(live))]
        forecasts: dict = {}
        failures = 0
        if live:
            frame = book.frame(live, ids)
            try:
                out = self.model.forecast(
                    frame, horizon=rule.horizon_steps, step=rule.step, quantile=rule.quantile
                )
            except Exception:
                log.exception("rule %s: forecasting %d series failed", rule.name, len(live))
                out = None
            groups = {} if out is None else dict(tuple(out.groupby("unique_id", sort=False)))
            for uid, key in zip(ids, live, strict=True):
                group = groups.get(uid)
                if group is None or len(group) != rule.horizon_steps:
                    failures += 1
                    continue
                origin, last = book.last_observed(key)
                forecasts[key] = SeriesForecast(
                    labels=book.labels(key),
                    origin=origin,
                    last_actual=last,
                    made_at=now,
                    ds=group["ds"].to_numpy(dtype=np.int64),
                    mean=group["mean"].to_numpy(dtype=np.float64),
                    upper=group["upper"].to_numpy(dtype=np.float64),
                    model=str(group["model"].iloc[0]),
                )
        self.store.put(rule.name, now, forecasts)
        report = CycleReport(
            rule=rule.name,
            now=now,
            fetch_start=start,
            end=end,
            fetched_points=sum(len(s.timestamps) for s in fetched),
            series=len(forecasts),
            fit_failures=failures,
            seconds=time.perf_counter() - started,
        )
        log.info(
            "rule %s: cycle fetched %d points (from %d to %d), forecast %d series, "
            "%d failed, in %.2fs",
            rule.name,
            report.fetched_points,
            start,
            end,
            report.series,
            failures,
            report.seconds,
        )
        return report
