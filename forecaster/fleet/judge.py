"""One series of a fleet judged as `scaleahead backtest` judges it: its last days replayed
through the same cycle, engine and serving policy at the default budget, with no peeking,
then scored with the baselines through the simulated HPA."""

from __future__ import annotations

import traceback
import warnings
from typing import Any

import numpy as np

from forecaster.config import Rule
from forecaster.evaluation.backtest import replay
from forecaster.evaluation.hpa_sim import HPASettings
from forecaster.evaluation.recorded import record
from forecaster.evaluation.report import summary
from forecaster.evaluation.scoring import Scores, default_capacity, score
from forecaster.fleet.inputs import SeriesInput
from forecaster.models.ladder import DAILY_MIN_HISTORY
from forecaster.selector import EVERYTHING
from forecaster.sources.trace import TraceSource
from forecaster.times import DAY

GAINS, NO_GAIN, SHORT, FAILED = "gains", "no gain", "not enough history", "failed"
"""The verdicts: fewer requests dropped than reactive scaling with no simpler method
better on both counts; not that; too little history to judge; an error (a bug: reported)."""
BASELINES = ("seasonal naive", "holt-winters", "crane dsp", "mstl")
VIEW_POINTS = 336
"""Points of a series' view in the report (two an hour over a week): demand at its peak,
each HPA's Ready capacity at its lowest within each."""


def judge_series(
    series: SeriesInput, days: int, budget: float | None = None, rule: Rule | None = None
) -> dict[str, Any]:
    """The series' row of the fleet report: its last `days` replayed under `rule` (the
    one it was read by; default: the defaults at its step), at `budget` if given, after
    at least a day of history; never raises."""
    try:
        return _judge(series, days, budget, rule)
    except Exception as err:  # one series' failure must not stop the fleet
        return {
            "id": series.id,
            "verdict": FAILED,
            "sentence": f"{type(err).__name__}: {err}",
            "traceback": traceback.format_exc(limit=8),
        }


def _judge(
    series: SeriesInput, days: int, budget: float | None, given: Rule | None
) -> dict[str, Any]:
    trace = series.trace
    rule = given or Rule.model_validate(
        {
            "name": "whatif",
            "query": "csv{<<.LabelMatchers>>}",
            "step": trace.resolution,
            "phase": trace.phase,
            "history": "15d",
        }
    )
    if budget is not None:
        rule = rule.changed(max_pod_minutes=budget, quantile=None)
    end = trace.end
    start = max(trace.start + DAILY_MIN_HISTORY, end - days * DAY)
    observed = np.isfinite(trace.counts).sum() * trace.resolution
    row: dict[str, Any] = {
        "id": series.id,
        "step_seconds": trace.resolution,
        "lead_seconds": rule.lead,
        "budget": rule.budget,
        "history_days": round(float(observed) / DAY, 2),
    }
    if end - start < DAY or observed < DAILY_MIN_HISTORY + DAY:
        return row | {
            "verdict": SHORT,
            "sentence": f"{observed / DAY:.1f} days observed: a fleet run needs more than "
            f"{(DAILY_MIN_HISTORY + DAY) / DAY:.1f} (a day to learn from, a day to judge on)",
        }
    source = record(TraceSource(trace, series.source_labels()), rule, EVERYTHING, start, end)
    result = replay(rule, source, start, end)
    capacity = default_capacity(result.actual)
    hpa = HPASettings(target_per_pod=capacity, capacity_per_pod=capacity, startup=rule.lead)
    scores = score(result, hpa)
    data = summary(result, scores, 0.0)
    by = {m["method"]: m for m in data["methods"]}
    ours, reactive = by["scaleahead"], by["reactive"]
    best = min((by[b] for b in BASELINES if b in by), key=lambda m: m["beyond_capacity_share"])
    demand = float(np.nansum(result.actual) * rule.step)  # requests in the judged days
    saved = (reactive["beyond_capacity_share"] - ours["beyond_capacity_share"]) * demand
    extra = ours["pod_minutes"] - reactive["pod_minutes"]
    beaten = any(
        m["beyond_capacity_share"] <= ours["beyond_capacity_share"]
        and m["pod_minutes"] <= ours["pod_minutes"]
        for m in (by[b] for b in BASELINES if b in by)
    )
    gains = ours["beyond_capacity_share"] < reactive["beyond_capacity_share"] and not beaten
    held = data["quantile_held"]
    return row | {
        "verdict": GAINS if gains else NO_GAIN,
        "sentence": data["verdict"],
        "days": round((end - start) / DAY, 2),
        "requests": demand,
        "reactive_dropped": reactive["beyond_capacity_share"],
        "reactive_pod_minutes": reactive["pod_minutes"],
        "scaleahead_dropped": ours["beyond_capacity_share"],
        "scaleahead_pod_minutes": ours["pod_minutes"],
        "best_baseline": best["method"],
        "best_baseline_dropped": best["beyond_capacity_share"],
        "best_baseline_pod_minutes": best["pod_minutes"],
        "perfect_pod_minutes": by["perfect foresight"]["pod_minutes"],
        "quantile_mean": None if held is None else held["mean"],
        "requests_saved": saved,
        "saved_per_extra_pod_minute": saved / extra if extra > 0 else None,
        "models": data["models"],
        "view": view(result.times, result.actual, scores, rule.step),
    }


def view(times: np.ndarray, demand: np.ndarray, scores: Scores, step: int) -> dict[str, Any]:
    """The series' judged days in at most VIEW_POINTS bins: the demand (requests a
    second) at its peak and the Ready capacity of reactive scaling and of scaleahead at
    their lowest within each bin, to 4 significant digits; `t0` the first bin's start
    and `dt` a bin's seconds."""
    size = max(1, -(-len(times) // VIEW_POINTS))
    by = {m.name: m.hpa for m in scores.methods}
    capacity = scores.hpa.capacity_per_pod

    def binned(values: np.ndarray, how: str) -> list[float | None]:
        pad = -len(values) % size
        rows = np.append(values, np.full(pad, np.nan)).reshape(-1, size)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            out = np.nanmax(rows, axis=1) if how == "max" else np.nanmin(rows, axis=1)
        return [None if not np.isfinite(v) else float(f"{v:.4g}") for v in out]

    def ready(method: str) -> np.ndarray:
        per_step = by[method].ready.reshape(len(times), -1).min(axis=1)
        return per_step.astype(np.float64) * capacity

    return {
        "t0": int(times[0]) - step,
        "dt": size * step,
        "demand": binned(demand, "max"),
        "reactive": binned(ready("reactive"), "min"),
        "scaleahead": binned(ready("scaleahead"), "min"),
    }
