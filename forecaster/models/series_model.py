"""Fitting and forecasting one series on its step grid: the unit the engine batches."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from forecaster.models import ladder, selection
from forecaster.models import seasonality as sz
from forecaster.models.base import (
    Fitted,
    Model,
    SeriesContext,
    clip_band,
    clip_mean,
)
from forecaster.models.calibration import (
    CALIBRATION_SECONDS,
    MIN_ORIGINS,
    Backtest,
    Band,
    Budget,
    candidate_bands,
    fixed_quantile,
    peak_level,
    sharpest,
)
from forecaster.policy import as_rates, lead_window
from forecaster.times import DAY, WEEK, format_duration


@dataclass(frozen=True)
class SeriesFit:
    """What a refit learned about one series."""

    fitted: Fitted  # the chosen model, fitted
    end: int  # grid point of the newest history it was fitted on
    seasonality: str  # the cycles offered to model choice: "none", "daily", "weekly+1h"...
    band: Band
    quantile: float  # share of lead-window peaks the served value is to cover
    level: float  # band level at which the served value covers the peak q of the time
    headroom: float  # factor on the band: what a budget left after its quantile bought
    recent_error: float  # backtest MAE over the steps the served value covers
    masked: float  # fraction of the history masked as outage

    @property
    def model(self) -> Model:
        return self.fitted.model


class SeriesModel:
    """Fits a series (model choice, band, quantile, level) and forecasts it from a fit.

    The quantile is `quantile` if given, else chosen per series so that its served values
    cost at most `budget` x perfect foresight's pod-minutes over the calibration history,
    through an HPA whose scale-down stabilization lasts `stabilization` seconds."""

    def __init__(
        self,
        *,
        step: int,
        horizon: int,
        lead: int,
        quantile: float | None,
        budget: float | None = None,
        stabilization: int = 300,
    ) -> None:
        if (quantile is None) == (budget is None):
            raise ValueError(
                "give one of a quantile and a pod-minutes budget: not both, not neither"
            )
        self.step = step
        self.horizon = horizon  # steps
        self.window = lead_window(lead, step)
        self.quantile = quantile
        self.budget = budget
        self.stabilization = stabilization // step + 1  # steps a held value spans

    def fit(self, y: np.ndarray, end: int) -> SeriesFit:
        """Choose and calibrate a model from history y (NaN holes) ending at grid point end."""
        ctx, points, masked = self._prepare(y, end)
        candidates = self._candidates(ctx, points)
        best, error = selection.choose(candidates, ctx, self.window)
        band, quantile, level, headroom = self._calibrate(best, ctx)
        return SeriesFit(
            best.fit(ctx),
            end,
            _seasonality(candidates),
            band,
            quantile,
            level,
            headroom,
            error,
            masked,
        )

    def _prepare(self, y: np.ndarray, end: int) -> tuple[SeriesContext, int, float]:
        """The series from its first observation, outages masked; its number of
        observations and the share masked."""
        y = as_rates(y)
        observed = np.flatnonzero(np.isfinite(y))
        if observed.size == 0:
            raise ValueError("no observation")
        y = y[observed[0] :]
        ctx = SeriesContext(y.copy(), end, self.step, self.horizon)
        masked = 0.0
        if ladder.can_mask_outages(len(y) * self.step):
            rough = sz.profile(y, end, self.step, DAY)
            ph = sz.phases(end, len(y), self.step, DAY // self.step)
            mask = sz.outage_mask(y, rough[ph], self.step)
            masked = float(mask.mean())
            ctx.y[mask] = np.nan
        return ctx, int(observed.size), masked

    def _candidates(self, ctx: SeriesContext, points: int) -> list[Model]:
        """The ladder's candidates for this series, with the profiles they read."""
        strengths = {
            period: sz.seasonal_strength(ctx.y, self.step, period) for period, _ in ladder.PERIODS
        }
        sub_daily = tuple(sz.sub_daily_periods(ctx.y, ctx.end, self.step))
        candidates = ladder.candidates_for(len(ctx.y) * self.step, strengths, points, sub_daily)
        for c in candidates:
            if c.period and c.season not in ctx.profiles:
                ctx.profiles[c.season] = self._profile(ctx, c.period, c.layers)
        return candidates

    def _profile(self, ctx: SeriesContext, period: int, layers: tuple[int, ...]) -> np.ndarray:
        """The profile of a cycle (smoothed unless sub-daily: a burst is sharp), with the
        shorter cycles layered on it."""
        base = ctx.profiles.get((period, ()))
        if base is None:
            smooth = sz.PROFILE_SMOOTHING if period >= DAY else 0
            base = ctx.profiles[period, ()] = sz.profile(ctx.y, ctx.end, self.step, period, smooth)
        return sz.layered_profile(ctx.y, ctx.end, self.step, base, layers) if layers else base

    def _calibrate(self, model: Model, ctx: SeriesContext) -> tuple[Band, float, float, float]:
        """The band from the model's errors over the calibration history, the quantile,
        the level at which the band covers the lead window's peak that often, and the
        headroom what is left of a budget buys on top of it."""
        n, H = len(ctx.y), self.horizon
        n_origins = min(CALIBRATION_SECONDS // self.step, max(0, n - H - 1))
        floor = 0.05 * max(float(np.nanmean(ctx.y)), 1e-9)
        fixed = fixed_quantile(self.quantile)
        if n_origins < MIN_ORIGINS:
            return Band.flat(H, floor), fixed, fixed, 1.0
        origins = np.arange(n - H - n_origins, n - H)
        bt = Backtest.of(model, ctx, origins, self.window)
        bands = candidate_bands(bt.paths, ctx.y[ctx.future(origins)], floor)
        if not bands:
            return Band.flat(H, floor), fixed, fixed, 1.0
        band = sharpest(bands, bt.paths, fixed)
        if self.budget is None:
            return band, fixed, peak_level(bt, band, fixed), 1.0
        budget = Budget(bt, self.budget, self.stabilization)
        band, q = budget.choose([band, *[b for b in bands if b is not band]])
        level = peak_level(bt, band, q)
        return band, q, level, budget.headroom(band, level)

    def forecast(
        self,
        fit: SeriesFit,
        y: np.ndarray,
        end: int,
        level: float | None = None,
        fitted: Fitted | None = None,
    ) -> tuple[np.ndarray, np.ndarray, Fitted]:
        """(median, upper) for the H steps after `end` from history y ending at `end`, with
        the upper band at quantile `level` (default: the fit's), and the fitted model
        brought up to `end` (`fitted`: a later state of fit.fitted to start from)."""
        y = as_rates(y)
        start = fit.fitted if fitted is None else fitted
        fitted = start.advance(y, end, self.step)
        steps = fitted.model.history_steps
        recent = y if steps is None else y[-steps:]
        observed = recent[np.isfinite(recent)]
        if observed.size == 0:
            raise ValueError("no recent observation")
        mean = fitted.predict(recent, end, self.step, self.horizon)
        day = y[-(DAY // self.step) :]
        recent_max = max(float(np.nanmax(day)) if np.isfinite(day).any() else 0.0, fit.band.floor)
        mean = clip_mean(mean, float(observed[-1]), recent_max)
        upper = fit.band.quantile(mean, fit.level if level is None else level) * fit.headroom
        # The model's forecast is a level, which spikes lift; the point forecast is the
        # band's median, the one with the least absolute error.
        median = fit.band.quantile(mean, 0.5)
        return clip_band(median, mean, recent_max), clip_band(upper, mean, recent_max), fitted


def _seasonality(candidates: list[Model]) -> str:
    """The cycles offered, e.g. "weekly", "daily+1h", "1h" or "none"."""
    longest = max(candidates, key=lambda c: (c.period, len(c.layers)))
    if not longest.period:
        return "none"
    named = {DAY: "daily", WEEK: "weekly"}.get(longest.period)
    cycles = [named or format_duration(longest.period)]
    return "+".join(cycles + [format_duration(c) for c in longest.layers])
