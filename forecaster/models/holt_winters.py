"""Additive Holt-Winters (level and season, no trend), smoothing through every new step."""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from forecaster.models import seasonality as sz
from forecaster.models.base import Fitted, Model, SeriesContext


def smooth(
    y: np.ndarray,
    phase: np.ndarray,
    level: float,
    season: np.ndarray,
    alpha: float,
    gamma: float,
    record: bool = False,
) -> tuple[float, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Run the recursions through y from (level, season), which is not modified, in double
    precision, each seasonal value rounded to single precision as it is written (so that
    the season a fit keeps in float32, half the memory, is the season smoothed: a state
    brought over many points at once is the state brought over each). With `record`,
    also the level after each index and the seasonal value written at each index. Holes
    (NaN) leave the state as it is."""
    # On plain Python numbers, the slots in an array of C floats: indexing numpy arrays
    # element by element costs several times more.
    slots = array("f", season.tolist())
    level = float(level)
    levels: list[float] = []
    written: list[float] = []
    for v, k in zip(y.tolist(), phase.tolist(), strict=True):
        if v == v:  # not NaN
            new_level = alpha * (v - slots[k]) + (1.0 - alpha) * level
            slots[k] = gamma * (v - new_level) + (1.0 - gamma) * slots[k]
            level = new_level
        if record:
            levels.append(level)
            written.append(slots[k])
    out = np.frombuffer(slots, dtype=np.float32).copy()
    if not record:
        return level, out, None, None
    return level, out, np.array(levels), np.array(written)


@dataclass(frozen=True)
class HoltWinters(Model):
    """Holt-Winters started from the series' profile (its mean as the level, the rest as
    the season), with fixed smoothing `alpha` (level) and `gamma` (season)."""

    kind: ClassVar[str] = "hw"
    history_steps: ClassVar[int | None] = None
    period: int
    alpha: float
    gamma: float

    def _start(self, ctx: SeriesContext) -> tuple[float, np.ndarray]:
        prof = ctx.profiles[self.season]
        mean = float(np.nanmean(prof))
        return mean, prof - mean

    def paths(self, ctx: SeriesContext, origins: np.ndarray) -> np.ndarray:
        y, H = ctx.y, ctx.horizon
        p = self.period // ctx.step
        start = max(0, int(origins.min()) - 2 * p)  # warm up over two periods first
        mean, season0 = self._start(ctx)
        ph = sz.phases(ctx.end, len(y), ctx.step, p)
        seg = slice(start, int(origins.max()) + 1)
        _, _, levels, written = smooth(y[seg], ph[seg], mean, season0, self.alpha, self.gamma, True)
        assert levels is not None and written is not None
        # As known at origin o, the season of step o + h (h < one period) is what was
        # written one period earlier, at o + h - p: a slot changes only when its phase
        # comes round.
        n = len(y)
        fut_ph = sz.phases(ctx.end + H * ctx.step, n + H, ctx.step, p)
        future = ctx.future(origins)
        back = future - p - start
        season = np.where(back >= 0, written[np.maximum(back, 0)], season0[fut_ph[future]])
        return levels[origins - start][:, None] + season

    def fit(self, ctx: SeriesContext) -> HoltWintersFitted:
        """The state after smoothing through the last three periods of history."""
        n = len(ctx.y)
        p = self.period // ctx.step
        mean, season0 = self._start(ctx)
        start = max(0, n - 3 * p)
        ph = sz.phases(ctx.end, n, ctx.step, p)
        level, season, _, _ = smooth(
            ctx.y[start:], ph[start:], mean, season0, self.alpha, self.gamma
        )
        return HoltWintersFitted(self, level=level, season=season, end=ctx.end)


@dataclass(frozen=True, kw_only=True)
class HoltWintersFitted(Fitted):
    """Holt-Winters' state (level, season by phase, float32) as of grid point `end`."""

    level: float
    season: np.ndarray
    end: int

    def advance(self, y: np.ndarray, end: int, step: int) -> HoltWintersFitted:
        new = (end - self.end) // step
        if new <= 0:
            return self
        assert isinstance(self.model, HoltWinters)
        ph = sz.phases(end, min(new, len(y)), step, self.model.period // step)
        level, season, _, _ = smooth(
            y[-len(ph) :], ph, self.level, self.season, self.model.alpha, self.model.gamma
        )
        return HoltWintersFitted(self.model, level=level, season=season, end=end)

    def predict(self, y: np.ndarray, end: int, step: int, horizon: int) -> np.ndarray:
        assert isinstance(self.model, HoltWinters)
        fut = sz.phases(end + horizon * step, horizon, step, self.model.period // step)
        return self.level + self.season[fut]
