"""Finding a series' cycles and its outages: seasonal strength, robust profiles, masks.

All functions take one series on a regular grid (`y`, NaN for holes) whose last point is
the grid point `end`; phases are absolute (`(t // step) % period`), so a profile lines up
with the clock whatever window it was computed on.
"""

from __future__ import annotations

import numpy as np

DAY = 86400
WEEK = 7 * DAY

OUTAGE_RATIO = 0.1
"""A run below this fraction of the seasonal profile is an outage, not demand..."""
OUTAGE_MIN_SECONDS = 1800
"""...when it lasts at least this long."""

PROFILE_SMOOTHING = 1800
"""Seconds a profile is smoothed over: a weekly profile from two weeks has two samples
per phase, so it needs the smoothing (15 minutes: 0.925 of Holt-Winters' MAE on ISP and
0.926 on NASA; 30 minutes: 0.869 and 0.908; an hour: 0.877 and 0.902)."""


def phases(end: int, n: int, step: int, period_steps: int) -> np.ndarray:
    """Phase of each of the n grid points ending at `end`."""
    idx = end // step - np.arange(n - 1, -1, -1, dtype=np.int64)
    return idx % period_steps


def seasonal_strength(y: np.ndarray, step: int, period: int) -> float:
    """Autocorrelation at lag `period` seconds of the series' hourly means (NaN-tolerant).

    Returns 0 when fewer than two whole periods are observed.
    """
    per_hour = max(1, 3600 // step)
    n = len(y) // per_hour * per_hour
    if n == 0:
        return 0.0
    hourly = y[len(y) - n :].reshape(-1, per_hour)
    counts = np.sum(np.isfinite(hourly), axis=1)
    sums = np.nansum(hourly, axis=1)
    h = np.where(counts > per_hour // 2, sums / np.maximum(counts, 1), np.nan)
    lag = period // 3600
    if lag <= 0 or np.sum(np.isfinite(h)) < 2 * lag:
        return 0.0
    a, b = h[lag:], h[:-lag]
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < lag:
        return 0.0
    a, b = a[ok], b[ok]
    sa, sb = a.std(), b.std()
    if sa == 0 or sb == 0:
        return 0.0
    return float(np.mean((a - a.mean()) * (b - b.mean())) / (sa * sb))


def profile(
    y: np.ndarray, end: int, step: int, period: int, smooth_seconds: int = PROFILE_SMOOTHING
) -> np.ndarray:
    """Robust profile over one period: the median of each phase over the periods observed,
    smoothed circularly over `smooth_seconds`. Phases never observed are interpolated."""
    p = period // step
    ph = phases(end, len(y), step, p)
    prof = np.full(p, np.nan)
    ok = np.isfinite(y)
    # Median per phase: sort by (phase, value) and take the middle of each run.
    order = np.lexsort((y[ok], ph[ok]))
    ph_sorted, y_sorted = ph[ok][order], y[ok][order]
    starts = np.searchsorted(ph_sorted, np.arange(p), side="left")
    stops = np.searchsorted(ph_sorted, np.arange(p), side="right")
    have = stops > starts
    lo = (starts + stops - 1) // 2
    hi = (starts + stops) // 2
    prof[have] = 0.5 * (y_sorted[lo[have]] + y_sorted[hi[have]])
    if not have.any():
        return np.zeros(p)
    if not have.all():
        idx = np.arange(p)
        prof = np.interp(idx, idx[have], prof[have], period=p)
    w = max(1, smooth_seconds // step)
    if w > 1:
        kernel = np.ones(w) / w
        padded = np.concatenate([prof[-(w // 2) :], prof, prof[: w - w // 2 - 1]])
        prof = np.convolve(padded, kernel, mode="valid")
    return prof


def outage_mask(y: np.ndarray, expected: np.ndarray, step: int) -> np.ndarray:
    """True where y is inside a run of at least OUTAGE_MIN_SECONDS below OUTAGE_RATIO of
    the expected (profile) value: a service that was down, not demand."""
    low = np.isfinite(y) & (y < OUTAGE_RATIO * expected) & (expected > 0)
    min_run = max(2, OUTAGE_MIN_SECONDS // step)
    mask = np.zeros(len(y), dtype=bool)
    if not low.any():
        return mask
    edges = np.diff(np.concatenate([[0], low.astype(np.int8), [0]]))
    starts = np.flatnonzero(edges == 1)
    stops = np.flatnonzero(edges == -1)
    for a, b in zip(starts, stops, strict=True):
        if b - a >= min_run:
            mask[a:b] = True
    return mask
