"""The forecast engine of one rule: each series' fit, its refit schedule and band level.

What changes slowly (which cycles a series has, its profile, which candidate forecasts
it best, the spread of its errors) is refitted every `refit_every` seconds
(`SeriesModel.fit`); what changes every step (the level, Holt-Winters' state) is brought
up to date each cycle from the newest observations. Between refits, adaptive conformal
inference moves the band level after every lead window whose realised peak exceeded, or
stayed under, the value served for it. Series too young for the seasonal models go to
statsforecast, batched (`forecast_young`).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from forecaster.models.base import Fitted
from forecaster.models.calibration import AdaptiveLevel, per_step_quantile
from forecaster.models.series_model import SeriesFit, SeriesModel
from forecaster.models.short_history import ShortHistoryForecaster
from forecaster.policy import serve, window_peak

GOLDEN = 0.6180339887498949


@dataclass
class SeriesState:
    """What the engine holds for one series."""

    fit: SeriesFit  # from the last refit
    fitted: Fitted  # the fit's model, brought up to the newest data
    next_refit: int  # grid point from which a refit is due
    aci: AdaptiveLevel


@dataclass
class ForecastEngine:
    """Forecasts the series of one step grid, refitting each at most every `refit_every`."""

    step: int
    horizon: int  # steps
    lead: int  # seconds
    quantile: float
    refit_every: int = 3600
    series: dict[Hashable, SeriesState] = field(default_factory=dict)
    _registered: int = 0

    def __post_init__(self) -> None:
        self.model = SeriesModel(
            step=self.step, horizon=self.horizon, lead=self.lead, quantile=self.quantile
        )
        self.short_history = ShortHistoryForecaster()

    @property
    def window(self) -> int:
        """Steps of the lead window the served value covers."""
        return self.model.window

    def forecast(
        self, key: Hashable, y: np.ndarray, end: int
    ) -> tuple[np.ndarray, np.ndarray, SeriesFit]:
        """Mean and upper forecasts of one series for the steps after `end`, from its
        history y ending at `end`, and the fit they came from."""
        state = self.series.get(key)
        if state is None or end >= state.next_refit or end < state.fit.end:
            state = self._refit(key, state, y, end)
        state.aci.absorb(y, end, self.step, self.window, state.fit.level, self.quantile)
        level = state.aci.level(state.fit.level)
        mean, upper, state.fitted = self.model.forecast(state.fit, y, end, level, state.fitted)
        last = y[-1] if np.isfinite(y[-1]) and y[-1] >= 0 else 0.0
        served = serve(float(last), window_peak(upper, self.window))
        state.aci.expect(end + self.window * self.step, float(served))
        return mean, upper, state.fit

    def _refit(
        self, key: Hashable, state: SeriesState | None, y: np.ndarray, end: int
    ) -> SeriesState:
        fit = self.model.fit(y, end)
        # Series registered together would all refit in the same cycle; the first refit
        # of the n-th series comes after 1/2 to 1 of the period instead, spread evenly by
        # the golden-ratio sequence (by order, not labels: a replay of one series refits
        # on the same schedule whatever its labels).
        fraction = 1.0
        if state is None:
            fraction = 0.5 + 0.5 * ((self._registered * GOLDEN) % 1.0)
            self._registered += 1
        aci = state.aci if state is not None else AdaptiveLevel()
        new = SeriesState(fit, fit.fitted, end + int(self.refit_every * fraction), aci)
        self.series[key] = new
        return new

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
        with probability `quantile`."""
        return self.short_history.forecast(
            history,
            horizon=self.horizon,
            step=self.step,
            quantile=per_step_quantile(self.quantile, self.window),
        )
