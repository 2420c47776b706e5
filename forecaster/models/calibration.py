"""Upper bands from a model's own past errors, and the level that makes q mean the peak.

The band is conformal: empirical quantiles of the chosen model's residuals by horizon,
scaled by a power of the forecast (constant, count-like or proportional noise) and, for
a band that follows volatility, by how much the series has been moving lately (surges
cluster in time: a band that widens after one catches the next, and narrows in calm
stretches to pay for it); the sharpest at equal coverage, or under a budget the one that
leaves the least demand uncovered. Its level is the lowest at which the served value,
max(actual, max of the band over the lead window), covered the window's realised peak a
`quantile` share of the time; adaptive conformal inference then moves that level online.
Under a pod-minutes budget, the quantile itself is the coverage of the highest level
whose served values cost no more than the budget allows, with the band shape whose
affordable values leave the least demand uncovered (`Budget.choose`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
from scipy.ndimage import maximum_filter1d

from forecaster.config import QUANTILE_RANGE
from forecaster.models.band import LEVELS, Band, level_index
from forecaster.models.base import Model, SeriesContext, ffill
from forecaster.models.volatility import volatility
from forecaster.policy import serve
from forecaster.times import DAY

SCALE_POWERS = (0.0, 0.5, 1.0)
"""How residuals may grow with the forecast: constant, like counts (sqrt), proportionally."""
CALIBRATION_SECONDS = 2 * DAY
"""History whose residuals calibrate the band and cost the budget: recent enough for what
a budget buys there to be what the next day costs, and two daily cycles long."""
MIN_ORIGINS = 10
"""Fewer calibration origins than this: no band is learnt (the quantile is used as is)."""
BUDGET_PARTS = 2
"""A budget holds on each of this many consecutive parts of the calibration origins (its
days), not only on their sum."""
ACI_RATE = 0.01
"""Adaptive conformal step: how fast the quantile level used reacts to misses."""
FALLBACK_QUANTILE = 0.9
"""The quantile under a pod-minutes budget where there is no backtest to choose one by."""
HEADROOM_LIMIT = 1.1
"""The most what is left of a budget may raise the served value by: the HPA's default
tolerance, within which a value above the pods' capacity moves no pod."""
FACTORS = np.concatenate(
    [np.linspace(0.0, 1.0, 20, endpoint=False), np.linspace(1.0, HEADROOM_LIMIT, 21)]
)
"""The factors a budget may put on a band: above 1, what is left of it after the level it
affords; below 1, where even the lowest level costs more than it allows, the band
lowered towards the actual (0: the actual alone, reactive scaling, the least any
forecast can cost)."""


def fixed_quantile(quantile: float | None) -> float:
    """The quantile where none is bought: a rule's fixed `quantile`, or FALLBACK_QUANTILE
    under a budget (`quantile` None)."""
    return FALLBACK_QUANTILE if quantile is None else quantile


def per_step_quantile(quantile: float, steps: int) -> float:
    """The per-step quantile at which `steps` consecutive steps all stay within their bands
    with probability `quantile`, were their misses independent (errors that move together
    make it conservative). For bands with no calibration history."""
    return float(quantile ** (1.0 / steps))


def nan_quantiles(z: np.ndarray, q: float | np.ndarray) -> np.ndarray:
    """np.nanquantile(z, q, axis=0) with its default (linear) method, for a 2-D z whose
    values are rounded to single precision (a band needs no more): one sort of the whole
    array instead of numpy's column-by-column loop (10x faster on calibration arrays; in
    single precision, half the time again). Shape (columns,) for a scalar q, (len(q),
    columns) otherwise; NaN where a column has no value."""
    ordered = np.sort(z.astype(np.float32), axis=0)  # NaN sort last
    n = (~np.isnan(z)).sum(axis=0)
    qs = np.atleast_1d(np.asarray(q, dtype=np.float64))
    position = qs[:, None] * np.maximum(n - 1, 0)[None, :]
    below = np.floor(position).astype(np.int64)
    above = np.minimum(below + 1, np.maximum(n - 1, 0)[None, :])
    t = position - below
    columns = np.arange(z.shape[1])[None, :]
    a = ordered[below, columns].astype(np.float64)
    b = ordered[above, columns].astype(np.float64)
    diff = b - a
    # numpy's lerp: from the nearer end, so that t = 0 and t = 1 give a and b exactly.
    out = np.where(t >= 0.5, b - diff * (1 - t), a + diff * t)
    out[:, n == 0] = np.nan
    return out[0] if np.ndim(q) == 0 else out


