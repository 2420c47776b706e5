"""Fitting and forecasting one series on its step grid: the unit the engine batches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from forecaster.config import QUANTILE_RANGE
from forecaster.models import ladder, selection
from forecaster.models import seasonality as sz
from forecaster.models.band import Band, level_index
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
    Budget,
    candidate_bands,
    fixed_quantile,
    peak_level,
    sharpest,
)
from forecaster.models.volatility import volatility_now
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
    # The point forecast's own model and band where the least point error chose another
    # model than the outcome did (None: the point is the median of the served model).
    point: tuple[Fitted, Band] | None = None
    # The scale-down window (seconds) a budget was costed through (None: a fixed quantile).
    scale_down: int | None = None

    @property
    def model(self) -> Model:
        return self.fitted.model


DEFAULT_STABILIZATION = 300
"""Seconds an HPA holds its pods after the demand fell, where its own window is not known:
Kubernetes' default `behavior.scaleDown.stabilizationWindowSeconds`."""
OUTCOME_MARGIN = 0.9
"""A model chosen by outcome must leave at most this share of the demand the one with the
least point error leaves uncovered (else the point error's choice stands: a difference
within noise is no reason to give up the better median)."""
SHORTLIST = 2
"""Under a budget, how many of the candidates with the least point error are calibrated
and compared by the demand they leave uncovered at what the budget affords."""
ALWAYS_TRIED = ("snaive", "hw")
"""Kinds compared by that outcome whatever their point error: the simple methods a user
would otherwise run, which a point error ranks low where their noise hides their timing."""


class Evidence(NamedTuple):
    """A model's calibration backtest: its forecasts from every origin, what followed, and
    the bands of its errors there (one per residual scaling, at least one)."""

    bt: Backtest
    future: np.ndarray  # origins x horizon: what happened after each origin
    bands: list[Band]


