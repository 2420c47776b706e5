"""One forecast cycle of a rule: fetch what is new, forecast every live series, store."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from forecaster.config import Rule
from forecaster.forecast import SeriesForecast
from forecaster.models import ForecastEngine, ladder
from forecaster.models.engine import PrepareMany
from forecaster.models.series_model import DEFAULT_STABILIZATION
from forecaster.runtime.checkpoint import Checkpoints
from forecaster.runtime.demand import Demand, Selection
from forecaster.runtime.failures import Failures
from forecaster.runtime.history import HistoryBook, Observed
from forecaster.runtime.notices import Notices
from forecaster.runtime.outcomes import Outcomes
from forecaster.runtime.store import ForecastStore
from forecaster.runtime.telemetry import Telemetry
from forecaster.selector import LabelSelector, Op, Requirement
from forecaster.sources.base import RangeSeries, SeriesKey, Source, series_key
from forecaster.times import SETTLE, rfc3339

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
        telemetry: Telemetry | None = None,
        spread_refits: bool = True,
        demand: Demand | None = None,
        live: bool = True,
        prepare_many: PrepareMany | None = None,
        stabilization: int = DEFAULT_STABILIZATION,
        state_dir: Path | None = None,
    ) -> None:
        self.rules = {r.name: r for r in rules}
        self.source = source
        self.store = store
        self.telemetry = telemetry
        self.demand = demand
        self.prepare_many = prepare_many  # makes a cycle's due refits at once (workers)
        # A replay (not live) runs thousands of cycles over recorded data: no line per
        # cycle, and no warning meant for an operator (a recorded gap is no broken query).
        self.live = live
        self._engines = {
            r.name: ForecastEngine(
                step=r.step,
                horizon=r.horizon_steps,
                lead=r.lead,
                quantile=r.quantile,
                budget=r.budget,
                spread=spread_refits,
                stabilization=stabilization,
            )
            for r in rules
        }
        self._books = {r.name: HistoryBook(r.step, r.history, r.phase) for r in rules}
        self.outcomes = {r.name: Outcomes(r) for r in rules}
        self.notices = Notices(telemetry, live)
        self._failures = {r.name: Failures(log) for r in rules}
        # Where each rule's history and fits are saved, to be resumed after a restart.
        self.checkpoints = Checkpoints(state_dir, stabilization, telemetry) if state_dir else None
        for rule in rules if self.checkpoints else []:
            self._resume(rule)

    def run(
        self, rule: Rule, now: float, progress: Callable[[], None] = lambda: None
    ) -> CycleReport:
        """Fetch, forecast and store one rule as of `now`; raise SourceError if the source
        fails (the previous forecasts stay in the store until their TTL runs out).
        `progress` is called after the fetch and after each series' forecast."""
        started = time.perf_counter()
        try:
            report = self._run(rule, now, started, progress)
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

    def _run(
        self, rule: Rule, now: float, started: float, progress: Callable[[], None]
    ) -> CycleReport:
        book = self._books[rule.name]
        engine = self._engines[rule.name]
        end = rule.grid_floor(now - SETTLE)
        start = book.fetch_start(end)
        points, selection = self._take_in(rule, book, engine, start, end, now)
        progress()

        old: list[SeriesKey] = []
        young: list[SeriesKey] = []
        seen: dict[SeriesKey, Observed] = {}
        for key in book.series_keys():
            obs = book.observed(key)
            if end - obs.last > rule.ttl:
                continue
            seen[key] = obs
            if not ladder.is_young(end - obs.first):
                old.append(key)
            elif np.isfinite(book.settled(key, rule.warmup_steps)).any():
                young.append(key)
            # else: every value is still a rate window filling up; served its actual until
            # the window is full (a forecast fitted on the ramp would chase it upwards)
        engine.forget(set(old))
        if self.prepare_many is not None and old:
            # The book's own float32 arrays, not float64 copies of every history at once
            # (the workers convert them): nothing advances the book until prepare returns.
            fits = set(old)
            held: dict[Hashable, np.ndarray] = {
                key: values for key, _, values in book.entries() if key in fits
            }
            engine.prepare(held, end, self.prepare_many)
            progress()
        forecasts: dict[SeriesKey, SeriesForecast] = {}
        failures = 0
        ds = end + rule.step * np.arange(1, rule.horizon_steps + 1)
        for key in old:
            what = f"rule {rule.name} {book.labels(key)}: forecasting"
            try:
                point, upper, fit = engine.forecast(key, book.values(key), end)
            except Exception as err:
                self._failures[rule.name].failed(key, err, what)
                failures += 1
                continue
            self._failures[rule.name].succeeded(key, what)
            forecasts[key] = _forecast(
                book.labels(key),
                seen[key],
                ds,
                point,
                upper,
                fit.model.name,
                fit.quantile,
                recent_error=fit.recent_error,
                headroom=fit.headroom,
                scale_down=fit.scale_down,
            )
            progress()
        self._failures[rule.name].keep([*seen, "young"])  # a series' return is news again
        if young:
            failures += self._forecast_young(rule, engine, book, young, seen, forecasts)
        if selection is not None:  # each series' measured lead, where its workload has one
            for key, forecast in forecasts.items():
                forecasts[key] = replace(forecast, lead=selection.wanted.get(key))
        refused = selection.refused if selection is not None else frozenset()
        self.store.put(rule.name, forecasts, refused)
        if self.checkpoints:  # after the put: serving never waits on a save
            self.checkpoints.save(rule, book, engine.series)
        self.notices.refused(rule, refused)
        self.notices.empty(rule, empty=not seen)
        outcomes = self.outcomes[rule.name]
        outcomes.forget(set(seen))
        for key in seen:
            outcomes.judge(key, book.values(key), end)
        for key, forecast in forecasts.items():
            outcomes.expect(key, forecast, end)
        seconds = time.perf_counter() - started
        said = (rule.name, points, rfc3339(start), rfc3339(end), len(forecasts), failures, seconds)
        log.log(
            logging.INFO if self.live else logging.DEBUG,
            "rule %s: cycle fetched %d points (%s .. %s), forecast %d series, %d failed, in %.2fs",
            *said,
        )
        return CycleReport(rule.name, now, start, end, points, len(forecasts), failures, seconds)

    def _resume(self, rule: Rule) -> None:
        """Take up the rule's history and fits from its checkpoint, where it has one."""
        assert self.checkpoints is not None
        saved = self.checkpoints.load(rule)
        if saved is None:
            return
        self._books[rule.name] = saved.book
        self._engines[rule.name].series = saved.series
        log.info(
            "rule %s: resumed %d series from the checkpoint written %s (history to %s)",
            rule.name,
            len(saved.series),
            rfc3339(saved.written),
            rfc3339(saved.book.end) if saved.book.end is not None else "-",
            extra={"rule": rule.name},
        )

    def _take_in(
        self,
        rule: Rule,
        book: HistoryBook,
        engine: ForecastEngine,
        start: int,
        end: int,
        now: float,
    ) -> tuple[int, Selection | None]:
        """Fetch [start, end] into `book` (the series wanted, when demand chooses them);
        the points fetched and the selection. The fetched arrays, four times the book's
        bytes in a first cycle, are let go on return, before any fit."""
        fetched = self.source.fetch_range(rule, start, end)
        selection = self._select(rule, book, fetched, now)
        if selection is not None:
            fetched = self._with_backfills(rule, book, fetched, selection, end)
            wanted = set(selection.wanted)
            fetched = [s for s in fetched if series_key(s.labels) in wanted]
            book.keep(wanted)
            # Each series' budget is costed through the window of the HPAs that read it.
            engine.scale_down = {key: w for key, w in selection.scale_down.items()}
        book.advance(end, fetched)
        return sum(len(s.timestamps) for s in fetched), selection

    def _select(
        self, rule: Rule, book: HistoryBook, fetched: list[RangeSeries], now: float
    ) -> Selection | None:
        """Which of the series known or fetched to keep and forecast (None: all of them)."""
        if self.demand is None:
            return None
        labels: dict[SeriesKey, Mapping[str, str]] = {
            key: book.labels(key) for key in book.series_keys()
        }
        labels.update((series_key(s.labels), s.labels) for s in fetched)
        return self.demand.select(rule, labels, now)

    def _with_backfills(
        self,
        rule: Rule,
        book: HistoryBook,
        fetched: list[RangeSeries],
        selection: Selection,
        end: int,
    ) -> list[RangeSeries]:
        """`fetched`, plus the whole history of every wanted series the book lacks (asked
        for again after it was dropped, or a new one with an older past)."""
        if book.end is None:
            return fetched  # the first fetch was the whole history
        by_key = {series_key(s.labels): s for s in fetched}
        missing = [k for k in selection.wanted if k not in book and k in by_key]
        out = [s for k, s in by_key.items() if k not in missing]
        for key in missing:
            exact = LabelSelector(tuple(Requirement(name, Op.EQ, (value,)) for name, value in key))
            history = self.source.fetch_range(rule, book.first(end), end, exact)
            same = [s for s in history if series_key(s.labels) == key]
            out += same or [by_key[key]]
        if missing:
            log.info(
                "rule %s: backfilled %d series asked for",
                rule.name,
                len(missing),
                extra={"rule": rule.name},
            )
        return out

    def _forecast_young(
        self,
        rule: Rule,
        engine: ForecastEngine,
        book: HistoryBook,
        keys: list[SeriesKey],
        seen: dict[SeriesKey, Observed],
        out: dict[SeriesKey, SeriesForecast],
    ) -> int:
        """Forecast the young series in one batch into `out`; return the failures."""
        ids = [str(i) for i in range(len(keys))]
        what = f"rule {rule.name}: forecasting its young series"
        try:
            frame = engine.forecast_young(book.frame(keys, ids, rule.warmup_steps))
        except Exception as err:
            self._failures[rule.name].failed("young", err, what)
            return len(keys)
        self._failures[rule.name].succeeded("young", what)
        groups = dict(tuple(frame.groupby("unique_id", sort=False)))
        failures = 0
        for uid, key in zip(ids, keys, strict=True):
            group = groups.get(uid)
            if group is None or len(group) != rule.horizon_steps:
                failures += 1
                continue
            out[key] = _forecast(
                book.labels(key),
                seen[key],
                group["ds"].to_numpy(dtype=np.int64),
                group["mean"].to_numpy(dtype=np.float64),
                group["upper"].to_numpy(dtype=np.float64),
                str(group["model"].iloc[0]),
                engine.young_quantile,
            )
        return failures


def _forecast(
    labels: dict[str, str],
    seen: Observed,
    ds: np.ndarray,
    point: np.ndarray,
    upper: np.ndarray,
    model: str,
    quantile: float,
    recent_error: float | None = None,
    headroom: float | None = None,
    scale_down: int | None = None,
) -> SeriesForecast:
    return SeriesForecast(
        labels=labels,
        origin=seen.last,
        last_actual=seen.last_value,
        ds=np.asarray(ds, dtype=np.int64),  # the old series share one grid array
        point=point,
        upper=upper,
        model=model,
        recent_error=recent_error,
        quantile=quantile,
        headroom=headroom,
        scale_down=scale_down,
    )
