"""Level models: no season, the forecast is flat at the series' current level."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from forecaster.models.base import Model, SeriesContext, ewma, ffill


@dataclass(frozen=True)
class Naive(Model):
    """The last observation, for every step ahead."""

    kind: ClassVar[str] = "naive"
    period: int = field(default=0, init=False)

    def paths(self, ctx: SeriesContext, origins: np.ndarray) -> np.ndarray:
        last = ffill(ctx.y)
        return np.repeat(last[origins][:, None], ctx.horizon, axis=1)


@dataclass(frozen=True)
class ExponentialLevel(Model):
    """Simple exponential smoothing: the exponentially weighted mean, flat ahead."""

    kind: ClassVar[str] = "level"
    alpha: float
    period: int = field(default=0, init=False)

    def paths(self, ctx: SeriesContext, origins: np.ndarray) -> np.ndarray:
        lv = ewma(ctx.y, self.alpha)
        return np.repeat(lv[origins][:, None], ctx.horizon, axis=1)