class Calibrated(NamedTuple):
    """What calibrating one model bought: its band, quantile, level and headroom, and
    the demand its values left uncovered over the calibration origins (inf: not judged)."""

    band: Band
    quantile: float
    level: float
    headroom: float
    shortfall: float


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
        stabilization: int = DEFAULT_STABILIZATION,
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
        self.stabilization = stabilization
        self.hold = stabilization / step  # the scale-down window, in steps

    def fit(self, y: np.ndarray, end: int) -> SeriesFit:
        """Choose and calibrate a model from history y (NaN holes) ending at grid point end.

        Under a fixed quantile the model is the one with the least point error. Under a
        budget, of the SHORTLIST with the least point error (and seasonal naive and
        Holt-Winters, where offered), the one whose values at what the budget affords
        leave the least demand uncovered (the outcome users pay for) serves the band, if
        it beats the least point error's by OUTCOME_MARGIN; the point forecast stays the
        least point error's."""
        ctx, points, masked = self._prepare(y, end)
        candidates = self._candidates(ctx, points)
        held = self._held_out(ctx, candidates)
        ranked = selection.rank(candidates, held, self.window)
        best, error = ranked[0]
        floor = 0.05 * max(float(np.nanmean(ctx.y)), 1e-9)  # the least scale a band reads
        point: tuple[Fitted, Band] | None = None
        if self.budget is not None and len(ranked) > 1 and np.isfinite(error):
            shortlist = ranked[:SHORTLIST] + [
                (m, e) for m, e in ranked[SHORTLIST:] if m.kind in ALWAYS_TRIED
            ]
            evidence = [self._evidence(m, held, floor) for m, _ in shortlist]
            trials = [self._calibrate(ev, self.budget, floor) for ev in evidence]
            winner = int(np.argmin([t.shortfall for t in trials]))  # the first of equals
            if trials[winner].shortfall < OUTCOME_MARGIN * trials[0].shortfall:
                first = evidence[0]
                if first is not None:  # the point forecast stays the least error's
                    point = (best.fit(ctx), sharpest(first.bands, first.bt, 0.5).kept((0.5,)))
                best, error = shortlist[winner]
            else:
                winner = 0
            calibrated = trials[winner]
        else:
            calibrated = self._calibrate(self._evidence(best, held, floor), self.budget, floor)
        band, quantile, level, headroom, _ = calibrated
        return SeriesFit(
            best.fit(ctx),
            end,
            _seasonality(candidates),
            # Under a budget the level stays the fit's; a fixed quantile's moves (ACI).
            band.kept(None if self.budget is None else (level, 0.5) if point is None else (level,)),
            quantile,
            level,
            headroom,
            error,
            masked,
            point,
            self.stabilization if self.budget is not None else None,
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

    def _held_out(self, ctx: SeriesContext, candidates: list[Model]) -> SeriesContext:
        """The series as the candidates are tried and calibrated on it: its profiles learnt
        from the history before the first calibration origin, so that the errors a band
        is made of are those of forecasts of days the profile never saw."""
        n, H = len(ctx.y), self.horizon
        cut = max(self._first_origin(n) + 1, 1)
        past = SeriesContext(ctx.y[:cut], ctx.end - (n - cut) * self.step, self.step, H)
        held = SeriesContext(ctx.y, ctx.end, self.step, H)
        for c in candidates:
            if c.period and c.season not in held.profiles:
                held.profiles[c.season] = self._profile(past, c.period, c.layers)
        return held

    def _profile(self, ctx: SeriesContext, period: int, layers: tuple[int, ...]) -> np.ndarray:
        """The profile of a cycle (smoothed unless sub-daily: a burst is sharp), with the
        shorter cycles layered on it."""
        base = ctx.profiles.get((period, ()))
        if base is None:
            smooth = sz.PROFILE_SMOOTHING if period >= DAY else 0
            base = ctx.profiles[period, ()] = sz.profile(ctx.y, ctx.end, self.step, period, smooth)
        return sz.layered_profile(ctx.y, ctx.end, self.step, base, layers) if layers else base

    def _first_origin(self, n: int) -> int:
        """The index of the first calibration origin of a series of `n` steps: the last
        CALIBRATION_SECONDS of origins whose horizon is observed, as many as there are."""
        return (
            n - self.horizon - min(CALIBRATION_SECONDS // self.step, max(0, n - self.horizon - 1))
        )

    def _evidence(self, model: Model, ctx: SeriesContext, floor: float) -> Evidence | None:
        """The model's forecasts from every calibration origin and the bands of its errors
        there; None with too few origins (or errors) to learn a band from."""
        n, H = len(ctx.y), self.horizon
        first = self._first_origin(n)
        if n - H - first < MIN_ORIGINS:
            return None
        origins = np.arange(first, n - H)
        bt = Backtest.of(model, ctx, origins, self.window)
        future = ctx.y[ctx.future(origins)]
        bands = candidate_bands(bt.paths, future, floor, bt.moving)
        return Evidence(bt, future, bands) if bands else None

    def _calibrate(
        self, evidence: Evidence | None, asked: float | None, floor: float
    ) -> Calibrated:
        """From the model's evidence: the band, the quantile, the level at which the band
        covers the lead window's peak that often, the headroom what is left of a budget
        of `asked` buys on top of it (None: the rule's fixed quantile), and then the
        demand its values would have left uncovered."""
        fixed = fixed_quantile(self.quantile)
        if evidence is None:
            return Calibrated(Band.flat(self.horizon, floor), fixed, fixed, 1.0, np.inf)
        bt, bands = evidence.bt, evidence.bands
        band = sharpest(bands, bt, fixed)
        if asked is None:
            return Calibrated(band, fixed, peak_level(bt, band, fixed), 1.0, np.inf)
        budget = Budget(bt, asked, self.hold)
        band, q, shortfall = budget.choose([band, *[b for b in bands if b is not band]])
        level = peak_level(bt, band, q)
        headroom = budget.headroom(band, level)
        if headroom < 1.0:  # lowered: it covers less than the level does
            lowered = bt.served(band)(level_index(level), headroom)
            q = float(np.clip(bt.covered(lowered), *QUANTILE_RANGE))
        return Calibrated(band, q, level, headroom, shortfall)

    def forecast(
        self,
        fit: SeriesFit,
        y: np.ndarray,
        end: int,
        level: float | None = None,
    ) -> tuple[np.ndarray, np.ndarray, Fitted]:
        """(median, upper) for the H steps after `end` from history y ending at `end`, with
        the upper band at quantile `level` (default: the fit's), and the fitted model
        brought up to `end`."""
        y = as_rates(y)
        fitted = fit.fitted.advance(y, end, self.step)
        steps = fitted.model.history_steps
        recent = y if steps is None else y[-steps:]
        observed = recent[np.isfinite(recent)]
        if observed.size == 0:
            raise ValueError("no recent observation")
        mean = fitted.predict(recent, end, self.step, self.horizon)
        day = y[-(DAY // self.step) :]
        recent_max = max(float(np.nanmax(day)) if np.isfinite(day).any() else 0.0, fit.band.floor)
        mean = clip_mean(mean, float(observed[-1]), recent_max)
        moving = volatility_now(y, self.step)
        level = fit.level if level is None else level
        upper = fit.band.quantile(mean, level, moving) * fit.headroom
        # The model's forecast is a level, which spikes lift; the point forecast is the
        # band's median, the one with the least absolute error (of the model with the
        # least point error, where the outcome chose another for the band).
        point_mean, point_band = mean, fit.band
        if fit.point is not None:
            point_fit = fit.point[0].advance(y, end, self.step)
            point_steps = point_fit.model.history_steps
            point_recent = y if point_steps is None else y[-point_steps:]
            point_mean = point_fit.predict(point_recent, end, self.step, self.horizon)
            point_mean, point_band = (
                clip_mean(point_mean, float(observed[-1]), recent_max),
                fit.point[1],
            )
        median = point_band.quantile(point_mean, 0.5, moving)
        return (
            clip_band(median, point_mean, recent_max),
            clip_band(upper, mean, recent_max),
            fitted,
        )


def _seasonality(candidates: list[Model]) -> str:
    """The cycles offered, e.g. "weekly", "daily+1h", "1h" or "none"."""
    longest = max(candidates, key=lambda c: (c.period, len(c.layers)))
    if not longest.period:
        return "none"
    named = {DAY: "daily", WEEK: "weekly"}.get(longest.period)
    cycles = [named or format_duration(longest.period)]
    return "+".join(cycles + [format_duration(c) for c in longest.layers])
