"""The forecast engine: per-series model choice by backtest, hourly refits, cheap updates.

What changes slowly (which cycles a series has, its seasonal profile, which candidate
model forecasts it best, the spread of its errors by horizon) is fitted every
`refit_every` seconds. What changes every step (the level) is recomputed each cycle from
the newest observations in O(window). Upper bands are conformal: empirical quantiles of
the chosen model's own past errors at each horizon, scaled by a power of the forecast
(chosen per series as the sharpest at equal coverage) so that a quiet night and a busy
afternoon get intervals of the right width. Their level is the one at which the served
value, max(actual, max of the band over the lead window), covered the window's realised
peak a `quantile` share of the time, and it is adapted online to misses of that peak.

statsforecast's ETS refuses seasons longer than 24 steps and its MSTL takes minutes per
series at one-minute steps, so the seasonal candidates here are vectorised numpy; the
short-history rung (under a day) and the data conventions are statsforecast's.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field

import numpy as np
from scipy.signal import lfilter

from forecaster import seasonality as sz

ABSURD_FACTOR = 10.0
"""No forecast exceeds this multiple of the series' maximum over the last day."""
MIN_POINTS = 30
"""Fewer observations than this: the last value is the forecast."""
LEVEL_WINDOW = 2000
"""Steps of history the per-cycle level update reads (enough for alpha >= 0.005)."""
CALIBRATION_SECONDS = 3 * sz.DAY
EVALUATION_SECONDS = sz.DAY
LEVELS = np.linspace(0.5, 0.995, 100)
"""Quantile levels at which each fit keeps its calibration residual quantiles."""
ACI_RATE = 0.01
"""Adaptive conformal step: how fast the quantile level used reacts to misses."""


@dataclass(frozen=True)
class Candidate:
    """One model a series may be forecast with."""

    kind: str  # naive, level, profile-add, profile-mult, snaive, hw
    period: int = 0  # seconds; 0 for non-seasonal kinds
    alpha: float = 0.0  # level smoothing
    gamma: float = 0.0  # seasonal smoothing (hw)

    @property
    def name(self) -> str:
        season = {0: "", sz.DAY: "/day", sz.WEEK: "/week"}.get(self.period, f"/{self.period}s")
        return f"{self.kind}{season}"


@dataclass
class SeriesFit:
    """What the hourly refit learned about one series."""

    candidate: Candidate
    fitted_end: int
    seasonality: str  # "none", "daily", "weekly": what detection found
    zgrid: np.ndarray  # (len(LEVELS), H) quantiles of scaled residuals by horizon
    scale_floor: float
    scale_power: float  # residuals scale with forecast ** scale_power
    level: float  # per-step band level at which the served value covers the peak q of the time
    recent_error: float  # backtest MAE over the steps the served value covers (series' units)
    masked: float  # fraction of the history masked as outage
    profile: np.ndarray | None = None
    hw_level: float = 0.0
    hw_season: np.ndarray | None = None  # indexed by phase
    hw_end: int = 0  # grid point the Holt-Winters state has absorbed
    next_refit: int = 0  # grid point from which a refit is due


def ffill(x: np.ndarray) -> np.ndarray:
    """Forward-fill NaNs (leading NaNs take the first finite value)."""
    ok = np.isfinite(x)
    if ok.all() or not ok.any():
        return x if ok.any() else np.zeros_like(x)
    idx = np.where(ok, np.arange(len(x)), 0)
    np.maximum.accumulate(idx, out=idx)
    out = x[idx]
    first = int(np.argmax(ok))
    out[:first] = x[first]
    return out


def _ewma(x: np.ndarray, alpha: float) -> np.ndarray:
    """Exponentially weighted mean at every index; holes carry the last value."""
    x = ffill(x)
    out, _ = lfilter([alpha], [1.0, alpha - 1.0], x, zi=[(1.0 - alpha) * x[0]])
    return np.asarray(out)


SCALE_POWERS = (0.0, 0.5, 1.0)
"""How residuals may grow with the forecast: constant, like counts (sqrt), proportionally."""


def _scale(f: np.ndarray, floor: float, power: float) -> np.ndarray:
    return np.maximum(f, floor) ** power


