"""The forecast engine of one rule: each series' fit, its refit schedule and band level.

What changes slowly (which cycles a series has, its profile, which candidate forecasts
it best, the spread of its errors) is refitted every `refit_every` seconds
(`SeriesModel.fit`); what changes every step (the level, Holt-Winters' state) is brought
up to date from the newest observations, one grid point at a time. Between refits, under
a fixed quantile, adaptive conformal inference moves the band level after every lead
window whose realised peak exceeded, or stayed under, the value served for it. Under a
pod-minutes budget the level stays where the refit's costing put it: raising it to hold
coverage would spend beyond the budget (1.11x perfect foresight's on NASA for 1.10x).
Series too young for the seasonal models go to statsforecast, batched (`forecast_young`).

A series' state is a function of its history and the grid point alone, never of when
the engine started or which cycles it missed: refits fall on fixed grid points (each
series at its own offset within `refit_every`, from a hash of its key), a refit reads
the history only up to its grid point, and every grid point since then is replayed.
Two replicas reading the same Prometheus therefore serve the same values, and a
restarted one serves what it would have served had it never stopped.
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from forecaster.models.calibration import AdaptiveLevel, fixed_quantile, per_step_quantile
from forecaster.models.series_model import DEFAULT_STABILIZATION, SeriesFit, SeriesModel
from forecaster.models.short_history import ShortHistoryForecaster
from forecaster.policy import is_rate, last_rate, served_from, window_peak

PrepareMany = Callable[
    ["ForecastEngine", list[tuple[Hashable, np.ndarray, int]]], list["SeriesState | None"]
]
"""Runs `ForecastEngine.prepared` on an engine like the one given (with no series) for
many (key, history, end): each state, None where it raised."""

REFIT_STEPS = 60
"""Steps between refits at least; also the most a restart replays per series."""


def refit_offset(key: Hashable, every: int, step: int) -> int:
    """Where within each `every` seconds a series' refits fall: a grid offset from a
    hash of its key that is the same in every process (unlike `hash`)."""
    return (zlib.crc32(repr(key).encode()) % max(every // step, 1)) * step


@dataclass
class SeriesState:
    """What the engine holds for one series."""

    fit: SeriesFit  # from the last refit, its model's state brought up to `done`
    next_refit: int  # grid point from which a refit is due
    aci: AdaptiveLevel
    done: int  # the newest grid point forecast


@dataclass
class ForecastEngine:
    """Forecasts the series of one step grid, refitting each every `refit_every` seconds
    (default: an hour, or REFIT_STEPS steps if longer, so that the adaptive level, which
    starts afresh with each fit, sees enough lead windows to move)."""

    step: int
    horizon: int  # steps
    lead: int  # seconds
    quantile: float | None  # a fixed q, or None: each series' own under `budget`
    budget: float | None = None  # pod-minutes over perfect foresight's (see SeriesModel)
    refit_every: int = 0
    spread: bool = True  # refits at per-series offsets (else all on multiples of refit_every)
    # The scale-down stabilization window (seconds) of the HPAs a budget is costed
    # through: `scale_down` per series where its HPA is known, else `stabilization`.
    stabilization: int = DEFAULT_STABILIZATION
    scale_down: dict[Hashable, int] = field(default_factory=dict)
    series: dict[Hashable, SeriesState] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.refit_every:
            self.refit_every = max(3600, REFIT_STEPS * self.step)
        self.model = self._model(self.stabilization)
        self._models = {self.stabilization: self.model}
        self.short_history = ShortHistoryForecaster()

    def _model(self, stabilization: int) -> SeriesModel:
        return SeriesModel(
            step=self.step,
            horizon=self.horizon,
            lead=self.lead,
            quantile=self.quantile,
            budget=self.budget,
            stabilization=stabilization,
        )

    def model_for(self, key: Hashable) -> SeriesModel:
        """The model that fits a series: costed through its HPA's scale-down window."""
        window = self.scale_down.get(key, self.stabilization)
        model = self._models.get(window)
        if model is None:
            model = self._models[window] = self._model(window)
        return model

    @property
    def window(self) -> int:
        """Steps of the lead window the served value covers."""
        return self.model.window

    def forecast(
        self, key: Hashable, y: np.ndarray, end: int
    ) -> tuple[np.ndarray, np.ndarray, SeriesFit]:
        """Point (median) and upper forecasts of one series for the steps after `end`, from its
        history y ending at `end`, and the fit they came from (raise ValueError if the
        series cannot be forecast at `end`)."""
        state = self.series[key] if not self._due(key, end) else self._refit(key, y, end)
        if self.budget is None:
            # Replay every grid point since the last one forecast (a restart, a missed
            # cycle): the adaptive level depends on each value that would have been
            # served. Under a budget nothing does: the model's state is brought from the
            # last point to `end` in one go, through the same observations in order.
            for g in range(state.done + self.step, end, self.step):
                with contextlib.suppress(ValueError):  # no recent observation: nothing served
                    self._step(state, y[: len(y) - (end - g) // self.step], g)
        return self._step(state, y, end)

    def _step(
        self, state: SeriesState, y: np.ndarray, end: int
    ) -> tuple[np.ndarray, np.ndarray, SeriesFit]:
        adapt = self.budget is None
        if adapt:
            state.aci.absorb(y, end, self.step, self.window, state.fit.level, state.fit.quantile)
        level = state.aci.level(state.fit.level)
        point, upper, fitted = self.model.forecast(state.fit, y, end, level)
        if fitted is not state.fit.fitted:  # one state a series: the moved one replaces it
            state.fit = replace(state.fit, fitted=fitted)
        state.done = end
        if adapt:
            # What the policy serves right after this cycle (the current value may be
            # missing; then the newest one seen).
            actual = float(y[-1]) if is_rate(float(y[-1])) else None
            peak = float(window_peak(upper, self.window))
            served = served_from(actual, last_rate(y) or 0.0, peak)
            state.aci.expect(end + self.window * self.step, served)
        return point, upper, state.fit

    def _due(self, key: Hashable, end: int) -> bool:
        state = self.series.get(key)
        return state is None or end >= state.next_refit or end < state.done

    def _refit(self, key: Hashable, y: np.ndarray, end: int) -> SeriesState:
        """Fit on the history up to the series' latest refit point at or before `end`;
        the adaptive level starts afresh with each fit."""
        offset = refit_offset(key, self.refit_every, self.step) if self.spread else 0
        # On the grid of `end` (which may lie a phase past multiples of the step).
        at = end - (end - offset) % self.refit_every // self.step * self.step
        # The same stretch of history whenever the refit runs: from `at` back as far as
        # a history window that ends a whole refit period later still reaches.
        cut = len(y) - (end - at) // self.step
        keep = len(y) - self.refit_every // self.step
        fit = self.model_for(key).fit(y[max(0, cut - keep) if keep > 0 else 0 : cut], at)
        new = SeriesState(fit, at + self.refit_every, AdaptiveLevel(), at - self.step)
        self.series[key] = new
        return new

    def prepare(self, histories: dict[Hashable, np.ndarray], end: int, run: PrepareMany) -> None:
        """Forecast every series of `histories` (each ending at `end`) whose refit is due
        through `run` (worker processes, say): the refit, and every grid point since
        replayed, so that `forecast` at `end` finds its state there and only serves it
        (the same step again: the same values). A series that failed is left to
        `forecast`, which does it all and raises."""
        due = [key for key in histories if self._due(key, end)]
        if not due:  # most cycles: no refit falls on this grid point
            return
        jobs = [(key, histories[key], end) for key in due]
        for key, state in zip(due, run(replace(self, series={}), jobs), strict=True):
            if state is not None:
                self.series[key] = state

    def prepared(self, key: Hashable, y: np.ndarray, end: int) -> SeriesState:
        """The series' state after forecasting it at `end` from history y (raise as
        `forecast` does): what `prepare` runs, in a worker, on an engine of its own. y
        may be float32 (a history book's own array): it is forecast as float64."""
        self.forecast(key, np.asarray(y, dtype=np.float64), end)
        return self.series.pop(key)

    def level(self, key: Hashable) -> float:
        """The band level a series is forecast at now (calibrated, then adapted)."""
        state = self.series[key]
        return state.aci.level(state.fit.level)

    def forget(self, keep: set[Hashable]) -> None:
        """Drop the state of series no longer present."""
        for key in [k for k in self.series if k not in keep]:
            del self.series[key]

    def forecast_young(self, history: pd.DataFrame) -> pd.DataFrame:
        """Forecasts of series too young for `forecast` (see `ShortHistoryForecaster`),
        batched, with bands at the per-step quantile that covers the lead window's peak
        with probability `young_quantile`."""
        return self.short_history.forecast(
            history,
            horizon=self.horizon,
            step=self.step,
            quantile=per_step_quantile(self.young_quantile, self.window),
        )

    @property
    def young_quantile(self) -> float:
        """The quantile young series are forecast at (there is no backtest to buy one by)."""
        return fixed_quantile(self.quantile)
