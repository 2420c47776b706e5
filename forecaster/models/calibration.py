"""Upper bands from a model's own past errors, and the level that makes q mean the peak.

The band is conformal: empirical quantiles of the chosen model's residuals by horizon,
scaled by a power of the forecast (constant, count-like or proportional noise, whichever
is sharpest at equal coverage). Its level is the lowest at which the served value,
max(actual, max of the band over the lead window), covered the window's realised peak a
`quantile` share of the time; adaptive conformal inference then moves that level online.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from forecaster.models.base import Model, SeriesContext
from forecaster.models.seasonality import DAY
from forecaster.policy import serve, window_peak

LEVELS = np.linspace(0.05, 0.995, 190)
"""Quantile levels at which each fit keeps its calibration residual quantiles."""
SCALE_POWERS = (0.0, 0.5, 1.0)
"""How residuals may grow with the forecast: constant, like counts (sqrt), proportionally."""
CALIBRATION_SECONDS = 3 * DAY
"""History whose residuals calibrate the band."""
MIN_ORIGINS = 10
"""Fewer calibration origins than this: no band is learnt (the quantile is used as is)."""
ACI_RATE = 0.01
"""Adaptive conformal step: how fast the quantile level used reacts to misses."""


def per_step_quantile(quantile: float, steps: int) -> float:
    """The per-step quantile at which `steps` consecutive steps all stay within their bands
    with probability `quantile`, were their misses independent (errors that move together
    make it conservative). For bands with no calibration history."""
    return float(quantile ** (1.0 / steps))


@dataclass(frozen=True)
class Band:
    """Residual quantiles by horizon at every level of LEVELS, in units of the scale
    max(forecast, floor) ** power."""

    zgrid: np.ndarray  # (len(LEVELS), horizon)
    floor: float
    power: float

    @classmethod
    def flat(cls, horizon: int, floor: float) -> Band:
        """No calibration history: an upper band equal to the mean."""
        return cls(np.zeros((len(LEVELS), horizon)), floor, 0.5)

    def scale(self, forecast: np.ndarray) -> np.ndarray:
        return np.maximum(forecast, self.floor) ** self.power

    def upper(self, mean: np.ndarray, level: float) -> np.ndarray:
        """The band's upper edge above `mean` at quantile `level` (interpolated)."""
        i = int(np.clip(np.searchsorted(LEVELS, level), 1, len(LEVELS) - 1))
        w = float(np.clip((level - LEVELS[i - 1]) / (LEVELS[i] - LEVELS[i - 1]), 0.0, 1.0))
        zq = (1 - w) * self.zgrid[i - 1] + w * self.zgrid[i]
        return mean + zq * self.scale(mean)


def nan_quantiles(z: np.ndarray, q: float | np.ndarray) -> np.ndarray:
    """np.nanquantile(z, q, axis=0) with its default (linear) method, for a 2-D z: one
    sort of the whole array instead of numpy's column-by-column loop (10x faster on
    calibration arrays). Shape (columns,) for a scalar q, (len(q), columns) otherwise;
    NaN where a column has no value."""
    ordered = np.sort(z, axis=0)  # NaN sort last
    n = (~np.isnan(z)).sum(axis=0)
    qs = np.atleast_1d(np.asarray(q, dtype=np.float64))
    position = qs[:, None] * np.maximum(n - 1, 0)[None, :]
    below = np.floor(position).astype(np.int64)
    above = np.minimum(below + 1, np.maximum(n - 1, 0)[None, :])
    t = position - below
    columns = np.arange(z.shape[1])[None, :]
    a, b = ordered[below, columns], ordered[above, columns]
    diff = b - a
    # numpy's lerp: from the nearer end, so that t = 0 and t = 1 give a and b exactly.
    out = np.where(t >= 0.5, b - diff * (1 - t), a + diff * t)
    out[:, n == 0] = np.nan
    return out[0] if np.ndim(q) == 0 else out


def fit_band(paths: np.ndarray, actual: np.ndarray, floor: float, quantile: float) -> Band:
    """The sharpest band (narrowest on average at `quantile`) of the residual scalings,
    from forecasts `paths` and what happened, `actual` (both origins x horizon)."""
    band = Band.flat(paths.shape[1], floor)
    best_width = np.inf
    for power in SCALE_POWERS:
        scale = np.maximum(paths, floor) ** power
        z = (actual - paths) / scale
        if np.isfinite(z).sum(axis=0).min() < MIN_ORIGINS:
            continue
        zq = nan_quantiles(z, quantile)
        width = float(np.nanmean(zq[None, :] * scale))
        if width < best_width:
            best_width = width
            band = Band(nan_quantiles(z, LEVELS), floor, power)
    return band


def peak_level(
    model: Model,
    ctx: SeriesContext,
    origins: np.ndarray,
    band: Band,
    quantile: float,
    window: int,
) -> float:
    """The lowest level of LEVELS whose bands, served by the policy over the lead window
    of `window` steps, cover that window's realised peak at least `quantile` of the time
    from the calibration `origins`."""
    y = ctx.y
    ahead = origins[:, None] + np.arange(1, window + 1)[None, :]
    peak = y[ahead].max(axis=1)
    ok = np.isfinite(peak)
    if ok.sum() < MIN_ORIGINS:
        return quantile
    paths = model.paths(ctx, origins[ok])[:, :window]
    scale = band.scale(paths)
    actual, peak = y[origins[ok]], peak[ok]

    def covers(j: int) -> bool:
        served = serve(actual, window_peak(paths + band.zgrid[j, :window] * scale, window))
        return float(np.mean(peak <= served)) >= quantile

    # Coverage only grows with the level (each zgrid column is sorted): bisect.
    lo, hi = 0, len(LEVELS) - 1
    if covers(lo):
        return float(LEVELS[0])
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if covers(mid) else (mid, hi)
    return float(LEVELS[hi])


@dataclass
class AdaptiveLevel:
    """Adaptive conformal inference for one series: how far the band level has moved from
    the fit's calibrated level, and the values served that wait for the lead window they
    covered to be realised (grid point ending the window -> value served)."""

    shift: float = 0.0
    pending: dict[int, float] = field(default_factory=dict)

    def level(self, base: float) -> float:
        """The level to forecast at: the calibrated `base`, moved, within LEVELS."""
        return float(np.clip(base + self.shift, LEVELS[0], LEVELS[-1]))

    def expect(self, window_end: int, served: float) -> None:
        """Remember a value served for the lead window ending at `window_end`."""
        self.pending[window_end] = served

    def absorb(
        self, y: np.ndarray, end: int, step: int, window: int, base: float, quantile: float
    ) -> None:
        """Judge every pending window realised by history y (ending at `end`): a peak above
        the value served raises the level by ACI_RATE x q, one within lowers it by
        ACI_RATE x (1 - q)."""
        for target in [t for t in self.pending if t <= end]:
            served = self.pending.pop(target)
            i = len(y) - 1 - (end - target) // step
            realised = y[max(0, i - window + 1) : i + 1] if 0 <= i < len(y) else y[:0]
            if len(realised) == window and np.isfinite(realised).all():
                miss = 1.0 if realised.max() > served else 0.0
                self.shift += ACI_RATE * (miss - (1.0 - quantile))
                self.shift = float(np.clip(self.shift, LEVELS[0] - base, LEVELS[-1] - base))
