"""Model choice by rolling-origin backtest over the series' own recent history."""

from __future__ import annotations

import numpy as np

from forecaster.models.base import Model, SeriesContext
from forecaster.times import DAY

EVALUATION_SECONDS = DAY
"""History over which candidates are compared (at most a third of what there is)."""
MIN_ORIGINS = 10
"""Fewer origins than this: the first candidate is kept untried."""


def choose(candidates: list[Model], ctx: SeriesContext, window: int) -> tuple[Model, float]:
    """The candidate whose forecasts from every recent origin had the smallest absolute
    error over the steps the served value covers, (t, t + lead + step] (`window` steps),
    and that error (inf when none was tried).

    That point error sets the width of the calibrated band, and so the capacity the
    served value buys. (Scoring the max over the window instead rewards noisy forecasts,
    whose own noise imitates the realised max.)
    """
    n, H = len(ctx.y), ctx.horizon
    n_origins = min(EVALUATION_SECONDS // ctx.step, max(0, (n - H) // 3))
    best, best_err = candidates[0], np.inf
    if n_origins < MIN_ORIGINS or len(candidates) < 2:
        return best, best_err
    origins = np.arange(n - H - n_origins, n - H)
    actual = ctx.y[origins[:, None] + np.arange(1, window + 1)[None, :]]
    for c in candidates:
        paths = c.paths(ctx, origins)[:, :window]
        err = float(np.nanmean(np.abs(paths - actual)))
        if not np.isfinite(err):
            err = np.inf
        if err < best_err:
            best, best_err = c, err
    return best, best_err
