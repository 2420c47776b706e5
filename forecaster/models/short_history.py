"""Forecasts of series too young for the seasonal models: statsforecast, batched.

Input is a tidy frame (`unique_id`, `ds`, `y`) with `ds` in Unix seconds on the step grid
and NaN where a sample is missing; output is a tidy frame (`unique_id`, `ds`, `mean`,
`upper`, `model`) with `horizon` rows per series. Outputs are never NaN nor negative.
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np
import pandas as pd

from forecaster.models.base import clip_band, clip_mean
from forecaster.models.ladder import MIN_POINTS
from forecaster.policy import as_rates

FIT_WINDOW = 360
"""Newest steps each series is fitted on (6 hours at one-minute steps)."""

OUTPUT_COLUMNS = ["unique_id", "ds", "mean", "upper", "model"]


def level_for_quantile(quantile: float) -> float:
    """The statsforecast two-sided interval level whose upper bound is the `quantile`."""
    return round((2 * quantile - 1) * 100, 6)


def prepare(history: pd.DataFrame, fit_window: int = FIT_WINDOW) -> pd.DataFrame:
    """Per series: drop leading and trailing holes, keep the newest `fit_window` steps,
    fill interior holes linearly. Series with no observation are dropped."""
    parts = []
    for uid, group in history.groupby("unique_id", sort=False):
        y = as_rates(group["y"].to_numpy(dtype=np.float64))
        observed = np.flatnonzero(np.isfinite(y))
        if observed.size == 0:
            continue
        lo = max(int(observed[0]), int(observed[-1]) + 1 - fit_window)
        hi = int(observed[-1]) + 1
        ys = pd.Series(y[lo:hi]).interpolate(limit_direction="both")
        parts.append(
            pd.DataFrame(
                {"unique_id": uid, "ds": group["ds"].to_numpy()[lo:hi], "y": ys.to_numpy()}
            )
        )
    if not parts:
        return pd.DataFrame({"unique_id": [], "ds": [], "y": []})
    return pd.concat(parts, ignore_index=True)


def naive(data: pd.DataFrame, horizon: int, step: int, quantile: float) -> pd.DataFrame:
    """The last value, with a band at its `quantile` for series too short to fit: the
    root mean square of their steps, widening with the horizon as a random walk's does,
    but over no more steps than have been watched (from one or two differences a walk
    cannot be told from noise; widening anyway served a newborn steady series a fifth
    above its rate)."""
    z = NormalDist().inv_cdf(quantile)
    rows = []
    for uid, group in data.groupby("unique_id", sort=False):
        y = group["y"].to_numpy(dtype=np.float64)
        spread = float(np.sqrt(np.mean(np.diff(y) ** 2))) if len(y) > 1 else 0.0
        widening = np.sqrt(np.minimum(np.arange(1, horizon + 1), max(len(y) - 1, 1)))
        last = int(group["ds"].iloc[-1])
        rows.append(
            pd.DataFrame(
                {
                    "unique_id": uid,
                    "ds": last + step * np.arange(1, horizon + 1, dtype=np.int64),
                    "mean": y[-1],
                    "upper": y[-1] + z * spread * widening,
                    "model": "naive",
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


class ShortHistoryForecaster:
    """ETS (no season) on the recent window; `naive` for series with under MIN_POINTS."""

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
        long_ids = sizes.index[sizes >= MIN_POINTS]
        outputs = []
        short = data[~data["unique_id"].isin(long_ids)]
        if not short.empty:
            outputs.append(naive(short, horizon, step, quantile))
        part = data[data["unique_id"].isin(long_ids)]
        if not part.empty:
            # Imported here: the fitting workers, which never forecast young series, need
            # not load statsforecast and what it brings (fugue, pyarrow: 150 MB a process).
            from statsforecast import StatsForecast
            from statsforecast.models import AutoETS

            sf = StatsForecast(models=[AutoETS(season_length=1, alias="m")], freq=step, n_jobs=1)
            # statsforecast accepts fractional levels though its annotation says int.
            fc = sf.forecast(df=part, h=horizon, level=[level])  # type: ignore[list-item]
            outputs.append(
                pd.DataFrame(
                    {
                        "unique_id": fc["unique_id"].to_numpy(),
                        "ds": fc["ds"].to_numpy(dtype=np.int64),
                        "mean": fc["m"].to_numpy(dtype=np.float64),
                        "upper": fc[f"m-hi-{level}"].to_numpy(dtype=np.float64),
                        "model": "ets",
                    }
                )
            )
        out = pd.concat(outputs, ignore_index=True)
        return _clean(out, data)


def _clean(forecasts: pd.DataFrame, data: pd.DataFrame) -> pd.DataFrame:
    """The models' output made safe to serve (`clip_mean`, `clip_band`), per series."""
    stats = data.groupby("unique_id", sort=False)["y"].agg(["last", "max"])
    last = forecasts["unique_id"].map(stats["last"]).to_numpy(dtype=np.float64)
    recent_max = forecasts["unique_id"].map(stats["max"]).to_numpy(dtype=np.float64)
    mean = clip_mean(forecasts["mean"].to_numpy(dtype=np.float64), last, recent_max)
    upper = clip_band(forecasts["upper"].to_numpy(dtype=np.float64), mean, recent_max)
    return forecasts.assign(mean=mean, upper=upper)[OUTPUT_COLUMNS]