@dataclass
class _Context:
    """One series prepared for fitting: clean values, profiles and phases."""

    y: np.ndarray  # masked values are NaN
    end: int
    step: int
    horizon: int
    profiles: dict[int, np.ndarray] = field(default_factory=dict)


def _profile_at(ctx: _Context, period: int, n_future: int) -> np.ndarray:
    """The period's profile at every index of y plus n_future steps ahead."""
    p = period // ctx.step
    ph = sz.phases(ctx.end + n_future * ctx.step, len(ctx.y) + n_future, ctx.step, p)
    return ctx.profiles[period][ph]


def _paths(c: Candidate, ctx: _Context, origins: np.ndarray) -> np.ndarray:
    """Mean forecasts F[i, h-1] for h = 1..H made at each origin index (data up to it)."""
    y, H = ctx.y, ctx.horizon
    hs = np.arange(1, H + 1)
    if c.kind == "naive":
        last = ffill(y)
        return np.repeat(last[origins][:, None], H, axis=1)
    if c.kind == "level":
        lv = _ewma(y, c.alpha)
        return np.repeat(lv[origins][:, None], H, axis=1)
    prof = _profile_at(ctx, c.period, H)
    n = len(y)
    future = origins[:, None] + hs[None, :]
    if c.kind == "profile-add":
        d = _ewma(y - prof[:n], c.alpha)
        return prof[future] + d[origins][:, None]
    if c.kind == "profile-mult":
        base = np.maximum(prof[:n], 1e-3 * max(float(np.nanmean(prof)), 1e-12))
        ratio = np.clip(y / base, 0.0, 10.0)
        lv = _ewma(ratio, c.alpha)
        return prof[future] * lv[origins][:, None]
    if c.kind == "snaive":
        p = c.period // ctx.step
        back = future - p
        ok = back < n
        vals = np.where(ok, y[np.minimum(back, n - 1)], np.nan)
        return np.where(np.isfinite(vals), vals, prof[future])
    if c.kind == "hw":
        return _hw_paths(c, ctx, origins, prof)
    raise ValueError(f"unknown candidate kind {c.kind}")


