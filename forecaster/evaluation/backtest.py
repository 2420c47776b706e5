"""What scaleahead would have done on a recorded history: replay, score, simulate the HPA.

The replay drives the same ForecastCycle and served-value policy as `serve`, with a
simulated clock: at each grid point t of [start, end] the cycle runs on its interval
and the value served at t is computed from the store and the actual at t. The source is
recorded once (the selected series, from `start - history` to `end`) and then answers
every fetch with data up to the fetch's end only, so nothing after t is ever seen at t.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from forecaster.config import Rule
from forecaster.evaluation import baselines
from forecaster.evaluation.hpa_sim import HPAResult, HPASettings, simulate
from forecaster.models.calibration import fixed_quantile
from forecaster.models.ladder import MIN_POINTS
from forecaster.policy import lead_window, serve, served_value
from forecaster.runtime.cycle import ForecastCycle
from forecaster.runtime.store import ForecastStore
from forecaster.selector import EVERYTHING, LabelSelector
from forecaster.sources.base import InstantSample, RangeSeries, Source
from forecaster.times import SETTLE, rfc3339

T = TypeVar("T")
Progress = Callable[[Sequence[T], str], Iterable[T]]
"""Wraps the items of a named phase (a progress bar); the identity by default."""
Baseline = Callable[[np.ndarray, np.ndarray, int, int], np.ndarray]
"""A baseline's forecasts: (y, origins, horizon, step) -> F[i, h - 1]."""


