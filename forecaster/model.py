"""Point and upper-quantile forecasts for many series at once, on statsforecast.

Input is a tidy frame (`unique_id`, `ds`, `y`) with `ds` in Unix seconds on the step grid
and NaN where a sample is missing; output is a tidy frame (`unique_id`, `ds`, `mean`,
`upper`, `model`) with `horizon` rows per series. Outputs are never NaN nor negative.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from statsforecast import StatsForecast
from statsforecast.models import AutoETS, Naive

FIT_WINDOW = 360
"""Newest steps each series is fitted on (6 hours at one-minute steps)."""

MIN_ETS_POINTS = 30
"""Below this many observations a series gets the naive model instead of ETS."""

ABSURD_FACTOR = 10.0
"""No forecast exceeds this multiple of the series' maximum over the fit window."""

OUTPUT_COLUMNS = ["unique_id", "ds", "mean", "upper", "model"]


def per_step_quantile(quantile: float, steps: int) -> float:
    """The per-step quantile at which `steps` consecutive steps all stay within their bands
    with probability `quantile`, were their misses independent (errors that move together
    make it conservative)."""
    return float(quantile ** (1.0 / steps))


def level_for_quantile(quantile: float) -> float:
    """The statsforecast two-sided interval level whose upper bound is the `quantile`."""
    return round((2 * quantile - 1) * 100, 6)


def prepare(history: pd.DataFrame, fit_window: int = FIT_WINDOW) -> pd.DataFrame:
    """Per series: drop leading and trailing holes, keep the newest `fit_window` steps,
    fill interior holes linearly. Series with no observation are dropped."""
    parts = []
    for uid, group in history.groupby("unique_id", sort=False):
        y = group["y"].to_numpy(dtype=np.float64)
        observed = np.flatnonzero(np.isfinite(y) & (y >= 0))
        if observed.size == 0:
            continue
        lo = max(int(observed[0]), int(observed[-1]) + 1 - fit_window)
        hi = int(observed[-1]) + 1
        ys = pd.Series(np.where(np.isfinite(y[lo:hi]) & (y[lo:hi] >= 0), y[lo:hi], np.nan))
        ys = ys.interpolate(limit_direction="both")
        parts.append(
            pd.DataFrame(
                {"unique_id": uid, "ds": group["ds"].to_numpy()[lo:hi], "y": ys.to_numpy()}
            )
        )
    if not parts:
        return pd.DataFrame({"unique_id": [], "ds": [], "y": []})
    return pd.concat(parts, ignore_index=True)


class QuantileForecaster:
    """ETS (no season) on the recent window; naive for series too short for ETS."""

    def __init__(self, fit_window: int = FIT_WINDOW) -> None:
        self.fit_window = fit_window

    def forecast(
        self, history: pd.DataFrame, *, horizon: int, step: int, quantile: float
    ) -> pd.DataFrame:
        """Forecast `horizon` steps past each series' last observation."""
        data = prepare(history, self.fit_window)
        if data.empty:
            return pd.DataFrame(columns=OUTPUT_COLUMNS)
        level = level_for_quantile(quantile)
        sizes = data.groupby("unique_id", sort=False)["y"].size()
        long_ids = sizes.index[sizes >= MIN_ETS_POINTS]
        rungs = [
            ("ets", AutoETS(season_length=1, alias="m"), data[data["unique_id"].isin(long_ids)]),
            ("naive", Naive(alias="m"), data[~data["unique_id"].isin(long_ids)]),
        ]
        outputs = []
        for name, model, part in rungs:
            if part.empty:
                continue
            sf = StatsForecast(models=[model], freq=step, n_jobs=1)
            # statsforecast accepts fractional levels though its annotation says int.
            fc = sf.forecast(df=part, h=horizon, level=[level])  # type: ignore[list-item]
            outputs.append(
                pd.DataFrame(
                    {
                        "unique_id": fc["unique_id"].to_numpy(),
                        "ds": fc["ds"].to_numpy(dtype=np.int64),
                        "mean": fc["m"].to_numpy(dtype=np.float64),
                        "upper": fc[f"m-hi-{level}"].to_numpy(dtype=np.float64),
                        "model": name,
                    }
                )
            )
        out = pd.concat(outputs, ignore_index=True)
        return _clean(out, data)


def _clean(forecasts: pd.DataFrame, data: pd.DataFrame) -> pd.DataFrame:
    """Replace NaN by the last observation, clip to [0, ABSURD_FACTOR x recent max],
    and keep upper >= mean."""
    stats = data.groupby("unique_id", sort=False)["y"].agg(["last", "max"])
    last = forecasts["unique_id"].map(stats["last"]).to_numpy(dtype=np.float64)
    cap = ABSURD_FACTOR * forecasts["unique_id"].map(stats["max"]).to_numpy(dtype=np.float64)
    mean = forecasts["mean"].to_numpy(dtype=np.float64)
    mean = np.clip(np.where(np.isfinite(mean), mean, last), 0.0, cap)
    upper = forecasts["upper"].to_numpy(dtype=np.float64)
    upper = np.clip(np.where(np.isfinite(upper), upper, mean), mean, np.maximum(cap, mean))
    return forecasts.assign(mean=mean, upper=upper)[OUTPUT_COLUMNS]
