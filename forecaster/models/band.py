"""A calibrated band: a model's residual quantiles by horizon at the levels of LEVELS, in
units that scale with the forecast and, for one that follows volatility, with how much
the series has been moving; and the quantile it gives about a forecast at a level."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from forecaster.config import QUANTILE_RANGE
from forecaster.models.volatility import VOLATILITY_RANGE

LEVELS = np.linspace(*QUANTILE_RANGE, 190)
"""Quantile levels at which each fit keeps its calibration residual quantiles: every
quantile a rule may ask for (forecaster.config.QUANTILE_RANGE)."""


def level_index(level: float) -> int:
    """The index of LEVELS at or just above `level`."""
    return min(int(np.searchsorted(LEVELS, level)), len(LEVELS) - 1)


def bracket(level: float) -> tuple[int, int]:
    """The indices of the two levels of LEVELS a quantile at `level` interpolates between."""
    i = int(np.clip(np.searchsorted(LEVELS, level), 1, len(LEVELS) - 1))
    return i - 1, i


@dataclass(frozen=True)
class Band:
    """Residual quantiles by horizon at levels of LEVELS (every one, or the `rows` kept),
    in units of the scale max(forecast, floor) ** power, times, for a band that follows
    volatility (`calm` > 0), the series' volatility at the origin over `calm`, its median
    over the calibration origins (within VOLATILITY_RANGE)."""

    zgrid: np.ndarray  # (len(LEVELS), horizon), or (len(rows), horizon)
    floor: float
    power: float
    calm: float = 0.0  # 0: a band of constant width in these units
    rows: tuple[int, ...] | None = None  # the indices of LEVELS zgrid holds (None: all)

    @classmethod
    def flat(cls, horizon: int, floor: float) -> Band:
        """No calibration history: an upper band equal to the mean."""
        return cls(np.zeros((len(LEVELS), horizon)), floor, 0.5)

    def kept(self, levels: tuple[float, ...] | None) -> Band:
        """The band as a fit keeps it between refits: only the rows that the quantiles at
        `levels` read (None: every row, for a level that moves), in single precision
        (their values lie between residuals rounded to single precision)."""
        if levels is None:
            return replace(self, zgrid=self.zgrid.astype(np.float32))
        rows = tuple(sorted({k for level in levels for k in bracket(level)}))
        return replace(self, zgrid=self.zgrid[list(rows)].astype(np.float32), rows=rows)

    def _row(self, i: int) -> np.ndarray:
        if self.rows is None:
            return self.zgrid[i].astype(np.float64)
        if i not in self.rows:
            raise ValueError(f"level {LEVELS[i]:.4f} is not among the levels this band kept")
        return self.zgrid[self.rows.index(i)].astype(np.float64)

    def scale(self, forecast: np.ndarray, moving: np.ndarray | float = 0.0) -> np.ndarray:
        """The band's unit about `forecast`, made at origins whose volatility is `moving`."""
        unit = np.maximum(forecast, self.floor) ** self.power
        if self.calm > 0.0:
            unit = unit * np.clip(np.asarray(moving) / self.calm, *VOLATILITY_RANGE)
        return unit

    def quantile(
        self, mean: np.ndarray, level: float, moving: np.ndarray | float = 0.0
    ) -> np.ndarray:
        """The forecast's quantile `level` (interpolated) about the model's forecast `mean`,
        made where the series' volatility is `moving`."""
        below, above = bracket(level)
        w = float(np.clip((level - LEVELS[below]) / (LEVELS[above] - LEVELS[below]), 0.0, 1.0))
        zq = (1 - w) * self._row(below) + w * self._row(above)
        return mean + zq * self.scale(mean, moving)
