"""Variants of real traces that no model was tuned on, for generalisation tests.

`with_burst` adds a burst at fixed minutes of every hour (or any cycle) whose shape and
size are those of another trace's real spikes (`spike_shape`); `resampled` re-bins a
trace to a coarser resolution with its interval boundaries at a given phase, as a
5-minute export stamped at :57:53 has.
"""

from __future__ import annotations

import numpy as np

from forecaster.sources.trace import Trace

SPIKE_DEVIATIONS = 8.0
"""A point this many median absolute deviations above the median is a spike."""


def spike_shape(trace: Trace, length: int = 2) -> np.ndarray:
    """The median spike of a trace, as multiples of its surroundings: for every point
    SPIKE_DEVIATIONS above the trace's median, the `length` points from it divided by
    the median of the points just around it (raise ValueError if it has none)."""
    y = trace.counts
    ok = np.isfinite(y)
    median = float(np.median(y[ok]))
    mad = float(np.median(np.abs(y[ok] - median)))
    ratios = []
    for i in np.flatnonzero(ok & (y > median + SPIKE_DEVIATIONS * mad)):
        around = np.concatenate([y[max(0, i - 6) : max(0, i - 1)], y[i + length + 1 : i + 8]])
        base = np.nanmedian(around) if np.isfinite(around).any() else np.nan
        if i + length <= len(y) and base > 0 and np.isfinite(y[i : i + length]).all():
            ratios.append(y[i : i + length] / base)
    if not ratios:
        raise ValueError("the trace has no spikes")
    return np.median(np.array(ratios), axis=0)


def with_burst(
    trace: Trace, shape: np.ndarray, shape_resolution: int, at: int = 420, every: int = 3600
) -> Trace:
    """The trace plus a burst starting `at` seconds into every `every` seconds (UTC):
    each point of `shape` (multiples of the level, `shape_resolution` seconds each)
    lifts the trace's counts over that stretch to that multiple of the trace's median
    over the surrounding cycle. Holes stay holes."""
    res = trace.resolution
    if shape_resolution % res or every % res or at % res:
        raise ValueError("the burst must fall on whole intervals of the trace")
    n = len(trace.counts)
    starts = trace.start + res * np.arange(n)
    cycle = (starts - trace.start) // every
    level = np.zeros(n)
    for c in np.unique(cycle):
        here = cycle == c
        level[here] = (
            np.nanmedian(trace.counts[here]) if np.isfinite(trace.counts[here]).any() else 0
        )
    into = (starts % every - at) // shape_resolution
    inside = (into >= 0) & (into < len(shape))
    lift = np.zeros(n)
    lift[inside] = level[inside] * (shape[into[inside]] - 1.0)
    return Trace(trace.start, res, trace.counts + np.rint(np.maximum(lift, 0.0)))


def resampled(trace: Trace, resolution: int, phase: int) -> Trace:
    """The trace re-binned to `resolution` seconds, each interval starting `phase` seconds
    after a multiple of the resolution (UTC); an interval with any hole is a hole."""
    res = trace.resolution
    if resolution % res or phase % res:
        raise ValueError("resolution and phase must be whole intervals of the trace")
    first = trace.start + (phase - trace.start) % resolution
    skip = (first - trace.start) // res
    per = resolution // res
    counts = trace.counts[skip:]
    counts = counts[: len(counts) // per * per].reshape(-1, per)
    return Trace(int(first), resolution, counts.sum(axis=1))