class BacktestError(ValueError):
    """A backtest that cannot run: the message says what to change."""


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
        raise BacktestError(
            f"empty range: --from ({rfc3339(start)}) must be before --to ({rfc3339(end)})"
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
        raise BacktestError(
            f"the data starts at {rfc3339(series.timestamps[0])}, after --from "
            f"({rfc3339(start)}): the range "
            "is beyond what the source holds (retention?); move --from later"
        )
    if before < MIN_POINTS:
        raise BacktestError(
            f"too little history before --from: {before} steps, need at least "
            f"{MIN_POINTS}; move --from later"
        )
    if int(np.sum((series.timestamps >= start) & (series.timestamps <= end))) == 0:
        raise BacktestError(f"no data between --from ({rfc3339(start)}) and --to ({rfc3339(end)})")
    return RecordedSource(series)


@dataclass
class Replay:
    """Per grid point t of the replayed range: what was known and served at t."""

    rule: Rule
    times: np.ndarray  # grid points
    actual: np.ndarray  # rate at t (NaN: missing)
    served: np.ndarray  # value served at t (NaN: an error would have been answered)
    policy: np.ndarray  # the forecast policy's value at t, before the rule's schedules
    floor: np.ndarray  # the largest floor of the rule's active schedules (NaN: none)
    predictive: np.ndarray  # bool: a fresh forecast was used
    point: np.ndarray  # (n, H) point (median) forecasts made at t for t + h * step
    upper: np.ndarray  # (n, H) upper band
    quantile: np.ndarray  # the q the served value stood for at t (the rule's, or bought)
    history: RangeSeries  # everything recorded, history included
    models: dict[str, int] = field(default_factory=dict)

    @property
    def window(self) -> int:
        """Steps of the lead window the served value covers."""
        return lead_window(self.rule.lead, self.rule.step)

    @property
    def lead_index(self) -> int:
        """Column of the step starting at t + lead (labelled t + lead + step)."""
        return self.window - 1


def replay(
    rule: Rule,
    source: RecordedSource,
    start: int,
    end: int,
    progress: Progress = lambda items, _: items,
) -> Replay:
    """Run the forecast cycle and the served-value policy over [start, end]."""
    step, H = rule.step, rule.horizon_steps
    times = np.arange(rule.grid_ceil(start), rule.grid_floor(end) + 1, step, dtype=np.int64)
    store = ForecastStore()
    # One series: its refits on the hour, whatever its labels (CSV and Prometheus agree).
    cycle = ForecastCycle([rule], source, store, spread_refits=False)
    labels = source.series.labels
    n = len(times)
    actual = np.full(n, np.nan)
    served = np.full(n, np.nan)
    predictive = np.zeros(n, dtype=bool)
    point = np.full((n, H), np.nan)
    upper = np.full((n, H), np.nan)
    quantile = np.full(n, np.nan)
    models: dict[str, int] = {}
    ts, vs = source.series.timestamps, source.series.values
    idx = np.searchsorted(ts, times)
    hit = (idx < len(ts)) & (ts[np.minimum(idx, len(ts) - 1)] == times)
    actual[hit] = vs[idx[hit]]
    next_cycle = int(times[0])
    quiet = logging.getLogger("forecaster.runtime.cycle")
    level = quiet.level
    quiet.setLevel(logging.WARNING)
    try:
        for i in progress(range(n), f"replay at {rule.quantile_setting}"):
            t = int(times[i])
            if t >= next_cycle:
                cycle.run(rule, t + SETTLE)  # as live: a cycle at t + SETTLE ends at t
                next_cycle = t + rule.interval
            fc = store.get(rule.name, labels)
            a = None if np.isnan(actual[i]) else float(actual[i])
            s = served_value(a, fc, t, rule)
            if s is not None:
                served[i] = s.value
                predictive[i] = s.predictive
            if fc is not None and fc.age(t) <= rule.ttl:
                models[fc.model] = models.get(fc.model, 0) + 1
                quantile[i] = np.nan if fc.quantile is None else fc.quantile
                want = t + step * np.arange(1, H + 1)
                j = np.searchsorted(fc.ds, want)
                ok = j < len(fc.ds)
                ok[ok] = fc.ds[j[ok]] == want[ok]
                point[i, ok] = fc.point[j[ok]]
                upper[i, ok] = fc.upper[j[ok]]
    finally:
        quiet.setLevel(level)
    policy = served
    floor = np.full(n, np.nan)
    if rule.calendar is not None:
        floor = rule.calendar.floor_array(labels, times, rule.lead, policy)
        served = scheduled(policy, floor)
    quantile[np.isnan(quantile)] = fixed_quantile(rule.quantile)  # reactive steps
    return Replay(
        rule,
        times,
        actual,
        served,
        policy,
        floor,
        predictive,
        point,
        upper,
        quantile,
        source.series,
        models,
    )


def scheduled(values: np.ndarray, floor: np.ndarray) -> np.ndarray:
    """`values` raised to `floor` where both are known (an error stays an error)."""
    return np.where(np.isfinite(values), np.fmax(values, floor), values)


@dataclass(frozen=True)
class MethodScore:
    """Accuracy and simulated-HPA outcome of one method."""

    name: str
    mae_lead: float | None
    mase_lead: float | None
    mae_horizon: float | None
    coverage: float | None
    pinball: float | None  # of the served value as the lead window peak's q-quantile
    served_mae: float | None
    hpa: HPAResult

    def summary(self, bound: HPAResult) -> dict[str, float | str | None]:
        return {
            "method": self.name,
            "mae_lead": self.mae_lead,
            "mase_lead": self.mase_lead,
            "mae_horizon": self.mae_horizon,
            "coverage": self.coverage,
            "pinball": self.pinball,
            "served_mae": self.served_mae,
            "beyond_capacity_share": self.hpa.beyond_capacity_share,
            "underprovisioned_share": self.hpa.underprovisioned_share,
            "pod_minutes": self.hpa.pod_minutes,
            "pod_minutes_vs_bound": self.hpa.pod_minutes / bound.pod_minutes
            if bound.pod_minutes
            else None,
        }


@dataclass
class Scores:
    methods: list[MethodScore]
    bound: HPAResult
    hpa: HPASettings


def _future(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """values at i + offset for each i (NaN past the end): rows i, columns offsets."""
    n = len(values)
    idx = np.arange(n)[:, None] + offsets[None, :]
    out = np.full(idx.shape, np.nan)
    ok = idx < n
    out[ok] = values[idx[ok]]
    return out


def default_capacity(demand: np.ndarray) -> float:
    """Per-pod capacity when none is given: the range's 99th percentile demand needs 10."""
    finite = demand[np.isfinite(demand)]
    return max(float(np.percentile(finite, 99)) / 10.0, 1e-9) if len(finite) else 1.0


BASELINES: tuple[tuple[str, Baseline], ...] = (
    ("seasonal naive", baselines.seasonal_naive),
    ("holt-winters", baselines.holt_winters),
    ("crane dsp", baselines.crane_dsp),
    ("mstl", baselines.mstl),
)
"""The forecasting baselines every backtest scores beside reactive scaling."""


def pinball(
    actual: np.ndarray, quantile_forecast: np.ndarray, q: float | np.ndarray
) -> float | None:
    """Mean pinball (quantile) loss of a forecast of the q-quantile (one q, or one per
    point), where both are known."""
    ok = np.isfinite(actual) & np.isfinite(quantile_forecast)
    if not ok.any():
        return None
    diff = actual[ok] - quantile_forecast[ok]
    qs = np.broadcast_to(q, actual.shape)[ok]
    return float(np.mean(np.maximum(qs * diff, (qs - 1) * diff)))


class Judge:
    """What every method on one replayed range is scored against: the realised demand,
    the peak of each lead window, and the HPA (with its bound, perfect foresight)."""

    def __init__(self, r: Replay, hpa: HPASettings) -> None:
        self.replay, self.hpa = r, hpa
        step, H = r.rule.step, r.rule.horizon_steps
        full_ts, full_y = r.history.timestamps, r.history.values
        # The whole recorded series on the grid, so baselines can look back before --from.
        grid = np.arange(full_ts[0], r.times[-1] + 1, step, dtype=np.int64)
        self.y = np.full(len(grid), np.nan)
        self.y[(full_ts - full_ts[0]) // step] = full_y
        self.origins = (r.times - grid[0]) // step
        self.realised = _future(r.actual, np.arange(1, H + 1))  # (n, H)
        self.window_max = np.max(self.realised[:, : r.window], axis=1)
        self.scale = float(np.nanmean(np.abs(np.diff(r.actual))))  # one-step naive MAE
        self.start = int(r.times[0]) - step
        self.demand = np.where(np.isfinite(r.actual), r.actual, 0.0)
        # Perfect foresight: the same HPA fed the realised demand over the lead window.
        self.bound = self.simulate(serve(r.actual, self.window_max))

    def simulate(self, values: np.ndarray | None, cpu_target: float | None = None) -> HPAResult:
        """The HPA fed `values`, each read during the step after it was computed."""
        acted = None if values is None else np.concatenate([[values[0]], values[:-1]])
        step = self.replay.rule.step
        return simulate(self.start, step, self.demand, acted, self.hpa, cpu_target=cpu_target)

    def method(
        self,
        name: str,
        served: np.ndarray | None,
        paths: np.ndarray | None = None,
        quantile: float | None = None,
        predictive: np.ndarray | None = None,
        cpu_target: float | None = None,
    ) -> MethodScore:
        """A method's score from the values it served (None: an HPA on CPU alone), its
        point forecasts (for their errors), the quantile its served value stands for (its
        pinball loss; default: the q scaleahead's replay stood for at each step) and, for
        a band, where a fresh forecast was served (its coverage of the lead window's
        peak)."""
        wmax = self.window_max
        mae_lead = mae_horizon = coverage = None
        if paths is not None:
            err = np.abs(paths - self.realised)
            lead_err = err[:, self.replay.lead_index]
            if np.isfinite(lead_err).any():
                mae_lead = float(np.nanmean(lead_err))
            mae_horizon = float(np.nanmean(err)) if np.isfinite(err).any() else None
        if served is not None and predictive is not None:
            judged = predictive & np.isfinite(wmax)
            coverage = float(np.mean(wmax[judged] <= served[judged])) if judged.any() else None
        q = self.replay.quantile if quantile is None else quantile
        served_err = None if served is None else np.abs(served - wmax)
        return MethodScore(
            name=name,
            mae_lead=mae_lead,
            mase_lead=mae_lead / self.scale if mae_lead is not None and self.scale > 0 else None,
            mae_horizon=mae_horizon,
            coverage=coverage,
            pinball=None if served is None else pinball(wmax, served, q),
            served_mae=float(np.nanmean(served_err))
            if served_err is not None and np.isfinite(served_err).any()
            else None,
            hpa=self.simulate(served, cpu_target),
        )


def score(
    r: Replay,
    hpa: HPASettings,
    cpu_target: float | None = None,
    progress: Progress = lambda items, _: items,
) -> Scores:
    """Accuracy at the lead and over the horizon, and each method's simulated HPA.

    With schedules, reactive and scaleahead are also scored with the schedules' floors
    applied; with `cpu_target`, an HPA on a CPU proxy alone and one on CPU beside
    scaleahead's value (the layered HPA) are scored too."""
    judge = Judge(r, hpa)
    step, H, w = r.rule.step, r.rule.horizon_steps, r.window
    methods = [judge.method("reactive", r.actual, baselines.reactive(judge.y, judge.origins, H))]
    for name, forecast in progress(BASELINES, "baselines"):
        paths = forecast(judge.y, judge.origins, H, step)
        methods.append(judge.method(name, baselines.served(r.actual, paths, w), paths))
    methods.append(judge.method("scaleahead", r.policy, r.point, predictive=r.predictive))
    # Layers on top of the value: the schedules' floors, a CPU metric beside it.
    layered: dict[str, tuple[np.ndarray | None, float | None]] = {}
    if r.rule.calendar is not None:
        floor = r.rule.calendar.floor_array(r.history.labels, r.times, r.rule.lead, r.actual)
        layered["reactive + schedules"] = (scheduled(r.actual, floor), None)
        layered["scaleahead + schedules"] = (r.served, None)
    if cpu_target is not None:
        cpu = f"cpu {cpu_target * 100:g}%"
        layered[cpu] = (None, cpu_target)
        layered[f"{cpu} + scaleahead"] = (r.policy, cpu_target)
        if r.rule.calendar is not None:
            layered[f"{cpu} + scaleahead + schedules"] = (r.served, cpu_target)
    for name, (values, cpu_share) in progress(list(layered.items()), "layered HPAs"):
        band = values is not None and "scaleahead" in name
        predictive = r.predictive if band else None
        methods.append(judge.method(name, values, predictive=predictive, cpu_target=cpu_share))
    return Scores(methods, judge.bound, hpa)


def sweep(
    source: RecordedSource,
    start: int,
    end: int,
    quantiles: Sequence[float],
    judge: Judge,
    progress: Progress = lambda items, _: items,
) -> list[MethodScore]:
    """scaleahead replayed at each quantile and scored by `judge` (of a replay of the same
    range, reused at its own quantile): the trade-off curve between requests beyond
    capacity and pod-minutes."""
    out = []
    rule = judge.replay.rule
    for q in quantiles:
        r = judge.replay
        if q != rule.quantile:
            fixed = rule.model_copy(update={"quantile": q, "max_pod_minutes": None})
            r = replay(fixed, source, start, end, progress)
        out.append(
            judge.method(f"scaleahead q={q:g}", r.policy, r.point, q, predictive=r.predictive)
        )
    return out
