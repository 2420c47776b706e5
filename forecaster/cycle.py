"""One forecast cycle of a rule: fetch what is new, forecast every live series, store."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from forecaster.config import Rule
from forecaster.engine import ForecastEngine
from forecaster.history import HistoryBook, Observed, SeriesKey
from forecaster.model import QuantileForecaster, per_step_quantile
from forecaster.seasonality import DAY
from forecaster.source import Source
from forecaster.store import ForecastStore, SeriesForecast
from forecaster.telemetry import Telemetry

log = logging.getLogger(__name__)

SEASONAL_MIN_HISTORY = DAY + 3600
"""Series with less history than this get statsforecast's short-term models (the first
rungs of the cold-start ladder); the others the seasonal engine."""


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
        telemetry: Telemetry | None = None,
    ) -> None:
        self.rules = {r.name: r for r in rules}
        self.source = source
        self.store = store
        self.short_model = QuantileForecaster()
        self._engines = {
            r.name: ForecastEngine(
                step=r.step, horizon=r.horizon_steps, lead=r.lead, quantile=r.quantile
            )
            for r in rules
        }
        self.telemetry = telemetry
        self._books = {r.name: HistoryBook(r.step, r.history) for r in rules}

    def _forecast_young(
        self,
        rule: Rule,
        book: HistoryBook,
        keys: list[SeriesKey],
        seen: dict[SeriesKey, Observed],
        now: float,
        out: dict,
    ) -> int:
        """Series with under a day of history: statsforecast's short-term models, batched."""
        ids = [str(i) for i in range(len(keys))]
        try:
            frame = self.short_model.forecast(
                book.frame(keys, ids),
                horizon=rule.horizon_steps,
                step=rule.step,
                # The served value must cover the lead window's peak with probability q.
                quantile=per_step_quantile(rule.quantile, self._engines[rule.name].model.window),
            )
        except Exception:
            log.exception("rule %s: forecasting %d young series failed", rule.name, len(keys))
            return len(keys)
        groups = dict(tuple(frame.groupby("unique_id", sort=False)))
        failures = 0
        for uid, key in zip(ids, keys, strict=True):
            group = groups.get(uid)
            if group is None or len(group) != rule.horizon_steps:
                failures += 1
                continue
            out[key] = self._series_forecast(
                book.labels(key),
                seen[key],
                now,
                group["ds"].to_numpy(dtype=np.int64),
                group["mean"].to_numpy(dtype=np.float64),
                group["upper"].to_numpy(dtype=np.float64),
                str(group["model"].iloc[0]),
                None,
            )
        return failures

    @staticmethod
    def _series_forecast(
        labels: dict[str, str],
        seen: Observed,
        now: float,
        ds: np.ndarray,
        mean: np.ndarray,
        upper: np.ndarray,
        model: str,
        recent_error: float | None,
    ) -> SeriesForecast:
        return SeriesForecast(
            labels=labels,
            origin=seen.last,
            last_actual=seen.last_value,
            made_at=now,
            ds=ds.astype(np.int64),
            mean=mean,
            upper=upper,
            model=model,
            recent_error=recent_error,
        )

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
        engine = self._engines[rule.name]
        end = int(now // rule.step) * rule.step
        start = book.fetch_start(end)
        fetched = self.source.fetch_range(rule, start, end)
        book.advance(end, fetched)

        live: list[SeriesKey] = []
        young: list[SeriesKey] = []
        seen: dict[SeriesKey, Observed] = {}
        for key in book.series_keys():
            obs = book.observed(key)
            if end - obs.last > rule.ttl:
                continue
            seen[key] = obs
            (young if end - obs.first < SEASONAL_MIN_HISTORY else live).append(key)
        engine.forget(set(live))
        forecasts: dict = {}
        failures = 0
        for key in live:
            try:
                mean, upper, fit = engine.forecast(key, book.values(key), end)
            except Exception:
                log.exception("rule %s %s: forecast failed", rule.name, book.labels(key))
                failures += 1
                continue
            forecasts[key] = self._series_forecast(
                book.labels(key),
                seen[key],
                now,
                end + rule.step * np.arange(1, rule.horizon_steps + 1),
                mean,
                upper,
                fit.candidate.name,
                fit.recent_error,
            )
        if young:
            failures += self._forecast_young(rule, book, young, seen, now, forecasts)
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
