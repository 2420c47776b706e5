"""Finding a series' cycles and its outages: seasonal strength, robust profiles, masks.

All functions take one series on a regular grid (`y`, NaN for holes) whose last point is
the grid point `end`; phases are absolute (`(t // step) % period`), so a profile lines up
with the clock whatever window it was computed on.
"""

from __future__ import annotations

import numpy as np

from forecaster.times import DAY

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
    ok = np.isfinite(y)
    prof = _phase_medians(y[ok], ph[ok], p)
    have = np.isfinite(prof)
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


SUB_DAILY_MIN_STEPS = 3
"""The shortest cycle looked for, in steps."""
SUB_DAILY_MIN_CYCLES = 8
"""Cycles of history a sub-daily period needs before it is looked for (four per half)."""
SUB_DAILY_CANDIDATES = 6
"""Lags of the strongest autocorrelation peaks whose profiles are then tried."""
SUB_DAILY_MIN_ACF = 0.05
"""Autocorrelation of the step-to-step changes a lag needs to be tried at all."""
SUB_DAILY_MIN_GAIN = 0.05
"""Share of the absolute deviations a cycle's profile must explain, out of sample, to be
called present. Measured on the shared traces: 0.30 for NASA with an hourly burst shaped
from the ELB trace's spikes, at most 0.026 on the three traces as recorded."""
MAX_LAYERS = 2
"""Sub-daily cycles combined at most (e.g. a quarter-hourly batch and an hourly one)."""


def _changes_acf(y: np.ndarray, max_lag: int) -> np.ndarray:
    """Autocorrelation, lags 0..max_lag, of the step-to-step changes of y, winsorised at
    six robust deviations (so that one-off spikes weigh little) and NaN-tolerant.

    A smooth daily cycle barely moves from one step to the next, so what recurs in the
    changes is sharp and sub-daily: a burst at a fixed minute, a batch every 15 minutes."""
    x = np.diff(y)
    ok = np.isfinite(x)
    if ok.sum() < 2 * max_lag:
        return np.zeros(max_lag + 1)
    centre = float(np.median(x[ok]))
    spread = 1.4826 * float(np.median(np.abs(x[ok] - centre))) or float(np.std(x[ok])) or 1.0
    x = np.where(ok, np.clip(x, centre - 6 * spread, centre + 6 * spread) - centre, 0.0)
    size = 1 << int(np.ceil(np.log2(2 * len(x))))
    fx = np.fft.rfft(x, size)
    fm = np.fft.rfft(ok.astype(np.float64), size)
    products = np.fft.irfft(fx * np.conj(fx), size)[: max_lag + 1]
    pairs = np.fft.irfft(fm * np.conj(fm), size)[: max_lag + 1]
    mean_products = products / np.maximum(np.rint(pairs), 1.0)
    return mean_products / mean_products[0] if mean_products[0] > 0 else mean_products * 0


def _phase_medians(d: np.ndarray, ph: np.ndarray, p: int) -> np.ndarray:
    """Median of d per phase 0..p-1 (NaN where a phase has no value; d has no NaN)."""
    # Sorted by value, then stably by phase: values in order within each phase. Phases
    # of 16 bits sort by radix, several times faster than numpy's lexsort.
    order = np.argsort(d)
    narrow = ph[order].astype(np.int16 if p <= np.iinfo(np.int16).max else np.int64)
    d_sorted = d[order[np.argsort(narrow, kind="stable")]]
    counts = np.bincount(ph, minlength=p)
    stops = np.cumsum(counts)
    starts = stops - counts
    out = np.full(p, np.nan)
    have = counts > 0
    lo, hi = (starts + stops - 1) // 2, (starts + stops) // 2
    out[have] = 0.5 * (d_sorted[lo[have]] + d_sorted[hi[have]])
    return out