def candidate_bands(
    paths: np.ndarray, actual: np.ndarray, floor: float, moving: np.ndarray
) -> list[Band]:
    """A band for each residual scaling of SCALE_POWERS, and one that follows volatility
    (whose unit is the volatility alone), each where there are enough calibration
    origins, from forecasts `paths`, what happened, `actual` (both origins x horizon),
    and the series' volatility at each origin, `moving`."""
    calm = float(np.median(moving)) if len(moving) else 0.0
    shapes = [Band(np.empty((0, 0)), floor, power) for power in SCALE_POWERS]
    if calm > 0.0:
        shapes.append(Band(np.empty((0, 0)), floor, 0.0, calm))
    bands = []
    for shape in shapes:
        z = (actual - paths) / shape.scale(paths, moving[:, None])
        if np.isfinite(z).sum(axis=0).min() >= MIN_ORIGINS:
            bands.append(replace(shape, zgrid=nan_quantiles(z, LEVELS)))
    return bands


def sharpest(bands: list[Band], bt: Backtest, quantile: float) -> Band:
    """Of `bands` (at least one), the narrowest on average above the backtest's forecasts
    at `quantile` (the first of equals)."""
    moving = bt.moving[:, None]
    return min(
        bands,
        key=lambda band: float(np.nanmean(band.quantile(bt.paths, quantile, moving) - bt.paths)),
    )


def _first(ok: Callable[[int], bool], n: int = len(LEVELS)) -> int:
    """The lowest index below `n` (default: of LEVELS) at which `ok` holds, for an `ok`
    that only turns true as the index rises (each zgrid column is sorted); n if it
    never does."""
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid + 1, hi)
    return lo


@dataclass(frozen=True)
class Backtest:
    """A model's forecasts from consecutive calibration origins (origins x horizon), the
    actual at each origin and the realised peak of the lead window after it."""

    paths: np.ndarray
    actual: np.ndarray
    peak: np.ndarray  # NaN where a step of the window is missing
    window: int
    moving: np.ndarray  # the series' volatility at each origin

    @classmethod
    def of(cls, model: Model, ctx: SeriesContext, origins: np.ndarray, window: int) -> Backtest:
        ahead = origins[:, None] + np.arange(1, window + 1)[None, :]
        peak = ctx.y[ahead].max(axis=1)
        moving = volatility(ctx.y, ctx.step)[origins]
        return cls(model.paths(ctx, origins), ctx.y[origins], peak, window, moving)

    def served(self, band: Band) -> Callable[[int, float], np.ndarray]:
        """What the policy serves from each origin with `band` at LEVELS[j], raised by a
        factor: a function of (j, factor), the band's scale computed once."""
        # Steps by row (window x origins, contiguous): the max over a window is then a
        # reduction across a few long rows, several times faster than along short ones.
        assert band.rows is None, "a band costed at every level holds every row"
        head = np.ascontiguousarray(self.paths[:, : self.window].T)
        scale = band.scale(head, self.moving[None, :])
        missing = ~np.isfinite(head)  # window_peak's rule, applied once for every level
        holes = bool(missing.any())

        def at(j: int, factor: float) -> np.ndarray:
            upper = head + band.zgrid[j, : self.window, None] * scale
            if holes:
                upper[missing] = -np.inf
            return serve(self.actual, factor * upper.max(axis=0))

        return at

    def covered(self, served: np.ndarray) -> float:
        """The share of realised peaks that values `served` (one per origin) cover."""
        ok = np.isfinite(self.peak)
        return float(np.mean(self.peak[ok] <= served[ok]))

    def shortfall(self, served: np.ndarray) -> float:
        """How far realised peaks rose above values `served` (one per origin), on average
        over the origins (0 where covered): the demand those values left uncovered."""
        ok = np.isfinite(self.peak) & np.isfinite(served)
        return float(np.mean(np.maximum(self.peak[ok] - served[ok], 0.0))) if ok.any() else 0.0