def _hw_run(
    y: np.ndarray,
    phase: np.ndarray,
    level: float,
    season: np.ndarray,
    alpha: float,
    gamma: float,
    record: bool = False,
) -> tuple[float, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Additive Holt-Winters (no trend) through y. With `record`, also the level after
    each index and the seasonal value written at each index. Holes leave the state."""
    season = season.copy()
    levels = np.empty(len(y)) if record else None
    written = np.empty(len(y)) if record else None
    for i in range(len(y)):
        v = y[i]
        k = phase[i]
        if v == v:  # not NaN
            new_level = alpha * (v - season[k]) + (1.0 - alpha) * level
            season[k] = gamma * (v - new_level) + (1.0 - gamma) * season[k]
            level = new_level
        if levels is not None and written is not None:
            levels[i] = level
            written[i] = season[k]
    return level, season, levels, written


def _hw_paths(c: Candidate, ctx: _Context, origins: np.ndarray, prof: np.ndarray) -> np.ndarray:
    y, H = ctx.y, ctx.horizon
    p = c.period // ctx.step
    start = max(0, int(origins.min()) - 2 * p)  # warm up over two periods before the first origin
    mean = float(np.nanmean(ctx.profiles[c.period]))
    season0 = ctx.profiles[c.period] - mean
    ph = sz.phases(ctx.end, len(y), ctx.step, p)
    seg = slice(start, int(origins.max()) + 1)
    _, _, levels, written = _hw_run(y[seg], ph[seg], mean, season0, c.alpha, c.gamma, True)
    assert levels is not None and written is not None
    # As known at origin o, the season of step o + h (h < one period) is what was written
    # one period earlier, at o + h - p: each slot changes only when its phase comes round.
    n = len(y)
    fut_ph = sz.phases(ctx.end + H * ctx.step, n + H, ctx.step, p)
    future = origins[:, None] + np.arange(1, H + 1)[None, :]
    back = future - p - start
    season = np.where(back >= 0, written[np.maximum(back, 0)], season0[fut_ph[future]])
    return levels[origins - start][:, None] + season


def candidates_for(observed_seconds: float, strengths: dict[int, float]) -> list[Candidate]:
    """The cold-start ladder: level models first, a daily profile with a day of history,
    a weekly one with two weeks; a cycle must be detected once it can be measured."""
    out = [Candidate("naive"), Candidate("level", alpha=0.1), Candidate("level", alpha=0.3)]
    for period, need in ((sz.DAY, sz.DAY + 3600), (sz.WEEK, 2 * sz.WEEK)):
        if observed_seconds < need:
            continue
        measurable = observed_seconds >= 2 * period
        if measurable and strengths.get(period, 0.0) < sz.SEASONAL_MIN_ACF:
            continue
        out += [Candidate("snaive", period)]
        out += [Candidate("profile-add", period, alpha=a) for a in (0.05, 0.2, 0.6, 1.0)]
        out += [Candidate("profile-mult", period, alpha=a) for a in (0.05, 0.2)]
        if period == sz.DAY:
            out.append(Candidate("hw", period, alpha=0.1, gamma=0.05))
    return out


class SeriesModel:
    """Fits and forecasts one series on its step grid (the unit the engine batches)."""

    def __init__(self, *, step: int, horizon: int, lead: int, quantile: float) -> None:
        self.step = step
        self.horizon = horizon  # steps
        self.window = lead // step + 1  # steps whose max the served value covers
        self.quantile = quantile

    def fit(self, y: np.ndarray, end: int) -> SeriesFit:
        """Choose and calibrate a model from history y (NaN holes) ending at grid point end."""
        y = np.where(np.isfinite(y) & (y >= 0), y, np.nan)
        observed = np.flatnonzero(np.isfinite(y))
        if observed.size == 0:
            raise ValueError("no observation")
        y = y[observed[0] :]
        ctx = _Context(y.copy(), end, self.step, self.horizon)
        span = len(y) * self.step
        masked = 0.0
        if span >= sz.DAY + 3600:
            rough = sz.profile(y, end, self.step, sz.DAY)
            ph = sz.phases(end, len(y), self.step, sz.DAY // self.step)
            mask = sz.outage_mask(y, rough[ph], self.step)
            masked = float(mask.mean())
            ctx.y[mask] = np.nan
        strengths = {p: sz.seasonal_strength(ctx.y, self.step, p) for p in (sz.DAY, sz.WEEK)}
        cands = (
            candidates_for(span, strengths) if observed.size >= MIN_POINTS else [Candidate("naive")]
        )
        for c in cands:
            if c.period and c.period not in ctx.profiles:
                ctx.profiles[c.period] = sz.profile(ctx.y, end, self.step, c.period)
        seasonality = (
            "weekly"
            if any(c.period == sz.WEEK for c in cands)
            else ("daily" if any(c.period == sz.DAY for c in cands) else "none")
        )

        n = len(y)
        H = self.horizon
        eval_n = min(EVALUATION_SECONDS // self.step, max(0, (n - H) // 3))
        cal_n = min(CALIBRATION_SECONDS // self.step, max(0, n - H - 1))
        best, best_err = cands[0], np.inf
        if eval_n >= 10 and len(cands) > 1:
            # Judged on the steps the served value covers, (t, t + lead + step]: the point
            # error there sets the width of the calibrated band, and so what capacity
            # the served value buys. (Scoring the max over the window instead rewards
            # noisy forecasts, whose own noise imitates the realised max.)
            origins = np.arange(n - H - eval_n, n - H)
            ahead = origins[:, None] + np.arange(1, self.window + 1)[None, :]
            actual = ctx.y[ahead]
            for c in cands:
                paths = _paths(c, ctx, origins)[:, : self.window]
                err = float(np.nanmean(np.abs(paths - actual)))
                if not np.isfinite(err):
                    err = np.inf
                if err < best_err:
                    best, best_err = c, err
        floor = 0.05 * max(float(np.nanmean(ctx.y)), 1e-9)
        zgrid = np.zeros((len(LEVELS), H))
        power = 0.5
        if cal_n >= 10:
            origins = np.arange(n - H - cal_n, n - H)
            paths = _paths(best, ctx, origins)
            future = origins[:, None] + np.arange(1, H + 1)[None, :]
            # Of the residual scalings, keep the sharpest: the narrowest mean band at the
            # quantile, each band covering the same share of the calibration window.
            best_width = np.inf
            for p in SCALE_POWERS:
                scale = _scale(paths, floor, p)
                z = (ctx.y[future] - paths) / scale
                if np.isfinite(z).sum(axis=0).min() < 10:
                    continue
                zq = np.nanquantile(z, self.quantile, axis=0)
                width = float(np.nanmean(zq[None, :] * scale))
                if width < best_width:
                    best_width, power = width, p
                    zgrid = np.nanquantile(z, LEVELS, axis=0)
        level = self.quantile
        if cal_n >= 10:
            level = self._peak_level(best, ctx, n - H - cal_n, n - H, zgrid, floor, power)
        fit = SeriesFit(best, end, seasonality, zgrid, floor, power, level, best_err, masked)
        if best.period:
            fit.profile = ctx.profiles[best.period].astype(np.float32)  # kept per series
        if best.kind == "hw":
            p = best.period // self.step
            prof = ctx.profiles[best.period]
            mean = float(np.nanmean(prof))
            start = max(0, n - 3 * p)
            ph = sz.phases(end, n, self.step, p)
            fit.hw_level, fit.hw_season, _, _ = _hw_run(
                ctx.y[start:], ph[start:], mean, prof - mean, best.alpha, best.gamma
            )
            fit.hw_end = end
        return fit

    def _peak_level(
        self,
        c: Candidate,
        ctx: _Context,
        lo: int,
        hi: int,
        zgrid: np.ndarray,
        floor: float,
        power: float,
    ) -> float:
        """The lowest level of the grid whose per-step bands, served as
        max(actual, max of the band over the lead window), cover the realised peak of that
        window at least `quantile` of the time over the calibration origins [lo, hi)."""
        y, w = ctx.y, self.window
        origins = np.arange(lo, hi)
        ahead = origins[:, None] + np.arange(1, w + 1)[None, :]
        peak = y[ahead].max(axis=1)
        ok = np.isfinite(peak)
        if ok.sum() < 10:
            return self.quantile
        paths = _paths(c, ctx, origins[ok])[:, :w]
        scale = _scale(paths, floor, power)
        actual, peak = y[origins[ok]], peak[ok]

        def covers(j: int) -> bool:
            served = np.fmax(actual, (paths + zgrid[j, :w] * scale).max(axis=1))
            return float(np.mean(peak <= served)) >= self.quantile

        # Coverage only grows with the level (each zgrid column is sorted): bisect.
        lo_j, hi_j = 0, len(LEVELS) - 1
        if covers(lo_j):
            return float(LEVELS[0])
        while hi_j - lo_j > 1:
            mid = (lo_j + hi_j) // 2
            lo_j, hi_j = (lo_j, mid) if covers(mid) else (mid, hi_j)
        return float(LEVELS[hi_j])

    def forecast(
        self, fit: SeriesFit, y: np.ndarray, end: int, level: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(mean, upper) for the H steps after `end`, from history y ending at `end`;
        the upper band at quantile `level` of the calibration residuals (default: the
        fit's peak-calibrated level)."""
        c, H = fit.candidate, self.horizon
        y = np.where(np.isfinite(y) & (y >= 0), y, np.nan)
        recent = (
            y[-LEVEL_WINDOW:] if c.kind in ("naive", "level", "profile-add", "profile-mult") else y
        )
        observed = recent[np.isfinite(recent)]
        if observed.size == 0:
            raise ValueError("no recent observation")
        if c.kind == "hw":
            assert fit.hw_season is not None
            p = c.period // self.step
            new = (end - fit.hw_end) // self.step
            if new > 0:
                ph = sz.phases(end, min(new, len(y)), self.step, p)
                fit.hw_level, fit.hw_season, _, _ = _hw_run(
                    y[-len(ph) :], ph, fit.hw_level, fit.hw_season, c.alpha, c.gamma
                )
                fit.hw_end = end
            fut = sz.phases(end + H * self.step, H, self.step, p)
            mean = fit.hw_level + fit.hw_season[fut]
        else:
            ctx = _Context(recent, end, self.step, H)
            if c.period:
                assert fit.profile is not None
                ctx.profiles[c.period] = fit.profile
            mean = _paths(c, ctx, np.array([len(recent) - 1]))[0]
        day = y[-(sz.DAY // self.step) :]
        cap = ABSURD_FACTOR * max(
            float(np.nanmax(day)) if np.isfinite(day).any() else 0.0, fit.scale_floor
        )
        last = float(observed[-1])
        mean = np.clip(np.where(np.isfinite(mean), mean, last), 0.0, cap)
        q = fit.level if level is None else level
        i = int(np.clip(np.searchsorted(LEVELS, q), 1, len(LEVELS) - 1))
        w = float(np.clip((q - LEVELS[i - 1]) / (LEVELS[i] - LEVELS[i - 1]), 0.0, 1.0))
        zq = (1 - w) * fit.zgrid[i - 1] + w * fit.zgrid[i]
        upper = mean + zq * _scale(mean, fit.scale_floor, fit.scale_power)
        upper = np.clip(np.where(np.isfinite(upper), upper, mean), mean, np.maximum(cap, mean))
        return mean, upper


@dataclass
class _Tracking:
    """Adaptive conformal state of one series: how far the band level has moved from the
    fit's calibrated level, and the served values waiting for the lead window they covered
    to be realised (grid point ending the window -> served value)."""

    shift: float = 0.0
    pending: dict[int, float] = field(default_factory=dict)


@dataclass
class ForecastEngine:
    """Forecasts many series of one grid, refitting each at most every `refit_every`.

    Between refits, each call updates the level from the newest data and, by adaptive
    conformal inference, the quantile level used for the upper band: a lead window whose
    realised peak exceeded the value served for it raises it, one that stayed below
    lowers it, so the served value covers the peak at the nominal quantile even when the
    errors drift.
    """

    step: int
    horizon: int  # steps
    lead: int  # seconds
    quantile: float
    refit_every: int = 3600
    fits: dict[Hashable, SeriesFit] = field(default_factory=dict)
    tracking: dict[Hashable, _Tracking] = field(default_factory=dict)
    _registered: int = 0

    def __post_init__(self) -> None:
        self.model = SeriesModel(
            step=self.step, horizon=self.horizon, lead=self.lead, quantile=self.quantile
        )

    def forecast(
        self, key: Hashable, y: np.ndarray, end: int
    ) -> tuple[np.ndarray, np.ndarray, SeriesFit]:
        """Mean and upper forecasts of one series for the steps after `end`."""
        fit = self.fits.get(key)
        if fit is None or end >= fit.next_refit or end < fit.fitted_end:
            first = fit is None
            fit = self.model.fit(y, end)
            # Series registered together would all refit in the same cycle; the first
            # refit of the n-th series comes after 1/2 to 1 of the period instead, spread
            # evenly by the golden-ratio sequence (by order, not labels: a replay of one
            # series refits on the same schedule whatever its labels).
            fraction = 1.0
            if first:
                fraction = 0.5 + 0.5 * ((self._registered * 0.6180339887498949) % 1.0)
                self._registered += 1
            fit.next_refit = end + int(self.refit_every * fraction)
            self.fits[key] = fit
        track = self.tracking.setdefault(key, _Tracking())
        self._absorb(track, fit.level, y, end)
        mean, upper = self.model.forecast(fit, y, end, self.level(key))
        w = self.model.window
        last = y[-1] if np.isfinite(y[-1]) and y[-1] >= 0 else 0.0
        track.pending[end + w * self.step] = max(float(last), float(upper[:w].max()))
        return mean, upper, fit

    def level(self, key: Hashable) -> float:
        """The per-step band level a series is forecast at now (calibrated, then adapted)."""
        track = self.tracking.get(key, _Tracking())
        return float(np.clip(self.fits[key].level + track.shift, LEVELS[0], LEVELS[-1]))

    def _absorb(self, track: _Tracking, base: float, y: np.ndarray, end: int) -> None:
        w = self.model.window
        for target in [t for t in track.pending if t <= end]:
            served = track.pending.pop(target)
            i = len(y) - 1 - (end - target) // self.step
            window = y[max(0, i - w + 1) : i + 1] if 0 <= i < len(y) else y[:0]
            if len(window) == w and np.isfinite(window).all():
                miss = 1.0 if window.max() > served else 0.0
                track.shift += ACI_RATE * (miss - (1.0 - self.quantile))
                track.shift = float(np.clip(track.shift, LEVELS[0] - base, LEVELS[-1] - base))

    def forget(self, keep: set[Hashable]) -> None:
        """Drop the state of series no longer present."""
        for key in [k for k in self.fits if k not in keep]:
            del self.fits[key]
            self.tracking.pop(key, None)