def cycle_gain(y: np.ndarray, end: int, step: int, p: int) -> float:
    """How much of a cycle of p steps the series has: the share of the absolute deviations
    from a centred p-step moving average that the median profile learnt on the odd cycles
    explains on the even ones, and vice versa (out of sample, so noise scores about 0)."""
    n = len(y)
    ok = np.isfinite(y)
    d = y - centred_mean(y, p)
    idx = end // step - np.arange(n - 1, -1, -1, dtype=np.int64)
    ph, half = idx % p, (idx // p) % 2
    left = total = 0.0
    for learn in (0, 1):
        a, b = ok & (half == learn), ok & (half != learn)
        if not a.any() or not b.any():
            return 0.0
        prof = _phase_medians(d[a], ph[a], p)
        prof = np.where(np.isfinite(prof), prof, 0.0)
        left += float(np.sum(np.abs(d[b] - prof[ph[b]])))
        total += float(np.sum(np.abs(d[b])))
    return 1.0 - left / total if total > 0 else 0.0


def sub_daily_periods(y: np.ndarray, end: int, step: int) -> list[int]:
    """The sub-daily cycles (seconds) y has, found in the data: lags of autocorrelation
    peaks in its step-to-step changes, kept where a profile of that length explains the
    series out of sample (`cycle_gain`). Of lags whose gains are within a tenth of the
    best, the shortest is taken (an hourly burst also recurs every two hours); a second
    cycle is then looked for in what the first leaves."""
    max_lag = min(DAY // step // 2, len(y) // SUB_DAILY_MIN_CYCLES)
    if max_lag <= SUB_DAILY_MIN_STEPS:
        return []
    found: list[int] = []
    rest = y.copy()
    for _ in range(MAX_LAYERS):
        acf = _changes_acf(rest, max_lag + 1)
        lags = np.arange(SUB_DAILY_MIN_STEPS, max_lag + 1)
        peak = (acf[lags] > acf[lags - 1]) & (acf[lags] >= acf[lags + 1])
        peaks = lags[peak & (acf[lags] >= SUB_DAILY_MIN_ACF)]
        strongest = peaks[np.argsort(-acf[peaks])][:SUB_DAILY_CANDIDATES]
        gains = {int(p): cycle_gain(rest, end, step, int(p)) for p in strongest}
        gains = {p: g for p, g in gains.items() if p * step not in found}
        best = max(gains.values(), default=0.0)
        if best < SUB_DAILY_MIN_GAIN:
            break
        p = min(q for q, g in gains.items() if g >= 0.9 * best)
        found.append(p * step)
        ph = phases(end, len(rest), step, p)
        ok = np.isfinite(rest)
        prof = _phase_medians(rest[ok] - centred_mean(rest, p)[ok], ph[ok], p)
        rest = rest - np.where(np.isfinite(prof), prof, 0.0)[ph]
    return found


def centred_mean(y: np.ndarray, p: int) -> np.ndarray:
    """Centred p-step moving average of y over its values (holes skipped; a window with
    none gives 0), shifted inwards at the start and truncated at the end."""
    n = len(y)
    ok = np.isfinite(y)
    sums = np.concatenate([[0.0], np.cumsum(np.where(ok, y, 0.0))])
    counts = np.concatenate([[0], np.cumsum(ok)])
    lo = np.clip(np.arange(n) - p // 2, 0, n)
    hi = np.clip(lo + p, 0, n)
    return (sums[hi] - sums[lo]) / np.maximum(counts[hi] - counts[lo], 1)


def layered_profile(
    y: np.ndarray, end: int, step: int, base: np.ndarray, layers: tuple[int, ...]
) -> np.ndarray:
    """`base` (a profile over a period that each of `layers` divides) with, for each
    layer in turn, the unsmoothed median profile of what the profile so far leaves:
    added to it, or multiplied with it (a burst that grows with the traffic), whichever
    is nearer the history."""
    p = len(base)
    out = base.astype(np.float64).copy()
    ph = phases(end, len(y), step, p)
    ok = np.isfinite(y)
    floor = 1e-3 * max(float(np.mean(np.abs(base))), 1e-12)
    for layer in layers:
        q = layer // step
        at = ph[ok] % q
        rest = _phase_medians(y[ok] - out[ph[ok]], at, q)
        rest = np.where(np.isfinite(rest), rest, 0.0)
        added = out + np.tile(rest - np.mean(rest), p // q)
        ratio = _phase_medians(y[ok] / np.maximum(out[ph[ok]], floor), at, q)
        ratio = np.where(np.isfinite(ratio), ratio, 1.0)
        scaled = out * np.tile(ratio / np.mean(ratio), p // q)
        miss_added = float(np.mean(np.abs(y[ok] - added[ph[ok]])))
        miss_scaled = float(np.mean(np.abs(y[ok] - scaled[ph[ok]])))
        out = added if miss_added <= miss_scaled else scaled
    return out
