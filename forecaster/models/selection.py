"""Model choice by rolling-origin backtest over the series' own recent history."""

from __future__ import annotations

import numpy as np

from forecaster.models.base import Model, SeriesContext
from forecaster.times import DAY

EVALUATION_SECONDS = DAY
"""History over which candidates are compared (at most a third of what there is)."""
MIN_ORIGINS = 10
"""Fewer origins than this: the first candidate is kept untried."""


def rank(candidates: list[Model], ctx: SeriesContext, window: int) -> list[tuple[Model, float]]:
    """The candidates, best first, by the absolute error of their forecasts from every
    recent origin over the steps the served value covers, (t, t + lead + step] (`window`
    steps), with that error (inf when none was tried: then in their given order).

    That point error sets the width of the calibrated band, and so the capacity the
    served value buys. (Scoring the max over the window instead rewards noisy forecasts,
    whose own noise imitates the realised max.)
    """
    n, H = len(ctx.y), ctx.horizon
    n_origins = min(EVALUATION_SECONDS // ctx.step, max(0, (n - H) // 3))
    if n_origins < MIN_ORIGINS or len(candidates) < 2:
        return [(c, np.inf) for c in candidates]
    origins = np.arange(n - H - n_origins, n - H)
    actual = ctx.y[origins[:, None] + np.arange(1, window + 1)[None, :]]
    scored = []
    for c in candidates:
        paths = c.paths(ctx, origins)[:, :window]
        err = float(np.nanmean(np.abs(paths - actual)))
        scored.append((c, err if np.isfinite(err) else np.inf))
    return sorted(scored, key=lambda pair: pair[1])  # stable: the first of equals


def choose(candidates: list[Model], ctx: SeriesContext, window: int) -> tuple[Model, float]:
    """The best candidate by `rank`, and its error."""
    return rank(candidates, ctx, window)[0]
