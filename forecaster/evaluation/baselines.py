"""Baseline forecasts to compare scaleahead with, on one series of rates on a grid.

Each returns F[i, h-1]: the forecast made at origin index origins[i] (using only values
at indices <= origins[i]) for index origins[i] + h, h = 1..H.
"""

from __future__ import annotations

import warnings

import numpy as np

from forecaster.models.base import ffill
from forecaster.models.seasonality import DAY
from forecaster.policy import serve, window_peak


def served(actual: np.ndarray, paths: np.ndarray, window: int) -> np.ndarray:
    """The served-value rule applied to a baseline's forecasts from each origin."""
    return serve(actual, window_peak(paths, window))


def reactive(y: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
    """The last actual value, for every step ahead."""
    return np.repeat(y[origins][:, None], horizon, axis=1)


def seasonal_naive(y: np.ndarray, origins: np.ndarray, horizon: int, step: int) -> np.ndarray:
    """The value one day earlier (NaN where that is missing)."""
    p = DAY // step
    back = origins[:, None] + np.arange(1, horizon + 1)[None, :] - p
    out = np.full(back.shape, np.nan)
    ok = back >= 0
    out[ok] = y[back[ok]]
    return out


def holt_winters(
    y: np.ndarray,
    origins: np.ndarray,
    horizon: int,
    step: int,
    refit_every: int = 6 * 3600,
    fit_window: int = 3 * DAY,
) -> np.ndarray:
    """statsmodels Holt-Winters, additive daily season, no trend: refit every 6 hours on
    the last 3 days (as the predictive-horizontal-pod-autoscaler project uses it); in
    between, the fitted smoothing parameters absorb each new observation."""
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    p = DAY // step
    refit = refit_every // step
    fit_len = fit_window // step
    out = np.full((len(origins), horizon), np.nan)
    level, season, alpha, gamma, at, last_fit = 0.0, np.zeros(p), 0.0, 0.0, -1, None
    for i, o in enumerate(origins):
        if last_fit is None or o - last_fit >= refit:
            hist = y[max(0, o + 1 - fit_len) : o + 1]
            if len(hist) < 2 * p + 1:
                continue  # not two seasons yet: no forecast (NaN)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = ExponentialSmoothing(
                    ffill(hist),
                    seasonal="add",
                    seasonal_periods=p,
                    initialization_method="estimated",
                ).fit()
            alpha = float(res.params["smoothing_level"])
            gamma = float(res.params["smoothing_seasonal"])
            level = float(res.level[-1])
            season = np.empty(p)
            season[np.arange(o + 1 - p, o + 1) % p] = np.asarray(res.season)[-p:]
            at = last_fit = o
        for j in range(at + 1, o + 1):
            v = y[j]
            if np.isfinite(v):
                k = j % p
                new_level = alpha * (v - season[k]) + (1 - alpha) * level
                season[k] = gamma * (v - level) + (1 - gamma) * season[k]
                level = new_level
        at = o
        out[i] = level + season[(o + np.arange(1, horizon + 1)) % p]
    return np.maximum(out, 0.0)
