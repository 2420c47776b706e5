"""Seasonal models on a robust profile: the series' median shape over one period.

The profile (`forecaster.models.seasonality.profile`) is learnt at each refit and kept
with the fit; between refits only the level against it moves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from forecaster.models.base import Model, SeriesContext, ewma


@dataclass(frozen=True)
class SeasonalNaive(Model):
    """The value one period earlier (the profile where that is missing)."""

    kind: ClassVar[str] = "snaive"
    history_steps: ClassVar[int | None] = None
    period: int
    layers: tuple[int, ...] = ()

    def paths(self, ctx: SeriesContext, origins: np.ndarray) -> np.ndarray:
        y, n = ctx.y, len(ctx.y)
        prof = ctx.profile_at(self.season, ctx.horizon)
        future = ctx.future(origins)
        back = future - self.period // ctx.step
        vals = np.where(back < n, y[np.minimum(back, n - 1)], np.nan)
        return np.where(np.isfinite(vals), vals, prof[future])


@dataclass(frozen=True)
class ProfileAdditive(Model):
    """The profile plus an exponentially smoothed offset (alpha 1: the last value plus
    the profile's change since)."""

    kind: ClassVar[str] = "profile-add"
    period: int
    alpha: float
    layers: tuple[int, ...] = ()

    def paths(self, ctx: SeriesContext, origins: np.ndarray) -> np.ndarray:
        prof = ctx.profile_at(self.season, ctx.horizon)
        d = ewma(ctx.y - prof[: len(ctx.y)], self.alpha)
        return prof[ctx.future(origins)] + d[origins][:, None]


@dataclass(frozen=True)
class ProfileMultiplicative(Model):
    """The profile times an exponentially smoothed ratio to it."""

    kind: ClassVar[str] = "profile-mult"
    period: int
    alpha: float
    layers: tuple[int, ...] = ()

    def paths(self, ctx: SeriesContext, origins: np.ndarray) -> np.ndarray:
        prof = ctx.profile_at(self.season, ctx.horizon)
        n = len(ctx.y)
        base = np.maximum(prof[:n], 1e-3 * max(float(np.nanmean(prof)), 1e-12))
        lv = ewma(np.clip(ctx.y / base, 0.0, 10.0), self.alpha)
        return prof[ctx.future(origins)] * lv[origins][:, None]
