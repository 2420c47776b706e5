"""What scaleahead would have done on a recorded history: the replay.

The replay drives the same ForecastCycle and serving policy as `serve`, with a simulated
clock: at each grid point t of [start, end] the cycle runs on its interval and the value
served at t is computed from the store and the actual at t. The source is recorded once
(`forecaster.evaluation.recorded`) and answers every fetch with data up to the fetch's end
only, so nothing after t is ever seen at t. Scoring is `forecaster.evaluation.scoring`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from forecaster.config import Rule
from forecaster.evaluation.recorded import RecordedSource
from forecaster.models.calibration import fixed_quantile
from forecaster.models.series_model import DEFAULT_STABILIZATION
from forecaster.policy import ServingPolicy
from forecaster.runtime.cycle import ForecastCycle
from forecaster.runtime.store import ForecastStore
from forecaster.sources.base import RangeSeries
from forecaster.times import SETTLE

T = TypeVar("T")
Progress = Callable[[Sequence[T], str], Iterable[T]]
"""Wraps the items of a named phase (a progress bar); the identity by default."""


@dataclass
class Replay:
    """Per grid point t of the replayed range: what was known and served at t."""

    rule: Rule
    times: np.ndarray  # grid points
    actual: np.ndarray  # rate at t (NaN: missing)
    served: np.ndarray  # value served at t (NaN: an error would have been answered)
    before_floors: np.ndarray  # the value served at t, before the rule's schedules
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
        return ServingPolicy(self.rule).window(None)

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
    stabilization: int = DEFAULT_STABILIZATION,
) -> Replay:
    """Run the forecast cycle and the serving policy over [start, end], a budget costed
    through an HPA whose scale-down stabilization window lasts `stabilization` seconds."""
    step, H = rule.step, rule.horizon_steps
    times = np.arange(rule.grid_ceil(start), rule.grid_floor(end) + 1, step, dtype=np.int64)
    store = ForecastStore()
    policy = ServingPolicy(rule)
    # One series: its refits on the hour, whatever its labels (CSV and Prometheus agree).
    cycle = ForecastCycle(
        [rule], source, store, spread_refits=False, live=False, stabilization=stabilization
    )
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
    for i in progress(range(n), f"replay at {rule.quantile_setting}"):
        t = int(times[i])
        if t >= next_cycle:
            cycle.run(rule, t + SETTLE)  # as live: a cycle at t + SETTLE ends at t
            next_cycle = t + rule.interval
        fc = store.get(rule.name, labels)
        s = policy.value(None if np.isnan(actual[i]) else float(actual[i]), fc, t)
        if s is not None:
            served[i] = s.value
            predictive[i] = s.predictive
        if fc is not None and policy.fresh(fc, t):
            models[fc.model] = models.get(fc.model, 0) + 1
            quantile[i] = np.nan if fc.quantile is None else fc.quantile
            want = t + step * np.arange(1, H + 1)
            j = np.searchsorted(fc.ds, want)
            ok = j < len(fc.ds)
            ok[ok] = fc.ds[j[ok]] == want[ok]
            point[i, ok] = fc.point[j[ok]]
            upper[i, ok] = fc.upper[j[ok]]
    before_floors = served
    floor = np.full(n, np.nan)
    if rule.calendar is not None:
        floor = rule.calendar.floor_array(labels, times, rule.lead, before_floors)
        served = scheduled(before_floors, floor)
    quantile[np.isnan(quantile)] = fixed_quantile(rule.quantile)  # reactive steps
    return Replay(
        rule,
        times,
        actual,
        served,
        before_floors,
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