def peak_level(bt: Backtest, band: Band, quantile: float) -> float:
    """The lowest level of LEVELS whose bands, served by the policy over the lead window,
    cover that window's realised peak at least `quantile` of the time."""
    if np.isfinite(bt.peak).sum() < MIN_ORIGINS:
        return quantile
    served = bt.served(band)
    j = _first(lambda j: bt.covered(served(j, 1.0)) >= quantile)
    return float(LEVELS[min(j, len(LEVELS) - 1)])  # the top, if none covers enough


def pod_time(served: np.ndarray, hold: float) -> float:
    """Pod-time an HPA spends on values `served` one per step, in units of its target,
    with as many pods as the values ask for (no rounding, no tolerance) and each held
    through the scale-down stabilization window, `hold` steps long (its seconds over the
    step: 5 at 1-minute steps, a half at 10-minute ones, where a drop takes effect half
    way through the step): the HPA's cost, free of its target. A value missing (NaN,
    -inf: nothing served) holds the pods."""
    values = ffill(served)
    if not len(values):
        return 0.0
    whole = int(hold)
    part = hold - whole
    held = _held(values, whole + 1)
    if part > 0.0:
        held = (1.0 - part) * held + part * _held(values, whole + 2)
    return float(held.sum())


def _held(values: np.ndarray, steps: int) -> np.ndarray:
    """The max over the `steps` steps ending at each (fewer at the start)."""
    if steps <= 1:
        return values
    return maximum_filter1d(values, steps, mode="nearest", origin=(steps - 1) // 2)


class Budget:
    """What a series may spend over its calibration origins: `ratio` x the pod-time that
    perfect foresight (serving each lead window's realised peak) would cost there,
    through an HPA whose scale-down stabilization window is `hold` steps long, on each
    of BUDGET_PARTS parts of them (a calm day may not spend what a surge left over: the
    next day may be calm too)."""

    def __init__(self, bt: Backtest, ratio: float, hold: float) -> None:
        self.bt = bt
        self.hold = hold
        self.known = int(np.isfinite(bt.peak).sum()) >= MIN_ORIGINS
        perfect = serve(bt.actual, bt.peak)
        self.parts = np.array_split(np.arange(len(perfect)), BUDGET_PARTS)
        self.bounds = [ratio * pod_time(perfect[p], hold) for p in self.parts]

    def _over(self, served: np.ndarray) -> bool:
        return any(
            pod_time(served[p], self.hold) > bound
            for p, bound in zip(self.parts, self.bounds, strict=True)
        )

    def choose(self, bands: list[Band]) -> tuple[Band, float, float]:
        """Of `bands` (at least one; the preferred first, kept at a tie), the one whose
        values at its highest level within budget leave the least of the lead windows'
        peaks above them (the demand an HPA would not have had capacity for), and the
        quantile it holds the series at: that level's coverage, within QUANTILE_RANGE (a
        budget under what the median costs buys a quantile under it: the cheap end of the
        trade-off, where the simple methods sit); and that least shortfall (inf when
        nothing is known)."""
        if not self.known:
            return bands[0], FALLBACK_QUANTILE, np.inf
        afforded = [self.afforded(band) for band in bands]
        shortfalls = [self.bt.shortfall(values) for values in afforded]
        best = min(range(len(bands)), key=lambda i: shortfalls[i])
        q = np.clip(self.bt.covered(afforded[best]), *QUANTILE_RANGE)
        return bands[best], float(q), shortfalls[best]

    def afforded(self, band: Band) -> np.ndarray:
        """What `band` serves at its highest level within budget (its lowest, if none is)."""
        served = self.bt.served(band)
        return served(max(_first(lambda j: self._over(served(j, 1.0))) - 1, 0), 1.0)

    def headroom(self, band: Band, level: float) -> float:
        """The factor of FACTORS by which `band` at `level` is raised (above 1) for what is
        left of the budget, or lowered (below 1) where even it costs more than the budget."""
        if not self.known:
            return 1.0
        j = level_index(level)
        served = self.bt.served(band)
        i = _first(lambda i: self._over(served(j, float(FACTORS[i]))), len(FACTORS))
        return float(FACTORS[max(i - 1, 0)])


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
