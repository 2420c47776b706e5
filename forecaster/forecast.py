"""One series' forecast as the cycle stores it and the serving policy reads it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SeriesForecast:
    """One series' forecast: the grid points ahead with point and upper-quantile values."""

    labels: dict[str, str]
    origin: int  # grid point of the newest observation the forecast is based on
    last_actual: float  # the observation at `origin`
    ds: np.ndarray  # int64 grid points origin + step, ..., origin + horizon
    point: np.ndarray  # the point forecast: the median of the predictive distribution
    upper: np.ndarray
    model: str
    recent_error: float | None = None  # the model's backtest MAE over the lead window
    quantile: float | None = None  # share of lead-window peaks the upper band is to cover
    headroom: float | None = None  # factor on the band that a budget's remainder bought
    lead: int | None = None  # the workload's measured lead, if any (the policy decides)
    scale_down: int | None = None  # the HPA window a budget was costed through (seconds)

    def age(self, now: float) -> float:
        """Seconds between the newest data behind this forecast and `now`."""
        return now - self.origin

    def at(self, t: float) -> tuple[float, float] | None:
        """(point, upper) of the step labelled by the first grid point >= t, if covered."""
        i = int(np.searchsorted(self.ds, t, side="left"))
        if i >= len(self.ds):
            return None
        return float(self.point[i]), float(self.upper[i])
