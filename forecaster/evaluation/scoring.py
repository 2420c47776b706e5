"""Scoring a replay: accuracy at the lead and over the horizon, pinball loss, coverage of
the lead window's peak, and each method (scaleahead, reactive, the baselines, layered
HPAs) through the simulated HPA, against perfect foresight."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from forecaster.evaluation import baselines
from forecaster.evaluation.backtest import Progress, Replay, replay, scheduled
from forecaster.evaluation.hpa_sim import HPAResult, HPASettings, simulate
from forecaster.evaluation.recorded import RecordedSource
from forecaster.policy import serve

Baseline = Callable[[np.ndarray, np.ndarray, int, int], np.ndarray]
"""A baseline's forecasts: (y, origins, horizon, step) -> F[i, h - 1]."""


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
    methods.append(judge.method("scaleahead", r.before_floors, r.point, predictive=r.predictive))
    # Layers on top of the value: the schedules' floors, a CPU metric beside it.
    layered: dict[str, tuple[np.ndarray | None, float | None]] = {}
    if r.rule.calendar is not None:
        floor = r.rule.calendar.floor_array(r.history.labels, r.times, r.rule.lead, r.actual)
        layered["reactive + schedules"] = (scheduled(r.actual, floor), None)
        layered["scaleahead + schedules"] = (r.served, None)
    if cpu_target is not None:
        cpu = f"cpu {cpu_target * 100:g}%"
        layered[cpu] = (None, cpu_target)
        layered[f"{cpu} + scaleahead"] = (r.before_floors, cpu_target)
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
            fixed = rule.changed(quantile=q, max_pod_minutes=None)
            r = replay(fixed, source, start, end, progress)
        out.append(
            judge.method(
                f"scaleahead q={q:g}", r.before_floors, r.point, q, predictive=r.predictive
            )
        )
    return out
